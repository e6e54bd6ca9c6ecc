//! The overlay driver: each layer directory holds the layer's own entries in `diff/` (an
//! overlayfs upper directory), a `work/` directory, and `merged/`, where a mount shows
//! the stacked view. Applying on a parent writes straight into `diff/`, copying up,
//! whiting out and marking opaque as overlayfs would, without a mount
//! ([`strata_layer::upper`]).

use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use strata_layer::unpack::Input;

use strata_layer::digest::Digest;
use strata_layer::dir_reader::DirReader;
use strata_layer::LayerReader;

use super::overlayfs::{self, OverlaySpec, MAX_LOWERS};
use super::{
    rebuild_tar, remake, unpack_into, Chain, Driver, Fill, Lowers, Original, ParentsLater, View,
};
use crate::changes::{overlay_changes, Change};
use crate::error::{Error, Result};
use crate::layout::mkdir;
use crate::lock::Staging;
use crate::mounts;
use crate::store::ApplyOptions;

const DIFF: &str = "diff";
const WORK: &str = "work";
const MERGED: &str = "merged";

/// Kernel overlayfs: layers stacked by mounts, each holding only its own entries.
#[derive(Clone, Debug)]
pub struct Overlay {
    /// Where temporary views are mounted (`ROOT/staging`).
    staging: PathBuf,
    /// An empty directory: the bottom lower of mounts that would have one layer.
    empty: PathBuf,
}

impl Overlay {
    /// The overlay driver of the store at `root` (its `staging/` and `empty/`
    /// directories, which the store makes).
    pub fn new(root: &Path) -> Overlay {
        Overlay {
            staging: root.join("staging"),
            empty: root.join("empty"),
        }
    }

    fn contents(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        dirs.iter().map(|d| self.content(d)).collect()
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn subdirs(&self) -> &'static [&'static str] {
        &[DIFF, WORK, MERGED]
    }

    fn content(&self, dir: &Path) -> PathBuf {
        dir.join(DIFF)
    }

    fn work(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(WORK))
    }

    fn check_depth(&self, depth: usize) -> std::result::Result<(), String> {
        if depth > MAX_LOWERS {
            return Err(format!(
                "a chain of {depth} layers is more than overlayfs stacks ({MAX_LOWERS})"
            ));
        }
        Ok(())
    }

    fn prepare(&self, chain: &Chain) -> Result<()> {
        let dir = chain.dir();
        mkdir(&dir.join(DIFF), 0o755)?;
        mkdir(&dir.join(WORK), 0o700)?;
        mkdir(&dir.join(MERGED), 0o755)
    }

    fn apply(
        &self,
        chain: &Chain,
        input: Input<'_, &mut (dyn Read + Send)>,
        options: &ApplyOptions,
        recipe: &Path,
    ) -> Result<Fill> {
        // Written straight into the upper directory, as if through a mount of the
        // parents: the writer copies lower directories up, leaves whiteouts and opaque
        // directories as overlayfs would, without its cost per call.
        let lowers = self.contents(chain.parents());
        unpack_into(
            &self.content(chain.dir()),
            Lowers::Now(lowers),
            input,
            options,
            recipe,
        )
    }

    /// The layer's own entries are written at once; the writer waits for the parents
    /// only at its first question about what lies below (a directory missing from this
    /// layer, a whiteout, a hard link to a lower file, an opaque directory). Whether it
    /// asks depends only on this layer's entries, so the upper directory ends as
    /// [`apply`](Driver::apply) over the same parents leaves it.
    fn apply_before_parents(
        &self,
        chain: &Chain,
        parents: ParentsLater,
        input: Input<'_, &mut (dyn Read + Send)>,
        options: &ApplyOptions,
        recipe: &Path,
    ) -> Result<Fill> {
        let driver = self.clone();
        let lowers = Box::new(move || {
            let dirs = parents().map_err(|e| {
                strata_layer::Error::io(
                    "waiting for the parent layers",
                    std::io::Error::other(e.to_string()),
                )
            })?;
            Ok(driver.contents(&dirs))
        });
        unpack_into(
            &self.content(chain.dir()),
            Lowers::Later(lowers),
            input,
            options,
            recipe,
        )
    }

    fn reset(&self, dir: &Path) -> Result<()> {
        mounts::unmount_path(&dir.join(MERGED), true)?;
        remake(&[(dir.join(DIFF), 0o755), (dir.join(WORK), 0o700)])
    }

    fn view_path(&self, dir: &Path) -> PathBuf {
        dir.join(MERGED)
    }

    fn mount_point(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(MERGED))
    }

    fn mount(&self, chain: &Chain) -> Result<()> {
        let target = self.view_path(chain.dir());
        if mounts::is_mounted(&target)? {
            return Ok(());
        }
        if chain.writable {
            let mut lowers = self.contents(chain.parents());
            if lowers.is_empty() {
                lowers.push(self.empty.clone());
            }
            let dir = chain.dir();
            overlayfs::mount(
                &OverlaySpec {
                    lowers: &lowers,
                    upper: Some((&dir.join(DIFF), &dir.join(WORK))),
                },
                &target,
            )
        } else {
            let mut lowers = self.contents(&chain.dirs);
            if lowers.len() == 1 {
                lowers.push(self.empty.clone());
            }
            overlayfs::mount(
                &OverlaySpec {
                    lowers: &lowers,
                    upper: None,
                },
                &target,
            )
        }
    }

    fn unmount(&self, dir: &Path) -> Result<()> {
        mounts::unmount_path(&dir.join(MERGED), false)
    }

    fn view(&self, dirs: &[PathBuf]) -> Result<View> {
        match dirs {
            [] => Ok(View::None),
            [one] => Ok(View::Dir(self.content(one))),
            _ => {
                let staging = Staging::new(&self.staging)?;
                let path = staging.path().join("view");
                std::fs::create_dir(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                overlayfs::mount(
                    &OverlaySpec {
                        lowers: &self.contents(dirs),
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

    /// Reads only the layer's own directory, and the parents' view where a directory's
    /// opaque mark needs it.
    fn changes(&self, chain: &Chain) -> Result<Vec<Change>> {
        let parents = self.view(chain.parents())?;
        overlay_changes(&self.content(chain.dir()), parents.path())
    }

    /// The upper directory as it is: 0/0 character devices become `.wh.NAME`, opaque
    /// directories `.wh..wh..opq`.
    fn diff_entries(&self, chain: &Chain) -> Result<Box<dyn LayerReader + Send>> {
        Ok(Box::new(DirReader::open_overlay_upper(
            &self.content(chain.dir()),
        )?))
    }

    fn original_tar(
        &self,
        chain: &Chain,
        original: &Original<'_>,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64)> {
        rebuild_tar(self, chain, original, out)
    }
}

/// Unmounts a path when dropped (after an error), or when told to.
struct Unmount(PathBuf);

impl Unmount {
    fn now(self) -> Result<()> {
        let path = self.0.clone();
        std::mem::forget(self);
        mounts::unmount_path(&path, false)
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = mounts::unmount_path(&self.0, true);
    }
}

/// Checks that overlayfs works under store root `root`: a writable mount of an empty
/// lower, a file deleted through it (a whiteout in the upper directory), unmounted again.
/// A new store without a chosen driver is made with overlay when this passes.
pub fn probe_overlay(root: &Path) -> Result<()> {
    let staging_root = root.join("staging");
    mkdir(&staging_root, 0o700)?;
    let staging = Staging::new(&staging_root)?;
    let base = staging.path();
    for d in ["lower", "upper", "work", "merged"] {
        mkdir(&base.join(d), 0o755)?;
    }
    std::fs::write(base.join("lower/file"), b"")
        .map_err(|e| Error::io("writing the overlay probe", e))?;
    let merged = base.join("merged");
    overlayfs::mount(
        &OverlaySpec {
            lowers: &[base.join("lower")],
            upper: Some((&base.join("upper"), &base.join("work"))),
        },
        &merged,
    )?;
    let guard = Unmount(merged.clone());
    let removed = std::fs::remove_file(merged.join("file"));
    guard.now()?;
    removed.map_err(|e| Error::Driver {
        driver: "overlay",
        reason: "deleting a lower file through a probe mount failed".into(),
        source: Some(e),
    })?;
    staging.done()
}
