//! Content-addressed blobs: `ROOT/blobs/sha256/HEX`, holding image configs, manifests
//! and the compressed layer blobs kept for a later push.
//!
//! A blob is written to the staging area while it is hashed, synced, checked against the
//! digest it should have, and renamed into place: a blob file always holds exactly the
//! bytes its name says, and a crash leaves at most staging debris. Two processes writing
//! the same blob is fine: the second rename replaces identical bytes.
//!
//! ```
//! use std::io::Write;
//! use strata_store::{DriverKind, Store, StoreOptions};
//! let root = tempfile::tempdir().unwrap();
//! let store = Store::open(&StoreOptions { root: root.path().into(), driver: Some(DriverKind::Vfs) }).unwrap();
//! let mut w = store.blob_writer().unwrap();
//! w.write_all(b"{}").unwrap();
//! let (digest, size) = w.commit(None).unwrap();
//! assert_eq!(size, 2);
//! assert_eq!(std::fs::read(store.blob_path(&digest).unwrap()).unwrap(), b"{}");
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::digest::{Digest, Hasher, HashingWriter};

use crate::error::{Error, Result};
use crate::lock::Staging;
use crate::store::Store;

/// A blob being written; [`commit`](BlobWriter::commit) puts it in place.
pub struct BlobWriter {
    staging: Staging,
    path: PathBuf,
    out: HashingWriter<BufWriter<File>>,
    hasher: Hasher,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Syncs the blob, checks it against `expected` (if given), and renames it into place.
    /// Returns its digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let digest = self.hasher.digest();
        let size = self.hasher.bytes();
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::Corrupt(format!(
                    "a blob expected to be {want} holds {digest} ({size} bytes)"
                )));
            }
        }
        let file = self
            .out
            .into_inner()
            .into_inner()
            .map_err(|e| Error::io("writing a blob", e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        let target = self.blobs.join(digest.hex());
        std::fs::rename(&self.path, &target)
            .map_err(|e| Error::io(format!("placing blob {digest}"), e))?;
        self.staging.done()?;
        Ok((digest, size))
    }
}

/// A reader that also writes every byte it reads to a file (a blob kept while a layer is
/// applied from it).
pub(crate) struct Tee<R> {
    pub inner: R,
    pub copy: BufWriter<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Store {
    /// Starts writing a blob (in the staging area).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let staging = Staging::new(&self.paths().staging())?;
        let path = staging.path().join("blob");
        let file = File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let hasher = Hasher::default();
        Ok(BlobWriter {
            out: hasher.writer(BufWriter::with_capacity(1 << 20, file)),
            hasher,
            path,
            staging,
            blobs: self.paths().blobs(),
        })
    }

    /// Stores `bytes` as a blob (a config, a manifest).
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(|e| Error::io("writing a blob", e))?;
        Ok(w.commit(None)?.0)
    }

    /// The path of blob `digest`, if the store has it.
    pub fn blob_path(&self, digest: &Digest) -> Option<PathBuf> {
        let p = self.paths().blobs().join(digest.hex());
        p.is_file().then_some(p)
    }

    /// Reads a whole (small) blob: a config or a manifest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self
            .blob_path(digest)
            .ok_or_else(|| Error::Corrupt(format!("blob {digest} is missing")))?;
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    /// Deletes blob `digest` (if present).
    pub(crate) fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.paths().blobs().join(digest.hex());
        std::fs::remove_file(&path)
            .or_else(crate::lock::ignore_missing)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))
    }
}

/// Moves a staged file into the blob directory under its digest.
pub(crate) fn place(staged: &Path, blobs: &Path, digest: &Digest) -> Result<()> {
    std::fs::rename(staged, blobs.join(digest.hex()))
        .map_err(|e| Error::io(format!("placing blob {digest}"), e))
}
