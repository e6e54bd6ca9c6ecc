//! Mounting a layer's view: counted in the database across processes.

use std::path::PathBuf;

use super::*;

impl Store {
    // ---- mount ----------------------------------------------------------------------

    /// Mounts layer `id` (read-write for a read-write layer, read-only for an applied
    /// one) and returns the path of its merged view. Mounts are counted in the database:
    /// only the first actually mounts, and any process's `unmount` matches any `mount`.
    /// With the vfs driver the path is the layer's own directory.
    pub fn mount(&self, id: &LayerId) -> Result<PathBuf> {
        let _lock = self.lock()?;
        let mut db = self.db();
        db.write("mounting", |tx| {
            let row = tx.visible_layer(id)?;
            require(&row, &[State::Applied, State::Writable], "mount")?;
            let driver = self.layer_driver(row.os);
            let stale = row.mounts > 0 && row.mount_boot.as_deref() != Some(self.boot());
            let count = if stale { 0 } else { row.mounts };
            if count == 0 {
                driver.mount(&self.chain_of(&tx.chain(id)?))?;
            }
            let next = count
                .checked_add(1)
                .ok_or_else(|| Error::refused(id, "is mounted too many times"))?;
            tx.set_mounts(id, next, Some(self.boot()))?;
            Ok(driver.view_path(&self.paths().layer(id)))
        })
    }

    /// Matches one [`mount`](Store::mount); the last one unmounts. Returns how many mounts
    /// remain.
    pub fn unmount(&self, id: &LayerId) -> Result<u32> {
        let _lock = self.lock()?;
        let mut db = self.db();
        db.write("unmounting", |tx| {
            let row = tx.visible_layer(id)?;
            let current = row.mount_boot.as_deref() == Some(self.boot());
            if row.mounts == 0 || !current {
                return Err(Error::refused(id, "is not mounted"));
            }
            if row.mounts == 1 {
                self.layer_driver(row.os).unmount(&self.paths().layer(id))?;
            }
            tx.set_mounts(id, row.mounts - 1, Some(self.boot()))?;
            Ok(row.mounts - 1)
        })
    }
}
