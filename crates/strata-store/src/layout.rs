//! Where a store keeps its files, whatever its driver, and the few file operations the
//! store does on those places (the driver's own directories are the driver's business:
//! see [`crate::driver`]).
//!
//! ```text
//! ROOT/layers/ID/      one layer: its lock file and the driver's directories
//! ROOT/layers/ID-removing/   a layer being removed (renamed first, deleted after)
//! ROOT/recipes/ID      how to rebuild the layer's tar bit-exact
//! ROOT/blobs/sha256/   content-addressed blobs
//! ROOT/staging/        work in progress
//! ROOT/empty/          an empty directory (overlay's bottom layer)
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::{LayerId, REMOVING_SUFFIX};

/// The paths of a store.
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    pub fn recipes(&self) -> PathBuf {
        self.root.join("recipes")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    /// The directory of layer `id`: its lock file and the driver's directories.
    pub fn layer(&self, id: &LayerId) -> PathBuf {
        self.layers().join(id.as_str())
    }
    /// Where layer `id`'s directory goes while it is removed.
    pub fn removing(&self, id: &LayerId) -> PathBuf {
        self.layers().join(format!("{id}{REMOVING_SUFFIX}"))
    }
    pub fn lock(&self, id: &LayerId) -> PathBuf {
        self.layer(id).join("lock")
    }
    pub fn recipe(&self, id: &LayerId) -> PathBuf {
        self.recipes().join(id.as_str())
    }
}

/// Creates directory `path` with `mode` unless it exists.
pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

/// Syncs the whole file system holding `dir` (`syncfs(2)`): cheaper than syncing every
/// file a layer wrote.
pub(crate) fn sync_fs(dir: &Path) -> Result<()> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    rustix::fs::syncfs(&fd).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
