//! The store against other processes, kills and full disks:
//!
//! * a load that needs a layer another process is importing waits for it, then refuses a
//!   clash at once (naming it), or imports the layer itself when the other import left
//!   nothing;
//! * a kill during a load leaves no blob that nothing refers to once the store is opened
//!   again, and `fsck` names such blobs;
//! * a full disk during a load leaves nothing behind and says the disk is full;
//! * a command waiting for the store lock says for whom, and `--lock-timeout` bounds it.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use strata_store::{ImportOptions, LayerId, Store, StoreOptions};

struct TestStore {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl TestStore {
    fn new() -> TestStore {
        let dir = tempdir();
        let root = dir.path().join("store");
        TestStore { _dir: dir, root }
    }
    fn open(&self) -> Store {
        Store::open(&StoreOptions {
            root: self.root.clone(),
            driver: None,
        })
        .expect("open the store")
    }
}

impl StoreCli for TestStore {
    fn root(&self) -> &Path {
        &self.root
    }
}

fn base_layout() -> String {
    format!("oci:{}:base", corpus().join("oci").display())
}

/// The diffID (and chain ID) of the single layer of the corpus's `base` image.
const BASE_DIFF_ID: &str = "218c4b15a1bd2126e15def554ed6e15ba257a231ba479a6596d48b142c8c3735";

/// A reader that waits, then either reads `inner` or fails.
struct Slow<R> {
    delay: Option<Duration>,
    inner: Option<R>,
}

impl<R: Read> Read for Slow<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(d) = self.delay.take() {
            std::thread::sleep(d);
        }
        match &mut self.inner {
            Some(r) => r.read(buf),
            None => Err(std::io::Error::other("the source went away")),
        }
    }
}

/// Starts importing the base layer's ID in this process (standing for another process),
/// from `input` after 3 s; returns once the import has begun.
fn import_elsewhere<R: Read + Send + 'static>(
    st: &TestStore,
    input: Option<R>,
) -> std::thread::JoinHandle<Result<(), String>> {
    let store = st.open();
    let handle = std::thread::spawn(move || {
        let id = LayerId::new(BASE_DIFF_ID).expect("a layer ID");
        let slow = Slow {
            delay: Some(Duration::from_secs(3)),
            inner: input,
        };
        store
            .import(&id, None, slow, &ImportOptions::default())
            .map(drop)
            .map_err(|e| e.to_string())
    });
    // The import is staged and committed (as `importing`) in well under a second.
    std::thread::sleep(Duration::from_millis(800));
    handle
}

#[test]
fn a_load_clashing_by_diff_id_with_a_layer_being_imported_fails_at_once_naming_it() {
    let st = TestStore::new();
    st.ok(&["images"]);
    let other = std::fs::File::open(edge("hardlinks.tar")).expect("an edge tar");
    let elsewhere = import_elsewhere(&st, Some(other));
    let started = Instant::now();
    let r = st.run(&["copy", &base_layout(), "strata:clash:1"]);
    let took = started.elapsed();
    elsewhere
        .join()
        .expect("the other import")
        .expect("the other import succeeds");
    r.assert_strata_error();
    let err = &r.stderr;
    assert!(
        err.contains(&format!("store layer {BASE_DIFF_ID}")) && err.contains("clashes"),
        "the clash is named: {err}"
    );
    assert!(
        err.contains(&format!("not diffID sha256:{BASE_DIFF_ID}")),
        "the diffID wanted is said: {err}"
    );
    assert!(
        took < Duration::from_secs(20),
        "failed at once after the other import, not after a long wait ({took:?})"
    );
    assert!(!st.run(&["inspect", "clash:1"]).success());
}

#[test]
fn a_load_waiting_for_a_layer_whose_import_fails_elsewhere_imports_it_itself() {
    let st = TestStore::new();
    st.ok(&["images"]);
    let elsewhere = import_elsewhere::<std::fs::File>(&st, None);
    let started = Instant::now();
    let r = st.run(&["copy", &base_layout(), "strata:gone:1"]);
    let took = started.elapsed();
    let failed = elsewhere.join().expect("the other import");
    assert!(failed.is_err(), "the other import fails: {failed:?}");
    r.assert_success();
    assert!(took < Duration::from_secs(30), "no long wait ({took:?})");
    let inspect = st.json(&["inspect", "gone:1"]);
    assert_eq!(
        common::images::inspect_facts(&inspect).diff_ids,
        vec![format!("sha256:{BASE_DIFF_ID}")]
    );
    assert_eq!(st.json(&["fsck"])["clean"], serde_json::Value::Bool(true));
}

/// A tmpfs mounted for a test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where mounting is not allowed (not root).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("a mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
    /// Bytes in use on it.
    fn used(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `len` bytes that do not compress (xorshift), written to `path`.
fn write_noise(path: &Path, len: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, &data[..len]).expect("write the noise");
}

#[test]
fn a_load_that_fills_the_disk_leaves_nothing_and_says_the_disk_is_full() {
    let src = TestStore::new();
    let tree = src._dir.path().join("tree");
    std::fs::create_dir_all(&tree).expect("a tree");
    write_noise(&tree.join("big"), 60 << 20);
    src.ok(&["import-dir", &tree.display().to_string(), "big:1"]);
    let archive = src._dir.path().join("big.tar");
    src.ok(&["save", "-o", &archive.display().to_string(), "big:1"]);

    let dir = tempdir();
    let Some(disk) = Tmpfs::mount(&dir.path().join("small"), "50m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let st = TestStore {
        root: disk.0.join("store"),
        _dir: dir,
    };
    st.ok(&["images"]);
    let before = disk.used();
    let r = st.run(&["load", "-i", &archive.display().to_string()]);
    r.assert_strata_error();
    assert!(
        r.stderr.contains("is full"),
        "the error says the disk is full: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("No space left on device")
            && !r.stderr.contains("database or disk is full"),
        "the first failure is reported, not the database's: {}",
        r.stderr
    );
    // Measured before any other store command could clean up.
    let after = disk.used();
    assert!(
        after < before + (2 << 20),
        "the half-written layer is gone: {before} bytes in use before, {after} after"
    );
    assert_eq!(st.json(&["images"]).as_array().map(Vec::len), Some(0));
    assert_eq!(st.json(&["fsck"])["clean"], serde_json::Value::Bool(true));
}

#[test]
fn a_command_waiting_for_the_store_lock_says_for_whom_and_lock_timeout_bounds_it() {
    let st = TestStore::new();
    st.ok(&["images"]);
    let lock_path = st.root.join("strata.lock");
    let held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&lock_path)
        .expect("open the store lock");
    held.lock().expect("hold the store lock");
    let me = format!("process {}", std::process::id());

    // Bounded: fails after the timeout, naming the holder.
    let started = Instant::now();
    let r = st.run(&["--lock-timeout", "2", "images"]);
    let took = started.elapsed();
    r.assert_strata_error();
    assert!(
        r.stderr
            .contains("gave up after 2 s waiting for the store lock")
            && r.stderr.contains(&me),
        "the timeout names the holder: {}",
        r.stderr
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(10)).contains(&took),
        "it waited about 2 s ({took:?})"
    );
    assert_eq!(
        r.stderr.matches("strata: waiting for").count(),
        1,
        "one notice after a second: {}",
        r.stderr
    );

    // Unbounded: says for whom after a second, then goes on once the lock is free.
    let mut child = st
        .cmd(&["images"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strata images");
    let mut stderr = child.stderr.take().expect("its stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        let _ = tx.send(all);
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "strata images waits"
    );
    drop(held);
    let status = child.wait().expect("wait for strata images");
    let said = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("its stderr");
    assert!(
        status.success(),
        "it went on once the lock was free: {said}"
    );
    assert!(
        said.starts_with(&format!(
            "strata: waiting for the store lock {}, held by {me} (",
            st.root
                .canonicalize()
                .expect("the root")
                .join("strata.lock")
                .display()
        )),
        "it said for whom it waited: {said}"
    );
}

/// The names in the store's blob directory.
fn blob_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_kill_during_a_load_leaves_no_blob_that_nothing_refers_to() {
    // The corpus image: its config is stored first, then five layers take a while.
    let corpus_layout = format!("oci:{}:corpus", corpus().join("oci").display());
    for signal in [
        rustix::process::Signal::KILL,
        rustix::process::Signal::TERM,
        rustix::process::Signal::INT,
    ] {
        let st = TestStore::new();
        st.ok(&["images"]);
        let mut child = st
            .cmd(&["copy", &corpus_layout, "strata:killed:1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn strata copy");
        // The moment the config blob is placed, before the image is recorded.
        let started = Instant::now();
        let stored = loop {
            let names = blob_names(&st.root);
            if let Some(first) = names.first() {
                break first.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no blob appeared"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("kill strata copy");
        let status = child.wait().expect("wait for strata copy");
        assert!(!status.success(), "{signal:?} stopped the copy");
        assert!(
            blob_names(&st.root).contains(&stored),
            "the blob {stored} was left by the kill ({signal:?})"
        );
        let fsck = st.json(&["fsck"]);
        let repairs = fsck["repairs"].to_string();
        assert!(
            repairs.contains(&format!("removed blob sha256:{stored}")),
            "fsck reports the blob nothing refers to ({signal:?}): {fsck}"
        );
        assert!(
            !blob_names(&st.root).contains(&stored),
            "the blob is gone ({signal:?})"
        );
        assert_eq!(fsck["clean"], serde_json::Value::Bool(true), "{fsck}");
        if signal == rustix::process::Signal::KILL {
            // The load goes through afterwards.
            st.ok(&["copy", &corpus_layout, "strata:killed:1"]);
            st.ok(&["inspect", "killed:1"]);
        }
    }
}
