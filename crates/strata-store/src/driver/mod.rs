//! Drivers: how a layer's files are kept on disk, and the [`Driver`] trait they share.
//!
//! The [`Store`](crate::Store) owns the database, the locks and the staging area; it
//! decides *when* something happens to a layer and records it. A driver decides *how*
//! the files of a layer look and are reached. Each works on layer directories only
//! (`ROOT/layers/ID`, holding the lock file the store owns and the driver's directories),
//! so a driver keeps no state of its own about layers and knows nothing of the database.
//!
//! | driver | a layer directory holds | a layer's view |
//! | --- | --- | --- |
//! | [`Overlay`] (kernel overlayfs) | `diff/`: the layer's own entries (whiteouts as 0/0 character devices, opaque directories marked `trusted.overlay.opaque=y`); `work/`; `merged/` | an overlay mount at `merged/` |
//! | [`Vfs`] (plain copies, any file system) | `dir/`: a full copy of the merged view | `dir/` itself |
//! | [`WindowsFolder`] (a Windows layer, any store) | a strata-wclayer layer folder (`Files/`, `Hives/`, tombstones) in the content directory of the store's driver | none: Linux cannot run it |
//!
//! A store is made with one [`DriverKind`] (recorded in its database, never changed);
//! its Windows layers are kept by a [`WindowsFolder`] over that driver's directories.
//!
//! ## Words
//!
//! The words are containerd's snapshotter words, translated:
//!
//! * A **chain** ([`Chain`]) is a layer's directory followed by those of its parents,
//!   nearest first; every operation gets the chain it is about.
//! * **prepare** makes a new (staged) layer directory ready: containerd's `Prepare` for a
//!   read-write layer, whose content starts as the view of its parent, or the first half
//!   of importing a layer for a read-only one.
//! * **apply** fills a prepared read-only layer from a layer tar, once. The store then
//!   records the layer as applied in one transaction: containerd's `Commit`. Only applied
//!   layers can be parents.
//! * **mount** makes the merged view of a chain reachable at [`Driver::view_path`]
//!   (containerd's `Mounts`, done for the caller); **view** gives a temporary read-only
//!   view of any chain of applied layers (containerd's `View`).
//! * **changes** and **diff** say what a layer adds, modifies and deletes relative to its
//!   parents; **original tar** gives an applied layer's tar back, byte for byte.
//! * **remove** deletes a layer directory (the store renamed it out of the way first).
//!
//! ## A whole life
//!
//! Importing a base layer, running a container on it, reading back what it changed, and
//! getting the base layer's tar back, with the [`Vfs`] driver on bare directories (a
//! store does the same under its locks, in its staging area, and records each step):
//!
//! ```
//! use strata_layer::compress::Compression;
//! use strata_layer::unpack::Input;
//! use strata_store::driver::{Chain, Driver, Original, Vfs};
//! use strata_store::{ApplyOptions, ChangeKind, LayerId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let tree = tempfile::tempdir()?;
//! std::fs::write(tree.path().join("motd"), "hello\n")?;
//! let mut tar = Vec::new();
//! strata_layer::pack::pack(tree.path(), &mut tar, Compression::None)?;
//!
//! // Importing a layer: prepare a directory, apply the tar to it.
//! let vfs = Vfs;
//! let base_dir = root.path().join("base");
//! std::fs::create_dir(&base_dir)?;
//! let base = Chain { id: LayerId::new("base")?, dirs: vec![base_dir.clone()], writable: false };
//! vfs.prepare(&base)?;
//! let recipe = root.path().join("base.recipe");
//! let fill = vfs.apply(&base, Input::Stream(&mut &tar[..]), &ApplyOptions::default(), &recipe)?;
//! assert_eq!(fill.entries, 1);
//!
//! // Running a container: a read-write layer on the base, mounted, written to.
//! let ctr_dir = root.path().join("ctr");
//! std::fs::create_dir(&ctr_dir)?;
//! let ctr = Chain { id: LayerId::new("ctr")?, dirs: vec![ctr_dir.clone(), base_dir], writable: true };
//! vfs.prepare(&ctr)?;
//! vfs.mount(&ctr)?;
//! let rootfs = vfs.view_path(&ctr_dir);
//! assert_eq!(std::fs::read(rootfs.join("motd"))?, b"hello\n");
//! std::fs::remove_file(rootfs.join("motd"))?;
//! let changes = vfs.changes(&ctr)?;
//! assert_eq!(changes.len(), 1);
//! assert_eq!(changes[0].kind, ChangeKind::Deleted);
//! vfs.unmount(&ctr_dir)?;
//!
//! // The base layer's tar, as it came in.
//! let mut out = Vec::new();
//! let original = Original { diff_id: fill.diff.diff_id, recipe: &recipe, blob: None };
//! let (diff_id, _) = vfs.original_tar(&base, &original, &mut out)?;
//! assert_eq!((diff_id, out), (fill.diff.diff_id, tar));
//!
//! vfs.remove(&ctr_dir)?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::compress::Compression;
use strata_layer::digest::Digest;
use strata_layer::dir_writer::{DirWriterOptions, LowersLater};
use strata_layer::sandbox::SandboxStatus;
use strata_layer::unpack::{unpack, Input, UnpackOptions};
use strata_layer::{recipe, LayerReader};

use crate::changes::Change;
use crate::db::DiffInfo;
use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::layout::mkdir;
use crate::lock::Staging;
use crate::store::ApplyOptions;

mod overlay;
mod overlayfs;
mod vfs;
mod windows;

pub use overlay::{probe_overlay, Overlay};
pub use vfs::Vfs;
pub use windows::WindowsFolder;

/// Which driver a store uses: chosen when the store is created, recorded in its database
/// (as [`name`](DriverKind::name)) and kept for its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// Kernel overlayfs: each layer holds only its own entries; mounts stack them.
    Overlay,
    /// Plain copies: each layer is a full tree; works on any file system.
    Vfs,
}

impl DriverKind {
    /// The name a store records and the CLI takes: `overlay` or `vfs`.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Vfs => "vfs",
        }
    }

    /// The kind a recorded or given name stands for (`overlay2`, Docker's name, is
    /// `overlay`); `None` for an unknown name.
    pub fn parse(s: &str) -> Option<DriverKind> {
        match s {
            "overlay" | "overlay2" => Some(DriverKind::Overlay),
            "vfs" => Some(DriverKind::Vfs),
            _ => None,
        }
    }

    /// Checks that a driver of this kind works for a store at `root` ([`probe_overlay`]
    /// for overlay; vfs works anywhere).
    pub fn probe(self, root: &Path) -> Result<()> {
        match self {
            DriverKind::Overlay => probe_overlay(root),
            DriverKind::Vfs => Ok(()),
        }
    }

    /// The driver of this kind serving the store at `root`.
    pub fn driver(self, root: &Path) -> Box<dyn Driver> {
        match self {
            DriverKind::Overlay => Box::new(Overlay::new(root)),
            DriverKind::Vfs => Box::new(Vfs),
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layer as a driver sees it: its directory and its parents' directories.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The layer's ID, for the errors that name it.
    pub id: LayerId,
    /// The layer's directory (`ROOT/layers/ID`, or a staged one being prepared), then
    /// those of its parents, nearest first. A read-write layer's parents begin with its
    /// init layer.
    pub dirs: Vec<PathBuf>,
    /// True for a read-write (container) layer, false for a read-only one.
    pub writable: bool,
}

impl Chain {
    /// The layer's own directory.
    pub fn dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// The directories of the layer's parents, nearest first.
    pub fn parents(&self) -> &[PathBuf] {
        &self.dirs[1..]
    }
}

/// What applying a layer tar did: the numbers the store records.
#[derive(Clone, Debug)]
pub struct Fill {
    /// The diff's digests and sizes.
    pub diff: DiffInfo,
    /// The compression the input came in.
    pub compression: Compression,
    /// How many entries the tar held.
    pub entries: u64,
    /// What was applied other than as written (one sentence each).
    pub warnings: Vec<String>,
    /// How the writer was confined; `None` when the sandbox was turned off.
    pub sandbox: Option<SandboxStatus>,
    /// False when the driver cannot give this tar back byte for byte from what it keeps:
    /// the store then keeps the input (see [`Driver::rebuilds_exactly`]).
    pub exact: bool,
}

/// What the store kept of an applied layer so that its tar can be given back.
#[derive(Clone, Copy, Debug)]
pub struct Original<'a> {
    /// The diffID recorded at apply.
    pub diff_id: Digest,
    /// The recipe written at apply (for drivers that [rebuild exactly](Driver::rebuilds_exactly)).
    pub recipe: &'a Path,
    /// The layer's input as it came, when the store kept it.
    pub blob: Option<&'a Path>,
}

/// How a store keeps layers on disk; see the [module docs](self) for the words and a
/// whole life.
///
/// The store calls a driver only under the locks that make the call safe: a layer being
/// prepared or applied is held exclusively, the parents of a chain shared, so a driver
/// never sees a chain change under it. Errors name the layer (`chain.id`) or the path.
pub trait Driver: Send + Sync + fmt::Debug {
    /// The driver's name in messages: `overlay`, `vfs`, `windows layer`.
    fn name(&self) -> &'static str;

    /// The directories every layer directory holds besides its lock file (fsck checks
    /// that they are there).
    fn subdirs(&self) -> &'static [&'static str];

    /// Where the layer's own content is, inside layer directory `dir`: what apply writes
    /// to, what quotas limit.
    fn content(&self, dir: &Path) -> PathBuf;

    /// The scratch directory the driver keeps beside the content, if any (overlay's
    /// `work/`).
    fn work(&self, _dir: &Path) -> Option<PathBuf> {
        None
    }

    /// Refuses a chain deeper than the driver can stack: `Err(why)` for a layer at
    /// `depth` (1 for a layer without parent).
    fn check_depth(&self, _depth: usize) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Makes the driver's directories in `chain.dir()`, a new layer directory that is
    /// not yet visible. For a read-write layer the content starts as the view of its
    /// parents (a copy, for drivers that do not stack). Called once per layer.
    fn prepare(&self, chain: &Chain) -> Result<()>;

    /// True if the driver gives every applied layer's tar back from what it keeps (a
    /// recipe and the layer's files). False (a Windows layer folder): the store keeps a
    /// copy of the input while applying, and keeps it when [`Fill::exact`] is false.
    fn rebuilds_exactly(&self) -> bool {
        true
    }

    /// Fills the prepared, empty read-only layer `chain.dir()` from a layer tar (plain,
    /// gzip or zstd), read to its very end, and writes the layer's recipe at `recipe` if
    /// the driver [rebuilds exactly](Driver::rebuilds_exactly). The content is synced
    /// before this returns. On error the layer holds debris: the store calls
    /// [`reset`](Driver::reset) before anything else.
    fn apply(
        &self,
        chain: &Chain,
        input: Input<'_, &mut (dyn Read + Send)>,
        options: &ApplyOptions,
        recipe: &Path,
    ) -> Result<Fill>;

    /// [`apply`](Driver::apply) of a layer whose parents are still being applied (by
    /// other threads of this process), so that the layers of an image go in at once.
    /// `chain.dirs` holds only the layer's own directory; `parents` waits until the
    /// parents are complete and returns their directories, nearest first, or says why
    /// they never will be. A driver that can write a layer's own entries without its
    /// parents' content (overlay) calls it only at the first entry that must see below,
    /// and never for a layer that needs nothing of them; whether it calls it must not
    /// change the result, which is the one [`apply`](Driver::apply) gives over the same
    /// parents. The default waits first, then applies: a copying driver (vfs) starts from
    /// a copy of the parent, so it applies one layer after the other.
    fn apply_before_parents(
        &self,
        chain: &Chain,
        parents: ParentsLater,
        input: Input<'_, &mut (dyn Read + Send)>,
        options: &ApplyOptions,
        recipe: &Path,
    ) -> Result<Fill> {
        let mut dirs = vec![chain.dir().to_path_buf()];
        dirs.extend(parents()?);
        let chain = Chain {
            id: chain.id.clone(),
            dirs,
            writable: false,
        };
        self.apply(&chain, input, options, recipe)
    }

    /// Empties layer directory `dir` again after a failed or interrupted apply: unmounted,
    /// content and scratch directories empty, as [`prepare`](Driver::prepare) left them.
    fn reset(&self, dir: &Path) -> Result<()>;

    /// Where a mount of layer directory `dir` shows the layer's merged view.
    fn view_path(&self, dir: &Path) -> PathBuf;

    /// Where the driver mounts something for layer directory `dir`, if it mounts at all
    /// (the store checks these against the system's mounts after a crash).
    fn mount_point(&self, _dir: &Path) -> Option<PathBuf> {
        None
    }

    /// Makes the merged view of `chain` (an applied or a read-write layer) reachable at
    /// [`view_path`](Driver::view_path), writable for a read-write layer. The store
    /// counts mounts and calls this for the first one only; a view already in place (a
    /// count lost in a crash) is left as it is.
    fn mount(&self, chain: &Chain) -> Result<()>;

    /// Undoes [`mount`](Driver::mount) of layer directory `dir`, for the last unmount.
    fn unmount(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// A temporary read-only merged view of layer directories `dirs` (applied layers,
    /// nearest first; none gives an empty view), gone when dropped.
    fn view(&self, dirs: &[PathBuf]) -> Result<View>;

    /// What `chain.dir()` adds (`A`), modifies (`C`) and deletes (`D`) relative to its
    /// parents, sorted by path.
    fn changes(&self, chain: &Chain) -> Result<Vec<Change>>;

    /// The entries of read-write layer `chain.dir()`'s diff, as a layer tar holds them
    /// (whiteouts for deletions): deterministic, the same tree gives the same entries.
    fn diff_entries(&self, chain: &Chain) -> Result<Box<dyn LayerReader + Send>>;

    /// Writes applied layer `chain.dir()`'s tar as it came in to `out`, from what the
    /// store kept (`original`); returns its digest and size. A driver that can tell the
    /// tar is not the original fails with [`Error::Corrupt`].
    fn original_tar(
        &self,
        chain: &Chain,
        original: &Original<'_>,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64)>;

    /// Deletes layer directory `dir` and everything in it, mounts inside detached first.
    fn remove(&self, dir: &Path) -> Result<()> {
        crate::mounts::remove_tree(dir)
    }
}

/// The parents' layer directories, nearest first, once they are complete: what
/// [`Driver::apply_before_parents`] calls (once, on any thread) when it must see them.
pub type ParentsLater = Box<dyn FnOnce() -> Result<Vec<PathBuf>> + Send>;

/// Where an apply finds the layers below the one it writes.
pub(crate) enum Lowers {
    /// Their content directories, nearest first (none for a base layer, or a copy).
    Now(Vec<PathBuf>),
    /// Known only once they are complete (an overlay layer applied before its parents).
    Later(LowersLater),
}

/// A read-only view of applied layers: a directory when one is enough, a temporary
/// overlay mount in the staging area when layers must be stacked. Dropping it unmounts.
pub enum View {
    /// No layers: nothing to see.
    None,
    /// One directory holds the whole view.
    Dir(PathBuf),
    /// A read-only overlay mount in a staging entry of its own.
    Mounted {
        /// The staging entry, removed with the view.
        _staging: Staging,
        /// The mount's path.
        path: PathBuf,
    },
}

impl View {
    /// Where the view can be read; `None` for an empty view.
    pub fn path(&self) -> Option<&Path> {
        match self {
            View::None => None,
            View::Dir(p) => Some(p),
            View::Mounted { path, .. } => Some(path),
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let View::Mounted { path, .. } = self {
            // The staging directory's removal detaches it too; unmount first, politely.
            let _ = crate::mounts::unmount_path(path, true);
        }
    }
}

/// Unpacks a layer tar into `content` (a layer's own directory; with lowers, the upper
/// directory over them), writing its recipe: the apply of both Linux drivers.
fn unpack_into(
    content: &Path,
    lowers: Lowers,
    input: Input<'_, &mut (dyn Read + Send)>,
    options: &ApplyOptions,
    recipe: &Path,
) -> Result<Fill> {
    let (lowers, lowers_later) = match lowers {
        Lowers::Now(dirs) => (dirs, None),
        Lowers::Later(later) => (Vec::new(), Some(later)),
    };
    let summary = unpack(
        input,
        content,
        UnpackOptions {
            writer: DirWriterOptions {
                privileged_xattrs: options.privileged_xattrs,
                ..DirWriterOptions::default()
            },
            recipe: Some(recipe.to_path_buf()),
            sandbox: options.sandbox,
            lowers,
            lowers_later,
        },
    )?;
    crate::layout::sync_fs(content)?;
    Ok(Fill {
        diff: DiffInfo {
            diff_id: summary.diff_id,
            tar_size: summary.tar_bytes,
            diff_size: summary.data_bytes,
            blob_digest: summary.blob_digest,
            blob_size: summary.blob_bytes,
            compression: summary.compression.to_string(),
        },
        compression: summary.compression,
        entries: summary.entries,
        warnings: summary.warnings,
        sandbox: summary.sandbox,
        exact: true,
    })
}

/// An applied Linux layer's tar, rebuilt from its recipe and the files of the layer's own
/// merged view (paths through a parent's symlink resolve as they did at apply).
fn rebuild_tar(
    driver: &dyn Driver,
    chain: &Chain,
    original: &Original<'_>,
    out: &mut dyn Write,
) -> Result<(Digest, u64)> {
    let view = driver.view(&chain.dirs)?;
    let root = view
        .path()
        .ok_or_else(|| Error::Corrupt(format!("layer {} has no content directory", chain.id)))?;
    let rebuilt = recipe::rebuild(original.recipe, root, out)?;
    Ok((rebuilt.diff_id, rebuilt.bytes))
}

/// Empties and remakes directories `dirs` with their modes.
fn remake(dirs: &[(PathBuf, u32)]) -> Result<()> {
    for (dir, mode) in dirs {
        crate::mounts::remove_tree(dir)?;
        mkdir(dir, *mode)?;
    }
    Ok(())
}
