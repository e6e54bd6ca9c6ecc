//! Removing layers: marked first (`-removing`), then deleted, so a crash leaves
//! something recovery finishes.

use super::*;

impl Store {
    // ---- remove ---------------------------------------------------------------------

    /// Removes layer `id`: refused while it is mounted, has children, or is in use by
    /// another process. Under the store lock its row is marked `removing` and its
    /// directory renamed to `ID-removing` (its recipe moved inside); the tree is then
    /// deleted without the lock, and the row last. A kill in between is finished by the
    /// next open of the store.
    pub fn remove(&self, id: &LayerId) -> Result<()> {
        let row = self.read(|tx| tx.visible_layer(id))?;
        if let Some(container) = &row.init_for {
            if self.read(|tx| tx.layer(container))?.is_some() {
                return Err(Error::refused(
                    id,
                    format!("is the init layer of read-write layer {container}: remove {container}, which removes it too"),
                ));
            }
        }
        self.remove_unchecked(id)?;
        if let Some(init) = &row.init_layer {
            // Only its container used it; in use elsewhere right now, recovery takes it
            // once it is free.
            match self.remove_unchecked(init) {
                Ok(()) | Err(Error::NotFound(_)) | Err(Error::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// [`Store::remove`] without the init layer rules.
    pub(super) fn remove_unchecked(&self, id: &LayerId) -> Result<()> {
        let (_layer_lock, project) = {
            let _lock = self.lock()?;
            let mut db = self.db();
            let (lock, project) = db.write("removing", |tx| {
                let row = tx.visible_layer(id)?;
                if row.mounts > 0 && row.mount_boot.as_deref() == Some(self.boot()) {
                    return Err(Error::refused(
                        id,
                        format!("is mounted ({} times): unmount it first", row.mounts),
                    ));
                }
                let children = tx.children(id)?;
                if !children.is_empty() {
                    // An init layer goes with its read-write layer, which is named.
                    let mut names: Vec<&str> = Vec::new();
                    for c in &children {
                        let init_of = tx.layer(c)?.and_then(|r| r.init_for);
                        if !init_of.is_some_and(|ctr| children.contains(&ctr)) {
                            names.push(c.as_str());
                        }
                    }
                    return Err(Error::refused(
                        id,
                        format!("has child layers ({}): remove them first", names.join(", ")),
                    ));
                }
                if let Some(image) = tx.images_on(id)?.first() {
                    return Err(Error::refused(
                        id,
                        format!(
                            "is the top layer of image {}: remove the image instead",
                            image.id
                        ),
                    ));
                }
                let lock = LayerLock::exclusive_for(&self.paths.lock(id), id, "remove")?;
                tx.set_state(id, State::Removing)?;
                Ok((lock, row.quota_project))
            })?;
            self.doom(id)?;
            (lock, project)
        };
        self.delete_doomed(id, project)
    }

    /// Moves everything of layer `id` (a `removing` row, store lock held) under its
    /// `ID-removing` name: after this, nothing under the layer's own names belongs to it,
    /// so a new layer of the same ID is safe from the deletion.
    fn doom(&self, id: &LayerId) -> Result<()> {
        let removing = self.paths.removing(id);
        let layer = self.paths.layer(id);
        if layer.exists() {
            // A stale `ID-removing` (its remover died) is doomed anyway.
            self.driver.remove(&removing)?;
            rename(&layer, &removing)?;
        }
        let recipe = self.paths.recipe(id);
        if recipe.exists() {
            mkdir(&removing, 0o700)?;
            rename(&recipe, &removing.join("recipe"))?;
        }
        Ok(())
    }

    /// Deletes a doomed layer's tree (concurrent deleters are fine), lifts its quota, then
    /// deletes its row if it is still the `removing` one.
    fn delete_doomed(&self, id: &LayerId, quota_project: Option<u32>) -> Result<()> {
        self.driver.remove(&self.paths.removing(id))?;
        if let Some(project) = quota_project {
            // Lifting the limit only matters where quotas work at all.
            let _ = quota::clear(&self.paths.layers(), project);
        }
        let blobs = {
            let _lock = self.lock()?;
            self.db().write("removing", |tx| {
                let blobs = tx.layer_blobs(id)?;
                tx.delete_removing(id)?;
                Ok(blobs)
            })?
        };
        for (digest, _, _) in blobs {
            self.gc_blob(&digest)?;
        }
        Ok(())
    }

    /// Removes layer `id` whatever it holds, for a caller that marked it `removing`.
    pub(crate) fn finish_removal(&self, id: &LayerId) -> Result<()> {
        let project = {
            let _lock = self.lock()?;
            self.doom(id)?;
            self.read(|tx| tx.layer(id))?.and_then(|r| r.quota_project)
        };
        self.delete_doomed(id, project)
    }

    /// [`Store::finish_removal`] for a caller that holds the store lock (recovery).
    pub(crate) fn finish_removal_locked(&self, id: &LayerId) -> Result<()> {
        self.doom(id)?;
        self.driver.remove(&self.paths.removing(id))?;
        if let Some(project) = self.read(|tx| tx.layer(id))?.and_then(|r| r.quota_project) {
            let _ = quota::clear(&self.paths.layers(), project);
        }
        self.db().write("recovering", |tx| tx.delete_removing(id))
    }

    /// Removes a layer that never became visible (a failed import).
    pub(super) fn discard(&self, id: &LayerId) -> Result<()> {
        {
            let _lock = self.lock()?;
            self.db()
                .write("discarding", |tx| tx.set_state(id, State::Removing))?;
        }
        self.finish_removal(id)
    }
}
