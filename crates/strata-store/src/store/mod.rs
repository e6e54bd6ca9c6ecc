//! [`Store`]: the graph-driver operations over one store root.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_layer::digest::Digest;
use strata_layer::sandbox::SandboxStatus;
use strata_layer::unpack::Input;

use crate::db::{Db, DiffInfo, LayerRow, Os, State, Tx};
use crate::driver::{Chain, Driver, DriverKind, Fill, WindowsFolder};
use crate::error::{Error, Expected, Result};
use crate::id::LayerId;
use crate::layout::{mkdir, rename, Paths};
use crate::lock::{LayerLock, LockWait, Staging, StoreLock};
use crate::options::StorageOptions;
use crate::{mounts, quota};

mod apply;
mod bare;
mod create;
mod freeze;
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
    /// For an applied layer: its diff; `None` while it is pending (a frozen layer, see
    /// [`Layer::diff_pending`]).
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
    /// For an applied layer: the recipe that rebuilds its tar (`None` while its diff is
    /// pending).
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

/// Where a layer imported with [`Store::import_after`] waits for its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentWait {
    /// At its first entry that must see the parent's content: the rest of the layer is
    /// written once the parent is in.
    Content,
    /// Complete and checked: only its commit, after the parent's, is left.
    Commit,
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

    /// The content directory of the Linux layer `id` (where its files are), without a
    /// look-up: the caller knows the layer exists.
    pub fn content_dir(&self, id: &LayerId) -> PathBuf {
        self.driver.content(&self.paths.layer(id))
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
            recipe: (row.state == State::Applied && row.diff.is_some())
                .then(|| self.paths.recipe(id)),
            layer,
        })
    }
}
