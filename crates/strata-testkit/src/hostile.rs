//! What the hostile-layer tests share: the sentinel in /tmp that every escape aims at,
//! the lock that gives one test at a time the real /tmp, and the check for strays.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

pub const SENTINEL: &str = "/tmp/strata-evil-sentinel";
pub const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;

/// The cases share /tmp: one at a time. The mutex serializes the threads of one test
/// binary (`cargo test`); the lock file serializes processes too (`cargo nextest` runs
/// each test in its own process, and another checkout's tests may run at the same time).
static TMP: Mutex<()> = Mutex::new(());
const LOCK_FILE: &str = "/tmp/.strata-evil-tests.lock";

/// Holds /tmp for one case until dropped.
pub struct TmpLock {
    _thread: std::sync::MutexGuard<'static, ()>,
    _file: fs::File,
}

pub fn lock_tmp() -> TmpLock {
    let thread = TMP.lock().unwrap_or_else(|e| e.into_inner());
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("open {LOCK_FILE}: {e}"));
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("lock {LOCK_FILE}: {e}"));
    TmpLock {
        _thread: thread,
        _file: file,
    }
}

/// Removes every /tmp/strata-evil-* (never following a symlink).
pub fn clean_tmp() {
    for e in fs::read_dir("/tmp").expect("read /tmp") {
        let e = e.expect("entry of /tmp");
        if !e.file_name().to_string_lossy().starts_with("strata-evil-") {
            continue;
        }
        let path = e.path();
        let is_dir = fs::symlink_metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let r = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if let Err(err) = r {
            if err.kind() != io::ErrorKind::NotFound {
                panic!("cannot remove {}: {err}", path.display());
            }
        }
    }
}

/// /tmp/strata-evil-* other than the sentinel.
pub fn strays() -> Vec<String> {
    fs::read_dir("/tmp")
        .expect("read /tmp")
        .map(|e| {
            e.expect("entry of /tmp")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with("strata-evil-") && n != "strata-evil-sentinel")
        .collect()
}

/// The state outside the root after a case: the sentinel and any strays.
pub struct Outside {
    sentinel: io::Result<fs::Metadata>,
    content: io::Result<Vec<u8>>,
    stray: Vec<String>,
}

impl Outside {
    /// Looks at /tmp now (before `clean_tmp`).
    pub fn observe() -> Self {
        Outside {
            sentinel: fs::symlink_metadata(SENTINEL),
            content: fs::read(SENTINEL),
            stray: strays(),
        }
    }

    /// Panics unless the sentinel is as it was written and nothing else appeared.
    pub fn assert_untouched(self, what: &str) {
        let sentinel = self
            .sentinel
            .unwrap_or_else(|e| panic!("{what}: the sentinel is gone: {e}"));
        assert!(
            sentinel.is_file(),
            "{what}: the sentinel is no longer a regular file"
        );
        assert_eq!(
            sentinel.nlink(),
            1,
            "{what}: the sentinel gained a hard link"
        );
        assert_eq!(
            self.content.unwrap(),
            b"sentinel\n",
            "{what}: the sentinel's content changed"
        );
        assert!(
            self.stray.is_empty(),
            "{what}: escaped into /tmp: {:?}",
            self.stray
        );
    }
}
