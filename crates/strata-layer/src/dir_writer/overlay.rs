//! [`Upper`]: the upper directory of an overlay as a target, with the lower layers below
//! it. What overlayfs would do through a mount (copy a lower entry up before changing it,
//! a whiteout where a lower entry was removed, an opaque directory where one replaced a
//! lower entry), this target does with plain calls; [`crate::upper`] reads the lowers.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::rc::Rc;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat, XattrFlags};
use rustix::io::Errno;

use super::target::Target;
use super::tree::{Owner, Tree};
use super::{file_type, io_err};
use crate::inroot;
use crate::root::{c_name, parent_bytes, resolve_error, shown, Dir};
use crate::upper::{self, Below, Lowers};
use crate::xattr::XattrBufs;
use crate::{Error, LayerPath, Metadata, Timestamp};

/// A path component still to resolve, and the symlink whose target it comes from.
type Pending = (Vec<u8>, Option<Rc<[u8]>>);

/// Marks the open directory `fd` (at `path`) opaque for overlayfs.
fn set_opaque(fd: &Dir, path: &LayerPath) -> Result<(), Error> {
    rfs::fsetxattr(fd, upper::OPAQUE_XATTR, b"y", XattrFlags::empty())
        .map_err(|e| Error::apply_io(path, "cannot mark the directory opaque", io_err(e)))
}

/// A parent component that is not a directory: an error when creating, `None` otherwise.
fn not_a_directory<T>(create: bool, prefix: &[u8], entry: &LayerPath) -> Result<Option<T>, Error> {
    if create {
        Err(Error::apply(
            entry,
            format!(
                "cannot create parent directories: `{}` is not a directory",
                shown(prefix)
            ),
        ))
    } else {
        Ok(None)
    }
}

fn cname(bytes: &[u8], path: &LayerPath) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::apply(path, "name holds a NUL byte"))
}

/// An overlay upper directory over its lower layers.
pub(super) struct Upper {
    lowers: Lowers,
    /// For reading the xattrs of lower entries copied up.
    xattr_bufs: Option<Box<XattrBufs>>,
}

impl Upper {
    /// Opens the lower layers `lowers`, nearest first.
    pub(super) fn open(lowers: &[PathBuf]) -> Result<Upper, Error> {
        Ok(Upper {
            lowers: Lowers::open(lowers)?,
            xattr_bufs: None,
        })
    }

    /// The upper directory `dir` resolved through the merged view, with the lower part of
    /// the merged directory: every directory on the way is copied up if only a lower
    /// layer holds it, symlinks (upper or lower) are followed with `..` and absolute
    /// targets kept inside the root. With `create`, missing directories are created as
    /// implied ones; without it, a missing or non-directory component gives `None`.
    fn resolve_upper(
        &mut self,
        tree: &mut Tree,
        dir: &[u8],
        create_asked: bool,
        entry: &LayerPath,
    ) -> Result<Option<(Dir, Below)>, Error> {
        let fail = |e: Errno| resolve_error(entry, dir, e);
        let mut clean: Vec<Vec<u8>> = Vec::new();
        let (mut cur, mut below) = self.walk_upper(tree, &clean).map_err(fail)?;
        // Each component, and the symlink it came from: a symlink's target must exist
        // (as when resolving in a plain root), only the entry's own components are implied.
        let mut queue: VecDeque<Pending> = dir
            .split(|&b| b == b'/')
            .map(|c| (c.to_vec(), None))
            .collect();
        let mut links = 0;
        while let Some((comp, via)) = queue.pop_front() {
            let create = create_asked && via.is_none();
            let dangling = |create_asked: bool| -> Result<Option<(Dir, Below)>, Error> {
                match (&via, create_asked) {
                    (Some(link), true) => Err(Error::apply(
                        entry,
                        format!(
                            "cannot create parent directories: `{}` is a symlink whose target does not exist inside the root",
                            shown(link)
                        ),
                    )),
                    _ => Ok(None),
                }
            };
            if comp.is_empty() || comp == b"." {
                continue;
            }
            if comp == b".." {
                clean.pop();
                (cur, below) = self.walk_upper(tree, &clean).map_err(fail)?;
                continue;
            }
            let name = cname(&comp, entry)?;
            let mut prefix = clean.join(&b'/');
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&comp);
            let here = match cur.stat(&name) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(fail(e)),
            };
            let target = match here {
                Some(st) if file_type(&st) == FileType::Directory => {
                    let fd = cur.open_dir(&name).map_err(fail)?;
                    below = if upper::is_opaque(fd.as_fd()) {
                        Vec::new()
                    } else {
                        upper::descend(&below, &name).map_err(fail)?
                    };
                    cur = fd;
                    clean.push(comp);
                    continue;
                }
                Some(st) if file_type(&st) == FileType::Symlink => {
                    cur.read_link(&name).map_err(fail)?
                }
                Some(st) if upper::is_whiteout(&st) && !create => return dangling(create_asked),
                Some(st) if upper::is_whiteout(&st) => {
                    // The directory replaces the whiteout and keeps hiding what it hid.
                    cur.unlink(&name).map_err(fail)?;
                    let hid = upper::entry(&below, &name).map_err(fail)?.is_some();
                    let fd = tree.make_implied_dir(&cur, &name, &prefix, entry)?;
                    if hid {
                        set_opaque(&fd, entry)?;
                    }
                    below = Vec::new();
                    cur = fd;
                    clean.push(comp);
                    continue;
                }
                Some(_) => return not_a_directory(create, &prefix, entry),
                None => {
                    let lower = upper::entry(&below, &name).map_err(fail)?;
                    match lower.as_ref().map(|l| (l.dir, file_type(&l.stat), l.stat)) {
                        Some((ldir, FileType::Directory, lst)) => {
                            self.copy_up(tree, &cur, &name, ldir, &lst, entry)?;
                            let fd = cur.open_dir(&name).map_err(fail)?;
                            below = upper::descend(&below, &name).map_err(fail)?;
                            cur = fd;
                            clean.push(comp);
                            continue;
                        }
                        Some((ldir, FileType::Symlink, _)) => {
                            rfs::readlinkat(ldir, &name, Vec::new())
                                .map_err(fail)?
                                .into_bytes()
                        }
                        Some(_) => return not_a_directory(create, &prefix, entry),
                        None if create => {
                            let fd = tree.make_implied_dir(&cur, &name, &prefix, entry)?;
                            below = Vec::new();
                            cur = fd;
                            clean.push(comp);
                            continue;
                        }
                        None => return dangling(create_asked),
                    }
                }
            };
            links += 1;
            if links > 40 {
                return Err(fail(Errno::LOOP));
            }
            if target.first() == Some(&b'/') {
                clean.clear();
                (cur, below) = self.walk_upper(tree, &clean).map_err(fail)?;
            }
            let link: Rc<[u8]> = via.unwrap_or_else(|| prefix.into());
            for c in target.split(|&b| b == b'/').rev() {
                queue.push_front((c.to_vec(), Some(link.clone())));
            }
        }
        Ok(Some((cur, below)))
    }

    /// The upper directory at `clean` (real directories, all in the upper directory
    /// already) and the lower part of the merged directory there.
    fn walk_upper(&self, tree: &Tree, clean: &[Vec<u8>]) -> Result<(Dir, Below), Errno> {
        let mut cur = tree.root.top().reopen()?;
        let mut below = self.lowers.root()?;
        for comp in clean {
            let name = CString::new(comp.as_slice()).map_err(|_| Errno::INVAL)?;
            let fd = cur.open_dir(&name)?;
            below = if upper::is_opaque(fd.as_fd()) {
                Vec::new()
            } else {
                upper::descend(&below, &name)?
            };
            cur = fd;
        }
        Ok((cur, below))
    }

    /// Copies the lower entry `name` of `ldir` (stat `lst`) into the upper directory
    /// `dir` with its owner, mode, xattrs and times, as overlayfs copies up: data for a
    /// regular file, nothing below a directory; `dir`'s own times stay as they were.
    fn copy_up(
        &mut self,
        tree: &mut Tree,
        dir: &Dir,
        name: &CStr,
        ldir: BorrowedFd<'_>,
        lst: &Stat,
        path: &LayerPath,
    ) -> Result<(), Error> {
        let fail = |what: &str, e: io::Error| {
            Error::apply_io(
                path,
                format!("cannot copy up `{}`: {what}", shown(name.to_bytes())),
                e,
            )
        };
        let parent = dir
            .reopen()
            .map_err(|e| fail("open its directory", io_err(e)))?;
        let pst = rfs::fstat(&parent).map_err(|e| fail("inspect its directory", io_err(e)))?;
        let bufs = self
            .xattr_bufs
            .get_or_insert_with(|| Box::new(XattrBufs::new()));
        let mut warnings = Vec::new();
        let mut xattrs = bufs.read_at(ldir, name.to_bytes(), path, &mut warnings);
        xattrs.retain(|x| !x.name.starts_with(b"trusted.overlay."));
        for w in warnings {
            tree.warn(w);
        }
        let time = |secs: i64, nanos: i64| Timestamp::new(secs, nanos.clamp(0, 999_999_999) as u32);
        let meta = Metadata {
            mode: lst.st_mode & 0o7777,
            uid: u64::from(lst.st_uid),
            gid: u64::from(lst.st_gid),
            mtime: time(lst.st_mtime, lst.st_mtime_nsec as i64),
            atime: Some(time(lst.st_atime, lst.st_atime_nsec as i64)),
            xattrs,
            ..Metadata::default()
        };
        // A copied directory or file gets the lower entry's metadata through its descriptor.
        let copied_meta = |tree: &mut Tree, fd: BorrowedFd<'_>| {
            tree.meta
                .apply_meta_fd(fd, path, &meta, Some(meta.mode), true, Owner::Unknown)
        };
        let ftype = file_type(lst);
        match ftype {
            FileType::Directory => {
                dir.mkdir(name, 0o700)
                    .map_err(|e| fail("mkdir", io_err(e)))?;
                let fd = dir.open_dir(name).map_err(|e| fail("open", io_err(e)))?;
                copied_meta(tree, fd.as_fd())?;
            }
            FileType::RegularFile => {
                let src = rfs::openat(
                    ldir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open the lower file", io_err(e)))?;
                let mut dst = dir
                    .create_file(name, 0o600)
                    .map_err(|e| fail("create", io_err(e)))?;
                io::copy(&mut File::from(src), &mut dst).map_err(|e| fail("copy its data", e))?;
                copied_meta(tree, dst.as_fd())?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(ldir, name, Vec::new())
                    .map_err(|e| fail("read the symlink", io_err(e)))?;
                dir.symlink(name, target.as_bytes())
                    .map_err(|e| fail("create the symlink", io_err(e)))?;
                tree.meta
                    .apply_meta_at(dir, name, path, &meta, true, Owner::Unknown)?;
            }
            _ => {
                dir.mknod(name, ftype, 0o600, lst.st_rdev)
                    .map_err(|e| fail("create the node", io_err(e)))?;
                tree.meta
                    .apply_meta_at(dir, name, path, &meta, false, Owner::Unknown)?;
            }
        }
        parent
            .set_times(&inroot::times_of(&pst))
            .map_err(|e| fail("keep its directory's times", io_err(e)))
    }

    /// A whiteout of the lower entry `name` in `dir`.
    fn make_whiteout(dir: &Dir, name: &CStr, path: &LayerPath) -> Result<(), Error> {
        dir.mknod(name, FileType::CharacterDevice, 0, 0)
            .map_err(|e| Error::apply_io(path, "cannot create the whiteout", io_err(e)))
    }

    /// In upper mode, hides every lower entry of the merged root that this layer did not
    /// write, as an opaque root would (overlayfs does not honour an opaque upper root):
    /// a whiteout for each name the upper directory lacks, `opaque` for each directory
    /// this layer kept there.
    fn hide_lower_root(&mut self, tree: &Tree) -> Result<(), Error> {
        let root = LayerPath::root();
        let lowers_fail =
            |e: Errno| Error::apply_io(&root, "cannot look into the lower layers", io_err(e));
        let below = self.lowers.root().map_err(lowers_fail)?;
        let names = upper::names(&below).map_err(lowers_fail)?;
        let top = tree.root.top();
        for name in names {
            let path = root.join(name.to_bytes()).map_err(|_| {
                Error::apply(
                    &root,
                    format!(
                        "unexpected name `{}` in a lower layer",
                        shown(name.to_bytes())
                    ),
                )
            })?;
            match top.stat(&name) {
                Err(Errno::NOENT) => Upper::make_whiteout(top, &name, &path)?,
                Ok(st) if file_type(&st) == FileType::Directory => {
                    let fd = top
                        .open_dir(&name)
                        .map_err(|e| Error::apply_io(&path, "cannot open directory", io_err(e)))?;
                    set_opaque(&fd, &path)?;
                }
                Ok(_) => {}
                Err(e) => return Err(Error::apply_io(&path, "cannot inspect", io_err(e))),
            }
        }
        Ok(())
    }
}

impl Target for Upper {
    fn resolve(
        &mut self,
        tree: &mut Tree,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Dir>, Error> {
        Ok(self
            .resolve_upper(tree, dir, create, entry)?
            .map(|(fd, _)| fd))
    }

    fn lower_at(
        &mut self,
        tree: &mut Tree,
        path: &LayerPath,
        into: Option<&Dir>,
        copy: fn(FileType) -> bool,
    ) -> Result<Option<(Stat, bool)>, Error> {
        let name = c_name(path)?;
        let Some((_, below)) =
            self.resolve_upper(tree, parent_bytes(path.as_bytes()), false, path)?
        else {
            return Ok(None);
        };
        let lower = upper::entry(&below, &name)
            .map_err(|e| Error::apply_io(path, "cannot look into the lower layers", io_err(e)))?;
        let Some((ldir, lst)) = lower.map(|l| (l.dir, l.stat)) else {
            return Ok(None);
        };
        match into {
            Some(dir) if copy(file_type(&lst)) => {
                self.copy_up(tree, dir, &name, ldir, &lst, path)?;
                Ok(Some((lst, true)))
            }
            _ => Ok(Some((lst, false))),
        }
    }

    fn is_whiteout(&self, st: &Stat) -> bool {
        upper::is_whiteout(st)
    }

    fn hide(
        &mut self,
        _: &mut Tree,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error> {
        Upper::make_whiteout(dir, name, path)
    }

    /// The root cannot be opaque (overlayfs does not honour an opaque upper root): each
    /// lower entry there is hidden one by one instead.
    fn hide_below(&mut self, tree: &mut Tree, dir: &Dir, path: &LayerPath) -> Result<(), Error> {
        if path.is_root() {
            self.hide_lower_root(tree)
        } else {
            set_opaque(dir, path)
        }
    }
}
