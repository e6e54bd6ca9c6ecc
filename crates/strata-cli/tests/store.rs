//! The layer store through the `strata` command, for both drivers: the graph-driver
//! lifecycle, the corpus image's merged view against umoci's, bit-exact re-export, mount
//! counts shared by processes, bad input, a full disk, hostile layers, long chains.
//! (Crashes and concurrency: `store_crash.rs`.)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::hostile::*;
use common::*;
use serde_json::Value;

/// A store in a temporary directory, driven through the CLI.
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

    /// A store whose root is a small tmpfs (for running out of space).
    fn on_tmpfs(driver: &'static str, size: &str) -> (Self, TmpfsMount) {
        let store = TestStore::new(driver);
        fs::create_dir(&store.root).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&store.root)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs for the store");
        let mount = TmpfsMount(store.root.clone());
        (store, mount)
    }

    /// Fails unless the command fails with a message containing `needle`.
    pub fn refused(&self, args: &[&str], needle: &str) -> Run {
        let run = self.run(args);
        run.assert_strata_error();
        assert!(
            run.stderr.contains(needle),
            "`{}`: the error should mention {needle:?}:\n{}",
            run.cmdline,
            run.stderr
        );
        run
    }

    /// Creates `id` on `parent` and applies `diff` to it; returns the apply report.
    pub fn add(&self, id: &str, parent: Option<&str>, diff: &Path) -> Value {
        let mut args = vec!["layer", "create", id];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        self.ok(&args);
        let diff = diff.to_str().expect("UTF-8 path");
        self.json(&["layer", "apply", id, "-i", diff])
    }

    /// `layer ls --json` as (id, status) pairs.
    pub fn listing(&self) -> Vec<(String, String)> {
        self.json(&["layer", "ls"])
            .as_array()
            .expect("an array")
            .iter()
            .map(|l| (jstr(l, "id").to_owned(), jstr(l, "status").to_owned()))
            .collect()
    }

    pub fn fsck_clean(&self) {
        let v = self.json(&["fsck"]);
        assert_eq!(v["clean"], Value::Bool(true), "fsck found problems: {v}");
    }

    /// The diffID of `strata layer diff ID` (hashed by sha256sum).
    pub fn diff_digest(&self, id: &str) -> String {
        let mut cmd = self.cmd(&["layer", "diff", id]);
        cmd.stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (digest, _) = sha256_reader(out);
        assert!(child.wait().unwrap().success(), "layer diff {id} failed");
        digest
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

pub struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The corpus image's layers applied as a chain `l1`..`lN`; returns their diffIDs.
fn load_tag(store: &TestStore, tag: &str) -> Vec<String> {
    let mut diff_ids = Vec::new();
    let mut parent: Option<String> = None;
    for (i, layer) in oci_layers(tag).iter().enumerate() {
        let id = format!("{tag}{}", i + 1);
        let report = store.add(&id, parent.as_deref(), &layer.path);
        diff_ids.push(jstr(&report, "diff_id").to_owned());
        parent = Some(id);
    }
    diff_ids
}

fn listing_of(dir: &Path) -> String {
    without_root_mtime(&tree_listing(dir, &[]))
}

// ---------------------------------------------------------------------------------
// the corpus image
// ---------------------------------------------------------------------------------

fn corpus_image_matches_umoci(driver: &'static str) {
    let store = TestStore::new(driver);
    for tag in ["base", "corpus"] {
        let diff_ids = load_tag(&store, tag);
        // Every applied layer re-exports with its original diffID.
        let from_corpus: Vec<String> = if tag == "corpus" {
            layers_tsv().into_iter().map(|r| r.diff_id).collect()
        } else {
            diff_ids.clone()
        };
        assert_eq!(diff_ids, from_corpus, "{tag}: diffIDs of the applies");
        for (i, want) in diff_ids.iter().enumerate() {
            assert_eq!(
                &store.diff_digest(&format!("{tag}{}", i + 1)),
                want,
                "{driver}: {tag} layer {} re-exported with another diffID",
                i + 1
            );
        }
        let top = format!("{tag}{}", diff_ids.len());
        let merged = PathBuf::from(jstr(&store.json(&["layer", "mount", &top]), "path"));
        let expected =
            fs::read_to_string(corpus().join(format!("expected/{tag}.rootfs.tsv"))).unwrap();
        assert_listing_eq(
            &without_root_mtime(&expected),
            &listing_of(&merged),
            &format!("{driver}: merged view of {tag} vs umoci unpack"),
        );
        store.ok(&["layer", "umount", &top]);
    }
    store.fsck_clean();
}

#[test]
fn corpus_image_merged_view_matches_umoci_on_overlay() {
    corpus_image_matches_umoci("overlay");
}

#[test]
fn corpus_image_merged_view_matches_umoci_on_vfs() {
    corpus_image_matches_umoci("vfs");
}

// ---------------------------------------------------------------------------------
// the lifecycle
// ---------------------------------------------------------------------------------

fn changes_of(store: &TestStore, id: &str) -> Vec<String> {
    store
        .json(&["layer", "changes", id])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                &jstr(c, "kind")[..1].to_uppercase(),
                jstr(c, "path")
            )
        })
        .collect()
}

fn lifecycle(driver: &'static str) {
    let store = TestStore::new(driver);
    load_tag(&store, "corpus");
    store.ok(&["layer", "create", "--rw", "--parent", "corpus5", "ctr"]);
    let m = PathBuf::from(jstr(&store.json(&["layer", "mount", "ctr"]), "path"));

    // Add, modify, delete, replace a directory by a file and a file by a directory.
    fs::write(m.join("etc/added"), "new\n").unwrap();
    fs::write(m.join("etc/corpus/replaced.conf"), "rewritten\n").unwrap();
    fs::remove_file(m.join("opt/corpus/small/d0000/f00000.txt")).unwrap();
    fs::remove_dir_all(m.join("opt/corpus/small/d0004")).unwrap();
    fs::write(m.join("opt/corpus/small/d0004"), "now a file\n").unwrap();
    fs::remove_file(m.join("opt/big/blob.bin")).unwrap();
    fs::create_dir(m.join("opt/big/blob.bin")).unwrap();
    fs::write(m.join("opt/big/blob.bin/inside"), "x").unwrap();
    let changes = changes_of(&store, "ctr");
    let want = [
        "M /etc",
        "A /etc/added",
        "M /etc/corpus",
        "M /etc/corpus/replaced.conf",
        "M /opt",
        "M /opt/big",
        "M /opt/big/blob.bin",
        "A /opt/big/blob.bin/inside",
        "M /opt/corpus",
        "M /opt/corpus/small",
        "M /opt/corpus/small/d0000",
        "D /opt/corpus/small/d0000/f00000.txt",
        "M /opt/corpus/small/d0004",
    ];
    assert_eq!(changes, want, "{driver}: changes of the container layer");

    // Its diff, applied as a new layer on the same parent, gives the same merged tree.
    let tmp = tempdir();
    let diff = tmp.path().join("ctr.tar");
    store.ok(&["layer", "diff", "ctr", "-o", diff.to_str().unwrap()]);
    let again = tmp.path().join("again.tar");
    store.ok(&["layer", "diff", "ctr", "-o", again.to_str().unwrap()]);
    assert_eq!(
        read(&diff),
        read(&again),
        "{driver}: the diff is deterministic"
    );
    let bsdtar = run_with_timeout(
        {
            let mut c = Command::new("bsdtar");
            c.arg("-tvf").arg(&diff);
            c
        },
        TIMEOUT,
    );
    bsdtar.assert_success();
    assert!(bsdtar.stderr.is_empty(), "bsdtar warned: {}", bsdtar.stderr);
    store.add("committed", Some("corpus5"), &diff);
    store.ok(&["layer", "create", "--rw", "--parent", "committed", "ctr2"]);
    let m2 = PathBuf::from(jstr(&store.json(&["layer", "mount", "ctr2"]), "path"));
    assert_listing_eq(
        &listing_of(&m),
        &listing_of(&m2),
        &format!("{driver}: the diff re-applied vs the container layer"),
    );
    assert_eq!(
        changes_of(&store, "committed"),
        want,
        "{driver}: the committed layer has the same changes"
    );
    let size: u64 = store
        .ok(&["layer", "diff-size", "ctr"])
        .stdout_text()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        size,
        4 + 10 + 11 + 1,
        "{driver}: diff-size counts the data written"
    );

    // rm in the wrong order is refused, in the right order works.
    store.refused(&["layer", "rm", "ctr"], "is mounted");
    store.refused(
        &["layer", "rm", "corpus5"],
        "has child layers (committed, ctr)",
    );
    store.ok(&["layer", "umount", "ctr"]);
    store.ok(&["layer", "umount", "ctr2"]);
    store.ok(&["layer", "rm", "ctr", "ctr2", "committed"]);
    store.fsck_clean();
    for i in (1..=5).rev() {
        store.ok(&["layer", "rm", &format!("corpus{i}")]);
    }
    assert!(store.listing().is_empty());
    let leftovers: Vec<_> = fs::read_dir(store.root.join("layers")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "{driver}: layers/ not empty after rm: {leftovers:?}"
    );
    store.fsck_clean();
}

#[test]
fn lifecycle_on_overlay() {
    lifecycle("overlay");
}

#[test]
fn lifecycle_on_vfs() {
    lifecycle("vfs");
}

#[test]
fn mount_counts_are_shared_by_processes() {
    let store = TestStore::new("overlay");
    load_tag(&store, "base");
    store.ok(&["layer", "create", "--rw", "--parent", "base1", "c"]);
    let path = PathBuf::from(jstr(&store.json(&["layer", "mount", "c"]), "path"));
    store.json(&["layer", "mount", "c"]);
    let mounted = |p: &Path| {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", p.display()))
    };
    assert!(mounted(&path));
    assert_eq!(ju64(&store.json(&["layer", "umount", "c"]), "mounts"), 1);
    assert!(mounted(&path), "still mounted after one of two umounts");
    assert_eq!(ju64(&store.json(&["layer", "umount", "c"]), "mounts"), 0);
    assert!(!mounted(&path), "unmounted by the last umount");
    store.refused(&["layer", "umount", "c"], "is not mounted");
    // A read-only mount of an applied layer.
    let ro = PathBuf::from(jstr(&store.json(&["layer", "mount", "base1"]), "path"));
    let err = fs::write(ro.join("etc/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
    store.ok(&["layer", "umount", "base1"]);
    store.fsck_clean();
}

#[test]
fn a_chain_of_130_layers_mounts() {
    let store = TestStore::new("overlay");
    let tmp = tempdir();
    let mut parent: Option<String> = None;
    for i in 0..130 {
        let tree = tmp.path().join(format!("t{i}"));
        fs::create_dir_all(tree.join("layers")).unwrap();
        fs::write(tree.join(format!("layers/{i}")), format!("{i}\n")).unwrap();
        let tar = tmp.path().join(format!("{i}.tar"));
        let run = strata([
            "layer",
            "pack",
            tree.to_str().unwrap(),
            "-o",
            tar.to_str().unwrap(),
        ]);
        run.assert_success();
        let id = format!("c{i:03}");
        store.add(&id, parent.as_deref(), &tar);
        parent = Some(id);
    }
    store.ok(&["layer", "create", "--rw", "--parent", "c129", "top"]);
    let m = PathBuf::from(jstr(&store.json(&["layer", "mount", "top"]), "path"));
    let names = names(&m.join("layers"));
    assert_eq!(names.len(), 130, "every layer of the chain is visible");
    assert_file(&m.join("layers/0"), b"0\n");
    assert_file(&m.join("layers/129"), b"129\n");
    store.ok(&["layer", "umount", "top"]);
    let inspect = store.json(&["layer", "inspect", "top"]);
    assert_eq!(inspect["parents"].as_array().unwrap().len(), 130);
    assert_eq!(ju64(&inspect, "depth"), 131);
}

// ---------------------------------------------------------------------------------
// bad input
// ---------------------------------------------------------------------------------

fn bad_input_leaves_the_store_as_it_was(driver: &'static str) {
    let store = TestStore::new(driver);
    load_tag(&store, "base");
    let before = store.listing();
    let tmp = tempdir();
    // A corrupt layer: the corpus's base layer cut in half.
    let layer = &oci_layers("base")[0].path;
    let bytes = read(layer);
    let cut = tmp.path().join("cut.tar.gz");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    store.ok(&["layer", "create", "--parent", "base1", "x"]);
    let run = store.refused(
        &["layer", "apply", "x", "-i", cut.to_str().unwrap()],
        "cannot apply",
    );
    assert!(
        run.stderr.contains("incomplete deflate stream"),
        "{}",
        run.stderr
    );
    let x = store.json(&["layer", "inspect", "x"]);
    assert_eq!(
        jstr(&x, "status"),
        "empty",
        "a failed apply leaves the layer empty"
    );
    let content = PathBuf::from(jstr(&x, "content"));
    assert!(
        names(&content).is_empty(),
        "{driver}: content left behind: {:?}",
        show_names(&names(&content))
    );
    // The layer can still be applied afterwards.
    store.json(&[
        "layer",
        "apply",
        "x",
        "-i",
        edge("hardlinks.tar").to_str().unwrap(),
    ]);
    store.refused(
        &[
            "layer",
            "apply",
            "x",
            "-i",
            edge("hardlinks.tar").to_str().unwrap(),
        ],
        "already holds its diff",
    );
    store.ok(&["layer", "rm", "x"]);

    store.refused(
        &["layer", "create", "--parent", "nope", "y"],
        "its parent `nope` does not exist",
    );
    store.refused(
        &["layer", "apply", "nope", "-i", layer.to_str().unwrap()],
        "no layer `nope`",
    );
    store.refused(&["layer", "mount", "nope"], "no layer `nope`");
    store.refused(&["layer", "rm", "nope"], "no layer `nope`");
    store.refused(&["layer", "create", "base1"], "already exists");
    // A usage error, caught by the argument parser: exit 2, with the reason.
    let run = store.run(&["layer", "create", "../etc"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr.contains("invalid layer ID `../etc`"),
        "{}",
        run.stderr
    );
    store.ok(&["layer", "create", "--rw", "--parent", "base1", "rw"]);
    store.refused(
        &["layer", "create", "--parent", "rw", "z"],
        "only read-only layers can be parents",
    );
    store.refused(
        &["layer", "apply", "rw", "-i", layer.to_str().unwrap()],
        "is a read-write layer",
    );
    store.ok(&["layer", "create", "e"]);
    store.refused(
        &["layer", "create", "--parent", "e", "z"],
        "has not been applied yet",
    );
    store.refused(&["layer", "mount", "e"], "has no content yet");
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
    // No project quotas here (tmpfs, or a kernel without quota support): said so.
    let run = store.run(&[
        "layer", "create", "--rw", "--size", "20G", "--parent", "base1", "q",
    ]);
    if run.success() {
        store.ok(&["layer", "rm", "q"]);
    } else {
        run.assert_strata_error();
        assert!(
            run.stderr.contains("cannot be enforced on"),
            "{}",
            run.stderr
        );
        assert_eq!(store.run(&["layer", "exists", "q"]).status.code(), Some(1));
    }
    store.ok(&["layer", "rm", "rw", "e"]);
    assert_eq!(
        store.listing(),
        before,
        "{driver}: the store holds what it held"
    );
    assert_eq!(
        store.run(&["layer", "exists", "nope"]).status.code(),
        Some(1)
    );
    store.ok(&["layer", "exists", "base1"]);
    store.fsck_clean();
}

#[test]
fn bad_input_leaves_the_store_as_it_was_on_overlay() {
    bad_input_leaves_the_store_as_it_was("overlay");
}

#[test]
fn bad_input_leaves_the_store_as_it_was_on_vfs() {
    bad_input_leaves_the_store_as_it_was("vfs");
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

fn full_disk(driver: &'static str) {
    let (store, _mount) = TestStore::on_tmpfs(driver, "6m");
    let small = tempdir();
    fs::create_dir(small.path().join("t")).unwrap();
    fs::write(small.path().join("t/f"), "ok\n").unwrap();
    let tar = small.path().join("small.tar");
    strata([
        "layer",
        "pack",
        small.path().join("t").to_str().unwrap(),
        "-o",
        tar.to_str().unwrap(),
    ])
    .assert_success();
    store.add("base", None, &tar);
    // Layer 4 of the corpus holds 8 MiB: it cannot fit.
    let big = &oci_layers("corpus")[3].path;
    store.ok(&["layer", "create", "--parent", "base", "big"]);
    let run = store.refused(
        &["layer", "apply", "big", "-i", big.to_str().unwrap()],
        "cannot apply",
    );
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(
        store.listing(),
        vec![
            ("base".to_string(), "applied".to_string()),
            ("big".to_string(), "empty".to_string())
        ]
    );
    store.fsck_clean();
    store.ok(&["layer", "rm", "big"]);
    // There is room again for small work.
    store.add("next", Some("base"), &tar);
    assert_eq!(store.diff_digest("base"), store.diff_digest("next"));
}

#[test]
fn a_full_disk_fails_the_apply_cleanly_on_overlay() {
    full_disk("overlay");
}

#[test]
fn a_full_disk_fails_the_apply_cleanly_on_vfs() {
    full_disk("vfs");
}

// ---------------------------------------------------------------------------------
// hostile layers through the store (applied on a parent: overlay writes into the upper
// directory, resolving through the parent's tree)
// ---------------------------------------------------------------------------------

fn hostile_layers(driver: &'static str) {
    let store = TestStore::new(driver);
    load_tag(&store, "base");
    let mut names: Vec<String> = fs::read_dir(corpus().join("evil"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    names.sort();
    assert!(names.len() >= 40, "the evil corpus is there");
    for (i, name) in names.iter().enumerate() {
        let _lock = lock_tmp();
        clean_tmp();
        fs::write(SENTINEL, "sentinel\n").unwrap();
        let id = format!("evil{i}");
        store.ok(&["layer", "create", "--parent", "base1", &id]);
        let run = store.run(&["layer", "apply", &id, "-i", evil(name).to_str().unwrap()]);
        let outside = Outside::observe();
        clean_tmp();
        if !run.success() {
            run.assert_strata_error();
            let status = jstr(&store.json(&["layer", "inspect", &id]), "status").to_owned();
            assert_eq!(
                status, "empty",
                "{driver} {name}: a refused apply leaves the layer empty"
            );
        } else {
            // Whatever was accepted re-exports bit-exact.
            let (want, _) = sha256_reader(fs::File::open(evil(name)).unwrap());
            assert_eq!(store.diff_digest(&id), want, "{driver} {name}: re-export");
        }
        outside.assert_untouched(&format!("{driver} {name}"));
        store.ok(&["layer", "rm", &id]);
    }
    store.fsck_clean();
    // The base layer is untouched by all of it.
    assert_eq!(
        store.diff_digest("base1"),
        jstr(&store.json(&["layer", "inspect", "base1"]), "diff_id")
    );
}

#[test]
fn hostile_layers_are_refused_or_confined_on_overlay() {
    hostile_layers("overlay");
}

#[test]
fn hostile_layers_are_refused_or_confined_on_vfs() {
    hostile_layers("vfs");
}

#[test]
fn cleanup_removes_debris_and_orphans() {
    let store = TestStore::new("overlay");
    load_tag(&store, "base");
    // Debris a crash could leave: a staging dir without its lock, a -removing dir, an orphan.
    fs::create_dir_all(store.root.join("staging/deadbeef/x")).unwrap();
    fs::create_dir_all(store.root.join("layers/ghost/diff")).unwrap();
    fs::write(store.root.join("recipes/ghost"), "x").unwrap();
    let v = store.json(&["cleanup"]);
    let actions: Vec<String> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(actions.iter().any(|a| a.contains("staging")), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.contains("layers/ghost")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a.contains("recipes/ghost")),
        "{actions:?}"
    );
    assert!(!store.root.join("staging/deadbeef").exists());
    assert!(!store.root.join("layers/ghost").exists());
    store.fsck_clean();
    assert_eq!(
        store.json(&["cleanup"])["actions"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn fsck_finds_and_repair_removes_a_damaged_layer_and_its_children() {
    let store = TestStore::new("vfs");
    load_tag(&store, "corpus");
    store.ok(&["layer", "create", "--rw", "--parent", "corpus5", "ctr"]);
    // Damage layer 3: rewrite one of its files.
    let content = PathBuf::from(jstr(
        &store.json(&["layer", "inspect", "corpus3"]),
        "content",
    ));
    let victim = content.join("opt/corpus/small/d0000/f00001.txt");
    let len = fs::metadata(&victim).unwrap().len() as usize;
    fs::write(&victim, "X".repeat(len)).unwrap();
    let run = store.run(&["--json", "fsck"]);
    assert_eq!(run.status.code(), Some(1), "fsck exits 1 on problems");
    let v = run.json();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["layer"], "corpus3");
    assert!(
        problems[0]["problem"]
            .as_str()
            .unwrap()
            .contains("f00001.txt"),
        "{v}"
    );
    let v = store.json(&["fsck", "--repair"]);
    let repairs = v["repairs"].as_array().unwrap();
    assert_eq!(
        repairs.len(),
        5,
        "corpus3, corpus4, corpus5, ctr and its init layer go: {v}"
    );
    assert_eq!(
        store.listing(),
        vec![
            ("corpus1".into(), "applied".into()),
            ("corpus2".into(), "applied".into())
        ]
    );
    store.fsck_clean();
}

// ---------------------------------------------------------------------------------
// Windows layers as a layer kind of the store
// ---------------------------------------------------------------------------------

/// A GNU tar of the tree `files` (path, content; an empty content and a name starting
/// `.wh.` make a whiteout).
fn gnu_tar(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = dir.join(format!("{name}.src"));
    for (path, body) in files {
        let p = src.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }
    let tar = dir.join(format!("{name}.tar"));
    let mut cmd = Command::new("tar");
    cmd.arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .args(["--sort=name", "--mtime=@1577836800", "."]);
    run_with_timeout(cmd, TIMEOUT).assert_success();
    tar
}

fn windows_layers(driver: &'static str) {
    let store = TestStore::new(driver);
    let tmp = tempdir();
    let t = tmp.path();
    let linux1 = gnu_tar(t, "l1", &[("app/a", "a\n"), ("app/b", "bee\n")]);
    let linux2 = gnu_tar(t, "l2", &[("app/.wh.a", ""), ("app/c", "sea\n")]);
    let win = |linux: &Path, out: &str| {
        let out = t.join(out);
        strata([
            "wclayer",
            "from-rootfs",
            "-i",
            linux.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .assert_success();
        out
    };
    let (w1, w2) = (win(&linux1, "w1.tar"), win(&linux2, "w2.tar"));
    let sha = |p: &Path| sha256_reader(fs::File::open(p).unwrap()).0;
    for (id, parent, tar) in [("w1", None, &w1), ("w2", Some("w1"), &w2)] {
        let mut args = vec!["layer", "create", id];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        store.ok(&args);
        let v = store.json(&[
            "layer",
            "apply",
            id,
            "-i",
            tar.to_str().unwrap(),
            "--os",
            "windows",
        ]);
        assert_eq!(
            jstr(&v, "diff_id"),
            sha(tar),
            "{driver} {id}: diffID of the tar"
        );
        // from-rootfs output is not in the form Windows exports: kept, and given back.
        assert_eq!(
            store.diff_digest(id),
            sha(tar),
            "{driver} {id}: diff gives the original tar"
        );
        assert_eq!(
            jstr(&store.json(&["layer", "inspect", id]), "os"),
            "windows"
        );
    }
    assert_eq!(
        changes_of(&store, "w2"),
        [
            "A /Files",
            "A /Files/app",
            "D /Files/app/a",
            "A /Files/app/c",
            "A /Hives"
        ]
    );
    // A tar in Windows' own form (exported from a folder) is reproduced from the folder.
    let folder = t.join("folder");
    strata([
        "wclayer",
        "import",
        "-i",
        w1.to_str().unwrap(),
        folder.to_str().unwrap(),
    ])
    .assert_success();
    let canon = t.join("canon.tar");
    strata([
        "wclayer",
        "export",
        folder.to_str().unwrap(),
        "-o",
        canon.to_str().unwrap(),
    ])
    .assert_success();
    let blobs_before = fs::read_dir(store.root.join("blobs/sha256"))
        .unwrap()
        .count();
    store.ok(&["layer", "create", "c1"]);
    store.json(&[
        "layer",
        "apply",
        "c1",
        "-i",
        canon.to_str().unwrap(),
        "--os",
        "windows",
    ]);
    assert_eq!(
        fs::read_dir(store.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before,
        "{driver}: a canonical tar needs no kept copy"
    );
    assert_eq!(
        store.diff_digest("c1"),
        sha(&canon),
        "{driver}: exported from the folder"
    );
    // What a Windows layer cannot do, said clearly.
    store.refused(
        &["layer", "mount", "w2"],
        "is a Windows layer, which Linux cannot mount",
    );
    store.refused(
        &["layer", "create", "--rw", "--parent", "w2", "c"],
        "cannot be a read-write layer on `w2`",
    );
    store.ok(&["layer", "create", "--parent", "w2", "lx"]);
    store.refused(
        &["layer", "apply", "lx", "-i", linux1.to_str().unwrap()],
        "a chain is all Linux or all Windows",
    );
    store.fsck_clean();
    store.ok(&["layer", "rm", "lx", "w2", "w1", "c1"]);
    assert_eq!(
        fs::read_dir(store.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "kept copies go with their layers"
    );
    store.fsck_clean();
}

#[test]
fn windows_layers_in_the_store_on_overlay() {
    windows_layers("overlay");
}

#[test]
fn windows_layers_in_the_store_on_vfs() {
    windows_layers("vfs");
}

// ---------------------------------------------------------------------------------
// overlay's upper-directory writer against vfs's plain one, on every edge and hostile tar
// ---------------------------------------------------------------------------------

/// `f` on each store, at once.
fn both<T: Send>(stores: &[TestStore], f: impl Fn(&TestStore) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let running: Vec<_> = stores.iter().map(|st| s.spawn(move || f(st))).collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The lines of a listing whose columns satisfy `keep`.
fn filter_lines(listing: &str, keep: impl Fn(&[&str]) -> bool) -> String {
    listing
        .lines()
        .filter(|l| keep(&l.split('\t').collect::<Vec<_>>()))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A listing with the times of the last hours (implied directories, directories changed
/// but not listed: the moment of the apply, different in each store) masked.
/// `None` for a tree the oracle cannot list (paths beyond PATH_MAX).
fn listing_masking_now(dir: &Path) -> Option<String> {
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 4 * 3600 * 1_000_000_000;
    let mut cmd = Command::new("python3");
    cmd.arg(tree_listing_script()).arg(dir);
    let run = run_with_timeout(cmd, std::time::Duration::from_secs(300));
    if !run.success() {
        assert!(run.stderr.contains("File name too long"), "{}", run.stderr);
        return None;
    }
    let listing = without_root_mtime(&String::from_utf8(run.stdout).unwrap());
    Some(map_columns(&listing, |cols| {
        if cols
            .get(6)
            .and_then(|t| t.parse::<u128>().ok())
            .is_some_and(|t| t > recent)
        {
            cols[6] = "now".into();
        }
    }))
}

#[test]
fn overlay_and_vfs_give_the_same_tree_for_every_edge_and_hostile_layer_on_a_parent() {
    let stores = [TestStore::new("overlay"), TestStore::new("vfs")];
    for s in &stores {
        load_tag(s, "base");
    }
    let mut tars: Vec<PathBuf> = ["edge", "evil"]
        .iter()
        .flat_map(|d| fs::read_dir(corpus().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    assert!(tars.len() >= 70, "the edge and evil corpus is there");
    let (mut compared, mut deep) = (0, 0);
    for (i, tar) in tars.iter().enumerate() {
        let _lock = lock_tmp();
        let id = format!("x{i}");
        let runs: Vec<Run> = both(&stores, |s| {
            s.ok(&["layer", "create", "--parent", "base1", &id]);
            s.run(&["layer", "apply", &id, "-i", tar.to_str().unwrap()])
        });
        clean_tmp();
        assert_eq!(
            runs[0].success(),
            runs[1].success(),
            "{}: overlay {} / vfs {}",
            tar.display(),
            runs[0].stderr,
            runs[1].stderr
        );
        if runs[0].success() {
            let trees: Vec<Option<String>> = both(&stores, |s| {
                let m = PathBuf::from(jstr(&s.json(&["layer", "mount", &id]), "path"));
                let tree = listing_masking_now(&m);
                s.ok(&["layer", "umount", &id]);
                tree
            });
            // A 0/0 character device is a whiteout to overlayfs: it cannot show in a
            // merged view, whoever wrote it (the kernel through a mount hides it too).
            let [Some(overlay), Some(vfs)] = &trees[..] else {
                assert!(
                    trees[0].is_none() && trees[1].is_none(),
                    "{}",
                    tar.display()
                );
                deep += 1;
                for s in &stores {
                    s.ok(&["layer", "rm", &id]);
                }
                continue;
            };
            let vfs = filter_lines(vfs, |cols| !(cols[1] == "c" && cols[10] == "0:0"));
            let only = |a: &str, b: &str| -> Vec<String> {
                let other: std::collections::BTreeSet<&str> = b.lines().collect();
                a.lines()
                    .filter(|l| !other.contains(l))
                    .map(str::to_owned)
                    .collect()
            };
            assert!(
                *overlay == vfs,
                "{}: overlay and vfs differ\nonly overlay: {:#?}\nonly vfs: {:#?}",
                tar.display(),
                only(overlay, &vfs),
                only(&vfs, overlay)
            );
            compared += 1;
        }
        for s in &stores {
            s.ok(&["layer", "rm", &id]);
        }
    }
    assert!(
        compared >= 40 && deep <= 3,
        "only {compared} layers were compared ({deep} too deep to list)"
    );
    for s in &stores {
        s.fsck_clean();
    }
}
