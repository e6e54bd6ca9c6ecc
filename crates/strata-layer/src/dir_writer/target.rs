//! The one thing the two kinds of target differ in: what lies below the directory being
//! written. A plain directory has nothing below it; an overlay upper directory has the
//! lower layers ([`Upper`](super::overlay::Upper)).

use std::ffi::CStr;

use rustix::fs::{FileType, Stat};

use super::overlay::Upper;
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

/// The lower layers of an upper directory, known only later: called (once) the first time
/// the writer needs to see below, it waits until they are complete and returns them,
/// nearest first (at least one). See [`super::DirWriter::open_upper_later`].
pub type LowersLater = Box<dyn FnOnce() -> Result<Vec<std::path::PathBuf>, Error> + Send>;

/// An upper directory whose lower layers may still be being written: entries that do not
/// need to see below (most of them) are written at once; the first question about what
/// lies below waits for the lowers, then every question goes to them. Whether a question
/// is asked depends only on the upper directory, so the result is the same as with the
/// lowers open from the start.
pub(super) enum Later {
    Waiting(Option<LowersLater>),
    Ready(Box<dyn Target>),
}

impl Later {
    fn below(&mut self) -> Result<&mut Box<dyn Target>, Error> {
        if let Later::Waiting(wait) = self {
            let wait = wait
                .take()
                .ok_or_else(|| Error::Misuse("the lower layers failed to open before".into()))?;
            let lowers = wait()?;
            if lowers.is_empty() {
                return Err(Error::Misuse(
                    "an upper directory waited for lower layers and got none".into(),
                ));
            }
            *self = Later::Ready(Box::new(Upper::open(&lowers)?));
        }
        match self {
            Later::Ready(t) => Ok(t),
            Later::Waiting(_) => Err(Error::Misuse("the lower layers are not open".into())),
        }
    }
}

impl Target for Later {
    fn resolve(
        &mut self,
        tree: &mut Tree,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Dir>, Error> {
        self.below()?.resolve(tree, dir, create, entry)
    }

    fn lower_at(
        &mut self,
        tree: &mut Tree,
        path: &LayerPath,
        into: Option<&Dir>,
        copy: fn(FileType) -> bool,
    ) -> Result<Option<(Stat, bool)>, Error> {
        self.below()?.lower_at(tree, path, into, copy)
    }

    /// Answered without the lowers, as an upper directory answers it.
    fn is_whiteout(&self, st: &Stat) -> bool {
        crate::upper::is_whiteout(st)
    }

    fn hide(
        &mut self,
        tree: &mut Tree,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error> {
        self.below()?.hide(tree, dir, name, path)
    }

    fn hide_below(&mut self, tree: &mut Tree, dir: &Dir, path: &LayerPath) -> Result<(), Error> {
        self.below()?.hide_below(tree, dir, path)
    }
}
