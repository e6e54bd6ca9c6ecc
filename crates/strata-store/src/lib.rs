//! # strata-store: the on-disk layer store
//!
//! A graph driver done properly for Linux: read-only layers stacked on parents, read-write
//! (container) layers on top, applied from layer tars and read back out bit-exact, shared
//! by any number of processes, safe against a crash at any moment.
//!
//! ## Words
//!
//! * A **layer** has an ID ([`LayerId`]) and at most one **parent**, which must be an
//!   applied read-only layer. Its **chain** is the layer and its ancestors.
//! * A **read-only** layer is created **empty** and filled once by **apply** (a layer tar,
//!   plain, gzip or zstd, streamed in: its diffID, sizes and recipe are recorded). After
//!   that it is **applied** and never changes; only applied layers can be parents.
//! * A **read-write** layer (`writable`) is what a container writes to. On a parent it
//!   gets an **init layer** (`ID-init`, see `init.rs`) between them, holding the
//!   mountpoints a runtime needs, so they never count as the container's changes.
//! * **mount** gives a path where the merged view of the chain can be read (and, for a
//!   read-write layer, written); mounts are counted in the database, so a `mount` in one
//!   process and an `unmount` in another agree, and the last `unmount` unmounts.
//! * **diff** writes a layer as a tar: an applied layer's original tar byte for byte, a
//!   read-write layer's changes. **changes** lists them like `docker diff`.
//! * **remove** refuses while a layer is mounted or has children.
//! * A **driver** keeps the files: [`DriverKind::Overlay`] (kernel overlayfs, each layer
//!   holds only its own entries; an apply on a parent writes straight into the layer's
//!   upper directory, copying up, whiting out and marking opaque as overlayfs would,
//!   without a mount: [`strata_layer::upper`]) or [`DriverKind::Vfs`] (full copies, works
//!   anywhere). A store keeps the driver it was created with. Each is a [`Driver`] (the
//!   [`driver`] module teaches the trait's lifecycle), and so is
//!   [`WindowsFolder`](driver::WindowsFolder), which keeps Windows layers in either.
//!   The store holds the database, the locks and the staging area; drivers only files.
//!
//! ## On disk
//!
//! ```text
//! ROOT/strata.db     SQLite (WAL): layers (states, mount counts), images and their names,
//!                    compressed blobs kept per layer, where registries hold blobs
//! ROOT/strata.lock   the store lock, held for short critical sections
//! ROOT/layers/ID/    the layer's lock file and driver directories (see [`driver`])
//! ROOT/recipes/ID    how to rebuild the layer's tar bit-exact
//! ROOT/blobs/sha256/ content-addressed blobs
//! ROOT/staging/      work in progress; what a crashed process left is removed on open
//! ROOT/empty/        an empty directory overlay mounts use as their bottom layer
//! ```
//!
//! Every change is staged, then made visible by one database transaction; removal first
//! renames a layer's directory to `ID-removing`. Every [`Store::open`] first repairs what
//! a crash left (see `recover.rs`); [`Store::fsck`] checks everything.
//!
//! ## A whole life
//!
//! ```
//! use strata_store::{CreateOptions, DriverKind, LayerId, Store, StoreOptions};
//! use strata_layer::compress::Compression;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let store = Store::open(&StoreOptions { root: root.path().into(), driver: Some(DriverKind::Vfs) })?;
//!
//! // A base layer from a tar holding one file, `etc/motd`.
//! let tree = tempfile::tempdir()?;
//! std::fs::create_dir(tree.path().join("etc"))?;
//! std::fs::write(tree.path().join("etc/motd"), "hello\n")?;
//! let mut tar = Vec::new();
//! strata_layer::pack::pack(tree.path(), &mut tar, Compression::None)?;
//! let base = LayerId::new("base")?;
//! store.create(&base, None, &CreateOptions::default())?;
//! let applied = store.apply(&base, &tar[..], &Default::default())?;
//!
//! // A container layer on it, changed through its mount.
//! let ctr = LayerId::new("ctr")?;
//! store.create(&ctr, Some(&base), &CreateOptions { writable: true, ..Default::default() })?;
//! let rootfs = store.mount(&ctr)?;
//! std::fs::write(rootfs.join("etc/greeting"), "hi\n")?;
//! let changes = store.changes(&ctr)?;
//! assert_eq!(changes.len(), 2); // C etc, A etc/greeting
//! // Its init layer (`ctr-init`) holds the runtime's mountpoints: not changes of `ctr`.
//! assert_eq!(store.layer(&ctr)?.init_layer, Some(LayerId::new("ctr-init")?));
//! store.unmount(&ctr)?;
//!
//! // The base layer's diff is the original tar, byte for byte.
//! let mut out = Vec::new();
//! let diff = store.diff(&base, &mut out, Compression::None)?;
//! assert_eq!(out, tar);
//! assert_eq!(diff.diff_id, applied.diff.diff_id);
//!
//! store.remove(&ctr)?;
//! store.remove(&base)?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod blobs;
pub mod changes;
mod db;
pub mod driver;
mod error;
mod export;
mod fsck;
mod id;
mod images;
mod init;
mod layout;
mod lock;
mod mounts;
pub mod options;
mod quota;
mod recover;
pub mod snapshots;
mod store;

pub use blobs::{BlobLease, BlobWriter};
pub use changes::{Change, ChangeKind};
pub use db::{DiffInfo, Os};
pub use driver::{probe_overlay, Driver, DriverKind};
pub use error::{DbError, Error, Expected, Result};
pub use export::DiffOutput;
pub use fsck::{FsckReport, Problem};
pub use id::LayerId;
pub use images::{Image, ManifestRef, NewImage, RemovedImage};
pub use lock::{LockHolder, LockWait, Staging};
pub use options::StorageOptions;
pub use recover::Recovery;
pub use snapshots::{
    SnapshotError, SnapshotInfo, SnapshotKind, SnapshotMount, SnapshotUsage, Snapshotter,
};
pub use store::{
    Applied, ApplyOptions, CreateOptions, ImportOptions, Layer, LayerDetails, LayerStatus,
    ParentWait, Store, StoreOptions,
};
