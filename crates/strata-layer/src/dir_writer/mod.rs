//! [`DirWriter`]: applies a layer onto a directory, with every operation confined to it.
//!
//! A layer is hostile input. Its entries can name symlinks planted earlier (by this layer
//! or a lower one) that point anywhere: `var/run -> /run`, `up -> ../../..`, loops. The
//! writer therefore never joins a path string onto the root. It opens the root once as a
//! [`Root`] (an `O_PATH` descriptor) and resolves every parent directory with
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
//! Two targets share all of this: a plain directory ([`DirWriter::open`]) and the upper
//! directory of an overlay ([`DirWriter::open_upper`]). They differ only in what lies
//! below the directory being written (nothing, or the lower layers), which the writer
//! asks through one small strategy: what shows through at a path, hide it (a whiteout,
//! an opaque directory), copy it up before changing it. The `add_*` methods never ask
//! which target they write.
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

mod background;
mod entries;
mod meta;
mod overlay;
mod target;
mod tree;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, FileType, Stat};
use rustix::io::Errno;

use crate::pipe::Shared;
use crate::root::{parent_bytes, resolve_error, Dir, Root};
use crate::{Entry, EntryKind, Error, LayerPath, LayerWriter, Metadata, SparseExtent};
pub use target::LowersLater;
use target::{Later, Plain, Target};
use tree::Tree;

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
    /// The directory written, and what this layer did to it so far.
    tree: Tree,
    /// What lies below it: nothing, or the lower layers of an overlay.
    target: Box<dyn Target>,
    /// Opaque directories, cleaned in `finish`.
    opaque: Vec<LayerPath>,
    current: Option<OpenFile>,
    entries: u64,
    data_bytes: u64,
}

/// The regular file whose data is being written.
struct OpenFile {
    path: LayerPath,
    /// `None` once handed to the background (see `handed`).
    file: Option<File>,
    /// Its data, metadata and closing are left to the background thread
    /// ([`background`]): a small, plain (not sparse) file.
    handed: bool,
    /// The entry's number.
    seq: u64,
    meta: Metadata,
    size: u64,
    expected: u64,
    delivered: u64,
    /// For a sparse file: the extents, the current one and how much of it is written.
    sparse: Option<(Vec<SparseExtent>, usize, u64)>,
    /// Who owns it already.
    owner: tree::Owner,
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

impl DirWriter {
    /// Opens `root`, which must be an existing directory, once (`O_PATH|O_DIRECTORY`);
    /// every later operation is resolved relative to that descriptor.
    pub fn open(root: &Path, options: DirWriterOptions) -> Result<Self, Error> {
        let root = Root::open(root).map_err(|e| match e {
            Error::Io { error, .. } => Error::io(
                format!("opening the target directory {}", root.display()),
                error,
            ),
            e => e,
        })?;
        Ok(DirWriter::with_target(root, options, Box::new(Plain)))
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
        w.target = Box::new(overlay::Upper::open(lowers)?);
        Ok(w)
    }

    /// Like [`open_upper`](Self::open_upper), but the lower layers may still be being
    /// written (by another writer, applying the layer below in parallel): `lowers` is
    /// called, once, on this writer's thread, the first time an entry needs to see below
    /// (a parent directory missing from `upper`, a whiteout, a hard link to a lower file,
    /// an opaque directory), and must return when they are complete, nearest first. Until
    /// then entries go straight into `upper`. The result is the same as with
    /// [`open_upper`](Self::open_upper): whether the writer looks below depends only on
    /// what `upper` holds.
    pub fn open_upper_later(
        upper: &Path,
        lowers: LowersLater,
        options: DirWriterOptions,
    ) -> Result<Self, Error> {
        let mut w = DirWriter::open(upper, options)?;
        w.target = Box::new(Later::Waiting(Some(lowers)));
        Ok(w)
    }

    fn with_target(root: Root, opts: DirWriterOptions, target: Box<dyn Target>) -> Self {
        DirWriter {
            tree: Tree::new(root, opts),
            target,
            opaque: Vec::new(),
            current: None,
            entries: 0,
            data_bytes: 0,
        }
    }

    /// Hook called with a read-only [`File`] of a regular file that this layer wrote
    /// earlier (non-empty), just before the writer removes or replaces it: an entry
    /// written twice, a directory replaced by a file, a file replaced by a link. Called
    /// for every such file, also those inside a directory tree being removed. The recipe
    /// recorder uses it to keep shadowed bodies. An error from the hook fails the entry.
    pub fn on_replace(&mut self, hook: ReplaceHook) {
        self.tree.hook = Some(hook);
    }

    // ---- resolution -------------------------------------------------------------------

    /// The directory `dir`, resolved inside the root (through the merged view for an
    /// upper directory). With `create`, missing directories are created as implied 0755
    /// root-owned directories; without it a missing (or non-directory) component gives
    /// `None`.
    fn dir_fd(
        &mut self,
        dir: &[u8],
        create: bool,
        entry: &LayerPath,
    ) -> Result<Option<Arc<Dir>>, Error> {
        if dir.is_empty() {
            self.tree.parent_foreign = self.tree.root_foreign();
            return Ok(Some(self.tree.root.top().clone()));
        }
        if let Some((fd, foreign)) = self.tree.cache.get(dir) {
            self.tree.parent_foreign = foreign;
            return Ok(Some(fd));
        }
        let fd = match self.tree.root.dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                match self.target.resolve(&mut self.tree, dir, create, entry)? {
                    Some(fd) => fd,
                    None => return Ok(None),
                }
            }
            Err(e) => return Err(resolve_error(entry, dir, e)),
        };
        let st = rfs::fstat(&fd).ok();
        self.tree.keep_times(dir, st.as_ref());
        let foreign = self.tree.foreign_group(st.as_ref());
        self.tree.parent_foreign = foreign;
        let fd = Arc::new(fd);
        self.tree.cache.put(dir, fd.clone(), foreign);
        Ok(Some(fd))
    }

    /// The parent directory of `path` (not the root) and its last component.
    fn parent(
        &mut self,
        path: &LayerPath,
        create: bool,
    ) -> Result<Option<(Arc<Dir>, std::ffi::CString)>, Error> {
        let name = crate::root::c_name(path)?;
        Ok(self
            .dir_fd(parent_bytes(path.as_bytes()), create, path)?
            .map(|fd| (fd, name)))
    }

    /// Whether a lower layer's entry shows through at `path` (never for a plain target).
    fn lower_holds(&mut self, path: &LayerPath) -> Result<bool, Error> {
        if path.is_root() {
            return Ok(false);
        }
        Ok(self
            .target
            .lower_at(&mut self.tree, path, None, |_| false)?
            .is_some())
    }

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
        // Copied here, never handed over: the background only writes what it is given.
        cur.handed = false;
        let Some(file) = cur.file.as_ref() else {
            return Err(Error::Misuse(format!(
                "data of `{}` copied after data was written",
                cur.path
            )));
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
            match rfs::copy_file_range(from, None, file, None, chunk) {
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
                    let copied = io::copy(&mut (&mut src).take(left), &mut &*file)
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

    /// Says where the entries added from now on start in the layer (the offset of their
    /// headers): an error found later, on the thread that finishes files in the
    /// background, is then located there ([`Error::At`]) like those of the entry at hand.
    pub fn locate(&mut self, offset: u64) {
        self.tree.background.at = Some(offset);
    }

    /// [`write_data`](LayerWriter::write_data) of bytes the input can hand over as they
    /// are (`shared`, mapped): a file finished in the background takes them without a
    /// copy.
    pub(crate) fn write_shared(
        &mut self,
        data: &[u8],
        shared: Option<Shared>,
    ) -> Result<(), Error> {
        let result = self.write_file_data(data, shared);
        self.settle(result)
    }

    /// An error of the background thread, found by now, comes before `result`: it
    /// belongs to an earlier entry.
    fn settle(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        match result {
            Ok(()) => self.tree.background.check(),
            Err(e) => Err(self.tree.background.first_error()?.unwrap_or(e)),
        }
    }

    fn add_entry(&mut self, entry: &Entry) -> Result<(), Error> {
        self.complete_current()?;
        self.entries += 1;
        self.tree.meta.warnings.seq = self.entries;
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

    fn write_file_data(&mut self, data: &[u8], shared: Option<Shared>) -> Result<(), Error> {
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
        cur.delivered += data.len() as u64;
        self.data_bytes += data.len() as u64;
        if cur.handed {
            if let Some(file) = cur.file.take() {
                let handed = background::Handed {
                    file,
                    path: cur.path.clone(),
                    seq: cur.seq,
                };
                self.tree.background.begin(handed);
            }
            return self.tree.background.data(data, shared);
        }
        let fail =
            |path: &LayerPath, e: io::Error| Error::apply_io(path, "cannot write file data", e);
        let Some(file) = cur.file.as_mut() else {
            return Err(Error::Misuse(format!("`{}` is not open", cur.path)));
        };
        match &mut cur.sparse {
            None => file.write_all(data).map_err(|e| fail(&cur.path, e))?,
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
                    file.write_all_at(&rest[..n], ext.offset + *done)
                        .map_err(|e| fail(&cur.path, e))?;
                    *done += n as u64;
                    rest = &rest[n..];
                }
            }
        }
        Ok(())
    }

    fn finish_all(&mut self) -> Result<(), Error> {
        self.complete_current()?;
        self.tree.meta.warnings.seq = self.entries + 1;
        // Opaque directories are swept and directory times set after every file is.
        self.tree.background.sync()?;
        self.finish_opaque()?;
        self.finish_dirs()?;
        let later = self.tree.background.finish()?;
        self.tree.meta.warnings.merge(later);
        Ok(())
    }
}

impl LayerWriter for DirWriter {
    type Summary = ApplySummary;

    fn add(&mut self, entry: &Entry) -> Result<(), Error> {
        let result = self.add_entry(entry);
        self.settle(result)
    }

    fn write_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let result = self.write_file_data(data, None);
        self.settle(result)
    }

    fn finish(mut self) -> Result<ApplySummary, Error> {
        let result = self.finish_all();
        self.settle(result)?;
        Ok(ApplySummary {
            entries: self.entries,
            data_bytes: self.data_bytes,
            warnings: self.tree.meta.warnings.take(),
        })
    }
}
