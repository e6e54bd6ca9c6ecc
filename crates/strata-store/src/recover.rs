//! Crash recovery, run by every [`Store::open`] under the store lock, and `cleanup`.
//!
//! Work in progress is always marked before it starts, so a crash leaves a mark:
//!
//! | mark | what was cut short | recovery |
//! | --- | --- | --- |
//! | `staging/T.lock` not held, or `staging/T` without a lock | anything staged | removed (mounts inside detached first) |
//! | row `creating` | a create between its two transactions | its directory and row removed |
//! | row `importing`, layer lock free | an image layer being created and applied | the layer removed |
//! | row `applying`, layer lock free | an apply | content and recipe emptied, back to `empty` |
//! | row `removing`, layer lock free | a removal | finished |
//! | mount count from an earlier boot, or overlay not mounted | a mount that did not survive | count reset |
//! | overlay mounted at `layers/ID/merged` with a count of 0 | a mount or unmount cut short | unmounted |
//! | an init layer without its read-write layer, lock free | a container creation or removal | removed |
//! | a blob no image, layer or live lease refers to | a load or push (its lease swept above) | removed |
//!
//! A held layer lock means the work is still going on in another process, and it is
//! left alone.

use std::path::PathBuf;

use crate::db::State;
use crate::error::{Error, Result};
use crate::id::{LayerId, REMOVING_SUFFIX};
use crate::lock::{sweep_staging, LayerLock, StoreLock};
use crate::mounts;
use crate::store::Store;

/// What recovery or cleanup did, one sentence per repair.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// What was repaired, one sentence each, in the order done.
    pub actions: Vec<String>,
}

impl Store {
    /// True if nobody holds the lock of layer `id` (found under either of its names).
    pub(crate) fn abandoned(&self, id: &LayerId) -> Result<bool> {
        for path in [
            self.paths().lock(id),
            self.paths().removing(id).join("lock"),
        ] {
            match LayerLock::try_exclusive(&path) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => return Ok(false),
                Err(Error::Io { ref error, .. })
                    if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Repairs what crashed processes left; the caller holds the store lock.
    pub(crate) fn recover(&self, _lock: &StoreLock) -> Result<Recovery> {
        let mut done = Recovery::default();
        let swept = sweep_staging(&self.paths().staging())?;
        if swept > 0 {
            done.actions
                .push(format!("removed {swept} abandoned staging entries"));
        }
        let transient = self.read(|tx| tx.transient_layers())?;
        for row in transient {
            let id = &row.id;
            match row.state {
                State::Creating => {
                    self.dirs_driver().remove(&self.paths().layer(id))?;
                    self.db().write("recovering", |tx| tx.delete_layer(id))?;
                    done.actions
                        .push(format!("removed layer {id}, whose creation was cut short"));
                }
                State::Importing if self.abandoned(id)? => {
                    self.db()
                        .write("recovering", |tx| tx.set_state(id, State::Removing))?;
                    self.finish_removal_locked(id)?;
                    done.actions
                        .push(format!("removed layer {id}, whose import was cut short"));
                }
                State::Applying if self.abandoned(id)? => {
                    self.reset_content(id)?;
                    self.db()
                        .write("recovering", |tx| tx.set_state(id, State::Empty))?;
                    done.actions
                        .push(format!("emptied layer {id}, whose apply was cut short"));
                }
                State::Removing if self.abandoned(id)? => {
                    self.finish_removal_locked(id)?;
                    done.actions.push(format!("finished removing layer {id}"));
                }
                _ => {}
            }
        }
        self.recover_mounts(&mut done)?;
        // Init layers whose container never came (its creation was cut short) or could
        // not take them along.
        for row in self.read(|tx| tx.layers())? {
            let Some(container) = &row.init_for else {
                continue;
            };
            if row.state.visible()
                && self.read(|tx| tx.layer(container))?.is_none()
                && self.read(|tx| tx.children(&row.id))?.is_empty()
                && self.abandoned(&row.id)?
            {
                self.db()
                    .write("recovering", |tx| tx.set_state(&row.id, State::Removing))?;
                self.finish_removal_locked(&row.id)?;
                done.actions.push(format!(
                    "removed init layer {}, whose read-write layer {container} is gone",
                    row.id
                ));
            }
        }
        done.actions.extend(self.sweep_blobs()?);
        Ok(done)
    }

    fn recover_mounts(&self, done: &mut Recovery) -> Result<()> {
        let layers = self.paths().layers();
        // Drivers mount all their layers' views or none.
        let mounting = self.dirs_driver().mount_point(&layers).is_some();
        let counted = self.read(|tx| tx.mounted_layers())?;
        let points = if mounting {
            mounts::mount_points()?
        } else {
            Vec::new()
        };
        for row in &counted {
            let stale = row.mount_boot.as_deref() != Some(self.boot());
            let gone = self
                .dirs_driver()
                .mount_point(&self.paths().layer(&row.id))
                .is_some_and(|p| !points.contains(&p));
            if stale || gone {
                self.db()
                    .write("recovering", |tx| tx.set_mounts(&row.id, 0, None))?;
                done.actions.push(format!(
                    "reset the mount count of layer {} ({})",
                    row.id,
                    if stale {
                        "mounted before the last boot"
                    } else {
                        "no longer mounted"
                    }
                ));
            }
        }
        if !mounting {
            return Ok(());
        }
        // Mounted merged views nobody counts: a mount or unmount was cut short.
        for point in points {
            let Ok(rest) = point.strip_prefix(&layers) else {
                continue;
            };
            let Some(id) = rest.components().next() else {
                continue;
            };
            if self.dirs_driver().mount_point(&layers.join(id)).as_ref() != Some(&point) {
                continue;
            }
            let name = id.as_os_str().to_string_lossy();
            let counted_here = LayerId::new(name.as_ref()).ok().and_then(|id| {
                counted
                    .iter()
                    .find(|r| r.id == id && r.mount_boot.as_deref() == Some(self.boot()))
            });
            let applying = match LayerId::new(name.as_ref()) {
                Ok(id) => self.read(|tx| tx.layer(&id))?.is_some_and(|r| {
                    matches!(r.state, State::Applying | State::Importing)
                        && !self.abandoned(&id).unwrap_or(true)
                }),
                Err(_) => false,
            };
            if counted_here.is_none() && !applying && !name.ends_with(REMOVING_SUFFIX) {
                mounts::unmount_path(&point, true)?;
                done.actions
                    .push(format!("unmounted the leftover mount {}", point.display()));
            }
        }
        Ok(())
    }

    /// The seed's Cleanup: recovery, then also the debris recovery does not look for
    /// (directories and recipes without a layer).
    pub fn cleanup(&self) -> Result<Recovery> {
        let lock = self.lock()?;
        let mut done = self.recover(&lock)?;
        done.actions.splice(0..0, self.recovered().iter().cloned());
        for orphan in self.orphans()? {
            mounts::remove_tree(&orphan)?;
            done.actions.push(format!(
                "removed {}, which belongs to no layer",
                orphan.display()
            ));
        }
        Ok(done)
    }

    /// Layer directories and recipes that belong to no row.
    pub(crate) fn orphans(&self) -> Result<Vec<PathBuf>> {
        let known: std::collections::HashSet<String> = self
            .read(|tx| tx.layers())?
            .into_iter()
            .map(|r| r.id.as_str().to_string())
            .collect();
        let mut out = Vec::new();
        for dir in [self.paths().layers(), self.paths().recipes()] {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            for e in entries {
                let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(REMOVING_SUFFIX).unwrap_or(&name);
                if !known.contains(id) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
