//! The one thing the two kinds of target differ in: what lies below the directory being
//! written. A plain directory has nothing below it; an overlay upper directory has the
//! lower layers ([`Upper`](super::overlay::Upper)).

use std::ffi::CStr;

use rustix::fs::{FileType, Stat};

use super::tree::Tree;
use crate::root::Dir;
use crate::{Error, LayerPath};

/// What lies below the target directory, asked by the writer at the few points where a
/// layer's meaning depends on it. Each method gets the [`Tree`] to act in.
pub(super) trait Target {
    /// Resolves the directory `dir` when it is not all in the target directory itself
    /// (a component is missing or not a directory there). With `create`, missing
    /// directories are made as implied ones; without it, `None` when it does not exist.
    fn resolve(
        &mut self,
        tree: &mut Tree,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Dir>, Error>;

    /// What is below: the stat of the lower entry that shows through at `path` (not
    /// the root). Copy up first: when `into` (the target's directory holding `path`) is
    /// given and `copy` says so for the entry's type, the entry is first copied into
    /// it, and the flag says it was.
    fn lower_at(
        &mut self,
        tree: &mut Tree,
        path: &LayerPath,
        into: Option<&Dir>,
        copy: fn(FileType) -> bool,
    ) -> Result<Option<(Stat, bool)>, Error>;

    /// Whether `st`, found in the target directory, is this target's mark that something
    /// below was removed (then it is not an entry of the layer).
    fn is_whiteout(&self, st: &Stat) -> bool;

    /// Hide this: `name` in `dir` (at `path`) is gone from the target directory, and what
    /// a lower layer holds there must not show through either.
    fn hide(
        &mut self,
        tree: &mut Tree,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error>;

    /// Hide what is below: the directory `dir` (at `path`, open for reading) shows only
    /// what the target holds in it, nothing of the lower layers.
    fn hide_below(&mut self, tree: &mut Tree, dir: &Dir, path: &LayerPath) -> Result<(), Error>;
}

/// A plain directory: nothing lies below it, so nothing shows through, nothing needs
/// hiding or copying up.
pub(super) struct Plain;

impl Target for Plain {
    fn resolve(
        &mut self,
        tree: &mut Tree,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Dir>, Error> {
        if create {
            tree.create_dirs(dir, entry).map(Some)
        } else {
            Ok(None)
        }
    }

    fn lower_at(
        &mut self,
        _: &mut Tree,
        _: &LayerPath,
        _: Option<&Dir>,
        _: fn(FileType) -> bool,
    ) -> Result<Option<(Stat, bool)>, Error> {
        Ok(None)
    }

    fn is_whiteout(&self, _: &Stat) -> bool {
        false
    }

    fn hide(&mut self, _: &mut Tree, _: &Dir, _: &CStr, _: &LayerPath) -> Result<(), Error> {
        Ok(())
    }

    fn hide_below(&mut self, _: &mut Tree, _: &Dir, _: &LayerPath) -> Result<(), Error> {
        Ok(())
    }
}
