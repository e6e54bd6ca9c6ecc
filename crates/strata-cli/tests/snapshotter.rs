//! `strata snapshotter`: the store as a containerd proxy snapshotter.
//!
//! - containerd's own conformance suite (`snapshots/testsuite` of containerd 1.6.20, built
//!   offline from Debian's packages by `../shared/tools/containerd-snapshotter-suite/`,
//!   cached under `target/ctrdsuite/`) passes through containerd's proxy client, against
//!   one server for all tests (shared store) and one server per test (fresh store; there
//!   without `128LayersMount`, the one slow test, which the shared run covers).
//! - Debian's containerd with `[proxy_plugins.strata]` imports the corpus image onto the
//!   store and runs a container on it with runc; the container's changes are the changes
//!   of a read-write layer of the store, and containerd's snapshots are the store's layers.
//!
//! Both need root (the suite and containerd mount what the server returns).

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::*;
use common::*;
use serde_json::Value;

/// `strata --root ROOT snapshotter --address SOCK`, stopped by SIGTERM (its PID) when
/// dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(root: &Path, sock: &Path, log: PathBuf) -> Server {
        let out = File::create(&log).unwrap();
        let child = strata_cmd(["--root"])
            .arg(root)
            .arg("snapshotter")
            .arg("--address")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start strata snapshotter");
        let mut server = Server { child, log };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "strata snapshotter exited ({status}):\n{}",
                    server.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "strata snapshotter did not listen in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn need_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshotter tests need root: containerd's suite and containerd mount what the server returns"
    );
}

// ---------------------------------------------------------------------------------
// containerd's conformance suite
// ---------------------------------------------------------------------------------

fn suite_tools() -> PathBuf {
    shared().join("tools/containerd-snapshotter-suite")
}

/// The suite's binaries (`proxysuite.test`), built once (under a lock: the tests run in
/// parallel processes) into `target/ctrdsuite/out` and rebuilt when the harness changes.
fn suite_bin() -> PathBuf {
    let base = workspace().join("target/ctrdsuite");
    std::fs::create_dir_all(&base).unwrap();
    let lock = File::create(base.join("build.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = base.join("out");
    let test = out.join("proxysuite.test");
    let newest_source = [
        "build.sh",
        "proxysuite/proxysuite_test.go",
        "serve-overlay/main.go",
    ]
    .iter()
    .filter_map(|f| {
        std::fs::metadata(suite_tools().join(f))
            .and_then(|m| m.modified())
            .ok()
    })
    .max()
    .expect("the suite's sources are in shared/tools/containerd-snapshotter-suite");
    let fresh = std::fs::metadata(&test)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= newest_source);
    if !fresh {
        let start = Instant::now();
        let mut cmd = Command::new(suite_tools().join("build.sh"));
        cmd.arg(&out).env("CTRDSUITE_WORK", base.join("work"));
        run_with_timeout(cmd, Duration::from_secs(600)).assert_success();
        eprintln!("built containerd's suite in {:.0?}", start.elapsed());
    }
    out
}

/// The suite's tests but `128LayersMount` (about a minute of 128 commits here) and
/// `Rename` (which the suite skips itself).
const QUICK_TESTS: &str =
    "TestProxySnapshotterSuite/^(Basic|StatActive|StatComitted|TransitivityTest|\
PreareViewFailingtest|Update|Remove|Walk|LayerFileupdate|RemoveDirectoryInLowerLayer|Chown|\
DirectoryPermissionOnCommit|RemoveIntermediateSnapshot|DeletedFilesInChildSnapshot|\
MoveFileFromLowerLayer|ViewReadonly|StatInWalk|CloseTwice|RootPermission)$";

/// Runs `run.sh ARGS BINDIR` (with `-test.run RUN` if given), requiring `passed` tests to
/// pass and none to fail.
fn run_suite(args: &[&str], run: Option<&str>, passed: u32) {
    let bin = suite_bin();
    let mut cmd = Command::new(suite_tools().join("run.sh"));
    cmd.args(args).arg(&bin);
    if let Some(run) = run {
        cmd.env("PROXYSUITE_FLAGS", format!("-test.run {run}"));
    }
    let start = Instant::now();
    let run = run_with_timeout(cmd, Duration::from_secs(300));
    let text = run.stdout_text();
    eprintln!("suite ran in {:.1?}", start.elapsed());
    let last = text.lines().last().unwrap_or_default();
    assert!(
        run.success() && last == format!("{passed} passed, 0 failed"),
        "containerd's suite against strata: `{last}`\n{text}\n{}",
        run.stderr
    );
}

#[test]
fn containerd_suite_passes_on_a_shared_store() {
    need_root();
    let st = TempStore::new();
    let sock = st.path("snapshotter.sock");
    let server = Server::start(st.root(), &sock, st.path("server.log"));
    run_suite(&[sock.to_str().unwrap()], None, 20);
    drop(server);
    // What the suite left is a sound store.
    let report = st.json(&["fsck"]);
    assert_eq!(report["problems"], Value::Array(vec![]), "{report}");
}

#[test]
fn containerd_suite_passes_on_a_fresh_store_per_test() {
    need_root();
    let cmd = format!(
        "{} --root {{root}} snapshotter --address {{sock}}",
        env!("CARGO_BIN_EXE_strata")
    );
    // 128LayersMount ran in the shared store: the rest, each test on its own server.
    run_suite(&["--cmd", &cmd], Some(QUICK_TESTS), 19);
}

// ---------------------------------------------------------------------------------
// A real engine
// ---------------------------------------------------------------------------------

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The store's layers: ID -> (status, parent).
fn layers(st: &TempStore) -> Vec<(String, String, Option<String>)> {
    let v = st.json(&["layer", "ls"]);
    v.as_array()
        .unwrap_or_else(|| panic!("layer ls --json: {v}"))
        .iter()
        .map(|l| {
            (
                jstr(l, "id").to_string(),
                jstr(l, "status").to_string(),
                l["parent"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Waits (up to 30 s) until the store holds `n` layers.
fn wait_for_layers(st: &TempStore, n: usize, when: &str) {
    let start = Instant::now();
    loop {
        let now = layers(st);
        if now.len() == n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{when}: {} layers, not {n}: {now:?}",
            now.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn containerd_imports_and_runs_the_corpus_image_on_strata() {
    need_root();
    let st = TempStore::new();
    let sock = st.path("snapshotter.sock");
    let _server = Server::start(st.root(), &sock, st.path("server.log"));
    let c = Containerd::start_with(&format!(
        "[proxy_plugins.strata]\n  type = \"snapshot\"\n  address = \"{}\"\n",
        sock.display()
    ));
    // The archive comes from another store.
    let other = TempStore::new();
    let layout = s(&corpus().join("oci"));
    other.ok(&[
        "copy",
        &format!("oci:{layout}:corpus"),
        "strata:strata/corpus:1",
    ]);
    let archive = other.path("corpus.tar");
    other.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &s(&archive),
        "strata/corpus:1",
    ]);
    let image = "docker.io/strata/corpus:1";
    let diff_ids = other.facts("strata/corpus:1").diff_ids;

    c.ok(&["images", "import", "--snapshotter", "strata", &s(&archive)]);
    // One read-only layer of the store per image layer, stacked.
    let imported = layers(&st);
    assert_eq!(imported.len(), diff_ids.len(), "{imported:?}");
    assert!(
        imported
            .iter()
            .all(|(id, status, _)| id.starts_with("ctrd-") && status == "applied"),
        "{imported:?}"
    );
    let committed = c.ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    assert_eq!(
        committed
            .lines()
            .skip(1)
            .filter(|l| l.contains("Committed"))
            .count(),
        diff_ids.len(),
        "{committed}"
    );

    let out = c.ok(&[
        "run",
        "--snapshotter",
        "strata",
        "--rm",
        image,
        "strata-rm",
        "/bin/sh",
        "-c",
        "cat /etc/hostname",
    ]);
    assert_eq!(out, "corpus");
    // containerd removes the snapshot from its metadata at once, from the snapshotter in
    // its next garbage collection.
    wait_for_layers(&st, diff_ids.len(), "after `ctr run --rm`");

    // A container that stays: its change is the change of a read-write layer.
    c.ok(&[
        "run",
        "--snapshotter",
        "strata",
        image,
        "strata-keep",
        "/bin/sh",
        "-c",
        "echo hi > /made-here",
    ]);
    let now = layers(&st);
    let rw: Vec<_> = now
        .iter()
        .filter(|(_, status, _)| status == "read-write")
        .collect();
    assert_eq!(rw.len(), 1, "{now:?}");
    let changes = st.json(&["layer", "changes", &rw[0].0]);
    let paths: Vec<String> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", jstr(c, "kind"), jstr(c, "path")))
        .collect();
    assert_eq!(paths, ["added /made-here"], "the container's changes");
    // containerd sees the same snapshots: one active on the image's top layer.
    let listed = c.ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    let active: Vec<&str> = listed.lines().filter(|l| l.contains("Active")).collect();
    assert_eq!(active.len(), 1, "{listed}");
    assert!(active[0].starts_with("strata-keep"), "{listed}");
    let usage = c.ok(&[
        "snapshots",
        "--snapshotter",
        "strata",
        "usage",
        "strata-keep",
    ]);
    assert!(usage.contains("strata-keep"), "{usage}");

    c.ok(&["containers", "rm", "strata-keep"]);
    wait_for_layers(&st, diff_ids.len(), "after `ctr containers rm`");
    let report = st.json(&["fsck"]);
    assert_eq!(report["problems"], Value::Array(vec![]), "{report}");
}
