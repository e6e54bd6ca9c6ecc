//! `docker://REF` as a destination: the config and layer blobs pushed as they arrive,
//! the manifest pushed by `commit`.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use strata_layer::compress::Compression;
use strata_registry::{
    ManifestKind as RemoteKind, PushOptions, Pushed, Repository, RepositoryName,
};

use super::upload::{self, Spool};
use super::{manifest_reference, repository, RegistryOptions};
use crate::config::ImageConfig;
use crate::gojson;
use crate::ids::{sha256, DiffId, Digest};
use crate::manifest::{media_type, Descriptor, LayerType, Manifest};
use crate::reference::Reference;
use crate::stream::{BlobOrigin, LayerInfo, LayerStream};
use crate::transport::{ImageDestination, ImageRecord, StoredLayer};
use crate::Error;

/// Layers pushed at once, at most (bounded further by [`crate::CopyOptions::jobs`]):
/// uploads wait on the network and the registry more than on this machine.
const JOBS: usize = 6;

/// An image being pushed to a registry (`docker://REF`); see the
/// [module documentation](super).
pub struct RegistryDestination {
    reference: Reference,
    repo: Repository,
    staging: PathBuf,
    compress: Compression,
    mount_from: Option<RepositoryName>,
    /// Layers compressed on the way, by diffID: a layer repeated is compressed once.
    compressed: Mutex<HashMap<DiffId, StoredLayer>>,
    /// Blobs `reuse_layer` found missing: their upload need not ask again.
    absent: Mutex<HashSet<Digest>>,
    /// Another repository of this registry the current image's layers came from: its
    /// config is likely there too.
    layers_from: Mutex<Option<RepositoryName>>,
    current: Option<ImageConfig>,
    /// The manifest of the (one) image, pushed by `commit`.
    manifest: Option<(RemoteKind, Vec<u8>)>,
}

impl RegistryDestination {
    /// The repository and tag (or digest) `reference` names; blobs that must be spooled
    /// go to `staging`. Nothing is sent before the first image begins.
    pub fn open(
        reference: &Reference,
        staging: &Path,
        options: &RegistryOptions,
    ) -> Result<RegistryDestination, Error> {
        manifest_reference(reference)?;
        Ok(RegistryDestination {
            reference: reference.clone(),
            repo: repository(reference, options)?,
            staging: staging.to_owned(),
            compress: options.compress,
            mount_from: options.mount_from.clone(),
            compressed: Mutex::new(HashMap::new()),
            absent: Mutex::default(),
            layers_from: Mutex::new(None),
            current: None,
            manifest: None,
        })
    }

    fn failed(&self, doing: String) -> impl FnOnce(strata_registry::Error) -> Error {
        let what = format!("{doing} {}", self.describe());
        move |source| Error::Registry {
            what,
            error: Box::new(source),
        }
    }

    /// Whether the layer is compressed on its way (else its blob is pushed as it is).
    fn compresses(&self, layer: &LayerInfo) -> bool {
        layer.compression() == Compression::None && self.compress != Compression::None
    }

    /// The repository to ask the registry to mount a blob from: the first other
    /// repository of this registry the source says holds it, else the one the options
    /// name.
    fn mount_source<'s>(&'s self, origins: &'s [BlobOrigin]) -> Option<&'s RepositoryName> {
        origins
            .iter()
            .find_map(|o| match o {
                BlobOrigin::Registry { host, repository }
                    if host == self.repo.client().host() && repository != self.repo.name() =>
                {
                    Some(repository)
                }
                _ => None,
            })
            .or(self.mount_from.as_ref())
    }

    fn push(
        &self,
        digest: &Digest,
        size: u64,
        source: impl Read + Seek,
        mount_from: Option<&RepositoryName>,
    ) -> Result<Pushed, Error> {
        self.repo
            .push_blob(
                digest,
                size,
                source,
                PushOptions {
                    mount_from,
                    progress: None,
                    known_absent: lock(&self.absent).remove(digest),
                },
            )
            .map_err(self.failed(format!("pushing blob {digest} to")))
    }
}

/// The layer's descriptor with the media type of the manifest's flavour.
fn flavoured(blob: &Descriptor, docker: bool) -> Descriptor {
    let mut d = blob.clone();
    if let Some(t) = LayerType::of(&blob.media_type) {
        let docker_type = docker.then(|| t.docker_media_type()).flatten();
        d.media_type = docker_type.unwrap_or(t.oci_media_type()).to_string();
    }
    d
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ImageDestination for RegistryDestination {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn layer_jobs(&self) -> usize {
        JOBS
    }

    fn any_order(&self) -> bool {
        true
    }

    /// The config is pushed by `end_image`, once the layers said where they came from.
    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error> {
        self.current = Some(config.clone());
        *lock(&self.layers_from) = None;
        Ok(())
    }

    fn reuse_layer(&self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        if let Some(desc) = layer.foreign_reference() {
            return Ok(Some(StoredLayer {
                blob: desc.clone(),
                diff_id: layer.diff_id,
            }));
        }
        if self.compresses(layer) {
            return Ok(lock(&self.compressed).get(&layer.diff_id).cloned());
        }
        let digest = &layer.blob.digest;
        let have = self
            .repo
            .stat_blob(digest)
            .map_err(self.failed(format!("asking for blob {digest} in")))?;
        if have.is_none() {
            lock(&self.absent).insert(*digest);
        }
        // Another size is push_blob's to report.
        Ok((have == Some(layer.blob.size)).then(|| StoredLayer {
            blob: layer.blob.clone(),
            diff_id: layer.diff_id,
        }))
    }

    fn put_layer(&self, layer: LayerStream<'_>) -> Result<StoredLayer, Error> {
        let info = layer.info().clone();
        if self.compresses(&info) {
            let (file, digest, size) = upload::compress(layer, &self.staging, self.compress)?;
            self.push(&digest, size, file, self.mount_from.as_ref())?;
            let kind = LayerType {
                compression: self.compress,
                foreign: false,
            };
            let stored = StoredLayer {
                blob: Descriptor::new(kind.oci_media_type(), digest, size),
                diff_id: info.diff_id,
            };
            lock(&self.compressed).insert(info.diff_id, stored.clone());
            return Ok(stored);
        }
        let (digest, size) = (info.blob.digest, info.blob.size);
        let origins = layer.origins().to_vec();
        let mount_from = self.mount_source(&origins);
        if let Some(repository) = mount_from.filter(|r| Some(*r) != self.mount_from.as_ref()) {
            lock(&self.layers_from).get_or_insert_with(|| repository.clone());
        }
        match layer.file().map(Path::to_path_buf) {
            Some(path) => {
                upload::from_file(layer, &path, size, |feed| {
                    self.push(&digest, size, feed, mount_from)
                })?;
            }
            None => {
                let mut spool = Spool::new(layer, &self.staging);
                let pushed = self.push(&digest, size, &mut spool, mount_from);
                if let Some(e) = spool.take_error() {
                    return Err(e);
                }
                if pushed? == Pushed::Uploaded && !spool.spooled() {
                    return Err(Error::invalid(
                        format!("layer {} ({digest})", info.index),
                        "was uploaded but never read",
                    ));
                }
            }
        }
        Ok(StoredLayer {
            blob: info.blob,
            diff_id: info.diff_id,
        })
    }

    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error> {
        let config = self
            .current
            .take()
            .ok_or_else(|| Error::invalid(self.describe(), "an image ended that never began"))?;
        if self.manifest.is_some() {
            return Err(Error::Unsupported(format!(
                "{} names one image but more than one is being copied",
                self.describe()
            )));
        }
        let raw = config.raw();
        let from = lock(&self.layers_from).take();
        self.push(
            &config.id().0,
            raw.len() as u64,
            Cursor::new(raw),
            from.as_ref().or(self.mount_from.as_ref()),
        )?;
        let zstd = image.layers.iter().any(|l| {
            LayerType::of(&l.blob.media_type).is_some_and(|t| t.compression == Compression::Zstd)
        });
        let docker_source = match image.source_manifest {
            Some(m) => m.media_type == media_type::DOCKER_MANIFEST,
            None => {
                !image.source_layers.is_empty()
                    && image
                        .source_layers
                        .iter()
                        .all(|l| l.blob.media_type.starts_with("application/vnd.docker."))
            }
        };
        let docker = docker_source && !zstd;
        let (manifest_type, config_type, kind) = if docker {
            (
                media_type::DOCKER_MANIFEST,
                media_type::DOCKER_CONFIG,
                RemoteKind::DockerManifest,
            )
        } else {
            (
                media_type::OCI_MANIFEST,
                media_type::OCI_CONFIG,
                RemoteKind::OciManifest,
            )
        };
        let layers: Vec<Descriptor> = image
            .layers
            .iter()
            .map(|l| flavoured(&l.blob, docker))
            .collect();
        let config_desc = Descriptor::new(config_type, config.id().0, config.raw().len() as u64);
        // The source's own manifest, if it says exactly this.
        let kept = image
            .source_manifest
            .filter(|m| m.describes(manifest_type, &config_desc, &layers));
        let bytes = match kept {
            Some(m) => m.bytes.clone(),
            None => {
                let mut m = Manifest::oci(config_desc, layers);
                m.media_type = Some(manifest_type.to_string());
                gojson::marshal(&m)?
            }
        };
        self.manifest = Some((kind, bytes));
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Error> {
        let Some((kind, bytes)) = self.manifest.take() else {
            return Ok(());
        };
        let digest = sha256(&bytes);
        if let Some(wanted) = self.reference.digest().filter(|d| **d != digest) {
            return Err(Error::BlobMismatch {
                what: format!("the manifest for {}", self.describe()),
                expected: wanted.to_string(),
                got: digest.to_string(),
            });
        }
        let reference = match self.reference.tag() {
            Some(tag) => strata_registry::Reference::parse(tag)
                .map_err(self.failed("tagging the manifest for".into()))?,
            None => strata_registry::Reference::Digest(digest),
        };
        self.repo
            .put_manifest(&reference, kind, &bytes)
            .map_err(self.failed(format!("pushing manifest {digest} to")))?;
        Ok(())
    }
}
