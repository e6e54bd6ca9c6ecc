//! `docker://REF` as a source: one image, resolved from its tag or digest (and the
//! platform, for an index), streamed from the registry.

use std::io::{self, Read};

use strata_registry::{BlobReader, Manifest as RemoteManifest, Repository};

use super::{manifest_reference, repository, RegistryOptions};
use crate::config::{ImageConfig, MAX_JSON};
use crate::ids::{Digest, ImageId};
use crate::manifest::{Descriptor, Index, Manifest, ManifestKind, Platform};
use crate::reference::Reference;
use crate::stream::{BlobOrigin, LayerInfo, LayerStream};
use crate::transport::{ImageSource, ImageSummary, RawManifest, SourceImage};
use crate::Error;

/// One image of a registry (`docker://REF`); see the [module documentation](super).
pub struct RegistrySource {
    reference: Reference,
    repo: Repository,
    platform: Platform,
    resolved: Option<Resolved>,
}

/// The image manifest the reference resolved to.
#[derive(Clone)]
struct Resolved {
    summary: ImageSummary,
    manifest: RawManifest,
    parsed: Manifest,
}

impl RegistrySource {
    /// The image `reference` names, on `platform` when it is multi-platform. Nothing is
    /// sent to the registry before [`list`](ImageSource::list).
    pub fn open(
        reference: &Reference,
        platform: Platform,
        options: &RegistryOptions,
    ) -> Result<RegistrySource, Error> {
        Ok(RegistrySource {
            reference: reference.clone(),
            repo: repository(reference, options)?,
            platform,
            resolved: None,
        })
    }

    /// Wraps a registry error: `doing` is completed by the source's name.
    fn failed(&self, doing: &str) -> impl FnOnce(strata_registry::Error) -> Error {
        let what = format!("{doing} {}", self.describe());
        move |source| Error::Registry {
            what,
            error: Box::new(source),
        }
    }

    fn resolve(&mut self) -> Result<&Resolved, Error> {
        if self.resolved.is_none() {
            let reference = manifest_reference(&self.reference)?;
            let top = self
                .repo
                .get_manifest(&reference)
                .map_err(self.failed("fetching the manifest of"))?;
            let image = if top.kind.is_index() {
                self.pick_platform(&top)?
            } else {
                top
            };
            let media_type = image.kind.media_type();
            let what = format!("manifest {} of {}", image.digest, self.describe());
            let parsed = Manifest::parse(&image.bytes, media_type, &what)?;
            let names = match self.reference.tag() {
                Some(tag) => vec![self.reference.with_tag(tag)?],
                None => Vec::new(),
            };
            self.resolved = Some(Resolved {
                summary: ImageSummary {
                    index: 0,
                    id: ImageId(parsed.config.digest),
                    names,
                    ref_names: vec![self.reference.to_string()],
                },
                manifest: RawManifest {
                    media_type: media_type.to_string(),
                    digest: image.digest,
                    bytes: image.bytes,
                },
                parsed,
            });
        }
        self.resolved
            .as_ref()
            .ok_or_else(|| Error::invalid(self.describe(), "resolved no manifest"))
    }

    /// The image manifest of the wanted platform in an index (manifest list).
    fn pick_platform(&self, top: &RemoteManifest) -> Result<RemoteManifest, Error> {
        let what = format!("index {} of {}", top.digest, self.describe());
        let index = Index::parse(&top.bytes, &what)?;
        let images: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|m| ManifestKind::of(&m.media_type) == ManifestKind::Image)
            .collect();
        let wanted = &self.platform;
        let chosen = images.iter().find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                p.os == wanted.os
                    && p.architecture == wanted.architecture
                    && (wanted.variant.is_none() || p.variant == wanted.variant)
            })
        });
        let Some(chosen) = chosen else {
            let have: Vec<String> = images
                .iter()
                .map(|m| m.platform.as_ref().map_or("(no platform)".into(), show))
                .collect();
            return Err(Error::Selection {
                source_name: self.describe(),
                reason: format!(
                    "it has no image for {} (it has {}); pick one with --platform",
                    show(wanted),
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            });
        };
        let image = self
            .repo
            .get_manifest(&strata_registry::Reference::Digest(chosen.digest))
            .map_err(self.failed(&format!("fetching manifest {} of", chosen.digest)))?;
        if image.kind.is_index() || image.bytes.len() as u64 != chosen.size {
            return Err(Error::invalid(
                what,
                format!(
                    "its entry for {} names {} of {} bytes, but the registry has {} ({} bytes)",
                    show(wanted),
                    chosen.digest,
                    chosen.size,
                    image.kind.media_type(),
                    image.bytes.len()
                ),
            ));
        }
        Ok(image)
    }

    /// Reads the config blob, verified (size and digest).
    fn read_config(&self, desc: &Descriptor) -> Result<ImageConfig, Error> {
        let what = format!("the config of {}", self.describe());
        if desc.size > MAX_JSON {
            return Err(Error::invalid(
                &what,
                format!(
                    "its descriptor claims {} bytes, over the {MAX_JSON}-byte limit",
                    desc.size
                ),
            ));
        }
        let mut reader = self
            .repo
            .get_blob(&desc.digest, Some(desc.size))
            .map_err(self.failed("fetching the config of"))?;
        let mut raw = Vec::with_capacity(desc.size as usize);
        reader
            .by_ref()
            .take(MAX_JSON)
            .read_to_end(&mut raw)
            .map_err(|e| remote_error(e, &what))?;
        reader
            .finish()
            .map_err(self.failed("fetching the config of"))?;
        ImageConfig::parse(raw, &what)
    }
}

impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(vec![self.resolve()?.summary.clone()])
    }

    fn open_image(&mut self, image: &ImageSummary) -> Result<SourceImage, Error> {
        let resolved = self.resolve()?.clone();
        if resolved.summary.id != image.id {
            return Err(Error::invalid(
                self.describe(),
                format!("it has no image {}", image.id),
            ));
        }
        let config = self.read_config(&resolved.parsed.config)?;
        let what = format!("{} ({})", self.describe(), image.id);
        let layers = LayerInfo::of_image(&config, &resolved.parsed.layers, &what)?;
        Ok(SourceImage {
            summary: resolved.summary,
            config,
            manifest: Some(resolved.manifest),
            layers,
            parent: None,
        })
    }

    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        let info = image.layers.get(index).ok_or_else(|| {
            Error::invalid(
                self.describe(),
                format!("image {} has no layer {index}", image.summary.id),
            )
        })?;
        let blob = RemoteBlob {
            repo: self.repo.clone(),
            digest: info.blob.digest,
            size: info.blob.size,
            what: format!(
                "layer {index} ({}) of {}",
                info.blob.digest,
                self.describe()
            ),
            reader: None,
        };
        Ok(
            LayerStream::new(info.clone(), image.summary.id, blob).with_origin(
                BlobOrigin::Registry {
                    host: self.repo.client().host().clone(),
                    repository: self.repo.name().clone(),
                },
            ),
        )
    }
}

/// A layer blob in the registry, requested when it is first read (a destination that
/// mounts it never reads it); errors come out as this crate's [`Error::Registry`].
struct RemoteBlob {
    repo: Repository,
    digest: Digest,
    size: u64,
    what: String,
    reader: Option<BlobReader>,
}

impl Read for RemoteBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let reader = match &mut self.reader {
            Some(r) => r,
            None => {
                let r = self
                    .repo
                    .get_blob(&self.digest, Some(self.size))
                    .map_err(|source| {
                        Error::Registry {
                            what: format!("fetching {}", self.what),
                            error: Box::new(source),
                        }
                        .into_io()
                    })?;
                self.reader.insert(r)
            }
        };
        // The reader reaches its end (returns 0) only after checking size and digest.
        reader
            .read(buf)
            .map_err(|e| remote_error(e, &format!("fetching {}", self.what)).into_io())
    }
}

/// An I/O error of a [`BlobReader`] as this crate's error: the registry client's own
/// error when it carries one, else the I/O error with what was being done.
fn remote_error(e: io::Error, what: &str) -> Error {
    if strata_registry::Error::from_io(&e).is_none() {
        return Error::io(what, e);
    }
    let kind = e.kind();
    match e
        .into_inner()
        .map(|inner| inner.downcast::<strata_registry::Error>())
    {
        Some(Ok(error)) => Error::Registry {
            what: what.to_string(),
            error,
        },
        Some(Err(other)) => Error::io(what, io::Error::new(kind, other)),
        None => Error::io(what, io::Error::from(kind)),
    }
}

/// `os/architecture[/variant]`.
fn show(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}
