//! Shared harness of the fuzz targets: a jail that every unpack runs in.
//!
//! The `unpack` and `recipe_roundtrip` targets write whatever the fuzzer invents to a
//! real directory, as root. Two things are wanted at once: that the host can never be
//! harmed, and that an escape from the target root is *seen* (a crash), not merely
//! blocked. So the unpacks run on one long-lived thread of their own that has
//! - its own mount namespace (`unshare(CLONE_NEWNS)`, per thread) with a fresh `/proc`,
//! - its own root directory (`unshare(CLONE_FS)` + `chroot`, per thread: the fuzzer's
//!   main thread, which writes crash artifacts, keeps the real one),
//!
//! and the threads `unpack` spawns inherit both. The jail (`/dev/shm/strata-fuzz-PID`)
//! holds the unpack root `/root`, sentinels at `/sentinel` and `/tmp/strata-evil-sentinel`
//! (the target of every escape in `shared/testdata/make-evil.py`), `/recipes` for
//! recipes and `/proc`. After each input the harness checks that nothing but the root
//! changed; anything else panics, which libFuzzer reports as a crash.
//!
//! The unpacks run with `UnpackOptions::sandbox` off: Landlock would turn an escape into
//! a quiet `EACCES` and hide exactly the bug the jail is there to show. (Landlock would
//! not pile up across inputs, since `unpack` confines a fresh thread each call; it is
//! simply the wrong oracle.) Where the jail cannot be built (not root), the harness
//! falls back to Landlock on and checks only the jail directory.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

const SENTINEL: &[u8] = b"strata fuzz sentinel: nothing may change this file\n";

/// Where a job may write.
pub struct Cell {
    /// A fresh, empty directory for the job's unpack, removed after the job.
    pub root: PathBuf,
    /// A directory for the job's own files (recipes); it must be empty after the job.
    pub scratch: PathBuf,
    /// Whether to turn on the Landlock sandbox of `unpack` (only when not jailed).
    pub sandbox: bool,
    /// The jail's top directory, as the jailed thread sees it.
    top: PathBuf,
    /// Entries `top` may hold.
    allowed: BTreeSet<String>,
    /// Real directories bound into the jail (for crash artifacts), as seen inside it:
    /// they and their parents may exist.
    binds: Vec<PathBuf>,
    /// The jail thread's working directory: the real one's path, inside the jail (so that
    /// a relative `-artifact_prefix` lands in its bound directory).
    cwd: PathBuf,
    /// (uid, gid, mode) of the sentinels when the jail was made.
    sentinel_meta: (u32, u32, u32),
}

type Job = Box<dyn FnOnce(&Cell) + Send>;

static JAIL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Runs `f` on the jail thread with a fresh, empty root, then checks that nothing
/// outside the root changed (panicking if something did) and removes the root.
pub fn run_jailed<T: Send + 'static>(f: impl FnOnce(&Cell) -> T + Send + 'static) -> T {
    let jobs = JAIL.get_or_init(|| Mutex::new(start()));
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |cell| {
        let _ = tx.send(f(cell));
    });
    jobs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .expect("the jail thread is gone");
    rx.recv().expect("the jail thread died")
}

fn start() -> mpsc::Sender<Job> {
    let parent = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let base = parent.join(format!("strata-fuzz-{}", std::process::id()));
    if base.exists() {
        fs::remove_dir_all(&base).expect("removing a stale jail");
    }
    for d in ["tmp", "recipes"] {
        fs::create_dir_all(base.join(d)).expect("creating the jail");
    }
    fs::write(base.join("sentinel"), SENTINEL).expect("writing a sentinel");
    fs::write(base.join("tmp/strata-evil-sentinel"), SENTINEL).expect("writing a sentinel");
    let m = fs::metadata(base.join("sentinel")).expect("stat of the sentinel");
    let sentinel_meta = (m.uid(), m.gid(), m.mode());

    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("strata-fuzz-jail".into())
        .spawn(move || {
            let mut cell = enter(&base);
            cell.sentinel_meta = sentinel_meta;
            ready_tx.send(()).expect("fuzz main thread gone");
            for job in rx {
                fs::create_dir(&cell.root).expect("creating the unpack root");
                job(&cell);
                check(&cell);
                fs::remove_dir_all(&cell.root).expect("removing the unpack root");
            }
        })
        .expect("spawning the jail thread");
    ready_rx.recv().expect("the jail thread failed to start");
    tx
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("NUL in a jail path")
}

/// Enters the jail on the calling thread; falls back to no jail (sandbox on) if it cannot.
fn enter(base: &Path) -> Cell {
    let mut allowed: BTreeSet<String> = ["root", "sentinel", "tmp", "recipes"]
        .map(String::from)
        .into();
    let jailed = unsafe {
        // SAFETY: plain syscalls on this thread's own namespace and fs attributes.
        let ok = libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) == 0
            && libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0;
        if ok {
            let proc_dir = base.join("proc");
            let _ = fs::create_dir(&proc_dir);
            let p = cstr(&proc_dir);
            if libc::mount(
                c"proc".as_ptr(),
                p.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                eprintln!(
                    "strata-fuzz: note: no /proc in the jail ({}); xattrs on symlinks and devices will fail",
                    std::io::Error::last_os_error()
                );
            }
            allowed.insert("proc".into());
        }
        // A crash on a jailed thread (a panic aborts where it happens, and so do
        // signals) makes libFuzzer write the input there, resolved in the jail: bind the
        // real artifact directory at the same path inside it.
        let mut binds = Vec::new();
        let cwd = std::env::current_dir()
            .and_then(|d| d.canonicalize())
            .unwrap_or_else(|_| "/".into());
        if ok {
            for dir in artifact_dirs() {
                let inside = base.join(dir.strip_prefix("/").unwrap_or(&dir));
                let (src, dst) = (cstr(&dir), cstr(&inside));
                let bound = fs::create_dir_all(&inside).is_ok()
                    && libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ) == 0;
                if !bound {
                    eprintln!(
                        "strata-fuzz: note: cannot bind {} into the jail ({}): a crash on the jail thread may lose its input",
                        dir.display(),
                        std::io::Error::last_os_error()
                    );
                    continue;
                }
                binds.push(dir.clone());
            }
        }
        let b = cstr(base);
        let _ = fs::create_dir_all(base.join(cwd.strip_prefix("/").unwrap_or(&cwd)));
        let c = cstr(&cwd);
        let jailed = ok && libc::chroot(b.as_ptr()) == 0 && libc::chdir(c.as_ptr()) == 0;
        (jailed, binds, cwd)
    };
    let (jailed, binds, cwd) = jailed;
    if jailed {
        Cell {
            root: "/root".into(),
            scratch: "/recipes".into(),
            sandbox: false,
            top: "/".into(),
            allowed,
            binds,
            cwd,
            sentinel_meta: (0, 0, 0),
        }
    } else {
        eprintln!(
            "strata-fuzz: note: cannot build the chroot jail ({}; run as root for it): \
             unpacking with the Landlock sandbox on, escapes are blocked but only checked in {}",
            std::io::Error::last_os_error(),
            base.display()
        );
        Cell {
            root: base.join("root"),
            scratch: base.join("recipes"),
            sandbox: true,
            top: base.to_owned(),
            allowed,
            binds: Vec::new(),
            cwd: PathBuf::new(),
            sentinel_meta: (0, 0, 0),
        }
    }
}

/// The directories libFuzzer writes crash inputs to: that of `-artifact_prefix` and of
/// `-exact_artifact_path` (cargo fuzz passes the first), else the working directory.
fn artifact_dirs() -> Vec<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut dirs = Vec::new();
    for arg in std::env::args_os() {
        let arg = arg.as_bytes();
        let dir = if let Some(p) = arg.strip_prefix(b"-artifact_prefix=") {
            let p = Path::new(std::ffi::OsStr::from_bytes(p));
            if arg.ends_with(b"/") {
                Some(p.to_path_buf())
            } else {
                p.parent().map(Path::to_path_buf)
            }
        } else if let Some(p) = arg.strip_prefix(b"-exact_artifact_path=") {
            Path::new(std::ffi::OsStr::from_bytes(p))
                .parent()
                .map(Path::to_path_buf)
        } else {
            None
        };
        if let Some(d) = dir {
            let d = cwd.join(d);
            let _ = fs::create_dir_all(&d);
            if let Ok(d) = d.canonicalize() {
                dirs.push(d);
            }
        }
    }
    if dirs.is_empty() {
        dirs.extend(cwd.canonicalize());
    }
    dirs.retain(|d| d != Path::new("/"));
    dirs
}

/// Panics if anything outside the root changed.
fn check(cell: &Cell) {
    let top = &cell.top;
    // What each jail directory may hold (paths as seen from the jail's top): the fixed
    // entries, plus the way down to each bound artifact directory (whose contents are
    // the real directory's, not the jail's).
    let mut expected: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    expected.insert("".into(), cell.allowed.clone());
    expected.insert("tmp".into(), ["strata-evil-sentinel".to_string()].into());
    expected.insert("recipes".into(), BTreeSet::new());
    for bind in cell.binds.iter().chain([&cell.cwd]) {
        let rel = bind.strip_prefix("/").unwrap_or(bind);
        let mut parent = PathBuf::new();
        for c in rel.components() {
            let name = c.as_os_str().to_string_lossy().into_owned();
            expected
                .entry(parent.clone())
                .or_default()
                .insert(name.clone());
            parent.push(name);
        }
    }
    let bound: BTreeSet<PathBuf> = cell
        .binds
        .iter()
        .map(|b| b.strip_prefix("/").unwrap_or(b).to_owned())
        .collect();
    for (dir, allowed) in &expected {
        if bound.contains(dir) {
            continue;
        }
        let entries = fs::read_dir(top.join(dir))
            .unwrap_or_else(|e| panic!("listing the jail's /{}: {e}", dir.display()));
        for e in entries {
            let name = e
                .expect("listing the jail")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                allowed.contains(&name),
                "unpack wrote outside its root: /{} appeared in the jail",
                dir.join(&name).display()
            );
        }
    }
    let root = fs::symlink_metadata(&cell.root).expect("the unpack root vanished");
    assert!(
        root.is_dir(),
        "the unpack root was replaced by a non-directory"
    );
    for s in ["sentinel", "tmp/strata-evil-sentinel"] {
        let p = top.join(s);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("sentinel {s} is gone: {e}"));
        assert!(m.is_file(), "sentinel {s} is no longer a regular file");
        assert_eq!(m.nlink(), 1, "sentinel {s} gained a hard link");
        assert_eq!(
            (m.uid(), m.gid(), m.mode()),
            cell.sentinel_meta,
            "sentinel {s} changed owner or mode"
        );
        assert_eq!(
            fs::read(&p).expect("reading a sentinel"),
            SENTINEL,
            "sentinel {s} was overwritten"
        );
    }
}
