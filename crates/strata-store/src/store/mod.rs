//! [`Store`]: the graph-driver operations over one store root.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_layer::copy_tree::copy_tree;
use strata_layer::dir_writer::DirWriterOptions;
use strata_layer::sandbox::SandboxStatus;
use strata_layer::unpack::{unpack, UnpackOptions};

use strata_layer::digest::Digest;

use crate::db::{Db, DiffInfo, LayerRow, Os, State, Tx};
use crate::driver::{DriverKind, Paths, View};
use crate::error::{Error, Expected, Result};
use crate::id::LayerId;
use crate::lock::{LayerLock, LockWait, Staging, StoreLock};
use crate::options::StorageOptions;
use crate::overlay::{self, OverlaySpec, MAX_LOWERS};
use crate::{mounts, quota};

mod bare;
mod mount;
mod remove;

pub use mount::probe_overlay;

/// Where a store lives and which driver it should use.
#[derive(Clone, Debug)]
pub struct StoreOptions {
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
    pub id: LayerId,
    pub parent: Option<LayerId>,
    pub status: LayerStatus,
    /// Seconds since the epoch.
    pub created: i64,
    /// 1 for a layer without parent.
    pub depth: u32,
    /// For an applied layer: its diff.
    pub diff: Option<DiffInfo>,
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
    pub layer: Layer,
    /// The layer's ancestors, nearest first (not a read-write layer's init layer).
    pub parents: Vec<LayerId>,
    pub children: Vec<LayerId>,
    pub driver: DriverKind,
    /// The driver's directories for the layer.
    pub content: PathBuf,
    pub work: Option<PathBuf>,
    pub merged: Option<PathBuf>,
    pub recipe: Option<PathBuf>,
}

/// How to create a layer.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// A read-write (container) layer; else read-only, to be filled by `apply`.
    pub writable: bool,
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
    pub layer: Layer,
    pub diff: DiffInfo,
    pub entries: u64,
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
            .field("driver", &self.paths.driver)
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

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

fn sync_fs(dir: &Path) -> Result<()> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    rustix::fs::syncfs(&fd).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
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
                    None if probe_overlay(&root).is_ok() => DriverKind::Overlay,
                    None => DriverKind::Vfs,
                };
                if driver == DriverKind::Overlay {
                    probe_overlay(&root)?;
                }
                db.write("recording the driver", |tx| {
                    tx.set_meta("driver", driver.name())
                })?;
                driver
            }
        };
        let mut store = Store {
            paths: Paths { root, driver },
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

    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    pub fn driver(&self) -> DriverKind {
        self.paths.driver
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
        let overlay = self.paths.driver == DriverKind::Overlay;
        Ok(LayerDetails {
            // The image's chain; a read-write layer's init layer is `layer.init_layer`.
            parents: chain
                .iter()
                .skip(1)
                .filter(|r| r.init_for.is_none())
                .map(|r| r.id.clone())
                .collect(),
            children,
            driver: self.paths.driver,
            content: self.paths.content(id),
            work: overlay.then(|| self.paths.work(id)),
            merged: overlay.then(|| self.paths.merged(id)),
            recipe: (row.state == State::Applied).then(|| self.paths.recipe(id)),
            layer,
        })
    }

    /// The content directories of `chain[from..]` (nearest first).
    pub(crate) fn content_dirs(&self, chain: &[LayerRow]) -> Vec<PathBuf> {
        chain.iter().map(|r| self.paths.content(&r.id)).collect()
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
            let view = match self.paths.driver {
                DriverKind::Vfs => View::Dir(self.paths.content(parent)),
                DriverKind::Overlay => View::of(&self.paths, &self.content_dirs(&chain))?,
            };
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
        if self.paths.driver == DriverKind::Overlay && chain.len() + 1 > MAX_LOWERS {
            return Err(Error::refused(
                id,
                format!("cannot be created: a chain of {} layers is more than overlayfs stacks ({MAX_LOWERS})", chain.len() + 1),
            ));
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
        for sub in self.paths.subdirs() {
            mkdir(&dir.join(sub), if *sub == "work" { 0o700 } else { 0o755 })?;
        }
        let lock_path = dir.join("lock");
        std::fs::File::create(&lock_path)
            .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        let lock = LayerLock::try_exclusive(&lock_path)?.ok_or_else(|| {
            Error::Corrupt(format!("{} is locked by someone else", lock_path.display()))
        })?;
        let content = self.paths.content_in(&dir);
        if self.paths.driver == DriverKind::Vfs && state == State::Writable {
            match (init, chain.first()) {
                // The caller holds the init layer's lock.
                (Some(init), _) => {
                    copy_tree(&self.paths.content(init), &content)?;
                }
                (None, Some(p)) => {
                    let _parent_lock = LayerLock::shared(&self.paths.lock(&p.id))?;
                    copy_tree(&self.paths.content(&p.id), &content)?;
                }
                (None, None) => {}
            }
        }
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
    /// holds exclusively, records its recipe and checks the expected digests. With
    /// `keep_blob`, also returns the staging entry holding a copy of the input (`blob`).
    fn fill<R: Read + Send>(
        &self,
        chain: &[LayerRow],
        input: R,
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
        if options.apply.os == Os::Windows {
            return self.fill_windows(chain, input, options);
        }
        let content = self.paths.content(id);
        let staging = Staging::new(&self.paths.staging())?;
        let recipe = staging.path().join("recipe");
        let kept = match options.keep_blob {
            Some(_) => Some(KeptBlob::new(&self.paths.staging())?),
            None => None,
        };
        let lowers = match self.paths.driver {
            DriverKind::Vfs => {
                if let Some(p) = parents.first() {
                    let _parent_lock = LayerLock::shared(&self.paths.lock(&p.id))?;
                    copy_tree(&self.paths.content(&p.id), &content)?;
                }
                Vec::new()
            }
            // Written straight into the upper directory, as if through a mount of the
            // parents: the writer copies lower directories up, leaves whiteouts and opaque
            // directories as overlayfs would, without its cost per call.
            DriverKind::Overlay => self.content_dirs(parents),
        };
        let target = content.clone();
        let unpack_options = UnpackOptions {
            writer: DirWriterOptions {
                privileged_xattrs: options.apply.privileged_xattrs,
                ..DirWriterOptions::default()
            },
            recipe: Some(recipe.clone()),
            sandbox: options.apply.sandbox,
            lowers,
        };
        let summary = match &kept {
            None => unpack(input, &target, unpack_options)?,
            Some(k) => {
                let copy = k.file()?;
                let summary = unpack(
                    crate::blobs::Tee {
                        inner: input,
                        copy: std::io::BufWriter::with_capacity(
                            1 << 20,
                            copy.try_clone()
                                .map_err(|e| Error::io("keeping the blob", e))?,
                        ),
                    },
                    &target,
                    unpack_options,
                )?;
                copy.sync_all()
                    .map_err(|e| Error::io("syncing the kept blob", e))?;
                summary
            }
        };
        options.check(summary.diff_id, summary.blob_digest)?;
        sync_fs(&content)?;
        rename(&recipe, &self.paths.recipe(id))?;
        staging.done()?;
        let diff = DiffInfo {
            diff_id: summary.diff_id,
            tar_size: summary.tar_bytes,
            diff_size: summary.data_bytes,
            blob_digest: summary.blob_digest,
            blob_size: summary.blob_bytes,
            compression: summary.compression.to_string(),
        };
        let filled = Filled {
            entries: summary.entries,
            warnings: summary.warnings,
            sandbox: summary.sandbox,
        };
        Ok((diff, filled, kept))
    }

    /// Empties the content (and work) directory of layer `id` and drops its recipe, after
    /// a failed or interrupted apply.
    pub(crate) fn reset_content(&self, id: &LayerId) -> Result<()> {
        if self.paths.driver == DriverKind::Overlay {
            mounts::unmount_path(&self.paths.merged(id), true)?;
        }
        for dir in [
            Some(self.paths.content(id)),
            (self.paths.driver == DriverKind::Overlay).then(|| self.paths.work(id)),
        ]
        .into_iter()
        .flatten()
        {
            mounts::remove_tree(&dir)?;
            mkdir(&dir, if dir.ends_with("work") { 0o700 } else { 0o755 })?;
        }
        std::fs::remove_file(self.paths.recipe(id))
            .or_else(crate::lock::ignore_missing)
            .map_err(|e| Error::io("removing the recipe", e))
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
