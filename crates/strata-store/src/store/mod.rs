//! [`Store`]: the graph-driver operations over one store root.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_layer::digest::Digest;
use strata_layer::sandbox::SandboxStatus;

use crate::db::{Db, DiffInfo, LayerRow, Os, State, Tx};
use crate::driver::{Chain, Driver, DriverKind, Fill, WindowsFolder};
use crate::error::{Error, Expected, Result};
use crate::id::LayerId;
use crate::layout::{mkdir, rename, Paths};
use crate::lock::{LayerLock, LockWait, Staging, StoreLock};
use crate::options::StorageOptions;
use crate::{mounts, quota};

mod mount;
mod remove;

/// Where a store lives and which driver it should use.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The store's root directory, created if missing.
    pub root: PathBuf,
    /// `None`: the store's recorded driver, or for a new store overlay where a probe mount
    /// works, else vfs.
    pub driver: Option<DriverKind>,
}

impl StoreOptions {
    /// The default root: `/var/lib/strata` as root, else `$XDG_DATA_HOME/strata`
    /// (`~/.local/share/strata`).
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d).join("strata"),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".local/share/strata"),
        }
    }
}

/// What a layer is, as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerStatus {
    /// Read-only, waiting for `apply`.
    Empty,
    /// Read-only, a diff is being applied by some process.
    Applying,
    /// Read-only, holding its diff; can be a parent.
    Applied,
    /// Read-write (a container layer).
    Writable,
}

impl LayerStatus {
    /// The word `layer ls` prints for the status.
    pub fn name(self) -> &'static str {
        match self {
            LayerStatus::Empty => "empty",
            LayerStatus::Applying => "applying",
            LayerStatus::Applied => "applied",
            LayerStatus::Writable => "read-write",
        }
    }
}

/// One layer: what `layer ls` lists.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The layer's ID.
    pub id: LayerId,
    /// Its parent, an applied layer; `None` for a base layer.
    pub parent: Option<LayerId>,
    /// Where it is in its life.
    pub status: LayerStatus,
    /// Seconds since the epoch.
    pub created: i64,
    /// 1 for a layer without parent.
    pub depth: u32,
    /// For an applied layer: its diff.
    pub diff: Option<DiffInfo>,
    /// For a read-write layer made with a `size` option: the most bytes it may hold.
    pub size_limit: Option<u64>,
    /// How many `mount`s are not yet matched by an `umount`.
    pub mounts: u32,
    /// Linux, or a Windows layer (kept as a layer folder).
    pub os: Os,
    /// For a read-write layer on a parent: its init layer (see `init.rs`), between it and
    /// `parent`.
    pub init_layer: Option<LayerId>,
    /// For an init layer: the read-write layer it serves.
    pub init_for: Option<LayerId>,
}

/// Everything about a layer: what `layer inspect` shows.
#[derive(Clone, Debug)]
pub struct LayerDetails {
    /// The layer as `layer ls` lists it.
    pub layer: Layer,
    /// The layer's ancestors, nearest first (not a read-write layer's init layer).
    pub parents: Vec<LayerId>,
    /// The layers made on it (init layers are shown with their read-write layers).
    pub children: Vec<LayerId>,
    /// The store's driver.
    pub driver: DriverKind,
    /// The driver's directories for the layer.
    pub content: PathBuf,
    /// The driver's scratch directory for the layer (overlay's `work/`), if it has one.
    pub work: Option<PathBuf>,
    /// Where a mount of the layer is (overlay's `merged/`), for drivers that mount.
    pub merged: Option<PathBuf>,
    /// For an applied layer: the recipe that rebuilds its tar.
    pub recipe: Option<PathBuf>,
}

/// How to create a layer.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// A read-write (container) layer; else read-only, to be filled by `apply`.
    pub writable: bool,
    /// Storage options (`size`) for a read-write layer.
    pub storage: StorageOptions,
}

/// How to apply a diff.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Confine the writer with Landlock (default true).
    pub sandbox: bool,
    /// Apply `trusted.*` and `security.*` xattrs from the diff.
    pub privileged_xattrs: bool,
    /// What the diff is: a Linux layer tar, or a Windows one (kept as a layer folder;
    /// its parents must be Windows layers too).
    pub os: Os,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            sandbox: true,
            privileged_xattrs: false,
            os: Os::Linux,
        }
    }
}

/// How to import a layer (create and apply in one step).
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// How to apply the input once the layer is made.
    pub apply: ApplyOptions,
    /// Keep the input as it came (a compressed blob), with this media type, so that a
    /// later push or save needs no recompression; it is tee'd to the blob store while the
    /// layer is applied, not read twice.
    pub keep_blob: Option<String>,
    /// The diffID the diff must have; a mismatch fails the import and leaves nothing.
    pub diff_id: Option<Digest>,
    /// The digest the input blob must have.
    pub blob_digest: Option<Digest>,
}

impl ImportOptions {
    /// Checks a diff's digests against the expected ones.
    pub(crate) fn check(&self, diff_id: Digest, blob_digest: Digest) -> Result<()> {
        for (what, want, got) in [
            (Expected::DiffId, self.diff_id, diff_id),
            (Expected::BlobDigest, self.blob_digest, blob_digest),
        ] {
            if let Some(expected) = want.filter(|w| *w != got) {
                return Err(Error::Mismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The layer, now applied.
    pub layer: Layer,
    /// The diff applied: its digests and sizes.
    pub diff: DiffInfo,
    /// How many entries the tar held.
    pub entries: u64,
    /// What was applied other than as written, one sentence each.
    pub warnings: Vec<String>,
    /// `None` when the sandbox was turned off.
    pub sandbox: Option<SandboxStatus>,
}

/// A layer store on disk; see the [crate docs](crate) for the vocabulary and lifecycle.
///
/// A `Store` is one process's handle; any number of processes may open the same root at
/// once. It is `Sync`: threads may share it (database access is serialized, long work
/// such as applying runs in parallel).
pub struct Store {
    paths: Paths,
    kind: DriverKind,
    /// Keeps the store's (Linux) layers.
    driver: Box<dyn Driver>,
    /// Keeps its Windows layers, in the directories of `driver`.
    windows: WindowsFolder,
    db: Mutex<Db>,
    boot_id: String,
    lock_wait: LockWait,
    /// What the recovery of this open repaired.
    recovered: Vec<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.paths.root)
            .field("driver", &self.kind)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl LayerRow {
    pub(crate) fn status(&self) -> Option<LayerStatus> {
        Some(match self.state {
            State::Empty => LayerStatus::Empty,
            State::Applying => LayerStatus::Applying,
            State::Applied => LayerStatus::Applied,
            State::Writable => LayerStatus::Writable,
            _ => return None,
        })
    }

    pub(crate) fn to_layer(&self) -> Option<Layer> {
        Some(Layer {
            id: self.id.clone(),
            parent: self.parent.clone(),
            status: self.status()?,
            created: self.created,
            depth: self.depth,
            diff: self.diff.clone(),
            size_limit: self.size_limit,
            mounts: self.mounts,
            os: self.os,
            init_layer: self.init_layer.clone(),
            init_for: self.init_for.clone(),
        })
    }
}

/// Refuses unless `row` is a visible layer in one of `wanted` states.
fn require(row: &LayerRow, wanted: &[State], what: &str) -> Result<()> {
    if wanted.contains(&row.state) {
        return Ok(());
    }
    let why = match row.state {
        State::Empty => "has no content yet (apply a diff to it first)",
        State::Applying => "is being applied by another process",
        State::Applied => "is read-only and already holds its diff",
        State::Writable => "is a read-write layer",
        _ => "is not ready",
    };
    Err(Error::refused(&row.id, format!("{why}: cannot {what} it")))
}

impl Store {
    /// Opens the store at `options.root`, creating it if needed, and recovers from any
    /// crash of an earlier process before returning.
    pub fn open(options: &StoreOptions) -> Result<Store> {
        Store::open_with(options, LockWait::default())
    }

    /// [`Store::open`], waiting for the store lock (now and in every later operation of
    /// this handle) as `lock_wait` says.
    pub fn open_with(options: &StoreOptions, lock_wait: LockWait) -> Result<Store> {
        let root = &options.root;
        mkdir(root, 0o711)?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        for sub in ["layers", "staging", "recipes", "blobs", "empty"] {
            mkdir(&root.join(sub), 0o700)?;
        }
        mkdir(&root.join("blobs/sha256"), 0o700)?;
        let mut db = Db::open(&root.join("strata.db"))?;
        let lock = StoreLock::acquire(&root, &lock_wait)?;
        let recorded = db
            .read()
            .meta("driver")?
            .map(|name| {
                DriverKind::parse(&name).ok_or_else(|| {
                    Error::Corrupt(format!("the recorded driver `{name}` is unknown"))
                })
            })
            .transpose()?;
        let driver = match (recorded, options.driver) {
            (Some(store), Some(asked)) if store != asked => {
                return Err(Error::DriverMismatch {
                    root,
                    store: store.name(),
                    asked: asked.name(),
                })
            }
            (Some(store), _) => store,
            (None, asked) => {
                let driver = match asked {
                    Some(d) => d,
                    None if DriverKind::Overlay.probe(&root).is_ok() => DriverKind::Overlay,
                    None => DriverKind::Vfs,
                };
                driver.probe(&root)?;
                db.write("recording the driver", |tx| {
                    tx.set_meta("driver", driver.name())
                })?;
                driver
            }
        };
        let mut store = Store {
            driver: driver.driver(&root),
            windows: WindowsFolder::new(driver.driver(&root)),
            kind: driver,
            paths: Paths { root },
            db: Mutex::new(db),
            boot_id: boot_id(),
            lock_wait,
            recovered: Vec::new(),
        };
        store.recovered = store.recover(&lock)?.actions;
        drop(lock);
        Ok(store)
    }

    /// A fresh directory in the store's staging area for work in progress (a spooled
    /// download, say), removed when dropped, and by recovery if this process dies.
    pub fn staging(&self) -> Result<Staging> {
        Staging::new(&self.paths.staging())
    }

    /// What opening the store repaired after a crash, one sentence each.
    pub fn recovered(&self) -> &[String] {
        &self.recovered
    }

    /// The store's root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// The driver the store was made with.
    pub fn driver(&self) -> DriverKind {
        self.kind
    }

    /// The driver keeping layers of `os`.
    pub(crate) fn layer_driver(&self, os: Os) -> &dyn Driver {
        match os {
            Os::Linux => &*self.driver,
            Os::Windows => &self.windows,
        }
    }

    /// The driver keeping the store's layer directories (whatever their layers hold).
    pub(crate) fn dirs_driver(&self) -> &dyn Driver {
        &*self.driver
    }

    /// Layer `chain[0]` and its parents `chain[1..]`, as drivers see them.
    pub(crate) fn chain_of(&self, chain: &[LayerRow]) -> Chain {
        Chain {
            id: chain[0].id.clone(),
            dirs: self.layer_dirs(chain),
            writable: chain[0].state == State::Writable,
        }
    }

    /// The layer directories of `rows`.
    pub(crate) fn layer_dirs(&self, rows: &[LayerRow]) -> Vec<PathBuf> {
        rows.iter().map(|r| self.paths.layer(&r.id)).collect()
    }

    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the database leaves nothing half-done in it (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.paths.root, &self.lock_wait)
    }

    pub(crate) fn boot(&self) -> &str {
        &self.boot_id
    }

    /// Runs `f` on a read-only snapshot of the database.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let db = self.db();
        f(&db.read())
    }

    /// The visible layer `id`.
    pub fn layer(&self, id: &LayerId) -> Result<Layer> {
        self.read(|tx| tx.visible_layer(id))?
            .to_layer()
            .ok_or_else(|| Error::NotFound(id.clone()))
    }

    /// Waits while another process creates, imports or removes layer `id` (up to
    /// `timeout`), then says what is there: `Some` visible layer (whatever its state and
    /// diff: the caller judges it), or `None` when there is no layer `id` (an import that
    /// failed, a removal that finished), so the caller may bring it in itself. An import
    /// or removal whose process died is finished by recovery here, not waited for.
    pub fn await_layer(&self, id: &LayerId, timeout: Duration) -> Result<Option<Layer>> {
        let deadline = Instant::now() + timeout;
        loop {
            let row = self.read(|tx| tx.layer(id))?;
            let Some(row) = row else { return Ok(None) };
            if row.state.visible() {
                return Ok(row.to_layer());
            }
            if matches!(row.state, State::Importing | State::Removing) && self.abandoned(id)? {
                let lock = self.lock()?;
                self.recover(&lock)?;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::refused(
                    id,
                    format!(
                        "has been {} by another process for {} s: giving up waiting",
                        match row.state {
                            State::Removing => "removed",
                            _ => "imported",
                        },
                        timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True if a visible layer `id` exists.
    pub fn exists(&self, id: &LayerId) -> Result<bool> {
        match self.layer(id) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every visible layer, by ID.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        Ok(self
            .read(|tx| tx.layers())?
            .iter()
            .filter_map(LayerRow::to_layer)
            .collect())
    }

    /// The visible, applied layers whose diff has this diffID.
    pub fn layers_with_diff_id(
        &self,
        diff_id: &strata_layer::digest::Digest,
    ) -> Result<Vec<Layer>> {
        Ok(self
            .read(|tx| tx.layers_with_diff_id(diff_id))?
            .iter()
            .filter(|r| r.state == State::Applied)
            .filter_map(LayerRow::to_layer)
            .collect())
    }

    /// Everything about layer `id`.
    pub fn inspect(&self, id: &LayerId) -> Result<LayerDetails> {
        let (row, chain, children) = self.read(|tx| {
            let row = tx.visible_layer(id)?;
            let mut children = Vec::new();
            for c in tx.children(id)? {
                // Shown with their read-write layers (`init_layer`).
                if tx.layer(&c)?.is_some_and(|r| r.init_for.is_none()) {
                    children.push(c);
                }
            }
            Ok((row, tx.chain(id)?, children))
        })?;
        let layer = row.to_layer().ok_or_else(|| Error::NotFound(id.clone()))?;
        let dir = self.paths.layer(id);
        Ok(LayerDetails {
            // The image's chain; a read-write layer's init layer is `layer.init_layer`.
            parents: chain
                .iter()
                .skip(1)
                .filter(|r| r.init_for.is_none())
                .map(|r| r.id.clone())
                .collect(),
            children,
            driver: self.kind,
            content: self.driver.content(&dir),
            work: self.driver.work(&dir),
            merged: self.driver.mount_point(&dir),
            recipe: (row.state == State::Applied).then(|| self.paths.recipe(id)),
            layer,
        })
    }

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
            &tar[..],
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
    fn check_new(
        &self,
        tx: &Tx<'_>,
        id: &LayerId,
        parent: Option<&LayerId>,
    ) -> Result<Vec<LayerRow>> {
        if tx.layer(id)?.is_some() {
            return Err(Error::Exists(id.clone()));
        }
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
    fn stage_layer(
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
        dirs.extend(self.layer_dirs(&chain));
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
    fn commit_layer(&self, staging: Staging, row: &LayerRow, state: State) -> Result<()> {
        let _lock = self.lock()?;
        let mut db = self.db();
        db.write("creating the layer", |tx| {
            self.check_new(tx, &row.id, row.parent.as_ref())?;
            tx.insert_layer(row)
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
        staging.done()
    }

    // ---- apply ----------------------------------------------------------------------

    /// Applies the diff read from `input` (a tar, gzip or zstd) to the empty read-only
    /// layer `id`, recording its diffID, sizes and recipe. On failure, or if the process
    /// is killed, the layer is left empty as it was.
    pub fn apply<R: Read + Send>(
        &self,
        id: &LayerId,
        input: R,
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
        match self.fill(&chain, input, &options) {
            Ok((diff, summary, kept)) => {
                self.record_applied(id, &diff, kept, &options)?;
                drop(lock);
                self.applied(id, diff, summary)
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
    pub fn import<R: Read + Send>(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: R,
        options: &ImportOptions,
    ) -> Result<Applied> {
        self.import_locked(id, parent, input, options, None)
            .map(|(applied, _lock)| applied)
    }

    /// [`Store::import`], returning the layer's lock still held; `init_for` makes the
    /// layer the init layer of that (coming) read-write layer.
    fn import_locked<R: Read + Send>(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: R,
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
            Ok((diff, summary, kept)) => {
                self.record_applied(id, &diff, kept, options)?;
                Ok((self.applied(id, diff, summary)?, lock))
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

    fn applied(&self, id: &LayerId, diff: DiffInfo, summary: Filled) -> Result<Applied> {
        Ok(Applied {
            layer: self.layer(id)?,
            diff,
            entries: summary.entries,
            warnings: summary.warnings,
            sandbox: summary.sandbox,
        })
    }

    /// Writes the diff into the content directory of `chain[0]`, whose lock the caller
    /// holds exclusively, records its recipe and checks the expected digests. Also
    /// returns the staging entry holding a copy of the input, when it is to be kept
    /// (`keep_blob`, or a driver that cannot give this tar back by itself).
    fn fill<R: Read + Send>(
        &self,
        chain: &[LayerRow],
        mut input: R,
        options: &ImportOptions,
    ) -> Result<(DiffInfo, Filled, Option<KeptBlob>)> {
        let id = &chain[0].id;
        let parents = &chain[1..];
        if let Some(p) = parents.iter().find(|p| p.os != options.apply.os) {
            return Err(Error::refused(
                id,
                format!(
                    "cannot hold a {} diff on `{}`, a {} layer: a chain is all Linux or all Windows",
                    options.apply.os.name(),
                    p.id,
                    p.os.name()
                ),
            ));
        }
        let driver = self.layer_driver(options.apply.os);
        let staging = Staging::new(&self.paths.staging())?;
        let recipe = staging.path().join("recipe");
        let kept = match options.keep_blob.is_some() || !driver.rebuilds_exactly() {
            true => Some(KeptBlob::new(&self.paths.staging())?),
            false => None,
        };
        let _parent_lock = match parents.first() {
            Some(p) => Some(LayerLock::shared(&self.paths.lock(&p.id))?),
            None => None,
        };
        let target = self.chain_of(chain);
        let fill = match &kept {
            None => driver.apply(&target, &mut input, &options.apply, &recipe)?,
            Some(k) => {
                let copy = k.file()?;
                let mut tee = crate::blobs::Tee {
                    inner: input,
                    copy: std::io::BufWriter::with_capacity(
                        1 << 20,
                        copy.try_clone()
                            .map_err(|e| Error::io("keeping the blob", e))?,
                    ),
                };
                let fill = driver.apply(&target, &mut tee, &options.apply, &recipe)?;
                std::io::Write::flush(&mut tee.copy)
                    .map_err(|e| Error::io("keeping the blob", e))?;
                copy.sync_all()
                    .map_err(|e| Error::io("syncing the kept blob", e))?;
                fill
            }
        };
        options.check(fill.diff.diff_id, fill.diff.blob_digest)?;
        if driver.rebuilds_exactly() {
            rename(&recipe, &self.paths.recipe(id))?;
        }
        staging.done()?;
        let kept = match kept {
            Some(k) if options.keep_blob.is_none() && fill.exact => {
                k.done()?;
                None
            }
            Some(mut k) => {
                k.media_type = media_type(fill.compression);
                Some(k)
            }
            None => None,
        };
        let Fill {
            diff,
            entries,
            warnings,
            sandbox,
            ..
        } = fill;
        Ok((
            diff,
            Filled {
                entries,
                warnings,
                sandbox,
            },
            kept,
        ))
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

/// What a kept copy of this compression is, as an OCI layer media type.
fn media_type(c: strata_layer::compress::Compression) -> &'static str {
    use strata_layer::compress::Compression;
    match c {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// What filling a layer did, whatever its kind.
pub(crate) struct Filled {
    pub entries: u64,
    pub warnings: Vec<String>,
    pub sandbox: Option<SandboxStatus>,
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
            media_type: "application/vnd.oci.image.layer.v1.tar",
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
