//! The store commands' surface: arguments, output, JSON and exit codes of `strata layer
//! create|apply|mount|umount|diff|changes|diff-size|ls|inspect|exists|rm`, `fsck` and
//! `cleanup`, one test per command family. What the store does is tested by calling it
//! (`crates/strata-store/tests/store`); crashes and concurrency: `store_crash.rs`.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A store made with `driver`, driven through the CLI.
pub struct TestStore {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub driver: &'static str,
}

impl TestStore {
    pub fn new(driver: &'static str) -> Self {
        let dir = tempdir();
        let root = dir.path().join("store");
        TestStore {
            _dir: dir,
            root,
            driver,
        }
    }

    /// Fails unless the command fails cleanly (exit 1) with a message containing `needle`.
    pub fn refused(&self, args: &[&str], needle: &str) -> Run {
        let run = self.run(args);
        run.assert_strata_error();
        assert_eq!(run.status.code(), Some(1), "`{}`", run.cmdline);
        assert!(
            run.stderr.contains(needle),
            "`{}`: the error should mention {needle:?}:\n{}",
            run.cmdline,
            run.stderr
        );
        run
    }
}

impl StoreCli for TestStore {
    fn root(&self) -> &Path {
        &self.root
    }

    fn driver(&self) -> Option<&str> {
        Some(self.driver)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A plain tar of `etc/motd` (`strata layer pack`).
fn small_layer(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), "hello\n").unwrap();
    let tar = dir.join("small.tar");
    strata(["layer", "pack", s(&tree), "-o", s(&tar)]).assert_success();
    tar
}

#[test]
fn layer_commands_print_their_results_as_text_and_json() {
    let store = TestStore::new("vfs");
    let tmp = tempdir();
    let tar = small_layer(tmp.path());
    let want_diff_id = sha256_file(&tar);

    // create: the ID as text, the layer as JSON.
    assert_eq!(
        store.ok(&["layer", "create", "base"]).stdout_text(),
        "base\n"
    );
    let v = store.json(&["layer", "create", "x"]);
    let inspect = store.json(&["layer", "inspect", "x"]);
    for (key, value) in v.as_object().expect("a JSON object") {
        assert_eq!(
            &inspect[key], value,
            "create and inspect agree on {key}: {v} {inspect}"
        );
    }
    assert_eq!(jstr(&v, "id"), "x");
    assert_eq!(jstr(&v, "status"), "empty");
    assert_eq!(v["parent"], Value::Null);
    store.ok(&["layer", "rm", "x"]);
    // `--parent` needs an applied parent: a clean error, exit 1, with the command's context.
    let run = store.refused(
        &["layer", "create", "--rw", "--parent", "base", "x"],
        "has not been applied yet",
    );
    assert!(
        run.stderr.contains("cannot create layer x"),
        "{}",
        run.stderr
    );

    // apply: a report of the diff.
    let v = store.json(&["layer", "apply", "base", "-i", s(&tar)]);
    assert_eq!(jstr(&v, "id"), "base");
    assert_eq!(jstr(&v, "diff_id"), want_diff_id);
    assert_eq!(ju64(&v, "tar_size"), fs::metadata(&tar).unwrap().len());
    assert_eq!(jstr(&v, "compression"), "none");
    assert!(ju64(&v, "entries") >= 2, "{v}");
    let run = store.refused(
        &["layer", "apply", "base", "-i", s(&tar)],
        "already holds its diff",
    );
    assert!(run.stderr.contains("cannot apply"), "{}", run.stderr);
    let text = store.ok(&["layer", "create", "t"]);
    assert_eq!(text.stdout_text(), "t\n");
    let text = store
        .ok(&["layer", "apply", "t", "-i", s(&tar)])
        .stdout_text();
    assert!(
        text.starts_with("applied ") && text.contains(&format!("diffID {want_diff_id}")),
        "{text}"
    );
    store.ok(&["layer", "rm", "t"]);

    // ls and inspect.
    let ls = store.json(&["layer", "ls"]);
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(jstr(&ls[0], "id"), "base");
    assert_eq!(jstr(&ls[0], "status"), "applied");
    let inspect = store.json(&["layer", "inspect", "base"]);
    assert_eq!(jstr(&inspect, "status"), "applied");
    assert_eq!(jstr(&inspect, "diff_id"), want_diff_id);
    assert_eq!(jstr(&inspect, "os"), "linux");
    assert_eq!(ju64(&inspect, "depth"), 1);
    assert_eq!(inspect["parents"], Value::Array(vec![]));
    assert_file(
        &PathBuf::from(jstr(&inspect, "content")).join("etc/motd"),
        b"hello\n",
    );

    // exists: exit 0 or 1, nothing printed.
    let yes = store.run(&["layer", "exists", "base"]);
    assert_eq!((yes.status.code(), yes.stdout.len()), (Some(0), 0));
    let no = store.run(&["layer", "exists", "nope"]);
    assert_eq!((no.status.code(), no.stdout.len()), (Some(1), 0));

    // A read-write layer: mount, umount with counts, changes, diff, diff-size.
    store.ok(&["layer", "create", "--rw", "--parent", "base", "ctr"]);
    let m = store.json(&["layer", "mount", "ctr"]);
    assert_eq!(jstr(&m, "id"), "ctr");
    let path = PathBuf::from(jstr(&m, "path"));
    assert_eq!(
        store.ok(&["layer", "mount", "ctr"]).stdout_text(),
        format!("{}\n", path.display())
    );
    fs::write(path.join("etc/motd"), "changed\n").unwrap();
    fs::write(path.join("etc/added"), "new\n").unwrap();
    let changes = store.json(&["layer", "changes", "ctr"]);
    assert_eq!(
        changes,
        serde_json::json!([
            {"kind": "modified", "path": "/etc"},
            {"kind": "added", "path": "/etc/added"},
            {"kind": "modified", "path": "/etc/motd"},
        ])
    );
    assert_eq!(
        store.ok(&["layer", "changes", "ctr"]).stdout_text(),
        "C /etc\nA /etc/added\nC /etc/motd\n"
    );
    assert_eq!(
        store.ok(&["layer", "diff-size", "ctr"]).stdout_text(),
        "12\n"
    );
    let diff = tmp.path().join("ctr.tar");
    store.ok(&["layer", "diff", "ctr", "-o", s(&diff)]);
    let mut cmd = store.cmd(&["layer", "diff", "ctr"]);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (piped, _) = sha256_reader(child.stdout.take().unwrap());
    assert!(child.wait().unwrap().success(), "layer diff to a pipe");
    assert_eq!(
        piped,
        sha256_file(&diff),
        "the diff to a pipe and to -o agree"
    );
    let run = store.refused(&["layer", "rm", "ctr"], "is mounted");
    assert!(run.stderr.contains("ctr"), "{}", run.stderr);
    let u = store.json(&["layer", "umount", "ctr"]);
    assert_eq!((jstr(&u, "id"), ju64(&u, "mounts")), ("ctr", 1));
    assert_eq!(
        store.ok(&["layer", "umount", "ctr"]).stdout_text(),
        "ctr unmounted\n"
    );
    store.refused(&["layer", "umount", "ctr"], "is not mounted");

    // rm takes several IDs; unknown IDs are errors naming them.
    store.refused(&["layer", "rm", "nope"], "no layer `nope`");
    store.refused(&["layer", "mount", "nope"], "no layer `nope`");
    store.ok(&["layer", "rm", "ctr", "base"]);
    assert_eq!(store.json(&["layer", "ls"]), Value::Array(vec![]));
}

#[test]
fn layer_arguments_are_checked_by_the_parser() {
    let store = TestStore::new("vfs");
    // A usage error, caught by the argument parser: exit 2, with the reason.
    let run = store.run(&["layer", "create", "../etc"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr.contains("invalid layer ID `../etc`"),
        "{}",
        run.stderr
    );
    // Storage options become store errors (exit 1), named.
    store.refused(
        &["layer", "create", "--size", "1G", "ro"],
        "applies to read-write layers only",
    );
    store.refused(
        &[
            "layer",
            "create",
            "--rw",
            "--storage-opt",
            "colour=blue",
            "o",
        ],
        "storage option `colour`: unknown option",
    );
    store.refused(
        &["layer", "create", "--rw", "--size", "12parsecs", "o"],
        "storage option `size`",
    );
    // `--os` takes linux or windows only; a Windows layer says so in inspect.
    let run = store.run(&["layer", "apply", "x", "-i", "-", "--os", "plan9"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(store.json(&["layer", "ls"]), Value::Array(vec![]));
    let tmp = tempdir();
    let win = tmp.path().join("win.tar");
    let linux = small_layer(tmp.path());
    strata(["wclayer", "from-rootfs", "-i", s(&linux), "-o", s(&win)]).assert_success();
    store.ok(&["layer", "create", "w"]);
    let v = store.json(&["layer", "apply", "w", "-i", s(&win), "--os", "windows"]);
    assert_eq!(jstr(&v, "diff_id"), sha256_file(&win));
    assert_eq!(
        jstr(&store.json(&["layer", "inspect", "w"]), "os"),
        "windows"
    );
}

#[test]
fn a_store_keeps_its_driver() {
    let store = TestStore::new("vfs");
    store.ok(&["layer", "ls"]);
    let mut other = strata_cmd(["--root"]);
    other
        .arg(&store.root)
        .args(["--driver", "overlay", "layer", "ls"]);
    let run = run_with_timeout(other, TIMEOUT);
    run.assert_strata_error();
    assert!(
        run.stderr
            .contains("was created with the vfs driver; it cannot be used with overlay"),
        "{}",
        run.stderr
    );
    // Without --driver, the recorded one is used.
    let mut plain = strata_cmd(["--root"]);
    plain.arg(&store.root).args(["layer", "ls"]);
    run_with_timeout(plain, TIMEOUT).assert_success();
}

#[test]
fn fsck_exits_1_on_problems_and_cleanup_reports_its_actions() {
    let store = TestStore::new("vfs");
    let tmp = tempdir();
    let tar = small_layer(tmp.path());
    store.ok(&["layer", "create", "base"]);
    store.ok(&["layer", "apply", "base", "-i", s(&tar)]);
    let v = store.json(&["fsck"]);
    assert_eq!(v["clean"], Value::Bool(true), "{v}");
    let text = store.ok(&["fsck"]).stdout_text();
    assert!(text.ends_with(": no problems\n"), "{text}");
    // Damage the layer: exit 1, the problem as JSON; --repair removes the layer.
    let content = PathBuf::from(jstr(&store.json(&["layer", "inspect", "base"]), "content"));
    fs::write(content.join("etc/motd"), "HELLO\n").unwrap();
    let run = store.run(&["--json", "fsck"]);
    assert_eq!(run.status.code(), Some(1), "fsck exits 1 on problems");
    let v = run.json();
    assert_eq!(v["clean"], Value::Bool(false), "{v}");
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["layer"], "base");
    assert!(jstr(&problems[0], "problem").contains("motd"), "{v}");
    let v = store.json(&["fsck", "--repair"]);
    assert_eq!(v["repairs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(store.json(&["layer", "ls"]), Value::Array(vec![]));
    // cleanup: the actions as JSON, none the second time.
    fs::create_dir_all(store.root.join("staging/deadbeef/x")).unwrap();
    let v = store.json(&["cleanup"]);
    let actions = v["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a.as_str().unwrap().contains("staging")),
        "{v}"
    );
    assert_eq!(store.json(&["cleanup"])["actions"], Value::Array(vec![]));
}
