//! Reading OCI image layouts (image-formats §5), as a directory (`oci:DIR`) or inside a
//! tar (`oci-archive:FILE`, and the OCI half of a Docker 25+ docker-archive).
//!
//! The entry point is `index.json`. Each of its descriptors that is an image manifest is
//! one image; one that is an index (multi-platform) is resolved to the manifest for the
//! wanted platform (the host's by default, else the one entry without a platform, as
//! skopeo picks). Everything else beside the images (artifacts, signatures, SBOMs,
//! `unknown/unknown` attestation manifests, referrers indexes, other media types, entries
//! whose blobs are missing) is passed over with its reason ([`Skipped`]), so that it
//! never blocks the copy of an image. Every blob read is checked against its digest and
//! size; blobs that are never read (other platforms, foreign layers) may be missing. A
//! manifest's own `mediaType` wins over its descriptor's (skopeo and go-containerregistry
//! read it so), with a warning.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use strata_layer::mapped::MappedFile;

use crate::archive::Archive;
use crate::config::{ImageConfig, MAX_JSON};
use crate::ids::{blob_path, sha256, Digest};
use crate::manifest::{annotation, Descriptor, Index, Manifest, ManifestKind, Platform};
use crate::reference::Reference;
use crate::stream::{BlobOrigin, LayerInfo, LayerStream};
use crate::transport::{ImageSource, ImageSummary, RawManifest, Skipped, SourceImage};
use crate::Error;

/// The `oci-layout` Strata writes (no space; the §3.1 Docker variant has one).
pub const LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where the files of a layout are: a directory or an archive.
pub(crate) trait BlobStore: Send + Sync {
    fn describe(&self) -> String;
    /// A small file (JSON) by its name in the layout; `None` if absent.
    fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    /// The blob's size on disk; `None` if absent.
    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, Error>;
    /// The blob's bytes, streamed.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>, Error>;
    /// The file that is exactly the blob, when there is one (a directory's blobs).
    fn blob_file(&self, _digest: &Digest) -> Option<PathBuf> {
        None
    }
    /// The blob leased to be read through memory maps, when it can be.
    fn map_blob(&self, digest: &Digest) -> Option<MappedFile<'static>>;
}

/// A layout directory.
pub(crate) struct DirStore {
    pub dir: PathBuf,
}

impl DirStore {
    /// Opens a file of the layout (`what` names it), `None` if absent. A symlink is
    /// followed (layouts may link blobs), but what it ends at must be a regular file:
    /// a FIFO would hang the reader and a device (`/dev/zero`) never end. The open does
    /// not block on a FIFO; the check is on the opened file (no race with a rename).
    fn open_regular(&self, path: &Path, what: &str) -> Result<Option<File>, Error> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
        let kind = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
            .file_type();
        if kind.is_file() {
            return Ok(Some(file));
        }
        let kind = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a file"
        };
        Err(Error::invalid(
            self.describe(),
            format!("{what} ({}) is {kind}, not a regular file", path.display()),
        ))
    }
}

impl BlobStore for DirStore {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.dir.join(name);
        let Some(file) = self.open_regular(&path, name)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        file.take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if out.len() as u64 > MAX_JSON {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("over the {MAX_JSON}-byte limit for metadata"),
            ));
        }
        Ok(Some(out))
    }

    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        let path = self.dir.join(blob_path(digest));
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot stat {}", path.display()), e)),
        }
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>, Error> {
        let path = self.dir.join(blob_path(digest));
        match self.open_regular(&path, &format!("blob {digest}"))? {
            Some(f) => Ok(Box::new(f)),
            None => Err(Error::io(
                format!("{}: cannot open blob {digest}", self.describe()),
                std::io::ErrorKind::NotFound.into(),
            )),
        }
    }

    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.dir.join(blob_path(digest)))
    }

    fn map_blob(&self, digest: &Digest) -> Option<MappedFile<'static>> {
        let path = self.dir.join(blob_path(digest));
        let file = self.open_regular(&path, "a blob").ok()??;
        MappedFile::lease(file).ok()
    }
}

/// A layout inside a tar archive.
pub(crate) struct ArchiveStore {
    pub archive: Archive,
    pub transport: &'static str,
}

impl BlobStore for ArchiveStore {
    fn describe(&self) -> String {
        format!("{}:{}", self.transport, self.archive.path().display())
    }

    fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.archive.read_small(name)
    }

    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        Ok(self.archive.locate(&blob_path(digest))?.map(|s| s.size))
    }

    fn map_blob(&self, digest: &Digest) -> Option<MappedFile<'static>> {
        self.archive
            .mapped(self.archive.locate(&blob_path(digest)).ok()??)
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>, Error> {
        match self.archive.locate(&blob_path(digest))? {
            Some(span) => Ok(Box::new(self.archive.reader(span))),
            None => Err(Error::BadArchive {
                archive: self.archive.path().to_owned(),
                what: format!("blob {digest} is missing"),
            }),
        }
    }
}

/// Reads a small blob whole and checks it against its descriptor.
pub(crate) fn read_blob(
    store: &dyn BlobStore,
    desc: &Descriptor,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if desc.size > MAX_JSON {
        return Err(Error::invalid(
            what,
            format!(
                "its descriptor claims {} bytes, over the {MAX_JSON}-byte limit",
                desc.size
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(desc.size as usize);
    store
        .open_blob(&desc.digest)?
        .take(MAX_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {what}"), e))?;
    if bytes.len() as u64 != desc.size {
        return Err(Error::BlobMismatch {
            what: format!("the size of {what}"),
            expected: format!("{} bytes", desc.size),
            got: format!("{} bytes", bytes.len()),
        });
    }
    let got = sha256(&bytes);
    if got != desc.digest {
        return Err(Error::BlobMismatch {
            what: format!("the digest of {what}"),
            expected: desc.digest.to_string(),
            got: got.to_string(),
        });
    }
    Ok(bytes)
}

/// One image found through `index.json`.
#[derive(Clone, Debug)]
pub(crate) struct OciEntry {
    pub summary: ImageSummary,
    pub manifest: RawManifest,
    pub parsed: Manifest,
}

/// The names an `index.json` descriptor gives its image.
pub(crate) fn names_of(desc: &Descriptor) -> (Vec<Reference>, Vec<String>) {
    let mut names = Vec::new();
    let mut refs = Vec::new();
    if let Some(n) = desc.annotations.get(annotation::REF_NAME) {
        refs.push(n.clone());
        // A bare tag (`latest`) names no repository; a full reference does.
        if n.contains(['/', ':', '@']) {
            if let Ok(r) = Reference::parse(n) {
                names.push(r);
            }
        }
    }
    if let Some(n) = desc.annotations.get(annotation::IMAGE_NAME) {
        refs.push(n.clone());
        if let Ok(r) = Reference::parse(n) {
            if !names.contains(&r) {
                names.push(r);
            }
        }
    }
    (names, refs)
}

/// The `index.json` entries for an image's manifest `desc` and `names` (the tagged ones):
/// one per name, with the tag as ref name and the full name as containerd's image name
/// (what Docker 25+ and containerd write); a bare entry when it has none.
pub(crate) fn index_entries(desc: &Descriptor, names: &[Reference]) -> Vec<Descriptor> {
    let tagged: Vec<&Reference> = names.iter().filter(|n| n.tag().is_some()).collect();
    if tagged.is_empty() {
        return vec![desc.clone()];
    }
    tagged
        .into_iter()
        .map(|n| {
            let mut d = desc.clone();
            d.annotations
                .insert(annotation::IMAGE_NAME.into(), n.to_string());
            d.annotations.insert(
                annotation::REF_NAME.into(),
                n.tag().unwrap_or_default().to_string(),
            );
            d
        })
        .collect()
}

/// What `index.json` holds: its images, the entries passed over, and warnings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listing {
    /// Each with its position in `index.json` as its [`ImageSummary::index`].
    pub images: Vec<OciEntry>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

/// Checks `oci-layout`, then lists the images of `index.json`: an entry that is not an
/// image, or cannot be read, is passed over (see the module documentation).
pub(crate) fn list(store: &dyn BlobStore, platform: &Platform) -> Result<Listing, Error> {
    let what = store.describe();
    let layout = store
        .read_small("oci-layout")?
        .ok_or_else(|| Error::invalid(&what, "not an OCI layout: it has no `oci-layout` file"))?;
    check_layout_version(&layout, &what)?;
    let index = store
        .read_small("index.json")?
        .ok_or_else(|| Error::invalid(&what, "not an OCI layout: it has no `index.json`"))?;
    let index = Index::parse(&index, &format!("index.json of {what}"))?;
    let mut out = Listing::default();
    for (position, top) in index.manifests.iter().enumerate() {
        let (names, ref_names) = names_of(top);
        let skip = |reason: String, unreadable: bool| Skipped {
            index: position,
            digest: top.digest,
            ref_name: ref_names.first().cloned(),
            reason,
            unreadable,
        };
        match resolve(store, top, platform, &mut out.warnings) {
            Ok(Ok((desc, bytes, parsed))) => out.images.push(OciEntry {
                summary: ImageSummary {
                    index: position,
                    id: crate::ids::ImageId(parsed.config.digest),
                    names,
                    ref_names,
                },
                manifest: RawManifest {
                    media_type: desc.media_type.clone(),
                    digest: desc.digest,
                    bytes,
                },
                parsed,
            }),
            Ok(Err(reason)) => out.skipped.push(skip(reason, false)),
            Err(e) => out.skipped.push(skip(e.to_string(), true)),
        }
    }
    Ok(out)
}

/// An image manifest as read: its descriptor (with the media type it says it has), its
/// bytes, and its parsed form.
type Resolved = (Descriptor, Vec<u8>, Manifest);

/// The image a top-level descriptor stands for on `platform`; `Ok(Err(why))` when it is
/// not one (an artifact, no image for the platform), `Err` when it cannot be read.
fn resolve(
    store: &dyn BlobStore,
    top: &Descriptor,
    platform: &Platform,
    warnings: &mut Vec<String>,
) -> Result<Result<Resolved, String>, Error> {
    let mut desc = top.clone();
    for _ in 0..4 {
        if ManifestKind::of(&desc.media_type) == ManifestKind::Other {
            return Ok(Err(format!(
                "its media type `{}` is neither an image manifest nor an index",
                desc.media_type
            )));
        }
        let what = format!("manifest {} in {}", desc.digest, store.describe());
        let bytes = read_blob(store, &desc, &what)?;
        let head: Head = crate::gojson::from_slice(&bytes).map_err(|e| Error::json(&what, e))?;
        if let Some(own) = head
            .media_type
            .clone()
            .filter(|own| *own != desc.media_type)
        {
            if ManifestKind::of(&own) == ManifestKind::Other {
                return Ok(Err(format!("it says it is `{own}`, not an image")));
            }
            let warning = format!(
                "{what} says it is `{own}` but is listed as `{}`; reading it as `{own}`",
                desc.media_type
            );
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
            desc.media_type = own;
        }
        if ManifestKind::of(&desc.media_type) == ManifestKind::Image {
            if let Some(why) = head.not_an_image() {
                return Ok(Err(why));
            }
            let parsed = Manifest::parse(&bytes, &desc.media_type, &what)?;
            return Ok(Ok((desc, bytes, parsed)));
        }
        let index = Index::parse(&bytes, &what)?;
        if let Some(t) = &index.artifact_type {
            return Ok(Err(format!("an index of artifacts (artifactType `{t}`)")));
        }
        desc = match pick_platform(&index, platform) {
            Ok(d) => d.clone(),
            Err(why) => return Ok(Err(why)),
        };
    }
    Err(Error::invalid(
        store.describe(),
        format!("indexes nested more than 4 deep under {}", top.digest),
    ))
}

/// The entry of `index` for `platform`: the first whose platform matches, else the first
/// without a platform (skopeo's choice); never an artifact or an `unknown/unknown`
/// attestation manifest.
fn pick_platform<'a>(index: &'a Index, platform: &Platform) -> Result<&'a Descriptor, String> {
    let candidates = || {
        index.manifests.iter().filter(|m| {
            ManifestKind::of(&m.media_type) != ManifestKind::Other
                && m.artifact_type.is_none()
                && !m
                    .platform
                    .as_ref()
                    .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
        })
    };
    let matches = |p: &Platform| {
        p.os == platform.os
            && p.architecture == platform.architecture
            && (platform.variant.is_none() || p.variant == platform.variant)
    };
    if let Some(m) = candidates()
        .find(|m| m.platform.as_ref().is_some_and(matches))
        .or_else(|| candidates().find(|m| m.platform.is_none()))
    {
        return Ok(m);
    }
    let offered: Vec<String> = candidates()
        .filter_map(|m| m.platform.as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    let mut wanted = format!("{}/{}", platform.os, platform.architecture);
    if let Some(v) = &platform.variant {
        wanted.push('/');
        wanted.push_str(v);
    }
    Err(if offered.is_empty() {
        "an index of artifacts only (referrers, signatures, attestations)".to_string()
    } else {
        format!(
            "it has no image for {wanted} (only {}; pick one with --platform)",
            offered.join(", ")
        )
    })
}

/// What a manifest or index says of itself, read leniently to tell images from the rest.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<HeadDescriptor>,
    #[serde(default, deserialize_with = "crate::config::null_default")]
    layers: Vec<HeadDescriptor>,
}

#[derive(serde::Deserialize)]
struct HeadDescriptor {
    #[serde(
        rename = "mediaType",
        default,
        deserialize_with = "crate::config::null_default"
    )]
    media_type: String,
}

impl Head {
    /// Why an image manifest is not an image Strata copies, if it is not.
    fn not_an_image(&self) -> Option<String> {
        use crate::manifest::{media_type, LayerType};
        let config = self.config.as_ref().map_or("", |c| c.media_type.as_str());
        if let Some(t) = &self.artifact_type {
            return Some(format!("an artifact (artifactType `{t}`)"));
        }
        if ![media_type::OCI_CONFIG, media_type::DOCKER_CONFIG].contains(&config) {
            return Some(format!("an artifact (its config is `{config}`)"));
        }
        self.layers
            .iter()
            .position(|l| LayerType::of(&l.media_type).is_none())
            .map(|i| {
                format!(
                    "not an image: layer {i} is `{}`, not a layer media type",
                    self.layers[i].media_type
                )
            })
    }
}

pub(crate) fn check_layout_version(layout: &[u8], what: &str) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let l: Layout = serde_json::from_slice(layout)
        .map_err(|e| Error::json(format!("oci-layout of {what}"), e))?;
    if l.version != "1.0.0" {
        return Err(Error::Unsupported(format!(
            "{what}: OCI layout version `{}` (Strata reads 1.0.0)",
            l.version
        )));
    }
    Ok(())
}

/// Opens an image listed by [`list`]: reads and checks its config and describes its
/// layers.
pub(crate) fn open(store: &dyn BlobStore, entry: &OciEntry) -> Result<SourceImage, Error> {
    let what = format!("image {} in {}", entry.summary.id, store.describe());
    let config = read_blob(
        store,
        &entry.parsed.config,
        &format!("the config of {what}"),
    )?;
    let config = ImageConfig::parse(config, &what)?;
    let layers = LayerInfo::of_image(&config, &entry.parsed.layers, &what)?;
    Ok(SourceImage {
        summary: entry.summary.clone(),
        config,
        manifest: Some(entry.manifest.clone()),
        layers,
        parent: None,
    })
}

/// Streams a layer blob from a store.
pub(crate) fn layer<'a>(
    store: &'a dyn BlobStore,
    image: &SourceImage,
    index: usize,
) -> Result<LayerStream<'a>, Error> {
    let info = image.layers.get(index).ok_or_else(|| {
        Error::invalid(
            store.describe(),
            format!("image {} has no layer {index}", image.summary.id),
        )
    })?;
    if store.blob_size(&info.blob.digest)?.is_none() {
        let why = if info.blob.media_type.contains("nondistributable")
            || info.blob.media_type.contains("foreign")
        {
            format!(
                "is a foreign layer whose blob is not in the layout (it is at {:?})",
                info.blob.urls
            )
        } else {
            "is missing".to_string()
        };
        return Err(Error::invalid(
            store.describe(),
            format!(
                "blob {} of layer {index} of image {} {why}",
                info.blob.digest, image.summary.id
            ),
        ));
    }
    let digest = info.blob.digest;
    let stream = LayerStream::new(info.clone(), image.summary.id, store.open_blob(&digest)?)
        .with_mapped(move || store.map_blob(&digest));
    Ok(match store.blob_file(&info.blob.digest) {
        Some(path) => stream.with_origin(BlobOrigin::File(path)),
        None => stream,
    })
}

/// `oci:DIR` or `oci-archive:FILE` as a source.
pub struct OciSource {
    store: Box<dyn BlobStore>,
    platform: Platform,
    listing: Option<Listing>,
}

impl OciSource {
    /// The layout directory `dir`.
    pub fn dir(dir: &Path, platform: Platform) -> OciSource {
        OciSource {
            store: Box::new(DirStore {
                dir: dir.to_owned(),
            }),
            platform,
            listing: None,
        }
    }

    /// The layout archived in the tar at `path` (indexed; spooled to `staging` when it
    /// cannot be read in place).
    pub fn archive(path: &Path, staging: &Path, platform: Platform) -> Result<OciSource, Error> {
        Ok(OciSource {
            store: Box::new(ArchiveStore {
                archive: Archive::open(path, staging)?,
                transport: "oci-archive",
            }),
            platform,
            listing: None,
        })
    }

    fn listing(&mut self) -> Result<&Listing, Error> {
        if self.listing.is_none() {
            self.listing = Some(list(self.store.as_ref(), &self.platform)?);
        }
        Ok(self.listing.get_or_insert_with(Listing::default))
    }
}

impl ImageSource for OciSource {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(self
            .listing()?
            .images
            .iter()
            .map(|e| e.summary.clone())
            .collect())
    }

    fn skipped(&mut self) -> Result<Vec<Skipped>, Error> {
        Ok(self.listing()?.skipped.clone())
    }

    fn warnings(&self) -> Vec<String> {
        self.listing
            .as_ref()
            .map(|l| l.warnings.clone())
            .unwrap_or_default()
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        let entry = self
            .listing()?
            .images
            .iter()
            .find(|e| e.summary.index == image.index && e.summary.id == image.id)
            .cloned()
            .ok_or_else(|| {
                Error::invalid(
                    self.store.describe(),
                    format!("it has no image {}", image.id),
                )
            })?;
        open(self.store.as_ref(), &entry)
    }

    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        layer(self.store.as_ref(), image, index)
    }
}
