//! Creating layers: staged in full (directory, lock, driver directories, quota), then
//! made visible by one transaction, so a crash leaves nothing half-made in sight.

use super::*;

impl Store {
    // ---- create ---------------------------------------------------------------------

    /// Creates layer `id` on `parent` (an applied layer), read-only and empty or, with
    /// [`CreateOptions::writable`], read-write.
    pub fn create(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        options: &CreateOptions,
    ) -> Result<Layer> {
        if let (true, Some(parent)) = (options.writable, parent) {
            return self.create_container(id, parent, options);
        }
        let state = if options.writable {
            State::Writable
        } else {
            State::Empty
        };
        let (staging, row, _lock) = self.stage_layer(id, parent, options, state, None)?;
        self.commit_layer(staging, &row, state)?;
        self.layer(id)
    }

    /// A read-write layer on `parent`, with its init layer between them: the init layer
    /// is imported (and kept locked, so that no recovery takes it for debris) before the
    /// container layer is made on it; a failure removes it again.
    fn create_container(
        &self,
        id: &LayerId,
        parent: &LayerId,
        options: &CreateOptions,
    ) -> Result<Layer> {
        let init = crate::init::init_id(id)?;
        let chain = self.read(|tx| self.check_new(tx, id, Some(parent)))?;
        if chain.first().is_some_and(|p| p.os == Os::Windows) {
            return Err(Error::refused(
                id,
                format!("cannot be a read-write layer on `{parent}`, a Windows layer (Linux cannot run it)"),
            ));
        }
        let tar = {
            let view = self.driver.view(&self.layer_dirs(&chain))?;
            crate::init::init_tar(view.path())?
        };
        let (_, init_lock) = self.import_locked(
            &init,
            Some(parent),
            Input::Stream(&tar[..]),
            &ImportOptions::default(),
            Some(id),
        )?;
        let made = self
            .stage_layer(id, Some(parent), options, State::Writable, Some(&init))
            .and_then(|(staging, row, _lock)| self.commit_layer(staging, &row, State::Writable));
        drop(init_lock);
        if let Err(e) = made {
            let _ = self.remove_unchecked(&init);
            return Err(e);
        }
        self.layer(id)
    }

    /// Checks a new layer's ID and parent (`Ok(chain of the parent)`).
    pub(super) fn check_new(
        &self,
        tx: &Tx<'_>,
        id: &LayerId,
        parent: Option<&LayerId>,
    ) -> Result<Vec<LayerRow>> {
        if tx.layer(id)?.is_some() {
            return Err(Error::Exists(id.clone()));
        }
        self.check_parent(tx, id, parent)
    }

    /// The parent checks of [`check_new`](Self::check_new), for new layer `id` (named in
    /// the errors): `Ok(chain of the parent)`.
    pub(super) fn check_parent(
        &self,
        tx: &Tx<'_>,
        id: &LayerId,
        parent: Option<&LayerId>,
    ) -> Result<Vec<LayerRow>> {
        let Some(parent) = parent else {
            return Ok(Vec::new());
        };
        let prow = tx.visible_layer(parent).map_err(|e| match e {
            Error::NotFound(_) => Error::refused(
                id,
                format!("cannot be created: its parent `{parent}` does not exist"),
            ),
            e => e,
        })?;
        if let Some(container) = &prow.init_for {
            return Err(Error::refused(
                id,
                format!("cannot be created on `{parent}`: it is the init layer of read-write layer {container}"),
            ));
        }
        if prow.state != State::Applied {
            let why = match prow.state {
                State::Writable => {
                    "is a read-write layer, and only read-only layers can be parents"
                }
                _ => "has not been applied yet",
            };
            return Err(Error::refused(
                id,
                format!("cannot be created on `{parent}`: it {why}"),
            ));
        }
        let chain = tx.chain(parent)?;
        if let Err(why) = self.driver.check_depth(chain.len() + 1) {
            return Err(Error::refused(id, format!("cannot be created: {why}")));
        }
        Ok(chain)
    }

    /// Builds a new layer's directory in the staging area: its lock file (held exclusively
    /// and returned), the driver directories, the copy of the parent for a vfs read-write
    /// layer, the quota. Nothing is visible yet.
    pub(super) fn stage_layer(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        options: &CreateOptions,
        state: State,
        init: Option<&LayerId>,
    ) -> Result<(Staging, LayerRow, LayerLock)> {
        if options.storage.size.is_some() && !options.writable {
            return Err(Error::BadOption {
                name: "size".into(),
                reason: "applies to read-write layers only".into(),
            });
        }
        let chain = self.read(|tx| self.check_new(tx, id, parent))?;
        self.stage_dirs(id, parent, options, state, init, &chain)
    }

    /// The part of [`stage_layer`](Self::stage_layer) after the checks: `chain` is the
    /// parent's chain, nearest first (empty when it is not known yet, for a read-only
    /// layer whose parent is still being imported: then the row's depth is the caller's
    /// to set).
    pub(super) fn stage_dirs(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        options: &CreateOptions,
        state: State,
        init: Option<&LayerId>,
        chain: &[LayerRow],
    ) -> Result<(Staging, LayerRow, LayerLock)> {
        if let (true, Some(p)) = (options.writable, chain.first()) {
            if p.os == Os::Windows {
                return Err(Error::refused(
                    id,
                    format!("cannot be a read-write layer on `{}`, a Windows layer (Linux cannot run it)", p.id),
                ));
            }
        }
        let staging = Staging::new(&self.paths.staging())?;
        let dir = staging.path().join("layer");
        mkdir(&dir, 0o700)?;
        let lock_path = dir.join("lock");
        std::fs::File::create(&lock_path)
            .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        let lock = LayerLock::try_exclusive(&lock_path)?.ok_or_else(|| {
            Error::Corrupt(format!("{} is locked by someone else", lock_path.display()))
        })?;
        // What the layer starts from: its init layer (whose lock the caller holds) over
        // its parent's chain, whose nearest layer is held shared while the driver reads it.
        let _parent_lock = match (init, chain.first()) {
            (None, Some(p)) if state == State::Writable => {
                Some(LayerLock::shared(&self.paths.lock(&p.id))?)
            }
            _ => None,
        };
        let mut dirs = vec![dir.clone()];
        dirs.extend(init.map(|i| self.paths.layer(i)));
        dirs.extend(self.layer_dirs(chain));
        self.driver.prepare(&Chain {
            id: id.clone(),
            dirs,
            writable: state == State::Writable,
        })?;
        let content = self.driver.content(&dir);
        let mut quota_project = None;
        if let Some(bytes) = options.storage.size {
            quota::probe(&content)?;
            let project = self
                .db()
                .write("allocating a quota project", |tx| tx.next_quota_project())?;
            quota::limit(&content, project, bytes)?;
            quota_project = Some(project);
        }
        let row = LayerRow {
            id: id.clone(),
            parent: parent.cloned(),
            state: State::Creating,
            created: now(),
            depth: chain.first().map_or(1, |p| p.depth + 1),
            diff: None,
            size_limit: options.storage.size,
            mounts: 0,
            mount_boot: None,
            quota_project,
            os: Os::Linux,
            init_for: None,
            init_layer: init.cloned(),
        };
        Ok((staging, row, lock))
    }

    /// Makes a staged layer visible in `state`: under the store lock, the row is
    /// recorded as `Creating`, the directory renamed into place, and the row set to
    /// `state` (a crash in between leaves a `Creating` row that recovery removes).
    pub(super) fn commit_layer(
        &self,
        staging: Staging,
        row: &LayerRow,
        state: State,
    ) -> Result<()> {
        let mut row = row.clone();
        self.commit_layer_with(staging, &mut row, state, |_, _| Ok(()))
    }

    /// [`commit_layer`](Self::commit_layer), with `name` run first in the transaction
    /// that records the `Creating` row: it may write rows of its own (containerd's
    /// snapshot) and set the layer's ID (`row.id`), which the rows it writes may decide.
    /// Only the transaction making the layer visible waits for the disk: the `Creating`
    /// one is made durable with it ([`Db::write_unsynced`]), and a process that dies in
    /// between leaves it for recovery all the same.
    pub(super) fn commit_layer_with<T>(
        &self,
        staging: Staging,
        row: &mut LayerRow,
        state: State,
        name: impl FnOnce(&Tx<'_>, &mut LayerRow) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let mut db = self.db();
        let named = db.write_unsynced("creating the layer", |tx| {
            let named = name(tx, row)?;
            self.check_new(tx, &row.id, row.parent.as_ref())?;
            tx.insert_layer(row)?;
            Ok(named)
        })?;
        // Undo on failure: nothing of the layer may stay behind (and nothing that is not
        // its own may go).
        if let Err(e) = rename(&staging.path().join("layer"), &self.paths.layer(&row.id)) {
            let _ = db.write("undoing the layer", |tx| tx.delete_layer(&row.id));
            return Err(e);
        }
        if let Err(e) = db.write("creating the layer", |tx| tx.set_state(&row.id, state)) {
            let _ = mounts::remove_tree(&self.paths.layer(&row.id));
            let _ = db.write("undoing the layer", |tx| tx.delete_layer(&row.id));
            return Err(e);
        }
        drop(db);
        staging.done()?;
        Ok(named)
    }
}
