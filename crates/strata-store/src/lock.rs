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
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, CWD};

use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::mounts;

/// How a process waits for the store lock, which another process may hold for long (a
/// stuck command, a debugger, a `flock` in a script).
#[derive(Clone, Default)]
pub struct LockWait {
    /// Give up after this long ([`Error::LockTimeout`]); `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// Told once, after [`LockWait::NOTICE_AFTER`] of waiting, whom the wait is for
    /// (`process 1234 (strata load -i x.tar)`), so a person knows why nothing happens.
    pub notice: Option<LockNotice>,
}

/// What [`LockWait::notice`] calls.
pub type LockNotice = Arc<dyn Fn(&LockHolder) + Send + Sync>;

impl LockWait {
    /// How long a wait goes unremarked.
    pub const NOTICE_AFTER: Duration = Duration::from_secs(1);
}

impl std::fmt::Debug for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWait")
            .field("timeout", &self.timeout)
            .field("notice", &self.notice.is_some())
            .finish()
    }
}

/// Who holds a lock that a process waits for: the lock file and, if the kernel says
/// (`/proc/locks`), the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// The lock file waited for.
    pub path: PathBuf,
    /// The holding process, when `/proc/locks` names it.
    pub pid: Option<u32>,
    /// The holder's command line, if it can be read.
    pub command: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the store lock {}, held by ", self.path.display())?;
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "process {pid} ({cmd})"),
            (Some(pid), None) => write!(f, "process {pid}"),
            _ => f.write_str("another process"),
        }
    }
}

impl LockHolder {
    /// Finds the holder of the `flock` on `file` in `/proc/locks`.
    fn of(path: &Path, file: &File) -> LockHolder {
        let pid = rfs::fstat(file).ok().and_then(|st| {
            let want = format!(
                "{:02x}:{:02x}:{}",
                rfs::major(st.st_dev),
                rfs::minor(st.st_dev),
                st.st_ino
            );
            let locks = std::fs::read_to_string("/proc/locks").ok()?;
            // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters have `->`.
            locks.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&want.as_str()))
                    .then(|| fields.get(4)?.parse().ok())
                    .flatten()
            })
        });
        let command = pid.and_then(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let words: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            (!words.is_empty()).then(|| words.join(" "))
        });
        LockHolder {
            path: path.to_path_buf(),
            pid,
            command,
        }
    }
}

/// The store-wide lock, released on drop.
pub struct StoreLock(#[allow(dead_code)] File);

impl StoreLock {
    /// Waits for and takes the store lock, as `wait` says.
    pub fn acquire(root: &Path, wait: &LockWait) -> Result<StoreLock> {
        let path = root.join("strata.lock");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock(file)),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e))
                }
            }
            let waited = start.elapsed();
            if wait.timeout.is_some_and(|t| waited >= t) {
                return Err(Error::LockTimeout {
                    holder: LockHolder::of(&path, &file),
                    waited,
                });
            }
            if !told && waited >= LockWait::NOTICE_AFTER {
                told = true;
                if let Some(notice) = &wait.notice {
                    notice(&LockHolder::of(&path, &file));
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
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

    /// The staging directory: what is put there is removed with it unless moved out.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// After the directory's content was moved out: remove only what is left (nothing
    /// if the directory itself was renamed away).
    pub fn done(mut self) -> Result<()> {
        self.keep = true;
        // Mostly empty by now: rmdir(2) takes an empty directory (never one something is
        // mounted on), without reading the mount table as a tree's removal does.
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => mounts::remove_tree(&self.dir)?,
        }
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
