//! [`LayerStream`]: one layer on its way from a source to a destination, verified while
//! it streams.
//!
//! A source hands out the blob as it stores it (compressed or not). The destination picks
//! the form it wants and reads it once:
//!
//! - [`LayerStream::tar`]: the uncompressed tar (what an archive or the store writes);
//! - [`LayerStream::blob`]: the blob as stored (what an OCI layout or a registry keeps).
//!
//! Either way, the blob is read no further than its descriptor's size plus one byte (a
//! blob that is longer, or never ends, fails there; a shorter one at its end), reaching
//! the end of the stream checks the blob's digest and size against its descriptor, and the tar's digest against the diffID in the config. `blob()` of a
//! compressed layer passes the bytes through without decompressing them, as a registry
//! or a layout keeps them; it checks the diffID too (a second thread decompresses a copy
//! of the bytes) only when asked with [`LayerStream::check_diff_id`]. A mismatch is an
//! error from `read` at the end of the stream, before any destination could commit;
//! [`TarStream::finish`] and [`BlobStream::finish`] read to the end and return the
//! verified digests, so a destination never has to hash anything itself.
//!
//! ```
//! use std::io::Read;
//! use strata_image::ids::{sha256, ChainId, DiffId, ImageId};
//! use strata_image::manifest::{media_type, Descriptor};
//! use strata_image::{LayerInfo, LayerStream};
//! let tar = vec![0u8; 1024]; // an empty layer
//! let diff = DiffId(sha256(&tar));
//! let info = LayerInfo {
//!     index: 0,
//!     blob: Descriptor::new(media_type::OCI_LAYER, diff.0, 1024),
//!     diff_id: diff,
//!     chain_id: ChainId(diff.0),
//!     foreign: None,
//! };
//! let image = ImageId(sha256(b"config"));
//! let stream = LayerStream::new(info.clone(), image, &tar[..]);
//! let done = stream.tar().unwrap().finish().unwrap();
//! assert_eq!(done.diff_id, diff);
//!
//! let mut wrong = info;
//! wrong.diff_id = DiffId(sha256(b"something else"));
//! let err = LayerStream::new(wrong, image, &tar[..]).tar().unwrap().finish().unwrap_err();
//! assert!(err.to_string().starts_with("invalid diffID for layer 0"));
//! ```

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use strata_layer::compress::{open_blob, Compression, Decompressor};
use strata_layer::digest::Hasher;
use strata_layer::mapped::MappedFile;
use strata_registry::{RegistryHost, RepositoryName};

use crate::config::ImageConfig;
use crate::ids::{ChainId, DiffId, Digest, ImageId};
use crate::manifest::{Descriptor, LayerType};
use crate::Error;

/// `io::copy` with 1 MiB reads: layer bytes move in large chunks (fewer `pread`s, and
/// hashing and compression see big buffers), whatever the writer is.
pub fn pump(
    reader: &mut (impl Read + ?Sized),
    writer: &mut (impl io::Write + ?Sized),
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A blob that must be `expected` bytes long: reads stop one byte past that, and a
/// blob found longer (or one that never ends) fails there, a shorter one at its end.
/// Every form of [`LayerStream`] reads through it, so every destination checks sizes
/// the same way, the store's unverified stream included.
struct SizeBound<R> {
    inner: R,
    expected: u64,
    read: u64,
    /// `the size of layer N of image ID (DIGEST)`, for the error.
    what: String,
}

impl<R> SizeBound<R> {
    fn mismatch(&self, got: String) -> io::Error {
        Error::BlobMismatch {
            what: self.what.clone(),
            expected: format!("{} bytes", self.expected),
            got,
        }
        .into_io()
    }
}

impl<R: Read> Read for SizeBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.expected.saturating_sub(self.read).saturating_add(1);
        let max = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.read += n as u64;
        if self.read > self.expected {
            return Err(self.mismatch(format!("more than {} bytes", self.expected)));
        }
        if n == 0 && max > 0 && self.read < self.expected {
            return Err(self.mismatch(format!("{} bytes", self.read)));
        }
        Ok(n)
    }
}

/// One layer of an image as a source describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Position in the image, bottom layer 0.
    pub index: usize,
    /// The blob as the source stores it: media type, digest and size.
    pub blob: Descriptor,
    /// What the config says the uncompressed tar hashes to.
    pub diff_id: DiffId,
    /// The stack of this layer and all below it.
    pub chain_id: ChainId,
    /// For a foreign (non-distributable) layer: the descriptor of its remote blob, when
    /// the source records one apart from the data it holds (docker-archive `LayerSources`).
    pub foreign: Option<Descriptor>,
}

impl LayerInfo {
    /// The layers of an image whose manifest lists `layers` and whose config is
    /// `config` (the diffIDs and chain IDs); fails when the counts differ. `image` names
    /// the image in the error.
    pub fn of_image(
        config: &ImageConfig,
        layers: &[Descriptor],
        image: &str,
    ) -> Result<Vec<LayerInfo>, Error> {
        let diffs = config.diff_ids();
        if diffs.len() != layers.len() {
            return Err(Error::LayerCountMismatch {
                image: image.to_string(),
                layers: layers.len(),
                diff_ids: diffs.len(),
            });
        }
        let chains = config.chain_ids();
        Ok(layers
            .iter()
            .enumerate()
            .map(|(i, d)| LayerInfo {
                index: i,
                blob: d.clone(),
                diff_id: diffs[i],
                chain_id: chains[i],
                foreign: None,
            })
            .collect())
    }

    /// A foreign (non-distributable) layer with URLs: the descriptor a destination
    /// records instead of storing the blob (registries and layouts are not given it; the
    /// manifest points at where it lives, as the source's did).
    pub fn foreign_reference(&self) -> Option<&Descriptor> {
        let desc = self.foreign.as_ref().unwrap_or(&self.blob);
        let foreign = LayerType::of(&desc.media_type).is_some_and(|t| t.foreign);
        (foreign && !desc.urls.is_empty()).then_some(desc)
    }

    /// The compression of the blob, from its media type.
    pub fn compression(&self) -> Compression {
        LayerType::of(&self.blob.media_type).map_or(Compression::None, |t| t.compression)
    }
}

/// The digests of a layer's blob as [`BlobStream`] verified them: always its digest
/// and size; its diffID and tar size (`tar`) when it checked those too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedBlob {
    /// The blob's sha256.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The diffID and tar size too, when the stream decompressed and checked them.
    pub tar: Option<VerifiedLayer>,
}

/// The digests of a layer, all verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: DiffId,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// sha256 of the blob as stored.
    pub blob_digest: Digest,
    /// Bytes of the blob as stored.
    pub blob_size: u64,
}

/// Where a layer's blob can be had apart from its stream, for destinations that can use
/// that instead of the bytes: a registry uploads a file as it is (no copy into staging)
/// or has a repository of the same registry mount the blob (nothing sent).
///
/// The stream stays the one source of truth: a destination that sends the file still
/// reads the stream to its end, which verifies it. A mount is like a reused layer: the
/// registry already holds the bytes, and the stream is not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobOrigin {
    /// The blob is exactly this file (an `oci:` layout's blob, a store's kept blob).
    File(PathBuf),
    /// The blob is in this repository of this registry (a `docker://` source).
    Registry {
        /// The registry.
        host: RegistryHost,
        /// The repository that holds the blob.
        repository: RepositoryName,
    },
}

/// Leases a layer's bytes to be read through memory maps ([`LayerStream::with_mapped`]).
type Mapper<'a> = Box<dyn FnOnce() -> Option<MappedFile<'static>> + Send + 'a>;

/// A stream that tells `f` how many bytes were read from it ([`LayerStream::on_bytes`]).
struct Reported<R, F> {
    inner: R,
    f: F,
}

impl<R: Read, F: Fn(u64)> Read for Reported<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.f)(n as u64);
        }
        Ok(n)
    }
}

/// A layer's blob, streamed from its source; see the module documentation.
pub struct LayerStream<'a> {
    info: LayerInfo,
    image: ImageId,
    blob: Box<dyn Read + Send + 'a>,
    /// Leases the same bytes to be read through memory maps, for a destination that
    /// unpacks (only then: a lease makes writers of the file wait).
    mapped: Option<Mapper<'a>>,
    /// Told the number of bytes read through the maps ([`on_bytes`](Self::on_bytes)).
    mapped_progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync + 'a>>,
    origins: Vec<BlobOrigin>,
    check_diff_id: bool,
}

impl<'a> LayerStream<'a> {
    /// A stream of `blob`, the bytes of layer `info` of image `image` as stored, read
    /// no further than the descriptor's size plus one byte whatever form is taken.
    pub fn new(info: LayerInfo, image: ImageId, blob: impl Read + Send + 'a) -> LayerStream<'a> {
        let blob = SizeBound {
            what: format!(
                "the size of layer {} of image {image} ({})",
                info.index, info.blob.digest
            ),
            expected: info.blob.size,
            read: 0,
            inner: blob,
        };
        LayerStream {
            info,
            image,
            blob: Box::new(blob),
            mapped: None,
            mapped_progress: None,
            origins: Vec::new(),
            check_diff_id: false,
        }
    }

    /// Says how to have the blob's bytes read through memory maps (a layer in an archive
    /// or a layout: `lease` leases it, [`strata_layer::mapped`], or says it cannot). Only
    /// [`into_unverified`](Self::into_unverified) calls it, and uses what it gives only
    /// when that holds as many bytes as the descriptor says.
    pub fn with_mapped(
        mut self,
        lease: impl FnOnce() -> Option<MappedFile<'static>> + Send + 'a,
    ) -> LayerStream<'a> {
        self.mapped = Some(Box::new(lease));
        self
    }

    /// Whether [`blob`](Self::blob) of a compressed layer also decompresses the bytes to
    /// check the diffID (default: no, the blob digest alone says the bytes are the ones
    /// the manifest names). The tar forms always check it, as does `blob()` of an
    /// uncompressed layer, where it costs nothing.
    pub fn check_diff_id(mut self, on: bool) -> LayerStream<'a> {
        self.check_diff_id = on;
        self
    }

    /// Says where else the blob is ([`BlobOrigin`]); a blob may be in several places (a
    /// store's kept file, and repositories it was pulled from or pushed to).
    pub fn with_origin(mut self, origin: BlobOrigin) -> LayerStream<'a> {
        self.origins.push(origin);
        self
    }

    /// What the stream carries: the layer as its source described it.
    pub fn info(&self) -> &LayerInfo {
        &self.info
    }

    /// The same blob as another image places it (its position, chain ID, media type):
    /// `info` must name the same digest, size and diffID, which are still verified.
    pub fn relabel(mut self, info: LayerInfo) -> Result<LayerStream<'a>, Error> {
        let same = |a: &LayerInfo| (a.blob.digest, a.blob.size, a.diff_id);
        if same(&info) != same(&self.info) {
            return Err(Error::invalid(
                format!("layer {} ({})", self.info.index, self.info.blob.digest),
                format!("cannot stand for {}", info.blob.digest),
            ));
        }
        self.info = info;
        Ok(self)
    }

    /// Where else the blob is, as the source said (the first the source knows best).
    pub fn origins(&self) -> &[BlobOrigin] {
        &self.origins
    }

    /// The file that is the blob, if the source said.
    pub fn file(&self) -> Option<&Path> {
        self.origins.iter().find_map(|o| match o {
            BlobOrigin::File(path) => Some(path.as_path()),
            BlobOrigin::Registry { .. } => None,
        })
    }

    /// Calls `f` with the number of bytes each time some of the blob has been read,
    /// whether from the stream or through maps (progress); verification still applies.
    pub fn on_bytes(mut self, f: impl Fn(u64) + Send + Sync + 'a) -> LayerStream<'a> {
        let f = std::sync::Arc::new(f);
        let mapped_f = f.clone();
        let mapped_progress: std::sync::Arc<dyn Fn(u64) + Send + Sync + 'a> =
            match self.mapped_progress.take() {
                None => mapped_f,
                Some(before) => std::sync::Arc::new(move |n| {
                    before(n);
                    mapped_f(n)
                }),
            };
        LayerStream {
            blob: Box::new(Reported {
                inner: self.blob,
                f: move |n| f(n),
            }),
            mapped_progress: Some(mapped_progress),
            ..self
        }
    }

    /// The blob bytes as stored, *unverified* but for their size (checked as for every
    /// form: see [`new`](Self::new)), for a destination that computes the blob
    /// digest and the diffID itself as it consumes them (the store's apply does, in the
    /// same pass that unpacks) and checks them against [`LayerInfo`] before it keeps
    /// anything. Everyone else reads [`tar`](Self::tar) or [`blob`](Self::blob). Also
    /// the same bytes to read through memory maps, when the source has them so
    /// ([`with_mapped`](Self::with_mapped)): whoever reads those need not read the stream.
    pub fn into_unverified(self) -> (LayerInfo, Box<dyn Read + Send + 'a>, Option<MappedFile<'a>>) {
        let size = self.info.blob.size;
        let progress = self.mapped_progress;
        let mapped = self
            .mapped
            .and_then(|lease| lease())
            .filter(|m| m.len() == size)
            .map(|m| {
                let mut m: MappedFile<'a> = m;
                if let Some(f) = progress {
                    m.on_progress(move |n| f(n));
                }
                m
            });
        (self.info, self.blob, mapped)
    }

    /// The uncompressed tar stream (decompressed by magic, whatever the media type says).
    pub fn tar(self) -> Result<TarStream<'a>, Error> {
        Ok(self.decompressed()?.into_tar())
    }

    /// [`tar`](Self::tar), with the reading, the blob digest and the decompression on
    /// another thread of `scope`, so that they overlap with whatever the caller does with
    /// the tar (hashing it for the diffID is done on the caller's side).
    pub fn tar_pipelined<'scope, 'env>(
        self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> Result<TarStream<'scope>, Error>
    where
        'a: 'scope,
    {
        let opened = self.decompressed()?;
        let piped: Box<dyn Read + Send + 'scope> =
            Box::new(strata_layer::pipe::spawn(scope, opened.inner));
        Ok(Opened {
            inner: piped,
            ..opened
        }
        .into_tar())
    }

    fn decompressed(self) -> Result<Opened<'a>, Error> {
        let (inner, blob) = open_blob(self.blob).map_err(|e| {
            Error::io(
                format!("reading layer {} of image {}", self.info.index, self.image),
                e,
            )
        })?;
        Ok(Opened {
            inner: Box::new(inner),
            blob,
            info: self.info,
            image: self.image,
        })
    }

    /// The blob bytes as stored.
    pub fn blob(self) -> BlobStream<'a> {
        let blob = Hasher::default();
        let compressed = self.info.compression() != Compression::None;
        let tee = (compressed && self.check_diff_id).then(Tee::start);
        BlobStream {
            diff_id_checked: !compressed || self.check_diff_id,
            inner: blob.reader(self.blob),
            check: Check {
                tar: blob.clone(),
                blob,
                info: self.info,
                image: self.image,
            },
            tee,
            done: None,
        }
    }
}

/// A layer stream opened for its tar: the decompressed bytes, the hasher of the blob
/// bytes when they differ from the tar, and the layer.
struct Opened<'a> {
    inner: Box<dyn Read + Send + 'a>,
    blob: Option<Hasher>,
    info: LayerInfo,
    image: ImageId,
}

impl<'a> Opened<'a> {
    fn into_tar(self) -> TarStream<'a> {
        let tar = Hasher::default();
        TarStream {
            inner: tar.reader(self.inner),
            check: Check {
                info: self.info,
                image: self.image,
                blob: self.blob.unwrap_or_else(|| tar.clone()),
                tar,
            },
            done: None,
        }
    }
}

/// What the end of a stream checks.
struct Check {
    info: LayerInfo,
    image: ImageId,
    blob: Hasher,
    tar: Hasher,
}

impl Check {
    fn what(&self) -> String {
        format!(
            "layer {} of image {} ({})",
            self.info.index, self.image, self.info.blob.digest
        )
    }

    /// An error reading the stream, saying which layer it was.
    fn read_error(&self, e: io::Error) -> io::Error {
        Error::io(format!("reading {}", self.what()), e).into_io()
    }

    /// Checks the blob's size and digest against its descriptor.
    fn verify_blob(&self) -> Result<(), Error> {
        let (blob_digest, blob_size) = (self.blob.digest(), self.blob.bytes());
        if blob_size != self.info.blob.size {
            return Err(Error::BlobMismatch {
                what: format!("the size of {}", self.what()),
                expected: format!("{} bytes", self.info.blob.size),
                got: format!("{blob_size} bytes"),
            });
        }
        // An uncompressed blob named by its diffID is checked, with a clearer message,
        // as the diffID.
        let named_by_diff_id = self.info.blob.digest == self.info.diff_id.0;
        if blob_digest != self.info.blob.digest && !named_by_diff_id {
            return Err(Error::BlobMismatch {
                what: format!("the digest of {}", self.what()),
                expected: self.info.blob.digest.to_string(),
                got: blob_digest.to_string(),
            });
        }
        Ok(())
    }

    /// Verifies the blob, then the tar (digest and size `tar`) against the diffID.
    fn verify(&self, tar: (Digest, u64)) -> Result<VerifiedLayer, Error> {
        self.verify_blob()?;
        if tar.0 != self.info.diff_id.0 {
            return Err(Error::DiffIdMismatch {
                image: self.image.to_string(),
                index: self.info.index,
                expected: self.info.diff_id.to_string(),
                got: tar.0.to_string(),
            });
        }
        Ok(VerifiedLayer {
            diff_id: self.info.diff_id,
            tar_size: tar.1,
            blob_digest: self.blob.digest(),
            blob_size: self.blob.bytes(),
        })
    }
}

/// The uncompressed tar of a layer; see [`LayerStream::tar`].
pub struct TarStream<'a> {
    inner: strata_layer::digest::HashingReader<Box<dyn Read + Send + 'a>>,
    check: Check,
    done: Option<VerifiedLayer>,
}

impl TarStream<'_> {
    /// The layer this stream carries.
    pub fn info(&self) -> &LayerInfo {
        &self.check.info
    }

    /// The tar's size when it is known before reading (an uncompressed blob).
    pub fn known_size(&self) -> Option<u64> {
        (self.check.info.compression() == Compression::None).then_some(self.check.info.blob.size)
    }

    /// Reads whatever is left, verifies, and returns the digests.
    pub fn finish(mut self) -> Result<VerifiedLayer, Error> {
        pump(&mut self, &mut io::sink()).map_err(|e| Error::io("reading the layer", e))?;
        self.done
            .ok_or_else(|| Error::invalid("a layer stream", "ended without verification"))
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done.is_some() {
            return Ok(0);
        }
        let n = self.inner.read(buf).map_err(|e| self.check.read_error(e))?;
        if n == 0 && !buf.is_empty() {
            let tar = (self.check.tar.digest(), self.check.tar.bytes());
            self.done = Some(self.check.verify(tar).map_err(Error::into_io)?);
        }
        Ok(n)
    }
}

/// The blob of a layer as stored; see [`LayerStream::blob`].
pub struct BlobStream<'a> {
    inner: strata_layer::digest::HashingReader<Box<dyn Read + Send + 'a>>,
    check: Check,
    /// The diffID is checked: through `tee` for a compressed blob, directly otherwise.
    diff_id_checked: bool,
    tee: Option<Tee>,
    done: Option<VerifiedBlob>,
}

impl BlobStream<'_> {
    /// The layer this stream carries.
    pub fn info(&self) -> &LayerInfo {
        &self.check.info
    }

    /// Reads whatever is left, verifies, and returns the digests.
    pub fn finish(mut self) -> Result<VerifiedBlob, Error> {
        pump(&mut self, &mut io::sink()).map_err(|e| Error::io("reading the layer", e))?;
        self.done
            .ok_or_else(|| Error::invalid("a layer stream", "ended without verification"))
    }

    fn end(&mut self) -> Result<VerifiedBlob, Error> {
        let tar = match self.tee.take() {
            None => Ok((self.check.tar.digest(), self.check.tar.bytes())),
            Some(tee) => tee.finish(),
        };
        // A blob that is not what its descriptor says explains any decompression error.
        self.check.verify_blob()?;
        let blob = |tar| VerifiedBlob {
            digest: self.check.blob.digest(),
            size: self.check.blob.bytes(),
            tar,
        };
        if !self.diff_id_checked {
            return Ok(blob(None));
        }
        let tar = tar.map_err(|e| {
            Error::io(
                format!(
                    "decompressing layer {} of image {}",
                    self.check.info.index, self.check.image
                ),
                e,
            )
        })?;
        Ok(blob(Some(self.check.verify(tar)?)))
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done.is_some() {
            return Ok(0);
        }
        let n = self.inner.read(buf).map_err(|e| self.check.read_error(e))?;
        if let Some(tee) = &mut self.tee {
            tee.push(&buf[..n]);
        }
        if n == 0 && !buf.is_empty() {
            self.done = Some(self.end().map_err(Error::into_io)?);
        }
        Ok(n)
    }
}

const TEE_CHUNK: usize = 1 << 20;

/// A copy of a compressed blob's bytes, decompressed and hashed on another thread.
struct Tee {
    pending: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    thread: JoinHandle<io::Result<(Digest, u64)>>,
}

impl Tee {
    fn start() -> Tee {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let mut tar = Decompressor::new(ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
            })?;
            let h = Hasher::default();
            // Decompressing here, hashing on one more thread.
            std::thread::scope(|s| {
                let mut hashing = strata_layer::pipe::spawn_writer(s, h.writer(io::sink()));
                pump(&mut tar, &mut hashing)?;
                hashing.finish().map(drop)
            })?;
            Ok((h.digest(), h.bytes()))
        });
        Tee {
            pending: Vec::with_capacity(TEE_CHUNK),
            tx: Some(tx),
            thread,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= TEE_CHUNK {
            self.send();
        }
    }

    fn send(&mut self) {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(TEE_CHUNK));
        // If the thread stopped (corrupt data), its error comes out of `finish`.
        if let Some(tx) = &self.tx {
            if tx.send(chunk).is_err() {
                self.tx = None;
            }
        }
    }

    fn finish(mut self) -> io::Result<(Digest, u64)> {
        if !self.pending.is_empty() {
            self.send();
        }
        drop(self.tx.take());
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the decompressing thread panicked")))
    }
}

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use strata_layer::compress::Compressor;

    use super::*;
    use crate::ids::sha256;
    use crate::manifest::media_type;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(Vec::new(), Compression::Gzip).unwrap();
        c.write_all(data).unwrap();
        c.finish().unwrap()
    }

    fn info(blob: &[u8], mt: &str, tar: &[u8]) -> LayerInfo {
        let diff = DiffId(sha256(tar));
        LayerInfo {
            index: 3,
            blob: Descriptor::new(mt, sha256(blob), blob.len() as u64),
            diff_id: diff,
            chain_id: ChainId(diff.0),
            foreign: None,
        }
    }

    #[test]
    fn compressed_blobs_verify_both_digests_either_way() {
        let tar: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let blob = gzip(&tar);
        let good = info(&blob, media_type::OCI_LAYER_GZIP, &tar);
        let image = ImageId(sha256(b"c"));

        let mut out = Vec::new();
        let mut s = LayerStream::new(good.clone(), image, &blob[..])
            .tar()
            .unwrap();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(out, tar);
        let v = s.finish().unwrap();
        assert_eq!(
            (v.tar_size, v.blob_size),
            (tar.len() as u64, blob.len() as u64)
        );

        for check in [false, true] {
            let mut out = Vec::new();
            let mut s = LayerStream::new(good.clone(), image, &blob[..])
                .check_diff_id(check)
                .blob();
            s.read_to_end(&mut out).unwrap();
            assert_eq!(out, blob);
            let b = s.finish().unwrap();
            assert_eq!((b.digest, b.size), (v.blob_digest, v.blob_size));
            assert_eq!(b.tar, check.then_some(v));
        }

        let mut bad_diff = good.clone();
        bad_diff.diff_id = DiffId(sha256(b"x"));
        for tar_form in [true, false] {
            let s = LayerStream::new(bad_diff.clone(), image, &blob[..]);
            let e = if tar_form {
                s.tar().unwrap().finish().map(drop)
            } else {
                s.check_diff_id(true).blob().finish().map(drop)
            };
            assert!(
                matches!(e, Err(Error::DiffIdMismatch { index: 3, .. })),
                "{e:?}"
            );
        }
        // Passed through unchecked, the wrong diffID is not noticed; the blob digest is.
        let b = LayerStream::new(bad_diff.clone(), image, &blob[..])
            .blob()
            .finish()
            .unwrap();
        assert_eq!(b.tar, None);
        let mut bad_blob = bad_diff;
        bad_blob.blob.digest = sha256(b"y");
        let e = LayerStream::new(bad_blob, image, &blob[..])
            .blob()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("the digest of layer 3"), "{e}");
        let mut truncated = blob.clone();
        truncated.truncate(blob.len() / 2);
        let e = LayerStream::new(good.clone(), image, &truncated[..])
            .blob()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("the size of layer 3"), "{e}");
        let e = LayerStream::new(good, image, &truncated[..])
            .tar()
            .unwrap()
            .finish()
            .unwrap_err();
        // The tar form says so too, before the decompressor can call it a corrupt stream.
        assert!(e.to_string().contains("the size of layer 3"), "{e}");
    }

    #[test]
    fn pipelined_tar_streams_verify_the_same() {
        let tar: Vec<u8> = (0..5_000_000u32).map(|i| (i % 13) as u8).collect();
        let blob = gzip(&tar);
        let good = info(&blob, media_type::OCI_LAYER_GZIP, &tar);
        let image = ImageId(sha256(b"c"));
        std::thread::scope(|s| {
            let mut out = Vec::new();
            let mut t = LayerStream::new(good.clone(), image, &blob[..])
                .tar_pipelined(s)
                .unwrap();
            t.read_to_end(&mut out).unwrap();
            assert_eq!(out, tar);
            assert_eq!(t.finish().unwrap().tar_size, tar.len() as u64);
            let mut bad = good.clone();
            bad.blob.digest = sha256(b"other");
            let e = LayerStream::new(bad, image, &blob[..])
                .tar_pipelined(s)
                .unwrap()
                .finish()
                .unwrap_err();
            assert!(e.to_string().contains("the digest of layer 3"), "{e}");
        });
    }

    /// Every form reads at most size + 1 bytes and refuses a blob of another size, the
    /// store's unverified form too; a blob that never ends fails instead of filling a disk.
    #[test]
    fn sizes_other_than_the_descriptors_fail_in_every_form() {
        let tar = vec![0u8; 10240];
        let good = info(&tar, media_type::OCI_LAYER, &tar);
        let image = ImageId(sha256(b"c"));
        let forms: [fn(LayerStream<'_>) -> Result<(), Error>; 3] = [
            |s| s.tar()?.finish().map(drop),
            |s| s.blob().finish().map(drop),
            |s| {
                let (_, mut r, _) = s.into_unverified();
                pump(&mut r, &mut io::sink())
                    .map(drop)
                    .map_err(|e| Error::io("reading", e))
            },
        ];
        for (i, form) in forms.iter().enumerate() {
            for (claimed, got) in [
                (11240, "got 10240 bytes"),
                (9240, "got more than 9240 bytes"),
                (1 << 63, "got 10240 bytes"),
            ] {
                let mut lying = good.clone();
                lying.blob.size = claimed;
                let e = form(LayerStream::new(lying, image, &tar[..])).unwrap_err();
                let text = e.to_string();
                assert!(
                    matches!(e, Error::BlobMismatch { .. })
                        && text.contains(&format!("expected {claimed} bytes, {got}"))
                        && text.contains("the size of layer 3"),
                    "form {i}, size {claimed}: {text}"
                );
            }
            // An endless blob (a layout's blob linked to /dev/zero) stops at size + 1.
            let mut endless = good.clone();
            endless.blob.size = 10240;
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let c = counted.clone();
            let zeros = io::repeat(0).take(u64::MAX);
            let stream = LayerStream::new(endless, image, Counted(Box::new(zeros), c));
            let e = form(stream).unwrap_err();
            assert!(
                e.to_string().contains("got more than 10240 bytes"),
                "form {i}: {e}"
            );
            let read = counted.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(read, 10241, "form {i} read {read} bytes of an endless blob");
        }
        // The right size still passes.
        LayerStream::new(good, image, &tar[..])
            .blob()
            .finish()
            .unwrap();
    }

    struct Counted<'a>(
        Box<dyn Read + Send + 'a>,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    );

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1
                .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            Ok(n)
        }
    }

    #[test]
    fn read_errors_come_out_of_read_as_the_crate_error() {
        let tar = vec![0u8; 1024];
        let mut i = info(&tar, media_type::OCI_LAYER, &tar);
        i.blob.digest = sha256(b"not it");
        let mut s = LayerStream::new(i, ImageId(sha256(b"c")), &tar[..])
            .tar()
            .unwrap();
        let e = io::copy(&mut s, &mut io::sink()).unwrap_err();
        assert!(matches!(
            Error::io("copying", e),
            Error::BlobMismatch { .. }
        ));
    }
}
