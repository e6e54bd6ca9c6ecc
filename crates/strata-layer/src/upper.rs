//! The lower layers of an overlay upper directory, read the way overlayfs merges them.
//!
//! [`DirWriter::open_upper`](crate::dir_writer::DirWriter::open_upper) applies a layer
//! straight into the upper directory of an overlay mount that is not mounted: what
//! overlayfs would do through a mount (copy a lower directory up before writing in it,
//! leave a whiteout where a lower entry was removed, mark a directory that replaced one
//! opaque), the writer does itself, at the cost of plain file-system calls instead of
//! overlayfs's per-call overhead (about twice the time of an unpack for a layer of many
//! small files). This module answers the one question that needs the lower layers: what
//! shows through a merged directory.
//!
//! The rules are overlayfs's (with `redirect_dir` and `metacopy` off, as the store mounts
//! it): a merged directory is made of the directories of the same path in the layers
//! from the top down, stopping at a layer whose entry is not a directory, a whiteout
//! (a 0/0 character device) or after an opaque directory (`trusted.overlay.opaque=y`).
//! A name in a merged directory is the entry of the topmost of those layers that holds
//! it, unless that entry is a whiteout. Lower layers are only read, through descriptors
//! opened from their roots without following any symlink.

use std::ffi::CStr;
use std::path::PathBuf;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::Error;

/// The xattr that makes an upper (or lower) directory hide what lies beneath it.
pub(crate) use crate::xattr::OVERLAY_OPAQUE as OPAQUE_XATTR;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A whiteout as overlayfs writes it: a character device numbered 0/0.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether the open directory `fd` is opaque.
pub(crate) fn is_opaque(fd: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 2];
    matches!(rfs::fgetxattr(fd, OPAQUE_XATTR, &mut v), Ok(1) if v[0] == b'y')
}

/// Opens the directory `name` in `dir` for reading, never following a symlink.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rfs::openat(dir, name, DIR_FLAGS, Mode::empty())
}

/// The lower layers' roots, nearest first.
pub(crate) struct Lowers {
    roots: Vec<OwnedFd>,
}

/// The lower directories that show through one merged directory, topmost first.
pub(crate) type Below = Vec<OwnedFd>;

/// One entry of the lower layers in a merged directory.
pub(crate) struct LowerEntry<'a> {
    /// The lower directory holding it.
    pub dir: BorrowedFd<'a>,
    pub stat: Stat,
}

impl Lowers {
    /// Opens the root of each lower layer, `dirs` nearest first.
    pub(crate) fn open(dirs: &[PathBuf]) -> Result<Lowers, Error> {
        let roots = dirs
            .iter()
            .map(|d| {
                rfs::open(d.as_path(), DIR_FLAGS, Mode::empty()).map_err(|e| {
                    Error::io(format!("opening the lower layer {}", d.display()), e.into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Lowers { roots })
    }

    /// What shows through the merged root: every lower root.
    pub(crate) fn root(&self) -> Result<Below, Errno> {
        self.roots
            .iter()
            .map(|fd| open_dir(fd.as_fd(), c"."))
            .collect()
    }
}

/// The entry `name` of the merged directory whose lower part is `below`: the topmost
/// holding it, `None` if none does or the topmost is a whiteout.
pub(crate) fn entry<'a>(below: &'a Below, name: &CStr) -> Result<Option<LowerEntry<'a>>, Errno> {
    for dir in below {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_whiteout(&st) => return Ok(None),
            Ok(stat) => {
                return Ok(Some(LowerEntry {
                    dir: dir.as_fd(),
                    stat,
                }))
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The lower part of the merged subdirectory `name` of the merged directory whose lower
/// part is `below`.
pub(crate) fn descend(below: &Below, name: &CStr) -> Result<Below, Errno> {
    let mut next = Vec::new();
    for dir in below {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let fd = open_dir(dir.as_fd(), name)?;
                let opaque = is_opaque(fd.as_fd());
                next.push(fd);
                if opaque {
                    break;
                }
            }
            // A whiteout or a non-directory ends the merge.
            Ok(_) => break,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(next)
}

/// Every name that shows through `below` (whiteouts excluded), sorted.
pub(crate) fn names(below: &Below) -> Result<Vec<std::ffi::CString>, Errno> {
    let mut all = std::collections::BTreeSet::new();
    for dir in below {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        let fd = open_dir(dir.as_fd(), c".")?;
        let mut rd = rfs::RawDir::new(&fd, &mut buf);
        while let Some(ent) = rd.next() {
            let name = ent?.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                all.insert(name);
            }
        }
    }
    let mut shown = Vec::new();
    for name in all {
        if entry(below, &name)?.is_some() {
            shown.push(name);
        }
    }
    Ok(shown)
}
