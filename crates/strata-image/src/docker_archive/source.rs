//! Reading docker-archives (image-formats §4, Strata's rules in §4.4).

use std::io::Read;
use std::path::Path;

use strata_layer::compress::Compression;

use super::{LayerSource, ManifestEntry};
use crate::archive::Span;
use crate::config::ImageConfig;
use crate::ids::{sha256, Digest, ImageId};
use crate::manifest::{Descriptor, LayerType, Platform};
use crate::oci::{self, ArchiveStore, BlobStore, OciEntry};
use crate::reference::Reference;
use crate::stream::{LayerInfo, LayerStream};
use crate::transport::{ImageSource, ImageSummary, Skipped, SourceImage};
use crate::Error;

/// Where an image of the archive is described.
#[derive(Clone, Debug)]
enum Origin {
    /// By `manifest.json` alone: config and layers are member paths.
    Manifest {
        config: Vec<u8>,
        layers: Vec<String>,
        layer_sources: Vec<(String, LayerSource)>,
    },
    /// By `index.json` (with or without a matching `manifest.json` entry).
    Oci(Box<OciEntry>),
}

#[derive(Clone, Debug)]
struct ArchiveImage {
    summary: ImageSummary,
    origin: Origin,
    parent: Option<ImageId>,
}

/// A docker-archive as a source.
pub struct DockerArchiveSource {
    store: ArchiveStore,
    images: Vec<ArchiveImage>,
    /// Entries of `index.json` passed over, when there is no `manifest.json`.
    skipped: Vec<Skipped>,
    warnings: Vec<String>,
}

impl DockerArchiveSource {
    /// Opens and indexes the archive at `path` (spooled to `staging` if it is a pipe or
    /// compressed), and reads its `manifest.json` and, when it holds an OCI layout
    /// (`oci-layout`), its `index.json` for `platform`.
    pub fn open(
        path: &Path,
        staging: &Path,
        platform: &Platform,
    ) -> Result<DockerArchiveSource, Error> {
        let store = ArchiveStore {
            archive: crate::archive::Archive::open(path, staging)?,
            transport: "docker-archive",
        };
        let mut warnings = Vec::new();
        let mut skipped = Vec::new();
        let images = read_images(&store, platform, &mut skipped, &mut warnings)?;
        Ok(DockerArchiveSource {
            store,
            images,
            skipped,
            warnings,
        })
    }

    fn bad(&self, what: String) -> Error {
        Error::BadArchive {
            archive: self.store.archive.path().to_owned(),
            what,
        }
    }

    fn locate(&self, member: &str, what: &str) -> Result<Span, Error> {
        self.store
            .archive
            .locate(member)?
            .ok_or_else(|| self.bad(format!("{what} `{member}` is missing")))
    }
}

fn bad(store: &ArchiveStore, what: String) -> Error {
    Error::BadArchive {
        archive: store.archive.path().to_owned(),
        what,
    }
}

/// The archive's images; entries of `index.json` that are not images are passed over
/// (`manifest.json` is what Docker reads), what was accepted with a doubt goes to
/// `warnings`.
fn read_images(
    store: &ArchiveStore,
    platform: &Platform,
    skipped: &mut Vec<Skipped>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ArchiveImage>, Error> {
    let archive = &store.archive;
    let has_layout = archive.has("oci-layout");
    let manifest = archive.read_small("manifest.json")?;
    let entries: Option<Vec<ManifestEntry>> = match &manifest {
        None if !has_layout && archive.has("repositories") => {
            return Err(bad(
                store,
                "it does not contain a manifest.json: it is a pre-1.10 archive (`repositories` \
                 and `<id>/json` only), which Docker 29 and skopeo refuse too; load it with \
                 Docker 28 or older and save it again"
                    .into(),
            ))
        }
        None if !has_layout => {
            return Err(bad(store, "it does not contain a manifest.json".into()))
        }
        None => None,
        Some(bytes) => {
            let parsed: Option<Vec<ManifestEntry>> = crate::gojson::from_slice(bytes)
                .map_err(|e| Error::json(format!("manifest.json of {}", store.describe()), e))?;
            Some(parsed.ok_or_else(|| bad(store, "its manifest.json is `null`".into()))?)
        }
    };
    let mut oci_entries = if has_layout {
        let listing = oci::list(store, platform)?;
        // An archive is no layout with referrers beside its images: an entry of its
        // index.json that cannot be read (the wanted platform's manifest absent) is an
        // error, as it always was.
        if let Some(s) = listing.skipped.iter().find(|s| s.unreadable) {
            return Err(bad(store, format!("its index.json entry {s}")));
        }
        warnings.extend(listing.warnings);
        if entries.is_none() {
            *skipped = listing.skipped;
        }
        listing.images
    } else {
        Vec::new()
    };
    let mut images = Vec::new();
    let mut parents = Vec::new();
    for (i, entry) in entries.iter().flatten().enumerate() {
        let what = format!("image {i} of manifest.json");
        let config = archive.read_small(&entry.config)?.ok_or_else(|| {
            bad(
                store,
                format!("the config `{}` of {what} is missing", entry.config),
            )
        })?;
        let id = ImageId(sha256(&config));
        let mut names = Vec::new();
        let mut ref_names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            names.push(repo_tag(store, tag)?);
            ref_names.push(tag.clone());
        }
        // index.json has one entry per tag; they are all this image.
        let (same, others): (Vec<OciEntry>, Vec<OciEntry>) = std::mem::take(&mut oci_entries)
            .into_iter()
            .partition(|e| e.summary.id == id);
        oci_entries = others;
        for oci in &same {
            check_agreement(store, entry, oci, id)?;
            merge(&mut names, &oci.summary.names);
            merge(&mut ref_names, &oci.summary.ref_names);
        }
        let origin = match same.into_iter().next() {
            Some(oci) => Origin::Oci(Box::new(oci)),
            None => Origin::Manifest {
                config,
                layers: entry.layers.clone(),
                layer_sources: entry.layer_sources.clone().into_iter().collect(),
            },
        };
        parents.push(entry.parent.clone());
        images.push(ArchiveImage {
            summary: ImageSummary {
                index: images.len(),
                id,
                names,
                ref_names,
            },
            origin,
            parent: None,
        });
    }
    // Images only index.json knows (containerd writes both files; Docker 25 could omit
    // an untagged image from index.json, never the other way round).
    for mut oci in oci_entries {
        if let Some(img) = images.iter_mut().find(|i| i.summary.id == oci.summary.id) {
            merge(&mut img.summary.names, &oci.summary.names);
            merge(&mut img.summary.ref_names, &oci.summary.ref_names);
            continue;
        }
        oci.summary.index = images.len();
        parents.push(None);
        images.push(ArchiveImage {
            summary: oci.summary.clone(),
            origin: Origin::Oci(Box::new(oci)),
            parent: None,
        });
    }
    link_parents(store, &mut images, &parents)?;
    Ok(images)
}

/// Adds to `into` what `from` has that it lacks, in order.
fn merge<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(x.clone());
        }
    }
}

/// A `RepoTags` entry must be `name:tag` (Docker: "invalid tag").
fn repo_tag(store: &ArchiveStore, tag: &str) -> Result<Reference, Error> {
    let r = Reference::parse_name(tag)?;
    if r.tag().is_none() || r.digest().is_some() {
        return Err(bad(
            store,
            format!("its manifest.json has the RepoTags entry `{tag}`, which is not name:tag"),
        ));
    }
    Ok(r)
}

/// `manifest.json` and `index.json` must name the same layers for the same image.
fn check_agreement(
    store: &ArchiveStore,
    entry: &ManifestEntry,
    oci: &OciEntry,
    id: ImageId,
) -> Result<(), Error> {
    let disagree = |why: String| {
        bad(
            store,
            format!("manifest.json and index.json disagree about image {id}: {why}"),
        )
    };
    if entry.layers.len() != oci.parsed.layers.len() {
        return Err(disagree(format!(
            "{} layers in manifest.json, {} in its OCI manifest",
            entry.layers.len(),
            oci.parsed.layers.len()
        )));
    }
    for (i, (path, desc)) in entry.layers.iter().zip(&oci.parsed.layers).enumerate() {
        let by_path = store.archive.locate(path)?;
        let by_digest = store.archive.locate(&crate::ids::blob_path(&desc.digest))?;
        if by_path != by_digest {
            return Err(disagree(format!(
                "layer {i} is `{path}` in one and blob {} in the other",
                desc.digest
            )));
        }
    }
    Ok(())
}

/// Keeps the `Parent` links whose parent is another image of the archive and checks
/// each (image-formats §1.6).
fn link_parents(
    store: &ArchiveStore,
    images: &mut [ArchiveImage],
    parents: &[Option<String>],
) -> Result<(), Error> {
    for (i, parent) in parents.iter().enumerate() {
        let Some(p) = parent.as_deref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let p: ImageId = p.parse()?;
        if p == images[i].summary.id {
            continue;
        }
        let Some(j) = images.iter().position(|img| img.summary.id == p) else {
            continue;
        };
        let (parent_config, child_config) =
            (config_of(store, &images[j])?, config_of(store, &images[i])?);
        if !parent_config.is_valid_parent_of(&child_config) {
            return Err(bad(
                store,
                format!(
                    "image {p} is not a valid parent for {}",
                    images[i].summary.id
                ),
            ));
        }
        images[i].parent = Some(p);
    }
    Ok(())
}

fn config_of(store: &ArchiveStore, image: &ArchiveImage) -> Result<ImageConfig, Error> {
    let what = format!("image {} in {}", image.summary.id, store.describe());
    match &image.origin {
        Origin::Manifest { config, .. } => ImageConfig::parse(config.clone(), &what),
        Origin::Oci(e) => Ok(oci::open(store, e)?.config),
    }
}

impl ImageSource for DockerArchiveSource {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(self.images.iter().map(|i| i.summary.clone()).collect())
    }

    fn skipped(&mut self) -> Result<Vec<Skipped>, Error> {
        Ok(self.skipped.clone())
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        let img = self
            .images
            .get(image.index)
            .filter(|i| i.summary.id == image.id)
            .cloned()
            .ok_or_else(|| self.bad(format!("it has no image {}", image.id)))?;
        let (layers_paths, layer_sources) = match &img.origin {
            Origin::Oci(e) => {
                let mut opened = oci::open(&self.store, e)?;
                opened.summary = img.summary.clone();
                opened.parent = img.parent;
                return Ok(opened);
            }
            Origin::Manifest {
                layers,
                layer_sources,
                ..
            } => (layers.clone(), layer_sources.clone()),
        };
        let what = format!("image {} in {}", img.summary.id, self.describe());
        let config = config_of(&self.store, &img)?;
        let diffs = config.diff_ids();
        if diffs.len() != layers_paths.len() {
            return Err(Error::LayerCountMismatch {
                image: what,
                layers: layers_paths.len(),
                diff_ids: diffs.len(),
            });
        }
        let chains = config.chain_ids();
        let mut layers = Vec::with_capacity(layers_paths.len());
        for (i, path) in layers_paths.iter().enumerate() {
            let span = self.locate(path, &format!("layer {i} of {what}"))?;
            let mut head = [0u8; 8];
            let n = read_head(self.store.archive.reader(span), &mut head).map_err(|e| {
                Error::io(format!("cannot read `{path}` in {}", self.describe()), e)
            })?;
            let compression = Compression::detect(&head[..n]);
            let digest = match compression {
                Compression::None => diffs[i].0,
                _ => self.blob_digest(path, span)?,
            };
            let kind = LayerType {
                compression,
                foreign: false,
            };
            let foreign = layer_sources
                .iter()
                .find(|(d, s)| {
                    *d == diffs[i].to_string()
                        && LayerType::of(&s.media_type).is_some_and(|t| t.foreign)
                })
                .map(|(_, s)| foreign_descriptor(s))
                .transpose()?;
            layers.push(LayerInfo {
                index: i,
                blob: Descriptor::new(kind.oci_media_type(), digest, span.size),
                diff_id: diffs[i],
                chain_id: chains[i],
                foreign,
            });
        }
        Ok(SourceImage {
            summary: img.summary,
            config,
            manifest: None,
            layers,
            parent: img.parent,
        })
    }

    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        let img = self
            .images
            .get(image.summary.index)
            .ok_or_else(|| self.bad(format!("it has no image {}", image.summary.id)))?;
        match &img.origin {
            Origin::Oci(_) => oci::layer(&self.store, image, index),
            Origin::Manifest { layers, .. } => {
                let path = layers.get(index).ok_or_else(|| {
                    self.bad(format!("image {} has no layer {index}", image.summary.id))
                })?;
                let info = image.layers[index].clone();
                let span = self.locate(path, &format!("layer {index}"))?;
                let archive = &self.store.archive;
                Ok(
                    LayerStream::new(info, image.summary.id, archive.reader(span))
                        .with_mapped(move || archive.mapped(span)),
                )
            }
        }
    }
}

impl DockerArchiveSource {
    /// The digest of a compressed layer member: from a content-addressed name
    /// (`blobs/sha256/<hex>`, verified while streaming), else by hashing it once.
    fn blob_digest(&self, path: &str, span: Span) -> Result<Digest, Error> {
        if let Some(hex) = path.trim_start_matches("./").strip_prefix("blobs/sha256/") {
            if let Ok(d) = Digest::parse(&format!("sha256:{hex}")) {
                return Ok(d);
            }
        }
        let h = strata_layer::digest::Hasher::default();
        std::io::copy(
            &mut self.store.archive.reader(span),
            &mut h.writer(std::io::sink()),
        )
        .map_err(|e| Error::io(format!("cannot read `{path}` in {}", self.describe()), e))?;
        Ok(h.digest())
    }
}

fn read_head(mut r: impl Read, head: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn foreign_descriptor(s: &LayerSource) -> Result<Descriptor, Error> {
    let mut d = Descriptor::new(&s.media_type, Digest::parse(&s.digest)?, s.size);
    d.urls = s.urls.clone();
    Ok(d)
}
