//! Changing images without a daemon: `mutate` (config edits) and `append` (layers on top).
//!
//! # Words
//! - The **base** is the image read from a source, as it is.
//! - An **edit** is what changes: [`ConfigChanges`] (each recorded in `history`),
//!   manifest annotations, and layers added on top ([`layer::prepare`]: a directory
//!   packed deterministically, a tar taken as it is).
//! - The **edited source** ([`EditedSource`]) is an [`ImageSource`] that holds one image:
//!   the base with the edit applied. Its bottom layers are the base's own, streamed from
//!   the base's source when a destination asks for them; its added layers are files in
//!   staging.
//!
//! # The life of an edit
//! The new layers are prepared first (their digests name them in the config and the
//! manifest), the config is rewritten, and then the edited source is copied to any
//! destination with [`copy`](crate::copy). So an edit moves no layer bytes it need not:
//! a destination that has a base layer already (the same registry repository, the same
//! layout, a store with that chain) reuses it and the base layer is never read; a
//! registry mounts a base layer from another repository of the same registry. Nothing
//! is visible at the destination before the copy commits, so bad input (a bad flag, a
//! file that is not a tar) leaves it as it was.
//!
//! ```
//! use strata_image::edit::{ConfigChanges, EditOptions, EditedSource};
//! use strata_image::{copy, CopyOptions, ImageSelector, OpenOptions, Transport};
//! # fn main() -> Result<(), strata_image::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # strata_image::testing::write_tiny_layout(&dir.path().join("layout"))?;
//! let from: Transport = format!("oci:{}/layout:tiny", dir.path().display()).parse()?;
//! let to: Transport = format!("oci:{}/layout:edited", dir.path().display()).parse()?;
//! let open = OpenOptions::default();
//! let mut options = EditOptions::new(std::env::temp_dir());
//! options.changes.user = Some("1000".into());
//! let mut edited = EditedSource::new(from.open_source(&open)?, &from.selector(), &options)?;
//! let mut dest = to.open_destination(&open)?;
//! let report = copy(&mut edited, dest.as_mut(), &CopyOptions::new(ImageSelector::Only))?;
//! assert!(report.images[0].layers.iter().all(|l| l.reused)); // no layer was copied
//! # Ok(()) }
//! ```

pub mod config;
pub mod flatten;
pub mod index;
pub mod layer;
pub mod rebase;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use strata_layer::compress::Compression;

pub use config::ConfigChanges;
pub use layer::PreparedLayer;

use crate::gojson::{self, GoTime};
use crate::ids::{chain_ids, sha256};
use crate::manifest::{media_type, Descriptor, LayerType, Manifest};
use crate::stream::{BlobOrigin, LayerInfo, LayerStream};
use crate::transport::{
    select, ImageSelector, ImageSource, ImageSummary, RawManifest, SourceImage,
};
use crate::{Error, ImageConfig};

/// The image an edit made: the only one of its source, nameless, no parent recorded.
pub(crate) fn edited_image(
    config: ImageConfig,
    manifest: Option<RawManifest>,
    layers: Vec<LayerInfo>,
) -> SourceImage {
    SourceImage {
        summary: ImageSummary {
            index: 0,
            id: config.id(),
            names: Vec::new(),
            ref_names: Vec::new(),
        },
        config,
        manifest,
        layers,
        parent: None,
    }
}

/// The OCI manifest of `config` and `layers` (a foreign layer by its own descriptor),
/// with `annotations`, as Go would write it.
pub(crate) fn oci_manifest(
    config: &ImageConfig,
    layers: &[LayerInfo],
    annotations: BTreeMap<String, String>,
) -> Result<RawManifest, Error> {
    let mut m = Manifest::oci(
        Descriptor::new(
            media_type::OCI_CONFIG,
            config.id().0,
            config.raw().len() as u64,
        ),
        layers
            .iter()
            .map(|l| l.foreign.clone().unwrap_or_else(|| l.blob.clone()))
            .collect(),
    );
    m.annotations = annotations;
    let bytes = gojson::marshal(&m)?;
    Ok(RawManifest {
        media_type: media_type::OCI_MANIFEST.to_string(),
        digest: sha256(&bytes),
        bytes,
    })
}

/// What to change.
#[derive(Clone, Debug)]
pub struct EditOptions {
    /// The config changes, each recorded in history.
    pub changes: ConfigChanges,
    /// Manifest annotations to set (the base manifest's are kept); an image with
    /// annotations gets an OCI manifest.
    pub annotations: Vec<(String, String)>,
    /// Replace the base's layers with one: their merged filesystem, whiteouts applied
    /// ([`flatten::merge`]); the base's history entries are kept as empty ones.
    pub flatten: bool,
    /// Layers to add on top, bottom first: directories or tar files.
    pub layers: Vec<PathBuf>,
    /// The compression of added layers (a tar given in it is used as it is).
    pub compression: Compression,
    /// The config's `created` and that of every history entry added.
    pub created: GoTime,
    /// File times later than this are set to it in packed directories
    /// (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<i64>,
    /// Where packed layers are written (a temporary directory is made in it).
    pub staging: PathBuf,
}

impl EditOptions {
    /// No change; gzip layers; created now (or at `SOURCE_DATE_EPOCH`, see [`created`]).
    pub fn new(staging: PathBuf) -> EditOptions {
        let (created, clamp_mtime) = created(None).unwrap_or((GoTime::EPOCH, None));
        EditOptions {
            changes: ConfigChanges::default(),
            annotations: Vec::new(),
            flatten: false,
            layers: Vec::new(),
            compression: Compression::Gzip,
            created,
            clamp_mtime,
            staging,
        }
    }
}

/// The time an edit records: `flag` (RFC 3339, or seconds since the epoch), else
/// `SOURCE_DATE_EPOCH` (seconds), else now; and the time packed files are clamped to
/// (`SOURCE_DATE_EPOCH` or the flag, not now).
pub fn created(flag: Option<&str>) -> Result<(GoTime, Option<i64>), Error> {
    let parse = |what: &str, s: &str| -> Result<GoTime, Error> {
        if let Ok(secs) = s.trim().parse::<i64>() {
            return Ok(GoTime::utc(secs, 0));
        }
        GoTime::parse(s.trim()).ok_or_else(|| {
            Error::invalid(
                format!("{what} `{}`", s.escape_debug()),
                "is neither seconds since 1970 nor an RFC 3339 time (2024-01-02T03:04:05Z)",
            )
        })
    };
    if let Some(s) = flag {
        let t = parse("--created", s)?;
        return Ok((t, Some(t.secs)));
    }
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => {
            let t = parse("SOURCE_DATE_EPOCH", &s)?;
            Ok((GoTime::utc(t.secs, 0), Some(t.secs)))
        }
        _ => {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Ok((GoTime::utc(d.as_secs() as i64, 0), None))
        }
    }
}

/// One image: the base with an edit applied; see the [module documentation](self).
pub struct EditedSource {
    inner: Box<dyn ImageSource>,
    base: SourceImage,
    image: SourceImage,
    /// The base's layers kept at the bottom (all, or none when flattened).
    kept: usize,
    added: Vec<PreparedLayer>,
    warnings: Vec<String>,
    /// Holds the packed layers until the edited source is dropped.
    _staging: tempfile::TempDir,
}

/// Whether the base's layers are Docker's (so added layers are too, unless zstd).
fn docker_flavoured(base: &SourceImage) -> bool {
    match &base.manifest {
        Some(m) => m.media_type == media_type::DOCKER_MANIFEST,
        None => base
            .layers
            .iter()
            .all(|l| l.blob.media_type.starts_with("application/vnd.docker.")),
    }
}

fn docker_layer_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => media_type::DOCKER_LAYER,
        Compression::Gzip => media_type::DOCKER_LAYER_GZIP,
        Compression::Zstd => media_type::DOCKER_LAYER_ZSTD,
    }
}

/// `desc` with the OCI media type of its layer type.
fn oci_flavoured(desc: &Descriptor) -> Descriptor {
    let mut d = desc.clone();
    if let Some(t) = LayerType::of(&desc.media_type) {
        d.media_type = t.oci_media_type().to_string();
    }
    d
}

impl EditedSource {
    /// Opens the image `selector` names in `inner` and applies `options` to it.
    pub fn new(
        mut inner: Box<dyn ImageSource>,
        selector: &ImageSelector,
        options: &EditOptions,
    ) -> Result<EditedSource, Error> {
        let listed = inner.list()?;
        let skipped = inner.skipped()?;
        let chosen = select(&inner.describe(), listed, &skipped, selector)?;
        let [summary] = chosen.as_slice() else {
            return Err(Error::Selection {
                source_name: inner.describe(),
                reason: format!("{} images match; an edit takes one", chosen.len()),
            });
        };
        let base = inner.open_image(summary)?;
        let os = base.config.layer_os();
        if options.flatten && os == strata_store::Os::Windows {
            return Err(Error::Unsupported(format!(
                "{}: flattening a Windows image is refused: its layers are Windows layer \
                 diffs (Files/, Hives/, tombstones) on a base layer that is usually foreign \
                 (Microsoft's, not to be downloaded or pushed again), so one merged layer \
                 cannot be made without it; `strata append` adds layers to it instead",
                inner.describe()
            )));
        }
        let staging = tempfile::Builder::new()
            .prefix("strata-edit-")
            .tempdir_in(&options.staging)
            .map_err(|e| {
                Error::io(
                    format!("cannot make a directory in {}", options.staging.display()),
                    e,
                )
            })?;
        let mut added = Vec::new();
        let mut warnings = Vec::new();
        if options.flatten {
            let root = staging.path().join("rootfs");
            std::fs::create_dir(&root)
                .map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
            warnings = flatten::merge(inner.as_ref(), &base, &root)?;
            let mut merged = layer::prepare(
                &root,
                usize::MAX,
                staging.path(),
                options.compression,
                options.clamp_mtime,
                strata_store::Os::Linux,
            )?;
            merged.created_by = "strata flatten".into();
            added.push(merged);
            // The tree is packed: its space is given back now.
            std::fs::remove_dir_all(&root)
                .map_err(|e| Error::io(format!("cannot remove {}", root.display()), e))?;
        }
        for (n, path) in options.layers.iter().enumerate() {
            added.push(layer::prepare(
                path,
                n,
                staging.path(),
                options.compression,
                options.clamp_mtime,
                os,
            )?);
        }
        let mut draft = config::Draft::new(&base.config, options.created)?;
        if options.flatten {
            draft.drop_layers()?;
        }
        draft.apply(&options.changes)?;
        for l in &added {
            draft.add_layer(l.diff_id, &l.created_by)?;
        }
        let config = draft.finish()?;

        let mut annotations = match &base.manifest {
            Some(m) => Manifest::parse(&m.bytes, &m.media_type, "the base manifest")?.annotations,
            None => BTreeMap::new(),
        };
        annotations.extend(options.annotations.iter().cloned());
        let oci = !annotations.is_empty()
            || !docker_flavoured(&base)
            || options.compression == Compression::Zstd;
        let chains = chain_ids(config.diff_ids());
        let kept = if options.flatten {
            0
        } else {
            base.layers.len()
        };
        let mut layers: Vec<LayerInfo> = base.layers[..kept]
            .iter()
            .map(|l| {
                let mut l = l.clone();
                if oci {
                    l.blob = oci_flavoured(&l.blob);
                    l.foreign = l.foreign.as_ref().map(oci_flavoured);
                }
                l
            })
            .collect();
        let kind = LayerType {
            compression: options.compression,
            foreign: false,
        };
        for (n, l) in added.iter().enumerate() {
            let index = kept + n;
            let media = if oci {
                kind.oci_media_type()
            } else {
                docker_layer_type(options.compression)
            };
            layers.push(LayerInfo {
                index,
                blob: Descriptor::new(media, l.digest, l.size),
                diff_id: l.diff_id,
                chain_id: chains[index],
                foreign: None,
            });
        }
        let manifest = if annotations.is_empty() {
            None
        } else {
            Some(oci_manifest(&config, &layers, annotations)?)
        };
        warnings.extend(added.iter().flat_map(|l| l.warnings.clone()));
        let image = edited_image(config, manifest, layers);
        Ok(EditedSource {
            inner,
            base,
            image,
            kept,
            added,
            warnings,
            _staging: staging,
        })
    }

    /// The image as edited.
    pub fn image(&self) -> &SourceImage {
        &self.image
    }

    /// The image as it was.
    pub fn base(&self) -> &SourceImage {
        &self.base
    }

    /// The layers added, bottom first.
    pub fn added(&self) -> &[PreparedLayer] {
        &self.added
    }
}

impl ImageSource for EditedSource {
    fn describe(&self) -> String {
        format!("{} (edited)", self.inner.describe())
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(vec![self.image.summary.clone()])
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.inner.warnings();
        w.extend(self.warnings.iter().cloned());
        w
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        if image.id != self.image.summary.id {
            return Err(Error::invalid(
                self.describe(),
                format!("holds image {}, not {}", self.image.summary.id, image.id),
            ));
        }
        Ok(self.image.clone())
    }

    fn layer(&self, _image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        let info = self.image.layers.get(index).cloned().ok_or_else(|| {
            Error::invalid(self.describe(), format!("the image has no layer {index}"))
        })?;
        let below = self.kept;
        if index < below {
            return self.inner.layer(&self.base, index)?.relabel(info);
        }
        let added = &self.added[index - below];
        let file = std::fs::File::open(&added.path)
            .map_err(|e| Error::io(format!("cannot open {}", added.path.display()), e))?;
        Ok(LayerStream::new(info, self.image.summary.id, file)
            .with_origin(BlobOrigin::File(added.path.clone())))
    }
}

#[cfg(test)]
mod tests;
