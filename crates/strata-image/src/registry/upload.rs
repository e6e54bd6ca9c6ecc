//! What [`strata_registry::Repository::push_blob`] reads, made from a layer stream.
//! `push_blob` needs `Read + Seek` (to resume and retry), and asks the registry before it
//! reads a byte; so nothing here touches the stream until the upload needs bytes: a blob
//! the repository holds, or mounts, is never read.
//!
//! - [`from_file`]: the layer's stream is a file ([`crate::BlobOrigin::File`]): the file is
//!   uploaded, and the stream is read alongside to verify it, never ahead of the upload
//!   (progress counted on the stream then follows the upload), and the upload's last
//!   bytes wait for the verdict (a wrong blob is never committed). Memory stays one
//!   buffer.
//! - [`Spool`]: any other stream kept as it is, spooled once into the staging directory
//!   when the upload first needs it, verified on the way.
//! - [`compress`]: an uncompressed layer, compressed into a staging file (its digest is
//!   only known after that), verified on the way.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use strata_layer::compress::{Compression, Compressor};
use strata_layer::digest::Hasher;
use strata_registry::Pushed;

use crate::ids::Digest;
use crate::stream::{pump, LayerStream, VerifiedBlob};
use crate::Error;

/// Uploads the file at `path`, which is the blob of `stream` (`size` bytes), with
/// `push`, while a second thread reads `stream` to verify it. The upload's read of the
/// last bytes waits for the verdict, so a blob that fails verification is never
/// committed: the upload fails before its end, with the verification's error.
pub(super) fn from_file(
    stream: LayerStream<'_>,
    path: &Path,
    size: u64,
    push: impl FnOnce(FileFeed<'_>) -> Result<Pushed, Error>,
) -> Result<Pushed, Error> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let pace = Pace {
        size,
        state: Mutex::default(),
        moved: Condvar::new(),
    };
    std::thread::scope(|s| {
        let verifier = s.spawn(|| pace.verify(stream));
        if size == 0 {
            // Nothing for the upload to read: the (empty) stream is verified first.
            pace.update(|s| s.touched = true);
        }
        let pushed = push(FileFeed {
            file,
            pos: 0,
            pace: &pace,
        });
        pace.end(pushed.is_ok());
        let verified = verifier.join().unwrap_or_else(|_| {
            Some(Err(Error::invalid(
                path.display().to_string(),
                "the thread verifying it panicked",
            )))
        });
        match (pushed, verified) {
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(Pushed::Uploaded), None) => Err(Error::invalid(
                path.display().to_string(),
                "was uploaded but never read",
            )),
            (Ok(pushed), _) => Ok(pushed),
        }
    })
}

/// How far the upload has read the file, whether it ended, and the verdict.
struct Pace {
    size: u64,
    state: Mutex<PaceState>,
    moved: Condvar,
}

#[derive(Default)]
struct PaceState {
    /// The upload has read or positioned the file.
    touched: bool,
    /// The furthest byte it read.
    sent: u64,
    /// `Some(ok)` once the upload is over.
    ended: Option<bool>,
    /// `Some(good)` once the stream was read to its end (or failed).
    verdict: Option<bool>,
}

impl Pace {
    fn lock(&self) -> MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut PaceState)) {
        f(&mut self.lock());
        self.moved.notify_all();
    }

    fn wait(&self, until: impl Fn(&PaceState) -> bool) -> MutexGuard<'_, PaceState> {
        self.moved
            .wait_while(self.lock(), |s| !until(s))
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn end(&self, ok: bool) {
        self.update(|s| s.ended = Some(ok));
    }

    /// Reads `stream` to its end, never past what the upload read, once the upload has
    /// started; `None` if it never started, or failed before the stream was read.
    fn verify(&self, stream: LayerStream<'_>) -> Option<Result<VerifiedBlob, Error>> {
        if !self.wait(|s| s.touched || s.ended.is_some()).touched {
            return None;
        }
        let mut blob = stream.blob();
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        let result = loop {
            let allowed = {
                let s = self.wait(|s| s.ended.is_some() || s.sent > read || s.sent >= self.size);
                match s.ended {
                    Some(false) => return None,
                    // All of it was sent: read on to the end of the stream.
                    _ if s.sent >= self.size || s.ended == Some(true) => u64::MAX,
                    _ => s.sent,
                }
            };
            let want = (allowed - read).min(buf.len() as u64) as usize;
            match blob.read(&mut buf[..want]) {
                Ok(0) => break blob.finish(),
                Ok(n) => read += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(Error::io("verifying the layer", e)),
            }
        };
        self.update(|s| s.verdict = Some(result.is_ok()));
        Some(result)
    }
}

/// The file being uploaded by [`from_file`], reporting how far the upload got.
pub(super) struct FileFeed<'p> {
    file: File,
    pos: u64,
    pace: &'p Pace,
}

impl FileFeed<'_> {
    fn refused() -> io::Error {
        io::Error::other("the layer failed verification")
    }
}

impl Read for FileFeed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pace.lock().verdict == Some(false) {
            return Err(Self::refused());
        }
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        let pos = self.pos;
        self.pace.update(|s| {
            s.touched = true;
            s.sent = s.sent.max(pos);
        });
        // The last bytes go out only once the stream is known to be right.
        if n > 0
            && pos >= self.pace.size
            && self.pace.wait(|s| s.verdict.is_some()).verdict == Some(false)
        {
            return Err(Self::refused());
        }
        Ok(n)
    }
}

impl Seek for FileFeed<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        self.pace.update(|s| s.touched = true);
        Ok(self.pos)
    }
}

/// A layer's blob spooled, verified, into an unnamed file in the staging directory the
/// first time the upload reads or seeks; then read from there.
pub(super) struct Spool<'s> {
    stream: Option<LayerStream<'s>>,
    staging: &'s Path,
    file: Option<File>,
    /// Why spooling failed: the upload sees only an I/O error.
    error: Option<Error>,
}

impl<'s> Spool<'s> {
    pub(super) fn new(stream: LayerStream<'s>, staging: &'s Path) -> Spool<'s> {
        Spool {
            stream: Some(stream),
            staging,
            file: None,
            error: None,
        }
    }

    /// Why the spool failed, if it did.
    pub(super) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    /// Whether the stream was spooled (and so verified).
    pub(super) fn spooled(&self) -> bool {
        self.file.is_some()
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let Some(stream) = self.stream.take() else {
                return Err(io::Error::other("spooling the layer failed"));
            };
            match spool(stream, self.staging) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    let message = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(message));
                }
            }
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("spooling the layer failed"))
    }
}

impl Read for Spool<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file()?.read(buf)
    }
}

impl Seek for Spool<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file()?.seek(to)
    }
}

/// An unnamed file in `staging` (gone when closed, whatever happens to this process).
fn staging_file(staging: &Path) -> Result<File, Error> {
    tempfile::tempfile_in(staging).map_err(|e| {
        Error::io(
            format!("cannot create a spool file in {}", staging.display()),
            e,
        )
    })
}

fn spool(stream: LayerStream<'_>, staging: &Path) -> Result<File, Error> {
    let mut file = staging_file(staging)?;
    let mut blob = stream.blob();
    let mut out = BufWriter::with_capacity(1 << 20, &mut file);
    pump(&mut blob, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("spooling a layer", e))?;
    drop(out);
    blob.finish()?;
    file.rewind()
        .map_err(|e| Error::io("reading a spooled layer", e))?;
    Ok(file)
}

/// Compresses the (uncompressed) layer of `stream` into an unnamed file in `staging`,
/// verifying its diffID; returns the file (at its start), the blob's digest and size.
pub(super) fn compress(
    stream: LayerStream<'_>,
    staging: &Path,
    compression: Compression,
) -> Result<(File, Digest, u64), Error> {
    let mut file = staging_file(staging)?;
    let hasher = Hasher::default();
    let mut tar = stream.tar()?;
    let mut c = Compressor::parallel(
        hasher.writer(BufWriter::with_capacity(1 << 20, &mut file)),
        compression,
    )
    .map_err(|e| Error::io("starting compression", e))?;
    pump(&mut tar, &mut c).map_err(|e| Error::io("compressing a layer", e))?;
    c.finish()
        .and_then(|w| w.into_inner().flush())
        .map_err(|e| Error::io("finishing compression", e))?;
    tar.finish()?;
    file.rewind()
        .map_err(|e| Error::io("reading a compressed layer", e))?;
    Ok((file, hasher.digest(), hasher.bytes()))
}
