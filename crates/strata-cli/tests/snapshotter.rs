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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::*;
use common::registry::docker;
use common::*;
use serde_json::Value;
use strata_registry_testkit::Registry;

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

    /// Kills the server with SIGKILL (no chance to clean up) and reaps it.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
/// `ctrd-pull` (`tests/ctrd-pull/main.go`): containerd's client `Pull` with unpack, as the
/// CRI plugin and nerdctl pull (ctr 1.6 unpacks without the snapshot.ref label). Built like
/// the suite, offline from Debian's Go packages, into `target/ctrdsuite/out`.
fn ctrd_pull_bin() -> PathBuf {
    let out = suite_bin();
    let base = workspace().join("target/ctrdsuite");
    let lock = File::create(base.join("build.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let source = workspace().join("crates/strata-cli/tests/ctrd-pull/main.go");
    let bin = out.join("ctrd-pull");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&bin).is_none() || modified(&bin) < modified(&source) {
        let work = base.join("work");
        let pkg = work.join("gopath/src/ctrdpull");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::copy(&source, pkg.join("main.go")).unwrap();
        let start = Instant::now();
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "10", "go", "build", "-p", "1", "-o"])
            .arg(&bin)
            .arg("ctrdpull")
            .env("GO111MODULE", "off")
            .env(
                "GOPATH",
                format!("{}:/usr/share/gocode", work.join("gopath").display()),
            )
            .env("GOCACHE", work.join("gocache"))
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0");
        run_with_timeout(cmd, Duration::from_secs(600)).assert_success();
        eprintln!("built ctrd-pull in {:.0?}", start.elapsed());
    }
    bin
}

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

/// The chain ID of a stack of diffIDs (OCI's `ChainID`).
fn chain_of(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for d in &diff_ids[1..] {
        chain = sha256_reader(format!("{chain} {d}").as_bytes()).0;
    }
    chain
}

/// The store layer whose directory `ctr snapshots mounts` names first for `key`: an active
/// snapshot's upper directory, a committed one's top lower directory (or bind source).
fn ctr_layer(c: &Containerd, dirs: &BTreeMap<String, String>, key: &str) -> String {
    let out = c.ok(&[
        "snapshots",
        "--snapshotter",
        "strata",
        "mounts",
        "/mnt",
        key,
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let dir = match words[..] {
        ["mount", "-t", "bind", source, _, "-o", _] => source.to_string(),
        ["mount", "-t", "overlay", _, _, "-o", options] => {
            let opts: Vec<&str> = options.split(',').collect();
            let opt = |name: &str| {
                opts.iter()
                    .find_map(|o| o.strip_prefix(name))
                    .map(|v| v.split(':').next().unwrap().to_string())
            };
            opt("upperdir=")
                .or_else(|| opt("lowerdir="))
                .unwrap_or_else(|| panic!("{out}"))
        }
        _ => panic!("ctr snapshots mounts {key}: {out}"),
    };
    dirs.get(&dir)
        .unwrap_or_else(|| panic!("{key} mounts {dir}, no layer of the store: {dirs:?}"))
        .clone()
}

/// `ctr snapshots ls` and the store's `layer ls` agree: each snapshot is one layer (found
/// through its mounts), committed ones read-only, active ones read-write, parents the
/// same, and no layer left out. Returns containerd's key -> the layer.
fn assert_ctr_agrees_with_store(c: &Containerd, st: &TempStore) -> BTreeMap<String, String> {
    let store = layers(st);
    let dirs: BTreeMap<String, String> = store
        .iter()
        .map(|(id, ..)| {
            let dir = jstr(&st.json(&["layer", "inspect", id]), "content").to_string();
            (dir, id.clone())
        })
        .collect();
    let snapshots = ctr_snapshots(c);
    let of: BTreeMap<String, String> = snapshots
        .iter()
        .map(|(key, ..)| (key.clone(), ctr_layer(c, &dirs, key)))
        .collect();
    let mut seen: Vec<&String> = of.values().collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        store.len(),
        "containerd's snapshots {of:?}, the store's layers {store:?}"
    );
    for (key, parent, kind) in &snapshots {
        let (_, status, layer_parent) = store.iter().find(|(id, ..)| *id == of[key]).unwrap();
        let want = match kind.as_str() {
            "Committed" => "applied",
            "Active" => "read-write",
            other => panic!("{key} is {other}"),
        };
        assert_eq!(status, want, "{key} is layer {}", of[key]);
        let parent_layer = (!parent.is_empty()).then(|| of[parent].clone());
        assert_eq!(
            *layer_parent, parent_layer,
            "the parent of {key} (layer {})",
            of[key]
        );
    }
    of
}

/// `ctr snapshots ls`: (key, parent or "", kind).
fn ctr_snapshots(c: &Containerd) -> BTreeSet<(String, String, String)> {
    let out = c.ok(&["snapshots", "--snapshotter", "strata", "ls"]);
    out.lines()
        .skip(1)
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [k, kind] => (k.to_string(), String::new(), kind.to_string()),
            [k, p, kind] => (k.to_string(), p.to_string(), kind.to_string()),
            _ => panic!("ctr snapshots ls: {l:?}\n{out}"),
        })
        .collect()
}

/// `ctr snapshots info KEY`.
fn ctr_info(c: &Containerd, key: &str) -> Value {
    let out = c.ok(&["snapshots", "--snapshotter", "strata", "info", key]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctr snapshots info {key}: {e}\n{out}"))
}

/// `ctr snapshots usage -b KEY` counts what du(1) finds in store layer `layer`'s
/// directory, the directory itself aside.
fn assert_usage_is_du(c: &Containerd, st: &TempStore, key: &str, layer: &str) {
    let out = c.ok(&["snapshots", "--snapshotter", "strata", "usage", "-b", key]);
    let fields: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let [k, size, inodes] = fields[..] else {
        panic!("ctr snapshots usage: {out}")
    };
    assert_eq!(k, key, "{out}");
    let dir = jstr(&st.json(&["layer", "inspect", layer]), "content").to_string();
    let du = |args: &str| -> u64 {
        sh(&format!("du -s {args} '{dir}' | cut -f1"))
            .trim()
            .parse()
            .unwrap()
    };
    use std::os::unix::fs::MetadataExt;
    let own_blocks = std::fs::metadata(&dir).unwrap().blocks() * 512;
    assert_eq!(
        (size.parse::<u64>().unwrap(), inodes.parse::<u64>().unwrap()),
        (du("-B1") - own_blocks, du("--inodes") - 1),
        "usage of {key} (layer {layer}, {dir})"
    );
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
    // containerd's snapshots are the store's layers, containerd's keys the image's chains.
    let image_chain = chain_of(&diff_ids);
    let of = assert_ctr_agrees_with_store(&c, &st);
    let keys: BTreeSet<String> = (1..=diff_ids.len())
        .map(|n| chain_of(&diff_ids[..n]))
        .collect();
    assert_eq!(of.keys().cloned().collect::<BTreeSet<_>>(), keys);
    // The commits left the layers' diffIDs to be made on first need (`layer ls` is one):
    // each is the digest of the diff the store then rebuilds for the layer (a tar of what
    // containerd unpacked, in Strata's order, not the image's own tar).
    let listed = st.json(&["layer", "ls"]);
    for row in listed.as_array().unwrap() {
        let id = jstr(row, "id");
        let tar = st.path(&format!("{id}.tar"));
        st.ok(&["layer", "diff", id, "-o", &s(&tar)]);
        assert_eq!(jstr(row, "diff_id"), sha256_file(&tar), "layer {id}");
    }
    // `tree`: one line per layer, each a level deeper than its parent.
    let tree = c.ok(&["snapshots", "--snapshotter", "strata", "tree"]);
    let mut want = String::new();
    let mut chain = Vec::new();
    for (depth, diff_id) in diff_ids.iter().enumerate() {
        chain.push(diff_id.clone());
        let prefix = "  ".repeat(depth) + if depth > 0 { "\\_" } else { "" };
        want.push_str(&format!("{prefix} {}\n", chain_of(&chain)));
    }
    assert_eq!(tree, want.trim(), "ctr snapshots tree");
    // `info`: the top layer, its parent and its creation time (the import's).
    let top = ctr_info(&c, &image_chain);
    assert_eq!(top["Kind"], "Committed", "{top}");
    assert_eq!(
        top["Parent"],
        chain_of(&diff_ids[..diff_ids.len() - 1]),
        "{top}"
    );
    // `usage` is what du(1) counts in the store layer's directory (the directory itself
    // aside).
    for (key, layer) in &of {
        assert_usage_is_du(&c, &st, key, layer);
    }

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
    let keep = ctr_info(&c, "strata-keep");
    assert_eq!(
        (&keep["Kind"], &keep["Parent"]),
        (&Value::from("Active"), &Value::from(image_chain.clone())),
        "{keep}"
    );
    let of = assert_ctr_agrees_with_store(&c, &st);
    assert_eq!(of["strata-keep"], rw[0].0);
    assert_usage_is_du(&c, &st, "strata-keep", &rw[0].0);

    c.ok(&["containers", "rm", "strata-keep"]);
    wait_for_layers(&st, diff_ids.len(), "after `ctr containers rm`");
    let report = st.json(&["fsck"]);
    assert_eq!(report["problems"], Value::Array(vec![]), "{report}");
}

#[test]
fn containerd_pull_uses_the_layers_strata_pulled_without_unpacking() {
    need_root();
    let ctrd_pull = ctrd_pull_bin();
    let reg = Registry::start();
    let st = TempStore::new();
    let remote = docker(reg.port, "strata/corpus:1");
    let layout = s(&corpus().join("oci"));
    st.ok(&["copy", &format!("oci:{layout}:corpus"), &remote]);
    st.ok(&["pull", &remote]);
    let pulled = layers(&st);
    let diff_ids = st.facts(&remote).diff_ids;
    assert_eq!(pulled.len(), diff_ids.len(), "{pulled:?}");

    let sock = st.path("snapshotter.sock");
    let _server = Server::start(st.root(), &sock, st.path("server.log"));
    let c = Containerd::start_with(&format!(
        "[proxy_plugins.strata]\n  type = \"snapshot\"\n  address = \"{}\"\n",
        sock.display()
    ));
    let image = format!("127.0.0.1:{}/strata/corpus:1", reg.port);
    let from = reg.access_lines("").len();
    let start = Instant::now();
    let mut cmd = Command::new(&ctrd_pull);
    cmd.arg(c.address()).arg("strata").arg(&image);
    let pull = run_with_timeout(cmd, TIMEOUT);
    let took = start.elapsed();
    pull.assert_success();
    let image_chain = chain_of(&diff_ids);
    assert_eq!(pull.stdout_text().trim(), image_chain);
    // Nothing unpacked: the store's layers are the ones `strata pull` wrote, and no layer
    // blob was downloaded (containerd fetches a layer only to unpack it).
    assert_eq!(layers(&st), pulled);
    let lines = common::registry::log_since(&reg, from);
    let fetched: Vec<&String> = lines
        .iter()
        .filter(|l| oci_layers("corpus").iter().any(|o| l.contains(&o.digest)))
        .collect();
    assert!(fetched.is_empty(), "layers fetched: {fetched:#?}");
    eprintln!(
        "containerd pulled {} layers in {took:.2?}, 0 unpacked, 0 layer blobs fetched",
        diff_ids.len()
    );
    // containerd's snapshots of the image are the store's layers, named by their chains.
    let of = assert_ctr_agrees_with_store(&c, &st);
    for (key, layer) in &of {
        assert_eq!(key.strip_prefix("sha256:"), Some(layer.as_str()));
    }
    assert!(of.contains_key(&image_chain), "{of:?}");
    // A container runs on them.
    let out = c.ok(&[
        "run",
        "--snapshotter",
        "strata",
        "--rm",
        &image,
        "strata-reuse",
        "/bin/sh",
        "-c",
        "cat /etc/hostname",
    ]);
    assert_eq!(out, "corpus");
    wait_for_layers(&st, diff_ids.len(), "after `ctr run --rm`");
}

#[test]
fn an_import_cut_by_kill_9_of_the_server_finishes_after_a_restart() {
    need_root();
    let st = TempStore::new();
    let sock = st.path("snapshotter.sock");
    let mut server = Server::start(st.root(), &sock, st.path("server.log"));
    let c = Containerd::start_with(&format!(
        "[proxy_plugins.strata]\n  type = \"snapshot\"\n  address = \"{}\"\n",
        sock.display()
    ));
    let archive = corpus().join("corpus.docker-archive.tar");
    let import = |c: &Containerd| {
        let mut cmd = Command::new(CTR);
        cmd.arg("-a")
            .arg(c.address())
            .args([
                "-n",
                "strata-test",
                "images",
                "import",
                "--snapshotter",
                "strata",
            ])
            .arg(&archive);
        cmd
    };
    // The server dies once the first layer is committed, in the middle of the next.
    let mut cut = import(&c)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let applied = |st: &TempStore| {
        layers(st)
            .iter()
            .filter(|(_, status, _)| status == "applied")
            .count()
    };
    while applied(&st) < 1 {
        assert!(
            matches!(cut.try_wait(), Ok(None)),
            "the import ended before a layer was committed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no layer committed in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();
    let status = cut.wait().unwrap();
    assert!(
        !status.success(),
        "the import went on without its snapshotter"
    );
    let cut_at = applied(&st);
    assert!((1..5).contains(&cut_at), "{:?}", layers(&st));

    let server = Server::start(st.root(), &sock, st.path("server2.log"));
    // containerd's proxy reconnects with a backoff (a second or two): retry until then
    // (ctr says `connection error` or, from a closed connection, `unavailable`).
    let start = Instant::now();
    loop {
        let run = run_with_timeout(import(&c), TIMEOUT);
        if run.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20)
                && (run.stderr.contains("connection error") || run.stderr.contains("unavailable")),
            "the import after the restart failed: {}\n{}",
            run.stderr,
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // containerd dropped what the failed import made (its lease went) and imported all
    // again: its five snapshots are read-only layers of the store, stacked.
    let committed = ctr_snapshots(&c)
        .into_iter()
        .filter(|(_, _, kind)| kind == "Committed")
        .count();
    assert_eq!(committed, 5);
    let out = c.ok(&[
        "run",
        "--snapshotter",
        "strata",
        "--rm",
        "docker.io/strata/corpus:1",
        "strata-after-crash",
        "/bin/sh",
        "-c",
        "cat /etc/hostname",
    ]);
    assert_eq!(out, "corpus");
    let report = st.json(&["fsck"]);
    assert_eq!(report["problems"], Value::Array(vec![]), "{report}");
}
