//! [`DirReader`]: a [`LayerReader`] over a directory tree, the pack side of a layer.
//!
//! # What it yields
//!
//! One [`Entry`] per file system object below the root (the root itself is not an entry):
//!
//! | on disk | entry |
//! | --- | --- |
//! | regular file | [`EntryKind::File`] (`sparse: None`), data through [`LayerReader::read_data`] |
//! | regular file already seen under another name | [`EntryKind::HardLink`] to the first name |
//! | directory | [`EntryKind::Dir`] |
//! | symbolic link | [`EntryKind::Symlink`], target verbatim (absolute and dangling ones too) |
//! | character / block device | [`EntryKind::CharDevice`] / [`EntryKind::BlockDevice`] (a 0/0 character device too: recognising overlay whiteouts is not this reader's job) |
//! | fifo | [`EntryKind::Fifo`] |
//! | socket | nothing: skipped, with a [warning](DirReader::warnings) |
//!
//! # Overlay upper directories
//!
//! [`DirReader::open_overlay_upper`] reads the upper directory of an overlay mount as the
//! layer it stands for (image-formats §8.3-§8.4): a 0/0 character device, or an empty
//! regular file carrying `trusted.overlay.whiteout`, is an [`EntryKind::Whiteout`]; a
//! directory whose `trusted.overlay.opaque` is `y` is its [`EntryKind::Dir`] entry followed
//! right away by an [`EntryKind::Opaque`] entry for the same path; `trusted.overlay.*`
//! xattrs are the kernel's bookkeeping and are dropped, and escaped image xattrs
//! (`trusted.overlay.overlay.NAME`) come back as `trusted.overlay.NAME`.
//!
//! Metadata: permission bits (`mode & 0o7777`), numeric uid and gid, mtime with nanoseconds,
//! and every extended attribute sorted by name. Owner names stay empty (no NSS lookups), and
//! atime and ctime are `None` because they would make the output differ from run to run.
//! Hard links are recognised for every non-directory with a link count above one (GNU tar
//! does the same), by device and inode number.
//!
//! # Order
//!
//! Depth-first pre-order, with each directory's names sorted bytewise: a directory comes
//! right before its contents, and the same tree always gives the same sequence. This is
//! *not* a bytewise sort of whole paths: a directory `a` holding `b`, next to a file `a.b`,
//! gives `a`, `a/b`, `a.b` (the names `a` < `a.b` are compared inside the root, and
//! everything below `a` follows `a`), whereas sorting whole paths would put `a.b` before
//! `a/b` because `.` < `/`.
//!
//! ```
//! use strata_layer::{dir_reader::DirReader, LayerReader};
//! let tree = tempfile::tempdir().unwrap();
//! std::fs::create_dir(tree.path().join("a")).unwrap();
//! std::fs::write(tree.path().join("a/b"), "hi\n").unwrap();
//! std::fs::write(tree.path().join("a.b"), "").unwrap();
//!
//! let mut reader = DirReader::open(tree.path()).unwrap();
//! let mut seen = Vec::new();
//! while let Some(entry) = reader.next_entry().unwrap() {
//!     seen.push(entry.path.to_string());
//! }
//! assert_eq!(seen, ["a", "a/b", "a.b"]);
//! ```
//!
//! # How it walks
//!
//! Iteratively, never recursively, so a 10000-deep tree cannot overflow the stack. Each
//! directory is listed completely (getdents into one reused buffer), its names sorted and
//! its listing kept while the walk is inside it: memory grows with the names of the
//! directories on the current path, not with the size of the tree. Everything is opened
//! relative to its parent's fd with `O_NOFOLLOW`, so no symlink inside the tree is ever
//! followed (the root path itself is resolved normally, like `tar -C`). At most
//! 64 directory fds (the deepest ones on the current path) stay open; when the walk climbs
//! back to a directory whose fd was closed, it reopens it as `..` of its child and checks
//! that device and inode are unchanged, so a directory moved during the walk is an error,
//! never an escape. Only the current regular file is open, from the moment its entry is
//! returned until the next call to [`LayerReader::next_entry`].
//!
//! A file that shrinks while it is read is an error; one that grows delivers the size its
//! entry announced (and leaves a warning when the growth is noticed). An entry that
//! vanishes between listing and stat is skipped with a warning, as GNU tar does.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

use crate::{Entry, EntryKind, Error, LayerPath, LayerReader, Metadata, Timestamp, Xattr};

/// What [`DirReader::with_filter`] does with a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// Return it (and, for a directory, walk its contents, each asked about in turn).
    Entry,
    /// Do not return it, but if it is a directory walk its contents.
    Descend,
    /// Neither return it nor walk below it.
    Skip,
}

/// Decides, per path, what a [`DirReader`] returns.
pub type PathFilter = Box<dyn FnMut(&LayerPath) -> Visit + Send>;

/// The most directory fds kept open: the deepest levels of the current path.
const MAX_OPEN_DIRS: usize = 64;
/// The getdents buffer.
const DIRENT_BUF_LEN: usize = 64 * 1024;
/// Linux caps an xattr name list and an xattr value at 64 KiB each (`XATTR_LIST_MAX`,
/// `XATTR_SIZE_MAX`), so buffers of this size never see `ERANGE` there.
const XATTR_BUF_LEN: usize = 64 * 1024;
/// How many finished directory listings keep their allocations for reuse.
const POOL_MAX: usize = 32;

/// Flags for every open: read only, never follow a final symlink, never leak into children.
const OPEN_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// Extra flags for a regular file: if it was swapped for a fifo or a device since it was
/// listed, opening must neither block nor take a controlling terminal.
const FILE_FLAGS: OFlags = OFlags::NONBLOCK.union(OFlags::NOCTTY);

/// One name in a directory listing: a range of [`Level::names`] plus the type getdents
/// reported (only a hint, the stat decides).
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
    dtype: FileType,
}

/// A directory on the current path, with the names not yet visited.
struct Level {
    path: LayerPath,
    /// Open for the deepest [`MAX_OPEN_DIRS`] levels; always open for the last level.
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    /// All names of the directory, concatenated.
    names: Vec<u8>,
    /// Sorted bytewise by name.
    spans: Vec<Span>,
    next: usize,
}

/// The regular file whose entry was returned last.
struct OpenFile {
    fd: OwnedFd,
    path: LayerPath,
    size: u64,
    remaining: u64,
}

/// The fields of a `stat` this reader uses, in fixed types on every architecture.
#[derive(Clone, Copy)]
struct StatInfo {
    dev: u64,
    ino: u64,
    nlink: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: i64,
    mtime: Timestamp,
}

impl StatInfo {
    // The field types of `Stat` differ between architectures and backends.
    #[allow(
        clippy::unnecessary_cast,
        clippy::useless_conversion,
        clippy::unnecessary_fallible_conversions
    )]
    fn new(st: &Stat) -> Self {
        let nanos = u32::try_from(st.st_mtime_nsec)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .unwrap_or(0);
        StatInfo {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size as i64,
            mtime: Timestamp {
                secs: st.st_mtime as i64,
                nanos,
            },
        }
    }

    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

/// A [`LayerReader`] over the directory tree at a root; see the [module docs](self) for
/// what it yields and in which order.
pub struct DirReader {
    root: PathBuf,
    stack: Vec<Level>,
    /// Listing buffers of finished directories, for reuse.
    pool: Vec<(Vec<u8>, Vec<Span>)>,
    dirent_buf: Vec<u8>,
    /// The name of the entry being visited (a copy, so the listing can be borrowed mutably).
    name: Vec<u8>,
    /// Non-directories with more links than seen so far: (dev, ino) -> (first path, links
    /// still to come). An inode leaves the map once all its links were seen.
    links: HashMap<(u64, u64), (LayerPath, u64)>,
    file: Option<OpenFile>,
    xattrs: XattrBufs,
    warnings: Vec<String>,
    finished: bool,
    /// Reading an overlay upper directory (see the module docs).
    overlay_upper: bool,
    /// The opaque marker of the directory returned last, in overlay-upper mode.
    pending: Option<Entry>,
    /// Which paths to return (see [`DirReader::with_filter`]).
    filter: Option<PathFilter>,
    /// Tests: pretend getdents reported no types, to exercise the stat-first path.
    #[cfg(test)]
    ignore_dtype: bool,
}

impl fmt::Debug for DirReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirReader")
            .field("root", &self.root)
            .field("depth", &self.stack.len())
            .field("current", &self.stack.last().map(|l| &l.path))
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

impl DirReader {
    /// Opens the tree at `root` for reading; the root itself is not emitted as an entry.
    ///
    /// `root` is resolved like any path (a symlink naming the root is followed); nothing
    /// below it ever is. The root directory is listed here, so an unreadable root fails now.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let fd = rfs::open(root, OPEN_FLAGS | OFlags::DIRECTORY, Mode::empty()).map_err(|e| {
            Error::io(
                format!("cannot open directory {}", root.display()),
                e.into(),
            )
        })?;
        let st = rfs::fstat(&fd).map_err(|e| {
            Error::io(
                format!("cannot stat directory {}", root.display()),
                e.into(),
            )
        })?;
        let mut reader = DirReader {
            root: root.to_path_buf(),
            stack: Vec::new(),
            pool: Vec::new(),
            dirent_buf: Vec::with_capacity(DIRENT_BUF_LEN),
            name: Vec::with_capacity(256),
            links: HashMap::new(),
            file: None,
            xattrs: XattrBufs::new(),
            warnings: Vec::new(),
            finished: false,
            overlay_upper: false,
            pending: None,
            filter: None,
            #[cfg(test)]
            ignore_dtype: false,
        };
        reader.push_level(LayerPath::root(), fd, &StatInfo::new(&st))?;
        Ok(reader)
    }

    /// Opens the upper directory of an overlay mount: like [`DirReader::open`], but
    /// overlay whiteouts and opaque directories come out as the entries they stand for
    /// (see the [module docs](self#overlay-upper-directories)).
    pub fn open_overlay_upper(root: &Path) -> Result<Self, Error> {
        let mut reader = DirReader::open(root)?;
        reader.overlay_upper = true;
        Ok(reader)
    }

    /// Returns only some paths: `filter` is asked about every path before anything is
    /// opened, and its [`Visit`] decides. Hard links are recognised among returned entries
    /// only, so a returned name never links to one that was filtered out.
    pub fn with_filter(mut self, filter: PathFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The open regular file of the entry returned last, for callers that move its data
    /// themselves (`copy_file_range`) instead of through [`LayerReader::read_data`]; its
    /// offset is wherever `read_data` left it.
    pub fn data_fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_ref().map(|f| f.fd.as_fd())
    }

    /// Things skipped so far (sockets, unreadable xattrs, entries that vanished, files that
    /// grew while read), one human sentence each, with the path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// An I/O error about `path`, naming the tree it lies in.
    fn err(&self, what: &str, path: &LayerPath, source: impl Into<io::Error>) -> Error {
        io_error(&self.root, what, path, source.into())
    }

    /// Lists the directory open at `fd`, sorts its names and makes it the current level.
    fn push_level(&mut self, path: LayerPath, fd: OwnedFd, st: &StatInfo) -> Result<(), Error> {
        let (mut names, mut spans) = self.pool.pop().unwrap_or_default();
        names.clear();
        spans.clear();
        if let Err(e) = list_dir(fd.as_fd(), &mut self.dirent_buf, &mut names, &mut spans) {
            return Err(self.err("cannot list directory", &path, e));
        }
        spans.sort_unstable_by(|a, b| {
            names[a.start..a.start + a.len].cmp(&names[b.start..b.start + b.len])
        });
        self.stack.push(Level {
            path,
            fd: Some(fd),
            dev: st.dev,
            ino: st.ino,
            names,
            spans,
            next: 0,
        });
        // Keep the fds of the deepest MAX_OPEN_DIRS levels only.
        if let Some(i) = self.stack.len().checked_sub(MAX_OPEN_DIRS + 1) {
            self.stack[i].fd = None;
        }
        Ok(())
    }

    /// Leaves the current directory. If its parent's fd was closed, reopens the parent as
    /// `..` of the directory being left and checks it is the same directory as before.
    fn pop_level(&mut self) -> Result<(), Error> {
        let Some(done) = self.stack.pop() else {
            return Ok(());
        };
        let Level {
            path: done_path,
            fd: done_fd,
            names,
            spans,
            ..
        } = done;
        if self.pool.len() < POOL_MAX {
            self.pool.push((names, spans));
        }
        let Some(parent) = self.stack.last_mut() else {
            return Ok(());
        };
        if parent.fd.is_some() {
            return Ok(());
        }
        let Some(done_fd) = done_fd else {
            return Err(io_error(
                &self.root,
                "internal error: no fd for directory",
                &done_path,
                io::Error::from(io::ErrorKind::Other),
            ));
        };
        let reopen = rfs::openat(
            &done_fd,
            c"..",
            OPEN_FLAGS | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .and_then(|fd| rfs::fstat(&fd).map(|st| (fd, StatInfo::new(&st))));
        let (fd, st) = reopen.map_err(|e| {
            io_error(
                &self.root,
                "cannot reopen directory",
                &parent.path,
                e.into(),
            )
        })?;
        if (st.dev, st.ino) != (parent.dev, parent.ino) {
            return Err(io_error(
                &self.root,
                "directory changed while being read:",
                &parent.path,
                io::Error::other(format!(
                    "`{done_path}` was moved out of it, so the walk cannot climb back safely"
                )),
            ));
        }
        parent.fd = Some(fd);
        Ok(())
    }

    /// The next entry of the walk, skipping what cannot be stored.
    fn advance(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(&span) = top.spans.get(top.next) else {
                self.pop_level()?;
                continue;
            };
            top.next += 1;
            self.name.clear();
            self.name
                .extend_from_slice(&top.names[span.start..span.start + span.len]);
            let path = match top.path.join(&self.name) {
                Ok(path) => path,
                Err(e) => {
                    let parent = top.path.clone();
                    return Err(io_error(
                        &self.root,
                        &format!("bad name `{}` in directory", self.name.escape_ascii()),
                        &parent,
                        io::Error::new(io::ErrorKind::InvalidData, e),
                    ));
                }
            };
            #[cfg(test)]
            let dtype = if self.ignore_dtype {
                FileType::Unknown
            } else {
                span.dtype
            };
            #[cfg(not(test))]
            let dtype = span.dtype;
            let verdict = match self.filter.as_mut() {
                Some(f) => f(&path),
                None => Visit::Entry,
            };
            match verdict {
                Visit::Skip => continue,
                Visit::Descend if !matches!(dtype, FileType::Directory | FileType::Unknown) => {
                    continue
                }
                Visit::Descend => {
                    // Listed for its contents only: the entry itself is not returned.
                    self.visit(path, dtype)?;
                }
                Visit::Entry => {
                    if let Some(entry) = self.visit(path, dtype)? {
                        return Ok(Some(entry));
                    }
                }
            }
        }
    }

    /// Makes the entry for `self.name` in the current directory, or `None` to skip it.
    fn visit(&mut self, path: LayerPath, dtype: FileType) -> Result<Option<Entry>, Error> {
        let Some(dirfd) = self.stack.last().and_then(|l| l.fd.as_ref()) else {
            return Err(self.err(
                "internal error: no open directory for",
                &path,
                io::Error::from(io::ErrorKind::Other),
            ));
        };
        let dirfd = dirfd.as_fd();
        let name = &self.name[..];

        // Stat once. Regular files and directories are opened anyway (for data, listing and
        // xattrs), so when getdents says that is what they are, open first and fstat the fd.
        let mut opened = None;
        let mut st = None;
        let hint = match dtype {
            FileType::RegularFile => Some(FILE_FLAGS),
            FileType::Directory => Some(OFlags::DIRECTORY),
            _ => None,
        };
        if let Some(extra) = hint {
            if let Ok(fd) = rfs::openat(dirfd, name, OPEN_FLAGS | extra, Mode::empty()) {
                let s = rfs::fstat(&fd).map_err(|e| self.err("cannot stat", &path, e))?;
                st = Some(StatInfo::new(&s));
                opened = Some(fd);
            }
        }
        let mut st = match st {
            Some(st) => st,
            None => match rfs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => StatInfo::new(&s),
                Err(Errno::NOENT) => {
                    self.warnings.push(format!(
                        "`{path}` vanished while the tree was being read; skipped it"
                    ));
                    return Ok(None);
                }
                Err(e) => return Err(self.err("cannot stat", &path, e)),
            },
        };
        let ftype = st.file_type();
        if matches!(ftype, FileType::RegularFile | FileType::Directory) && opened.is_none() {
            let extra = if ftype == FileType::Directory {
                OFlags::DIRECTORY
            } else {
                FILE_FLAGS
            };
            let fd = rfs::openat(dirfd, name, OPEN_FLAGS | extra, Mode::empty())
                .map_err(|e| self.err("cannot open", &path, e))?;
            let now = rfs::fstat(&fd).map_err(|e| self.err("cannot stat", &path, e))?;
            let now = StatInfo::new(&now);
            if (now.dev, now.ino) != (st.dev, st.ino) {
                return Err(self.err(
                    "changed while being read:",
                    &path,
                    io::Error::other("it was replaced between stat and open"),
                ));
            }
            st = now;
            opened = Some(fd);
        }

        let mut meta = Metadata {
            mode: st.mode & 0o7777,
            uid: st.uid.into(),
            gid: st.gid.into(),
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: st.mtime,
            atime: None,
            ctime: None,
            xattrs: Vec::new(),
        };

        if matches!(ftype, FileType::Socket | FileType::Unknown) {
            let what = if ftype == FileType::Socket {
                "socket"
            } else {
                "file of unknown type"
            };
            self.warnings.push(format!(
                "skipped {what} `{path}`: it cannot be stored in a layer"
            ));
            return Ok(None);
        }

        // Overlay whiteouts share one inode (the kernel links them), so they are decided
        // before hard links are.
        if self.overlay_upper && self.is_overlay_whiteout(&st, opened.as_ref()) {
            return Ok(Some(Entry {
                path,
                kind: EntryKind::Whiteout,
                meta: Metadata::default(),
                pax: Vec::new(),
            }));
        }

        // Hard links: the first name is the entry, later names point to it.
        if ftype != FileType::Directory && st.nlink > 1 {
            let key = (st.dev, st.ino);
            if let Some((first, left)) = self.links.get_mut(&key) {
                let target = first.clone();
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.links.remove(&key);
                }
                return Ok(Some(Entry {
                    path,
                    kind: EntryKind::HardLink { target },
                    meta,
                    pax: Vec::new(),
                }));
            }
            self.links.insert(key, (path.clone(), st.nlink - 1));
        }

        let kind = match ftype {
            FileType::RegularFile | FileType::Directory => {
                let Some(fd) = opened.take() else {
                    return Err(self.err(
                        "internal error: not opened:",
                        &path,
                        io::Error::from(io::ErrorKind::Other),
                    ));
                };
                meta.xattrs =
                    self.xattrs
                        .read(XattrSource::Fd(fd.as_fd()), &path, &mut self.warnings);
                if self.overlay_upper {
                    let opaque = overlay_xattrs(&mut meta.xattrs);
                    if opaque && ftype == FileType::Directory {
                        self.pending = Some(Entry::new(path.clone(), EntryKind::Opaque));
                    }
                }
                if ftype == FileType::Directory {
                    self.push_level(path.clone(), fd, &st)?;
                    EntryKind::Dir
                } else {
                    let size = u64::try_from(st.size).map_err(|_| {
                        self.err(
                            "impossible size of",
                            &path,
                            io::Error::from(io::ErrorKind::InvalidData),
                        )
                    })?;
                    self.file = Some(OpenFile {
                        fd,
                        path: path.clone(),
                        size,
                        remaining: size,
                    });
                    EntryKind::File { size, sparse: None }
                }
            }
            FileType::Symlink => {
                let target = match rfs::readlinkat(dirfd, name, Vec::new()) {
                    Ok(target) => target.into_bytes(),
                    Err(Errno::NOENT) => {
                        self.warnings.push(format!(
                            "`{path}` vanished while the tree was being read; skipped it"
                        ));
                        return Ok(None);
                    }
                    Err(e) => return Err(self.err("cannot read symlink", &path, e)),
                };
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                EntryKind::Symlink { target }
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                let (major, minor) = (rfs::major(st.rdev), rfs::minor(st.rdev));
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                if ftype == FileType::CharacterDevice {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            FileType::Fifo => {
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                EntryKind::Fifo
            }
            FileType::Socket | FileType::Unknown => return Ok(None),
        };
        if self.overlay_upper && !matches!(ftype, FileType::RegularFile | FileType::Directory) {
            overlay_xattrs(&mut meta.xattrs);
        }
        Ok(Some(Entry {
            path,
            kind,
            meta,
            pax: Vec::new(),
        }))
    }
}

impl LayerReader for DirReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        self.file = None;
        if let Some(marker) = self.pending.take() {
            return Ok(Some(marker));
        }
        if self.finished {
            return Ok(None);
        }
        let next = self.advance();
        if !matches!(next, Ok(Some(_))) {
            self.finished = true;
            self.stack.clear();
            self.pool.clear();
            self.links.clear();
        }
        next
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        if f.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        // When the rest fits in `buf`, ask for one byte more: getting it means the file grew.
        let want = match usize::try_from(f.remaining) {
            Ok(rest) if rest < buf.len() => rest + 1,
            _ => buf.len(),
        };
        loop {
            match rustix::io::read(&f.fd, &mut buf[..want]) {
                Ok(0) => {
                    return Err(io_error(
                        &self.root,
                        "file changed while being read:",
                        &f.path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "it ended after {} of the {} bytes it had when listed",
                                f.size - f.remaining,
                                f.size
                            ),
                        ),
                    ));
                }
                Ok(n) => {
                    let n64 = n as u64;
                    if n64 > f.remaining {
                        self.warnings.push(format!(
                            "`{}` grew while being read; stored its first {} bytes",
                            f.path, f.size
                        ));
                        let rest = want - 1;
                        f.remaining = 0;
                        return Ok(rest);
                    }
                    f.remaining -= n64;
                    return Ok(n);
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_error(&self.root, "cannot read", &f.path, e.into())),
            }
        }
    }
}

impl DirReader {
    /// An overlay whiteout: a 0/0 character device, or an empty regular file marked with
    /// `trusted.overlay.whiteout` (the xattr form of newer kernels).
    fn is_overlay_whiteout(&self, st: &StatInfo, opened: Option<&OwnedFd>) -> bool {
        match st.file_type() {
            FileType::CharacterDevice => st.rdev == 0,
            FileType::RegularFile if st.size == 0 => {
                opened.is_some_and(|fd| rfs::fgetxattr(fd, OVERLAY_WHITEOUT, &mut [0u8; 8]).is_ok())
            }
            _ => false,
        }
    }
}

const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";
const OVERLAY_WHITEOUT: &[u8] = b"trusted.overlay.whiteout";
const OVERLAY_OPAQUE: &[u8] = b"trusted.overlay.opaque";

/// Drops overlay's own xattrs from `xattrs` and unescapes the image's
/// (`trusted.overlay.overlay.NAME` -> `trusted.overlay.NAME`); true if the entry was
/// marked opaque (`trusted.overlay.opaque` = `y`).
fn overlay_xattrs(xattrs: &mut Vec<Xattr>) -> bool {
    let opaque = xattrs
        .iter()
        .any(|x| x.name == OVERLAY_OPAQUE && x.value == b"y");
    xattrs.retain_mut(|x| {
        let Some(rest) = x.name.strip_prefix(OVERLAY_PREFIX) else {
            return true;
        };
        if rest.starts_with(b"overlay.") {
            x.name.drain(b"trusted.".len()..OVERLAY_PREFIX.len());
            true
        } else {
            false
        }
    });
    xattrs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    opaque
}

/// `ROOT: WHAT `PATH`` as the context of an I/O error.
fn io_error(root: &Path, what: &str, path: &LayerPath, source: io::Error) -> Error {
    Error::io(format!("{}: {what} `{path}`", root.display()), source)
}

/// Reads every name of the directory open at `fd` (except `.` and `..`) into `names`,
/// one span each.
fn list_dir(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    names: &mut Vec<u8>,
    spans: &mut Vec<Span>,
) -> Result<(), Errno> {
    buf.clear();
    buf.reserve(DIRENT_BUF_LEN);
    let mut dir = RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        spans.push(Span {
            start: names.len(),
            len: name.len(),
            dtype: entry.file_type(),
        });
        names.extend_from_slice(name);
    }
    Ok(())
}

/// Where to read extended attributes from.
#[derive(Clone, Copy)]
enum XattrSource<'a> {
    /// An open regular file or directory.
    Fd(BorrowedFd<'a>),
    /// A path not to follow (`l*xattr`): `/proc/self/fd/DIRFD/NAME`.
    Path(&'a [u8]),
}

impl XattrSource<'_> {
    fn list(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Fd(fd) => rfs::flistxattr(fd, buf),
            XattrSource::Path(p) => rfs::llistxattr(p, buf),
        }
    }

    fn list_len(self) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Fd(fd) => rfs::flistxattr_query(fd),
            XattrSource::Path(p) => rfs::llistxattr_query(p),
        }
    }

    fn get(self, name: &[u8], buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Fd(fd) => rfs::fgetxattr(fd, name, buf),
            XattrSource::Path(p) => rfs::lgetxattr(p, name, buf),
        }
    }

    fn get_len(self, name: &[u8]) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Fd(fd) => rfs::fgetxattr_query(fd, name),
            XattrSource::Path(p) => rfs::lgetxattr_query(p, name),
        }
    }
}

/// Reusable buffers for reading extended attributes.
pub(crate) struct XattrBufs {
    list: Vec<u8>,
    value: Vec<u8>,
    proc_path: Vec<u8>,
    /// Whether `/proc/self/fd` is usable: checked on first need.
    proc_ok: Option<bool>,
    proc_warned: bool,
}

impl XattrBufs {
    pub(crate) fn new() -> Self {
        XattrBufs {
            // Never empty: a zero-length buffer would turn the calls into size queries.
            list: vec![0; XATTR_BUF_LEN],
            value: vec![0; XATTR_BUF_LEN],
            proc_path: Vec::with_capacity(64),
            proc_ok: None,
            proc_warned: false,
        }
    }

    /// The xattrs of `name` in `dirfd`, not following it (for symlinks, devices, fifos).
    pub(crate) fn read_at(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &[u8],
        path: &LayerPath,
        warnings: &mut Vec<String>,
    ) -> Vec<Xattr> {
        let proc_ok = *self.proc_ok.get_or_insert_with(|| {
            rfs::statat(rfs::CWD, c"/proc/self/fd", AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        });
        if !proc_ok {
            if !self.proc_warned {
                self.proc_warned = true;
                warnings.push(format!(
                    "extended attributes of symlinks, devices and fifos are not read because \
                     /proc/self/fd is not available (the first one stored without them is `{path}`)"
                ));
            }
            return Vec::new();
        }
        let mut proc_path = std::mem::take(&mut self.proc_path);
        proc_path.clear();
        // Writing to a Vec cannot fail.
        let _ = write!(proc_path, "/proc/self/fd/{}/", dirfd.as_raw_fd());
        proc_path.extend_from_slice(name);
        let xattrs = self.read(XattrSource::Path(&proc_path), path, warnings);
        self.proc_path = proc_path;
        xattrs
    }

    /// All xattrs of `src`, sorted by name. `ENOTSUP` means none; other failures leave a
    /// warning and skip what could not be read.
    fn read(
        &mut self,
        src: XattrSource<'_>,
        path: &LayerPath,
        warnings: &mut Vec<String>,
    ) -> Vec<Xattr> {
        let len = match fill(&mut self.list, |b| src.list(b), || src.list_len()) {
            Ok(len) => len,
            Err(Errno::NOTSUP) => return Vec::new(),
            Err(e) => {
                warnings.push(format!(
                    "could not list the extended attributes of `{path}` ({e}); stored it without them"
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for name in self.list[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            match fill(&mut self.value, |b| src.get(name, b), || src.get_len(name)) {
                Ok(n) => out.push(Xattr {
                    name: name.to_vec(),
                    value: self.value[..n].to_vec(),
                }),
                // Removed since it was listed.
                Err(Errno::NODATA) => {}
                Err(e) => warnings.push(format!(
                    "could not read extended attribute `{}` of `{path}` ({e}); skipped it",
                    name.escape_ascii()
                )),
            }
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Runs `op` on `buf`, growing `buf` to the size `len` reports when `op` says `ERANGE`
/// (the attribute grew between calls); gives up with `ERANGE` after a few rounds.
fn fill(
    buf: &mut Vec<u8>,
    mut op: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut len: impl FnMut() -> rustix::io::Result<usize>,
) -> rustix::io::Result<usize> {
    for _ in 0..4 {
        match op(&mut buf[..]) {
            Err(Errno::RANGE) => {
                let need = len()?.max(buf.len().saturating_mul(2));
                buf.resize(need, 0);
            }
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn lp(s: &[u8]) -> LayerPath {
        LayerPath::from_tar_name(s).unwrap()
    }

    fn all(r: &mut DirReader) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(e);
        }
        out
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.path.to_string()).collect()
    }

    fn dirfd(p: &Path) -> OwnedFd {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// Both ways of finding types: from getdents, and stat only.
    fn both_ways(root: &Path, check: impl Fn(&mut DirReader, bool)) {
        for ignore_dtype in [false, true] {
            let mut r = DirReader::open(root).unwrap();
            r.ignore_dtype = ignore_dtype;
            check(&mut r, ignore_dtype);
        }
    }

    #[test]
    fn order_is_preorder_with_bytewise_sorted_names() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::create_dir_all(p.join("a/c")).unwrap();
        fs::write(p.join("a/b"), "").unwrap();
        fs::write(p.join("a/c/d"), "").unwrap();
        fs::write(p.join("a.b"), "").unwrap();
        fs::write(p.join("B"), "").unwrap();
        fs::write(p.join("z"), "").unwrap();
        fs::create_dir(p.join("empty")).unwrap();
        fs::write(p.join("a-"), "").unwrap();
        both_ways(p, |r, _| {
            let got = all(r);
            assert_eq!(
                paths(&got),
                ["B", "a", "a/b", "a/c", "a/c/d", "a-", "a.b", "empty", "z"]
            );
            assert!(r.warnings().is_empty());
            // Finished readers stay finished.
            assert!(r.next_entry().unwrap().is_none());
        });
    }

    #[test]
    fn empty_tree_yields_nothing() {
        let t = tempfile::tempdir().unwrap();
        let mut r = DirReader::open(t.path()).unwrap();
        assert!(r.next_entry().unwrap().is_none());
        assert_eq!(r.read_data(&mut [0; 8]).unwrap(), 0);
    }

    #[test]
    fn missing_root_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("nope");
        let err = DirReader::open(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn kinds_symlinks_fifo_devices_and_socket() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        symlink("/etc/passwd", p.join("abs")).unwrap();
        symlink("nonexistent/x", p.join("dangling")).unwrap();
        symlink("../../..", p.join("up")).unwrap();
        symlink(OsStr::from_bytes(b"caf\xe9"), p.join("latin1")).unwrap();
        let d = dirfd(p);
        rfs::mknodat(&d, "fifo", FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
        let null = rfs::makedev(1, 3);
        rfs::mknodat(
            &d,
            "null",
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            null,
        )
        .unwrap();
        let loop0 = rfs::makedev(7, 0);
        rfs::mknodat(
            &d,
            "loop0",
            FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            loop0,
        )
        .unwrap();
        let wh = rfs::makedev(0, 0);
        rfs::mknodat(&d, "whiteout", FileType::CharacterDevice, Mode::empty(), wh).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
        // Exact modes, whatever the umask.
        fs::set_permissions(p.join("fifo"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(p.join("loop0"), fs::Permissions::from_mode(0o660)).unwrap();
        // A symlink to a directory is not followed.
        fs::create_dir(p.join("real")).unwrap();
        fs::write(p.join("real/inside"), "x").unwrap();
        symlink("real", p.join("to-real")).unwrap();

        both_ways(p, |r, _| {
            let got = all(r);
            let kinds: Vec<(String, EntryKind)> = got
                .iter()
                .map(|e| (e.path.to_string(), e.kind.clone()))
                .collect();
            let sym = |t: &[u8]| EntryKind::Symlink { target: t.to_vec() };
            assert_eq!(
                kinds,
                [
                    ("abs".to_string(), sym(b"/etc/passwd")),
                    ("dangling".into(), sym(b"nonexistent/x")),
                    ("fifo".into(), EntryKind::Fifo),
                    ("latin1".into(), sym(b"caf\xe9")),
                    (
                        "loop0".into(),
                        EntryKind::BlockDevice { major: 7, minor: 0 }
                    ),
                    ("null".into(), EntryKind::CharDevice { major: 1, minor: 3 }),
                    ("real".into(), EntryKind::Dir),
                    (
                        "real/inside".into(),
                        EntryKind::File {
                            size: 1,
                            sparse: None
                        }
                    ),
                    ("to-real".into(), sym(b"real")),
                    ("up".into(), sym(b"../../..")),
                    (
                        "whiteout".into(),
                        EntryKind::CharDevice { major: 0, minor: 0 }
                    ),
                ]
            );
            let modes: Vec<u32> = got.iter().map(|e| e.meta.mode).collect();
            assert_eq!(modes[2], 0o640);
            assert_eq!(modes[4], 0o660);
            assert!(got
                .iter()
                .all(|e| e.meta.atime.is_none() && e.meta.ctime.is_none()));
            assert!(got
                .iter()
                .all(|e| e.meta.uname.is_empty() && e.meta.gname.is_empty()));
            assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
            assert!(
                r.warnings()[0].contains("socket `sock`"),
                "{:?}",
                r.warnings()
            );
        });
    }

    #[test]
    fn hard_links_point_to_the_first_path() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::write(p.join("a1"), "shared").unwrap();
        fs::create_dir(p.join("b")).unwrap();
        fs::hard_link(p.join("a1"), p.join("b/link")).unwrap();
        fs::hard_link(p.join("a1"), p.join("c")).unwrap();
        fs::write(p.join("d"), "alone").unwrap();
        fs::write(p.join("e"), "other").unwrap();
        fs::hard_link(p.join("e"), p.join("f")).unwrap();
        // Hard-linked fifos are linked too, like GNU tar does.
        let d = dirfd(p);
        rfs::mknodat(&d, "p1", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        fs::hard_link(p.join("p1"), p.join("p2")).unwrap();

        both_ways(p, |r, _| {
            let mut got = Vec::new();
            while let Some(e) = r.next_entry().unwrap() {
                let mut data = Vec::new();
                let mut buf = [0u8; 64];
                loop {
                    let n = r.read_data(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                got.push((e.path.to_string(), e.kind, data));
            }
            let link = |t: &[u8]| EntryKind::HardLink { target: lp(t) };
            let file = |n| EntryKind::File {
                size: n,
                sparse: None,
            };
            assert_eq!(
                got,
                [
                    ("a1".to_string(), file(6), b"shared".to_vec()),
                    ("b".into(), EntryKind::Dir, vec![]),
                    ("b/link".into(), link(b"a1"), vec![]),
                    ("c".into(), link(b"a1"), vec![]),
                    ("d".into(), file(5), b"alone".to_vec()),
                    ("e".into(), file(5), b"other".to_vec()),
                    ("f".into(), link(b"e"), vec![]),
                    ("p1".into(), EntryKind::Fifo, vec![]),
                    ("p2".into(), link(b"p1"), vec![]),
                ]
            );
            // Every inode left the map once all its links were seen.
            assert!(r.links.is_empty());
        });
    }

    #[test]
    fn metadata_xattrs_mtime_nanos_owner_and_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::create_dir(p.join("dir")).unwrap();
        fs::write(p.join("dir/file"), "x").unwrap();
        // chown clears setuid, so chown first.
        std::os::unix::fs::lchown(p.join("dir/file"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(p.join("dir/file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::set_permissions(p.join("dir"), fs::Permissions::from_mode(0o1777)).unwrap();
        let d = dirfd(p);
        let f = rfs::openat(&d, "dir/file", OFlags::RDONLY, Mode::empty()).unwrap();
        let flags = rfs::XattrFlags::empty();
        rfs::fsetxattr(&f, "user.b", b"2", flags).unwrap();
        rfs::fsetxattr(&f, "user.a", b"\x00\xff", flags).unwrap();
        rfs::fsetxattr(&f, "user.empty", b"", flags).unwrap();
        let dd = dirfd(&p.join("dir"));
        rfs::fsetxattr(&dd, "user.x", b"on a dir", flags).unwrap();
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rfs::Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 123_456_789,
            },
        };
        rfs::utimensat(&d, "dir/file", &times, AtFlags::empty()).unwrap();
        symlink("dir/file", p.join("link")).unwrap();
        // Symlinks and fifos cannot hold user.* xattrs, but trusted.* ones (as root).
        let proc = |name: &str| format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
        rfs::lsetxattr(proc("link"), "trusted.l", b"on a symlink", flags).unwrap();
        rfs::mknodat(&d, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        rfs::lsetxattr(proc("fifo"), "trusted.f", b"on a fifo", flags).unwrap();
        let link_times = rfs::Timestamps {
            last_access: times.last_access,
            last_modification: rfs::Timespec {
                tv_sec: -5,
                tv_nsec: 7,
            },
        };
        rfs::utimensat(&d, "link", &link_times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        // Set directory times last: creating entries in it changes them.
        let dir_times = rfs::Timestamps {
            last_access: times.last_access,
            last_modification: rfs::Timespec {
                tv_sec: 42,
                tv_nsec: 999_999_999,
            },
        };
        rfs::utimensat(&d, "dir", &dir_times, AtFlags::empty()).unwrap();

        both_ways(p, |r, _| {
            let got = all(r);
            assert_eq!(paths(&got), ["dir", "dir/file", "fifo", "link"]);
            let x = |n: &[u8], v: &[u8]| Xattr {
                name: n.to_vec(),
                value: v.to_vec(),
            };
            assert_eq!(got[0].meta.xattrs, [x(b"user.x", b"on a dir")]);
            assert_eq!(got[0].meta.mode, 0o1777);
            assert_eq!(got[0].meta.mtime, Timestamp::new(42, 999_999_999));
            let file = &got[1].meta;
            assert_eq!(
                file.xattrs,
                [
                    x(b"user.a", b"\x00\xff"),
                    x(b"user.b", b"2"),
                    x(b"user.empty", b"")
                ]
            );
            assert_eq!(file.mode, 0o4751);
            assert_eq!((file.uid, file.gid), (1234, 5678));
            assert_eq!(file.mtime, Timestamp::new(1_600_000_000, 123_456_789));
            assert_eq!(got[2].meta.xattrs, [x(b"trusted.f", b"on a fifo")]);
            assert_eq!(got[3].meta.mtime, Timestamp::new(-5, 7));
            assert_eq!(got[3].meta.xattrs, [x(b"trusted.l", b"on a symlink")]);
            assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        });
    }

    #[test]
    fn file_data_reads_back_exactly_and_unread_data_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        let mut big = Vec::with_capacity(3 << 20);
        let mut x: u32 = 12345;
        for _ in 0..(3 << 20) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            big.push((x >> 16) as u8);
        }
        fs::write(p.join("big"), &big).unwrap();
        fs::write(p.join("empty"), "").unwrap();
        fs::write(p.join("skipped"), "never read").unwrap();
        fs::write(p.join("small"), "hello\n").unwrap();
        for buf_len in [1usize, 4096 + 7, 1 << 20, 8 << 20] {
            let mut r = DirReader::open(p).unwrap();
            let mut buf = vec![0u8; buf_len];
            let mut read_all = |r: &mut DirReader| {
                let mut out = Vec::new();
                loop {
                    let n = r.read_data(&mut buf).unwrap();
                    if n == 0 {
                        return out;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
            };
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(
                e.kind,
                EntryKind::File {
                    size: big.len() as u64,
                    sparse: None
                }
            );
            assert!(read_all(&mut r) == big, "buffer of {buf_len}");
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(e.path, lp(b"empty"));
            assert_eq!(read_all(&mut r), b"");
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(e.path, lp(b"skipped"));
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(e.path, lp(b"small"));
            assert_eq!(read_all(&mut r), b"hello\n");
            assert!(r.next_entry().unwrap().is_none());
            assert!(r.warnings().is_empty());
        }
    }

    #[test]
    fn a_file_that_shrinks_is_an_error_one_that_grows_gives_its_announced_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::write(p.join("grows"), vec![b'g'; 100]).unwrap();
        fs::write(p.join("shrinks"), vec![b's'; 100]).unwrap();
        let mut r = DirReader::open(p).unwrap();
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.kind.data_len(), 100);
        fs::write(p.join("grows"), vec![b'G'; 200]).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(r.read_data(&mut buf).unwrap(), 100);
        assert_eq!(&buf[..100], &[b'G'; 100][..]);
        assert_eq!(r.read_data(&mut buf).unwrap(), 0);
        assert_eq!(r.warnings().len(), 1);
        assert!(
            r.warnings()[0].contains("`grows` grew"),
            "{:?}",
            r.warnings()
        );

        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, lp(b"shrinks"));
        fs::write(p.join("shrinks"), vec![b's'; 10]).unwrap();
        let mut small = [0u8; 8];
        assert_eq!(r.read_data(&mut small).unwrap(), 8);
        assert_eq!(r.read_data(&mut small).unwrap(), 2);
        let err = r.read_data(&mut small).unwrap_err().to_string();
        assert!(err.contains("shrinks") && err.contains("changed"), "{err}");
        assert!(err.contains("10 of the 100"), "{err}");
    }

    #[test]
    fn non_utf8_names_are_kept_exactly() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        let dir = p.join(OsStr::from_bytes(b"caf\xe9"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(OsStr::from_bytes(b"\xff\x01name")), "").unwrap();
        fs::write(p.join("cafe"), "").unwrap();
        fs::write(p.join(OsStr::from_bytes("café".as_bytes())), "").unwrap();
        both_ways(p, |r, _| {
            let got: Vec<Vec<u8>> = all(r).iter().map(|e| e.path.as_bytes().to_vec()).collect();
            assert_eq!(
                got,
                [
                    b"cafe".to_vec(),
                    "café".as_bytes().to_vec(), // c3 a9
                    b"caf\xe9".to_vec(),
                    b"caf\xe9/\xff\x01name".to_vec(),
                ]
            );
        });
    }

    /// Builds `depth` nested directories named `d` under `root`, calling `at(level, fd)` in
    /// each (level 1 is `root/d`).
    fn make_chain(root: &Path, depth: usize, mut at: impl FnMut(usize, &OwnedFd)) {
        let mut fd = dirfd(root);
        for level in 1..=depth {
            rfs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            fd = rfs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            at(level, &fd);
        }
    }

    /// Removes a chain made by `make_chain` without deep recursion: repeatedly moves the
    /// second level up to the root and removes the (now empty) first one.
    fn remove_chain(root: &Path) {
        let rootfd = dirfd(root);
        loop {
            let Ok(first) = rfs::openat(
                &rootfd,
                "d",
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            ) else {
                return;
            };
            for name in ["y", "z", "f"] {
                let _ = rfs::unlinkat(&first, name, AtFlags::empty());
            }
            if rfs::renameat(&first, "d", &rootfd, "next").is_ok() {
                drop(first);
                rfs::unlinkat(&rootfd, "d", AtFlags::REMOVEDIR).unwrap();
                rfs::renameat(&rootfd, "next", &rootfd, "d").unwrap();
            } else {
                drop(first);
                rfs::unlinkat(&rootfd, "d", AtFlags::REMOVEDIR).unwrap();
                return;
            }
        }
    }

    #[test]
    fn a_3000_deep_tree_is_read_with_bounded_fds() {
        const DEPTH: usize = 3000;
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        make_chain(p, DEPTH, |level, fd| {
            let name = match level {
                1 => "z",
                1500 => "y",
                DEPTH => "f",
                _ => return,
            };
            let f = rfs::openat(
                fd,
                name,
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            rustix::io::write(&f, name.as_bytes()).unwrap();
        });
        fs::write(p.join("zz"), "").unwrap();

        let mut r = DirReader::open(p).unwrap();
        let mut got = Vec::new();
        let mut max_open = 0;
        while let Some(e) = r.next_entry().unwrap() {
            let open = r.stack.iter().filter(|l| l.fd.is_some()).count();
            max_open = max_open.max(open);
            if e.kind.data_len() > 0 {
                let mut buf = [0u8; 4];
                let n = r.read_data(&mut buf).unwrap();
                assert_eq!(&buf[..n], e.path.file_name().unwrap());
            }
            got.push((e.path.as_bytes().len(), e.kind));
        }
        assert!(
            max_open <= MAX_OPEN_DIRS,
            "{max_open} directory fds open at once"
        );
        assert_eq!(got.len(), DEPTH + 4);
        let chain = |n: usize| 2 * n - 1; // length of "d/d/.../d" with n components
        for (i, (len, kind)) in got.iter().take(DEPTH).enumerate() {
            assert_eq!((*len, kind), (chain(i + 1), &EntryKind::Dir));
        }
        let file = |n| EntryKind::File {
            size: n,
            sparse: None,
        };
        assert_eq!(got[DEPTH], (chain(DEPTH) + 2, file(1)));
        assert_eq!(got[DEPTH + 1], (chain(1500) + 2, file(1)));
        assert_eq!(got[DEPTH + 2], (chain(1) + 2, file(1)));
        assert_eq!(got[DEPTH + 3], (2, file(0)));
        remove_chain(p);
    }

    #[test]
    fn a_directory_moved_during_the_walk_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        let depth = MAX_OPEN_DIRS + 20;
        make_chain(p, depth, |_, _| {});
        let mut r = DirReader::open(p).unwrap();
        for _ in 0..depth {
            assert_eq!(r.next_entry().unwrap().unwrap().kind, EntryKind::Dir);
        }
        // Move level 5 (d/d/d/d/d) to the root: its `..` is no longer level 4.
        let level4 = (0..4).fold(p.to_path_buf(), |acc, _| acc.join("d"));
        fs::rename(level4.join("d"), p.join("moved")).unwrap();
        let err = loop {
            match r.next_entry() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the move was not noticed"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("changed while being read"), "{err}");
        assert!(err.contains("`d/d/d/d/d` was moved out of it"), "{err}");
        assert!(r.next_entry().unwrap().is_none());
        fs::rename(p.join("moved"), level4.join("d")).unwrap();
    }

    #[test]
    fn overlay_upper_whiteouts_opaque_dirs_and_private_xattrs() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: overlay mounts need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for d in [
            "lower/gone-dir/x",
            "lower/opq/old",
            "upper",
            "work",
            "merged",
        ] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        fs::write(p.join("lower/gone"), "x").unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
            p.join("lower").display(),
            p.join("upper").display(),
            p.join("work").display()
        );
        let st = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(p.join("merged"))
            .status()
            .unwrap();
        assert!(st.success());
        let m = p.join("merged");
        fs::remove_file(m.join("gone")).unwrap();
        fs::remove_dir_all(m.join("gone-dir")).unwrap();
        fs::remove_dir_all(m.join("opq")).unwrap();
        fs::create_dir(m.join("opq")).unwrap();
        fs::write(m.join("opq/new"), "n").unwrap();
        rfs::setxattr(
            m.join("opq/new"),
            "user.kept",
            b"1",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        let umount = std::process::Command::new("umount")
            .arg(&m)
            .status()
            .unwrap();
        assert!(umount.success());
        // An image xattr escaped on disk comes back unescaped.
        let up = p.join("upper");
        rfs::setxattr(
            up.join("opq/new"),
            "trusted.overlay.overlay.img",
            b"v",
            rfs::XattrFlags::empty(),
        )
        .unwrap();

        let mut r = DirReader::open_overlay_upper(&up).unwrap();
        let got: Vec<(String, EntryKind, Vec<Vec<u8>>)> = all(&mut r)
            .into_iter()
            .map(|e| {
                let names = e.meta.xattrs.iter().map(|x| x.name.clone()).collect();
                (e.path.to_string(), e.kind, names)
            })
            .collect();
        let file = EntryKind::File {
            size: 1,
            sparse: None,
        };
        assert_eq!(
            got,
            vec![
                ("gone".into(), EntryKind::Whiteout, vec![]),
                ("gone-dir".into(), EntryKind::Whiteout, vec![]),
                ("opq".into(), EntryKind::Dir, vec![]),
                ("opq".into(), EntryKind::Opaque, vec![]),
                (
                    "opq/new".into(),
                    file,
                    vec![b"trusted.overlay.img".to_vec(), b"user.kept".to_vec()]
                ),
            ]
        );
        // The plain reader sees the devices as they are.
        let plain = all(&mut DirReader::open(&up).unwrap());
        assert_eq!(plain[0].kind, EntryKind::CharDevice { major: 0, minor: 0 });
    }

    #[test]
    fn a_filter_picks_entries_and_links_point_only_to_returned_names() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::create_dir_all(p.join("keep/sub")).unwrap();
        fs::create_dir_all(p.join("skip")).unwrap();
        fs::write(p.join("keep/sub/f"), "x").unwrap();
        fs::write(p.join("skip/first"), "l").unwrap();
        fs::hard_link(p.join("skip/first"), p.join("keep/sub/second")).unwrap();
        fs::hard_link(p.join("skip/first"), p.join("keep/sub/third")).unwrap();
        let want = ["keep/sub/f", "keep/sub/second", "keep/sub/third"];
        let filter: PathFilter = Box::new(move |path: &LayerPath| {
            let s = path.to_string();
            if want.contains(&s.as_str()) {
                Visit::Entry
            } else if want.iter().any(|w| w.starts_with(&format!("{s}/"))) {
                Visit::Descend
            } else {
                Visit::Skip
            }
        });
        let mut r = DirReader::open(p).unwrap().with_filter(filter);
        let got = all(&mut r);
        assert_eq!(
            paths(&got),
            ["keep/sub/f", "keep/sub/second", "keep/sub/third"]
        );
        assert_eq!(
            got[1].kind,
            EntryKind::File {
                size: 1,
                sparse: None
            }
        );
        assert_eq!(
            got[2].kind,
            EntryKind::HardLink {
                target: lp(b"keep/sub/second")
            }
        );
    }
}
