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
use strata_layer::dir_reader::{DirReader, PathFilter, Visit};
use strata_layer::pack::pack_entries;
use strata_layer::recipe;
use strata_layer::{Entry, EntryKind, LayerPath, LayerReader};

use crate::changes::{overlay_changes, tree_changes, Change, ChangeKind};
use crate::db::{LayerRow, Os, State};
use crate::driver::{DriverKind, View};
use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::lock::LayerLock;
use crate::store::Store;

/// What a diff wrote.
#[derive(Clone, Debug)]
pub struct DiffOutput {
    pub diff_id: Digest,
    pub tar_size: u64,
    pub blob_digest: Digest,
    pub blob_size: u64,
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

/// Deletions first, then another reader's entries.
struct WithWhiteouts<R> {
    whiteouts: std::vec::IntoIter<LayerPath>,
    rest: R,
}

impl<R: LayerReader> LayerReader for WithWhiteouts<R> {
    fn next_entry(&mut self) -> std::result::Result<Option<Entry>, strata_layer::Error> {
        match self.whiteouts.next() {
            Some(path) => Ok(Some(Entry::new(path, EntryKind::Whiteout))),
            None => self.rest.next_entry(),
        }
    }
    fn read_data(&mut self, buf: &mut [u8]) -> std::result::Result<usize, strata_layer::Error> {
        self.rest.read_data(buf)
    }
}

/// A filter that returns exactly the added and modified paths of `changes`.
fn changed_paths(changes: &[Change]) -> PathFilter {
    let wanted: std::collections::BTreeSet<Vec<u8>> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted)
        .map(|c| c.path.as_bytes().to_vec())
        .collect();
    Box::new(move |path: &LayerPath| {
        let p = path.as_bytes();
        if wanted.contains(p) {
            return Visit::Entry;
        }
        let mut below = p.to_vec();
        below.push(b'/');
        match wanted.range(below.clone()..).next() {
            Some(w) if w.starts_with(&below) => Visit::Descend,
            _ => Visit::Skip,
        }
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

    /// The merged view of a layer's parents (`chain[1..]`).
    fn parents_view(&self, chain: &[LayerRow]) -> Result<View> {
        match self.driver() {
            DriverKind::Vfs => Ok(match chain.get(1) {
                Some(p) => View::Dir(self.paths().content(&p.id)),
                None => View::None,
            }),
            DriverKind::Overlay => View::of(self.paths(), &self.content_dirs(&chain[1..])),
        }
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
        let (chain, _lock) = self.readable(id, "take the diff of")?;
        let top = &chain[0];
        if top.os == Os::Windows {
            return compressed(out, compression, |w| self.windows_diff(&chain, w));
        }
        if top.state == State::Writable {
            let content = self.paths().content(id);
            let summary = match self.driver() {
                DriverKind::Overlay => {
                    pack_entries(DirReader::open_overlay_upper(&content)?, out, compression)?
                }
                DriverKind::Vfs => {
                    let parent = self.parents_view(&chain)?;
                    let changes = tree_changes(&content, parent.path())?;
                    let whiteouts: Vec<LayerPath> = changes
                        .iter()
                        .filter(|c| c.kind == ChangeKind::Deleted)
                        .map(|c| c.path.clone())
                        .collect();
                    let reader = WithWhiteouts {
                        whiteouts: whiteouts.into_iter(),
                        rest: DirReader::open(&content)?.with_filter(changed_paths(&changes)),
                    };
                    pack_entries(reader, out, compression)?
                }
            };
            return Ok(DiffOutput {
                diff_id: summary.diff_id,
                tar_size: summary.tar_bytes,
                blob_digest: summary.blob_digest,
                blob_size: summary.blob_bytes,
                compression,
            });
        }
        // Applied: the original tar from the recipe, reading the layer's files where the
        // layer sees them (its own merged view, for paths through a parent's symlink).
        let view = match self.driver() {
            DriverKind::Vfs => View::Dir(self.paths().content(id)),
            DriverKind::Overlay => View::of(self.paths(), &self.content_dirs(&chain))?,
        };
        let root: PathBuf = view
            .path()
            .map(PathBuf::from)
            .ok_or_else(|| Error::Corrupt(format!("layer {id} has no content directory")))?;
        compressed(out, compression, |w| {
            let rebuilt = recipe::rebuild(&self.paths().recipe(id), &root, w)?;
            Ok((rebuilt.diff_id, rebuilt.bytes))
        })
    }

    /// What layer `id` adds, modifies and deletes relative to its parent, sorted by path.
    /// On overlay this reads only the layer's own directory.
    pub fn changes(&self, id: &LayerId) -> Result<Vec<Change>> {
        let (chain, _lock) = self.readable(id, "list the changes of")?;
        if chain[0].os == Os::Windows {
            return self.windows_changes(&chain);
        }
        let content = self.paths().content(id);
        let parents = self.parents_view(&chain)?;
        match self.driver() {
            DriverKind::Overlay => overlay_changes(&content, parents.path()),
            DriverKind::Vfs => tree_changes(&content, parents.path()),
        }
    }

    /// The bytes of file data layer `id` adds or rewrites: recorded at apply for an applied
    /// layer, measured for a read-write one.
    pub fn diff_size(&self, id: &LayerId) -> Result<u64> {
        let (chain, _lock) = self.readable(id, "measure")?;
        if let Some(diff) = &chain[0].diff {
            return Ok(diff.diff_size);
        }
        let content = self.paths().content(id);
        match self.driver() {
            DriverKind::Overlay => {
                let mut reader = DirReader::open_overlay_upper(&content)?;
                let mut total = 0u64;
                while let Some(e) = reader.next_entry()? {
                    if let EntryKind::File { size, .. } = e.kind {
                        total += size;
                    }
                }
                Ok(total)
            }
            DriverKind::Vfs => {
                let parent = self.parents_view(&chain)?;
                let changes = tree_changes(&content, parent.path())?;
                let mut reader = DirReader::open(&content)?.with_filter(changed_paths(&changes));
                let mut total = 0u64;
                while let Some(e) = reader.next_entry()? {
                    if let EntryKind::File { size, .. } = e.kind {
                        total += size;
                    }
                }
                Ok(total)
            }
        }
    }
}
