//! [`Root`] and [`Dir`]: a directory tree that is changed only from inside.
//!
//! A layer's content is hostile: any directory in it may hold a symlink planted by this
//! layer or a lower one (`var/run -> /run`, `up -> ../../..`). So nothing that touches a
//! layer joins a path string onto its root and hands it to `std::fs`. Instead:
//!
//! - a [`Root`] is the tree, opened once (`O_PATH|O_DIRECTORY`); every lookup of a
//!   directory in it goes through [`inroot`](crate::inroot) (`openat2` with
//!   `RESOLVE_IN_ROOT`), so symlinks resolve as if the process were chrooted there;
//! - a [`Dir`] is one directory of the tree, open; every change is an `*at` call on one
//!   *name* in it that never follows that name: create (files, directories, symlinks,
//!   hard links, nodes), unlink, [`sweep`](Dir::sweep) a subtree, set metadata.
//!
//! Life of a change: [`Root::open`] the tree, find the directory that holds the entry with
//! [`Root::parent`] (or [`Root::dir`], or [`Root::create_dirs`] to make missing ones), then
//! call the [`Dir`] method for the change, naming the entry by its last component only.
//! A `Dir` never reaches above the root: it is resolved in the root, and every further
//! directory is opened from it with `O_NOFOLLOW`.
//!
//! ```
//! use strata_layer::root::{Root, Sweep};
//! use strata_layer::LayerPath;
//!
//! let tree = tempfile::tempdir().unwrap();
//! std::os::unix::fs::symlink("/etc", tree.path().join("conf")).unwrap();
//! let root = Root::open(tree.path()).unwrap();
//!
//! // `conf/motd` resolves through the absolute symlink *inside* the tree: the directory
//! // `etc` must exist in the tree, and the host's /etc is never reached.
//! let motd = LayerPath::from_tar_name(b"conf/motd").unwrap();
//! assert!(root.parent(&motd).is_err());
//! let etc = root.top().mkdir(c"etc", 0o755).and_then(|()| root.top().open_dir(c"etc")).unwrap();
//! let (dir, name) = root.parent(&motd).unwrap();
//! let mut f = dir.create_file(&name, 0o644).unwrap();
//! std::io::Write::write_all(&mut f, b"hi\n").unwrap();
//! assert_eq!(std::fs::read(tree.path().join("etc/motd")).unwrap(), b"hi\n");
//! assert_eq!(root.open_file(&motd).unwrap().metadata().unwrap().len(), 3);
//!
//! // Empty `etc` again, then remove it: a sweep never follows a symlink or leaves the mount.
//! etc.sweep(&LayerPath::from_tar_name(b"etc").unwrap(), Sweep::All, &mut ()).unwrap();
//! root.top().rmdir(c"etc").unwrap();
//! assert!(!tree.path().join("etc").exists());
//! ```

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, RawDir, Stat, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::inroot;
use crate::{Error, LayerPath};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A directory tree changed only through descriptors; see the [module docs](self).
#[derive(Clone)]
pub struct Root {
    top: Arc<Dir>,
}

/// One open directory of a [`Root`]. Every method acts on one name in it and never
/// follows that name when it is a symlink.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Dir> for OwnedFd {
    fn from(dir: Dir) -> OwnedFd {
        dir.fd
    }
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").field("fd", &self.top.fd).finish()
    }
}

/// The last component of `path` as a C string for the `*at` calls.
pub(crate) fn c_name(path: &LayerPath) -> Result<CString, Error> {
    CString::new(path.file_name().unwrap_or_default())
        .map_err(|_| Error::apply(path, "name holds a NUL byte"))
}

/// The parent of `path` as bytes (empty for a top-level name).
pub(crate) fn parent_bytes(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

/// A path inside the root as people read it (`.` for the root itself).
pub(crate) fn shown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        ".".to_string()
    } else {
        bytes.escape_ascii().to_string()
    }
}

/// Why resolving `dir` for `entry` failed, in words.
pub(crate) fn resolve_error(entry: &LayerPath, dir: &[u8], e: Errno) -> Error {
    let d = shown(dir);
    let reason = match e {
        Errno::LOOP => format!("refusing to resolve `{d}`: too many symlink levels (a symlink loop?)"),
        Errno::XDEV => format!(
            "refusing to resolve `{d}`: beyond {} bytes a symlink may not lead above the piece of the path it is in",
            inroot::CHUNK
        ),
        Errno::NAMETOOLONG => format!("cannot resolve `{d}`: a name in it is too long"),
        Errno::NOTDIR => format!("cannot resolve `{d}`: a component is not a directory"),
        Errno::NOENT => format!("`{d}` does not exist"),
        Errno::NOSYS => format!(
            "cannot resolve `{d}`: openat2 is unavailable (Linux < 5.6, or blocked by seccomp), and writing without in-root resolution is refused"
        ),
        _ => format!("cannot resolve `{d}` inside the root"),
    };
    Error::apply_io(entry, reason, e.into())
}

impl Root {
    /// Opens the existing directory `path` as a root (`O_PATH`): every later call is
    /// relative to this descriptor, whatever happens to `path` afterwards.
    pub fn open(path: &Path) -> Result<Root, Error> {
        Ok(Root::from_fd(inroot::open_root(path)?))
    }

    /// A root over a directory descriptor already open.
    pub fn from_fd(fd: OwnedFd) -> Root {
        Root {
            top: Arc::new(Dir { fd }),
        }
    }

    /// The root directory itself. It may be an `O_PATH` descriptor: good for every
    /// `*at` method, not for reading or setting the root's own metadata.
    pub fn top(&self) -> &Arc<Dir> {
        &self.top
    }

    /// The directory `dir` (relative, normalized bytes; empty for the root), resolved
    /// inside the root: symlinks are followed, absolute ones and `..` stay inside.
    pub fn dir(&self, dir: &[u8]) -> Result<Dir, Errno> {
        inroot::resolve_dir(self.top.as_fd(), dir).map(|fd| Dir { fd })
    }

    /// The directory holding `path` and the last component of `path`, for the [`Dir`]
    /// method that changes it. The root itself has no parent (an error).
    pub fn parent(&self, path: &LayerPath) -> Result<(Dir, CString), Error> {
        if path.is_root() {
            return Err(Error::apply(path, "the root has no parent directory"));
        }
        let parent = parent_bytes(path.as_bytes());
        let dir = self
            .dir(parent)
            .map_err(|e| resolve_error(path, parent, e))?;
        Ok((dir, c_name(path)?))
    }

    /// Opens the regular file (or whatever is) at `path` for reading, resolved inside the
    /// root, without following a final symlink and without blocking on a fifo.
    pub fn open_file(&self, path: &LayerPath) -> io::Result<File> {
        if path.is_root() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        let dir = self.dir(parent_bytes(path.as_bytes()))?;
        let name = c_name(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(dir.open_file(&name)?)
    }

    /// Makes the missing directories of `dir` (relative bytes, not empty), one component
    /// at a time from the root, and returns the last. An existing component is opened with
    /// `O_NOFOLLOW`; a symlink component is resolved again inside the root (its whole
    /// prefix), and must lead to an existing directory. `mkdir` creates one missing
    /// component (`name` in `parent`, `prefix` the path so far) and returns it open:
    /// the caller decides the mode and owner of implied directories. Errors name `entry`.
    pub fn create_dirs(
        &self,
        dir: &[u8],
        entry: &LayerPath,
        mut mkdir: impl FnMut(&Dir, &CStr, &[u8]) -> Result<Dir, Error>,
    ) -> Result<Dir, Error> {
        let mut cur: Option<Dir> = None;
        let mut end = 0;
        for comp in dir.split(|&b| b == b'/') {
            end += comp.len();
            let prefix = &dir[..end];
            end += 1;
            if comp.is_empty() {
                continue;
            }
            let name =
                CString::new(comp).map_err(|_| Error::apply(entry, "name holds a NUL byte"))?;
            let base: &Dir = cur.as_ref().unwrap_or(&self.top);
            let opened = rfs::openat(
                base,
                &name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let next = match opened {
                Ok(fd) => Dir { fd },
                Err(Errno::NOENT) => mkdir(base, &name, prefix)?,
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let st = base.stat(&name).map_err(|e| {
                        Error::apply_io(
                            entry,
                            format!("cannot inspect `{}`", shown(prefix)),
                            e.into(),
                        )
                    })?;
                    let not_dir = |what: &str| {
                        Error::apply(
                            entry,
                            format!(
                                "cannot create parent directories: `{}` {what}",
                                shown(prefix)
                            ),
                        )
                    };
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        return Err(not_dir("is not a directory"));
                    }
                    match self.dir(prefix) {
                        Ok(d) => d,
                        Err(Errno::NOENT) => {
                            return Err(not_dir(
                                "is a symlink whose target does not exist inside the root",
                            ))
                        }
                        Err(Errno::NOTDIR) => {
                            return Err(not_dir(
                                "is a symlink to something that is not a directory",
                            ))
                        }
                        Err(e) => return Err(resolve_error(entry, prefix, e)),
                    }
                }
                Err(e) => {
                    return Err(Error::apply_io(
                        entry,
                        format!("cannot open parent directory `{}`", shown(prefix)),
                        e.into(),
                    ))
                }
            };
            cur = Some(next);
        }
        cur.ok_or_else(|| Error::apply(entry, "empty parent path"))
    }
}

/// How a [`Dir::sweep`] treats what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Remove everything below (the swept directory itself stays: its parent removes it).
    All,
    /// Remove what the [`SweepPolicy`] does not keep; kept directories are descended
    /// into and swept the same way, directories not kept are removed whole.
    Unkept,
}

/// What a [`Dir::sweep`] keeps and whom it tells before removing a file. `()` keeps
/// nothing and tells no one.
pub trait SweepPolicy {
    /// Whether the entries of the directory `dir` need their paths (an allocation per
    /// name, so a plain `rm -rf` goes without): for [`kept`](SweepPolicy::kept) in an
    /// [`Sweep::Unkept`] sweep, for [`removing`](SweepPolicy::removing) otherwise.
    fn wants_paths(&mut self, dir: &LayerPath, sweep: Sweep) -> bool {
        let _ = dir;
        sweep == Sweep::Unkept
    }

    /// Whether `path`, or something below it, stays (asked in a [`Sweep::Unkept`] sweep).
    fn kept(&mut self, path: &LayerPath) -> bool {
        let _ = path;
        false
    }

    /// Called before the non-directory `name` of `dir` (at `path`, of type `ftype`) is
    /// unlinked, when [`wants_paths`](SweepPolicy::wants_paths) said so for `dir`. An error
    /// stops the sweep.
    fn removing(
        &mut self,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
        ftype: FileType,
    ) -> Result<(), Error> {
        let _ = (dir, name, path, ftype);
        Ok(())
    }
}

impl SweepPolicy for () {}

/// One directory of a sweep. Only the current directory is open: going up uses `..`,
/// checked against the recorded device and inode, so depth costs no descriptors.
struct Frame {
    name: CString,
    path: LayerPath,
    dev: u64,
    ino: u64,
    sweep: Sweep,
    pending: Vec<(CString, Sweep)>,
}

impl Dir {
    /// A directory opened some other way (a lower layer's root, say). Whatever `fd` is
    /// inside of bounds what the `Dir` can reach.
    pub fn from_fd(fd: OwnedFd) -> Dir {
        Dir { fd }
    }

    /// The `lstat` of `name`.
    pub fn stat(&self, name: &CStr) -> Result<Stat, Errno> {
        rfs::statat(self, name, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// The directory `name`, opened for reading (fails with `ENOTDIR` or `ELOOP` on
    /// anything else, a symlink included).
    pub fn open_dir(&self, name: &CStr) -> Result<Dir, Errno> {
        rfs::openat(self, name, DIR_FLAGS, Mode::empty()).map(|fd| Dir { fd })
    }

    /// This directory again, opened for reading (turns an `O_PATH` descriptor into one
    /// that can be listed and have its metadata set).
    pub fn reopen(&self) -> Result<Dir, Errno> {
        self.open_dir(c".")
    }

    /// The regular file `name`, opened read-only without following a symlink and without
    /// blocking on a fifo.
    pub fn open_file(&self, name: &CStr) -> Result<File, Errno> {
        rfs::openat(
            self,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
    }

    /// Creates the regular file `name` (`O_EXCL`: fails with `EEXIST` if anything is
    /// there, a symlink included) with permission bits `mode` (less the umask), for writing.
    pub fn create_file(&self, name: &CStr, mode: u32) -> Result<File, Errno> {
        rfs::openat(
            self,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map(File::from)
    }

    /// Creates the directory `name`.
    pub fn mkdir(&self, name: &CStr, mode: u32) -> Result<(), Errno> {
        rfs::mkdirat(self, name, Mode::from_raw_mode(mode))
    }

    /// Creates the symlink `name` pointing at `target` (stored verbatim, never followed here).
    pub fn symlink(&self, name: &CStr, target: &[u8]) -> Result<(), Errno> {
        rfs::symlinkat(target, self, name)
    }

    /// Creates `name` as a hard link to `from_name` in `from` (not following it).
    pub fn hard_link(&self, name: &CStr, from: &Dir, from_name: &CStr) -> Result<(), Errno> {
        rfs::linkat(from, from_name, self, name, AtFlags::empty())
    }

    /// Creates the node `name` (device, fifo; a 0/0 character device is an overlay whiteout).
    pub fn mknod(&self, name: &CStr, ftype: FileType, mode: u32, dev: u64) -> Result<(), Errno> {
        rfs::mknodat(self, name, ftype, Mode::from_raw_mode(mode), dev)
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &CStr) -> Result<Vec<u8>, Errno> {
        rfs::readlinkat(self, name, Vec::new()).map(CString::into_bytes)
    }

    /// Renames `name` to `to_name` in `to` (replacing a non-directory there), never
    /// following either name.
    pub fn rename(&self, name: &CStr, to: &Dir, to_name: &CStr) -> Result<(), Errno> {
        rfs::renameat(self, name, to, to_name)
    }

    /// The names in this directory (it must be open for reading, not `O_PATH`) with
    /// their types, `.` and `..` left out, in the order the file system gives them.
    pub fn list(&self) -> Result<Vec<(CString, FileType)>, Errno> {
        // From the start, whatever an earlier listing of this descriptor left.
        rfs::seek(self, rfs::SeekFrom::Start(0))?;
        let mut children: Vec<(CString, FileType)> = Vec::new();
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut rd = RawDir::new(self, &mut buf);
        while let Some(ent) = rd.next() {
            let ent = ent?;
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            children.push((name.to_owned(), ent.file_type()));
        }
        for (name, ftype) in &mut children {
            if *ftype == FileType::Unknown {
                *ftype = FileType::from_raw_mode(self.stat(name)?.st_mode);
            }
        }
        Ok(children)
    }

    /// Removes the non-directory `name`. A read-only directory is given its owner's write
    /// access first (it matters only when not running as root).
    pub fn unlink(&self, name: &CStr) -> Result<(), Errno> {
        unlink_in(self.as_fd(), name, AtFlags::empty())
    }

    /// Removes the empty directory `name` (as [`unlink`](Dir::unlink) for a read-only parent).
    pub fn rmdir(&self, name: &CStr) -> Result<(), Errno> {
        unlink_in(self.as_fd(), name, AtFlags::REMOVEDIR)
    }

    /// Sets the owner of `name`, never following it.
    pub fn chown_at(&self, name: &CStr, uid: Uid, gid: Gid) -> Result<(), Errno> {
        rfs::chownat(self, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
    }

    /// Sets the mode of `name`, which must not be a symlink: `fchmodat` follows one (no
    /// working `AT_SYMLINK_NOFOLLOW` before `fchmodat2`), so call this only on a node just
    /// created in a directory nothing else changes. For devices and fifos, which must not
    /// be opened to `fchmod` them.
    pub fn chmod_node(&self, name: &CStr, mode: u32) -> Result<(), Errno> {
        rfs::chmodat(
            self,
            name,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
    }

    /// Sets the times of `name`, never following it.
    pub fn set_times_at(&self, name: &CStr, times: &Timestamps) -> Result<(), Errno> {
        rfs::utimensat(self, name, times, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// Sets the extended attribute `xname` of `name`, never following it: through this
    /// directory's descriptor in `/proc/self/fd`, since there is no `*at` call for it.
    pub fn set_xattr_at(&self, name: &CStr, xname: &[u8], value: &[u8]) -> Result<(), Errno> {
        let mut path = Vec::with_capacity(64);
        crate::xattr::proc_path(&mut path, self.as_fd(), name.to_bytes());
        rfs::lsetxattr(
            Path::new(OsStr::from_bytes(&path)),
            xname,
            value,
            XattrFlags::empty(),
        )
    }

    /// Sets the times of this directory itself (it must not be an `O_PATH` descriptor).
    pub fn set_times(&self, times: &Timestamps) -> Result<(), Errno> {
        rfs::futimens(self, times)
    }

    /// Empties this directory (at `path`) according to `sweep` and `policy`, iteratively:
    /// deep trees cost neither stack nor descriptors. Never crosses into another file
    /// system, never follows a symlink; a directory moved away during the sweep stops it
    /// with an error. The directory itself stays.
    pub fn sweep(
        &self,
        path: &LayerPath,
        sweep: Sweep,
        policy: &mut impl SweepPolicy,
    ) -> Result<(), Error> {
        let st = rfs::fstat(self)
            .map_err(|e| Error::apply_io(path, "cannot inspect directory", e.into()))?;
        let top_dev = st.st_dev;
        let pending = self.sweep_dir(path, sweep, policy)?;
        let mut stack = vec![Frame {
            name: CString::default(),
            path: path.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
            sweep,
            pending,
        }];
        // `None`: at the top, which is `self`.
        let mut cur: Option<Dir> = None;
        while let Some(frame) = stack.last_mut() {
            let here: &Dir = cur.as_ref().unwrap_or(self);
            if let Some((name, sub)) = frame.pending.pop() {
                let path = frame
                    .path
                    .join(name.to_bytes())
                    .map_err(|_| Error::apply(&frame.path, "unexpected name in a directory"))?;
                let dir = match here.open_dir(&name) {
                    Ok(d) => d,
                    Err(Errno::NOENT) => continue,
                    Err(e) => {
                        return Err(Error::apply_io(
                            &path,
                            "cannot open directory to remove it",
                            e.into(),
                        ))
                    }
                };
                let st = rfs::fstat(&dir)
                    .map_err(|e| Error::apply_io(&path, "cannot inspect directory", e.into()))?;
                if st.st_dev != top_dev {
                    return Err(Error::apply(
                        &path,
                        "refusing to remove across a mount point",
                    ));
                }
                let pending = dir.sweep_dir(&path, sub, policy)?;
                stack.push(Frame {
                    name,
                    path,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    sweep: sub,
                    pending,
                });
                cur = Some(dir);
            } else {
                let Some(done) = stack.pop() else { break };
                let Some(parent) = stack.last() else { break };
                let up = here.open_dir(c"..").map_err(|e| {
                    Error::apply_io(
                        &done.path,
                        "cannot return to the parent directory",
                        e.into(),
                    )
                })?;
                let st = rfs::fstat(&up).map_err(|e| {
                    Error::apply_io(&parent.path, "cannot inspect directory", e.into())
                })?;
                if (st.st_dev, st.st_ino) != (parent.dev, parent.ino) {
                    return Err(Error::apply(
                        &parent.path,
                        "the directory tree changed while it was being removed",
                    ));
                }
                if done.sweep == Sweep::All {
                    up.rmdir(&done.name).map_err(|e| {
                        Error::apply_io(&done.path, "cannot remove directory", e.into())
                    })?;
                }
                cur = Some(up);
            }
        }
        Ok(())
    }

    /// Lists one directory of a sweep: removes the non-directories that go, returns the
    /// subdirectories to visit (to empty and remove, or to clean of what is not kept).
    fn sweep_dir(
        &self,
        path: &LayerPath,
        sweep: Sweep,
        policy: &mut impl SweepPolicy,
    ) -> Result<Vec<(CString, Sweep)>, Error> {
        let fail = |what: &str, e: Errno| {
            Error::apply_io(path, format!("cannot {what} while removing"), e.into())
        };
        let children = self.list().map_err(|e| fail("read a directory", e))?;
        let need_paths = policy.wants_paths(path, sweep);
        let mut pending = Vec::new();
        for (name, ftype) in children {
            let child = if need_paths {
                Some(path.join(name.to_bytes()).map_err(|_| {
                    Error::apply(
                        path,
                        format!(
                            "unexpected name `{}` in a directory",
                            shown(name.to_bytes())
                        ),
                    )
                })?)
            } else {
                None
            };
            if let (Sweep::Unkept, Some(c)) = (sweep, &child) {
                if policy.kept(c) {
                    if ftype == FileType::Directory {
                        pending.push((name, Sweep::Unkept));
                    }
                    continue;
                }
            }
            if ftype == FileType::Directory {
                pending.push((name, Sweep::All));
                continue;
            }
            if let Some(c) = &child {
                policy.removing(self, &name, c, ftype)?;
            }
            self.unlink(&name).map_err(|e| fail("unlink", e))?;
        }
        Ok(pending)
    }
}

/// `unlinkat`, retried once after giving the directory's owner write access when the
/// directory is read-only.
fn unlink_in(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, flags) {
        Err(Errno::ACCESS) => {
            let st = rfs::fstat(dir)?;
            rfs::fchmod(dir, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700))?;
            rfs::unlinkat(dir, name, flags)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn lp(s: &str) -> LayerPath {
        LayerPath::from_tar_name(s.as_bytes()).unwrap()
    }

    /// Keeps `keep` and everything above it; records what it is told about.
    struct KeepOne {
        keep: LayerPath,
        told: Vec<String>,
    }

    impl SweepPolicy for KeepOne {
        fn wants_paths(&mut self, _: &LayerPath, _: Sweep) -> bool {
            true
        }
        fn kept(&mut self, path: &LayerPath) -> bool {
            let (p, k) = (path.as_bytes(), self.keep.as_bytes());
            p == k || (k.starts_with(p) && k.get(p.len()) == Some(&b'/'))
        }
        fn removing(
            &mut self,
            _: &Dir,
            _: &CStr,
            path: &LayerPath,
            _: FileType,
        ) -> Result<(), Error> {
            self.told.push(path.to_string());
            Ok(())
        }
    }

    #[test]
    fn an_unkept_sweep_keeps_what_the_policy_keeps_and_tells_it_what_goes() {
        let t = tempfile::tempdir().unwrap();
        for d in ["top/a/deep", "top/b"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        for f in [
            "top/a/deep/keep",
            "top/a/deep/drop",
            "top/a/drop",
            "top/b/drop",
            "top/f",
        ] {
            std::fs::write(t.path().join(f), f).unwrap();
        }
        symlink("/etc", t.path().join("top/b/etc")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let top = root.top().open_dir(c"top").unwrap();
        let mut policy = KeepOne {
            keep: lp("top/a/deep/keep"),
            told: Vec::new(),
        };
        top.sweep(&lp("top"), Sweep::Unkept, &mut policy).unwrap();
        let mut left: Vec<String> = Vec::new();
        for e in std::fs::read_dir(t.path().join("top/a/deep")).unwrap() {
            left.push(e.unwrap().file_name().into_string().unwrap());
        }
        assert_eq!(left, ["keep"]);
        assert!(!t.path().join("top/a/drop").exists());
        assert!(!t.path().join("top/b").exists());
        assert!(!t.path().join("top/f").exists());
        // Files directly in swept kept directories and in removed ones are announced.
        policy.told.sort();
        assert_eq!(
            policy.told,
            [
                "top/a/deep/drop",
                "top/a/drop",
                "top/b/drop",
                "top/b/etc",
                "top/f"
            ]
        );
        assert!(std::path::Path::new("/etc").is_dir());
    }

    #[test]
    fn name_methods_never_follow_a_final_symlink() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        let before = std::fs::metadata(outside.path()).unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let top = root.top();
        let old = Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rfs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        };
        top.set_times_at(c"link", &old).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(t.path().join("link"))
                .unwrap()
                .mtime(),
            1
        );
        assert!(top.create_file(c"link", 0o644).is_err());
        assert_eq!(top.open_file(c"link").map(drop), Err(Errno::LOOP));
        // user.* is refused on a symlink by Linux; a follow would have set it on the file.
        let _ = top.set_xattr_at(c"link", b"user.strata", b"x");
        let mut buf = [0u8; 8];
        assert!(rfs::getxattr(outside.path(), "user.strata", &mut buf).is_err());
        let after = std::fs::metadata(outside.path()).unwrap();
        assert_eq!(after.mtime(), before.mtime());
        top.unlink(c"link").unwrap();
        assert!(outside.path().exists());
    }

    #[test]
    fn list_names_every_entry_with_its_type_and_rename_stays_in_the_tree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        symlink("/etc/passwd", t.path().join("l")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let top = root.top().reopen().unwrap();
        let mut names = top.list().unwrap();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut again = top.list().unwrap();
        again.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(again, names);

        assert_eq!(
            names,
            [
                (c"d".to_owned(), FileType::Directory),
                (c"f".to_owned(), FileType::RegularFile),
                (c"l".to_owned(), FileType::Symlink),
            ]
        );
        let d = top.open_dir(c"d").unwrap();
        // The symlink itself moves; what it points at is untouched.
        top.rename(c"l", &d, c"moved").unwrap();
        assert_eq!(d.read_link(c"moved").unwrap(), b"/etc/passwd");
        assert!(!t.path().join("l").exists());
        top.rename(c"f", &top, c"g").unwrap();
        assert_eq!(std::fs::read(t.path().join("g")).unwrap(), b"x");
    }

    #[test]
    fn create_dirs_goes_through_symlinks_inside_the_root_and_names_a_dangling_one() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink("/real", t.path().join("abs")).unwrap();
        symlink("/nowhere", t.path().join("dangling")).unwrap();
        let root = Root::open(t.path()).unwrap();
        let mkdir = |base: &Dir, name: &CStr, _: &[u8]| -> Result<Dir, Error> {
            base.mkdir(name, 0o755).unwrap();
            Ok(base.open_dir(name).unwrap())
        };
        let entry = lp("abs/new/file");
        root.create_dirs(b"abs/new", &entry, mkdir).unwrap();
        assert!(t.path().join("real/new").is_dir());
        let err = root
            .create_dirs(b"dangling/x", &lp("dangling/x/f"), mkdir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`dangling` is a symlink whose target does not exist inside the root"),
            "{err}"
        );
        assert!(!std::path::Path::new("/nowhere").exists());
    }
}
