//! Changes (`docker diff`): what a layer adds, modifies and deletes relative to its parent.
//!
//! Two ways, one per driver:
//!
//! * [`overlay_changes`] walks only the layer's upper directory (image-formats §8.3), so its
//!   cost follows what changed, not the size of the layers below: an upper entry is
//!   added, or modified when the lower view has that path (a directory equal in mode,
//!   owner and mtime is dropped, it was only copied up); a whiteout deletes what the lower
//!   view has; an opaque directory deletes the lower view's children it does not hold.
//! * [`tree_changes`] compares two full trees (vfs), per image-formats §8.1-§8.2: entries
//!   with the same inode are the same; otherwise type, mode, owner, device number and
//!   `security.capability` must agree, and for non-directories size and mtime seconds;
//!   when both mtimes have zero nanoseconds (a tar that kept whole seconds) the contents
//!   (bytes, or symlink target) are compared, else the nanoseconds must agree. Only the
//!   top of a deleted subtree is listed; every entry of an added directory is.
//!
//! Both list a directory with changes below it as modified, and sort by path bytes.

use std::ffi::CString;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, ResolveFlags, Stat};
use rustix::io::Errno;
use strata_layer::dir_reader::DirReader;
use strata_layer::{EntryKind, LayerPath, LayerReader};

use crate::error::{Error, Result};

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// The path is new in this layer: its parents do not have it.
    Added,
    /// The path was in the parent and this layer changed its content or metadata.
    Modified,
    /// The path was in the parent and this layer deletes it (a whiteout).
    Deleted,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One change of a layer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// The path changed, relative to the layer's root.
    pub path: LayerPath,
    /// What happened to it.
    pub kind: ChangeKind,
}

fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    changes.dedup_by(|a, b| a.path == b.path);
    changes
}

fn cname(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::Corrupt("a name with a NUL byte".into()))
}

fn open_dir_path(dir: &Path) -> Result<OwnedFd> {
    rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", dir.display()), e))
}

/// The lower view of an overlay layer, looked up without following any symlink: a path
/// whose parent is a symlink in the lower view is not there.
struct LowerView {
    root: Option<OwnedFd>,
}

impl LowerView {
    fn stat(&self, path: &LayerPath) -> Result<Option<Stat>> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        let name = cname(path.file_name().unwrap_or_default())?;
        let parent = match path.parent() {
            Some(p) if !p.is_root() => match open_beneath(root.as_fd(), p.as_bytes())? {
                Some(fd) => Some(fd),
                None => return Ok(None),
            },
            _ => None,
        };
        let dir = parent.as_ref().map_or(root.as_fd(), |f| f.as_fd());
        match rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(Error::io(
                format!("looking up `{path}` in the lower layers"),
                e,
            )),
        }
    }

    /// Names in the lower view's directory `path` (empty if it is not a directory there).
    fn names(&self, path: &LayerPath) -> Result<Vec<Vec<u8>>> {
        let Some(root) = &self.root else {
            return Ok(Vec::new());
        };
        let fd = if path.is_root() {
            Some(
                rfs::openat(
                    root,
                    c".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io("opening the lower root", e))?,
            )
        } else {
            open_beneath(root.as_fd(), path.as_bytes())?
        };
        match fd {
            Some(fd) => list(fd.as_fd(), path),
            None => Ok(Vec::new()),
        }
    }
}

/// Opens directory `rel` beneath `root` without following symlinks; `None` if it is not
/// a directory reachable that way.
fn open_beneath(root: BorrowedFd<'_>, rel: &[u8]) -> Result<Option<OwnedFd>> {
    let how = rfs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    );
    match how {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(e) => Err(Error::io(
            format!("opening `{}` in the lower layers", rel.escape_ascii()),
            e,
        )),
    }
}

fn list(fd: BorrowedFd<'_>, path: &LayerPath) -> Result<Vec<Vec<u8>>> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut rd = RawDir::new(fd, &mut buf);
    let mut names = Vec::new();
    while let Some(ent) = rd.next() {
        let ent = ent.map_err(|e| Error::io(format!("listing `{path}`"), e))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// The changes of an overlay layer: `upper` is its upper directory, `lower` the merged
/// view of its parents (`None` for a layer without parent).
pub fn overlay_changes(upper: &Path, lower: Option<&Path>) -> Result<Vec<Change>> {
    let lower = LowerView {
        root: lower.map(open_dir_path).transpose()?,
    };
    let mut reader = DirReader::open_overlay_upper(upper)?;
    let mut changes = Vec::new();
    let mut upper_names: Option<(LayerPath, Vec<Vec<u8>>)> = None;
    while let Some(entry) = reader.next_entry()? {
        let path = entry.path.clone();
        match &entry.kind {
            EntryKind::Whiteout => {
                if lower.stat(&path)?.is_some() {
                    changes.push(Change {
                        path,
                        kind: ChangeKind::Deleted,
                    });
                }
            }
            EntryKind::Opaque => {
                // What the lower view has in the directory and the upper does not.
                if upper_names.as_ref().is_none_or(|(p, _)| *p != path) {
                    let fd =
                        open_dir_path(&upper.join(std::ffi::OsStr::from_bytes(path.as_bytes())))?;
                    upper_names = Some((path.clone(), list(fd.as_fd(), &path)?));
                }
                let mine = upper_names
                    .as_ref()
                    .map(|(_, n)| n.as_slice())
                    .unwrap_or_default();
                for name in lower.names(&path)? {
                    if mine.binary_search(&name).is_err() {
                        let child = path.join(&name).map_err(|e| {
                            Error::Corrupt(format!("lower name under `{path}`: {e}"))
                        })?;
                        changes.push(Change {
                            path: child,
                            kind: ChangeKind::Deleted,
                        });
                    }
                }
            }
            kind => {
                let change = match lower.stat(&path)? {
                    None => Some(ChangeKind::Added),
                    Some(st) if matches!(kind, EntryKind::Dir) => {
                        let lower_is_dir =
                            FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                        let same = lower_is_dir
                            && st.st_mode & 0o7777 == entry.meta.mode
                            && u64::from(st.st_uid) == entry.meta.uid
                            && u64::from(st.st_gid) == entry.meta.gid
                            && st.st_mtime == entry.meta.mtime.secs
                            && st.st_mtime_nsec as i64 == i64::from(entry.meta.mtime.nanos);
                        (!same).then_some(ChangeKind::Modified)
                    }
                    Some(_) => Some(ChangeKind::Modified),
                };
                if let Some(kind) = change {
                    changes.push(Change { path, kind });
                }
            }
        }
    }
    Ok(with_parents(sorted(changes)))
}

/// Adds a `Modified` for every directory above a change that is not itself listed.
fn with_parents(changes: Vec<Change>) -> Vec<Change> {
    let listed: std::collections::HashSet<LayerPath> =
        changes.iter().map(|c| c.path.clone()).collect();
    let mut extra = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &changes {
        let mut p = c.path.parent();
        while let Some(dir) = p {
            if dir.is_root() || listed.contains(&dir) || !seen.insert(dir.clone()) {
                break;
            }
            p = dir.parent();
            extra.push(Change {
                path: dir,
                kind: ChangeKind::Modified,
            });
        }
    }
    if extra.is_empty() {
        return changes;
    }
    let mut all = changes;
    all.extend(extra);
    sorted(all)
}

/// One entry of a directory being compared.
struct Node {
    st: Stat,
}

impl Node {
    fn ftype(&self) -> FileType {
        FileType::from_raw_mode(self.st.st_mode)
    }
}

fn stat_in(dir: BorrowedFd<'_>, name: &CString, path: &LayerPath) -> Result<Stat> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(format!("inspecting `{path}`"), e))
}

fn capability(dir: BorrowedFd<'_>, name: &CString, ftype: FileType) -> Option<Vec<u8>> {
    if ftype == FileType::Symlink {
        return None;
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let mut buf = vec![0u8; 1024];
    let n = rfs::getxattr(proc.as_str(), "security.capability", &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn same_content(
    a_dir: BorrowedFd<'_>,
    b_dir: BorrowedFd<'_>,
    name: &CString,
    ftype: FileType,
    path: &LayerPath,
) -> Result<bool> {
    let fail = |e: Errno| Error::io(format!("comparing `{path}`"), e);
    if ftype == FileType::Symlink {
        let a = rfs::readlinkat(a_dir, name, Vec::new()).map_err(fail)?;
        let b = rfs::readlinkat(b_dir, name, Vec::new()).map_err(fail)?;
        return Ok(a == b);
    }
    if ftype != FileType::RegularFile {
        return Ok(true);
    }
    let open = |d| {
        rfs::openat(
            d,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(fail)
    };
    let (mut a, mut b) = (open(a_dir)?, open(b_dir)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n =
            read_full(&mut a, &mut ba).map_err(|e| Error::io(format!("reading `{path}`"), e))?;
        let m =
            read_full(&mut b, &mut bb).map_err(|e| Error::io(format!("reading `{path}`"), e))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether the entry `name` is unchanged between `old_dir` and `new_dir` (§8.2).
fn unchanged(
    old_dir: BorrowedFd<'_>,
    new_dir: BorrowedFd<'_>,
    name: &CString,
    old: &Node,
    new: &Node,
    path: &LayerPath,
) -> Result<bool> {
    let (o, n) = (&old.st, &new.st);
    if o.st_dev == n.st_dev && o.st_ino == n.st_ino {
        return Ok(true);
    }
    if o.st_mode != n.st_mode
        || o.st_uid != n.st_uid
        || o.st_gid != n.st_gid
        || o.st_rdev != n.st_rdev
    {
        return Ok(false);
    }
    let ftype = new.ftype();
    if capability(old_dir, name, ftype) != capability(new_dir, name, ftype) {
        return Ok(false);
    }
    if ftype == FileType::Directory {
        return Ok(true);
    }
    if o.st_size != n.st_size || o.st_mtime != n.st_mtime {
        return Ok(false);
    }
    if o.st_mtime_nsec == 0 && n.st_mtime_nsec == 0 {
        return same_content(old_dir, new_dir, name, ftype, path);
    }
    Ok(o.st_mtime_nsec == n.st_mtime_nsec)
}

/// A directory pair being compared: the new side always exists.
struct Pair {
    path: LayerPath,
    new: OwnedFd,
    old: Option<OwnedFd>,
}

fn open_child(dir: BorrowedFd<'_>, name: &CString, path: &LayerPath) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening `{path}`"), e))
}

/// The changes from the tree at `old` (`None`: empty) to the tree at `new`.
pub fn tree_changes(new: &Path, old: Option<&Path>) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut stack = vec![Pair {
        path: LayerPath::root(),
        new: open_dir_path(new)?,
        old: old.map(open_dir_path).transpose()?,
    }];
    while let Some(pair) = stack.pop() {
        let new_names = list(pair.new.as_fd(), &pair.path)?;
        let old_names = match &pair.old {
            Some(fd) => list(fd.as_fd(), &pair.path)?,
            None => Vec::new(),
        };
        for name in &old_names {
            if new_names.binary_search(name).is_err() {
                let path = child(&pair.path, name)?;
                changes.push(Change {
                    path,
                    kind: ChangeKind::Deleted,
                });
            }
        }
        for name in &new_names {
            let path = child(&pair.path, name)?;
            let c = cname(name)?;
            let new_node = Node {
                st: stat_in(pair.new.as_fd(), &c, &path)?,
            };
            let old_node = match (&pair.old, old_names.binary_search(name).is_ok()) {
                (Some(fd), true) => Some(Node {
                    st: stat_in(fd.as_fd(), &c, &path)?,
                }),
                _ => None,
            };
            let is_dir = new_node.ftype() == FileType::Directory;
            let (kind, old_dir) = match (&old_node, &pair.old) {
                (Some(o), Some(old_fd)) => {
                    if o.st.st_dev == new_node.st.st_dev && o.st.st_ino == new_node.st.st_ino {
                        continue; // the same inode: nothing below it changed either
                    }
                    let same =
                        unchanged(old_fd.as_fd(), pair.new.as_fd(), &c, o, &new_node, &path)?;
                    let kind = (!same).then_some(ChangeKind::Modified);
                    let old_dir = (is_dir && o.ftype() == FileType::Directory)
                        .then(|| open_child(old_fd.as_fd(), &c, &path))
                        .transpose()?;
                    (kind, old_dir)
                }
                _ => (Some(ChangeKind::Added), None),
            };
            if let Some(kind) = kind {
                changes.push(Change {
                    path: path.clone(),
                    kind,
                });
            }
            if is_dir {
                stack.push(Pair {
                    new: open_child(pair.new.as_fd(), &c, &path)?,
                    old: old_dir,
                    path,
                });
            }
        }
    }
    Ok(with_parents(sorted(changes)))
}

fn child(dir: &LayerPath, name: &[u8]) -> Result<LayerPath> {
    dir.join(name)
        .map_err(|e| Error::Corrupt(format!("a name under `{dir}`: {e}")))
}
