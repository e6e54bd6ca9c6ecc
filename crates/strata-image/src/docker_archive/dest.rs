//! Writing docker-archives: the Docker 25+ layout (image-formats §3.1, under the rules of
//! §3.4) or the legacy layout (§2).
//!
//! Both are byte-deterministic: the same images copied in the same order give the same
//! file. Images are listed in `manifest.json`, `index.json` and `repositories` in the
//! order they arrive (for `save`, the order of its arguments); an image that arrives
//! twice is listed once, with the names of both.
//!
//! The legacy layout is what Docker 20.10's `docker save` writes, byte for byte (§2):
//! members in the order of a walk of its directory (names sorted, a directory before its
//! contents), headers with the file-type bits in `mode` and `root` as `uname` and `gname`.
//! Layers are spooled to the staging directory as they arrive and the whole archive is
//! written at commit, since that order interleaves layers of different images.
//!
//! The Docker 25+ layout streams instead: members are written in the order the layers
//! arrive (per image: config, layers, manifest), then the metadata files; no layer is
//! staged to sort them, and every reader (Docker, containerd, skopeo, podman) looks
//! members up by name. Where Docker's output is not reproducible Strata chooses:
//!
//! - an untagged image always gets its bare `index.json` descriptor (Docker 25–28 can
//!   drop it);
//! - no unreferenced v1 `json` blobs, and `LayerSources` only for foreign layers (§3.4);
//! - legacy layer directories reused by a symlink get the image's `created` time like the
//!   others (Docker leaves the symlink at the wall-clock time of the save).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{LayerSource, ManifestEntry};
use crate::config::ImageConfig;
use crate::gojson;
use crate::ids::{blob_path, sha256, DiffId, Digest, ImageId};
use crate::manifest::{media_type, Descriptor, Index, Manifest};
use crate::oci::index_entries;
use crate::reference::Reference;
use crate::stream::{pump, LayerInfo, LayerStream};
use crate::tar_out::{persist, TarOut};
use crate::transport::{ImageDestination, ImageRecord, StoredLayer};
use crate::v1::{self, V1Layer};
use crate::Error;

/// Which docker-archive layout to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Docker 25+ (§3.1): an OCI layout plus `manifest.json` and `repositories`; loads
    /// in every Docker ≥ 1.10, containerd, skopeo and podman.
    #[default]
    Docker,
    /// Docker 1.10–24 (§2): one `<v1 id>/` directory per layer with `VERSION`, `json`
    /// and `layer.tar` (a symlink to the first copy when a layer repeats).
    DockerLegacy,
}

/// The `oci-layout` of a Docker archive, with its space (§3.1).
const DOCKER_OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion": "1.0.0"}"#;

struct Current {
    config: ImageConfig,
    created: i64,
    /// Legacy only: the v1 layer directories of this image.
    v1: Vec<V1Layer>,
}

struct Written {
    id: ImageId,
    config_member: String,
    layer_members: Vec<String>,
    names: Vec<Reference>,
    parent: Option<ImageId>,
    layer_sources: BTreeMap<String, LayerSource>,
    /// What `repositories` maps the image's tags to.
    top: Option<String>,
    /// Docker layout only: the image's OCI manifest.
    manifest: Option<Descriptor>,
}

/// A docker-archive being written; nothing is at its path until [`commit`]. Layers are
/// taken one at a time, in order (`layer_jobs` is 1): the archive is one stream.
///
/// [`commit`]: ImageDestination::commit
pub struct DockerArchiveDestination {
    inner: Mutex<Writer>,
}

/// Legacy only: a member kept back until commit (see the module documentation).
struct Held {
    name: String,
    mtime: i64,
    data: HeldData,
}

enum HeldData {
    Dir,
    Bytes(Vec<u8>),
    Symlink(String),
    /// A layer tar spooled to the staging directory.
    Spooled {
        file: tempfile::TempPath,
        size: u64,
    },
}

/// The order of `name` in a walk of the archive's directory: its path components.
fn walk_order(name: &str) -> Vec<&str> {
    name.trim_end_matches('/').split('/').collect()
}

/// The state of a [`DockerArchiveDestination`].
struct Writer {
    target: PathBuf,
    format: ArchiveFormat,
    staging: PathBuf,
    /// Legacy only: every member, written in walk order at commit.
    held: Vec<Held>,
    reference: Option<Reference>,
    out: Option<TarOut>,
    /// The temporary sibling renamed over `target` on commit (absent for a pipe).
    temp: Option<tempfile::TempPath>,
    blobs: HashSet<Digest>,
    /// Written layer tars by diffID: member name and size.
    layers: HashMap<DiffId, (String, u64)>,
    v1_dirs: HashSet<Digest>,
    current: Option<Current>,
    images: Vec<Written>,
}

fn secs(config: &ImageConfig) -> i64 {
    config.created().map_or(0, |t| t.secs)
}

impl DockerArchiveDestination {
    /// Starts an archive to be committed at `path`, written in `format`. With
    /// `reference`, the (single) image copied is tagged with it instead of its own names.
    /// Layers of unknown size go through `staging` when `path` is a pipe.
    pub fn create(
        path: &Path,
        format: ArchiveFormat,
        reference: Option<Reference>,
        staging: &Path,
    ) -> Result<DockerArchiveDestination, Error> {
        Ok(DockerArchiveDestination {
            inner: Mutex::new(Writer::create(path, format, reference, staging)?),
        })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Writer>, Error> {
        self.inner
            .lock()
            .map_err(|_| Error::invalid("a docker-archive", "a thread writing it panicked"))
    }

    fn writer_mut(&mut self) -> Result<&mut Writer, Error> {
        self.inner
            .get_mut()
            .map_err(|_| Error::invalid("a docker-archive", "a thread writing it panicked"))
    }
}

impl ImageDestination for DockerArchiveDestination {
    fn describe(&self) -> String {
        self.writer()
            .map_or_else(|e| e.to_string(), |w| w.describe())
    }

    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error> {
        self.writer_mut()?.begin_image(config)
    }

    fn reuse_layer(&self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        self.writer()?.reuse_layer(layer)
    }

    fn put_layer(&self, layer: LayerStream<'_>) -> Result<StoredLayer, Error> {
        self.writer()?.put_layer(layer)
    }

    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error> {
        self.writer_mut()?.end_image(image)
    }

    fn commit(&mut self) -> Result<(), Error> {
        self.writer_mut()?.commit()
    }
}

impl Writer {
    fn create(
        path: &Path,
        format: ArchiveFormat,
        reference: Option<Reference>,
        staging: &Path,
    ) -> Result<Writer, Error> {
        let (mut out, temp) =
            TarOut::create(path, staging, format!("docker-archive:{}", path.display()))?;
        match format {
            ArchiveFormat::Docker => {
                out.dir("blobs/", 0)?;
                out.dir("blobs/sha256/", 0)?;
            }
            ArchiveFormat::DockerLegacy => out = out.docker_save_headers(),
        }
        Ok(Writer {
            target: path.to_owned(),
            format,
            staging: staging.to_owned(),
            held: Vec::new(),
            reference,
            out: Some(out),
            temp,
            blobs: HashSet::new(),
            layers: HashMap::new(),
            v1_dirs: HashSet::new(),
            current: None,
            images: Vec::new(),
        })
    }

    fn out(&mut self) -> Result<&mut TarOut, Error> {
        self.out.as_mut().ok_or_else(|| {
            Error::invalid(
                format!("docker-archive:{}", self.target.display()),
                "already committed",
            )
        })
    }

    /// Writes (or, legacy, holds) a small member: a directory without `data`.
    fn small(&mut self, name: &str, mtime: i64, data: Option<&[u8]>) -> Result<(), Error> {
        if self.format == ArchiveFormat::DockerLegacy {
            self.held.push(Held {
                name: name.to_string(),
                mtime,
                data: data.map_or(HeldData::Dir, |d| HeldData::Bytes(d.to_vec())),
            });
            return Ok(());
        }
        match data {
            Some(d) => self.out()?.file(name, mtime, d),
            None => self.out()?.dir(name, mtime),
        }
    }

    /// Legacy: writes every held member, in walk order.
    fn write_held(&mut self) -> Result<(), Error> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| walk_order(&a.name).cmp(&walk_order(&b.name)));
        let out = self.out()?;
        for h in held {
            match h.data {
                HeldData::Dir => out.dir(&h.name, h.mtime)?,
                HeldData::Bytes(d) => out.file(&h.name, h.mtime, &d)?,
                HeldData::Symlink(target) => out.symlink(&h.name, &target, h.mtime)?,
                HeldData::Spooled { file, size } => {
                    let mut spool = std::fs::File::open(&file)
                        .map_err(|e| Error::io("reopening a spooled layer", e))?;
                    out.stream(&h.name, h.mtime, Some(size), |w| {
                        pump(&mut spool, w)
                            .map(|_| ())
                            .map_err(|e| Error::io("copying a spooled layer", e))
                    })?;
                }
            }
        }
        Ok(())
    }

    fn current(&self) -> Result<&Current, Error> {
        self.current.as_ref().ok_or_else(|| {
            Error::invalid(self.describe(), "a layer arrived before its image's config")
        })
    }

    fn stored(diff: DiffId, size: u64) -> StoredLayer {
        StoredLayer {
            blob: Descriptor::new(media_type::OCI_LAYER, diff.0, size),
            diff_id: diff,
        }
    }

    /// Legacy: `<v1>/`, `VERSION` and `json` of a layer directory.
    fn legacy_dir(&mut self, layer: &V1Layer, created: i64) -> Result<String, Error> {
        let dir = layer.id.hex();
        self.small(&format!("{dir}/"), created, None)?;
        self.small(&format!("{dir}/VERSION"), created, Some(b"1.0"))?;
        self.small(&format!("{dir}/json"), created, Some(&layer.json))?;
        Ok(format!("{dir}/layer.tar"))
    }

    fn describe(&self) -> String {
        format!("docker-archive:{}", self.target.display())
    }

    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error> {
        let created = secs(config);
        let v1 = match self.format {
            ArchiveFormat::Docker => Vec::new(),
            ArchiveFormat::DockerLegacy => v1::layers(config)?,
        };
        let id = config.id();
        if self.blobs.insert(id.0) {
            let name = match self.format {
                ArchiveFormat::Docker => blob_path(&id.0),
                ArchiveFormat::DockerLegacy => format!("{}.json", id.hex()),
            };
            self.small(&name, created, Some(config.raw()))?;
        }
        self.current = Some(Current {
            config: config.clone(),
            created,
            v1,
        });
        Ok(())
    }

    fn reuse_layer(&mut self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        let Some(&(ref first, size)) = self.layers.get(&layer.diff_id) else {
            return Ok(None);
        };
        if self.format == ArchiveFormat::DockerLegacy {
            let first = first.clone();
            let current = self.current()?;
            let created = current.created;
            let v1 = current.v1.get(layer.index).cloned().ok_or_else(|| {
                Error::invalid(self.describe(), format!("no layer {}", layer.index))
            })?;
            if self.v1_dirs.insert(v1.id) {
                // The same tar under another v1 ID: a directory whose layer.tar links to it.
                let member = self.legacy_dir(&v1, created)?;
                self.held.push(Held {
                    name: member,
                    mtime: created,
                    data: HeldData::Symlink(format!("../{first}")),
                });
            }
        }
        Ok(Some(Self::stored(layer.diff_id, size)))
    }

    fn put_layer(&mut self, layer: LayerStream<'_>) -> Result<StoredLayer, Error> {
        let info = layer.info().clone();
        let (created, v1) = {
            let c = self.current()?;
            (c.created, c.v1.get(info.index).cloned())
        };
        let member = match (self.format, v1) {
            (ArchiveFormat::Docker, _) => blob_path(&info.diff_id.0),
            (ArchiveFormat::DockerLegacy, Some(v1)) => {
                self.v1_dirs.insert(v1.id);
                self.legacy_dir(&v1, created)?
            }
            (ArchiveFormat::DockerLegacy, None) => {
                return Err(Error::invalid(
                    self.describe(),
                    format!("no layer {}", info.index),
                ))
            }
        };
        let (verified, size) = if self.format == ArchiveFormat::DockerLegacy {
            let spool = tempfile::NamedTempFile::new_in(&self.staging).map_err(|e| {
                Error::io(
                    format!("cannot create a spool file in {}", self.staging.display()),
                    e,
                )
            })?;
            let (verified, size) = std::thread::scope(|s| {
                let mut tar = layer.tar_pipelined(s)?;
                let mut w = BufWriter::with_capacity(1 << 20, spool.as_file());
                let io = |e| Error::io("spooling a layer", e);
                let size = pump(&mut tar, &mut w).map_err(io)?;
                w.flush().map_err(io)?;
                Ok::<_, Error>((tar.finish()?, size))
            })?;
            self.held.push(Held {
                name: member.clone(),
                mtime: created,
                data: HeldData::Spooled {
                    file: spool.into_temp_path(),
                    size,
                },
            });
            (verified, size)
        } else {
            let out = self.out()?;
            // Reading and decompressing on one thread, hashing and writing on this one.
            std::thread::scope(|s| {
                let mut tar = layer.tar_pipelined(s)?;
                let known = tar.known_size();
                out.stream(&member, created, known, move |w| {
                    pump(&mut tar, w).map_err(|e| Error::io("copying a layer", e))?;
                    tar.finish()
                })
            })?
        };
        debug_assert_eq!(verified.tar_size, size);
        self.blobs.insert(info.diff_id.0);
        self.layers.insert(info.diff_id, (member, size));
        Ok(Self::stored(info.diff_id, size))
    }

    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error> {
        let current = self
            .current
            .take()
            .ok_or_else(|| Error::invalid(self.describe(), "an image ended that never began"))?;
        let id = image.config.id();
        let names = match &self.reference {
            Some(r) if !self.images.is_empty() => {
                return Err(Error::Unsupported(format!(
                    "{} names one image ({r}) but more than one is being copied",
                    self.describe()
                )))
            }
            Some(r) => vec![r.clone()],
            None => image
                .names
                .iter()
                .filter(|n| n.tag().is_some() && n.digest().is_none())
                .cloned()
                .collect(),
        };
        let layer_members: Vec<String> = match self.format {
            ArchiveFormat::Docker => image
                .layers
                .iter()
                .map(|l| blob_path(&l.diff_id.0))
                .collect(),
            ArchiveFormat::DockerLegacy => current
                .v1
                .iter()
                .map(|l| format!("{}/layer.tar", l.id.hex()))
                .collect(),
        };
        let top = match self.format {
            ArchiveFormat::Docker => image.layers.last().map(|l| l.diff_id.hex()),
            ArchiveFormat::DockerLegacy => current.v1.last().map(|l| l.id.hex()),
        };
        let layer_sources = image
            .source_layers
            .iter()
            .filter_map(|l| l.foreign.as_ref().map(|f| (l.diff_id, f)))
            .map(|(diff, f)| {
                (
                    diff.to_string(),
                    LayerSource {
                        media_type: f.media_type.clone(),
                        size: f.size,
                        digest: f.digest.to_string(),
                        urls: f.urls.clone(),
                    },
                )
            })
            .collect();
        let (config_member, manifest) = match self.format {
            ArchiveFormat::Docker => {
                let config = Descriptor::new(
                    media_type::OCI_CONFIG,
                    id.0,
                    current.config.raw().len() as u64,
                );
                let layers = image.layers.iter().map(|l| l.blob.clone()).collect();
                let bytes = gojson::marshal(&Manifest::oci(config, layers))?;
                let digest = sha256(&bytes);
                if self.blobs.insert(digest) {
                    self.out()?.file(&blob_path(&digest), 0, &bytes)?;
                }
                (
                    blob_path(&id.0),
                    Some(Descriptor::new(
                        media_type::OCI_MANIFEST,
                        digest,
                        bytes.len() as u64,
                    )),
                )
            }
            ArchiveFormat::DockerLegacy => (format!("{}.json", id.hex()), None),
        };
        if let Some(same) = self.images.iter_mut().find(|w| w.id == id) {
            for n in names {
                if !same.names.contains(&n) {
                    same.names.push(n);
                }
            }
            return Ok(());
        }
        self.images.push(Written {
            id,
            config_member,
            layer_members,
            names,
            parent: image.parent,
            layer_sources,
            top,
            manifest,
        });
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Error> {
        let images = std::mem::take(&mut self.images);
        let ids: HashSet<ImageId> = images.iter().map(|w| w.id).collect();
        let entries: Vec<ManifestEntry> = images
            .iter()
            .map(|w| ManifestEntry {
                config: w.config_member.clone(),
                repo_tags: (!w.names.is_empty())
                    .then(|| w.names.iter().map(Reference::familiar).collect()),
                layers: w.layer_members.clone(),
                parent: w
                    .parent
                    .filter(|p| *p != w.id && ids.contains(p))
                    .map(|p| p.to_string()),
                layer_sources: w.layer_sources.clone(),
            })
            .collect();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for w in &images {
            let Some(top) = &w.top else { continue };
            for n in &w.names {
                if let Some(tag) = n.tag() {
                    repositories
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.clone());
                }
            }
        }
        let docker = self.format == ArchiveFormat::Docker;
        if docker {
            let mut manifests = Vec::new();
            for w in &images {
                if let Some(desc) = &w.manifest {
                    manifests.extend(index_entries(desc, &w.names));
                }
            }
            self.small(
                "index.json",
                0,
                Some(&gojson::marshal(&Index::oci(manifests))?),
            )?;
        }
        self.small("manifest.json", 0, Some(&gojson::encode(&entries)?))?;
        if docker {
            self.small("oci-layout", 0, Some(DOCKER_OCI_LAYOUT))?;
        }
        if !repositories.is_empty() {
            self.small("repositories", 0, Some(&gojson::encode(&repositories)?))?;
        }
        self.write_held()?;
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::invalid(self.describe(), "already committed"))?;
        out.finish()?;
        persist(self.temp.take(), &self.target)
    }
}
