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

#[cfg(test)]
mod tests;
mod visit;
mod walk;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::xattr::XattrBufs;
use crate::{Entry, Error, LayerPath, LayerReader, Timestamp};

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

/// The regular file whose entry was returned last; [`DirReader::take_file`] hands it to
/// whoever reads its data elsewhere (the pack pipeline's output thread).
pub(crate) struct OpenFile {
    fd: OwnedFd,
    path: LayerPath,
    size: u64,
    remaining: u64,
}

impl OpenFile {
    /// The size the file had when its entry was made: exactly what [`OpenFile::read`]
    /// delivers in all.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Reads the next data into `buf`; 0 once `size` bytes were delivered. A file that
    /// ends early is an error; one that grew delivers `size` bytes and leaves a warning.
    /// When the rest fits in `buf` with a byte to spare, that byte is asked for too (to
    /// notice growth), so it may be overwritten.
    pub(crate) fn read(
        &mut self,
        root: &Path,
        buf: &mut [u8],
        warnings: &mut Vec<String>,
    ) -> Result<usize, Error> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        // When the rest fits in `buf`, ask for one byte more: getting it means the file grew.
        let want = match usize::try_from(self.remaining) {
            Ok(rest) if rest < buf.len() => rest + 1,
            _ => buf.len(),
        };
        loop {
            match rustix::io::read(&self.fd, &mut buf[..want]) {
                Ok(0) => {
                    return Err(io_error(
                        root,
                        "file changed while being read:",
                        &self.path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "it ended after {} of the {} bytes it had when listed",
                                self.size - self.remaining,
                                self.size
                            ),
                        ),
                    ));
                }
                Ok(n) => {
                    let n64 = n as u64;
                    if n64 > self.remaining {
                        warnings.push(format!(
                            "`{}` grew while being read; stored its first {} bytes",
                            self.path, self.size
                        ));
                        let rest = want - 1;
                        self.remaining = 0;
                        return Ok(rest);
                    }
                    self.remaining -= n64;
                    return Ok(n);
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_error(root, "cannot read", &self.path, e.into())),
            }
        }
    }
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

    /// Takes the open regular file of the entry returned last, for its data to be read
    /// elsewhere ([`OpenFile::read`]); [`LayerReader::read_data`] then delivers nothing.
    pub(crate) fn take_file(&mut self) -> Option<OpenFile> {
        self.file.take()
    }

    /// The root as given to [`DirReader::open`], for the messages of [`OpenFile::read`].
    pub(crate) fn root(&self) -> &Path {
        &self.root
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
        match self.file.as_mut() {
            Some(f) => f.read(&self.root, buf, &mut self.warnings),
            None => Ok(0),
        }
    }
}

/// `ROOT: WHAT `PATH`` as the context of an I/O error.
fn io_error(root: &Path, what: &str, path: &LayerPath, source: io::Error) -> Error {
    Error::io(format!("{}: {what} `{path}`", root.display()), source)
}
