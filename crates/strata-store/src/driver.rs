//! The two drivers and where each keeps a layer's files.
//!
//! ```text
//! ROOT/layers/ID/lock        the layer's lock file (both drivers)
//! overlay:  ROOT/layers/ID/diff/    the layer's own entries (the overlay upper directory):
//!                                   whiteouts as 0/0 character devices, opaque
//!                                   directories marked trusted.overlay.opaque=y
//!           ROOT/layers/ID/work/    overlayfs work directory
//!           ROOT/layers/ID/merged/  where `mount` puts the merged view
//! vfs:      ROOT/layers/ID/dir/     a full copy of the merged view (parent copied, then
//!                                   the diff applied)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::{LayerId, REMOVING_SUFFIX};
use crate::lock::Staging;
use crate::overlay::{self, OverlaySpec};

/// How a store keeps layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// Kernel overlayfs: each layer holds only its own entries; mounts stack them.
    Overlay,
    /// Plain copies: each layer is a full tree; works on any file system.
    Vfs,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Vfs => "vfs",
        }
    }

    pub fn parse(s: &str) -> Option<DriverKind> {
        match s {
            "overlay" | "overlay2" => Some(DriverKind::Overlay),
            "vfs" => Some(DriverKind::Vfs),
            _ => None,
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The paths of a store.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub driver: DriverKind,
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
    /// An empty directory: the bottom lower of overlay mounts that would have one layer.
    pub fn empty(&self) -> PathBuf {
        self.root.join("empty")
    }
    pub fn layer(&self, id: &LayerId) -> PathBuf {
        self.layers().join(id.as_str())
    }
    pub fn removing(&self, id: &LayerId) -> PathBuf {
        self.layers().join(format!("{id}{REMOVING_SUFFIX}"))
    }
    pub fn lock(&self, id: &LayerId) -> PathBuf {
        self.layer(id).join("lock")
    }
    pub fn recipe(&self, id: &LayerId) -> PathBuf {
        self.recipes().join(id.as_str())
    }
    /// The layer's own content directory below a layer directory `dir`.
    pub fn content_in(&self, dir: &Path) -> PathBuf {
        dir.join(match self.driver {
            DriverKind::Overlay => "diff",
            DriverKind::Vfs => "dir",
        })
    }
    pub fn content(&self, id: &LayerId) -> PathBuf {
        self.content_in(&self.layer(id))
    }
    pub fn work(&self, id: &LayerId) -> PathBuf {
        self.layer(id).join("work")
    }
    pub fn merged(&self, id: &LayerId) -> PathBuf {
        self.layer(id).join("merged")
    }
    /// The directories a new layer directory holds, besides its lock file.
    pub fn subdirs(&self) -> &'static [&'static str] {
        match self.driver {
            DriverKind::Overlay => &["diff", "work", "merged"],
            DriverKind::Vfs => &["dir"],
        }
    }
}

/// A read-only view of a stack of overlay layer directories: the directory itself when
/// there is one, a temporary overlay mount in the staging area when there are several.
pub enum View {
    None,
    Dir(PathBuf),
    Mounted { _staging: Staging, path: PathBuf },
}

impl View {
    /// The merged view of `dirs` (topmost first).
    pub fn of(paths: &Paths, dirs: &[PathBuf]) -> Result<View> {
        match dirs {
            [] => Ok(View::None),
            [one] => Ok(View::Dir(one.clone())),
            _ => {
                let staging = Staging::new(&paths.staging())?;
                let path = staging.path().join("view");
                std::fs::create_dir(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                overlay::mount(
                    &OverlaySpec {
                        lowers: dirs,
                        upper: None,
                    },
                    &path,
                )?;
                Ok(View::Mounted {
                    _staging: staging,
                    path,
                })
            }
        }
    }

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
