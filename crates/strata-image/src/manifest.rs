//! Descriptors, manifests and indexes (image-formats §5), OCI and Docker schema 2.
//!
//! The structs declare their fields in the Go order of the image-spec types, so
//! [`crate::gojson::marshal`] writes what Go writes; annotations are sorted maps. Parsing
//! is tolerant of unknown fields and strict about digests (validated before use).
//!
//! ```
//! use strata_image::manifest::{media_type, Descriptor, Manifest};
//! use strata_image::ids::sha256;
//! let config = Descriptor::new(media_type::OCI_CONFIG, sha256(b"{}"), 2);
//! let m = Manifest::oci(config, vec![]);
//! let json = String::from_utf8(strata_image::gojson::marshal(&m).unwrap()).unwrap();
//! assert!(json.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"#));
//! assert!(json.ends_with(r#","layers":[]}"#));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::null_default;
use crate::ids::Digest;
use crate::Error;

/// The media types of §5: the workspace's one table, kept in strata-layer so that the
/// store and the registry client name them from it too.
pub use strata_layer::media_type;
pub use strata_layer::media_type::LayerType;

pub(crate) mod digest_serde {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An OCI platform, fields in image-spec's Go order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture in Go's names (`amd64`, `arm64`).
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    /// The OS (`linux`, `windows`).
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// The OS version (Windows images name the build they need).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features the image needs (Windows: `win32k`).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// The architecture variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go's names (`linux`/`amd64`).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            architecture: architecture.into(),
            os: std::env::consts::OS.into(),
            ..Platform::default()
        }
    }
}

/// A content descriptor, fields in image-spec's Go order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// What the blob is (a media type of [`media_type`]).
    #[serde(rename = "mediaType", default, deserialize_with = "null_default")]
    pub media_type: String,
    /// The blob's sha256 (verified whenever the blob is read).
    #[serde(with = "digest_serde")]
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Where else the blob can be fetched (a foreign layer's only source).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    /// Free-form metadata (`org.opencontainers.image.ref.name` names a layout's images).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// The blob itself, base64, for small blobs embedded in the descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// In an index: the platform of the manifest this points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// In an index: the artifact type of the manifest this points at.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor of `size` bytes with this media type and digest, and nothing else.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            data: None,
            platform: None,
            artifact_type: None,
        }
    }
}

/// An image manifest: OCI, or Docker schema 2 (the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's own media type (required for Docker schema 2, optional for OCI).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For an artifact: what it is (images have none).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The config blob (its digest is the image ID).
    pub config: Descriptor,
    /// The layers, bottom first: one per diffID of the config.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (a signature, an SBOM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An OCI manifest with these config and layer descriptors.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Parses a manifest of media type `media_type` (from its descriptor), checking the
    /// schema version, that the document's own media type agrees, and the config and
    /// layer media types.
    pub fn parse(bytes: &[u8], media_type: &str, what: &str) -> Result<Manifest, Error> {
        let m: Manifest = crate::gojson::from_slice(bytes).map_err(|e| Error::json(what, e))?;
        if m.schema_version != 2 {
            return Err(Error::invalid(
                what,
                format!("schemaVersion is {}, not 2", m.schema_version),
            ));
        }
        if let Some(own) = &m.media_type {
            if own != media_type {
                return Err(Error::invalid(
                    what,
                    format!("it says it is `{own}` but is listed as `{media_type}`"),
                ));
            }
        }
        if ![media_type::OCI_CONFIG, media_type::DOCKER_CONFIG]
            .contains(&m.config.media_type.as_str())
        {
            return Err(Error::UnknownMediaType {
                what: format!("the config of {what}"),
                media_type: m.config.media_type.clone(),
            });
        }
        for (i, l) in m.layers.iter().enumerate() {
            if LayerType::of(&l.media_type).is_none() {
                return Err(Error::UnknownMediaType {
                    what: format!("layer {i} of {what}"),
                    media_type: l.media_type.clone(),
                });
            }
        }
        Ok(m)
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The index's own media type (required for a Docker manifest list).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For an artifact index: what it is.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifests it lists (per platform, or per tag in a layout).
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An OCI index of these manifests.
    pub fn oci(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Parses an index or a Docker manifest list (`what` names it in errors), checking its schema version and each descriptor's digest.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Index, Error> {
        let i: Index = crate::gojson::from_slice(bytes).map_err(|e| Error::json(what, e))?;
        if i.schema_version != 2 {
            return Err(Error::invalid(
                what,
                format!("schemaVersion is {}, not 2", i.schema_version),
            ));
        }
        Ok(i)
    }
}

/// What a manifest-level descriptor points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2).
    Image,
    /// An index or a Docker manifest list.
    Index,
    /// Schema 1 or an unknown type: listed, never opened.
    Other,
}

impl ManifestKind {
    /// The kind of a manifest media type: an index for the index and list types, else an image.
    pub fn of(media_type: &str) -> ManifestKind {
        match media_type {
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => ManifestKind::Image,
            media_type::OCI_INDEX | media_type::DOCKER_LIST => ManifestKind::Index,
            _ => ManifestKind::Other,
        }
    }
}

/// Annotation keys Strata reads and writes (§3.1, §5).
pub mod annotation {
    /// The tag (skopeo, umoci, Docker) or a full reference (some tools).
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// containerd's full normalized name, `docker.io/library/busybox:latest`.
    pub const IMAGE_NAME: &str = "io.containerd.image.name";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gojson::marshal;
    use strata_layer::compress::Compression;

    const A: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

    #[test]
    fn descriptors_marshal_in_go_order() {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::parse(A).unwrap(), 7);
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), "1".into());
        d.annotations
            .insert("io.containerd.image.name".into(), "docker.io/x/y:1".into());
        d.platform = Some(Platform::host());
        assert_eq!(
            String::from_utf8(marshal(&d).unwrap()).unwrap(),
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{A}","size":7,"annotations":{{"io.containerd.image.name":"docker.io/x/y:1","org.opencontainers.image.ref.name":"1"}},"platform":{{"architecture":"{}","os":"linux"}}}}"#,
                Platform::host().architecture
            )
        );
    }

    #[test]
    fn manifests_check_versions_and_media_types() {
        let layer = |mt: &str| format!(r#"{{"mediaType":"{mt}","digest":"{A}","size":1}}"#);
        let doc = |mt: &str, layer_mt: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{},"layers":[{}]}}"#,
                layer(media_type::OCI_CONFIG),
                layer(layer_mt)
            )
        };
        let ok = doc(media_type::OCI_MANIFEST, media_type::DOCKER_LAYER_GZIP);
        let m = Manifest::parse(ok.as_bytes(), media_type::OCI_MANIFEST, "m").unwrap();
        assert_eq!(
            LayerType::of(&m.layers[0].media_type).unwrap().compression,
            Compression::Gzip
        );
        let e = Manifest::parse(
            doc(media_type::OCI_MANIFEST, "application/x-weird").as_bytes(),
            media_type::OCI_MANIFEST,
            "m",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown media type `application/x-weird`"),
            "{e}"
        );
        let e = Manifest::parse(ok.as_bytes(), media_type::DOCKER_MANIFEST, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("says it is"), "{e}");
        let bad_digest = ok.replace(&A[7..], "../../../etc/passwd");
        assert!(Manifest::parse(bad_digest.as_bytes(), media_type::OCI_MANIFEST, "m").is_err());
    }
}
