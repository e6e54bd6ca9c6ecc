//! Transports: where images come from ([`ImageSource`]) and go to ([`ImageDestination`]).
//!
//! # Words
//! - A **source** holds one or more images. It *lists* them ([`ImageSummary`]: names,
//!   image ID, position), *opens* one ([`SourceImage`]: the raw config bytes, the stored
//!   manifest if any, one [`LayerInfo`] per layer) and *streams* a layer's blob
//!   ([`LayerStream`], verified as it is read).
//! - A **destination** receives images one at a time: the config ([`begin_image`]), then
//!   each layer, either *reused* (it says it already has a layer with this chain ID, blob
//!   or diffID, and the source layer is never opened) or *put* (streamed in), then the
//!   image's record ([`end_image`]: the layers as stored, its names); finally *commit*
//!   makes every image visible at once. A destination dropped before `commit` leaves
//!   nothing visible (at most unreferenced, content-addressed blobs).
//!
//! [`begin_image`]: ImageDestination::begin_image
//! [`end_image`]: ImageDestination::end_image
//!
//! # The life of a copy
//! ```
//! use strata_image::{copy, CopyOptions, ImageDestination, ImageSource, Transport, OpenOptions};
//! # fn main() -> Result<(), strata_image::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let src = dir.path().join("src");
//! # strata_image::testing::write_tiny_layout(&src)?;
//! let open = OpenOptions::default();
//! let source: Transport = format!("oci:{}:tiny", src.display()).parse()?;
//! let dest: Transport = format!("docker-archive:{}/out.tar:example/tiny:1", dir.path().display()).parse()?;
//! let mut from = source.open_source(&open)?;
//! let mut to = dest.open_destination(&open)?;
//! // Which image: the transport's own reference (`:tiny`), else the only one.
//! let report = copy(from.as_mut(), to.as_mut(), &CopyOptions::new(source.selector()))?;
//! assert_eq!(report.images.len(), 1);
//! # Ok(()) }
//! ```
//! Inside [`copy`](crate::copy), for each image: `begin_image(config)`; for each layer
//! (on up to `layer_jobs()` threads), `reuse_layer(info)` and, only if that says no,
//! `put_layer(source.layer(..))`; `end_image(record)`; after the last image, `commit()`.
//!
//! The store (`strata:IMAGE`) and the registry (`docker://REF`) are transports too:
//! they implement these two traits.
//!
//! # Implementing a destination
//! - `reuse_layer` gets the layer's [`LayerInfo`]: its `chain_id` names the stack of it
//!   and every layer below (a store keys applied layers by it), `blob.digest` the blob as
//!   the source stores it (a registry or layout can look that up), `diff_id` the tar.
//!   The parent of layer `i` is the `chain_id` of layer `i - 1` of the same image.
//! - `put_layer` takes the stream in the form it keeps: [`LayerStream::tar`] (or
//!   [`LayerStream::tar_pipelined`], which decompresses on another thread) for the
//!   uncompressed tar, [`LayerStream::blob`] for the bytes as stored. It reads to the end
//!   and calls `finish()`, which fails on any digest or diffID mismatch; only then may the
//!   layer count as stored (a store applies into staging and keeps it only on success).
//! - With [`layer_jobs`](ImageDestination::layer_jobs) above 1, several layers of one
//!   image arrive at once from different threads, in any order (a store applying into
//!   separate staging directories, a registry uploading in parallel); keep the state they
//!   share behind a lock.
//! - `end_image` and `commit` should be cheap and all-or-nothing: everything heavy is
//!   already in place when they run.

use std::fmt;

use crate::config::ImageConfig;
use crate::ids::{DiffId, Digest, ImageId};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Reference;
use crate::stream::{LayerInfo, LayerStream};
use crate::Error;

/// One image of a source, as its listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Position in the source's own order; what `@N` selects.
    pub index: usize,
    /// The image ID (sha256 of the config).
    pub id: ImageId,
    /// Names it has there, normalized.
    pub names: Vec<Reference>,
    /// The names exactly as the source records them (`RepoTags` entries, OCI
    /// `org.opencontainers.image.ref.name` values such as a bare tag).
    pub ref_names: Vec<String>,
}

/// The manifest a source stores for an image, kept as its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawManifest {
    /// The manifest's media type (a Docker or OCI manifest).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The manifest exactly as stored.
    pub bytes: Vec<u8>,
}

impl RawManifest {
    /// Whether this is a `media_type` manifest that names exactly this config and these
    /// layers (digests, sizes and media types): a destination that stores what it names
    /// may keep its bytes, and so its digest.
    pub fn describes(&self, media_type: &str, config: &Descriptor, layers: &[Descriptor]) -> bool {
        self.media_type == media_type
            && Manifest::parse(&self.bytes, &self.media_type, "the source manifest").is_ok_and(
                |parsed| {
                    parsed.config.digest == config.digest
                        && parsed.layers.len() == layers.len()
                        && parsed.layers.iter().zip(layers).all(|(a, b)| {
                            a.digest == b.digest && a.media_type == b.media_type && a.size == b.size
                        })
                },
            )
    }
}

/// An opened image of a source.
#[derive(Clone, Debug)]
pub struct SourceImage {
    /// Which image this is.
    pub summary: ImageSummary,
    /// Its config, raw bytes kept.
    pub config: ImageConfig,
    /// The manifest as stored, if the source has one (OCI layouts, registries, Docker 25+
    /// archives); destinations that keep manifests may reuse it when nothing changed.
    pub manifest: Option<RawManifest>,
    /// One per diffID of the config, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The parent image recorded in the source (docker-archive `Parent`), if any.
    pub parent: Option<ImageId>,
}

/// An entry of a source that is not an image Strata copies (an artifact, a signature, an
/// attestation, another platform only), or that cannot be read; listing passes over it
/// so that it blocks no other image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Position in the source's own order (what `@N` would select).
    pub index: usize,
    /// The digest of the entry (its manifest, or the blob that is not one).
    pub digest: Digest,
    /// The name the source records for it (an OCI ref name), if any.
    pub ref_name: Option<String>,
    /// Why it is not copied: `an artifact (application/example.sbom)`.
    pub reason: String,
    /// It could not be read at all (a missing or corrupt blob), so it may be a broken
    /// image: "the only image" is then ambiguous.
    pub unreadable: bool,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.index)?;
        if let Some(n) = &self.ref_name {
            write!(f, " `{n}`")?;
        }
        write!(f, " ({}): {}", self.digest, self.reason)
    }
}

impl SourceImage {
    /// The manifest the source stores, else the Docker schema 2 manifest that describes
    /// its config and layers as the source holds them (what skopeo shows for a
    /// `docker save` archive, which stores none).
    pub fn manifest_or_schema2(&self) -> Result<RawManifest, Error> {
        use crate::manifest::{media_type, LayerType};
        if let Some(m) = &self.manifest {
            return Ok(m.clone());
        }
        let layers = self
            .layers
            .iter()
            .map(|l| {
                // A zstd foreign layer has no Docker name: shown as the gzip one.
                let docker =
                    LayerType::of(&l.blob.media_type).map_or(l.blob.media_type.as_str(), |t| {
                        t.docker_media_type()
                            .unwrap_or(media_type::DOCKER_FOREIGN_GZIP)
                    });
                let mut d = l.foreign.clone().unwrap_or_else(|| l.blob.clone());
                d.media_type = docker.to_string();
                d
            })
            .collect();
        let mut manifest = Manifest::oci(
            Descriptor::new(
                media_type::DOCKER_CONFIG,
                self.config.id().0,
                self.config.raw().len() as u64,
            ),
            layers,
        );
        manifest.media_type = Some(media_type::DOCKER_MANIFEST.to_string());
        let bytes = crate::gojson::marshal(&manifest)?;
        Ok(RawManifest {
            media_type: media_type::DOCKER_MANIFEST.to_string(),
            digest: strata_layer::digest::sha256(&bytes),
            bytes,
        })
    }
}

/// Which images to take from a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSelector {
    /// The only image; an error if the source holds none or several.
    Only,
    /// The image with this name: a recorded ref name exactly, else a reference that
    /// normalizes to one of its names (`busybox` matches `docker.io/library/busybox:latest`).
    Named(String),
    /// The image at this position (`@N`).
    Index(usize),
    /// Every image.
    All,
}

/// A layer as a destination stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLayer {
    /// The blob as stored there (for an archive: the uncompressed tar).
    pub blob: Descriptor,
    /// The layer's diffID (sha256 of its tar).
    pub diff_id: DiffId,
}

/// Everything a destination needs to record one image, once its layers are in.
#[derive(Clone, Copy, Debug)]
pub struct ImageRecord<'a> {
    /// The image's config, stored as its raw bytes.
    pub config: &'a ImageConfig,
    /// As returned by `reuse_layer`/`put_layer`, bottom first.
    pub layers: &'a [StoredLayer],
    /// The source's layer descriptors, for destinations that keep foreign descriptors.
    pub source_layers: &'a [LayerInfo],
    /// The names the image had in the source (a destination with a reference of its own,
    /// such as `docker-archive:FILE:name:tag`, uses that instead).
    pub names: &'a [Reference],
    /// The parent image the source records (a `docker save` archive's `Parent`), if any.
    pub parent: Option<ImageId>,
    /// The source's manifest, if it had one.
    pub source_manifest: Option<&'a RawManifest>,
}

/// Where images come from. See the [module documentation](self) for the lifecycle.
///
/// [`layer`](Self::layer) takes `&self` and may be called from several threads at once
/// (one per layer being copied), hence `Sync`.
pub trait ImageSource: Send + Sync {
    /// Names the source in messages: `docker-archive:/tmp/x.tar`.
    fn describe(&self) -> String;

    /// Every image the source holds, in its own order.
    fn list(&mut self) -> Result<Vec<ImageSummary>, Error>;

    /// The entries [`list`](Self::list) passed over, and why (an OCI layout's artifacts,
    /// signatures, attestations). Default: none.
    fn skipped(&mut self) -> Result<Vec<Skipped>, Error> {
        Ok(Vec::new())
    }

    /// What the source accepted that a careful reader may want to hear about (a manifest
    /// whose own media type differs from its descriptor's). Default: nothing.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Opens one listed image: reads and verifies its config (and manifest), and
    /// describes its layers. Fails if the image is inconsistent (layer count, media
    /// types, digests of small blobs).
    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error>;

    /// Streams layer `index` of `image` as stored. The stream verifies the blob digest
    /// and the diffID as it is read ([`LayerStream`]).
    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error>;
}

/// Where images go. See the [module documentation](self) for the lifecycle.
///
/// [`reuse_layer`](Self::reuse_layer) and [`put_layer`](Self::put_layer) take `&self`:
/// a destination whose [`layer_jobs`](Self::layer_jobs) is above 1 gets them from that
/// many threads at once, for different layers of the current image, in any order. With
/// 1 (the default), they come one at a time, bottom layer first.
pub trait ImageDestination: Send + Sync {
    /// Names the destination in messages.
    fn describe(&self) -> String;

    /// How many layers of an image this destination takes at once (1: one after the
    /// other, in order, as an archive written front to back needs).
    fn layer_jobs(&self) -> usize {
        1
    }

    /// How many layers a copy taking [`layer_jobs`](Self::layer_jobs) at once (`jobs`,
    /// above 1) hands this destination at once: `jobs` (the default), or more for a
    /// destination that counts a layer waiting for its parent as not running and runs at
    /// most `jobs` of the others (the store).
    fn layers_in_hand(&self, jobs: usize) -> usize {
        jobs
    }

    /// Whether layers taken at once may also finish in any order (a registry, a layout
    /// directory: blobs side by side). A copy then starts the largest layers first, so
    /// the longest transfer is not the last to begin. Default: no (a store applies each
    /// layer on its parent).
    fn any_order(&self) -> bool {
        false
    }

    /// Starts an image: its config, stored as its raw bytes.
    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error>;

    /// Says whether the destination already has layer `layer` of the current image (by
    /// chain ID for a store, by blob digest or diffID for a layout or an archive). When
    /// it returns the stored layer, the source layer is never opened.
    fn reuse_layer(&self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error>;

    /// Receives a layer of the current image. The destination reads the stream to its end
    /// (which verifies it) before it returns.
    fn put_layer(&self, layer: LayerStream<'_>) -> Result<StoredLayer, Error>;

    /// Ends the current image. Nothing is visible before [`commit`](Self::commit).
    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error>;

    /// Makes every ended image visible, atomically (one rename, one transaction).
    fn commit(&mut self) -> Result<(), Error>;
}

/// Picks the images `selector` names from `images` (a source's listing); `skipped` (the
/// entries the listing passed over) explains why a name or `@N` that points at one of
/// them selects nothing.
pub fn select(
    source: &str,
    images: Vec<ImageSummary>,
    skipped: &[Skipped],
    selector: &ImageSelector,
) -> Result<Vec<ImageSummary>, Error> {
    let fail = |reason: String| Error::Selection {
        source_name: source.to_string(),
        reason,
    };
    let listing = |images: &[ImageSummary]| {
        images
            .iter()
            .map(|i| match i.ref_names.first() {
                Some(n) => format!("@{} {n}", i.index),
                None => format!("@{} {}", i.index, i.id),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Why there is no image to take: what was passed over, at most a few of them.
    let none = || {
        let mut why = "it holds no images".to_string();
        if !skipped.is_empty() {
            let shown: Vec<String> = skipped.iter().take(4).map(|s| s.to_string()).collect();
            why.push_str(&format!(" (passed over: {}", shown.join("; ")));
            if skipped.len() > shown.len() {
                why.push_str(&format!("; and {} more", skipped.len() - shown.len()));
            }
            why.push(')');
        }
        fail(why)
    };
    let not_an_image = |s: &Skipped| {
        if s.unreadable {
            fail(s.to_string())
        } else {
            fail(format!("{s}; Strata copies images only"))
        }
    };
    match selector {
        ImageSelector::All => {
            if images.is_empty() {
                return Err(none());
            }
            Ok(images)
        }
        ImageSelector::Only => {
            let unreadable: Vec<&Skipped> = skipped.iter().filter(|s| s.unreadable).collect();
            match (images.len(), unreadable.len()) {
                (0, 1) if skipped.len() == 1 => Err(not_an_image(unreadable[0])),
                (0, _) => Err(none()),
                (1, 0) => Ok(images),
                (1, _) => Err(fail(format!(
                    "it holds one image ({}) and {} entries that cannot be read ({}); name one \
                     (`:REF` or `:@N`)",
                    listing(&images),
                    unreadable.len(),
                    unreadable
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))),
                (n, _) => Err(fail(format!(
                    "it holds {n} images ({}); name one (`:REF` or `:@N`)",
                    listing(&images)
                ))),
            }
        }
        ImageSelector::Index(i) => {
            let n = images.len();
            if let Some(s) = skipped.iter().find(|s| s.index == *i) {
                return Err(not_an_image(s));
            }
            images
                .into_iter()
                .find(|s| s.index == *i)
                .map(|s| vec![s])
                .ok_or_else(|| fail(format!("there is no image @{i} (it holds {n})")))
        }
        ImageSelector::Named(name) => {
            let exact: Vec<ImageSummary> = images
                .iter()
                .filter(|s| s.ref_names.iter().any(|r| r == name))
                .cloned()
                .collect();
            let found = if exact.is_empty() {
                match Reference::parse(name) {
                    Ok(r) => images
                        .iter()
                        .filter(|s| s.names.contains(&r))
                        .cloned()
                        .collect(),
                    Err(_) => Vec::new(),
                }
            } else {
                exact
            };
            if found.is_empty() {
                if let Some(s) = skipped
                    .iter()
                    .find(|s| s.ref_name.as_deref() == Some(name.as_str()))
                {
                    return Err(not_an_image(s));
                }
            }
            match found.len() {
                0 => Err(fail(format!(
                    "no image is named `{name}` (it holds {})",
                    listing(&images)
                ))),
                1 => Ok(found),
                _ => Err(fail(format!(
                    "several images are named `{name}` ({}); pick one with `:@N`",
                    listing(&found)
                ))),
            }
        }
    }
}

impl fmt::Display for ImageSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSelector::Only => f.write_str("the only image"),
            ImageSelector::Named(n) => write!(f, "`{n}`"),
            ImageSelector::Index(i) => write!(f, "@{i}"),
            ImageSelector::All => f.write_str("every image"),
        }
    }
}
