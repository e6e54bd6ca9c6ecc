//! Init layers against a real runtime: `runc run` on a read-write layer whose image lacks
//! `/dev`, `/proc` and `/sys` makes them as mountpoints; they are in the init layer, so
//! the container's changes, diff and commit hold only what the process wrote.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

struct TestStore {
    dir: tempfile::TempDir,
    root: PathBuf,
    driver: &'static str,
}

impl StoreCli for TestStore {
    fn root(&self) -> &Path {
        &self.root
    }
    fn driver(&self) -> Option<&str> {
        Some(self.driver)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The corpus's base layer: a busybox-static root filesystem.
const BASE: &str = "218c4b15a1bd2126e15def554ed6e15ba257a231ba479a6596d48b142c8c3735";

/// A store holding `small`: an image layer of just `/bin/busybox` and `/bin/sh` (no
/// `/dev`, `/proc`, `/sys`, `/etc`), imported as the image `small:1`.
fn store_with_small_image(driver: &'static str) -> TestStore {
    let dir = tempdir();
    let st = TestStore {
        root: dir.path().join("store"),
        dir,
        driver,
    };
    st.ok(&[
        "copy",
        &format!("oci:{}:base", corpus().join("oci").display()),
        "strata:base:1",
    ]);
    let base = PathBuf::from(st.ok(&["layer", "mount", BASE]).stdout_text().trim());
    let tree = st.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).expect("a tree");
    std::fs::copy(base.join("bin/busybox"), tree.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).expect("a symlink");
    st.ok(&["layer", "umount", BASE]);
    st.ok(&["import-dir", &s(&tree), "small:1"]);
    st
}

/// Runs `script` with `runc run` in the bundle whose root is `rootfs`.
fn runc_run(st: &TestStore, rootfs: &Path, script: &str) {
    let bundle = st.dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).expect("a bundle");
    let spec = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .expect("runc spec (install runc)");
    assert!(spec.success());
    let path = bundle.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    config["process"]["terminal"] = Value::Bool(false);
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    config["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
    std::fs::write(&path, serde_json::to_vec(&config).expect("json")).expect("config.json");
    let mut cmd = std::process::Command::new("runc");
    cmd.arg("--root")
        .arg(st.dir.path().join("runc"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("strata-test-{}", std::process::id()));
    let r = run_with_timeout(cmd, TIMEOUT);
    assert!(r.success(), "runc run failed: {}", r.stderr);
}

fn changes(st: &TestStore, id: &str) -> Vec<String> {
    st.ok(&["layer", "changes", id])
        .stdout_text()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn runc_leaves_its_mountpoints_in_the_init_layer(driver: &'static str) {
    let st = store_with_small_image(driver);
    let small = st.json(&["inspect", "small:1"]);
    let top = jstr(&small["layers"][0], "chain_id")
        .trim_start_matches("sha256:")
        .to_owned();
    st.ok(&["layer", "create", "ctr", "--parent", &top, "--rw"]);

    // The init layer: named by the container, listed only with --all.
    let inspect = st.json(&["layer", "inspect", "ctr"]);
    assert_eq!(inspect["init_layer"], "ctr-init", "{inspect}");
    assert_eq!(inspect["parent"].as_str(), Some(top.as_str()), "{inspect}");
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|l| jstr(l, "id").to_owned())
            .collect()
    };
    assert!(!ids(st.json(&["layer", "ls"])).contains(&"ctr-init".to_owned()));
    assert!(ids(st.json(&["layer", "ls", "--all"])).contains(&"ctr-init".to_owned()));
    let init = st.json(&["layer", "inspect", "ctr-init"]);
    assert_eq!(init["init_for"], "ctr", "{init}");
    let mut held: Vec<String> = st
        .ok(&["layer", "changes", "ctr-init"])
        .stdout_text()
        .lines()
        .map(str::to_owned)
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            "A /.dockerenv",
            "A /dev",
            "A /dev/pts",
            "A /dev/shm",
            "A /etc",
            "A /etc/hostname",
            "A /etc/hosts",
            "A /etc/mtab",
            "A /etc/resolv.conf",
            "A /proc",
            "A /sys",
        ]
    );
    assert_eq!(changes(&st, "ctr"), Vec::<String>::new());

    let rootfs = PathBuf::from(st.ok(&["layer", "mount", "ctr"]).stdout_text().trim());
    runc_run(
        &st,
        &rootfs,
        "echo hello > /hello; cat /proc/self/stat > /dev/null",
    );
    st.ok(&["layer", "umount", "ctr"]);
    assert_eq!(
        changes(&st, "ctr"),
        ["A /hello"],
        "only what the process wrote"
    );

    // The committed image's new layer holds /hello alone.
    st.ok(&["commit", "ctr", "committed:1"]);
    let committed = st.json(&["inspect", "committed:1"]);
    let layers = committed["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{committed}");
    let new_top = jstr(&layers[1], "chain_id")
        .trim_start_matches("sha256:")
        .to_owned();
    let tar = st.dir.path().join("new-layer.tar");
    st.ok(&["layer", "diff", &new_top, "-o", &s(&tar)]);
    let listing = st.json(&["layer", "ls", &s(&tar)]);
    let paths: Vec<&str> = listing
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| jstr(e, "path"))
        .collect();
    assert_eq!(paths, ["hello"], "{listing}");

    // The init layer goes with its container, and cannot go alone.
    let alone = st.run(&["layer", "rm", "ctr-init"]);
    alone.assert_strata_error();
    assert!(alone
        .stderr
        .contains("is the init layer of read-write layer ctr"));
    st.ok(&["layer", "rm", "ctr"]);
    assert!(!st.run(&["layer", "exists", "ctr-init"]).success());
    assert_eq!(st.json(&["fsck"])["clean"], Value::Bool(true));
}

#[test]
fn runc_leaves_its_mountpoints_in_the_init_layer_on_overlay() {
    runc_leaves_its_mountpoints_in_the_init_layer("overlay");
}

#[test]
fn runc_leaves_its_mountpoints_in_the_init_layer_on_vfs() {
    runc_leaves_its_mountpoints_in_the_init_layer("vfs");
}
