//! [`Tree`]: the directory a layer is written into, and what this layer did to it so far
//! (the paths it wrote, the directory times to set at the end, the warnings). Removal
//! lives here too, since what may be removed depends on what this layer wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::fs::File;
use std::ops::Bound;
use std::sync::Arc;

use rustix::fs::{self as rfs, FileType, Gid, Stat, Uid};
use rustix::io::Errno;

use super::background::Background;
use super::meta::{MetaPolicy, MetaWriter, Warnings};
use super::{file_type, io_err, DirWriterOptions, ReplaceHook};
use crate::root::{shown, Dir, Root, Sweep, SweepPolicy};
use crate::{Error, LayerPath, Timestamp};

/// Open parent directories kept for the next entries.
const CACHE_SIZE: usize = 16;

/// The target directory and the writer's record of this layer.
pub(super) struct Tree {
    pub(super) root: Root,
    /// The options, who the writer runs as, and the warnings.
    pub(super) meta: MetaWriter,
    pub(super) cache: DirCache,
    /// Every path this layer created or merged (not implied parents), as bytes.
    written: BTreeSet<Box<[u8]>>,
    /// Directory entries whose times (and maybe mode) are set in `finish`; last wins.
    pub(super) dir_meta: BTreeMap<Box<[u8]>, DirMeta>,
    pub(super) hook: Option<ReplaceHook>,
    /// Regular files whose data, metadata and closing are left to a second thread.
    pub(super) background: Background,
    /// This thread's umask is 0, so files are created with their final permission bits
    /// and need no `fchmod` unless they carry setuid, setgid or sticky bits.
    pub(super) exact_create_mode: bool,
    /// Whether what is created in the root may get a group other than the creator's.
    root_foreign: bool,
    /// The same for the directory [`DirWriter::dir_fd`](super::DirWriter) returned last.
    pub(super) parent_foreign: bool,
}

/// Who owns a node when its metadata is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Not known (an existing entry, a hard link, a copy-up): always chown.
    Unknown,
    /// Just created by this writer in a directory of the creator's group: owned by the
    /// creator's uid and gid, so a chown to them would change nothing and is skipped.
    Creator,
}

/// Times (and maybe a mode) of a directory, set in `finish`.
pub(super) struct DirMeta {
    pub(super) path: LayerPath,
    /// The entry's mode when it was too restrictive to set before the children existed.
    pub(super) mode: Option<u32>,
    pub(super) mtime: Timestamp,
    pub(super) atime: Timestamp,
}

/// A few open parent directories, most recently used last, each with whether what is
/// created in it may get a group other than the creator's (see [`Tree::foreign_group`]).
#[derive(Default)]
pub(super) struct DirCache {
    entries: Vec<(Box<[u8]>, Arc<Dir>, bool)>,
}

impl DirCache {
    pub(super) fn get(&mut self, key: &[u8]) -> Option<(Arc<Dir>, bool)> {
        let pos = self.entries.iter().rposition(|(k, _, _)| &**k == key)?;
        let last = self.entries.len() - 1;
        if pos != last {
            let e = self.entries.remove(pos);
            self.entries.push(e);
        }
        self.entries
            .last()
            .map(|(_, fd, foreign)| (fd.clone(), *foreign))
    }

    pub(super) fn put(&mut self, key: &[u8], fd: Arc<Dir>, foreign: bool) {
        if let Some(pos) = self.entries.iter().position(|(k, _, _)| &**k == key) {
            self.entries.remove(pos);
        } else if self.entries.len() >= CACHE_SIZE {
            self.entries.remove(0);
        }
        self.entries.push((key.into(), fd, foreign));
    }

    /// Called whenever a directory or a symlink disappears: any cached descriptor might
    /// have been reached through it.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The calling thread's umask, from `/proc/thread-self/status` (reading it with
/// `umask(2)` would change it for a moment, for every thread sharing it).
fn thread_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// The bounds of the keys strictly below `path` (`path/...`) in a sorted map.
fn below(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = path.to_vec();
    lo.push(b'/');
    let mut hi = path.to_vec();
    hi.push(b'/' + 1);
    (lo, hi)
}

impl Tree {
    pub(super) fn new(root: Root, opts: DirWriterOptions) -> Tree {
        let creator: (u64, u64) = (
            rustix::process::geteuid().as_raw().into(),
            rustix::process::getegid().as_raw().into(),
        );
        let root_foreign =
            rfs::fstat(root.top()).map_or(true, |st| u64::from(st.st_gid) != creator.1);
        Tree {
            root,
            meta: MetaWriter {
                policy: MetaPolicy {
                    opts,
                    creator,
                    unprivileged: !rustix::process::geteuid().is_root(),
                },
                warnings: Warnings::default(),
            },
            cache: DirCache::default(),
            written: BTreeSet::new(),
            dir_meta: BTreeMap::new(),
            hook: None,
            background: Background::default(),
            exact_create_mode: thread_umask() == Some(0),
            root_foreign,
            parent_foreign: true,
        }
    }

    /// Whether the root passes a group other than the creator's to what is made in it.
    pub(super) fn root_foreign(&self) -> bool {
        self.root_foreign
    }

    /// Whether a directory (of this stat, if known) may give what is created in it a
    /// group other than the creator's: a new node takes the creator's group or, when the
    /// directory is setgid (or the file system is mounted `grpid`), the directory's.
    pub(super) fn foreign_group(&self, st: Option<&Stat>) -> bool {
        st.is_none_or(|st| u64::from(st.st_gid) != self.meta.policy.creator.1)
    }

    /// The same for a directory this writer just gave the entry metadata `meta`.
    pub(super) fn foreign_group_of(&self, meta: &crate::Metadata) -> bool {
        !self.meta.policy.opts.chown || meta.gid != self.meta.policy.creator.1
    }

    pub(super) fn warn(&mut self, msg: String) {
        self.meta.warnings.warn(msg);
    }

    /// The options the writer was opened with.
    pub(super) fn opts(&self) -> &DirWriterOptions {
        &self.meta.policy.opts
    }

    pub(super) fn mark_written(&mut self, path: &LayerPath) {
        if !self.written.contains(path.as_bytes()) {
            self.written.insert(path.as_bytes().into());
        }
    }

    pub(super) fn is_written(&self, path: &[u8]) -> bool {
        self.written.contains(path)
    }

    /// True if this layer wrote something strictly below `path`.
    pub(super) fn has_written_under(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return !self.written.is_empty();
        }
        let (lo, hi) = below(path);
        self.written
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
            .next()
            .is_some()
    }

    /// Forgets deferred directory metadata for `path` and everything below it.
    pub(super) fn forget_dirs_under(&mut self, path: &[u8]) {
        self.dir_meta.remove(path);
        let (lo, hi) = below(path);
        let doomed: Vec<Box<[u8]>> = self
            .dir_meta
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.dir_meta.remove(&k);
        }
    }

    /// A directory this layer changes but does not list keeps its times (as umoci and
    /// containers/storage leave them): they are read the first time it is resolved,
    /// before anything in it changes, and set again in `finish`. A later entry for the
    /// directory replaces them with its own.
    pub(super) fn keep_times(&mut self, dir: &[u8], st: Option<&Stat>) {
        if self.dir_meta.contains_key(dir) {
            return;
        }
        let (Some(st), Ok(path)) = (st, LayerPath::from_tar_name(dir)) else {
            return;
        };
        let time = |secs: i64, nanos: i64| Timestamp::new(secs, nanos.clamp(0, 999_999_999) as u32);
        self.dir_meta.insert(
            dir.into(),
            DirMeta {
                path,
                mode: None,
                mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
                atime: time(st.st_atime, st.st_atime_nsec as i64),
            },
        );
    }

    /// Creates the missing directories of `dir` as implied ones (see [`Root::create_dirs`]).
    pub(super) fn create_dirs(&self, dir: &[u8], entry: &LayerPath) -> Result<Dir, Error> {
        self.root.create_dirs(dir, entry, |base, name, prefix| {
            self.make_implied_dir(base, name, prefix, entry)
        })
    }

    /// mkdir of an implied parent: 0755 whatever the umask, owned by root when chowning.
    pub(super) fn make_implied_dir(
        &self,
        base: &Dir,
        name: &CStr,
        prefix: &[u8],
        entry: &LayerPath,
    ) -> Result<Dir, Error> {
        let fail = |what: &str, e: Errno| {
            Error::apply_io(
                entry,
                format!("cannot {what} implied directory `{}`", shown(prefix)),
                io_err(e),
            )
        };
        match base.mkdir(name, 0o755) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail("create", e)),
        }
        let fd = base.open_dir(name).map_err(|e| fail("open", e))?;
        if self.meta.policy.opts.chown {
            rfs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT)).map_err(|e| fail("chown", e))?;
        }
        rfs::fchmod(&fd, rfs::Mode::from_raw_mode(0o755)).map_err(|e| fail("chmod", e))?;
        Ok(fd)
    }

    // ---- removal ----------------------------------------------------------------------

    /// Calls the replace hook if `name` (at `path`) is a non-empty regular file this layer wrote.
    pub(super) fn run_hook(
        &mut self,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
        st: &Stat,
    ) -> Result<(), Error> {
        if self.hook.is_none()
            || file_type(st) != FileType::RegularFile
            || st.st_size <= 0
            || !self.is_written(path.as_bytes())
        {
            return Ok(());
        }
        let file: File = dir
            .open_file(name)
            .map_err(|e| Error::apply_io(path, "cannot open the file being replaced", io_err(e)))?;
        match self.hook.as_mut() {
            Some(hook) => hook(path, &file),
            None => Ok(()),
        }
    }

    /// Removes whatever is at `name` in `dir` (nothing if absent), whole trees included.
    pub(super) fn remove_existing(
        &mut self,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error> {
        // What is removed may be a file still being finished in the background (and the
        // replace hook reads it): let the background catch up first.
        self.background.sync()?;
        let st = match dir.stat(name) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    "cannot inspect the existing entry",
                    io_err(e),
                ))
            }
        };
        let fail = |e: Errno| Error::apply_io(path, "cannot remove the existing entry", io_err(e));
        match file_type(&st) {
            FileType::Directory => {
                self.cache.clear();
                let fd = dir.open_dir(name).map_err(fail)?;
                fd.sweep(path, Sweep::All, self)?;
                dir.rmdir(name).map_err(fail)?;
                self.forget_dirs_under(path.as_bytes());
            }
            FileType::Symlink => {
                self.cache.clear();
                dir.unlink(name).map_err(fail)?;
            }
            _ => {
                self.run_hook(dir, name, path, &st)?;
                dir.unlink(name).map_err(fail)?;
            }
        }
        Ok(())
    }
}

/// A sweep keeps what this layer wrote, and shows the replace hook what it removes.
impl SweepPolicy for Tree {
    fn wants_paths(&mut self, dir: &LayerPath, sweep: Sweep) -> bool {
        sweep == Sweep::Unkept || (self.hook.is_some() && self.has_written_under(dir.as_bytes()))
    }

    fn kept(&mut self, path: &LayerPath) -> bool {
        self.is_written(path.as_bytes()) || self.has_written_under(path.as_bytes())
    }

    fn removing(
        &mut self,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
        ftype: FileType,
    ) -> Result<(), Error> {
        if self.hook.is_some() && ftype == FileType::RegularFile && self.is_written(path.as_bytes())
        {
            let st = dir.stat(name).map_err(|e| {
                Error::apply_io(path, "cannot inspect an entry while removing", io_err(e))
            })?;
            self.run_hook(dir, name, path, &st)?;
        }
        Ok(())
    }
}
