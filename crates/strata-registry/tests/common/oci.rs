//! Reading an OCI image layout (the corpus's `oci/`) directly: the manifest of a tag
//! and the blobs it names, to push them and compare what comes back.

use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_registry::{Digest, ManifestKind};

/// The test corpus: found (or reported missing) by the workspace's test kit.
pub use strata_testkit::corpus;

/// One blob of an image: digest, size, and its file in the layout.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

/// A tagged image of a layout.
#[derive(Clone, Debug)]
pub struct Image {
    pub kind: ManifestKind,
    pub manifest: Vec<u8>,
    pub digest: Digest,
    /// The config first, then the layers in order.
    pub blobs: Vec<Blob>,
}

pub fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The image tagged `tag` (`org.opencontainers.image.ref.name`) in `layout`.
pub fn image(layout: &Path, tag: &str) -> Image {
    let index = json(&layout.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))
        .clone();
    image_at(layout, &desc)
}

/// The image a descriptor names (the only one if `tag` is `None`).
pub fn image_at(layout: &Path, desc: &Value) -> Image {
    let digest = Digest::parse(desc["digest"].as_str().unwrap()).unwrap();
    let kind = ManifestKind::from_media_type(desc["mediaType"].as_str().unwrap()).unwrap();
    let manifest = std::fs::read(blob_path(layout, &digest)).unwrap();
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = Vec::new();
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        let digest = Digest::parse(d["digest"].as_str().unwrap()).unwrap();
        blobs.push(Blob {
            digest,
            size: d["size"].as_u64().unwrap(),
            path: blob_path(layout, &digest),
        });
    }
    Image {
        kind,
        manifest,
        digest,
        blobs,
    }
}

/// The single image of a layout written by `skopeo copy ... oci:DIR:TAG`.
pub fn only_image(layout: &Path) -> Image {
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    image_at(layout, &manifests[0])
}
