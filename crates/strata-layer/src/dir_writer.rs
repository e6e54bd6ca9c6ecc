//! [`DirWriter`]: applies a layer onto a directory, with every operation confined to it.
//!
//! A layer is hostile input. Its entries can name symlinks planted earlier (by this layer
//! or a lower one) that point anywhere: `var/run -> /run`, `up -> ../../..`, loops. The
//! writer therefore never joins a path string onto the root. It opens the root once as an
//! `O_PATH` descriptor and resolves every parent directory with
//! `openat2(root, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the kernel resolves
//! symlinks chroot-style, so an absolute target is re-rooted and `..` stops at the root.
//! The last component is then handled with `*at` calls that never follow it
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `symlinkat`, `linkat` without
//! `AT_SYMLINK_FOLLOW`, `unlinkat`, `AT_SYMLINK_NOFOLLOW`), and metadata is set through the
//! returned descriptor (`fchown`, `fsetxattr`, `fchmod`, `futimens`) where there is one.
//! Parent descriptors are kept in a small cache (emptied whenever a directory or a symlink
//! is removed), so a file costs the same system calls as with GNU tar. Paths longer than
//! `PATH_MAX` are resolved in pieces, the first inside the root and each further one
//! beneath the previous piece's directory; symlink loops fail with an error (`ELOOP`).
//!
//! Layer semantics follow image-formats §6: existing non-directories (and directories
//! replaced by non-directories) are removed before the new entry is created, directories
//! merge, regular files are always new inodes (never `O_TRUNC` through a hard link or a
//! symlink). Whiteouts and opaque markers hide only what the *lower* layers hold: the
//! writer remembers every path this layer wrote and keeps them, wherever the marker sits
//! in the stream. Directory times (and modes that would stop the writer from filling a
//! directory, such as `0555`) are set in [`finish`](LayerWriter::finish), deepest first.
//!
//! Lifecycle: [`DirWriter::open`] an existing directory, optionally register an
//! [`on_replace`](DirWriter::on_replace) hook, then [`add`](LayerWriter::add) each entry
//! (followed by [`write_data`](LayerWriter::write_data) for a regular file's bytes) and
//! [`finish`](LayerWriter::finish). A writer dropped before `finish` leaves the tree
//! without its deferred directory metadata and opaque-directory cleanup.
//!
//! ```
//! use strata_layer::dir_writer::{DirWriter, DirWriterOptions};
//! use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter};
//!
//! let root = std::env::temp_dir().join(format!("strata-dir-writer-doc-{}", std::process::id()));
//! std::fs::create_dir(&root).unwrap();
//! let path = |s: &str| LayerPath::from_tar_name(s.as_bytes()).unwrap();
//!
//! let mut w = DirWriter::open(&root, DirWriterOptions::default()).unwrap();
//! let mut file = Entry::new(path("etc/motd"), EntryKind::File { size: 3, sparse: None });
//! file.meta.mode = 0o644;
//! w.add(&file).unwrap(); // `etc` is created as an implied 0755 directory
//! w.write_data(b"hi\n").unwrap();
//! // An absolute symlink, and a file written through it: it lands in ROOT/etc, never /etc.
//! w.add(&Entry::new(path("conf"), EntryKind::Symlink { target: b"/etc".to_vec() })).unwrap();
//! w.add(&Entry::new(path("conf/extra"), EntryKind::File { size: 0, sparse: None })).unwrap();
//! let summary = w.finish().unwrap();
//!
//! assert_eq!(summary.entries, 3);
//! assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hi\n");
//! assert!(root.join("etc/extra").is_file());
//! std::fs::remove_dir_all(&root).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, RawDir, Stat, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;

use crate::dir_reader::XattrBufs;
use crate::inroot::{self, CHUNK};
use crate::upper::{self, Below, Lowers};
use crate::{Entry, EntryKind, Error, LayerPath, LayerWriter, Metadata, SparseExtent, Timestamp};

/// Open parent directories kept for the next entries.
const CACHE_SIZE: usize = 16;
/// At most this many warnings are kept; the rest are counted.
const MAX_WARNINGS: usize = 1000;

/// What the writer may do beyond plain files, directories and links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirWriterOptions {
    /// Apply `trusted.*` and `security.*` xattrs other than `security.capability`
    /// (default false: they are dropped with a warning). `trusted.overlay.*` is always
    /// dropped: it belongs to the store's overlay mounts.
    pub privileged_xattrs: bool,
    /// chown entries to their uid/gid (default: true when running as root, else false).
    pub chown: bool,
    /// Create char/block devices (default: true when root; otherwise skipped with a warning).
    pub devices: bool,
}

impl Default for DirWriterOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        DirWriterOptions {
            privileged_xattrs: false,
            chown: root,
            devices: root,
        }
    }
}

/// What [`DirWriter::finish`](LayerWriter::finish) reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Entries added, whiteouts, opaque markers and skipped entries included.
    pub entries: u64,
    /// Regular-file data bytes written.
    pub data_bytes: u64,
    /// Things dropped or skipped (xattrs, devices, whiteouts of this layer's own paths).
    pub warnings: Vec<String>,
}

/// Called with a regular file this layer wrote, just before the writer removes it
/// (see [`DirWriter::on_replace`]).
pub type ReplaceHook = Box<dyn FnMut(&LayerPath, &File) -> Result<(), Error>>;

/// Applies a layer onto a directory; see the [module documentation](self).
pub struct DirWriter {
    root: Arc<OwnedFd>,
    opts: DirWriterOptions,
    cache: DirCache,
    /// Every path this layer created or merged (not implied parents), as bytes.
    written: BTreeSet<Box<[u8]>>,
    /// Opaque directories, cleaned in `finish`.
    opaque: Vec<LayerPath>,
    /// Directory entries whose times (and maybe mode) are set in `finish`; last wins.
    dir_meta: BTreeMap<Box<[u8]>, DirMeta>,
    current: Option<OpenFile>,
    hook: Option<ReplaceHook>,
    entries: u64,
    data_bytes: u64,
    warnings: Vec<String>,
    warnings_dropped: u64,
    /// Not running as root: EPERM on an xattr is expected, not an error.
    unprivileged: bool,
    /// This thread's umask is 0, so files are created with their final permission bits
    /// and need no `fchmod` unless they carry setuid, setgid or sticky bits.
    exact_create_mode: bool,
    /// Set by [`DirWriter::open_upper`]: the root is an overlay upper directory over these.
    lowers: Option<Lowers>,
    /// For reading the xattrs of lower entries copied up.
    xattr_bufs: Option<Box<XattrBufs>>,
}

struct DirMeta {
    path: LayerPath,
    /// The entry's mode when it was too restrictive to set before the children existed.
    mode: Option<u32>,
    mtime: Timestamp,
    atime: Timestamp,
}

/// The regular file whose data is being written.
struct OpenFile {
    path: LayerPath,
    file: File,
    meta: Metadata,
    size: u64,
    expected: u64,
    delivered: u64,
    /// For a sparse file: the extents, the current one and how much of it is written.
    sparse: Option<(Vec<SparseExtent>, usize, u64)>,
}

/// A few open parent directories, most recently used last.
#[derive(Default)]
struct DirCache {
    entries: Vec<(Box<[u8]>, Arc<OwnedFd>)>,
}

impl DirCache {
    fn get(&mut self, key: &[u8]) -> Option<Arc<OwnedFd>> {
        let pos = self.entries.iter().rposition(|(k, _)| &**k == key)?;
        let last = self.entries.len() - 1;
        if pos != last {
            let e = self.entries.remove(pos);
            self.entries.push(e);
        }
        self.entries.last().map(|(_, fd)| fd.clone())
    }

    fn put(&mut self, key: &[u8], fd: Arc<OwnedFd>) {
        if let Some(pos) = self.entries.iter().position(|(k, _)| &**k == key) {
            self.entries.remove(pos);
        } else if self.entries.len() >= CACHE_SIZE {
            self.entries.remove(0);
        }
        self.entries.push((key.into(), fd));
    }

    /// Called whenever a directory or a symlink disappears: any cached descriptor might
    /// have been reached through it.
    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// How a directory tree is swept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// Remove everything (the directory itself is removed by the caller or the parent frame).
    All,
    /// Remove what this layer did not write (opaque directory, whiteout of a directory
    /// holding paths of this layer). Kept directories are descended into.
    Lower,
}

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

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn shown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        ".".to_string()
    } else {
        bytes.escape_ascii().to_string()
    }
}

fn cname(bytes: &[u8], path: &LayerPath) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::apply(path, "name holds a NUL byte"))
}

/// The parent of `path` as bytes (empty for a top-level name).
fn parent_bytes(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999).into(),
    }
}

/// The calling thread's umask, from `/proc/thread-self/status` (reading it with
/// `umask(2)` would change it for a moment, for every thread sharing it).
fn thread_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn resolve_error(entry: &LayerPath, dir: &[u8], e: Errno) -> Error {
    let d = shown(dir);
    let reason = match e {
        Errno::LOOP => format!("refusing to resolve `{d}`: too many symlink levels (a symlink loop?)"),
        Errno::XDEV => format!(
            "refusing to resolve `{d}`: beyond {CHUNK} bytes a symlink may not lead above the piece of the path it is in"
        ),
        Errno::NAMETOOLONG => format!("cannot resolve `{d}`: a name in it is too long"),
        Errno::NOTDIR => format!("cannot resolve `{d}`: a component is not a directory"),
        Errno::NOENT => format!("`{d}` does not exist"),
        Errno::NOSYS => format!(
            "cannot resolve `{d}`: openat2 is unavailable (Linux < 5.6, or blocked by seccomp), and writing without in-root resolution is refused"
        ),
        _ => format!("cannot resolve `{d}` inside the root"),
    };
    Error::apply_io(entry, reason, io_err(e))
}

/// `unlinkat`, retried once after giving the directory's owner write access when the
/// directory is read-only (matters only when not running as root).
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

/// A path component still to resolve, and the symlink whose target it comes from.
type Pending = (Vec<u8>, Option<Rc<[u8]>>);

/// Marks the open directory `fd` (at `path`) opaque for overlayfs.
fn set_opaque(fd: BorrowedFd<'_>, path: &LayerPath) -> Result<(), Error> {
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

/// Why an xattr may not be applied, or `None` when it may.
fn xattr_refusal(name: &[u8], privileged: bool) -> Option<&'static str> {
    if name.starts_with(b"user.") || name == b"security.capability" {
        None
    } else if name.starts_with(b"trusted.overlay.") {
        Some("trusted.overlay.* is private to the store's overlay mounts")
    } else if name.starts_with(b"trusted.") || name.starts_with(b"security.") {
        (!privileged).then_some("privileged namespace (allowed only with privileged xattrs)")
    } else if name == b"system.posix_acl_access" || name == b"system.posix_acl_default" {
        None
    } else {
        Some("unknown xattr namespace")
    }
}

impl DirWriter {
    /// Opens `root`, which must be an existing directory, once (`O_PATH|O_DIRECTORY`);
    /// every later operation is resolved relative to that descriptor.
    pub fn open(root: &Path, options: DirWriterOptions) -> Result<Self, Error> {
        let fd = rfs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::io(
                format!("opening the target directory {}", root.display()),
                io_err(e),
            )
        })?;
        Ok(DirWriter {
            root: Arc::new(fd),
            opts: options,
            cache: DirCache::default(),
            written: BTreeSet::new(),
            opaque: Vec::new(),
            dir_meta: BTreeMap::new(),
            current: None,
            hook: None,
            entries: 0,
            data_bytes: 0,
            warnings: Vec::new(),
            warnings_dropped: 0,
            unprivileged: !rustix::process::geteuid().is_root(),
            exact_create_mode: thread_umask() == Some(0),
            lowers: None,
            xattr_bufs: None,
        })
    }

    /// Opens `upper`, the (unmounted) upper directory of an overlay whose lower
    /// directories are `lowers`, nearest first, to apply a layer as if through a mount of
    /// them: the merged view after [`finish`](LayerWriter::finish) is what applying the
    /// layer onto the merged view would give, but every call goes to the upper directory's
    /// own file system. Lower directories are copied up (with their metadata, leaving
    /// their parents' times alone) before anything is written in them, and lower files
    /// before a hard link to them; whiteouts of lower entries become 0/0 character
    /// devices, a directory replacing a lower entry or marked opaque gets
    /// `trusted.overlay.opaque=y`. Symlinks are followed through the merged view, confined
    /// to it. The lower directories are only read. See [`crate::upper`].
    pub fn open_upper(
        upper: &Path,
        lowers: &[PathBuf],
        options: DirWriterOptions,
    ) -> Result<Self, Error> {
        let mut w = DirWriter::open(upper, options)?;
        w.lowers = Some(Lowers::open(lowers)?);
        Ok(w)
    }

    /// Hook called with a read-only [`File`] of a regular file that this layer wrote
    /// earlier (non-empty), just before the writer removes or replaces it: an entry
    /// written twice, a directory replaced by a file, a file replaced by a link. Called
    /// for every such file, also those inside a directory tree being removed. The recipe
    /// recorder uses it to keep shadowed bodies. An error from the hook fails the entry.
    pub fn on_replace(&mut self, hook: ReplaceHook) {
        self.hook = Some(hook);
    }

    fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        } else {
            self.warnings_dropped += 1;
        }
    }

    fn mark_written(&mut self, path: &LayerPath) {
        if !self.written.contains(path.as_bytes()) {
            self.written.insert(path.as_bytes().into());
        }
    }

    fn is_written(&self, path: &[u8]) -> bool {
        self.written.contains(path)
    }

    /// True if this layer wrote something strictly below `path`.
    fn has_written_under(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return !self.written.is_empty();
        }
        let mut lo = path.to_vec();
        lo.push(b'/');
        let mut hi = path.to_vec();
        hi.push(b'/' + 1);
        self.written
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
            .next()
            .is_some()
    }

    /// Forgets deferred directory metadata for `path` and everything below it.
    fn forget_dirs_under(&mut self, path: &[u8]) {
        self.dir_meta.remove(path);
        let mut lo = path.to_vec();
        lo.push(b'/');
        let mut hi = path.to_vec();
        hi.push(b'/' + 1);
        let doomed: Vec<Box<[u8]>> = self
            .dir_meta
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.dir_meta.remove(&k);
        }
    }

    // ---- resolution -------------------------------------------------------------------

    /// The directory `dir`, resolved inside the root. With `create`, missing directories
    /// are created as implied 0755 root-owned directories; without it a missing (or
    /// non-directory) component gives `None`.
    fn dir_fd(
        &mut self,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Arc<OwnedFd>>, Error> {
        if dir.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        if let Some(fd) = self.cache.get(dir) {
            return Ok(Some(fd));
        }
        let fd = match inroot::resolve_dir(self.root.as_fd(), dir) {
            Ok(fd) => fd,
            // Not all in the upper directory: resolved through the merged view.
            Err(Errno::NOENT | Errno::NOTDIR) if self.lowers.is_some() => {
                match self.resolve_upper(dir, create, entry)? {
                    Some((fd, _)) => fd,
                    None => return Ok(None),
                }
            }
            Err(Errno::NOENT | Errno::NOTDIR) if create => self.create_dirs(dir, entry)?,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(resolve_error(entry, dir, e)),
        };
        self.keep_times(dir, fd.as_fd());
        let fd = Arc::new(fd);
        self.cache.put(dir, fd.clone());
        Ok(Some(fd))
    }

    /// A directory this layer changes but does not list keeps its times (as umoci and
    /// containers/storage leave them): they are read the first time it is resolved,
    /// before anything in it changes, and set again in `finish`. A later entry for the
    /// directory replaces them with its own.
    fn keep_times(&mut self, dir: &[u8], fd: BorrowedFd<'_>) {
        if self.dir_meta.contains_key(dir) {
            return;
        }
        let (Ok(st), Ok(path)) = (rfs::fstat(fd), LayerPath::from_tar_name(dir)) else {
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

    /// The parent directory of `path` (not the root) and its last component.
    fn parent(
        &mut self,
        path: &LayerPath,
        create: bool,
    ) -> Result<Option<(Arc<OwnedFd>, CString)>, Error> {
        let name = cname(path.file_name().unwrap_or_default(), path)?;
        Ok(self
            .dir_fd(parent_bytes(path.as_bytes()), create, path)?
            .map(|fd| (fd, name)))
    }

    /// Creates the missing directories of `dir`, one component at a time from the root:
    /// each existing component is opened with `O_NOFOLLOW`; a symlink component is
    /// resolved again in the root (its whole prefix, through `openat2`).
    fn create_dirs(&mut self, dir: &[u8], entry: &LayerPath) -> Result<OwnedFd, Error> {
        let root = self.root.clone();
        let mut cur: Option<OwnedFd> = None;
        let mut end = 0;
        for comp in dir.split(|&b| b == b'/') {
            end += comp.len();
            let prefix = &dir[..end];
            end += 1;
            if comp.is_empty() {
                continue;
            }
            let name = cname(comp, entry)?;
            let base = cur.as_ref().map_or(root.as_fd(), |f| f.as_fd());
            let opened = rfs::openat(
                base,
                &name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let next = match opened {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.make_implied_dir(base, &name, prefix, entry)?,
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let st = rfs::statat(base, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                        Error::apply_io(
                            entry,
                            format!("cannot inspect `{}`", shown(prefix)),
                            io_err(e),
                        )
                    })?;
                    if file_type(&st) != FileType::Symlink {
                        return Err(Error::apply(
                            entry,
                            format!(
                                "cannot create parent directories: `{}` is not a directory",
                                shown(prefix)
                            ),
                        ));
                    }
                    match inroot::resolve_dir(root.as_fd(), prefix) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) => {
                            return Err(Error::apply(
                                entry,
                                format!(
                                    "cannot create parent directories: `{}` is a symlink whose target does not exist inside the root",
                                    shown(prefix)
                                ),
                            ))
                        }
                        Err(Errno::NOTDIR) => {
                            return Err(Error::apply(
                                entry,
                                format!(
                                    "cannot create parent directories: `{}` is a symlink to something that is not a directory",
                                    shown(prefix)
                                ),
                            ))
                        }
                        Err(e) => return Err(resolve_error(entry, prefix, e)),
                    }
                }
                Err(e) => {
                    return Err(Error::apply_io(
                        entry,
                        format!("cannot open parent directory `{}`", shown(prefix)),
                        io_err(e),
                    ))
                }
            };
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => Err(Error::apply(entry, "empty parent path")),
        }
    }

    /// mkdir of an implied parent: 0755 whatever the umask, owned by root when chowning.
    fn make_implied_dir(
        &mut self,
        base: BorrowedFd<'_>,
        name: &CStr,
        prefix: &[u8],
        entry: &LayerPath,
    ) -> Result<OwnedFd, Error> {
        let fail = |what: &str, e: Errno| {
            Error::apply_io(
                entry,
                format!("cannot {what} implied directory `{}`", shown(prefix)),
                io_err(e),
            )
        };
        match rfs::mkdirat(base, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail("create", e)),
        }
        let fd = rfs::openat(
            base,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open", e))?;
        if self.opts.chown {
            rfs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT)).map_err(|e| fail("chown", e))?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| fail("chmod", e))?;
        Ok(fd)
    }

    // ---- an overlay upper directory (open_upper) ----------------------------------------

    /// The upper directory `dir` resolved through the merged view, with the lower part of
    /// the merged directory: every directory on the way is copied up if only a lower
    /// layer holds it, symlinks (upper or lower) are followed with `..` and absolute
    /// targets kept inside the root. With `create`, missing directories are created as
    /// implied ones; without it, a missing or non-directory component gives `None`.
    fn resolve_upper(
        &mut self,
        dir: &[u8],
        create_asked: bool,
        entry: &LayerPath,
    ) -> Result<Option<(OwnedFd, Below)>, Error> {
        let fail = |e: Errno| resolve_error(entry, dir, e);
        let mut clean: Vec<Vec<u8>> = Vec::new();
        let (mut cur, mut below) = self.walk_upper(&clean).map_err(fail)?;
        // Each component, and the symlink it came from: a symlink's target must exist
        // (as when resolving in a plain root), only the entry's own components are implied.
        let mut queue: VecDeque<Pending> = dir
            .split(|&b| b == b'/')
            .map(|c| (c.to_vec(), None))
            .collect();
        let mut links = 0;
        while let Some((comp, via)) = queue.pop_front() {
            let create = create_asked && via.is_none();
            let dangling = |create_asked: bool| -> Result<Option<(OwnedFd, Below)>, Error> {
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
                (cur, below) = self.walk_upper(&clean).map_err(fail)?;
                continue;
            }
            let name = cname(&comp, entry)?;
            let mut prefix = clean.join(&b'/');
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&comp);
            let here = match rfs::statat(&cur, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(fail(e)),
            };
            let target = match here {
                Some(st) if file_type(&st) == FileType::Directory => {
                    let fd = upper::open_dir(cur.as_fd(), &name).map_err(fail)?;
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
                    rfs::readlinkat(&cur, &name, Vec::new()).map_err(fail)?
                }
                Some(st) if upper::is_whiteout(&st) && !create => return dangling(create_asked),
                Some(st) if upper::is_whiteout(&st) => {
                    // The directory replaces the whiteout and keeps hiding what it hid.
                    unlink_in(cur.as_fd(), &name, AtFlags::empty()).map_err(fail)?;
                    let hid = upper::entry(&below, &name).map_err(fail)?.is_some();
                    let fd = self.make_implied_dir(cur.as_fd(), &name, &prefix, entry)?;
                    if hid {
                        set_opaque(fd.as_fd(), entry)?;
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
                            self.copy_up(cur.as_fd(), &name, ldir, &lst, entry)?;
                            let fd = upper::open_dir(cur.as_fd(), &name).map_err(fail)?;
                            below = upper::descend(&below, &name).map_err(fail)?;
                            cur = fd;
                            clean.push(comp);
                            continue;
                        }
                        Some((ldir, FileType::Symlink, _)) => {
                            rfs::readlinkat(ldir, &name, Vec::new()).map_err(fail)?
                        }
                        Some(_) => return not_a_directory(create, &prefix, entry),
                        None if create => {
                            let fd = self.make_implied_dir(cur.as_fd(), &name, &prefix, entry)?;
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
            let target = target.into_bytes();
            if target.first() == Some(&b'/') {
                clean.clear();
                (cur, below) = self.walk_upper(&clean).map_err(fail)?;
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
    fn walk_upper(&self, clean: &[Vec<u8>]) -> Result<(OwnedFd, Below), Errno> {
        let lowers = self.lowers.as_ref().ok_or(Errno::INVAL)?;
        let mut cur = upper::open_dir(self.root.as_fd(), c".")?;
        let mut below = lowers.root()?;
        for comp in clean {
            let name = CString::new(comp.as_slice()).map_err(|_| Errno::INVAL)?;
            let fd = upper::open_dir(cur.as_fd(), &name)?;
            below = if upper::is_opaque(fd.as_fd()) {
                Vec::new()
            } else {
                upper::descend(&below, &name)?
            };
            cur = fd;
        }
        Ok((cur, below))
    }

    /// Whether a lower layer's entry shows through at `path` (upper mode only).
    fn lower_holds(&mut self, path: &LayerPath) -> Result<bool, Error> {
        if self.lowers.is_none() || path.is_root() {
            return Ok(false);
        }
        Ok(self.lower_at(path, None, |_| false)?.is_some())
    }

    /// The stat of the lower entry that shows through at `path` (upper mode), and
    /// whether it was copied up into `into`, the upper directory of its parent: it is
    /// when `copy` says so for its type.
    fn lower_at(
        &mut self,
        path: &LayerPath,
        into: Option<BorrowedFd<'_>>,
        copy: fn(FileType) -> bool,
    ) -> Result<Option<(Stat, bool)>, Error> {
        let name = cname(path.file_name().unwrap_or_default(), path)?;
        let Some((_, below)) = self.resolve_upper(parent_bytes(path.as_bytes()), false, path)?
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
                self.copy_up(dir, &name, ldir, &lst, path)?;
                Ok(Some((lst, true)))
            }
            _ => Ok(Some((lst, false))),
        }
    }

    /// Copies the lower entry `name` of `ldir` (stat `lst`) into the upper directory
    /// `dir` with its owner, mode, xattrs and times, as overlayfs copies up: data for a
    /// regular file, nothing below a directory; `dir`'s own times stay as they were.
    fn copy_up(
        &mut self,
        dir: BorrowedFd<'_>,
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
        let parent =
            upper::open_dir(dir, c".").map_err(|e| fail("open its directory", io_err(e)))?;
        let pst = rfs::fstat(&parent).map_err(|e| fail("inspect its directory", io_err(e)))?;
        let bufs = self
            .xattr_bufs
            .get_or_insert_with(|| Box::new(XattrBufs::new()));
        let mut warnings = Vec::new();
        let mut xattrs = bufs.read_at(ldir, name.to_bytes(), path, &mut warnings);
        xattrs.retain(|x| !x.name.starts_with(b"trusted.overlay."));
        for w in warnings {
            self.warn(w);
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
        let ftype = file_type(lst);
        match ftype {
            FileType::Directory => {
                rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| fail("mkdir", io_err(e)))?;
                let fd = upper::open_dir(dir, name).map_err(|e| fail("open", io_err(e)))?;
                self.apply_meta_fd(fd.as_fd(), path, &meta, Some(meta.mode), true)?;
            }
            FileType::RegularFile => {
                let src = rfs::openat(
                    ldir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open the lower file", io_err(e)))?;
                let dst = rfs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| fail("create", io_err(e)))?;
                let mut dst = File::from(dst);
                io::copy(&mut File::from(src), &mut dst).map_err(|e| fail("copy its data", e))?;
                self.apply_meta_fd(dst.as_fd(), path, &meta, Some(meta.mode), true)?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(ldir, name, Vec::new())
                    .map_err(|e| fail("read the symlink", io_err(e)))?;
                rfs::symlinkat(target.as_c_str(), dir, name)
                    .map_err(|e| fail("create the symlink", io_err(e)))?;
                self.apply_meta_at(dir, name, path, &meta, true)?;
            }
            _ => {
                rfs::mknodat(dir, name, ftype, Mode::from_raw_mode(0o600), lst.st_rdev)
                    .map_err(|e| fail("create the node", io_err(e)))?;
                self.apply_meta_at(dir, name, path, &meta, false)?;
            }
        }
        rfs::futimens(&parent, &inroot::times_of(&pst))
            .map_err(|e| fail("keep its directory's times", io_err(e)))
    }

    /// A whiteout of the lower entry `name` in `dir`.
    fn make_whiteout(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error> {
        rfs::mknodat(dir, name, FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(|e| Error::apply_io(path, "cannot create the whiteout", io_err(e)))
    }

    /// In upper mode, hides every lower entry of the merged root that this layer did not
    /// write, as an opaque root would (overlayfs does not honour an opaque upper root):
    /// a whiteout for each name the upper directory lacks, `opaque` for each directory
    /// this layer kept there.
    fn hide_lower_root(&mut self) -> Result<(), Error> {
        let root = LayerPath::root();
        let lowers_fail =
            |e: Errno| Error::apply_io(&root, "cannot look into the lower layers", io_err(e));
        let Some(lowers) = self.lowers.as_ref() else {
            return Ok(());
        };
        let below = lowers.root().map_err(lowers_fail)?;
        let names = upper::names(&below).map_err(lowers_fail)?;
        let top = self.root.clone();
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
            match rfs::statat(&*top, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => self.make_whiteout(top.as_fd(), &name, &path)?,
                Ok(st) if file_type(&st) == FileType::Directory => {
                    let fd = upper::open_dir(top.as_fd(), &name)
                        .map_err(|e| Error::apply_io(&path, "cannot open directory", io_err(e)))?;
                    set_opaque(fd.as_fd(), &path)?;
                }
                Ok(_) => {}
                Err(e) => return Err(Error::apply_io(&path, "cannot inspect", io_err(e))),
            }
        }
        Ok(())
    }

    // ---- removal ----------------------------------------------------------------------

    /// Calls the replace hook if `name` (at `path`) is a non-empty regular file this layer wrote.
    fn run_hook(
        &mut self,
        dir: BorrowedFd<'_>,
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
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::apply_io(path, "cannot open the file being replaced", io_err(e)))?;
        let file = File::from(fd);
        match self.hook.as_mut() {
            Some(hook) => hook(path, &file),
            None => Ok(()),
        }
    }

    /// Removes whatever is at `name` in `dir` (nothing if absent), whole trees included.
    fn remove_existing(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &LayerPath,
    ) -> Result<(), Error> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
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
                let fd = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?;
                self.sweep(fd, path.clone(), Sweep::All)?;
                unlink_in(dir, name, AtFlags::REMOVEDIR).map_err(fail)?;
                self.forget_dirs_under(path.as_bytes());
            }
            FileType::Symlink => {
                self.cache.clear();
                unlink_in(dir, name, AtFlags::empty()).map_err(fail)?;
            }
            _ => {
                self.run_hook(dir, name, path, &st)?;
                unlink_in(dir, name, AtFlags::empty()).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Lists one directory of a sweep: removes the non-directories that go, returns the
    /// subdirectories to visit (to empty and remove, or to clean of lower entries).
    fn sweep_dir(
        &mut self,
        fd: &OwnedFd,
        path: &LayerPath,
        sweep: Sweep,
    ) -> Result<Vec<(CString, Sweep)>, Error> {
        let fail = |what: &str, e: Errno| {
            Error::apply_io(path, format!("cannot {what} while removing"), io_err(e))
        };
        let mut children: Vec<(CString, FileType)> = Vec::new();
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut rd = RawDir::new(fd, &mut buf);
        while let Some(ent) = rd.next() {
            let ent = ent.map_err(|e| fail("read a directory", e))?;
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            children.push((name.to_owned(), ent.file_type()));
        }
        // Paths are needed to keep this layer's entries and to call the hook.
        let need_paths = sweep == Sweep::Lower
            || (self.hook.is_some() && self.has_written_under(path.as_bytes()));
        let mut pending = Vec::new();
        for (name, mut ftype) in children {
            if ftype == FileType::Unknown {
                let st = rfs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail("inspect an entry", e))?;
                ftype = file_type(&st);
            }
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
            if let (Sweep::Lower, Some(c)) = (sweep, &child) {
                if self.is_written(c.as_bytes()) || self.has_written_under(c.as_bytes()) {
                    if ftype == FileType::Directory {
                        pending.push((name, Sweep::Lower));
                    }
                    continue;
                }
            }
            if ftype == FileType::Directory {
                pending.push((name, Sweep::All));
                continue;
            }
            if let Some(c) = &child {
                if self.hook.is_some()
                    && ftype == FileType::RegularFile
                    && self.is_written(c.as_bytes())
                {
                    let st = rfs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| fail("inspect an entry", e))?;
                    self.run_hook(fd.as_fd(), &name, c, &st)?;
                }
            }
            unlink_in(fd.as_fd(), &name, AtFlags::empty()).map_err(|e| fail("unlink", e))?;
        }
        Ok(pending)
    }

    /// Sweeps the tree of the open directory `top` (see [`Sweep`]), iteratively: deep trees
    /// cost neither stack nor descriptors. Never crosses into another filesystem, never
    /// follows a symlink. The caller removes `top` itself if it should go.
    fn sweep(&mut self, top: OwnedFd, top_path: LayerPath, sweep: Sweep) -> Result<(), Error> {
        let st = rfs::fstat(&top)
            .map_err(|e| Error::apply_io(&top_path, "cannot inspect directory", io_err(e)))?;
        let top_dev = st.st_dev;
        let pending = self.sweep_dir(&top, &top_path, sweep)?;
        let mut stack = vec![Frame {
            name: CString::default(),
            path: top_path,
            dev: st.st_dev,
            ino: st.st_ino,
            sweep,
            pending,
        }];
        let mut cur = top;
        while let Some(frame) = stack.last_mut() {
            if let Some((name, sub)) = frame.pending.pop() {
                let path = frame
                    .path
                    .join(name.to_bytes())
                    .map_err(|_| Error::apply(&frame.path, "unexpected name in a directory"))?;
                let fd = match rfs::openat(
                    &cur,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => continue,
                    Err(e) => {
                        return Err(Error::apply_io(
                            &path,
                            "cannot open directory to remove it",
                            io_err(e),
                        ))
                    }
                };
                let st = rfs::fstat(&fd)
                    .map_err(|e| Error::apply_io(&path, "cannot inspect directory", io_err(e)))?;
                if st.st_dev != top_dev {
                    return Err(Error::apply(
                        &path,
                        "refusing to remove across a mount point",
                    ));
                }
                let pending = self.sweep_dir(&fd, &path, sub)?;
                stack.push(Frame {
                    name,
                    path,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    sweep: sub,
                    pending,
                });
                cur = fd;
            } else {
                let Some(done) = stack.pop() else { break };
                let Some(parent) = stack.last() else { break };
                let up = rfs::openat(
                    &cur,
                    c"..",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    Error::apply_io(
                        &done.path,
                        "cannot return to the parent directory",
                        io_err(e),
                    )
                })?;
                let st = rfs::fstat(&up).map_err(|e| {
                    Error::apply_io(&parent.path, "cannot inspect directory", io_err(e))
                })?;
                if (st.st_dev, st.st_ino) != (parent.dev, parent.ino) {
                    return Err(Error::apply(
                        &parent.path,
                        "the directory tree changed while it was being removed",
                    ));
                }
                if done.sweep == Sweep::All {
                    unlink_in(up.as_fd(), &done.name, AtFlags::REMOVEDIR).map_err(|e| {
                        Error::apply_io(&done.path, "cannot remove directory", io_err(e))
                    })?;
                }
                cur = up;
            }
        }
        Ok(())
    }

    // ---- metadata ---------------------------------------------------------------------

    fn owner(&self, path: &LayerPath, meta: &Metadata) -> Result<Option<(Uid, Gid)>, Error> {
        if !self.opts.chown {
            return Ok(None);
        }
        // u32::MAX is -1, "leave unchanged", for chown(2).
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| Error::apply(path, format!("{what} {v} is out of range")))
        };
        Ok(Some((
            Uid::from_raw(id(meta.uid, "uid")?),
            Gid::from_raw(id(meta.gid, "gid")?),
        )))
    }

    /// Handles a setxattr result by the policy: unsupported → warning.
    fn xattr_result(
        &mut self,
        path: &LayerPath,
        name: &[u8],
        r: Result<(), Errno>,
        special: bool,
    ) -> Result<(), Error> {
        match r {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: the filesystem does not support it",
                    shown(name)
                ));
                Ok(())
            }
            // Linux refuses user.* on symlinks and device nodes.
            Err(Errno::PERM) if special && name.starts_with(b"user.") => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: user.* attributes are only allowed on files and directories",
                    shown(name)
                ));
                Ok(())
            }
            Err(Errno::PERM) if self.unprivileged => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: not permitted without privileges",
                    shown(name)
                ));
                Ok(())
            }
            // A malformed value (a 28-byte v3 capability, say) is dropped, not fatal: not
            // applying an attribute grants nothing, and the rest of the layer is sound.
            Err(Errno::INVAL) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: the kernel rejected its value as malformed",
                    shown(name)
                ));
                Ok(())
            }
            Err(e) => Err(Error::apply_io(
                path,
                format!("cannot set xattr `{}`", shown(name)),
                io_err(e),
            )),
        }
    }

    fn allowed_xattr(&mut self, path: &LayerPath, name: &[u8]) -> bool {
        match xattr_refusal(name, self.opts.privileged_xattrs) {
            None => true,
            Some(why) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` dropped: {why}",
                    shown(name)
                ));
                false
            }
        }
    }

    /// Times through `set`; if the kernel rejects them, clamps into 1970..=2^63 and warns.
    fn set_times(
        &mut self,
        path: &LayerPath,
        mtime: Timestamp,
        atime: Timestamp,
        set: impl Fn(&Timestamps) -> Result<(), Errno>,
    ) -> Result<(), Error> {
        let ts = Timestamps {
            last_access: timespec(atime),
            last_modification: timespec(mtime),
        };
        match set(&ts) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::OVERFLOW) => {
                let clamp = |t: Timestamp| if t.secs < 0 { Timestamp::EPOCH } else { t };
                let ts = Timestamps {
                    last_access: timespec(clamp(atime)),
                    last_modification: timespec(clamp(mtime)),
                };
                set(&ts).map_err(|e| Error::apply_io(path, "cannot set times", io_err(e)))?;
                self.warn(format!(
                    "times of `{path}` were rejected by the filesystem and clamped to 1970"
                ));
                Ok(())
            }
            Err(e) => Err(Error::apply_io(path, "cannot set times", io_err(e))),
        }
    }

    /// chown → xattrs → chmod → times through an open descriptor (files, directories).
    fn apply_meta_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &LayerPath,
        meta: &Metadata,
        mode: Option<u32>,
        times: bool,
    ) -> Result<(), Error> {
        if let Some((uid, gid)) = self.owner(path, meta)? {
            rfs::fchown(fd, Some(uid), Some(gid))
                .map_err(|e| Error::apply_io(path, "cannot chown", io_err(e)))?;
        }
        for x in &meta.xattrs {
            if self.allowed_xattr(path, &x.name) {
                let r = rfs::fsetxattr(fd, &x.name[..], &x.value, XattrFlags::empty());
                self.xattr_result(path, &x.name, r, false)?;
            }
        }
        if let Some(m) = mode {
            rfs::fchmod(fd, Mode::from_raw_mode(m & 0o7777))
                .map_err(|e| Error::apply_io(path, "cannot chmod", io_err(e)))?;
        }
        if times {
            let atime = meta.atime.unwrap_or(meta.mtime);
            self.set_times(path, meta.mtime, atime, |ts| rfs::futimens(fd, ts))?;
        }
        Ok(())
    }

    /// chown → xattrs → chmod → times for `name` in `dir`, never following it (symlinks,
    /// devices, fifos: nodes that cannot be opened for this without side effects).
    fn apply_meta_at(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &LayerPath,
        meta: &Metadata,
        is_symlink: bool,
    ) -> Result<(), Error> {
        if let Some((uid, gid)) = self.owner(path, meta)? {
            rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::apply_io(path, "cannot chown", io_err(e)))?;
        }
        if !meta.xattrs.is_empty() {
            // No fd-based setxattr for these nodes: lsetxattr through the parent's
            // descriptor in /proc, which resolves the directory we hold, and then `name`
            // without following it.
            let mut proc_path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            proc_path.extend_from_slice(name.to_bytes());
            let proc_path = Path::new(OsStr::from_bytes(&proc_path));
            for x in &meta.xattrs {
                if !self.allowed_xattr(path, &x.name) {
                    continue;
                }
                if is_symlink && x.name.starts_with(b"user.") {
                    self.warn(format!(
                        "xattr `{}` on symlink `{path}` not applied: Linux allows user.* only on files and directories",
                        shown(&x.name)
                    ));
                    continue;
                }
                let r = rfs::lsetxattr(proc_path, &x.name[..], &x.value, XattrFlags::empty());
                self.xattr_result(path, &x.name, r, true)?;
            }
        }
        if !is_symlink {
            // fchmodat has no working AT_SYMLINK_NOFOLLOW before fchmodat2, and a device
            // must not be opened. The node was created a moment ago by this writer in a
            // directory only this writer changes, so `name` is not a symlink.
            rfs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| Error::apply_io(path, "cannot chmod", io_err(e)))?;
        }
        let atime = meta.atime.unwrap_or(meta.mtime);
        self.set_times(path, meta.mtime, atime, |ts| {
            rfs::utimensat(dir, name, ts, AtFlags::SYMLINK_NOFOLLOW)
        })
    }

    // ---- entries ----------------------------------------------------------------------

    /// Finishes the regular file being written: checks its length, punches the sparse
    /// tail, applies its metadata (after the data: a write clears `security.capability`).
    fn complete_current(&mut self) -> Result<(), Error> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        if cur.delivered != cur.expected {
            return Err(Error::apply(
                &cur.path,
                format!(
                    "only {} of {} data bytes were delivered",
                    cur.delivered, cur.expected
                ),
            ));
        }
        if cur.sparse.is_some() {
            rfs::ftruncate(&cur.file, cur.size).map_err(|e| {
                Error::apply_io(&cur.path, "cannot set the size of a sparse file", io_err(e))
            })?;
        }
        // Created with its permission bits already (umask 0), a file needs a chmod only
        // for setuid, setgid or sticky, which must follow the chown that clears them.
        let mode = if self.exact_create_mode && cur.meta.mode & 0o7000 == 0 {
            None
        } else {
            Some(cur.meta.mode)
        };
        self.apply_meta_fd(cur.file.as_fd(), &cur.path, &cur.meta, mode, true)
    }

    fn add_root(&mut self, entry: &Entry) -> Result<(), Error> {
        match entry.kind {
            // Its metadata is ignored (image-formats §6.4).
            EntryKind::Dir => Ok(()),
            EntryKind::Opaque => {
                self.opaque.push(LayerPath::root());
                Ok(())
            }
            EntryKind::Whiteout => Err(Error::apply(
                &entry.path,
                "a whiteout cannot remove the root",
            )),
            _ => Err(Error::apply(&entry.path, "root entry must be a directory")),
        }
    }

    fn add_file(
        &mut self,
        entry: &Entry,
        size: u64,
        sparse: Option<&[SparseExtent]>,
    ) -> Result<(), Error> {
        let path = &entry.path;
        if let Some(extents) = sparse {
            for e in extents {
                match e.offset.checked_add(e.len) {
                    Some(end) if end <= size => {}
                    _ => {
                        return Err(Error::apply(
                            path,
                            "a sparse extent lies beyond the file's size",
                        ))
                    }
                }
            }
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut removed = false;
        let create_mode = if self.exact_create_mode {
            entry.meta.mode & 0o777
        } else {
            0o600
        };
        let fd = loop {
            match rfs::openat(
                &*dir,
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(create_mode),
            ) {
                Ok(fd) => break fd,
                Err(Errno::EXIST) if !removed => {
                    self.remove_existing(dir.as_fd(), &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create file", io_err(e))),
            }
        };
        self.mark_written(path);
        self.current = Some(OpenFile {
            path: path.clone(),
            file: File::from(fd),
            meta: entry.meta.clone(),
            size,
            expected: entry.kind.data_len(),
            delivered: 0,
            sparse: sparse.map(|e| (e.to_vec(), 0, 0)),
        });
        if entry.kind.data_len() == 0 {
            self.complete_current()?;
        }
        Ok(())
    }

    fn add_dir(&mut self, entry: &Entry) -> Result<(), Error> {
        let path = &entry.path;
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let fail = |what: &str, e: Errno| {
            Error::apply_io(path, format!("cannot {what} directory"), io_err(e))
        };
        let mut replaced = false;
        match rfs::mkdirat(&*dir, &name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail("inspect", e))?;
                if file_type(&st) != FileType::Directory {
                    self.remove_existing(dir.as_fd(), &name, path)?;
                    rfs::mkdirat(&*dir, &name, Mode::from_raw_mode(0o700))
                        .map_err(|e| fail("create", e))?;
                    replaced = true;
                }
            }
            Err(e) => return Err(fail("create", e)),
        }
        let fd = rfs::openat(
            &*dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open", e))?;
        // In an upper directory, a directory that replaced what hid a lower entry (a
        // file, a whiteout) must not merge with the lower directory it hid.
        if replaced && self.lower_holds(path)? {
            set_opaque(fd.as_fd(), path)?;
        }
        // A mode that would stop us from creating children (0555) is set in finish().
        let mode = entry.meta.mode & 0o7777;
        let (now, later) = if mode & 0o700 == 0o700 {
            (mode, None)
        } else {
            (mode | 0o700, Some(mode))
        };
        self.apply_meta_fd(fd.as_fd(), path, &entry.meta, Some(now), false)?;
        self.mark_written(path);
        self.dir_meta.insert(
            path.as_bytes().into(),
            DirMeta {
                path: path.clone(),
                mode: later,
                mtime: entry.meta.mtime,
                atime: entry.meta.atime.unwrap_or(entry.meta.mtime),
            },
        );
        self.cache.put(path.as_bytes(), Arc::new(fd));
        Ok(())
    }

    fn add_symlink(&mut self, entry: &Entry, target: &[u8]) -> Result<(), Error> {
        let path = &entry.path;
        if target.contains(&0) {
            return Err(Error::apply(path, "symlink target holds a NUL byte"));
        }
        if target.is_empty() {
            return Err(Error::apply(path, "symlink target is empty"));
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut removed = false;
        loop {
            match rfs::symlinkat(target, &*dir, &name) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    self.remove_existing(dir.as_fd(), &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create symlink", io_err(e))),
            }
        }
        self.mark_written(path);
        self.apply_meta_at(dir.as_fd(), &name, path, &entry.meta, true)
    }

    fn add_hardlink(&mut self, entry: &Entry, target: &LayerPath) -> Result<(), Error> {
        let path = &entry.path;
        if target.is_root() {
            return Err(Error::apply(path, "hard link to the root directory"));
        }
        let missing = || Error::apply(path, format!("hard link target `{target}` does not exist"));
        let Some((tdir, tname)) = self.parent(target, false)? else {
            return Err(missing());
        };
        let mut tst = rfs::statat(&*tdir, &tname, AtFlags::SYMLINK_NOFOLLOW);
        if self.lowers.is_some() {
            match &tst {
                Ok(st) if upper::is_whiteout(st) => return Err(missing()),
                // Only a lower layer holds it: copied up first, as overlayfs does.
                Err(Errno::NOENT)
                    if matches!(
                        self.lower_at(target, Some(tdir.as_fd()), |t| t != FileType::Directory)?,
                        Some((_, true))
                    ) =>
                {
                    tst = rfs::statat(&*tdir, &tname, AtFlags::SYMLINK_NOFOLLOW);
                }
                _ => {}
            }
        }
        let tst = match tst {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    format!("cannot inspect hard link target `{target}`"),
                    io_err(e),
                ))
            }
        };
        if file_type(&tst) == FileType::Directory {
            return Err(Error::apply(
                path,
                format!("hard link target `{target}` is a directory"),
            ));
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut removed = false;
        loop {
            match rfs::linkat(&*tdir, &tname, &*dir, &name, AtFlags::empty()) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    let st = rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                        Error::apply_io(path, "cannot inspect the existing entry", io_err(e))
                    })?;
                    if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino) {
                        // Already a name of the target (`x -> x`, or a repeated link): keep it.
                        self.mark_written(path);
                        return Ok(());
                    }
                    self.remove_existing(dir.as_fd(), &name, path)?;
                    removed = true;
                }
                Err(Errno::NOENT) => return Err(missing()),
                Err(e) => {
                    return Err(Error::apply_io(
                        path,
                        format!("cannot create hard link to `{target}`"),
                        io_err(e),
                    ))
                }
            }
        }
        self.mark_written(path);
        // Metadata goes through the link only to a regular file: never chmod a symlink's
        // target (CVE-2021-32760), never open a device or fifo.
        if file_type(&tst) == FileType::RegularFile {
            let fd = rfs::openat(
                &*dir,
                &name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::apply_io(path, "cannot open the new hard link", io_err(e)))?;
            self.apply_meta_fd(fd.as_fd(), path, &entry.meta, Some(entry.meta.mode), true)?;
        }
        Ok(())
    }

    fn add_node(
        &mut self,
        entry: &Entry,
        ftype: FileType,
        dev: Option<(u32, u32)>,
    ) -> Result<(), Error> {
        let path = &entry.path;
        let rdev = match dev {
            None => 0,
            Some((major, minor)) => {
                if !self.opts.devices {
                    let kind = if ftype == FileType::BlockDevice {
                        "block"
                    } else {
                        "char"
                    };
                    self.warn(format!(
                        "{kind} device `{path}` ({major}:{minor}) skipped: creating devices needs privileges"
                    ));
                    return Ok(());
                }
                // mknod(2) takes a 32-bit device number: 12 bits of major, 20 of minor.
                if major > 0xfff || minor > 0xf_ffff {
                    return Err(Error::apply(
                        path,
                        format!("device number {major}:{minor} cannot be represented (at most 4095:1048575)"),
                    ));
                }
                rfs::makedev(major, minor)
            }
        };
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut removed = false;
        loop {
            match rfs::mknodat(&*dir, &name, ftype, Mode::from_raw_mode(0o600), rdev) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    self.remove_existing(dir.as_fd(), &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create node", io_err(e))),
            }
        }
        self.mark_written(path);
        self.apply_meta_at(dir.as_fd(), &name, path, &entry.meta, false)
    }

    fn whiteout(&mut self, path: &LayerPath) -> Result<(), Error> {
        let Some((dir, name)) = self.parent(path, false)? else {
            return Ok(()); // parent missing: nothing to hide
        };
        let st = match rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                // In an upper directory, what a lower layer holds is hidden by a whiteout.
                if self.lower_holds(path)? {
                    self.make_whiteout(dir.as_fd(), &name, path)?;
                }
                return Ok(());
            }
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    "cannot inspect whiteout target",
                    io_err(e),
                ))
            }
        };
        if self.lowers.is_some() && upper::is_whiteout(&st) {
            return Ok(()); // hidden already
        }
        if self.is_written(path.as_bytes()) {
            self.warn(format!(
                "whiteout of `{path}` ignored: it was written earlier in this layer (whiteouts hide lower layers only)"
            ));
            return Ok(());
        }
        if file_type(&st) == FileType::Directory && self.has_written_under(path.as_bytes()) {
            self.warn(format!(
                "whiteout of `{path}` keeps what this layer wrote beneath it (whiteouts hide lower layers only)"
            ));
            let fd = rfs::openat(
                &*dir,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::apply_io(path, "cannot open whiteout target", io_err(e)))?;
            self.cache.clear();
            if self.lower_holds(path)? {
                set_opaque(fd.as_fd(), path)?;
            }
            return self.sweep(fd, path.clone(), Sweep::Lower);
        }
        self.remove_existing(dir.as_fd(), &name, path)?;
        if self.lower_holds(path)? {
            self.make_whiteout(dir.as_fd(), &name, path)?;
        }
        Ok(())
    }

    fn opaque(&mut self, path: &LayerPath) -> Result<(), Error> {
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut st = rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW);
        if self.lowers.is_some() {
            match &st {
                // A whiteout this layer left: the directory takes its place.
                Ok(s) if upper::is_whiteout(s) => {
                    unlink_in(dir.as_fd(), &name, AtFlags::empty()).map_err(|e| {
                        Error::apply_io(path, "cannot remove the whiteout", io_err(e))
                    })?;
                    st = Err(Errno::NOENT);
                }
                // Only a lower layer holds it: a directory is copied up, anything else
                // is what the marker is in.
                Err(Errno::NOENT) => {
                    match self.lower_at(path, Some(dir.as_fd()), |t| t == FileType::Directory)? {
                        Some((_, true)) => {
                            st = rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW);
                        }
                        Some((lst, false)) => st = Ok(lst),
                        None => {}
                    }
                }
                _ => {}
            }
        }
        match st {
            Ok(st) if file_type(&st) == FileType::Directory => {}
            Ok(_) => {
                return Err(Error::apply(
                    path,
                    "opaque marker in something that is not a directory",
                ));
            }
            Err(Errno::NOENT) => {
                self.make_implied_dir(dir.as_fd(), &name, path.as_bytes(), path)?;
            }
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    "cannot inspect opaque directory",
                    io_err(e),
                ))
            }
        }
        // The marker says this layer holds the directory: later whiteouts keep it.
        self.mark_written(path);
        self.opaque.push(path.clone());
        Ok(())
    }

    /// Removes, below each opaque directory, everything this layer did not write.
    fn finish_opaque(&mut self) -> Result<(), Error> {
        let mut dirs = std::mem::take(&mut self.opaque);
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let opened = if d.is_root() {
                rfs::openat(&*self.root, c".", flags, Mode::empty())
            } else {
                let Some((dir, name)) = self.parent(&d, false)? else {
                    continue;
                };
                rfs::openat(&*dir, &name, flags, Mode::empty())
            };
            let fd = match opened {
                Ok(fd) => fd,
                // Replaced later in this layer by a non-directory: nothing to hide.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => {
                    return Err(Error::apply_io(
                        &d,
                        "cannot open opaque directory",
                        io_err(e),
                    ))
                }
            };
            self.cache.clear();
            if self.lowers.is_some() {
                // The lower layers' part is hidden by the xattr (or, for the root, by
                // whiteouts); the sweep removes what of the upper directory is not this
                // layer's (copies up, whiteouts).
                let again = rfs::openat(&fd, c".", flags, Mode::empty())
                    .map_err(|e| Error::apply_io(&d, "cannot open opaque directory", io_err(e)))?;
                self.sweep(fd, d.clone(), Sweep::Lower)?;
                if d.is_root() {
                    self.hide_lower_root()?;
                } else {
                    set_opaque(again.as_fd(), &d)?;
                }
                continue;
            }
            self.sweep(fd, d, Sweep::Lower)?;
        }
        Ok(())
    }

    /// Directory times (and deferred modes), deepest first so nothing bumps them afterwards.
    fn finish_dirs(&mut self) -> Result<(), Error> {
        let mut dirs: Vec<DirMeta> = std::mem::take(&mut self.dir_meta).into_values().collect();
        let depth = |d: &DirMeta| d.path.as_bytes().iter().filter(|&&b| b == b'/').count();
        // Stable: siblings stay together, which keeps the parent cache warm.
        dirs.sort_by_key(|d| std::cmp::Reverse(depth(d)));
        for d in dirs {
            let Some((dir, name)) = self.parent(&d.path, false)? else {
                continue;
            };
            match d.mode {
                // Kept times of a directory reached through a symlink are not the
                // symlink's: it keeps its own.
                None if rfs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| file_type(&st) == FileType::Symlink) => {}
                None => {
                    self.set_times(&d.path, d.mtime, d.atime, |ts| {
                        match rfs::utimensat(&*dir, &name, ts, AtFlags::SYMLINK_NOFOLLOW) {
                            Err(Errno::NOENT) => Ok(()), // gone since: nothing to date
                            r => r,
                        }
                    })?;
                }
                Some(mode) => {
                    let fd = match rfs::openat(
                        &*dir,
                        &name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                        Err(e) => {
                            return Err(Error::apply_io(
                                &d.path,
                                "cannot open directory",
                                io_err(e),
                            ))
                        }
                    };
                    rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                        .map_err(|e| Error::apply_io(&d.path, "cannot chmod", io_err(e)))?;
                    self.set_times(&d.path, d.mtime, d.atime, |ts| rfs::futimens(&fd, ts))?;
                }
            }
        }
        Ok(())
    }
}

impl DirWriter {
    /// Delivers the current regular file's data by copying `len` bytes from `from` (from its
    /// current offset) inside the kernel with `copy_file_range`, which shares blocks where
    /// the file system can (reflinks); falls back to plain reads and writes across file
    /// systems. The same contract as [`write_data`](LayerWriter::write_data): the bytes
    /// count toward the entry's announced size. Not for sparse entries.
    pub fn copy_data_from(&mut self, from: BorrowedFd<'_>, len: u64) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Err(Error::Misuse(
                "data copied while no regular file is open".into(),
            ));
        };
        if cur.sparse.is_some() || len > cur.expected - cur.delivered {
            return Err(Error::Misuse(format!(
                "cannot copy {len} bytes into `{}` ({} of {} delivered{})",
                cur.path,
                cur.delivered,
                cur.expected,
                if cur.sparse.is_some() { ", sparse" } else { "" }
            )));
        }
        let mut left = len;
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rfs::copy_file_range(from, None, &cur.file, None, chunk) {
                Ok(0) => {
                    return Err(Error::apply(
                        &cur.path,
                        format!("the source ended {left} bytes early"),
                    ))
                }
                Ok(n) => left -= n as u64,
                Err(Errno::INTR) => {}
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                    let mut src = File::from(rustix::io::dup(from).map_err(|e| {
                        Error::apply_io(&cur.path, "cannot copy file data", io_err(e))
                    })?);
                    let copied = io::copy(&mut (&mut src).take(left), &mut cur.file)
                        .map_err(|e| Error::apply_io(&cur.path, "cannot copy file data", e))?;
                    if copied != left {
                        return Err(Error::apply(
                            &cur.path,
                            format!("the source ended {} bytes early", left - copied),
                        ));
                    }
                    left = 0;
                }
                Err(e) => {
                    return Err(Error::apply_io(
                        &cur.path,
                        "cannot copy file data",
                        io_err(e),
                    ))
                }
            }
        }
        cur.delivered += len;
        self.data_bytes += len;
        Ok(())
    }
}

impl LayerWriter for DirWriter {
    type Summary = ApplySummary;

    fn add(&mut self, entry: &Entry) -> Result<(), Error> {
        self.complete_current()?;
        self.entries += 1;
        if entry.path.is_root() {
            return self.add_root(entry);
        }
        match &entry.kind {
            EntryKind::File { size, sparse } => self.add_file(entry, *size, sparse.as_deref()),
            EntryKind::Dir => self.add_dir(entry),
            EntryKind::Symlink { target } => self.add_symlink(entry, target),
            EntryKind::HardLink { target } => self.add_hardlink(entry, target),
            EntryKind::CharDevice { major, minor } => {
                self.add_node(entry, FileType::CharacterDevice, Some((*major, *minor)))
            }
            EntryKind::BlockDevice { major, minor } => {
                self.add_node(entry, FileType::BlockDevice, Some((*major, *minor)))
            }
            EntryKind::Fifo => self.add_node(entry, FileType::Fifo, None),
            EntryKind::Whiteout => self.whiteout(&entry.path),
            EntryKind::Opaque => self.opaque(&entry.path),
        }
    }

    fn write_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Err(Error::Misuse(
                "data written while no regular file is open".into(),
            ));
        };
        let room = cur.expected - cur.delivered;
        if data.len() as u64 > room {
            return Err(Error::Misuse(format!(
                "too much data for `{}`: {} bytes expected, {} more offered after {}",
                cur.path,
                cur.expected,
                data.len(),
                cur.delivered
            )));
        }
        let fail =
            |path: &LayerPath, e: io::Error| Error::apply_io(path, "cannot write file data", e);
        match &mut cur.sparse {
            None => cur.file.write_all(data).map_err(|e| fail(&cur.path, e))?,
            Some((extents, idx, done)) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let Some(ext) = extents.get(*idx) else {
                        return Err(Error::Misuse(format!(
                            "sparse data beyond the extents of `{}`",
                            cur.path
                        )));
                    };
                    let left = ext.len - *done;
                    if left == 0 {
                        *idx += 1;
                        *done = 0;
                        continue;
                    }
                    let n = left.min(rest.len() as u64) as usize;
                    cur.file
                        .write_all_at(&rest[..n], ext.offset + *done)
                        .map_err(|e| fail(&cur.path, e))?;
                    *done += n as u64;
                    rest = &rest[n..];
                }
            }
        }
        cur.delivered += data.len() as u64;
        self.data_bytes += data.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<ApplySummary, Error> {
        self.complete_current()?;
        self.finish_opaque()?;
        self.finish_dirs()?;
        if self.warnings_dropped > 0 {
            let n = self.warnings_dropped;
            self.warnings.push(format!("... and {n} more warnings"));
        }
        Ok(ApplySummary {
            entries: self.entries,
            data_bytes: self.data_bytes,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn p(s: &str) -> LayerPath {
        LayerPath::from_tar_name(s.as_bytes()).unwrap()
    }

    /// An entry and the data that follows it.
    struct Item(Entry, Vec<u8>);

    fn file(path: &str, data: &[u8]) -> Item {
        let mut e = Entry::new(
            p(path),
            EntryKind::File {
                size: data.len() as u64,
                sparse: None,
            },
        );
        e.meta.mode = 0o644;
        Item(e, data.to_vec())
    }
    fn dir(path: &str) -> Item {
        let mut e = Entry::new(p(path), EntryKind::Dir);
        e.meta.mode = 0o755;
        Item(e, Vec::new())
    }
    fn symlink(path: &str, target: &str) -> Item {
        Item(
            Entry::new(
                p(path),
                EntryKind::Symlink {
                    target: target.as_bytes().to_vec(),
                },
            ),
            Vec::new(),
        )
    }
    fn hardlink(path: &str, target: &str) -> Item {
        let mut e = Entry::new(p(path), EntryKind::HardLink { target: p(target) });
        e.meta.mode = 0o644;
        Item(e, Vec::new())
    }
    fn whiteout(path: &str) -> Item {
        Item(Entry::new(p(path), EntryKind::Whiteout), Vec::new())
    }
    fn opaque(path: &str) -> Item {
        Item(Entry::new(p(path), EntryKind::Opaque), Vec::new())
    }
    fn with_mode(mut i: Item, mode: u32) -> Item {
        i.0.meta.mode = mode;
        i
    }
    fn with_mtime(mut i: Item, secs: i64, nanos: u32) -> Item {
        i.0.meta.mtime = Timestamp::new(secs, nanos);
        i
    }

    fn apply_with(
        root: &Path,
        items: &[Item],
        opts: DirWriterOptions,
    ) -> Result<ApplySummary, Error> {
        let mut w = DirWriter::open(root, opts)?;
        for Item(e, data) in items {
            w.add(e)?;
            if !data.is_empty() {
                w.write_data(data)?;
            }
        }
        w.finish()
    }
    fn apply(root: &Path, items: &[Item]) -> Result<ApplySummary, Error> {
        apply_with(root, items, DirWriterOptions::default())
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// A name under the host's /tmp that no test creates on purpose: escapes aim at it.
    fn host_victim(tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "strata-evil-dw-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(!Path::new("/tmp").join(&name).exists());
        name
    }

    /// A root inside a scratch directory that also holds an `outside/sentinel` file.
    struct Scratch {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }
    impl Scratch {
        fn new() -> Self {
            Self::in_dir(tempfile::tempdir().unwrap())
        }
        /// On tmpfs when there is one: the deep-tree tests create tens of thousands of
        /// directories, which ext4's inode allocator makes slow after many deletions.
        fn on_tmpfs() -> Self {
            Self::in_dir(
                tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
            )
        }
        fn in_dir(tmp: tempfile::TempDir) -> Self {
            let root = tmp.path().join("root");
            let outside = tmp.path().join("outside");
            std::fs::create_dir(&root).unwrap();
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("sentinel"), b"sentinel\n").unwrap();
            // Explicit: another test changes the process umask for a moment.
            std::fs::set_permissions(
                outside.join("sentinel"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            Scratch {
                _tmp: tmp,
                root,
                outside,
            }
        }
        fn sentinel(&self) -> String {
            self.outside.join("sentinel").to_str().unwrap().to_string()
        }
        fn assert_outside_untouched(&self) {
            let names: Vec<_> = std::fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
            let s = self.outside.join("sentinel");
            assert_eq!(std::fs::read(&s).unwrap(), b"sentinel\n");
            let md = std::fs::symlink_metadata(&s).unwrap();
            assert_eq!(md.nlink(), 1);
            assert!(md.file_type().is_file());
            assert_eq!(md.permissions().mode() & 0o7777, 0o644);
        }
    }

    fn lmeta(p: &Path) -> std::fs::Metadata {
        std::fs::symlink_metadata(p).unwrap()
    }

    #[test]
    fn creates_files_dirs_links_and_nodes_with_their_metadata() {
        let s = Scratch::new();
        let mut f = with_mtime(
            with_mode(file("etc/passwd", b"root:x:0:0\n"), 0o640),
            1_700_000_000,
            123_456_789,
        );
        f.0.meta.uid = 1000;
        f.0.meta.gid = 1001;
        f.0.meta.atime = Some(Timestamp::new(1_600_000_000, 5));
        // A hard link entry carries its target's metadata, as tar writers emit it.
        let mut passwd_link = hardlink("etc/passwd-", "etc/passwd");
        passwd_link.0.meta = f.0.meta.clone();
        let mut sym = with_mtime(
            symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
            1_000_000_000,
            0,
        );
        sym.0.meta.uid = 7;
        let mut fifo = with_mtime(
            Item(Entry::new(p("run/fifo"), EntryKind::Fifo), Vec::new()),
            42,
            0,
        );
        fifo.0.meta.mode = 0o620;
        let mut chr = Item(
            Entry::new(p("dev/null"), EntryKind::CharDevice { major: 1, minor: 3 }),
            Vec::new(),
        );
        chr.0.meta.mode = 0o666;
        let mut blk = Item(
            Entry::new(
                p("dev/loop0"),
                EntryKind::BlockDevice { major: 7, minor: 0 },
            ),
            Vec::new(),
        );
        blk.0.meta.mode = 0o660;
        let big = Item(
            Entry::new(
                p("dev/big"),
                EntryKind::CharDevice {
                    major: 4095,
                    minor: 1_048_575,
                },
            ),
            Vec::new(),
        );
        let items = vec![
            with_mtime(with_mode(dir("etc"), 0o750), 1_000_000_000, 0),
            f,
            with_mode(file("setuid", b"x"), 0o4755),
            with_mode(dir("sticky"), 0o1777),
            with_mode(file("zero", b""), 0o000),
            sym,
            passwd_link,
            fifo,
            chr,
            blk,
            big,
        ];
        let summary = apply(&s.root, &items).unwrap();
        assert_eq!(summary.entries, items.len() as u64);
        assert_eq!(summary.data_bytes, 12);
        let r = &s.root;

        let etc = lmeta(&r.join("etc"));
        assert!(etc.is_dir());
        assert_eq!(etc.mode() & 0o7777, 0o750);
        assert_eq!((etc.mtime(), etc.mtime_nsec()), (1_000_000_000, 0));

        let pw = lmeta(&r.join("etc/passwd"));
        assert_eq!(
            std::fs::read(r.join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
        assert_eq!(pw.mode() & 0o7777, 0o640);
        assert_eq!((pw.mtime(), pw.mtime_nsec()), (1_700_000_000, 123_456_789));
        assert_eq!((pw.atime(), pw.atime_nsec()), (1_600_000_000, 5));
        assert_eq!(pw.nlink(), 2);
        assert_eq!(lmeta(&r.join("etc/passwd-")).ino(), pw.ino());
        if is_root() {
            assert_eq!((pw.uid(), pw.gid()), (1000, 1001));
        }
        assert_eq!(lmeta(&r.join("setuid")).mode() & 0o7777, 0o4755);
        assert_eq!(lmeta(&r.join("sticky")).mode() & 0o7777, 0o1777);
        assert_eq!(lmeta(&r.join("zero")).mode() & 0o7777, 0);

        let lt = lmeta(&r.join("etc/localtime"));
        assert!(lt.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert_eq!(lt.mtime(), 1_000_000_000);
        if is_root() {
            assert_eq!(lt.uid(), 7);
        }

        let fifo = lmeta(&r.join("run/fifo"));
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o620);
        assert_eq!(fifo.mtime(), 42);
        // Implied parents are 0755.
        assert_eq!(lmeta(&r.join("run")).mode() & 0o7777, 0o755);

        if is_root() {
            let null = lmeta(&r.join("dev/null"));
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rfs::makedev(1, 3));
            assert_eq!(null.mode() & 0o7777, 0o666);
            let lp = lmeta(&r.join("dev/loop0"));
            assert!(lp.file_type().is_block_device());
            assert_eq!(lp.rdev(), rfs::makedev(7, 0));
            assert_eq!(
                lmeta(&r.join("dev/big")).rdev(),
                rfs::makedev(4095, 1_048_575)
            );
        } else {
            assert!(!r.join("dev/null").exists());
            assert!(summary.warnings.iter().any(|w| w.contains("dev/null")));
        }
    }

    #[test]
    fn devices_are_skipped_with_a_warning_when_disabled_and_huge_numbers_refused() {
        let s = Scratch::new();
        let opts = DirWriterOptions {
            devices: false,
            ..DirWriterOptions::default()
        };
        let chr = Item(
            Entry::new(p("dev/null"), EntryKind::CharDevice { major: 1, minor: 3 }),
            Vec::new(),
        );
        let summary = apply_with(&s.root, &[chr], opts).unwrap();
        assert!(!s.root.join("dev/null").exists());
        assert_eq!(summary.warnings.len(), 1);
        assert!(
            summary.warnings[0].contains("dev/null"),
            "{:?}",
            summary.warnings
        );

        if is_root() {
            let huge = Item(
                Entry::new(
                    p("big"),
                    EntryKind::CharDevice {
                        major: 4096,
                        minor: 0,
                    },
                ),
                Vec::new(),
            );
            let err = apply(&s.root, &[huge]).unwrap_err().to_string();
            assert!(err.contains("4096:0"), "{err}");
        }
    }

    #[test]
    fn implied_parents_are_0755_and_root_owned() {
        let s = Scratch::new();
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        let r = apply(&s.root, &[file("x/y/z/file", b"z")]);
        rustix::process::umask(old);
        r.unwrap();
        for d in ["x", "x/y", "x/y/z"] {
            let md = lmeta(&s.root.join(d));
            assert_eq!(md.mode() & 0o7777, 0o755, "{d}");
            if is_root() {
                assert_eq!((md.uid(), md.gid()), (0, 0));
            }
        }
    }

    #[test]
    fn root_entry_must_be_a_directory_and_its_metadata_is_ignored() {
        let s = Scratch::new();
        std::fs::set_permissions(&s.root, std::fs::Permissions::from_mode(0o711)).unwrap();
        apply(&s.root, &[with_mode(dir("."), 0o700), file("a", b"a")]).unwrap();
        assert_eq!(lmeta(&s.root).mode() & 0o7777, 0o711);

        let err = apply(
            &s.root,
            &[symlink(".", &host_victim("rootlink")), file("x", b"x")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("root entry must be a directory"),
            "{err}"
        );
        assert!(lmeta(&s.root).is_dir());
        let err = apply(&s.root, &[whiteout(".")]).unwrap_err();
        assert!(matches!(err, Error::Apply { .. }));
        assert!(s.root.join("a").exists());
    }

    #[test]
    fn absolute_symlink_then_write_through_lands_inside_the_root() {
        let s = Scratch::new();
        let victim = host_victim("abs");
        // ROOT/tmp does not exist: the write fails, and never reaches the host /tmp.
        let r = apply(
            &s.root,
            &[
                symlink("link", "/tmp"),
                file(&format!("link/{victim}"), b"evil"),
            ],
        );
        assert!(r.is_err());
        assert!(!Path::new("/tmp").join(&victim).exists());
        // With ROOT/tmp present it lands there.
        apply(
            &s.root,
            &[
                dir("tmp"),
                symlink("link", "/tmp"),
                file(&format!("link/{victim}"), b"evil"),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read(s.root.join("tmp").join(&victim)).unwrap(),
            b"evil"
        );
        assert!(!Path::new("/tmp").join(&victim).exists());
        // `foo -> /` then foo/tmp/x.
        apply(
            &s.root,
            &[
                symlink("foo", "/"),
                file(&format!("foo/tmp/{victim}2"), b"x"),
            ],
        )
        .unwrap();
        assert!(s.root.join(format!("tmp/{victim}2")).exists());
        assert!(!Path::new("/tmp").join(format!("{victim}2")).exists());
        s.assert_outside_untouched();
    }

    #[test]
    fn relative_dotdot_symlinks_then_write_through_are_confined() {
        let s = Scratch::new();
        let victim = host_victim("rel");
        let items = [
            symlink("link", "../../../../../../../../../../tmp"),
            file(&format!("link/{victim}"), b"evil"),
        ];
        let r = apply(&s.root, &items);
        assert!(r.is_err(), "ROOT/tmp does not exist");
        assert!(!Path::new("/tmp").join(&victim).exists());
        // The two-hop chain of GHSA-hfg8-hc9c-6c3h: inner/go_up -> .., inner/go_up/escape -> ../outside.
        let items = [
            dir("inner"),
            symlink("inner/go_up", ".."),
            symlink("inner/go_up/escape", "../outside"),
            file("inner/go_up/escape/newfile", b"evil"),
            // Nested: a/b -> ../../.., c -> a/b/outside.
            dir("a"),
            symlink("a/b", "../../.."),
            symlink("c", "a/b/outside"),
            file("c/nested", b"evil"),
        ];
        apply(&s.root, &items).unwrap_err();
        s.assert_outside_untouched();
        // With ROOT/outside present, both land in it.
        std::fs::create_dir(s.root.join("outside")).unwrap();
        apply(&s.root, &items).unwrap();
        assert!(s.root.join("outside/newfile").is_file());
        assert!(s.root.join("outside/nested").is_file());
        s.assert_outside_untouched();
    }

    #[test]
    fn regular_file_replaces_a_symlink_to_an_outside_file() {
        let s = Scratch::new();
        apply(
            &s.root,
            &[symlink("x", &s.sentinel()), file("x", b"second\n")],
        )
        .unwrap();
        let md = lmeta(&s.root.join("x"));
        assert!(md.is_file());
        assert_eq!(std::fs::read(s.root.join("x")).unwrap(), b"second\n");
        s.assert_outside_untouched();
        // Also across layers: a lower symlink, then a file of the same name.
        std::os::unix::fs::symlink(s.sentinel(), s.root.join("y")).unwrap();
        apply(&s.root, &[file("y", b"")]).unwrap();
        assert!(lmeta(&s.root.join("y")).is_file());
        s.assert_outside_untouched();
    }

    #[test]
    fn directory_replaces_a_symlink_then_file_goes_into_it() {
        let s = Scratch::new();
        let victim = host_victim("symdir");
        apply(
            &s.root,
            &[
                symlink("s", "/tmp"),
                dir("s"),
                file(&format!("s/{victim}"), b"x"),
            ],
        )
        .unwrap();
        assert!(lmeta(&s.root.join("s")).is_dir());
        assert!(s.root.join("s").join(&victim).is_file());
        assert!(!Path::new("/tmp").join(&victim).exists());
        // The reverse: a symlink replaces a directory, then a file through it.
        apply(&s.root, &[symlink("s", "/nowhere"), file("s/f", b"x")]).unwrap_err();
        assert!(lmeta(&s.root.join("s")).file_type().is_symlink());
    }

    #[test]
    fn symlink_loop_then_write_fails_with_an_error() {
        let s = Scratch::new();
        let err = apply(
            &s.root,
            &[symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("too many symlink levels"), "{err}");
        let err = apply(&s.root, &[symlink("self", "self"), file("self/x", b"x")]).unwrap_err();
        assert!(err.to_string().contains("too many symlink levels"), "{err}");
        // Loops are fine as long as nobody goes through them.
        assert!(lmeta(&s.root.join("a")).file_type().is_symlink());
    }

    #[test]
    fn hardlink_through_a_symlinked_dir_is_confined() {
        let s = Scratch::new();
        let outside = s.outside.to_str().unwrap().to_string();
        let err = apply(
            &s.root,
            &[symlink("d", &outside), hardlink("h", "d/sentinel")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!s.root.join("h").exists());
        // Relative escape: resolved in the root, `..` stops at the root.
        let err = apply(
            &s.root,
            &[
                symlink("up", "../../../.."),
                hardlink("h2", "up/outside/sentinel"),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        s.assert_outside_untouched();
    }

    #[test]
    fn hardlink_to_a_symlink_pointing_outside_then_file_replaces_only_the_link() {
        let s = Scratch::new();
        let mut h = hardlink("h", "s");
        h.0.meta.mode = 0o777;
        apply(&s.root, &[symlink("s", &s.sentinel()), h]).unwrap();
        // h is a second name of the symlink itself, and no chmod went through it.
        let (sm, hm) = (lmeta(&s.root.join("s")), lmeta(&s.root.join("h")));
        assert!(hm.file_type().is_symlink());
        assert_eq!(sm.ino(), hm.ino());
        assert_eq!(sm.nlink(), 2);
        s.assert_outside_untouched();
        apply(&s.root, &[file("h", b"mine\n")]).unwrap();
        assert_eq!(std::fs::read(s.root.join("h")).unwrap(), b"mine\n");
        assert!(lmeta(&s.root.join("s")).file_type().is_symlink());
        assert_eq!(lmeta(&s.root.join("s")).nlink(), 1);
        s.assert_outside_untouched();
    }

    #[test]
    fn hardlink_to_a_directory_is_refused() {
        let s = Scratch::new();
        let err = apply(&s.root, &[dir("d"), hardlink("h", "d")]).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        assert!(!s.root.join("h").exists());
    }

    #[test]
    fn hardlink_to_a_missing_target_names_both() {
        let s = Scratch::new();
        let err = apply(
            &s.root,
            &[hardlink("etc/os-release.link", "etc/os-release")],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("etc/os-release.link") && msg.contains("`etc/os-release`"),
            "{msg}"
        );
        // With the target in the lower tree it links to it.
        std::fs::create_dir(s.root.join("etc")).unwrap();
        std::fs::write(s.root.join("etc/os-release"), b"ID=test\n").unwrap();
        apply(
            &s.root,
            &[hardlink("etc/os-release.link", "etc/os-release")],
        )
        .unwrap();
        assert_eq!(lmeta(&s.root.join("etc/os-release")).nlink(), 2);
    }

    #[test]
    fn hardlink_to_itself_keeps_the_file() {
        let s = Scratch::new();
        apply(&s.root, &[file("x", b"content\n"), hardlink("x", "x")]).unwrap();
        assert_eq!(std::fs::read(s.root.join("x")).unwrap(), b"content\n");
        assert_eq!(lmeta(&s.root.join("x")).nlink(), 1);
        let err = apply(&s.root, &[hardlink("nope", "nope")]).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn hardlinks_group_shares_one_inode() {
        let s = Scratch::new();
        let long = "l".repeat(150);
        apply(
            &s.root,
            &[
                file("a", b"shared\n"),
                hardlink("b/a2", "a"),
                hardlink("b/a3", "b/a2"),
                hardlink("a4", "a"),
                file(&long, b"long"),
                hardlink("longlink", &long),
            ],
        )
        .unwrap();
        let ino = lmeta(&s.root.join("a")).ino();
        for n in ["a", "b/a2", "b/a3", "a4"] {
            let md = lmeta(&s.root.join(n));
            assert_eq!((md.ino(), md.nlink()), (ino, 4), "{n}");
        }
        assert_eq!(lmeta(&s.root.join("longlink")).nlink(), 2);
    }

    #[test]
    fn whiteout_through_a_symlink_is_confined() {
        let s = Scratch::new();
        let outside = s.outside.to_str().unwrap().to_string();
        apply(
            &s.root,
            &[symlink("lnk", &outside), whiteout("lnk/sentinel")],
        )
        .unwrap();
        s.assert_outside_untouched();
        apply(
            &s.root,
            &[symlink("up", "../../.."), whiteout("up/outside/sentinel")],
        )
        .unwrap();
        s.assert_outside_untouched();
        // A dangling-symlink parent and a missing path are no-ops.
        apply(
            &s.root,
            &[
                symlink("dangling", "/nowhere"),
                whiteout("dangling/x"),
                whiteout("absent/y"),
            ],
        )
        .unwrap();
        // Whiteout of a symlink removes the link, not its target.
        apply(&s.root, &[symlink("tolnk", &s.sentinel())]).unwrap();
        apply(&s.root, &[whiteout("tolnk")]).unwrap();
        assert!(
            !s.root.join("tolnk").exists()
                && std::fs::symlink_metadata(s.root.join("tolnk")).is_err()
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn whiteouts_hide_lower_paths_and_keep_this_layers_paths() {
        let s = Scratch::new();
        let r = &s.root;
        std::fs::create_dir_all(r.join("usr/share/man/man1")).unwrap();
        std::fs::write(r.join("usr/share/man/man1/ls.1"), b"ls").unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/motd"), b"lower").unwrap();
        std::fs::write(r.join("x"), b"lower x").unwrap();
        std::fs::write(r.join("y"), b"lower y").unwrap();
        std::fs::create_dir_all(r.join("d/sub")).unwrap();
        std::fs::write(r.join("d/old"), b"old").unwrap();
        std::fs::write(r.join("d/sub/old"), b"old").unwrap();
        let summary = apply(
            r,
            &[
                whiteout("etc/motd"),
                whiteout("usr/share/man"),
                whiteout("nothing/here"),
                whiteout("x"),
                file("x", b"new x"),
                file("y", b"new y"),
                whiteout("y"),
                // d: lower d/old and d/sub/old go; this layer's d/sub/new stays.
                file("d/sub/new", b"new"),
                whiteout("d"),
            ],
        )
        .unwrap();
        assert!(!r.join("etc/motd").exists());
        assert!(r.join("etc").is_dir());
        assert!(!r.join("usr/share/man").exists());
        assert!(r.join("usr/share").is_dir());
        assert_eq!(std::fs::read(r.join("x")).unwrap(), b"new x");
        assert_eq!(std::fs::read(r.join("y")).unwrap(), b"new y");
        assert!(
            summary
                .warnings
                .iter()
                .any(|w| w.contains("whiteout of `y`")),
            "{:?}",
            summary.warnings
        );
        assert!(!r.join("d/old").exists());
        assert!(!r.join("d/sub/old").exists());
        assert_eq!(std::fs::read(r.join("d/sub/new")).unwrap(), b"new");
    }

    #[test]
    fn whiteout_of_a_dir_then_recreating_it_holds_only_the_new_content() {
        let s = Scratch::new();
        std::fs::create_dir(s.root.join("d")).unwrap();
        std::fs::write(s.root.join("d/lower"), b"l").unwrap();
        apply(&s.root, &[whiteout("d"), dir("d"), file("d/fresh", b"f")]).unwrap();
        let names: Vec<_> = std::fs::read_dir(s.root.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("fresh")]);
    }

    fn lower_tree(r: &Path) {
        std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
        std::fs::write(r.join("etc/apt/sources.list"), b"lower").unwrap();
        std::fs::write(r.join("etc/apt/trusted.gpg"), b"lower").unwrap();
        std::fs::write(r.join("etc/apt/apt.conf.d/70debconf"), b"lower").unwrap();
        std::fs::create_dir_all(r.join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(r.join("etc/apt/sources.list.d/old.list"), b"lower").unwrap();
        std::fs::write(r.join("etc/hostname"), b"lower").unwrap();
    }

    fn listing(r: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![r.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let rel = e
                    .path()
                    .strip_prefix(r)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let md = lmeta(&e.path());
                if md.is_dir() {
                    todo.push(e.path());
                    out.push((rel + "/", Vec::new()));
                } else {
                    out.push((rel, std::fs::read(e.path()).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn opaque_marker_gives_the_same_result_wherever_it_appears() {
        let orders: [Vec<Item>; 3] = [
            vec![
                dir("etc/apt"),
                opaque("etc/apt"),
                file("etc/apt/sources.list", b"new"),
                file("etc/apt/sources.list.d/debian.list", b"deb"),
            ],
            vec![
                opaque("etc/apt"),
                dir("etc/apt"),
                file("etc/apt/sources.list", b"new"),
                file("etc/apt/sources.list.d/debian.list", b"deb"),
            ],
            vec![
                dir("etc/apt"),
                file("etc/apt/sources.list", b"new"),
                file("etc/apt/sources.list.d/debian.list", b"deb"),
                opaque("etc/apt"),
            ],
        ];
        let mut results = Vec::new();
        for items in &orders {
            let s = Scratch::new();
            lower_tree(&s.root);
            apply(&s.root, items).unwrap();
            results.push(listing(&s.root));
        }
        let want: Vec<(String, Vec<u8>)> = vec![
            ("etc/".into(), vec![]),
            ("etc/apt/".into(), vec![]),
            ("etc/apt/sources.list".into(), b"new".to_vec()),
            ("etc/apt/sources.list.d/".into(), vec![]),
            ("etc/apt/sources.list.d/debian.list".into(), b"deb".to_vec()),
            ("etc/hostname".into(), b"lower".to_vec()),
        ];
        for r in &results {
            assert_eq!(r, &want);
        }
    }

    #[test]
    fn opaque_marker_creates_a_missing_dir_and_at_root_hides_the_whole_lower_tree() {
        let s = Scratch::new();
        apply(&s.root, &[opaque("new/dir")]).unwrap();
        assert!(s.root.join("new/dir").is_dir());
        lower_tree(&s.root);
        apply(
            &s.root,
            &[file("keep", b"k"), opaque("."), file("etc/added", b"a")],
        )
        .unwrap();
        assert_eq!(
            listing(&s.root),
            vec![
                ("etc/".to_string(), vec![]),
                ("etc/added".to_string(), b"a".to_vec()),
                ("keep".to_string(), b"k".to_vec())
            ]
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn opaque_marker_through_a_symlinked_parent_is_confined() {
        let s = Scratch::new();
        let outside = s.outside.to_str().unwrap().to_string();
        // lnk -> outside resolves to ROOT/<outside path>, which is absent: created there.
        apply(&s.root, &[symlink("lnk", &outside), opaque("lnk")]).unwrap_err();
        apply(&s.root, &[symlink("l2", "../../.."), opaque("l2/outside")]).unwrap();
        assert!(s.root.join("outside").is_dir());
        s.assert_outside_untouched();
    }

    #[test]
    fn directory_replaces_file_and_file_replaces_directory() {
        let s = Scratch::new();
        apply(&s.root, &[file("x", b"file"), dir("x"), file("x/y", b"y")]).unwrap();
        assert!(lmeta(&s.root.join("x")).is_dir());
        assert_eq!(std::fs::read(s.root.join("x/y")).unwrap(), b"y");
        apply(
            &s.root,
            &[
                dir("d"),
                file("d/c", b"c"),
                dir("d/sub"),
                file("d/sub/f", b"f"),
                file("d", b"now a file"),
            ],
        )
        .unwrap();
        assert!(lmeta(&s.root.join("d")).is_file());
        assert_eq!(std::fs::read(s.root.join("d")).unwrap(), b"now a file");
        // Dir over dir merges: lower children stay, the mode is replaced.
        std::fs::create_dir(s.root.join("m")).unwrap();
        std::fs::write(s.root.join("m/lower"), b"l").unwrap();
        apply(&s.root, &[with_mode(dir("m"), 0o700)]).unwrap();
        assert!(s.root.join("m/lower").exists());
        assert_eq!(lmeta(&s.root.join("m")).mode() & 0o7777, 0o700);
    }

    #[test]
    fn duplicate_file_last_wins_and_hook_sees_the_first_body() {
        use std::cell::RefCell;
        use std::io::Read;
        use std::rc::Rc;
        let s = Scratch::new();
        std::fs::write(s.root.join("lowerfile"), b"lower").unwrap();
        type Seen = Vec<(String, Vec<u8>)>;
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
        let sink = seen.clone();
        w.on_replace(Box::new(move |path, f| {
            let mut body = Vec::new();
            (&*f)
                .read_to_end(&mut body)
                .map_err(|e| Error::io("hook", e))?;
            sink.borrow_mut().push((path.to_string(), body));
            Ok(())
        }));
        let items = [
            file("f", b"first\n"),
            file("f", b"second\n"),
            file("empty", b""),
            file("empty", b"x"),
            file("lowerfile", b"replaces a lower file: no hook"),
            dir("d"),
            file("d/a", b"in a dir"),
            dir("d/sub"),
            file("d/sub/b", b"deeper"),
            symlink("d", "/replaced/by/symlink"),
            file("g", b"g1"),
            symlink("g", "target"),
            with_mode(dir("dd"), 0o700),
            with_mode(dir("dd"), 0o750),
            file("dd/child", b"c"),
        ];
        for Item(e, d) in &items {
            w.add(e).unwrap();
            if !d.is_empty() {
                w.write_data(d).unwrap();
            }
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"second\n");
        let mut got = seen.borrow().clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("d/a".to_string(), b"in a dir".to_vec()),
                ("d/sub/b".to_string(), b"deeper".to_vec()),
                ("f".to_string(), b"first\n".to_vec()),
                ("g".to_string(), b"g1".to_vec()),
            ]
        );
        assert!(lmeta(&s.root.join("d")).file_type().is_symlink());
        assert_eq!(lmeta(&s.root.join("dd")).mode() & 0o7777, 0o750);
        assert!(s.root.join("dd/child").exists());
    }

    #[test]
    fn read_only_dir_holding_a_file_is_filled_then_made_read_only() {
        let s = Scratch::new();
        apply(
            &s.root,
            &[
                with_mtime(with_mode(dir("ro"), 0o555), 1_000_000_000, 0),
                file("ro/inside", b"i"),
                with_mode(dir("ro/sub"), 0o500),
                file("ro/sub/f", b"f"),
            ],
        )
        .unwrap();
        let md = lmeta(&s.root.join("ro"));
        assert_eq!(md.mode() & 0o7777, 0o555);
        assert_eq!(md.mtime(), 1_000_000_000);
        assert_eq!(lmeta(&s.root.join("ro/sub")).mode() & 0o7777, 0o500);
        assert_eq!(std::fs::read(s.root.join("ro/sub/f")).unwrap(), b"f");
    }

    #[test]
    fn directory_mtimes_are_applied_after_their_children() {
        let s = Scratch::new();
        let items = [
            with_mtime(dir("a"), 1000, 1),
            with_mtime(dir("a/b"), 2000, 2),
            file("a/b/f", b"f"),
            file("a/g", b"g"),
            // late/ is listed after its child.
            file("late/child", b"c"),
            with_mtime(with_mode(dir("late"), 0o700), 1_000_000_000, 0),
            with_mtime(dir("a/c"), 3000, 0),
        ];
        apply(&s.root, &items).unwrap();
        let t = |n: &str| {
            let md = lmeta(&s.root.join(n));
            (md.mtime(), md.mtime_nsec())
        };
        assert_eq!(t("a"), (1000, 1));
        assert_eq!(t("a/b"), (2000, 2));
        assert_eq!(t("a/c"), (3000, 0));
        assert_eq!(t("late"), (1_000_000_000, 0));
        assert_eq!(lmeta(&s.root.join("late")).mode() & 0o7777, 0o700);
    }

    #[test]
    fn mtimes_before_1970_and_far_future_are_restored_exactly() {
        let s = Scratch::new();
        let cases: [(i64, u32); 7] = [
            (0, 0),
            (-1, 0),
            (-315_619_200, 0),
            ((1 << 31) + 1, 0),
            (1 << 33, 0),
            (13_569_465_600, 0),
            (1_700_000_000, 500_000_000),
        ];
        let items: Vec<Item> = cases
            .iter()
            .enumerate()
            .map(|(i, &(secs, nanos))| with_mtime(file(&format!("t{i}"), b"x"), secs, nanos))
            .collect();
        let summary = apply(&s.root, &items).unwrap();
        for (i, &(secs, nanos)) in cases.iter().enumerate() {
            let md = lmeta(&s.root.join(format!("t{i}")));
            assert_eq!(
                (md.mtime(), md.mtime_nsec()),
                (secs, i64::from(nanos)),
                "t{i}: {:?}",
                summary.warnings
            );
        }
    }

    #[test]
    fn sparse_file_keeps_its_holes() {
        let s = Scratch::new();
        const MIB: u64 = 1 << 20;
        let extents = vec![
            SparseExtent { offset: 0, len: 10 },
            SparseExtent {
                offset: 512 * MIB,
                len: 0,
            },
            SparseExtent {
                offset: 512 * MIB,
                len: 10,
            },
            SparseExtent {
                offset: 1023 * MIB,
                len: 10,
            },
        ];
        let size = 1024 * MIB;
        let mut e = Entry::new(
            p("sparse/extents"),
            EntryKind::File {
                size,
                sparse: Some(extents),
            },
        );
        e.meta.mode = 0o644;
        let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
        w.add(&e).unwrap();
        w.write_data(b"data at 0 ").unwrap();
        w.write_data(b"data at 51").unwrap();
        w.write_data(b"2data at 1").unwrap();
        assert!(matches!(w.write_data(b"!"), Err(Error::Misuse(_))));
        let hole = Entry::new(
            p("sparse/all-hole"),
            EntryKind::File {
                size: 64 * MIB,
                sparse: Some(vec![]),
            },
        );
        w.add(&hole).unwrap();
        w.finish().unwrap();
        let f = File::open(s.root.join("sparse/extents")).unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(md.len(), size);
        assert!(
            md.blocks() * 512 < 16 * MIB,
            "holes stayed holes: {} blocks",
            md.blocks()
        );
        let mut buf = [0u8; 10];
        f.read_exact_at(&mut buf, 512 * MIB).unwrap();
        assert_eq!(&buf, b"data at 51");
        f.read_exact_at(&mut buf, 1023 * MIB).unwrap();
        assert_eq!(&buf, b"2data at 1");
        f.read_exact_at(&mut buf, 100 * MIB).unwrap();
        assert_eq!(buf, [0; 10]);
        let hole = lmeta(&s.root.join("sparse/all-hole"));
        assert_eq!((hole.len(), hole.blocks()), (64 * MIB, 0));
    }

    #[test]
    fn data_length_is_enforced() {
        let s = Scratch::new();
        let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
        assert!(matches!(w.write_data(b"x"), Err(Error::Misuse(_))));
        w.add(&file("f", b"abc").0).unwrap();
        assert!(matches!(w.write_data(b"abcd"), Err(Error::Misuse(_))));
        w.write_data(b"ab").unwrap();
        let err = w.add(&file("g", b"").0).unwrap_err();
        assert!(err.to_string().contains("only 2 of 3"), "{err}");
        let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
        w.add(&file("h", b"abc").0).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn xattrs_follow_the_policy() {
        let s = Scratch::new();
        let x = |n: &str, v: &[u8]| crate::Xattr {
            name: n.as_bytes().to_vec(),
            value: v.to_vec(),
        };
        let mut f = file("f", b"data");
        f.0.meta.xattrs = vec![
            x(
                "security.capability",
                &[
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
            x("trusted.overlay.opaque", b"y"),
            x("trusted.other", b"t"),
            x("user.bin", &[0, 0xff, 1]),
            x("user.big", &[b'v'; 4000]),
        ];
        let mut d = dir("d");
        d.0.meta.xattrs = vec![x("user.on.dir", b"d")];
        let mut l = symlink("l", "f");
        l.0.meta.xattrs = vec![x("user.on.link", b"l")];
        let summary = apply(&s.root, &[f, d, l]).unwrap();
        let get = |path: &str, name: &str| {
            let full = s.root.join(path);
            let mut buf = vec![0u8; 8192];
            rfs::lgetxattr(&full, name, &mut buf[..])
                .ok()
                .map(|n| buf[..n].to_vec())
        };
        assert_eq!(get("f", "user.bin"), Some(vec![0, 0xff, 1]));
        assert_eq!(get("f", "user.big").map(|v| v.len()), Some(4000));
        assert_eq!(get("d", "user.on.dir"), Some(b"d".to_vec()));
        // A v3 capability is 24 bytes; 28 is malformed and refused by the kernel.
        let v3 = "010000030004000000000000000000000000000000000000e8030000";
        let v3: Vec<u8> = (0..v3.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v3[i..i + 2], 16).unwrap())
            .collect();
        if is_root() {
            let mut bad = file("badcap", b"x");
            bad.0.meta.xattrs = vec![x("security.capability", &v3)];
            let summary = apply(&s.root, &[bad]).unwrap();
            assert!(summary
                .warnings
                .iter()
                .any(|w| w.contains("rejected its value as malformed")));
            assert_eq!(get("badcap", "security.capability"), None);
            let mut good = file("goodcap", b"x");
            let v3_ok = [&v3[..20], &[0xe8, 3, 0, 0][..]].concat();
            good.0.meta.xattrs = vec![x("security.capability", &v3_ok)];
            apply(&s.root, &[good]).unwrap();
            assert_eq!(get("goodcap", "security.capability"), Some(v3_ok));

            assert_eq!(get("f", "security.capability").map(|v| v.len()), Some(20));
            assert_eq!(get("f", "trusted.other"), None);
            assert_eq!(get("f", "trusted.overlay.opaque"), None);
        }
        let w = summary.warnings.join("\n");
        assert!(
            w.contains("trusted.overlay.opaque")
                && w.contains("trusted.other")
                && w.contains("user.on.link"),
            "{w}"
        );

        // Privileged: trusted.* applied, trusted.overlay.* still dropped.
        if is_root() {
            let mut g = file("g", b"data");
            g.0.meta.xattrs = vec![x("trusted.overlay.opaque", b"y"), x("trusted.other", b"t")];
            let mut l2 = symlink("l2", "g");
            l2.0.meta.xattrs = vec![x("trusted.on.link", b"l")];
            let opts = DirWriterOptions {
                privileged_xattrs: true,
                ..DirWriterOptions::default()
            };
            apply_with(&s.root, &[g, l2], opts).unwrap();
            assert_eq!(get("g", "trusted.other"), Some(b"t".to_vec()));
            assert_eq!(get("g", "trusted.overlay.opaque"), None);
            assert_eq!(get("l2", "trusted.on.link"), Some(b"l".to_vec()));
        }
    }

    #[test]
    fn path_of_20kb_does_not_crash() {
        let s = Scratch::on_tmpfs();
        // 100 names of 199 bytes: over PATH_MAX, under the depth limit.
        let deep = format!("{}/", "d".repeat(199)).repeat(100) + "file";
        assert_eq!(deep.len(), 20_004);
        let r = apply(&s.root, &[file(&deep, b"deep")]);
        r.unwrap();
        // Resolving it again (chunked openat2) finds the same directory.
        apply(&s.root, &[file(&deep, b"again"), hardlink("top", &deep)]).unwrap();
        assert_eq!(std::fs::read(s.root.join("top")).unwrap(), b"again");
        // And the tree can be replaced and whited out without recursion.
        let top = "d".repeat(199);
        apply(&s.root, &[file(&top, b"flat")]).unwrap();
        assert!(lmeta(&s.root.join(&top)).is_file());
    }

    #[test]
    fn deep_tree_is_whited_out_and_opaqued_iteratively() {
        let s = Scratch::on_tmpfs();
        // Deeper than a tar name may be (MAX_DEPTH): built with `join`, as a lower layer
        // made some other way could be.
        let deep = (0..3000).fold(LayerPath::root(), |p, _| p.join(b"d").unwrap());
        let mut deep_file = file("x", b"deep");
        deep_file.0.path = deep.join(b"file").unwrap();
        apply(&s.root, std::slice::from_ref(&deep_file)).unwrap();
        apply(&s.root, &[opaque(".")]).unwrap();
        assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), 0);
        apply(&s.root, std::slice::from_ref(&deep_file)).unwrap();
        apply(&s.root, &[whiteout("d")]).unwrap();
        assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), 0);
    }

    #[test]
    fn thousand_nested_directory_entries() {
        let s = Scratch::on_tmpfs();
        let mut items = Vec::new();
        let mut path = String::new();
        for i in 0..1000 {
            if i > 0 {
                path.push('/');
            }
            path.push('n');
            items.push(with_mtime(dir(&path), 1000 + i, 0));
        }
        items.push(file(&format!("{path}/bottom"), b"bottom"));
        apply(&s.root, &items).unwrap();
        let full = s.root.join(&path);
        assert_eq!(std::fs::read(full.join("bottom")).unwrap(), b"bottom");
        assert_eq!(lmeta(&full).mtime(), 1999);
        assert_eq!(lmeta(&s.root.join("n")).mtime(), 1000);
    }

    #[test]
    fn names_are_kept_byte_for_byte() {
        let s = Scratch::new();
        let names: [&[u8]; 5] = [
            b"caf\xc3\xa9",
            b"cafe\xcc\x81",
            b"\xff\xfe",
            b"tab\there",
            b"-leading",
        ];
        let items: Vec<Item> = names
            .iter()
            .map(|n| {
                let e = Entry::new(
                    LayerPath::from_tar_name(n).unwrap(),
                    EntryKind::File {
                        size: 0,
                        sparse: None,
                    },
                );
                Item(e, Vec::new())
            })
            .collect();
        apply(&s.root, &items).unwrap();
        for n in names {
            assert!(lmeta(&s.root.join(OsStr::from_bytes(n))).is_file());
        }
    }

    #[test]
    fn parent_that_is_a_file_or_dangling_symlink_is_an_error() {
        let s = Scratch::new();
        let err = apply(&s.root, &[file("f", b"f"), file("f/x", b"x")]).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = apply(&s.root, &[symlink("dl", "/missing"), file("dl/x", b"x")]).unwrap_err();
        assert!(
            err.to_string().contains("does not exist inside the root"),
            "{err}"
        );
        assert!(!Path::new("/missing").exists());
    }

    /// Not a correctness test: `cargo test -p strata-layer --release --lib -- --ignored --nocapture per_entry`.
    #[test]
    #[ignore]
    fn per_entry_cost() {
        let s = Scratch::on_tmpfs();
        let n = 20_000;
        let mut items = Vec::with_capacity(n + n / 100);
        for i in 0..n {
            if i % 100 == 0 {
                items.push(dir(&format!("small/d{:04}", i / 100)));
            }
            items.push(file(
                &format!("small/d{:04}/f{i:05}.txt", i / 100),
                &vec![b'x'; i % 4096],
            ));
        }
        let t = std::time::Instant::now();
        apply(&s.root, &items).unwrap();
        let el = t.elapsed();
        eprintln!(
            "{} entries in {:?}: {:?}/entry",
            items.len(),
            el,
            el / items.len() as u32
        );
    }
}
