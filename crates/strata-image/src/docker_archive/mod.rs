//! `docker-archive:`: what `docker save` writes and `docker load` reads.
//!
//! Reading ([`DockerArchiveSource`]) accepts every variant of image-formats §2–§4: the
//! legacy layout (Docker ≤ 24: `<v1id>/layer.tar`, symlinks between them), the Docker 25+
//! OCI layout with `manifest.json`, containerd-store archives (compressed blobs, a
//! multi-platform index), skopeo's and podman's (`<diffid>.tar` plus legacy symlinks),
//! whole archives compressed with gzip or zstd, and multi-image archives.
//!
//! Writing ([`DockerArchiveDestination`]) produces either layout, deterministically
//! ([`ArchiveFormat`]).

mod dest;
mod source;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use dest::{ArchiveFormat, DockerArchiveDestination};
pub use source::DockerArchiveSource;

/// One entry of `manifest.json`, fields in moby's Go order.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    /// `null` when untagged.
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(
        rename = "Layers",
        default,
        deserialize_with = "crate::config::null_default"
    )]
    layers: Vec<String>,
    #[serde(rename = "Parent", default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(
        rename = "LayerSources",
        default,
        deserialize_with = "crate::config::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    layer_sources: BTreeMap<String, LayerSource>,
}

/// A distribution descriptor as `LayerSources` holds it (moby's field order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LayerSource {
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    media_type: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(
        default,
        deserialize_with = "crate::config::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    urls: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
