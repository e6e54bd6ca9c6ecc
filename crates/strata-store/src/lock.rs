//! File locks (`flock(2)`, through std) that let many processes share one store, and the
//! staging directories whose locks tell live work from a crash's debris.
//!
//! * [`StoreLock`] (`ROOT/strata.lock`, exclusive) is held for the short critical sections
//!   that change files and database rows together, and by crash recovery. Nothing slow
//!   (unpacking, copying, deleting trees) runs under it.
//! * [`LayerLock`] (`layers/ID/lock`) is shared by whoever reads a layer's directory and
//!   exclusive for whoever rewrites or removes it; the lock file moves with the directory
//!   when a removal renames it, so a reader that got in first keeps the layer alive.
//! * [`Staging`] is a directory `staging/TOKEN/` announced by `staging/TOKEN.lock`, a file
//!   that appears already locked (made with `O_TMPFILE`, locked, then linked into place).
//!   Recovery removes a staging directory only when it can take its lock, i.e. its owner
//!   is gone, or when the lock file is missing.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, CWD};

use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::mounts;

/// The store-wide lock, released on drop.
pub struct StoreLock(#[allow(dead_code)] File);

impl StoreLock {
    /// Waits for and takes the store lock.
    pub fn acquire(root: &Path) -> Result<StoreLock> {
        let path = root.join("strata.lock");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(StoreLock(file))
    }
}

/// A layer's lock, shared or exclusive, released on drop.
pub struct LayerLock(#[allow(dead_code)] File);

impl LayerLock {
    fn open(path: &Path) -> Result<File> {
        File::open(path).map_err(|e| Error::io(format!("opening the lock {}", path.display()), e))
    }

    /// Takes the lock at `path` shared, waiting for an exclusive holder.
    pub fn shared(path: &Path) -> Result<LayerLock> {
        let file = Self::open(path)?;
        file.lock_shared()
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(LayerLock(file))
    }

    /// Takes the lock at `path` exclusive if nobody holds it; `None` if somebody does.
    pub fn try_exclusive(path: &Path) -> Result<Option<LayerLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(LayerLock(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// [`LayerLock::try_exclusive`] of layer `id`, refusing when the layer is in use.
    pub fn exclusive_for(path: &Path, id: &LayerId, what: &str) -> Result<LayerLock> {
        Self::try_exclusive(path)?.ok_or_else(|| {
            Error::refused(
                id,
                format!("is in use by another strata process; cannot {what} it now"),
            )
        })
    }
}

/// 128 random bits as hex, for staging names and short link names.
pub fn token() -> String {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom(2) exists on every kernel with openat2; fall back to time and pid.
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let mix = t ^ ((std::process::id() as u128) << 64);
                return format!("{mix:032x}");
            }
        }
    }
    hex::encode(bytes)
}

/// A directory for work in progress, removed (mounts inside it detached first) on drop.
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    keep: bool,
}

impl Staging {
    /// Makes `ROOT/staging/TOKEN/`, announced by its held lock.
    pub(crate) fn new(staging_root: &Path) -> Result<Staging> {
        let token = token();
        let lock_path = staging_root.join(format!("{token}.lock"));
        let dir = staging_root.join(&token);
        let fail = |what: &str, e: rustix::io::Errno| {
            Error::io(format!("{what} in {}", staging_root.display()), e)
        };
        let fd = rfs::open(
            staging_root,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fail("creating a lock file", e))?;
        let file = File::from(fd);
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        rfs::linkat(CWD, &proc_path, CWD, &lock_path, AtFlags::SYMLINK_FOLLOW)
            .map_err(|e| fail("publishing a lock file", e))?;
        rfs::mkdir(&dir, Mode::from_raw_mode(0o700))
            .map_err(|e| fail("creating a directory", e))?;
        Ok(Staging {
            dir,
            lock_path,
            _lock: file,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// After the directory's content was moved out: remove only what is left (nothing
    /// if the directory itself was renamed away).
    pub fn done(mut self) -> Result<()> {
        self.keep = true;
        mounts::remove_tree(&self.dir)?;
        std::fs::remove_file(&self.lock_path)
            .or_else(ignore_missing)
            .map_err(|e| Error::io(format!("removing {}", self.lock_path.display()), e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: recovery removes what is left.
            if mounts::remove_tree(&self.dir).is_ok() {
                let _ = std::fs::remove_file(&self.lock_path);
            }
        }
    }
}

pub(crate) fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Removes the staging entries whose owners are gone; returns how many.
pub fn sweep_staging(staging_root: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(staging_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("listing {}", staging_root.display()), e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(format!("listing {}", staging_root.display()), e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    let mut removed = 0;
    for name in &names {
        if let Some(token) = name.strip_suffix(".lock") {
            let lock = staging_root.join(name);
            let Some(_held) = LayerLock::try_exclusive(&lock).or_else(|e| match e {
                Error::Io { ref error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                    Ok(None)
                }
                e => Err(e),
            })?
            else {
                continue;
            };
            mounts::remove_tree(&staging_root.join(token))?;
            std::fs::remove_file(&lock)
                .or_else(ignore_missing)
                .map_err(|e| Error::io(format!("removing {}", lock.display()), e))?;
            removed += 1;
        } else if !names.contains(&format!("{name}.lock"))
            && !staging_root.join(format!("{name}.lock")).exists()
        {
            // Its lock is gone: the owner died between removing the lock and the directory,
            // or never published one.
            mounts::remove_tree(&staging_root.join(name))?;
            removed += 1;
        }
    }
    Ok(removed)
}
