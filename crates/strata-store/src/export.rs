//! Reading layers back out: `diff` (a layer tar), `changes` and `diff-size`.
//!
//! * An applied layer's diff is its original tar, rebuilt byte for byte from its recipe
//!   and the layer's files (so it has its original diffID).
//! * A read-write layer's diff is generated: on overlay from the upper directory (0/0
//!   character devices become `.wh.NAME`, opaque directories `.wh..wh..opq`); on vfs from
//!   the changes against the parent, deletions first, then the added and modified
//!   entries in the directory reader's order. Both are deterministic: the same tree gives
//!   the same bytes.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use strata_layer::compress::{Compression, Compressor};
use strata_layer::digest::{Digest, Hasher};
use strata_layer::pack::pack_entries;
use strata_layer::EntryKind;

use crate::changes::Change;
use crate::db::{LayerRow, State};
use crate::driver::Original;
use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::lock::LayerLock;
use crate::store::Store;

/// What a diff wrote.
#[derive(Clone, Debug)]
pub struct DiffOutput {
    /// The digest of the uncompressed tar written (its diffID).
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// The digest of the bytes written, the compressed blob (the diffID when uncompressed).
    pub blob_digest: Digest,
    /// Bytes written.
    pub blob_size: u64,
    /// How the tar was compressed on its way out.
    pub compression: Compression,
}

/// Runs `write` (which writes a tar and returns its digest and size) into `out`,
/// compressed as asked, and hashes the blob too, unless it is the tar itself.
fn compressed<W: Write>(
    out: W,
    compression: Compression,
    write: impl FnOnce(&mut dyn Write) -> Result<(Digest, u64)>,
) -> Result<DiffOutput> {
    let flushed = |mut w: BufWriter<W>| -> Result<()> {
        w.flush().map_err(|e| Error::io("writing the diff", e))
    };
    if compression == Compression::None {
        let mut sink = BufWriter::with_capacity(1 << 20, out);
        let (diff_id, tar_size) = write(&mut sink)?;
        flushed(sink)?;
        return Ok(DiffOutput {
            diff_id,
            tar_size,
            blob_digest: diff_id,
            blob_size: tar_size,
            compression,
        });
    }
    let blob = Hasher::default();
    let sink = blob.writer(BufWriter::with_capacity(1 << 20, out));
    let mut compressor =
        Compressor::new(sink, compression).map_err(|e| Error::io("starting compression", e))?;
    let (diff_id, tar_size) = write(&mut compressor)?;
    let sink = compressor
        .finish()
        .map_err(|e| Error::io("finishing compression", e))?
        .into_inner();
    flushed(sink)?;
    Ok(DiffOutput {
        diff_id,
        tar_size,
        blob_digest: blob.digest(),
        blob_size: blob.bytes(),
        compression,
    })
}

impl Store {
    /// The row and chain of a layer that has content (applied or read-write), with its
    /// lock held shared so it cannot be removed meanwhile.
    fn readable(&self, id: &LayerId, what: &str) -> Result<(Vec<LayerRow>, LayerLock)> {
        let chain = self.read(|tx| {
            let row = tx.visible_layer(id)?;
            if !matches!(row.state, State::Applied | State::Writable) {
                return Err(Error::refused(
                    id,
                    format!("has no content yet (apply a diff to it first): cannot {what} it"),
                ));
            }
            tx.chain(id)
        })?;
        let lock = LayerLock::shared(&self.paths().lock(id)).map_err(|e| match e {
            Error::Io { ref error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.clone())
            }
            e => e,
        })?;
        // A removal may have got the layer between the look-up and the lock.
        if !self
            .read(|tx| tx.layer(id))?
            .is_some_and(|r| r.state.visible())
        {
            return Err(Error::NotFound(id.clone()));
        }
        Ok((chain, lock))
    }

    /// [`readable`](Self::readable), with the diff of a frozen layer made first if it is
    /// pending ([`Store::settle`]).
    fn settled(&self, id: &LayerId, what: &str) -> Result<(Vec<LayerRow>, LayerLock)> {
        let (chain, lock) = self.readable(id, what)?;
        if chain[0].state != State::Applied || chain[0].diff.is_some() {
            return Ok((chain, lock));
        }
        self.settle(id)?;
        let chain = self.read(|tx| tx.chain(id))?;
        Ok((chain, lock))
    }

    /// Writes the tar applied layer `chain[0]` came from to `out` (through its driver,
    /// from its recipe or its kept blob); returns its digest and size.
    pub(crate) fn original_tar(
        &self,
        chain: &[LayerRow],
        out: &mut dyn Write,
    ) -> Result<(Digest, u64)> {
        let row = &chain[0];
        let diff = row
            .diff
            .as_ref()
            .ok_or_else(|| Error::Corrupt(format!("layer {} has no diffID", row.id)))?;
        let driver = self.layer_driver(row.os);
        // Only a driver that cannot rebuild the tar by itself may need the input kept.
        let blob: Option<PathBuf> = if driver.rebuilds_exactly() {
            None
        } else {
            self.read(|tx| tx.layer_blobs(&row.id))?
                .into_iter()
                .find(|(d, _, _)| *d == diff.blob_digest)
                .and_then(|(d, _, _)| self.blob_path(&d))
        };
        let recipe = self.paths().recipe(&row.id);
        let original = Original {
            diff_id: diff.diff_id,
            recipe: &recipe,
            blob: blob.as_deref(),
        };
        driver.original_tar(&self.chain_of(chain), &original, out)
    }

    /// Writes the diff of layer `id` to `out` as a layer tar, compressed as asked: for an
    /// applied layer its original tar (verified against its diffID), for a read-write
    /// layer the changes made in it.
    pub fn diff<W: Write + Send>(
        &self,
        id: &LayerId,
        out: W,
        compression: Compression,
    ) -> Result<DiffOutput> {
        let (chain, _lock) = self.settled(id, "take the diff of")?;
        let top = &chain[0];
        if top.state != State::Writable {
            return compressed(out, compression, |w| self.original_tar(&chain, w));
        }
        let mut entries = self
            .layer_driver(top.os)
            .diff_entries(&self.chain_of(&chain))?;
        let summary = pack_entries(&mut *entries, out, compression)?;
        Ok(DiffOutput {
            diff_id: summary.diff_id,
            tar_size: summary.tar_bytes,
            blob_digest: summary.blob_digest,
            blob_size: summary.blob_bytes,
            compression,
        })
    }

    /// What layer `id` adds, modifies and deletes relative to its parent, sorted by path.
    /// On overlay this reads only the layer's own directory.
    pub fn changes(&self, id: &LayerId) -> Result<Vec<Change>> {
        let (chain, _lock) = self.readable(id, "list the changes of")?;
        self.layer_driver(chain[0].os)
            .changes(&self.chain_of(&chain))
    }

    /// The bytes of file data layer `id` adds or rewrites: recorded at apply for an applied
    /// layer, measured for a read-write one.
    pub fn diff_size(&self, id: &LayerId) -> Result<u64> {
        let (chain, _lock) = self.settled(id, "measure")?;
        if let Some(diff) = &chain[0].diff {
            return Ok(diff.diff_size);
        }
        let mut entries = self
            .layer_driver(chain[0].os)
            .diff_entries(&self.chain_of(&chain))?;
        let mut total = 0u64;
        while let Some(e) = entries.next_entry()? {
            if let EntryKind::File { size, .. } = e.kind {
                total += size;
            }
        }
        Ok(total)
    }
}
