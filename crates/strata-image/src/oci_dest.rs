//! Writing OCI image layouts: `oci:DIR` (a directory, added to) and `oci-archive:FILE`
//! (a tar of one, replaced).
//!
//! Layer blobs are kept as they came (a gzip or zstd blob stays that blob, so a later
//! push needs no recompression); a layer that arrives uncompressed is compressed when
//! [`OciOptions::compress`] asks for it. A source manifest is kept byte for byte when
//! nothing in it changed, so the manifest digest survives a copy. The commit point is
//! `index.json`: in a directory it is replaced by a rename after every blob is in place;
//! an archive is renamed into place whole. A failed (uncommitted) copy leaves the
//! destination as it was: a layout directory that did not exist is written as a hidden
//! sibling, renamed into place on commit and removed otherwise, and the files a copy
//! added to an existing layout (blobs, and `oci-layout` in a directory that had none)
//! are removed again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_layer::compress::{Compression, Compressor};
use strata_layer::digest::Hasher;

use crate::config::ImageConfig;
use crate::gojson;
use crate::ids::{blob_path, sha256, DiffId, Digest};
use crate::manifest::{annotation, media_type, Descriptor, Index, LayerType, Manifest};
use crate::oci::{check_layout_version, index_entries, LAYOUT_FILE};
use crate::stream::{pump, LayerInfo, LayerStream};
use crate::tar_out::{persist, TarOut};
use crate::transport::{ImageDestination, ImageRecord, StoredLayer};
use crate::Error;

/// How to write an OCI layout.
#[derive(Clone, Debug)]
pub struct OciOptions {
    /// Compress layers that arrive uncompressed (`Compression::None`: keep them so).
    pub compress: Compression,
    /// The `org.opencontainers.image.ref.name` to give the (single) image copied;
    /// without it, each of the image's names gives one entry (the tag as ref name, the
    /// full name as `io.containerd.image.name`), and an unnamed image a bare entry.
    pub reference: Option<String>,
}

enum Target {
    Dir(LayoutDir),
    Archive {
        /// One stream: one member at a time (`layer_jobs` is 1).
        out: Mutex<Option<TarOut>>,
        temp: Option<tempfile::TempPath>,
        path: PathBuf,
    },
}

/// A layout directory being written.
struct LayoutDir {
    /// The layout as named.
    dir: PathBuf,
    /// Where its files are written: `dir`, or `staging` for a layout that is new.
    work: PathBuf,
    /// A new layout's directory until commit renames it to `dir` (removed if dropped).
    staging: Option<tempfile::TempDir>,
    /// What this copy added to an existing layout, in order; removed unless committed.
    added: Mutex<Vec<PathBuf>>,
    committed: bool,
}

impl LayoutDir {
    /// `dir`, or a staging sibling of it when it does not exist yet.
    fn open(dir: &Path) -> Result<LayoutDir, Error> {
        let exists = match fs::symlink_metadata(dir) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(format!("cannot stat {}", dir.display()), e)),
        };
        let mut layout = LayoutDir {
            dir: dir.to_owned(),
            work: dir.to_owned(),
            staging: None,
            added: Mutex::new(Vec::new()),
            committed: false,
        };
        if !exists {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
            let staging = tempfile::Builder::new()
                .prefix(".strata-layout-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .tempdir_in(parent)
                .map_err(|e| {
                    Error::io(
                        format!("cannot create a directory in {}", parent.display()),
                        e,
                    )
                })?;
            layout.work = staging.path().to_owned();
            layout.staging = Some(staging);
        }
        for sub in ["blobs", "blobs/sha256"] {
            let path = layout.work.join(sub);
            match fs::create_dir(&path) {
                Ok(()) => layout.added(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
            }
        }
        Ok(layout)
    }

    /// Records a file or directory this copy created in an existing layout.
    fn added(&self, path: PathBuf) {
        if self.staging.is_none() {
            lock(&self.added).push(path);
        }
    }

    /// Puts a new layout in place (an existing one is already).
    fn commit(&mut self) -> Result<(), Error> {
        if let Some(staging) = self.staging.take() {
            let from = staging.keep();
            if let Err(e) = fs::rename(&from, &self.dir) {
                let _ = fs::remove_dir_all(&from);
                return Err(Error::io(
                    format!("cannot move the new layout into {}", self.dir.display()),
                    e,
                ));
            }
            self.work = self.dir.clone();
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for LayoutDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Blobs and `oci-layout` first, then the directories made for them (if empty).
        for path in lock(&self.added).iter().rev() {
            if fs::remove_file(path).is_err() {
                let _ = fs::remove_dir(path);
            }
        }
    }
}

/// An OCI layout being written; see the module documentation. A layout directory takes
/// several layers at once (each blob is a file of its own); an archive one at a time.
pub struct OciDestination {
    target: Target,
    options: OciOptions,
    /// Blobs written by this copy, with their sizes.
    written: Mutex<HashMap<Digest, u64>>,
    /// Layers compressed on the way, by diffID (a repeated layer is compressed once).
    compressed: Mutex<HashMap<DiffId, StoredLayer>>,
    current: Option<ImageConfig>,
    entries: Vec<Descriptor>,
    images: usize,
}

impl OciDestination {
    /// The layout directory `dir`, created (on commit) if missing.
    pub fn dir(dir: &Path, options: OciOptions) -> Result<OciDestination, Error> {
        let target = LayoutDir::open(dir)?;
        let layout = target.work.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => check_layout_version(&bytes, &format!("oci:{}", dir.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&target.work, "oci-layout", LAYOUT_FILE)?;
                target.added(layout);
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", layout.display()), e)),
        }
        Ok(OciDestination::new(Target::Dir(target), options))
    }

    /// The archive `path`, replaced on commit; layers compressed on the way go through
    /// `staging` when `path` is a pipe.
    pub fn archive(
        path: &Path,
        staging: &Path,
        options: OciOptions,
    ) -> Result<OciDestination, Error> {
        let (mut out, temp) =
            TarOut::create(path, staging, format!("oci-archive:{}", path.display()))?;
        out.file("oci-layout", 0, LAYOUT_FILE)?;
        out.dir("blobs/", 0)?;
        out.dir("blobs/sha256/", 0)?;
        Ok(OciDestination::new(
            Target::Archive {
                out: Mutex::new(Some(out)),
                temp,
                path: path.to_owned(),
            },
            options,
        ))
    }

    fn new(target: Target, options: OciOptions) -> OciDestination {
        OciDestination {
            target,
            options,
            written: Mutex::new(HashMap::new()),
            compressed: Mutex::new(HashMap::new()),
            current: None,
            entries: Vec::new(),
            images: 0,
        }
    }

    /// The size of the blob `digest` if the layout has it.
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        if let Some(&size) = lock(&self.written).get(digest) {
            return Some(size);
        }
        match &self.target {
            Target::Dir(d) => fs::metadata(d.work.join(blob_path(digest)))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Target::Archive { .. } => None,
        }
    }

    /// Runs `f` on the archive being written.
    fn with_out<T>(&self, f: impl FnOnce(&mut TarOut) -> Result<T, Error>) -> Result<T, Error> {
        match &self.target {
            Target::Archive { out, .. } => match lock(out).as_mut() {
                Some(out) => f(out),
                None => Err(Error::invalid(self.describe(), "already committed")),
            },
            Target::Dir(_) => Err(Error::invalid(self.describe(), "is not an archive")),
        }
    }

    /// Stores a small blob (config, manifest).
    fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let digest = sha256(bytes);
        if self.blob_size(&digest).is_some() {
            return Ok(digest);
        }
        match &self.target {
            Target::Dir(dir) => {
                write_blob(dir, |w| {
                    w.write_all(bytes)
                        .map_err(|e| Error::io("writing a blob", e))
                        .map(|()| ((), digest))
                })?;
            }
            Target::Archive { .. } => {
                self.with_out(|out| out.file(&blob_path(&digest), 0, bytes))?
            }
        }
        lock(&self.written).insert(digest, bytes.len() as u64);
        Ok(digest)
    }

    /// Stores a streamed blob; `write` returns its digest.
    fn put_stream<T>(
        &self,
        known: Option<(Digest, u64)>,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, Digest), Error>,
    ) -> Result<(T, Digest, u64), Error> {
        let (value, digest, size) = match &self.target {
            Target::Dir(dir) => write_blob(dir, write)?,
            Target::Archive { .. } => self.with_out(|out| match known {
                Some((digest, size)) => {
                    let (value, n) = out.stream(&blob_path(&digest), 0, Some(size), |w| {
                        write(w).map(|(v, _)| v)
                    })?;
                    Ok((value, digest, n))
                }
                None => {
                    let (value, n, digest) = out.stream_blob(0, write)?;
                    Ok((value, digest, n))
                }
            })?,
        };
        lock(&self.written).insert(digest, size);
        Ok((value, digest, size))
    }
}

/// A lock of this destination's state. A panic while it was held can only have come
/// from a bug; the state it guards (sets of written digests) stays consistent anyway.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes a blob into the layout's `blobs/sha256/` through a temporary file in it
/// (unknown files are ignored by readers), renamed to its digest once `write` returns
/// it; a blob that is already there stays as it was (and is not counted as added).
fn write_blob<T>(
    layout: &LayoutDir,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, Digest), Error>,
) -> Result<(T, Digest, u64), Error> {
    let dir = &layout.work;
    let tmp = tempfile::Builder::new()
        .prefix(".strata-blob-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))?;
    let (file, path) = tmp.into_parts();
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let (value, digest) = write(&mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io("writing a blob", e.into_error()))?;
    file.sync_data()
        .map_err(|e| Error::io("syncing a blob", e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("reading a blob", e))?
        .len();
    let dest = dir.join(blob_path(&digest));
    match path.persist_noclobber(&dest) {
        Ok(()) => layout.added(dest),
        // Content-addressed: what is there is this blob (the temporary file goes).
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::io(
                format!("cannot write {}", dest.display()),
                e.error,
            ))
        }
    }
    Ok((value, digest, size))
}

/// Replaces `dir/name` with `bytes` by a rename.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".strata-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {name}"), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(format!("syncing {name}"), e))?;
    let dest = dir.join(name);
    tmp.persist(&dest)
        .map_err(|e| Error::io(format!("cannot write {}", dest.display()), e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The layer descriptor as an OCI manifest lists it: the OCI name of its media type.
fn oci_descriptor(blob: &Descriptor) -> Descriptor {
    let mut d = blob.clone();
    if let Some(t) = LayerType::of(&blob.media_type) {
        d.media_type = t.oci_media_type().to_string();
    }
    d
}

impl ImageDestination for OciDestination {
    fn describe(&self) -> String {
        match &self.target {
            Target::Dir(d) => format!("oci:{}", d.dir.display()),
            Target::Archive { path, .. } => format!("oci-archive:{}", path.display()),
        }
    }

    fn begin_image(&mut self, config: &ImageConfig) -> Result<(), Error> {
        self.put_bytes(config.raw())?;
        self.current = Some(config.clone());
        Ok(())
    }

    fn any_order(&self) -> bool {
        matches!(self.target, Target::Dir(_))
    }

    fn layer_jobs(&self) -> usize {
        match self.target {
            Target::Dir(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Target::Archive { .. } => 1,
        }
    }

    fn reuse_layer(&self, layer: &LayerInfo) -> Result<Option<StoredLayer>, Error> {
        // A foreign layer stays a reference (a layout may lack such blobs, as the image
        // layout spec allows and skopeo writes it), unless the layout has its blob.
        if let Some(desc) = layer.foreign_reference() {
            if self.blob_size(&desc.digest).is_none() {
                return Ok(Some(StoredLayer {
                    blob: oci_descriptor(desc),
                    diff_id: layer.diff_id,
                }));
            }
        }
        if layer.compression() == Compression::None && self.options.compress != Compression::None {
            return Ok(lock(&self.compressed).get(&layer.diff_id).cloned());
        }
        match self.blob_size(&layer.blob.digest) {
            None => Ok(None),
            // The bytes are not read again: their size is checked here as the stream would.
            Some(size) if size != layer.blob.size => Err(Error::BlobMismatch {
                what: format!(
                    "the size of layer {} ({}), as {} holds it",
                    layer.index,
                    layer.blob.digest,
                    self.describe()
                ),
                expected: format!("{} bytes", layer.blob.size),
                got: format!("{size} bytes"),
            }),
            Some(_) => Ok(Some(StoredLayer {
                blob: oci_descriptor(&layer.blob),
                diff_id: layer.diff_id,
            })),
        }
    }

    fn put_layer(&self, layer: LayerStream<'_>) -> Result<StoredLayer, Error> {
        let info = layer.info().clone();
        let compress = self.options.compress;
        if info.compression() != Compression::None || compress == Compression::None {
            let mut blob = layer.blob();
            let known = Some((info.blob.digest, info.blob.size));
            let (verified, digest, size) = self.put_stream(known, move |w| {
                // Reading and hashing on this thread, writing on another.
                std::thread::scope(|s| {
                    let mut out = strata_layer::pipe::spawn_writer(s, w);
                    let copied = pump(&mut blob, &mut out);
                    // The writer first: a copy that stopped at a write failed writing.
                    out.finish().map_err(|e| Error::io("writing a layer", e))?;
                    copied.map_err(|e| Error::io("copying a layer", e))?;
                    let v = blob.finish()?;
                    Ok((v, v.digest))
                })
            })?;
            debug_assert_eq!((digest, size), (verified.digest, verified.size));
            return Ok(StoredLayer {
                blob: oci_descriptor(&info.blob),
                diff_id: info.diff_id,
            });
        }
        let mut tar = layer.tar()?;
        let ((), digest, size) = self.put_stream(None, move |w| {
            let hasher = Hasher::default();
            let mut c = Compressor::parallel(hasher.writer(w), compress)
                .map_err(|e| Error::io("starting compression", e))?;
            pump(&mut tar, &mut c).map_err(|e| Error::io("compressing a layer", e))?;
            c.finish()
                .map_err(|e| Error::io("finishing compression", e))?;
            tar.finish()?;
            Ok(((), hasher.digest()))
        })?;
        let kind = LayerType {
            compression: compress,
            foreign: false,
        };
        let stored = StoredLayer {
            blob: Descriptor::new(kind.oci_media_type(), digest, size),
            diff_id: info.diff_id,
        };
        lock(&self.compressed).insert(info.diff_id, stored.clone());
        Ok(stored)
    }

    fn end_image(&mut self, image: ImageRecord<'_>) -> Result<(), Error> {
        let config = self
            .current
            .take()
            .ok_or_else(|| Error::invalid(self.describe(), "an image ended that never began"))?;
        if self.options.reference.is_some() && self.images > 0 {
            return Err(Error::Unsupported(format!(
                "{} names one image but more than one is being copied",
                self.describe()
            )));
        }
        self.images += 1;
        let layers: Vec<Descriptor> = image.layers.iter().map(|l| l.blob.clone()).collect();
        let config_desc = Descriptor::new(
            media_type::OCI_CONFIG,
            config.id().0,
            config.raw().len() as u64,
        );
        // The source's own OCI manifest, if it says exactly this.
        let kept = image
            .source_manifest
            .filter(|m| m.describes(media_type::OCI_MANIFEST, &config_desc, &layers));
        let bytes = match kept {
            Some(m) => m.bytes.clone(),
            None => gojson::marshal(&Manifest::oci(config_desc, layers))?,
        };
        let digest = self.put_bytes(&bytes)?;
        let desc = Descriptor::new(media_type::OCI_MANIFEST, digest, bytes.len() as u64);
        if let Some(r) = &self.options.reference {
            let mut d = desc;
            d.annotations.insert(annotation::REF_NAME.into(), r.clone());
            self.entries.push(d);
            return Ok(());
        }
        self.entries.extend(index_entries(&desc, image.names));
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Error> {
        let new = std::mem::take(&mut self.entries);
        match &mut self.target {
            Target::Dir(layout) => {
                let dir = layout.work.clone();
                let what = format!("index.json of oci:{}", layout.dir.display());
                let mut manifests = match fs::read(dir.join("index.json")) {
                    Ok(bytes) => Index::parse(&bytes, &what)?.manifests,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(Error::io(format!("cannot read {what}"), e)),
                };
                // A new entry replaces an old one of the same ref name (skopeo does the same).
                let replaced: HashSet<&String> = new
                    .iter()
                    .filter_map(|d| d.annotations.get(annotation::REF_NAME))
                    .collect();
                manifests.retain(|d| {
                    d.annotations
                        .get(annotation::REF_NAME)
                        .is_none_or(|r| !replaced.contains(r))
                });
                manifests.extend(new.iter().cloned());
                write_atomic(
                    &dir,
                    "index.json",
                    &gojson::marshal(&Index::oci(manifests))?,
                )?;
                layout.commit()
            }
            Target::Archive { out, temp, path } => {
                let mut out = lock(out).take().ok_or_else(|| {
                    Error::invalid(path.display().to_string(), "already committed")
                })?;
                out.file("index.json", 0, &gojson::marshal(&Index::oci(new))?)?;
                out.finish()?;
                persist(temp.take(), path)
            }
        }
    }
}
