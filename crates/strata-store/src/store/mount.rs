//! Mounting a layer's view: counted in the database across processes.

use std::path::{Path, PathBuf};

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
            if row.os == Os::Windows {
                return Err(Error::refused(
                    id,
                    "is a Windows layer, which Linux cannot mount: `strata wclayer extract` writes its files into a directory",
                ));
            }
            let stale = row.mounts > 0 && row.mount_boot.as_deref() != Some(self.boot());
            let count = if stale { 0 } else { row.mounts };
            let path = match self.paths.driver {
                DriverKind::Vfs => self.paths.content(id),
                DriverKind::Overlay => self.paths.merged(id),
            };
            if count == 0 && self.paths.driver == DriverKind::Overlay && !mounts::is_mounted(&path)?
            {
                let chain = tx.chain(id)?;
                self.mount_overlay(&chain, &path)?;
            }
            let next = count
                .checked_add(1)
                .ok_or_else(|| Error::refused(id, "is mounted too many times"))?;
            tx.set_mounts(id, next, Some(self.boot()))?;
            Ok(path)
        })
    }

    fn mount_overlay(&self, chain: &[LayerRow], target: &Path) -> Result<()> {
        let top = &chain[0];
        let empty = self.paths.empty();
        if top.state == State::Writable {
            let mut lowers = self.content_dirs(&chain[1..]);
            if lowers.is_empty() {
                lowers.push(empty);
            }
            overlay::mount(
                &OverlaySpec {
                    lowers: &lowers,
                    upper: Some((&self.paths.content(&top.id), &self.paths.work(&top.id))),
                },
                target,
            )
        } else {
            let mut lowers = self.content_dirs(chain);
            if lowers.len() == 1 {
                lowers.push(empty);
            }
            overlay::mount(
                &OverlaySpec {
                    lowers: &lowers,
                    upper: None,
                },
                target,
            )
        }
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
            if row.mounts == 1 && self.paths.driver == DriverKind::Overlay {
                mounts::unmount_path(&self.paths.merged(id), false)?;
            }
            tx.set_mounts(id, row.mounts - 1, Some(self.boot()))?;
            Ok(row.mounts - 1)
        })
    }
}

/// Unmounts a path when dropped (after an error), or when told to.
struct Unmount(PathBuf);

impl Unmount {
    fn now(self) -> Result<()> {
        let path = self.0.clone();
        std::mem::forget(self);
        mounts::unmount_path(&path, false)
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = mounts::unmount_path(&self.0, true);
    }
}

/// Checks that overlayfs works under `root`: a writable mount of an empty lower, a file
/// deleted through it (a whiteout in the upper directory), unmounted again.
pub fn probe_overlay(root: &Path) -> Result<()> {
    let staging_root = root.join("staging");
    mkdir(&staging_root, 0o700)?;
    let staging = Staging::new(&staging_root)?;
    let base = staging.path();
    for d in ["lower", "upper", "work", "merged"] {
        mkdir(&base.join(d), 0o755)?;
    }
    std::fs::write(base.join("lower/file"), b"")
        .map_err(|e| Error::io("writing the overlay probe", e))?;
    let merged = base.join("merged");
    overlay::mount(
        &OverlaySpec {
            lowers: &[base.join("lower")],
            upper: Some((&base.join("upper"), &base.join("work"))),
        },
        &merged,
    )?;
    let guard = Unmount(merged.clone());
    let removed = std::fs::remove_file(merged.join("file"));
    guard.now()?;
    removed.map_err(|e| Error::Driver {
        driver: "overlay",
        reason: "deleting a lower file through a probe mount failed".into(),
        source: Some(e),
    })?;
    staging.done()
}
