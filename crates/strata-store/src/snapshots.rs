//! containerd's snapshots on the store: the bookkeeping a snapshotter serves
//! (`strata-snapshotter` puts it on containerd's gRPC API).
//!
//! ## Words (containerd's)
//!
//! * A **snapshot** has a **key** (its name) and at most one **parent**, a committed
//!   snapshot. Its **kind** is *active* (read-write: the engine writes into its mount),
//!   *view* (a read-only look at the parent) or *committed* (read-only, a parent for
//!   others). Every snapshot has **labels** and **created**/**updated** times, in
//!   nanoseconds.
//! * Each snapshot is one store layer, `ctrd-N` (N a number the store never reuses, so
//!   128 stacked layer directories still fit a mount's option page): an active snapshot
//!   or a view is a read-write layer without init layer ([`Store::create_bare`]) on its
//!   parent's layer, a committed one a read-only (applied) layer. So `strata layer ls`,
//!   `changes`, `diff` and `fsck` see them like any other layer.
//! * **Commit** turns an active snapshot into a committed one under a new name: its layer
//!   is frozen in place ([`Store::freeze`]: the directory stays and becomes read-only),
//!   and in the same transaction the new name's row takes over the layer. Its diffID and
//!   recipe are left pending, made from the directory on first need (the store's `diff`
//!   of it, `fsck`, `strata layer ls`: [`Store::settle`]): containerd never asks for
//!   them, and the diff is bit-exact whenever made, the directory no longer changing.
//! * **Images in the store** (from `pull`, `load`, `copy`) are committed snapshots too,
//!   without a row: an applied layer whose ID is a chainID's hex is the snapshot
//!   `sha256:HEX`, its parent `sha256:PARENT-HEX`, labelled
//!   `containerd.io/snapshot.ref=sha256:HEX`. [`Snapshotter::prepare`] with that label
//!   for a chain the store holds answers [`SnapshotError::TargetExists`], as remote
//!   snapshotters do, so containerd skips the download and the unpack.
//!
//! ## Crash safety
//!
//! A prepare writes the snapshot's row and its layer's `creating` row in one
//! transaction, then moves the layer's directory (made in staging) into place, then
//! makes the layer read-write in a second transaction. Only the second waits for the
//! disk; it makes the first durable too (SQLite's WAL is synced and replayed in order),
//! and a process killed in between loses neither. A row is shown only while its layer
//! is visible and of its kind's state (a committed row while the layer is read-only, the
//! others while it is read-write). A commit is one transaction: the layer becomes
//! read-only (its diff pending), the committed row is written on it and the active row
//! dropped. Removal takes the layer first, then the row. So a kill leaves at most a
//! `creating` layer (removed by the store's recovery at the next open, which leaves its
//! row without a layer), a row without a layer, or a `ctrd-N` layer without a row: all
//! invisible to containerd, removed by [`Snapshotter::cleanup`] (and rows by
//! [`Snapshotter::new`]). A frozen layer whose diff is pending is consistent as it is:
//! fsck makes its diff and checks it ([`Store::settle`] is crash-safe on its own).
//!
//! ## A whole life
//!
//! ```
//! use std::collections::BTreeMap;
//! use strata_store::{DriverKind, SnapshotKind, SnapshotMount, Snapshotter, Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let store = Store::open(&StoreOptions { root: root.path().into(), driver: Some(DriverKind::Vfs) })?;
//! let snapshots = Snapshotter::new(store)?;
//!
//! // A layer is unpacked into an active snapshot's mount, then committed.
//! let mounts = snapshots.prepare("extract-1", None, BTreeMap::new())?;
//! let SnapshotMount::Bind { source, read_only: false } = &mounts[0] else { panic!() };
//! std::fs::write(source.join("hello"), "hi\n")?;
//! snapshots.commit("layer-1", "extract-1", BTreeMap::new())?;
//! assert_eq!(snapshots.stat("layer-1")?.kind, SnapshotKind::Committed);
//! assert!(snapshots.stat("extract-1").is_err());
//!
//! // A container's root file system on it.
//! snapshots.prepare("ctr", Some("layer-1"), BTreeMap::new())?;
//! assert_eq!(snapshots.stat("ctr")?.parent.as_deref(), Some("layer-1"));
//! assert!(snapshots.remove("layer-1").is_err()); // it has a child
//! snapshots.remove("ctr")?;
//! snapshots.remove("layer-1")?;
//! assert!(snapshots.list()?.is_empty());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension};

use crate::db::Tx;
use crate::driver::DriverKind;
use crate::error::Error;
use crate::id::LayerId;
use crate::store::{LayerStatus, Store};

/// The label containerd puts on a layer's snapshot to name the committed snapshot it will
/// become (`sha256:CHAINID`).
pub const SNAPSHOT_REF_LABEL: &str = "containerd.io/snapshot.ref";

/// The prefix of the layers that hold snapshots.
const LAYER_PREFIX: &str = "ctrd-";

/// When a row (`s`) is shown, given its layer (`l`): a committed snapshot once its layer is
/// read-only, the others while it is read-write. During a commit both rows name one layer,
/// and the freeze of that layer switches from one to the other.
const VISIBLE: &str = "((s.kind = 'committed' AND l.state = 'applied') \
                       OR (s.kind != 'committed' AND l.state = 'writable'))";

/// What a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A read-only snapshot of a committed parent (a read-write layer, mounted read-only).
    View,
    /// A writable snapshot being changed (a read-write layer); committing makes it
    /// `Committed`.
    Active,
    /// A read-only snapshot others are prepared on (a read-only layer).
    Committed,
}

impl SnapshotKind {
    /// The kind as stored and as containerd's filters name it: `view`, `active`,
    /// `committed`.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotKind::View => "view",
            SnapshotKind::Active => "active",
            SnapshotKind::Committed => "committed",
        }
    }

    fn parse(s: &str) -> Option<SnapshotKind> {
        Some(match s {
            "view" => SnapshotKind::View,
            "active" => SnapshotKind::Active,
            "committed" => SnapshotKind::Committed,
            _ => return None,
        })
    }
}

/// One snapshot, as `Stat` and `List` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The key containerd named it by.
    pub name: String,
    /// The committed snapshot it sits on.
    pub parent: Option<String>,
    /// Active, view or committed.
    pub kind: SnapshotKind,
    /// Nanoseconds since the epoch (UTC).
    pub created: i64,
    /// Nanoseconds since the epoch (UTC) of the last change (creation or `update`).
    pub updated: i64,
    /// containerd's labels (`containerd.io/gc.root`, `containerd.io/snapshot.ref`, ...).
    pub labels: BTreeMap<String, String>,
    /// The store layer holding it.
    pub layer: LayerId,
}

/// A mount the engine performs to use a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotMount {
    /// A bind mount of one directory.
    Bind {
        /// The directory.
        source: PathBuf,
        /// Mounted read-only (a view).
        read_only: bool,
    },
    /// An overlay: `lowers` topmost first; with `upper` (upper and work directory)
    /// writable, else read-only.
    Overlay {
        /// The lower directories, topmost first.
        lowers: Vec<PathBuf>,
        /// The upper and work directories of a writable mount.
        upper: Option<(PathBuf, PathBuf)>,
    },
}

/// The disk space a snapshot's own layer takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotUsage {
    /// Bytes allocated (blocks), each inode counted once.
    pub size: u64,
    /// Inodes (files, directories, links), each counted once.
    pub inodes: u64,
}

/// What a snapshot operation can fail with; containerd's error kinds map onto the first
/// four.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot `{0}` does not exist")]
    NotFound(String),
    /// A snapshot already has this key.
    #[error("snapshot `{0}` already exists")]
    Exists(String),
    /// `prepare` named a target (`containerd.io/snapshot.ref`) the store already holds.
    #[error("target snapshot `{target}` already exists in the store (layer {layer})")]
    TargetExists {
        /// The target key (a chain ID).
        target: String,
        /// The store layer that holds it.
        layer: LayerId,
    },
    /// The snapshot exists but cannot do this (wrong kind, has children, held by an
    /// image).
    #[error("snapshot `{key}`: {reason}")]
    Refused {
        /// The snapshot's key.
        key: String,
        /// Why not.
        reason: String,
    },
    /// The store failed underneath.
    #[error(transparent)]
    Store(#[from] Error),
}

type Result<T> = std::result::Result<T, SnapshotError>;

fn refused(key: &str, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Refused {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The store error inside a transaction for a snapshot error (only store errors occur
/// there).
fn store_error(e: SnapshotError) -> Error {
    match e {
        SnapshotError::Store(e) => e,
        other => Error::Corrupt(other.to_string()),
    }
}

/// Now, in nanoseconds since the epoch.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A snapshot's row.
struct Row {
    id: i64,
    info: SnapshotInfo,
}

/// The chainID hex a store layer ID is, if it is one.
fn chain_hex(id: &LayerId) -> Option<&str> {
    let s = id.as_str();
    (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(s)
}

/// containerd's snapshots on one store; see the [module docs](self). It is `Sync`:
/// requests from many connections may call it at once.
pub struct Snapshotter {
    store: Store,
    /// Taken shared by the operations that make rows and layers, exclusively by
    /// `cleanup`, so that it never takes a row whose layer is being made for debris.
    making: RwLock<()>,
}

impl Snapshotter {
    /// The snapshots of `store`, dropping rows a crash left without a layer.
    pub fn new(store: Store) -> Result<Snapshotter> {
        let snapshotter = Snapshotter {
            store,
            making: RwLock::new(()),
        };
        snapshotter.drop_dead_rows()?;
        Ok(snapshotter)
    }

    /// The store the snapshots live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn write<T>(&self, what: &str, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut db = self.store.db();
        let mut out = None;
        let r = db.write(what, |tx| match f(tx) {
            Ok(v) => {
                out = Some(Ok(v));
                Ok(())
            }
            // Rolls the transaction back, keeping the snapshot error.
            Err(e) => {
                out = Some(Err(e));
                Err(Error::Corrupt(String::new()))
            }
        });
        match (r, out) {
            (Ok(()), Some(out)) => out,
            (Err(_), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => unreachable!("the closure ran"),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let db = self.store.db();
        f(&db.read())
    }

    // ---- queries ---------------------------------------------------------------------

    /// The row of `key` whose layer is visible (in its state at rest).
    fn row(tx: &Tx<'_>, key: &str) -> Result<Option<Row>> {
        let sql = format!(
            "SELECT s.id, s.key, s.kind, s.parent, s.layer, s.created, s.updated
             FROM snapshots s JOIN layers l ON l.id = s.layer
             WHERE s.key = ?1 AND {VISIBLE}"
        );
        let found = tx
            .conn()
            .query_row(&sql, [key], row_of)
            .optional()
            .map_err(Error::db(format!("reading snapshot {key}")))?;
        match found {
            Some(row) => Ok(Some(Self::with_labels(tx, row?)?)),
            None => Ok(None),
        }
    }

    fn with_labels(tx: &Tx<'_>, mut row: Row) -> Result<Row> {
        let mut stmt = tx
            .conn()
            .prepare_cached("SELECT name, value FROM snapshot_labels WHERE snapshot = ?1")
            .map_err(Error::db("reading labels"))?;
        let labels = stmt
            .query_map([row.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<BTreeMap<_, _>>>())
            .map_err(Error::db("reading labels"))?;
        row.info.labels = labels;
        Ok(row)
    }

    /// True if any row, shown or not, holds `key`.
    fn key_taken(tx: &Tx<'_>, key: &str) -> Result<bool> {
        tx.conn()
            .query_row("SELECT 1 FROM snapshots WHERE key = ?1", [key], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| Error::db(format!("looking up snapshot {key}"))(e).into())
    }

    /// The image layer that is snapshot `key` (`sha256:HEX`), if the store holds it.
    fn image_layer(&self, key: &str) -> Result<Option<crate::store::Layer>> {
        let Some(hex) = key.strip_prefix("sha256:") else {
            return Ok(None);
        };
        let Ok(id) = LayerId::new(hex) else {
            return Ok(None);
        };
        if chain_hex(&id).is_none() {
            return Ok(None);
        }
        match self.store.layer(&id) {
            Ok(l) if l.status == LayerStatus::Applied && l.init_for.is_none() => Ok(Some(l)),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The snapshot an image layer is.
    fn image_info(layer: &crate::store::Layer) -> Option<SnapshotInfo> {
        let hex = chain_hex(&layer.id)?;
        let parent = match &layer.parent {
            Some(p) => Some(format!("sha256:{}", chain_hex(p)?)),
            None => None,
        };
        let name = format!("sha256:{hex}");
        let created = layer.created.saturating_mul(1_000_000_000);
        Some(SnapshotInfo {
            labels: BTreeMap::from([(SNAPSHOT_REF_LABEL.to_string(), name.clone())]),
            name,
            parent,
            kind: SnapshotKind::Committed,
            created,
            updated: created,
            layer: layer.id.clone(),
        })
    }

    /// Snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<SnapshotInfo> {
        if let Some(row) = self.read(|tx| Self::row(tx, key))? {
            return Ok(row.info);
        }
        self.image_layer(key)?
            .as_ref()
            .and_then(Self::image_info)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    /// Every snapshot: those made through this API, then the store's image layers.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let rows = self.read(|tx| {
            let sql = format!(
                "SELECT s.id, s.key, s.kind, s.parent, s.layer, s.created, s.updated
                 FROM snapshots s JOIN layers l ON l.id = s.layer
                 WHERE {VISIBLE} ORDER BY s.id"
            );
            let mut stmt = tx
                .conn()
                .prepare(&sql)
                .map_err(Error::db("listing snapshots"))?;
            let rows = stmt
                .query_map([], row_of)
                .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(Error::db("listing snapshots"))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(Self::with_labels(tx, row?)?);
            }
            Ok(out)
        })?;
        let names: HashSet<String> = rows.iter().map(|r| r.info.name.clone()).collect();
        let mut out: Vec<SnapshotInfo> = rows.into_iter().map(|r| r.info).collect();
        for layer in self.store.layers()? {
            if layer.status != LayerStatus::Applied || layer.init_for.is_some() {
                continue;
            }
            if let Some(info) = Self::image_info(&layer) {
                if !names.contains(&info.name) {
                    out.push(info);
                }
            }
        }
        Ok(out)
    }

    /// The layer of committed snapshot `parent`, for a new snapshot `key` on it.
    fn parent_layer(&self, key: &str, parent: &str) -> Result<LayerId> {
        let info = self.stat(parent).map_err(|e| match e {
            SnapshotError::NotFound(_) => refused(
                key,
                format!("cannot be created: its parent `{parent}` does not exist"),
            ),
            e => e,
        })?;
        if info.kind != SnapshotKind::Committed {
            return Err(refused(
                key,
                format!(
                    "cannot be created on `{parent}`: it is {} snapshot, not a committed one",
                    if info.kind == SnapshotKind::Active {
                        "an active"
                    } else {
                        "a view"
                    }
                ),
            ));
        }
        Ok(info.layer)
    }

    // ---- making snapshots -----------------------------------------------------------

    /// Writes the row of `key` (on layer `on`, or a new `ctrd-N`): its ID and layer ID.
    fn insert_row(
        tx: &Tx<'_>,
        key: &str,
        kind: SnapshotKind,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
        on: Option<&LayerId>,
    ) -> Result<(i64, LayerId)> {
        {
            let now = now_ns();
            let conn = tx.conn();
            conn.execute(
                "INSERT INTO snapshots (key, kind, parent, layer, created, updated)
                 VALUES (?1, ?2, ?3, '', ?4, ?4)",
                params![key, kind.name(), parent, now],
            )
            .map_err(Error::db(format!("recording snapshot {key}")))?;
            let id = conn.last_insert_rowid();
            let layer = match on {
                Some(l) => l.clone(),
                None => LayerId::new(format!("{LAYER_PREFIX}{id}"))?,
            };
            conn.execute(
                "UPDATE snapshots SET layer = ?1 WHERE id = ?2",
                params![layer.as_str(), id],
            )
            .map_err(Error::db(format!("recording snapshot {key}")))?;
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO snapshot_labels (snapshot, name, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(Error::db("recording labels"))?;
            for (name, value) in labels {
                stmt.execute(params![id, name, value])
                    .map_err(Error::db("recording labels"))?;
            }
            Ok((id, layer))
        }
    }

    /// Drops the row of `key` if its layer was never made (a failed prepare).
    fn drop_unmade(&self, key: &str) {
        let _ = self.write("dropping a snapshot", |tx| {
            tx.conn()
                .execute(
                    "DELETE FROM snapshots WHERE key = ?1
                     AND layer NOT IN (SELECT id FROM layers)",
                    [key],
                )
                .map_err(Error::db("dropping a snapshot"))?;
            Ok(())
        });
    }

    /// Prepares the active snapshot `key` on `parent` and returns the mounts of its
    /// read-write root. With label [`SNAPSHOT_REF_LABEL`] naming an image chain the store
    /// holds on the same parent, fails with [`SnapshotError::TargetExists`] instead.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<SnapshotMount>> {
        if let Some(target) = labels.get(SNAPSHOT_REF_LABEL) {
            if let Some(info) = self
                .stat(target)
                .ok()
                .filter(|i| i.kind == SnapshotKind::Committed && i.parent.as_deref() == parent)
            {
                return Err(SnapshotError::TargetExists {
                    target: target.clone(),
                    layer: info.layer,
                });
            }
        }
        self.make(key, SnapshotKind::Active, parent, labels)
    }

    /// Makes the view `key` of `parent` (read-only) and returns its mounts.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<SnapshotMount>> {
        self.make(key, SnapshotKind::View, parent, labels)
    }

    fn make(
        &self,
        key: &str,
        kind: SnapshotKind,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<SnapshotMount>> {
        let _making = self.making.read().unwrap_or_else(|p| p.into_inner());
        let parent_layer = parent.map(|p| self.parent_layer(key, p)).transpose()?;
        if self.image_layer(key)?.is_some() {
            return Err(SnapshotError::Exists(key.to_string()));
        }
        // The row and the layer's `creating` row in one transaction; the layer is
        // `ctrd-ROWID`.
        let provisional = LayerId::new(format!("{LAYER_PREFIX}new"))?;
        let taken = std::cell::Cell::new(false);
        let made = self
            .store
            .create_bare_named(&provisional, parent_layer.as_ref(), |tx| {
                if Self::key_taken(tx, key).map_err(store_error)? {
                    taken.set(true);
                    return Err(Error::Corrupt(String::new())); // rolls back
                }
                let (_, layer) =
                    Self::insert_row(tx, key, kind, parent, &labels, None).map_err(store_error)?;
                Ok((layer, ()))
            });
        match made {
            Ok(_) => self.mounts(key),
            Err(_) if taken.get() => Err(SnapshotError::Exists(key.to_string())),
            Err(e) => {
                self.drop_unmade(key);
                Err(e.into())
            }
        }
    }

    /// Commits active snapshot `key` as the committed snapshot `name`, with `labels`;
    /// `key` is gone afterwards. The active snapshot's layer is frozen in place
    /// ([`Store::freeze`]): nothing is copied.
    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let _making = self.making.read().unwrap_or_else(|p| p.into_inner());
        let active = self.stat(key)?;
        if active.kind != SnapshotKind::Active {
            return Err(refused(
                key,
                format!(
                    "is a {} snapshot: only active ones can be committed",
                    active.kind.name()
                ),
            ));
        }
        if self.taken(name)? {
            return Err(SnapshotError::Exists(name.to_string()));
        }
        // One transaction makes the layer read-only, gives it the committed row and drops
        // the active one: a crash leaves the active snapshot as it was, or the commit done.
        let taken = std::cell::Cell::new(false);
        let frozen = self.store.freeze_with(&active.layer, |tx| {
            if Self::key_taken(tx, name).map_err(store_error)? {
                taken.set(true);
                return Err(Error::Corrupt(String::new())); // rolls back
            }
            tx.conn()
                .execute(
                    "DELETE FROM snapshots WHERE key = ?1 AND kind != 'committed'",
                    [key],
                )
                .map_err(Error::db(format!("dropping snapshot {key}")))?;
            Self::insert_row(
                tx,
                name,
                SnapshotKind::Committed,
                active.parent.as_deref(),
                &labels,
                Some(&active.layer),
            )
            .map_err(store_error)?;
            Ok(())
        });
        match frozen {
            Ok(()) => Ok(()),
            Err(_) if taken.get() => Err(SnapshotError::Exists(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// True if `key` is a snapshot's (shown or not) or an image layer's.
    fn taken(&self, key: &str) -> Result<bool> {
        Ok(self.image_layer(key)?.is_some() || self.read(|tx| Self::key_taken(tx, key))?)
    }

    /// Removes snapshot `key`: refused while it has children, and always for the store's
    /// own layers (shown as committed snapshots, removed only by Strata).
    pub fn remove(&self, key: &str) -> Result<()> {
        let info = self.stat(key)?;
        let has_children = self.read(|tx| {
            tx.conn()
                .query_row(
                    "SELECT 1 FROM snapshots WHERE parent = ?1 LIMIT 1",
                    [key],
                    |_| Ok(()),
                )
                .optional()
                .map(|r| r.is_some())
                .map_err(|e| Error::db("looking for children")(e).into())
        })?;
        if has_children {
            return Err(refused(
                key,
                "failed to remove: it has children (remove them first)",
            ));
        }
        // The store's own layers (pulled, loaded, copied, made with `strata layer`) are
        // shown to containerd for reuse, but only Strata removes them: containerd's
        // garbage collection asks to remove every snapshot its metadata does not name, and
        // a layer between its import and its image's record is such a snapshot.
        if self.read(|tx| Ok(Self::row(tx, key)?.is_none()))? {
            return Err(refused(
                key,
                format!(
                    "failed to remove: layer {} is the store's own, not made through this API \
                     (strata rmi or strata layer rm removes it)",
                    info.layer
                ),
            ));
        }
        match self.store.remove(&info.layer) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(Error::Refused { reason, .. }) => {
                return Err(refused(
                    key,
                    format!("failed to remove: layer {} {reason}", info.layer),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.write("removing a snapshot", |tx| {
            tx.conn()
                .execute("DELETE FROM snapshots WHERE key = ?1", [key])
                .map_err(Error::db(format!("removing snapshot {key}")))?;
            Ok(())
        })
    }

    /// Replaces the labels of snapshot `key` (stamping `updated`), returning it.
    pub fn set_labels(&self, key: &str, labels: BTreeMap<String, String>) -> Result<SnapshotInfo> {
        let done = self.write("updating a snapshot", |tx| {
            let Some(row) = Self::row(tx, key)? else {
                return Ok(false);
            };
            let conn = tx.conn();
            conn.execute("DELETE FROM snapshot_labels WHERE snapshot = ?1", [row.id])
                .map_err(Error::db("updating labels"))?;
            for (name, value) in &labels {
                conn.execute(
                    "INSERT INTO snapshot_labels (snapshot, name, value) VALUES (?1, ?2, ?3)",
                    params![row.id, name, value],
                )
                .map_err(Error::db("updating labels"))?;
            }
            conn.execute(
                "UPDATE snapshots SET updated = ?1 WHERE id = ?2",
                params![now_ns(), row.id],
            )
            .map_err(Error::db("updating a snapshot"))?;
            Ok(true)
        })?;
        if !done {
            return match self.image_layer(key)? {
                Some(_) => Err(refused(
                    key,
                    "is an image layer of the store: its labels are fixed",
                )),
                None => Err(SnapshotError::NotFound(key.to_string())),
            };
        }
        self.stat(key)
    }

    // ---- mounts and usage -------------------------------------------------------------

    /// The content directory of layer `id`.
    fn content(&self, id: &LayerId) -> Result<PathBuf> {
        Ok(self.store.inspect(id)?.content)
    }

    /// What the engine mounts to use snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<SnapshotMount>> {
        let info = self.stat(key)?;
        let details = self.store.inspect(&info.layer)?;
        let read_only = info.kind != SnapshotKind::Active;
        if self.store.driver() == DriverKind::Vfs {
            // Every vfs layer is a full tree.
            return Ok(vec![SnapshotMount::Bind {
                source: details.content,
                read_only,
            }]);
        }
        let mut lowers = Vec::with_capacity(details.parents.len() + 1);
        if info.kind == SnapshotKind::Committed {
            lowers.push(details.content.clone());
        }
        for p in &details.parents {
            lowers.push(self.store.content_dir(p));
        }
        Ok(vec![match (info.kind, lowers.len()) {
            (SnapshotKind::Active, 0) => SnapshotMount::Bind {
                source: details.content,
                read_only: false,
            },
            (SnapshotKind::Active, _) => SnapshotMount::Overlay {
                lowers,
                upper: Some((
                    details.content,
                    details.work.ok_or_else(|| {
                        Error::Corrupt(format!("layer {} has no work directory", info.layer))
                    })?,
                )),
            },
            // A view of nothing: its own empty directory.
            (_, 0) => SnapshotMount::Bind {
                source: details.content,
                read_only: true,
            },
            (_, 1) => SnapshotMount::Bind {
                source: lowers.remove(0),
                read_only: true,
            },
            (_, _) => SnapshotMount::Overlay {
                lowers,
                upper: None,
            },
        }])
    }

    /// The space snapshot `key`'s own layer takes (for a vfs layer, its whole tree).
    pub fn usage(&self, key: &str) -> Result<SnapshotUsage> {
        let info = self.stat(key)?;
        let dir = self.content(&info.layer)?;
        let mut usage = SnapshotUsage::default();
        let mut seen = HashSet::new();
        let mut todo = vec![dir];
        while let Some(dir) = todo.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
                use std::os::unix::fs::MetadataExt;
                if seen.insert((meta.dev(), meta.ino())) {
                    usage.inodes += 1;
                    usage.size += meta.blocks() * 512;
                }
                if meta.is_dir() {
                    todo.push(entry.path());
                }
            }
        }
        Ok(usage)
    }

    // ---- cleanup ----------------------------------------------------------------------

    /// Rows whose layer is gone (a crash between reserving and making, or between
    /// removing the layer and the row), and the row a commit cut short leaves hidden: the
    /// committed one while the layer is still read-write, the active one once it is
    /// read-only.
    fn drop_dead_rows(&self) -> Result<usize> {
        self.write("dropping dead snapshots", |tx| {
            tx.conn()
                .execute(
                    "DELETE FROM snapshots WHERE layer NOT IN (SELECT id FROM layers)
                     OR (kind = 'committed'
                         AND layer IN (SELECT id FROM layers WHERE state = 'writable'))
                     OR (kind != 'committed'
                         AND layer IN (SELECT id FROM layers WHERE state = 'applied'))",
                    [],
                )
                .map_err(|e| Error::db("dropping dead snapshots")(e).into())
        })
    }

    /// Removes what nothing references: rows without a layer, and `ctrd-N` layers without
    /// a row (a commit or removal cut short). Returns how many layers it removed.
    pub fn cleanup(&self) -> Result<usize> {
        let _making = self.making.write().unwrap_or_else(|p| p.into_inner());
        self.drop_dead_rows()?;
        let owned: HashSet<String> = self.read(|tx| {
            let mut stmt = tx
                .conn()
                .prepare("SELECT layer FROM snapshots")
                .map_err(Error::db("listing snapshot layers"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|r| r.collect::<rusqlite::Result<HashSet<_>>>())
                .map_err(Error::db("listing snapshot layers"))?;
            Ok(rows)
        })?;
        let mut orphans: Vec<_> = self
            .store
            .layers()?
            .into_iter()
            .filter(|l| {
                l.id.as_str()
                    .strip_prefix(LAYER_PREFIX)
                    .is_some_and(|n| n.parse::<u64>().is_ok())
                    && !owned.contains(l.id.as_str())
            })
            .collect();
        // Children first.
        orphans.sort_by_key(|l| std::cmp::Reverse(l.depth));
        let mut removed = 0;
        for layer in orphans {
            match self.store.remove(&layer.id) {
                Ok(()) => removed += 1,
                Err(Error::Refused { .. } | Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<std::result::Result<Row, SnapshotError>> {
    let id: i64 = r.get(0)?;
    let key: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let parent: Option<String> = r.get(3)?;
    let layer: String = r.get(4)?;
    let created: i64 = r.get(5)?;
    let updated: i64 = r.get(6)?;
    Ok((|| {
        let kind = SnapshotKind::parse(&kind).ok_or_else(|| {
            Error::Corrupt(format!("snapshot {key} has an unknown kind `{kind}`"))
        })?;
        Ok(Row {
            id,
            info: SnapshotInfo {
                name: key,
                parent,
                kind,
                created,
                updated,
                labels: BTreeMap::new(),
                layer: LayerId::new(layer)?,
            },
        })
    })())
}
