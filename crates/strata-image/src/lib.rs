//! # strata-image: images, their IDs, and the transports that move them
//!
//! An image is a config (raw bytes, never re-serialized; their sha256 is the image ID),
//! a list of layers (each a tar, maybe compressed; the config names each by its diffID)
//! and names (`docker.io/library/busybox:latest`). This crate holds:
//!
//! - [`ids`]: validated digests, [`ids::DiffId`], [`ids::ChainId`], [`ids::ImageId`];
//!   [`v1`]: the legacy layer IDs of `docker save`;
//! - [`Reference`]: names normalized the way Docker users write them;
//! - [`ImageConfig`], and [`manifest`]: descriptors, manifests, indexes, media types,
//!   written as Go writes them ([`gojson`]);
//! - transports: [`ImageSource`] and [`ImageDestination`] (the words and the life of a
//!   copy are in [`transport`]), implemented here for `docker-archive:` (both layouts),
//!   `oci:`, `oci-archive:` and registries (`docker://`, [`registry`]), and [`copy`]
//!   between any two.
//!
//! ```
//! use strata_image::{copy, CopyOptions, OpenOptions, Transport};
//! # fn main() -> Result<(), strata_image::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # strata_image::testing::write_tiny_layout(&dir.path().join("layout"))?;
//! let options = OpenOptions::default();
//! let from: Transport = format!("oci:{}/layout:tiny", dir.path().display()).parse()?;
//! let to: Transport = format!("oci-archive:{}/tiny.tar", dir.path().display()).parse()?;
//! let (mut src, mut dst) = (from.open_source(&options)?, to.open_destination(&options)?);
//! let report = copy(src.as_mut(), dst.as_mut(), &CopyOptions::new(from.selector()))?;
//! println!("copied {} with {} layers", report.images[0].id, report.images[0].layers.len());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod archive;
pub mod build;
pub mod config;
mod copy;
pub mod docker_archive;
pub mod edit;
mod error;
pub mod gojson;
pub mod ids;
pub mod manifest;
pub mod oci;
pub mod oci_dest;
pub mod reference;
pub mod refs;
pub mod registry;
pub mod store;
pub mod stream;
mod tar_out;
#[doc(hidden)]
pub mod testing;
pub mod transport;
mod transports;
pub mod v1;

pub use config::ImageConfig;
pub use copy::{copy, CopiedImage, CopiedLayer, CopyOptions, CopyReport, Progress};
pub use error::Error;
pub use reference::Reference;
pub use registry::RegistryOptions;
pub use stream::{
    BlobOrigin, BlobStream, LayerInfo, LayerStream, TarStream, VerifiedBlob, VerifiedLayer,
};
pub use transport::{
    select, ImageDestination, ImageRecord, ImageSelector, ImageSource, ImageSummary, RawManifest,
    Skipped, SourceImage, StoredLayer,
};
pub use transports::{OpenOptions, Transport};
