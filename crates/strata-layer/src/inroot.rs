//! Opening paths of a layer inside its root, never outside it.
//!
//! Every lookup goes through `openat2` with `RESOLVE_IN_ROOT`: `..` stops at the root and
//! absolute symlinks (`var/run -> /run`) resolve inside it, as if the process were
//! chrooted. Paths longer than the kernel's `PATH_MAX` are resolved in pieces, each
//! piece inside the directory the previous one reached.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::{Error, LayerPath};

/// Longest piece handed to one `openat2` call.
const PIECE: usize = 3072;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens a directory to be used as a root (`O_PATH`, following nothing but the path given).
pub fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening directory {}", root.display()), e.into()))
}

/// Resolves the directory `dir` inside `root` (intermediate symlinks followed in root).
pub fn open_dir(root: BorrowedFd<'_>, dir: &LayerPath) -> io::Result<OwnedFd> {
    open_pieces(root, dir.as_bytes(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
}

/// Opens the regular file at `path` inside `root` for reading, without following a
/// final symlink.
pub fn open_file(root: BorrowedFd<'_>, path: &LayerPath) -> io::Result<OwnedFd> {
    let name = path.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::IsADirectory))?;
    let parent = open_dir(root, &path.parent().unwrap_or_default())?;
    Ok(rustix::fs::openat(
        parent.as_fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_pieces(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let mut rest = path;
    let mut cur: Option<OwnedFd> = None;
    loop {
        let (piece, next) = if rest.len() <= PIECE {
            (rest, &b""[..])
        } else {
            let cut = rest[..PIECE].iter().rposition(|&b| b == b'/').unwrap_or(PIECE);
            (&rest[..cut], &rest[(cut + 1).min(rest.len())..])
        };
        let piece = if piece.is_empty() { &b"."[..] } else { piece };
        let base = cur.as_ref().map_or(root, |f| f.as_fd());
        let fd = rustix::fs::openat2(base, piece, flags | OFlags::DIRECTORY, Mode::empty(), RESOLVE)?;
        if next.is_empty() {
            return Ok(fd);
        }
        cur = Some(fd);
        rest = next;
    }
}
