//! Applying layer tars: into an empty layer (`apply`) or a new one (`import`), through
//! the layer's driver, recorded in one transaction; a failure leaves the layer as it was.

use super::*;
use crate::driver::ParentsLater;

impl Store {
    // ---- apply ----------------------------------------------------------------------

    /// Applies the diff read from `input` (a tar, gzip or zstd) to the empty read-only
    /// layer `id`, recording its diffID, sizes and recipe. On failure, or if the process
    /// is killed, the layer is left empty as it was.
    pub fn apply<'a, R: Read + Send + 'a>(
        &self,
        id: &LayerId,
        input: impl Into<Input<'a, R>>,
        options: &ApplyOptions,
    ) -> Result<Applied> {
        let (chain, lock) = {
            let _lock = self.lock()?;
            let mut db = self.db();
            db.write("starting the apply", |tx| {
                let row = tx.visible_layer(id)?;
                require(&row, &[State::Empty], "apply a diff to")?;
                let lock = LayerLock::exclusive_for(&self.paths.lock(id), id, "apply a diff to")?;
                tx.set_state(id, State::Applying)?;
                Ok((tx.chain(id)?, lock))
            })?
        };
        let options = ImportOptions {
            apply: options.clone(),
            ..ImportOptions::default()
        };
        match self.fill(&chain, input.into(), &options) {
            Ok((fill, kept)) => {
                self.record_applied(id, &fill.diff, kept, &options)?;
                drop(lock);
                self.applied(id, fill)
            }
            Err(e) => {
                let reset = self.reset_content(id).and_then(|()| {
                    let _lock = self.lock()?;
                    self.db()
                        .write("undoing the apply", |tx| tx.set_state(id, State::Empty))
                });
                drop(lock);
                Err(self.failed(e, reset))
            }
        }
    }

    /// The error to report for work that failed with `e` and was then undone (`undone`):
    /// a full disk is said as such, and the failure that started it all is the one
    /// reported, unless the undoing failed for another reason.
    fn failed(&self, e: Error, undone: Result<()>) -> Error {
        let full = e.is_disk_full() || undone.as_ref().is_err_and(Error::is_disk_full);
        match undone {
            Err(u) if !full => u,
            _ if full && !matches!(e, Error::DiskFull { .. }) => Error::DiskFull {
                root: self.paths.root.clone(),
                detail: e.chain_text(),
            },
            _ => e,
        }
    }

    /// Creates the read-only layer `id` on `parent` and applies `input` to it, as one
    /// step: until the apply is recorded the layer is invisible, and a failure or a kill
    /// leaves no trace of it. This is how images bring their layers in.
    pub fn import<'a, R: Read + Send + 'a>(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: impl Into<Input<'a, R>>,
        options: &ImportOptions,
    ) -> Result<Applied> {
        self.import_locked(id, parent, input.into(), options, None)
            .map(|(applied, _lock)| applied)
    }

    /// [`Store::import`], returning the layer's lock still held; `init_for` makes the
    /// layer the init layer of that (coming) read-write layer.
    pub(super) fn import_locked<'a, R: Read + Send + 'a>(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: Input<'a, R>,
        options: &ImportOptions,
        init_for: Option<&LayerId>,
    ) -> Result<(Applied, LayerLock)> {
        let (staging, mut row, lock) = self.stage_layer(
            id,
            parent,
            &CreateOptions::default(),
            State::Importing,
            None,
        )?;
        row.init_for = init_for.cloned();
        self.commit_layer(staging, &row, State::Importing)?;
        let chain = self.read(|tx| tx.chain(id))?;
        match self.fill(&chain, input, options) {
            Ok((fill, kept)) => {
                self.record_applied(id, &fill.diff, kept, options)?;
                Ok((self.applied(id, fill)?, lock))
            }
            Err(e) => {
                // Freed first: on a full disk, the database needs the room to record the
                // removal.
                let _ = self.reset_content(id);
                drop(lock);
                let discarded = self.discard(id);
                Err(self.failed(e, discarded))
            }
        }
    }

    /// Makes a filled layer `Applied`, in one transaction with its kept blob (placed
    /// first: a blob nobody refers to is harmless, a reference to a missing one is not).
    fn record_applied(
        &self,
        id: &LayerId,
        diff: &DiffInfo,
        kept: Option<KeptBlob>,
        options: &ImportOptions,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let media_type = kept.as_ref().map(|k| {
            options
                .keep_blob
                .clone()
                .unwrap_or_else(|| k.media_type.to_string())
        });
        if let Some(blob) = &kept {
            crate::blobs::place(&blob.path(), &self.paths.blobs(), &diff.blob_digest)?;
        }
        self.db().write("recording the apply", |tx| {
            tx.set_applied(id, diff, options.apply.os)?;
            if let Some(media_type) = &media_type {
                tx.add_layer_blob(id, &diff.blob_digest, media_type, diff.blob_size)?;
            }
            Ok(())
        })?;
        if let Some(staging) = kept {
            staging.done()?;
        }
        Ok(())
    }

    fn applied(&self, id: &LayerId, fill: Fill) -> Result<Applied> {
        Ok(Applied {
            layer: self.layer(id)?,
            diff: fill.diff,
            entries: fill.entries,
            warnings: fill.warnings,
            sandbox: fill.sandbox,
        })
    }

    /// Writes the diff into the content directory of `chain[0]`, whose lock the caller
    /// holds exclusively, records its recipe and checks the expected digests. Also
    /// returns the staging entry holding a copy of the input, when it is to be kept
    /// (`keep_blob`, or a driver that cannot give this tar back by itself).
    fn fill<'a, R: Read + Send + 'a>(
        &self,
        chain: &[LayerRow],
        input: Input<'a, R>,
        options: &ImportOptions,
    ) -> Result<(Fill, Option<KeptBlob>)> {
        let id = &chain[0].id;
        let parents = &chain[1..];
        check_os(id, parents, options.apply.os)?;
        let driver = self.layer_driver(options.apply.os);
        let _parent_lock = match parents.first() {
            Some(p) => Some(LayerLock::shared(&self.paths.lock(&p.id))?),
            None => None,
        };
        let target = self.chain_of(chain);
        let (fill, kept, recipe) = self.fill_with(driver, input, options, |input, recipe| {
            driver.apply(&target, input, &options.apply, recipe)
        })?;
        self.place_recipe(driver, id, recipe)?;
        Ok((fill, kept))
    }

    /// Puts the recipe [`fill_with`](Self::fill_with) wrote in `recipe` in place as layer
    /// `id`'s, when its driver rebuilds exactly, and ends that staging entry.
    fn place_recipe(&self, driver: &dyn Driver, id: &LayerId, recipe: Staging) -> Result<()> {
        if driver.rebuilds_exactly() {
            rename(&recipe.path().join("recipe"), &self.paths.recipe(id))?;
        }
        recipe.done()
    }

    /// Runs `apply` (a driver's apply of `input`, writing the recipe at the path it is
    /// given), keeping a copy of the input while it reads when that is to be kept, and
    /// checks the expected digests. Returns what [`fill`](Self::fill) does and the
    /// staging entry holding the recipe (`recipe` in it).
    fn fill_with<'a, R: Read + Send + 'a>(
        &self,
        driver: &dyn Driver,
        input: Input<'a, R>,
        options: &ImportOptions,
        apply: impl FnOnce(Input<'a, &mut (dyn Read + Send)>, &Path) -> Result<Fill>,
    ) -> Result<(Fill, Option<KeptBlob>, Staging)> {
        let staging = Staging::new(&self.paths.staging())?;
        let recipe = staging.path().join("recipe");
        let kept = if options.keep_blob.is_some() || !driver.rebuilds_exactly() {
            Some(KeptBlob::new(&self.paths.staging())?)
        } else {
            None
        };
        let fill = match (&kept, input) {
            (None, Input::Stream(mut stream)) => apply(Input::Stream(&mut stream), &recipe)?,
            (None, Input::Mapped(file)) => apply(Input::Mapped(file), &recipe)?,
            (Some(k), input) => {
                let copy = k.file()?;
                let mut tee = crate::blobs::Tee {
                    inner: input.into_stream(),
                    copy: std::io::BufWriter::with_capacity(
                        1 << 20,
                        copy.try_clone()
                            .map_err(|e| Error::io("keeping the blob", e))?,
                    ),
                };
                let fill = apply(Input::Stream(&mut tee), &recipe)?;
                std::io::Write::flush(&mut tee.copy)
                    .map_err(|e| Error::io("keeping the blob", e))?;
                copy.sync_all()
                    .map_err(|e| Error::io("syncing the kept blob", e))?;
                fill
            }
        };
        options.check(fill.diff.diff_id, fill.diff.blob_digest)?;
        let kept = match kept {
            Some(k) if options.keep_blob.is_none() && fill.exact => {
                k.done()?;
                None
            }
            Some(mut k) => {
                k.media_type =
                    strata_layer::media_type::LayerType::plain(fill.compression).oci_media_type();
                Some(k)
            }
            None => None,
        };
        Ok((fill, kept, staging))
    }

    // ---- import while the parent comes ------------------------------------------

    /// [`Store::import`] of a layer whose parent may still be being imported by another
    /// thread of this process, so that the layers of an image are applied at once.
    /// `parent_ready` must return once `parent` is applied, or say why it never will be;
    /// it is called once, on a thread of its own, when the layer must wait, and told
    /// where: at the first entry that must see the parent's content
    /// ([`ParentWait::Content`]: the rest of the layer is applied after it returns), else
    /// once the layer is complete ([`ParentWait::Commit`]: only the commit is left), and
    /// not at all when it fails first. A caller bounding how many layers it applies at
    /// once can count a layer in `parent_ready` as not running, and one that waited
    /// for the commit as done.
    ///
    /// Meanwhile the layer is written in the staging area, as far as its driver can
    /// without the parent's content ([`Driver::apply_before_parents`]): on an overlay
    /// store only what must see below (a directory missing from this layer, a whiteout, a
    /// hard link to a lower file, an opaque directory) waits for the parent, and the
    /// result is the one [`Store::import`] gives after it, recipe and diffID included; a
    /// vfs store or a Windows layer waits first. The layer is made visible only once the
    /// parent is applied and the layer is complete and checked; any failure, the
    /// parent's ([`Error::ParentFailed`]) or its own, leaves nothing of it.
    /// [`Error::Exists`] comes before anything is read when the layer is there already,
    /// or at the end when another process brought it in meanwhile.
    pub fn import_after<'a, R: Read + Send + 'a>(
        &self,
        id: &LayerId,
        parent: &LayerId,
        input: impl Into<Input<'a, R>>,
        options: &ImportOptions,
        parent_ready: &(dyn Fn(ParentWait) -> std::result::Result<(), String> + Sync),
    ) -> Result<Applied> {
        if self.read(|tx| tx.layer(id))?.is_some() {
            return Err(Error::Exists(id.clone()));
        }
        let (staging, mut row, lock) = self.stage_dirs(
            id,
            Some(parent),
            &CreateOptions::default(),
            State::Importing,
            None,
            &[],
        )?;
        let driver = self.layer_driver(options.apply.os);
        let target = Chain {
            id: id.clone(),
            dirs: vec![staging.path().join("layer")],
            writable: false,
        };
        // The waiter waits for the parent only when asked: by the driver, at the first
        // entry that must see below, or here once the layer is complete (not at all after
        // a failure). It sends the driver the parents' directories.
        // `None`: the layer failed and waits for nothing.
        let (ask, asked) = std::sync::mpsc::channel::<Option<ParentWait>>();
        let (send, receive) =
            std::sync::mpsc::channel::<std::result::Result<Vec<PathBuf>, String>>();
        let (later_id, later_parent, later_ask) = (id.clone(), parent.clone(), ask.clone());
        let parents: ParentsLater = Box::new(move || {
            let failed = |reason| Error::ParentFailed {
                id: later_id,
                parent: later_parent,
                reason,
            };
            let _ = later_ask.send(Some(ParentWait::Content));
            match receive.recv() {
                Ok(Ok(dirs)) => Ok(dirs),
                Ok(Err(reason)) => Err(failed(reason)),
                Err(_) => Err(failed("the wait for it ended".into())),
            }
        });
        let waited = std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                let Ok(Some(wait)) = asked.recv() else {
                    return None;
                };
                let ready =
                    self.wait_for_parent(id, parent, options.apply.os, || parent_ready(wait));
                let _ = send.send(match &ready {
                    Ok((chain, _)) => Ok(self.layer_dirs(chain)),
                    Err(e) => Err(e.to_string()),
                });
                Some(ready)
            });
            let filled = self.fill_with(driver, input.into(), options, |input, recipe| {
                driver.apply_before_parents(&target, parents, input, &options.apply, recipe)
            });
            let _ = ask.send(filled.is_ok().then_some(ParentWait::Commit));
            let ready = waiter.join().unwrap_or_else(|_| {
                Some(Err(Error::Corrupt(
                    "the wait for the parent layer panicked".into(),
                )))
            });
            // A parent that failed is the cause of whatever the wait did to this layer.
            match (filled, ready) {
                (Ok(f), Some(Ok(r))) => Ok((f, r)),
                (_, Some(Err(e))) | (Err(e), _) => Err(e),
                (Ok(_), None) => Err(Error::Corrupt("the parent layer was not waited for".into())),
            }
        });
        // On failure the staged layer, recipe and kept blob go with their staging entries.
        let ((fill, kept, recipe), (chain, parent_lock)) =
            waited.map_err(|e| self.failed(e, Ok(())))?;
        row.depth = chain.first().map_or(1, |p| p.depth + 1);
        self.commit_layer(staging, &row, State::Importing)?;
        drop(parent_lock);
        let recorded = self
            .place_recipe(driver, id, recipe)
            .and_then(|()| self.record_applied(id, &fill.diff, kept, options));
        match recorded {
            Ok(()) => {
                drop(lock);
                self.applied(id, fill)
            }
            Err(e) => {
                let _ = self.reset_content(id);
                drop(lock);
                let discarded = self.discard(id);
                Err(self.failed(e, discarded))
            }
        }
    }

    /// Waits until `parent` is applied (`ready`), then checks it can be the parent of
    /// new layer `id` of `os`: returns its chain, nearest first, and its lock, held
    /// shared so that it stays until the layer is recorded on it.
    fn wait_for_parent(
        &self,
        id: &LayerId,
        parent: &LayerId,
        os: Os,
        ready: impl FnOnce() -> std::result::Result<(), String>,
    ) -> Result<(Vec<LayerRow>, LayerLock)> {
        ready().map_err(|reason| Error::ParentFailed {
            id: id.clone(),
            parent: parent.clone(),
            reason,
        })?;
        let chain = self.read(|tx| self.check_new(tx, id, Some(parent)))?;
        check_os(id, &chain, os)?;
        // Taken after the check: a removal in between fails here or at the commit, which
        // checks the parent again.
        let lock = LayerLock::shared(&self.paths.lock(parent))?;
        Ok((chain, lock))
    }

    /// Empties the content (and work) directory of layer `id` and drops its recipe, after
    /// a failed or interrupted apply.
    pub(crate) fn reset_content(&self, id: &LayerId) -> Result<()> {
        self.driver.reset(&self.paths.layer(id))?;
        std::fs::remove_file(self.paths.recipe(id))
            .or_else(crate::lock::ignore_missing)
            .map_err(|e| Error::io("removing the recipe", e))
    }
}

/// Refuses a diff of `os` on `parents` of another.
fn check_os(id: &LayerId, parents: &[LayerRow], os: Os) -> Result<()> {
    match parents.iter().find(|p| p.os != os) {
        Some(p) => Err(Error::refused(
            id,
            format!(
                "cannot hold a {} diff on `{}`, a {} layer: a chain is all Linux or all Windows",
                os.name(),
                p.id,
                p.os.name()
            ),
        )),
        None => Ok(()),
    }
}

/// A copy of an imported layer's input, in the staging area until it is placed.
pub(crate) struct KeptBlob {
    staging: Staging,
    /// The OCI media type of the copy (from its compression), unless the caller names one.
    pub media_type: &'static str,
}

impl KeptBlob {
    pub(crate) fn new(staging_root: &Path) -> Result<KeptBlob> {
        Ok(KeptBlob {
            staging: Staging::new(staging_root)?,
            media_type: strata_layer::media_type::OCI_LAYER,
        })
    }
    pub(crate) fn path(&self) -> PathBuf {
        self.staging.path().join("blob")
    }
    pub(crate) fn file(&self) -> Result<std::fs::File> {
        std::fs::File::create(self.path())
            .map_err(|e| Error::io(format!("creating {}", self.path().display()), e))
    }
    pub(crate) fn done(self) -> Result<()> {
        self.staging.done()
    }
}
