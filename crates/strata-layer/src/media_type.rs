//! The media types of images and layers (image-formats §5): the one table every crate
//! names them from, and what a layer media type says about its blob ([`LayerType`]).
//!
//! A descriptor's media type tells a reader how to treat the blob it points at: a
//! manifest or an index (JSON), a config (JSON), or a layer (a tar, maybe compressed,
//! maybe "foreign": kept outside the image's own store). OCI and Docker schema 2 name
//! the same things differently; both are here, side by side.
//!
//! ```
//! use strata_layer::compress::Compression;
//! use strata_layer::media_type::{LayerType, DOCKER_LAYER_GZIP, OCI_LAYER_GZIP};
//! let t = LayerType::of(DOCKER_LAYER_GZIP).unwrap();
//! assert_eq!(t.compression, Compression::Gzip);
//! assert_eq!(t.oci_media_type(), OCI_LAYER_GZIP);
//! assert!(LayerType::of("application/json").is_none());
//! ```

use crate::compress::Compression;

/// An OCI image index: a list of manifests, one per platform (or per tag in a layout).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest: a config and its layers.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config (the JSON whose sha256 is the image ID).
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI layer: an uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// An OCI layer: a gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An OCI layer: a zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// An OCI non-distributable layer (its blob lives at its `urls`): an uncompressed tar.
pub const OCI_FOREIGN: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// An OCI non-distributable layer: a gzip-compressed tar.
pub const OCI_FOREIGN_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// An OCI non-distributable layer: a zstd-compressed tar.
pub const OCI_FOREIGN_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The empty descriptor's media type (`{}`), used where a config is required but none
/// exists (artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// A Docker manifest list: the Docker name of an index.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker schema 2 manifest: the same shape as an OCI manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A signed Docker schema 1 manifest (refused: it names layers by blob digest only).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// An unsigned Docker schema 1 manifest (refused, as [`DOCKER_SCHEMA1`]).
pub const DOCKER_SCHEMA1_UNSIGNED: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A Docker layer: an uncompressed tar.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A Docker layer: a gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A Docker layer: a zstd-compressed tar.
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// A Docker foreign layer (a Windows base layer fetched from its `urls`): a tar.
pub const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// A Docker foreign layer: a gzip-compressed tar.
pub const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// What a layer media type says about its blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerType {
    /// How the tar is compressed.
    pub compression: Compression,
    /// A non-distributable ("foreign") layer, usually a Windows base layer whose blob
    /// lives at its `urls`, not in the image's own store.
    pub foreign: bool,
}

impl LayerType {
    /// The layer type of a media type, `None` if it is not a layer media type Strata knows.
    pub fn of(media_type: &str) -> Option<LayerType> {
        let (compression, foreign) = match media_type {
            OCI_LAYER | DOCKER_LAYER => (Compression::None, false),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => (Compression::Gzip, false),
            OCI_LAYER_ZSTD | DOCKER_LAYER_ZSTD => (Compression::Zstd, false),
            OCI_FOREIGN | DOCKER_FOREIGN => (Compression::None, true),
            OCI_FOREIGN_GZIP | DOCKER_FOREIGN_GZIP => (Compression::Gzip, true),
            OCI_FOREIGN_ZSTD => (Compression::Zstd, true),
            _ => return None,
        };
        Some(LayerType {
            compression,
            foreign,
        })
    }

    /// A plain (distributable) layer of this compression.
    pub fn plain(compression: Compression) -> LayerType {
        LayerType {
            compression,
            foreign: false,
        }
    }

    /// The OCI media type for this kind of layer.
    pub fn oci_media_type(self) -> &'static str {
        match (self.foreign, self.compression) {
            (false, Compression::None) => OCI_LAYER,
            (false, Compression::Gzip) => OCI_LAYER_GZIP,
            (false, Compression::Zstd) => OCI_LAYER_ZSTD,
            (true, Compression::None) => OCI_FOREIGN,
            (true, Compression::Gzip) => OCI_FOREIGN_GZIP,
            (true, Compression::Zstd) => OCI_FOREIGN_ZSTD,
        }
    }

    /// The Docker schema 2 media type for this kind of layer; `None` for a zstd foreign
    /// layer, which Docker has no name for.
    pub fn docker_media_type(self) -> Option<&'static str> {
        Some(match (self.foreign, self.compression) {
            (false, Compression::None) => DOCKER_LAYER,
            (false, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (false, Compression::Zstd) => DOCKER_LAYER_ZSTD,
            (true, Compression::None) => DOCKER_FOREIGN,
            (true, Compression::Gzip) => DOCKER_FOREIGN_GZIP,
            (true, Compression::Zstd) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_type_names_itself_back() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            for foreign in [false, true] {
                let t = LayerType {
                    compression: c,
                    foreign,
                };
                assert_eq!(LayerType::of(t.oci_media_type()), Some(t));
                if let Some(docker) = t.docker_media_type() {
                    assert_eq!(LayerType::of(docker), Some(t));
                }
            }
        }
        assert_eq!(
            LayerType::plain(Compression::Zstd).oci_media_type(),
            OCI_LAYER_ZSTD
        );
        assert_eq!(LayerType::of(OCI_CONFIG), None);
    }
}
