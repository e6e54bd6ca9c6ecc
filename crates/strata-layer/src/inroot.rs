//! Resolving paths of a layer inside its root, never outside it.
//!
//! Every lookup goes through `openat2` with `RESOLVE_IN_ROOT`: `..` stops at the root and
//! absolute symlinks (`var/run -> /run`) resolve inside it, as if the process were
//! chrooted. Paths longer than the kernel's `PATH_MAX` are resolved in pieces (see
//! [`resolve_dir`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::Error;

/// Paths longer than this are resolved in chunks (PATH_MAX is 4096 with the NUL).
pub(crate) const CHUNK: usize = 4000;
/// `openat2` with `RESOLVE_IN_ROOT` may ask for a retry when a rename raced with `..`.
const EAGAIN_RETRIES: usize = 64;

/// The access and modification times of `st`, to set them again (`futimens`) after a
/// change that should not show, such as copying an entry into a directory.
pub fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Opens a directory to be used as a root (`O_PATH`).
pub fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening directory {}", root.display()), e.into()))
}

fn openat2_retry(
    dir: BorrowedFd<'_>,
    path: &[u8],
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) | Err(Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// Splits `p` into a head of at most `CHUNK` bytes ending at a component boundary and the rest.
fn split_chunk(p: &[u8]) -> (&[u8], &[u8]) {
    if p.len() <= CHUNK {
        return (p, &[]);
    }
    let cut = match p[..=CHUNK].iter().rposition(|&b| b == b'/') {
        Some(i) if i > 0 => i,
        // One component longer than a chunk: hand it to the kernel, which says ENAMETOOLONG.
        _ => p.iter().position(|&b| b == b'/').unwrap_or(p.len()),
    };
    (&p[..cut], p.get(cut + 1..).unwrap_or(&[]))
}

/// Opens the directory `path` (relative, normalized) with symlinks resolved inside `root`.
///
/// Beyond `CHUNK` bytes the path is resolved in pieces: the first with `RESOLVE_IN_ROOT`
/// from the root, each further one with `RESOLVE_BENEATH` from the previous piece's
/// directory. That stays confined (each piece's directory lies inside the root), and a
/// symlink in a later piece that is absolute or climbs above its piece fails with `EXDEV`
/// instead of resolving differently from a short path.
pub fn resolve_dir(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    let in_root = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    if path.is_empty() {
        return openat2_retry(root, b".", in_root);
    }
    if path.len() <= CHUNK {
        return openat2_retry(root, path, in_root);
    }
    let (head, mut rest) = split_chunk(path);
    let mut cur = openat2_retry(root, head, in_root)?;
    while !rest.is_empty() {
        let (head, tail) = split_chunk(rest);
        cur = openat2_retry(
            cur.as_fd(),
            head,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        rest = tail;
    }
    Ok(cur)
}
