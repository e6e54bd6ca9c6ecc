//! Freezing a read-write layer into a read-only one in place: what containerd's commit
//! is (`snapshots.rs`). Nothing is copied: the layer's own directory already holds its
//! changes as a read-only layer holds its diff (overlay's upper format, or vfs's whole
//! tree), so only the diff's digest and its recipe are made, from a read of the files.

use strata_layer::compress::Compression;
use strata_layer::recipe::RecipeRecorder;
use strata_layer::tar::TarReader;
use strata_layer::LayerReader;

use super::*;

impl Store {
    /// Turns the read-write layer `id` (one without init layer, as
    /// [`Store::create_bare`] makes) into an applied read-only layer holding what was
    /// written into it: its diffID and recipe are made from its directory, which stays
    /// where it is. Refused while the store has it mounted or another process uses it.
    ///
    /// Crash safety: the layer stays read-write until one transaction records it
    /// applied; its recipe is put in place just before (a read-write layer ignores it, a
    /// later freeze replaces it). A failure before that transaction leaves the layer as
    /// it was.
    pub fn freeze(&self, id: &LayerId) -> Result<Applied> {
        self.freeze_with(id, |_| Ok(()))
            .map(|(applied, ())| applied)
    }

    /// [`Store::freeze`], with `record` run in the transaction that makes the layer
    /// applied (what else changes with it: containerd's snapshot rows); its error rolls
    /// the freeze back.
    pub(crate) fn freeze_with<T>(
        &self,
        id: &LayerId,
        record: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<(Applied, T)> {
        let (chain, lock) = {
            let _lock = self.lock()?;
            let chain = self.read(|tx| {
                let row = tx.visible_layer(id)?;
                require(&row, &[State::Writable], "freeze")?;
                if row.init_layer.is_some() {
                    return Err(Error::refused(
                        id,
                        "has an init layer (made by `create`): only a layer made without one can be frozen",
                    ));
                }
                if row.mounts > 0 && row.mount_boot.as_deref() == Some(self.boot()) {
                    return Err(Error::refused(id, "is mounted: cannot freeze it"));
                }
                tx.chain(id)
            })?;
            let lock = LayerLock::exclusive_for(&self.paths.lock(id), id, "freeze")?;
            (chain, lock)
        };
        let os = chain[0].os;
        let driver = self.layer_driver(os);
        if !driver.rebuilds_exactly() {
            return Err(Error::refused(
                id,
                "is a Windows layer: only Linux layers can be frozen",
            ));
        }
        let staging = Staging::new(&self.paths.staging())?;
        let recipe = staging.path().join("recipe");
        let recorder = RecipeRecorder::create(&recipe)?;
        let target = self.chain_of(&chain);
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::io("making a pipe for the freeze", e))?;
        // One thread packs the layer's changes into a tar; this one reads the tar back,
        // recording the recipe and counting what it holds.
        let (packed, read) = std::thread::scope(|s| {
            let pack = s.spawn(|| {
                let mut entries = driver.diff_entries(&target)?;
                strata_layer::pack::pack_entries(&mut *entries, writer, Compression::None)
                    .map_err(Error::from)
            });
            let read = (|| -> Result<(u64, u64, RecipeRecorder)> {
                let mut tar = TarReader::with_sink(reader, recorder);
                let mut buf = vec![0u8; 1 << 20];
                let (mut entries, mut data) = (0u64, 0u64);
                while let Some(entry) = tar.next_entry()? {
                    entries += 1;
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
                Ok((entries, data, tar.into_parts().1))
            })();
            let packed = pack.join().unwrap_or_else(|_| {
                Err(Error::Corrupt("the freeze's pack thread panicked".into()))
            });
            (packed, read)
        });
        let summary = packed?;
        let (entries, data, recorder) = read?;
        let diff = DiffInfo {
            diff_id: summary.diff_id,
            tar_size: summary.tar_bytes,
            diff_size: data,
            blob_digest: summary.diff_id,
            blob_size: summary.tar_bytes,
            compression: Compression::None.to_string(),
        };
        recorder.finish(diff.diff_id, diff.tar_size)?;
        rename(&recipe, &self.paths.recipe(id))?;
        let recorded = {
            let _lock = self.lock()?;
            self.db().write("recording the freeze", |tx| {
                let row = tx.visible_layer(id)?;
                require(&row, &[State::Writable], "freeze")?;
                tx.set_applied(id, &diff, os)?;
                record(tx)
            })?
        };
        staging.done()?;
        drop(lock);
        let applied = Applied {
            layer: self.layer(id)?,
            diff,
            entries,
            warnings: Vec::new(),
            sandbox: None,
        };
        Ok((applied, recorded))
    }
}
