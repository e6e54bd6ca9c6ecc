//! What is mounted where (`/proc/self/mountinfo`), unmounting, and removing a directory
//! tree without ever deleting through a mount that is still inside it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, OFlags};
use rustix::io::Errno;
use rustix::mount::{unmount, UnmountFlags};

use crate::error::{Error, Result};

/// Decodes the octal escapes (`\040` for a space) of a mountinfo path.
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Every mount point of this mount namespace, in mount order.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let info = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    Ok(info
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape)
        .collect())
}

/// Mount points at or below `dir`, deepest (latest) first.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    found.reverse();
    Ok(found)
}

/// True if something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> Result<bool> {
    Ok(mount_points()?.iter().any(|m| m == path))
}

/// Unmounts `path`; `EINVAL` (nothing mounted there) is fine. With `detach`, a busy mount
/// is detached lazily instead of failing.
pub fn unmount_path(path: &Path, detach: bool) -> Result<()> {
    let flags = if detach {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    match unmount(path, flags) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::BUSY) => Err(Error::io(
            format!("unmounting {}", path.display()),
            std::io::Error::other("it is busy: a process is using files below it"),
        )),
        Err(e) => Err(Error::io(format!("unmounting {}", path.display()), e)),
    }
}

/// Removes `dir` and everything below it (nothing if it is absent). Mounts inside it are
/// detached first, so the removal never reaches into another file system: debris of a
/// crashed apply may still have its overlay mounted.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match rfs::open(
        dir,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    ) {
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(format!("opening {}", dir.display()), e)),
        Ok(_) => {}
    }
    for m in mounts_under(dir)? {
        unmount_path(&m, true)?;
    }
    if !mounts_under(dir)?.is_empty() {
        return Err(Error::io(
            format!("removing {}", dir.display()),
            std::io::Error::other("something is still mounted below it"),
        ));
    }
    // std's remove_dir_all never follows symlinks (it walks with openat and O_NOFOLLOW).
    // Another process may be deleting the same doomed tree: entries vanishing under it
    // make one pass fail, so try again while the tree is still there.
    let mut attempts = 0;
    loop {
        let result = match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => std::fs::remove_file(dir),
            r => r,
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if attempts < 5 && dir.symlink_metadata().is_ok() => attempts += 1,
            Err(_) if dir.symlink_metadata().is_err() => return Ok(()),
            Err(e) => return Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(b"/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape(b"/x\\134y"), PathBuf::from("/x\\y"));
        assert_eq!(unescape(b"/plain\\04"), PathBuf::from("/plain\\04"));
    }

    #[test]
    fn the_root_is_a_mount_point() {
        assert!(mount_points().unwrap().iter().any(|m| m == Path::new("/")));
    }
}
