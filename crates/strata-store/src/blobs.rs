//! Content-addressed blobs: `ROOT/blobs/sha256/HEX`, holding image configs, manifests
//! and the compressed layer blobs kept for a later push.
//!
//! A blob is written to the staging area while it is hashed, synced, checked against the
//! digest it should have, and renamed into place: a blob file always holds exactly the
//! bytes its name says, and a crash leaves at most staging debris. Two processes writing
//! the same blob is fine: the second rename replaces identical bytes.
//!
//! A blob is kept while something refers to it: an image (config, manifest), a layer
//! (its kept compressed blob), or a [`BlobLease`], the claim of a process that stored
//! blobs for records it has not written yet (a load between its config and its commit).
//! A lease is a staging entry (`staging/T/held/HEX`, announced by its held lock), so it
//! ends with its process; recovery removes every blob nothing refers to.
//!
//! ```
//! use std::io::Write;
//! use strata_store::{DriverKind, Store, StoreOptions};
//! let root = tempfile::tempdir().unwrap();
//! let store = Store::open(&StoreOptions { root: root.path().into(), driver: Some(DriverKind::Vfs) }).unwrap();
//! let lease = store.blob_lease().unwrap();
//! let mut w = store.blob_writer(&lease).unwrap();
//! w.write_all(b"{}").unwrap();
//! let (digest, size) = w.commit(None).unwrap();
//! assert_eq!(size, 2);
//! assert_eq!(std::fs::read(store.blob_path(&digest).unwrap()).unwrap(), b"{}");
//! // Nothing else refers to it: once the lease ends, the next recovery removes it.
//! lease.release().unwrap();
//! assert!(store.cleanup().unwrap().actions.iter().any(|a| a.contains(&digest.to_string())));
//! assert!(store.blob_path(&digest).is_none());
//! ```

use std::collections::HashSet;
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
    /// The lease's directory of held digests.
    held: PathBuf,
}

/// A process's claim on the blobs it stores before any record refers to them; see the
/// [module docs](self). Dropping it (or [`release`](BlobLease::release)) ends the claim.
pub struct BlobLease {
    staging: Staging,
}

impl BlobLease {
    fn held(&self) -> PathBuf {
        self.staging.path().join(HELD)
    }

    /// Ends the claim: the blobs are kept from now on only if records refer to them.
    pub fn release(self) -> Result<()> {
        self.staging.done()
    }
}

/// The subdirectory of a lease's staging entry naming the digests it holds.
const HELD: &str = "held";

/// Claims `digest` for the lease whose `held` directory this is, before the blob is placed.
fn hold(held: &Path, digest: &Digest) -> Result<()> {
    let path = held.join(digest.hex());
    File::create(&path)
        .map(drop)
        .map_err(|e| Error::io(format!("holding blob {digest} at {}", path.display()), e))
}

/// The digests (hex) held by live leases. The caller swept dead staging entries first;
/// an entry that ends while this reads is skipped.
pub(crate) fn held_blobs(staging_root: &Path) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    let entries = std::fs::read_dir(staging_root)
        .map_err(|e| Error::io(format!("listing {}", staging_root.display()), e))?;
    for entry in entries.flatten() {
        let Ok(names) = std::fs::read_dir(entry.path().join(HELD)) else {
            continue;
        };
        out.extend(
            names
                .flatten()
                .map(|n| n.file_name().to_string_lossy().into_owned()),
        );
    }
    Ok(out)
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
        hold(&self.held, &digest)?;
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
    /// Starts a lease: the blobs stored under it stay until it ends, referred to or not.
    pub fn blob_lease(&self) -> Result<BlobLease> {
        let staging = Staging::new(&self.paths().staging())?;
        let held = staging.path().join(HELD);
        std::fs::create_dir(&held)
            .map_err(|e| Error::io(format!("creating {}", held.display()), e))?;
        Ok(BlobLease { staging })
    }

    /// Starts writing a blob (in the staging area), to be held by `lease` once placed.
    pub fn blob_writer(&self, lease: &BlobLease) -> Result<BlobWriter> {
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
            held: lease.held(),
        })
    }

    /// Stores `bytes` as a blob (a config, a manifest), held by `lease`.
    pub fn put_blob(&self, bytes: &[u8], lease: &BlobLease) -> Result<Digest> {
        let mut w = self.blob_writer(lease)?;
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

    /// Removes the blobs that nothing refers to (no image, layer or lease); the caller
    /// holds the store lock and swept dead staging entries. Returns one sentence each.
    pub(crate) fn sweep_blobs(&self) -> Result<Vec<String>> {
        let dir = self.paths().blobs();
        let mut present = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Anything else in the directory is for fsck to report, not to delete.
            if let Ok(digest) = Digest::parse(&format!("sha256:{name}")) {
                present.push(digest);
            }
        }
        if present.is_empty() {
            return Ok(Vec::new());
        }
        // Read after the listing: a blob listed was held before it was placed.
        let held = held_blobs(&self.paths().staging())?;
        let referenced = self.read(|tx| tx.referenced_blobs())?;
        let mut done = Vec::new();
        for digest in present {
            if !held.contains(&digest.hex()) && !referenced.contains(&digest) {
                self.delete_blob(&digest)?;
                done.push(format!(
                    "removed blob {digest}, which no image, layer or load in progress refers to"
                ));
            }
        }
        Ok(done)
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
