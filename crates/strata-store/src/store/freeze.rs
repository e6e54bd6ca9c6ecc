//! Freezing a read-write layer into a read-only one in place: what containerd's commit
//! is (`snapshots.rs`). Nothing is copied: the layer's own directory already holds its
//! changes as a read-only layer holds its diff (overlay's upper format, or vfs's whole
//! tree).
//!
//! ## Pending diffs
//!
//! A freeze records only that the layer is applied (read-only, a parent for others); its
//! diff is left *pending*: no diffID, no recipe yet. containerd never asks for them (it
//! wrote and hashed the layer itself), so making them at the commit would be a read of
//! the whole layer for nothing. [`Store::settle`] makes them from the directory on first
//! need: the store's `diff` of the layer, `fsck`, and whatever lists diffIDs
//! (`strata layer ls`, `inspect`) through [`Store::settle_pending`]. The diff of a frozen
//! layer is bit-exact whenever it is made, since its directory no longer changes, and
//! made twice (two processes at once) it is the same bytes, so either recording stands.
//! A pending layer is [`Layer::diff_pending`]: applied, with `diff` `None`; it is not
//! found by its diffID ([`Store::layers_with_diff_id`]) until settled.
//!
//! Crash safety: the freeze is one transaction (read-write before, applied and pending
//! after). A settle builds the recipe in staging and, under the store lock, puts it in
//! place and records the diff in one transaction, only if the layer is still applied and
//! pending; a kill before leaves the layer pending (a recipe already in place is
//! replaced by the next settle, and unused until then).

use std::time::{Duration, Instant};

use strata_layer::compress::Compression;
use strata_layer::recipe::RecipeRecorder;
use strata_layer::tar::TarReader;
use strata_layer::LayerReader;

use super::*;

/// How long a freeze waits for another process to stop using the layer.
pub(crate) const FREEZE_WAIT: Duration = Duration::from_secs(2);

impl Layer {
    /// True for an applied layer whose diffID and recipe are not made yet (a frozen
    /// layer, see [`Store::freeze`]); [`Store::settle`] makes them.
    pub fn diff_pending(&self) -> bool {
        self.status == LayerStatus::Applied && self.diff.is_none()
    }
}

impl Store {
    /// Turns the read-write layer `id` (one without init layer, as
    /// [`Store::create_bare`] makes) into an applied read-only layer holding what was
    /// written into it; its directory stays where it is, and its diff is pending until
    /// [`Store::settle`] (see the [module docs](self)). Refused while the store has it
    /// mounted; while another process uses it (reads its files), waits up to 2 s, then
    /// fails with [`Error::Busy`], the layer unchanged.
    pub fn freeze(&self, id: &LayerId) -> Result<Layer> {
        self.freeze_with(id, |_| Ok(()))?;
        self.layer(id)
    }

    /// [`Store::freeze`], with `record` run in the transaction that makes the layer
    /// applied (what else changes with it: containerd's snapshot rows); its error rolls
    /// the freeze back.
    pub(crate) fn freeze_with<T>(
        &self,
        id: &LayerId,
        record: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            {
                let _lock = self.lock()?;
                let row = self.read(|tx| {
                    let row = tx.visible_layer(id)?;
                    require(&row, &[State::Writable], "freeze")?;
                    Ok(row)
                })?;
                if row.init_layer.is_some() {
                    return Err(Error::refused(
                        id,
                        "has an init layer (made by `create`): only a layer made without one can be frozen",
                    ));
                }
                if row.mounts > 0 && row.mount_boot.as_deref() == Some(self.boot()) {
                    return Err(Error::refused(id, "is mounted: cannot freeze it"));
                }
                if !self.layer_driver(row.os).rebuilds_exactly() {
                    return Err(Error::refused(
                        id,
                        "is a Windows layer: only Linux layers can be frozen",
                    ));
                }
                // Readers hold the layer lock shared; held exclusively across the
                // transaction, nobody reads a half-frozen layer.
                if let Some(_layer) = LayerLock::try_exclusive(&self.paths.lock(id))? {
                    return self.db().write("recording the freeze", |tx| {
                        tx.set_frozen(id, row.os)?;
                        record(tx)
                    });
                }
            }
            let waited = start.elapsed();
            if waited >= FREEZE_WAIT {
                return Err(Error::Busy {
                    id: id.clone(),
                    what: "freeze",
                    waited,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The diff of applied layer `id`, made now (its diffID and recipe, from a read of its
    /// directory) if it is pending; see the [module docs](self).
    pub fn settle(&self, id: &LayerId) -> Result<DiffInfo> {
        let chain = self.read(|tx| {
            let row = tx.visible_layer(id)?;
            require(&row, &[State::Applied], "settle the diff of")?;
            tx.chain(id)
        })?;
        if let Some(diff) = &chain[0].diff {
            return Ok(diff.clone());
        }
        let driver = self.layer_driver(chain[0].os);
        let staging = Staging::new(&self.paths.staging())?;
        let recipe = staging.path().join("recipe");
        let recorder = RecipeRecorder::create(&recipe)?;
        // The layer's changes as its read-write self gave them (for vfs, against its
        // parent's tree).
        let target = Chain {
            writable: true,
            ..self.chain_of(&chain)
        };
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::io("making a pipe for the diff", e))?;
        // One thread packs the layer's changes into a tar; this one reads the tar back,
        // recording the recipe and counting the file data it holds.
        let (packed, read) = std::thread::scope(|s| {
            let pack = s.spawn(|| {
                let mut entries = driver.diff_entries(&target)?;
                strata_layer::pack::pack_entries(&mut *entries, writer, Compression::None)
                    .map_err(Error::from)
            });
            let read = (|| -> Result<(u64, RecipeRecorder)> {
                let mut tar = TarReader::with_sink(reader, recorder);
                let mut buf = vec![0u8; 1 << 20];
                let mut data = 0u64;
                while let Some(entry) = tar.next_entry()? {
                    if entry.kind.data_len() > 0 {
                        loop {
                            let n = tar.read_data(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            data += n as u64;
                        }
                    }
                }
                Ok((data, tar.into_parts().1))
            })();
            let packed = pack
                .join()
                .unwrap_or_else(|_| Err(Error::Corrupt("the diff's pack thread panicked".into())));
            (packed, read)
        });
        let (summary, (data, recorder)) = match packed.and_then(|p| read.map(|r| (p, r))) {
            Ok(done) => done,
            // Removed meanwhile, under the reading (no lock keeps a removal waiting).
            Err(_) if !self.exists(id)? => return Err(Error::NotFound(id.clone())),
            Err(e) => return Err(e),
        };
        let diff = DiffInfo {
            diff_id: summary.diff_id,
            tar_size: summary.tar_bytes,
            diff_size: data,
            blob_digest: summary.diff_id,
            blob_size: summary.tar_bytes,
            compression: Compression::None.to_string(),
        };
        recorder.finish(diff.diff_id, diff.tar_size)?;
        {
            let _lock = self.lock()?;
            // Removed meanwhile (its files read half-deleted, maybe), or settled by
            // another process: what is recorded stands.
            let now = self.read(|tx| tx.visible_layer(id))?;
            if let Some(theirs) = now.diff {
                return Ok(theirs);
            }
            require(&now, &[State::Applied], "settle the diff of")?;
            rename(&recipe, &self.paths.recipe(id))?;
            self.db()
                .write("recording the diff", |tx| tx.set_diff(id, &diff))?;
        }
        staging.done()?;
        Ok(diff)
    }

    /// Settles every applied layer whose diff is pending ([`Store::settle`]); returns how
    /// many it settled. Layers removed meanwhile are skipped.
    pub fn settle_pending(&self) -> Result<usize> {
        let pending: Vec<LayerId> = self
            .read(|tx| tx.layers())?
            .into_iter()
            .filter(|r| r.state == State::Applied && r.diff.is_none())
            .map(|r| r.id)
            .collect();
        let mut settled = 0;
        for id in pending {
            match self.settle(&id) {
                Ok(_) => settled += 1,
                Err(Error::NotFound(_) | Error::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(settled)
    }
}
