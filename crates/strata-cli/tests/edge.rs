//! One test per row of the "Edge cases" table (edge/expect-synthetic.tsv and
//! edge/expect-tree.tsv): unusual but legal layer tars, applied to an empty root or on
//! top of `oci:base`, and the exact result each must give (names and contents from
//! shared/testdata/make-edge.py and make-corpus.sh).

use crate::common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const MTIME: i64 = 1_700_000_000;

/// A fresh root that does not exist yet (unpack creates it).
fn fresh() -> (tempfile::TempDir, PathBuf) {
    let t = tempdir();
    let root = t.path().join("root");
    (t, root)
}

/// A root holding `oci:base` (one busybox layer).
fn on_base() -> (tempfile::TempDir, PathBuf) {
    let (t, root) = fresh();
    apply_tag("base", &root);
    (t, root)
}

/// Applies edge/FILE onto `root`; must succeed.
fn apply(root: &Path, file: &str) -> Value {
    unpack(&edge(file), root, &[])
}

fn p(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

fn pb(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn set(items: &[&str]) -> BTreeSet<Vec<u8>> {
    name_set(items)
}

/// No path component of the tree starts with `.wh.` (whiteouts are never created).
fn assert_no_whiteout_names(root: &Path) {
    let bad: Vec<String> = walk(root)
        .iter()
        .filter(|p| p.split(|b| *b == b'/').any(|c| c.starts_with(b".wh.")))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        bad.is_empty(),
        "whiteout names appear in the result: {bad:?}"
    );
}

fn assert_names(dir: &Path, want: &[&str]) {
    let got = names(dir);
    assert_eq!(
        show_names(&got),
        show_names(&set(want)),
        "entries of {}",
        dir.display()
    );
}

/// `dir` holds exactly these regular files (name and content) and nothing else.
fn assert_only_files(dir: &Path, files: &[(&str, &str)]) {
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    assert_names(dir, &names);
    for (name, content) in files {
        assert_file(&dir.join(name), content.as_bytes());
    }
}

fn assert_mode(path: &Path, want: u32) {
    let got = mode(path);
    assert_eq!(
        got,
        want,
        "mode of {}: got {got:04o}, want {want:04o}",
        path.display()
    );
}

fn assert_mtime(path: &Path, secs: i64, nanos: i64) {
    assert_eq!(
        mtime(path),
        (secs, nanos),
        "mtime (secs, nanos) of {}",
        path.display()
    );
}

fn assert_owner(path: &Path, uid: u32, gid: u32) {
    let m = lstat(path);
    assert_eq!(
        (m.uid(), m.gid()),
        (uid, gid),
        "owner of {}",
        path.display()
    );
}

fn assert_same_inode(paths: &[PathBuf], nlink: u64) {
    let first = lstat(&paths[0]);
    for path in paths {
        let m = lstat(path);
        assert!(
            m.file_type().is_file(),
            "{} is not a regular file",
            path.display()
        );
        assert_eq!(
            (m.dev(), m.ino()),
            (first.dev(), first.ino()),
            "{} and {} must be one inode (hard links)",
            path.display(),
            paths[0].display()
        );
        assert_eq!(m.nlink(), nlink, "link count of {}", path.display());
    }
}

/// Paths of `all` not under (and not equal to) `prefix`.
fn outside(all: &BTreeSet<Vec<u8>>, prefix: &str) -> BTreeSet<Vec<u8>> {
    let with_slash = format!("{prefix}/");
    all.iter()
        .filter(|p| p.as_slice() != prefix.as_bytes() && !p.starts_with(with_slash.as_bytes()))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------
// whiteouts
// ---------------------------------------------------------------------------------

fn whiteout_files_case(file: &str, added: bool) {
    let (_t, root) = on_base();
    let before = walk(&root);
    for needed in [
        "etc/motd",
        "usr/share/man",
        "usr/share/man/man1/busybox.1.gz",
        "etc/os-release",
    ] {
        assert!(
            before.contains(needed.as_bytes()),
            "oci:base should hold {needed}"
        );
    }
    apply(&root, file);
    let mut want = outside(&before, "usr/share/man");
    want.remove(b"etc/motd".as_slice());
    if added {
        want.insert(b"etc/added".to_vec());
    }
    let got = walk(&root);
    assert_eq!(
        show_names(&got),
        show_names(&want),
        "tree after {file} on oci:base"
    );
    if added {
        assert_file(&p(&root, "etc/added"), b"added\n");
    }
    assert_absent(&p(&root, "etc/motd"));
    assert_absent(&p(&root, "usr/share/man"));
    assert_absent(&p(&root, "absent-in-lower"));
    assert_no_whiteout_names(&root);
}

#[test]
fn whiteout_files_remove_lower_file_and_dir_and_leave_no_markers() {
    whiteout_files_case("whiteout-files.tar", true);
}

#[test]
fn whiteout_with_dot_slash_names_acts_like_plain_names() {
    whiteout_files_case("whiteout-with-dot-slash.tar", false);
}

/// Gives the root a lower etc/apt with files, a subdirectory and a symlink.
fn lower_etc_apt(root: &Path) {
    let apt = p(root, "etc/apt");
    fs::create_dir_all(apt.join("apt.conf.d")).unwrap();
    fs::write(apt.join("apt.conf.d/lower.conf"), "lower\n").unwrap();
    fs::write(apt.join("sources.list"), "lower sources\n").unwrap();
    fs::write(apt.join("trusted.gpg"), "key\n").unwrap();
    std::os::unix::fs::symlink("sources.list", apt.join("link")).unwrap();
}

fn opaque_etc_apt_case(file: &str) {
    let (_t, root) = on_base();
    lower_etc_apt(&root);
    let before = walk(&root);
    apply(&root, file);
    let got = walk(&root);
    assert_eq!(
        show_names(&outside(&got, "etc/apt")),
        show_names(&outside(&before, "etc/apt")),
        "nothing outside etc/apt may change"
    );
    assert_eq!(
        show_names(&walk(&p(&root, "etc/apt"))),
        vec!["sources.list"],
        "etc/apt after {file}"
    );
    assert_file(
        &p(&root, "etc/apt/sources.list"),
        b"deb http://example.invalid/debian stable main\n",
    );
    assert_no_whiteout_names(&root);
}

#[test]
fn whiteout_opaque_dir_hides_everything_lower_in_it() {
    opaque_etc_apt_case("whiteout-opaque-dir.tar");
}

#[test]
fn whiteout_opaque_marker_before_its_dir_hides_the_same() {
    opaque_etc_apt_case("whiteout-opaque-before-dir.tar");
}

#[test]
fn whiteout_opaque_after_siblings_keeps_same_layer_entries() {
    let (_t, root) = fresh();
    fs::create_dir_all(p(&root, "d/lower-dir")).unwrap();
    fs::write(p(&root, "d/lower-file"), "lower\n").unwrap();
    fs::write(p(&root, "d/lower-dir/x"), "x\n").unwrap();
    fs::write(p(&root, "d/new"), "lower version of new\n").unwrap();
    apply(&root, "whiteout-opaque-after-siblings.tar");
    assert_names(&root, &["d"]);
    assert_eq!(show_names(&walk(&p(&root, "d"))), vec!["new"]);
    assert_file(&p(&root, "d/new"), b"new\n");
}

/// What whiteout-and-entry-same-layer.tar leaves, whatever was below it.
const SAME_LAYER_FILES: &[(&str, &str)] =
    &[("x", "x from this layer\n"), ("y", "y from this layer\n")];

#[test]
fn whiteout_and_entry_in_same_layer_keep_this_layers_content() {
    let (_t, root) = fresh();
    fs::create_dir_all(&root).unwrap();
    fs::write(p(&root, "x"), "lower x\n").unwrap();
    fs::write(p(&root, "y"), "lower y\n").unwrap();
    apply(&root, "whiteout-and-entry-same-layer.tar");
    assert_only_files(&root, SAME_LAYER_FILES);
}

#[test]
fn whiteout_and_entry_in_same_layer_on_empty_root() {
    let (_t, root) = fresh();
    apply(&root, "whiteout-and-entry-same-layer.tar");
    assert_only_files(&root, SAME_LAYER_FILES);
}

#[test]
fn whiteout_dir_then_recreate_holds_only_the_new_child() {
    let (_t, root) = fresh();
    fs::create_dir_all(p(&root, "d/sub")).unwrap();
    fs::write(p(&root, "d/old"), "old\n").unwrap();
    fs::write(p(&root, "d/sub/deeper"), "deeper\n").unwrap();
    apply(&root, "whiteout-dir-then-recreate.tar");
    assert_names(&root, &["d"]);
    assert_dir(&p(&root, "d"));
    assert_eq!(show_names(&walk(&p(&root, "d"))), vec!["fresh"]);
    assert_file(&p(&root, "d/fresh"), b"fresh\n");
}

// ---------------------------------------------------------------------------------
// links
// ---------------------------------------------------------------------------------

#[test]
fn hardlinks_name_one_inode() {
    let (_t, root) = fresh();
    apply(&root, "hardlinks.tar");
    let long = "L".repeat(150);
    assert_names(&root, &["a", "b", "a4", &long, "to-long"]);
    assert_names(&p(&root, "b"), &["a2", "a3"]);
    let group: Vec<PathBuf> = ["a", "b/a2", "b/a3", "a4"]
        .iter()
        .map(|n| p(&root, n))
        .collect();
    assert_same_inode(&group, 4);
    for path in &group {
        assert_file(path, b"shared\n");
    }
    assert_same_inode(&[p(&root, &long), p(&root, "to-long")], 2);
    assert_file(&p(&root, "to-long"), b"long\n");
}

#[test]
fn hardlink_to_lower_layer_links_to_the_base_file() {
    let (_t, root) = on_base();
    let original = read(&p(&root, "etc/os-release"));
    apply(&root, "hardlink-to-lower-layer.tar");
    assert_same_inode(
        &[p(&root, "etc/os-release"), p(&root, "etc/os-release.link")],
        2,
    );
    assert_file(&p(&root, "etc/os-release.link"), &original);
}

#[test]
fn hardlink_to_lower_layer_on_empty_root_is_an_error() {
    let (_t, root) = fresh();
    let run = try_unpack(&edge("hardlink-to-lower-layer.tar"), &root, &[]);
    run.assert_strata_error();
    assert!(
        run.stderr.contains("os-release"),
        "the error should name the missing link target etc/os-release:\n{}",
        run.stderr
    );
}

#[test]
fn symlinks_are_created_verbatim_and_never_followed() {
    let (_t, root) = fresh();
    apply(&root, "symlinks.tar");
    assert_names(
        &root,
        &[
            "target",
            "c3",
            "c2",
            "c1",
            "dangling",
            "absolute",
            "realdir",
            "dirlink",
            "loop-a",
            "loop-b",
            "self",
            "long-target",
        ],
    );
    assert_file(&p(&root, "target"), b"t\n");
    assert_symlink(&p(&root, "c3"), b"target");
    assert_symlink(&p(&root, "c2"), b"c3");
    assert_symlink(&p(&root, "c1"), b"c2");
    assert_symlink(&p(&root, "dangling"), b"does/not/exist");
    assert_symlink(&p(&root, "absolute"), b"/etc/os-release");
    assert_dir(&p(&root, "realdir"));
    assert_file(&p(&root, "realdir/inside"), b"in\n");
    assert_names(&p(&root, "realdir"), &["inside"]);
    assert_symlink(&p(&root, "dirlink"), b"realdir");
    assert_symlink(&p(&root, "loop-a"), b"loop-b");
    assert_symlink(&p(&root, "loop-b"), b"loop-a");
    assert_symlink(&p(&root, "self"), b"self");
    let long = "x/".repeat(150);
    assert_eq!(long.len(), 300);
    assert_symlink(&p(&root, "long-target"), long.as_bytes());
}

#[test]
fn symlink_replaced_by_file_leaves_the_link_target_untouched() {
    let (_t, root) = fresh();
    apply(&root, "symlink-replaced-by-file.tar");
    assert_only_files(&root, &[("keep", "keep\n"), ("x", "second\n")]);
}

// ---------------------------------------------------------------------------------
// names
// ---------------------------------------------------------------------------------

fn longnames_case(file: &str) {
    let (_t, root) = fresh();
    apply(&root, file);
    let (c101, c150, n255) = ("c".repeat(101), "c".repeat(150), "n".repeat(255));
    let (d50, p200) = ("d".repeat(50), "p".repeat(200));
    let (s120, t120, h120) = ("s".repeat(120), "t".repeat(120), "h".repeat(120));
    assert_names(&root, &[&c101, &c150, &n255, &d50, &p200, &s120, &h120]);
    assert_file(&p(&root, &c101), b"101\n");
    assert_file(&p(&root, &c150), b"150\n");
    assert_file(&p(&root, &n255), b"255\n");
    // make-edge.py calls it "306 bytes"; six 50-byte components and "/file" make 310.
    let deep6 = format!("{}/file", [d50.as_str(); 6].join("/"));
    assert_file(&p(&root, &deep6), b"deep\n");
    let deep4225 = format!("{}/file", [p200.as_str(); 21].join("/"));
    assert_eq!(deep4225.len(), 4225);
    let (_fd, path) = deep(&root, deep4225.as_bytes());
    assert_file(&path, b"over PATH_MAX\n");
    assert_symlink(&p(&root, &s120), t120.as_bytes());
    assert_same_inode(&[p(&root, &c150), p(&root, &h120)], 2);
}

#[test]
fn longnames_pax_records_give_long_names_and_targets() {
    longnames_case("longnames-pax.tar");
}

#[test]
fn longnames_gnu_longlink_entries_give_long_names_and_targets() {
    longnames_case("longnames-gnu.tar");
}

#[test]
fn longnames_ustar_prefix_is_joined_to_the_name() {
    let (_t, root) = fresh();
    apply(&root, "longnames-ustar-prefix.tar");
    let u30 = "u".repeat(30);
    let first = format!(
        "{}/{}{}",
        [u30.as_str(); 5].join("/"),
        "v".repeat(60),
        "/f".repeat(10)
    );
    let second = format!("{}/{}", "a".repeat(150), "b".repeat(99));
    assert_eq!(second.len(), 250);
    assert_file(&p(&root, &first), b"prefix\n");
    assert_file(&p(&root, &second), b"max\n");
    assert_names(&root, &[&u30, &"a".repeat(150)]);
}

const UNICODE_NAMES: &[&[u8]] = &[
    "caf\u{e9}".as_bytes(),
    "cafe\u{301}".as_bytes(),
    "\u{65e5}\u{672c}\u{8a9e}".as_bytes(),
    "\u{1f433} whale".as_bytes(),
    "\u{5e9}\u{5dc}\u{5d5}\u{5dd}".as_bytes(),
    b"with space",
    b"-leading-dash",
    b"back\\slash",
    b"tab\there",
    b"new\nline",
    b"del\x7f",
    b"bad-\xff\xfe-bytes",
];

#[test]
fn unicode_names_are_kept_byte_for_byte() {
    let (_t, root) = fresh();
    apply(&root, "unicode-names.tar");
    let want: BTreeSet<Vec<u8>> = UNICODE_NAMES.iter().map(|n| n.to_vec()).collect();
    assert_eq!(
        show_names(&names(&root)),
        show_names(&want),
        "names (NFC and NFD must both exist)"
    );
    assert_eq!(names(&root), want);
    for name in UNICODE_NAMES {
        let mut content = name.to_vec();
        content.push(b'\n');
        assert_file(&pb(&root, name), &content);
    }
}

#[test]
fn unicode_names_gnu_keeps_raw_bytes() {
    let (_t, root) = fresh();
    apply(&root, "unicode-names-gnu.tar");
    let name: &[u8] = b"bad-\xff\xfe-bytes";
    assert_eq!(
        names(&root),
        [name.to_vec()].into_iter().collect::<BTreeSet<_>>()
    );
    assert_file(&pb(&root, name), b"raw\n");
}

#[test]
fn non_normalized_paths_are_cleaned() {
    let (_t, root) = fresh();
    apply(&root, "non-normalized-paths.tar");
    assert_names(&root, &["a"]);
    assert_names(&p(&root, "a"), &["b", "c", "d", "e"]);
    assert_file(&p(&root, "a/b"), b"b\n");
    assert_file(&p(&root, "a/c"), b"c\n");
    assert_dir(&p(&root, "a/d"));
    assert_names(&p(&root, "a/d"), &[]);
    assert_file(&p(&root, "a/e"), b"e\n");
}

// ---------------------------------------------------------------------------------
// metadata
// ---------------------------------------------------------------------------------

#[test]
fn pax_headers_give_ns_mtime_big_ids_and_ignore_vendor_keys_and_global_header() {
    let (_t, root) = fresh();
    apply(&root, "pax-headers.tar");
    assert_names(&root, &["ns-mtime", "big-ids", "vendor-keys"]);
    assert_file(&p(&root, "ns-mtime"), b"ns\n");
    assert_mtime(&p(&root, "ns-mtime"), MTIME, 123_456_789);
    assert_file(&p(&root, "big-ids"), b"ids\n");
    assert_owner(&p(&root, "big-ids"), 3_000_000, 3_000_001);
    assert_file(&p(&root, "vendor-keys"), b"v\n");
    assert_eq!(
        xattrs(&p(&root, "vendor-keys")),
        vec![],
        "vendor keys must not become xattrs"
    );
    assert_mtime(&p(&root, "vendor-keys"), MTIME, 0);
}

fn assert_mtimes(root: &Path, want: &[(&str, i64, i64)]) {
    let names: Vec<&str> = want.iter().map(|w| w.0).collect();
    assert_names(root, &names);
    let mut wrong = Vec::new();
    for (name, secs, nanos) in want {
        let got = mtime(&p(root, name));
        if got != (*secs, *nanos) {
            wrong.push(format!("{name}: got {got:?}, want {:?}", (secs, nanos)));
        }
        assert_file(
            &p(root, name),
            format!("{}\n", if *name == "half-second" { "half" } else { name }).as_bytes(),
        );
    }
    assert!(
        wrong.is_empty(),
        "mtimes not restored exactly:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn mtimes_are_restored_exactly() {
    let (_t, root) = fresh();
    apply(&root, "mtimes.tar");
    assert_mtimes(
        &root,
        &[
            ("epoch", 0, 0),
            ("minus-one", -1, 0),
            ("y1960", -315_619_200, 0),
            ("y2038", (1 << 31) + 1, 0),
            ("y2242", 1 << 33, 0),
            ("y2400", 13_569_465_600, 0),
            ("half-second", MTIME, 500_000_000),
        ],
    );
}

#[test]
fn mtimes_gnu_base256_are_restored_exactly() {
    let (_t, root) = fresh();
    apply(&root, "mtimes-gnu-base256.tar");
    assert_mtimes(
        &root,
        &[
            ("minus-one", -1, 0),
            ("y1960", -315_619_200, 0),
            ("y2242", 1 << 33, 0),
            ("y2400", 13_569_465_600, 0),
        ],
    );
}

#[test]
fn modes_and_owners_are_applied_exactly() {
    let (_t, root) = fresh();
    apply(&root, "modes-and-owners.tar");
    assert_names(
        &root,
        &[
            "setuid",
            "setgid",
            "sticky",
            "no-perms",
            "readonly-dir",
            "user-1000",
            "nobody",
        ],
    );
    assert_file(&p(&root, "setuid"), b"u\n");
    assert_mode(&p(&root, "setuid"), 0o4755);
    assert_file(&p(&root, "setgid"), b"g\n");
    assert_mode(&p(&root, "setgid"), 0o2755);
    assert_dir(&p(&root, "sticky"));
    assert_mode(&p(&root, "sticky"), 0o1777);
    assert_file(&p(&root, "no-perms"), b"0\n");
    assert_mode(&p(&root, "no-perms"), 0o000);
    assert_dir(&p(&root, "readonly-dir"));
    assert_mode(&p(&root, "readonly-dir"), 0o555);
    assert_file(&p(&root, "readonly-dir/inside"), b"in\n");
    assert_mode(&p(&root, "readonly-dir/inside"), 0o644);
    assert_file(&p(&root, "user-1000"), b"1000\n");
    assert_owner(&p(&root, "user-1000"), 1000, 1000);
    assert_file(&p(&root, "nobody"), b"n\n");
    assert_owner(&p(&root, "nobody"), 65534, 65534);
    for n in [
        "setuid",
        "setgid",
        "sticky",
        "no-perms",
        "readonly-dir",
        "readonly-dir/inside",
    ] {
        assert_owner(&p(&root, n), 0, 0);
    }
}

#[test]
fn devices_and_fifo_are_created_with_their_numbers() {
    let (_t, root) = fresh();
    apply(&root, "devices-and-fifo.tar");
    assert_names(&root, &["null", "loop0", "char-0-0", "big-numbers", "fifo"]);
    let check = |name: &str, char_dev: bool, num: (u32, u32), m: u32| {
        let path = p(&root, name);
        let ft = lstat(&path).file_type();
        if char_dev {
            assert!(
                ft.is_char_device(),
                "{name} must be a char device, is {ft:?}"
            );
        } else {
            assert!(
                ft.is_block_device(),
                "{name} must be a block device, is {ft:?}"
            );
        }
        assert_eq!(rdev(&path), num, "major:minor of {name}");
        assert_mode(&path, m);
    };
    check("null", true, (1, 3), 0o666);
    check("loop0", false, (7, 0), 0o660);
    check("char-0-0", true, (0, 0), 0o600);
    check("big-numbers", true, (4095, 1_048_575), 0o600);
    let fifo = p(&root, "fifo");
    assert!(lstat(&fifo).file_type().is_fifo(), "fifo must be a fifo");
    assert_mode(&fifo, 0o644);
}

#[test]
fn xattrs_pax_applies_user_and_capability_but_not_trusted_overlay() {
    let cap_v2: Vec<u8> = hex::decode("0100000200040000000000000000000000000000").unwrap();
    let cap_v3: Vec<u8> =
        hex::decode("010000030004000000000000000000000000000000000000e8030000").unwrap();
    let (t, root) = fresh();
    let run = try_unpack(&edge("xattrs-pax.tar"), &root, &["--json"]);
    if !run.success() {
        // "dropped or refused": a refusal must be about the store-private xattr.
        run.assert_strata_error();
        assert!(
            run.stderr.contains("trusted.overlay.opaque"),
            "xattrs-pax.tar may only be refused because of trusted.overlay.opaque:\n{}",
            run.stderr
        );
        return;
    }
    let report = run.json();
    let warnings = report["warnings"].to_string();
    let x = |name: &str| xattrs(&p(&root, name));
    let one = |k: &str, v: &[u8]| vec![(k.to_string(), v.to_vec())];
    assert_names(
        &root,
        &[
            "text",
            "binary",
            "long-value",
            "cap-v2",
            "cap-v3-rootid-1000",
            "overlay-opaque-xattr",
        ],
    );
    assert_file(&p(&root, "text"), b"t\n");
    assert_eq!(x("text"), one("user.mime_type", b"text/plain"));
    assert_file(&p(&root, "binary"), b"b\n");
    assert_eq!(x("binary"), one("user.bin", b"\x00\x01\xff\x00"));
    assert_file(&p(&root, "long-value"), b"l\n");
    assert_eq!(
        x("long-value"),
        one("user.long", "v".repeat(4000).as_bytes())
    );
    assert_file(&p(&root, "cap-v2"), b"c\n");
    assert_mode(&p(&root, "cap-v2"), 0o755);
    assert_eq!(x("cap-v2"), one("security.capability", &cap_v2));

    // What the kernel does with a v3 capability (rootid 1000) here decides the result:
    // in the initial user namespace it refuses one whose rootid does not own it.
    assert_file(&p(&root, "cap-v3-rootid-1000"), b"c\n");
    assert_mode(&p(&root, "cap-v3-rootid-1000"), 0o755);
    let probe = t.path().join("probe");
    fs::write(&probe, "c\n").unwrap();
    let kernel = rustix::fs::lsetxattr(
        &probe,
        "security.capability",
        &cap_v3,
        rustix::fs::XattrFlags::empty(),
    );
    match kernel {
        Ok(()) => assert_eq!(
            x("cap-v3-rootid-1000"),
            xattrs(&probe),
            "cap-v3-rootid-1000 must carry the capability as the kernel stores it"
        ),
        Err(e) => {
            assert_eq!(
                x("cap-v3-rootid-1000"),
                vec![],
                "the kernel refuses this capability ({e}); the file cannot carry it"
            );
            assert!(
                warnings.contains("cap-v3-rootid-1000"),
                "a capability the kernel refused ({e}) must be reported as a warning naming the file; \
                 warnings: {warnings}"
            );
        }
    }

    assert_dir(&p(&root, "overlay-opaque-xattr"));
    assert_eq!(
        x("overlay-opaque-xattr"),
        vec![],
        "trusted.overlay.opaque is store-private and must not be applied"
    );
}

/// The tar at `src` less the entry named `name` (and the PAX header before it). Knows
/// only plain ustar entries with `x` headers, which is all xattrs-pax.tar holds.
fn tar_without(src: &Path, name: &str) -> Vec<u8> {
    let data = fs::read(src).unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    let mut pending: Option<(usize, usize)> = None; // the PAX header group before an entry
    while off + 512 <= data.len() && data[off..off + 512].iter().any(|b| *b != 0) {
        let h = &data[off..off + 512];
        let size_field = std::str::from_utf8(&h[124..136])
            .unwrap()
            .trim_matches(|c: char| c == '\0' || c == ' ');
        let size = usize::from_str_radix(size_field, 8).unwrap();
        let end = off + 512 + size.div_ceil(512) * 512;
        if h[156] == b'x' {
            pending = Some((off, end));
        } else {
            let entry_name = std::str::from_utf8(&h[..100])
                .unwrap()
                .trim_end_matches('\0');
            let start = pending.take().map_or(off, |(s, _)| s);
            if entry_name != name {
                out.extend_from_slice(&data[start..end]);
            }
        }
        off = end;
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn xattrs_pax_less_the_v3_capability_applies_user_and_v2_capability_only() {
    // The same layer without cap-v3-rootid-1000 (which the kernel may refuse as
    // real root), so the other xattr rules are checked whatever happens to that one.
    let cap_v2: Vec<u8> = hex::decode("0100000200040000000000000000000000000000").unwrap();
    let (t, root) = fresh();
    let tar = t.path().join("xattrs-less-v3.tar");
    fs::write(
        &tar,
        tar_without(&edge("xattrs-pax.tar"), "cap-v3-rootid-1000"),
    )
    .unwrap();
    unpack(&tar, &root, &[]);
    let x = |name: &str| xattrs(&p(&root, name));
    let one = |k: &str, v: &[u8]| vec![(k.to_string(), v.to_vec())];
    assert_names(
        &root,
        &[
            "text",
            "binary",
            "long-value",
            "cap-v2",
            "overlay-opaque-xattr",
        ],
    );
    assert_eq!(x("text"), one("user.mime_type", b"text/plain"));
    assert_eq!(x("binary"), one("user.bin", b"\x00\x01\xff\x00"));
    assert_eq!(
        x("long-value"),
        one("user.long", "v".repeat(4000).as_bytes())
    );
    assert_eq!(x("cap-v2"), one("security.capability", &cap_v2));
    assert_mode(&p(&root, "cap-v2"), 0o755);
    assert_eq!(
        x("overlay-opaque-xattr"),
        vec![],
        "trusted.overlay.opaque must not be applied"
    );
}

#[test]
fn empty_dirs_and_implicit_parents_whatever_the_umask() {
    let (_t, root) = fresh();
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    // Implicit parents are 0755 regardless of the umask: run strata under umask 077.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["--json", "layer", "unpack", "-i"])
        .arg(edge("empty-dirs-and-implicit-parents.tar"))
        .arg(&root);
    run_with_timeout(cmd, TIMEOUT).assert_success();

    assert_names(&root, &["empty", "nested-empty", "x", "late"]);
    assert_mode(&root, 0o755);
    assert_dir(&p(&root, "empty"));
    assert_names(&p(&root, "empty"), &[]);
    assert_mode(&p(&root, "empty"), 0o755);
    for d in [
        "nested-empty",
        "nested-empty/a",
        "nested-empty/a/b",
        "nested-empty/a/b/c",
    ] {
        assert_dir(&p(&root, d));
        assert_mode(&p(&root, d), 0o755);
        assert_owner(&p(&root, d), 0, 0);
    }
    assert_names(&p(&root, "nested-empty/a/b/c"), &[]);
    for d in ["x", "x/y", "x/y/z"] {
        assert_dir(&p(&root, d));
        assert_mode(&p(&root, d), 0o755);
        assert_owner(&p(&root, d), 0, 0);
    }
    assert_names(&p(&root, "x/y/z"), &["file"]);
    assert_file(&p(&root, "x/y/z/file"), b"implicit\n");
    assert_mode(&p(&root, "x/y/z/file"), 0o644);
    assert_dir(&p(&root, "late"));
    assert_mode(&p(&root, "late"), 0o700);
    assert_mtime(&p(&root, "late"), 1_000_000_000, 0);
    assert_file(&p(&root, "late/child"), b"c\n");
}

#[test]
fn duplicate_entries_last_one_wins() {
    let (_t, root) = fresh();
    apply(&root, "duplicate-entries.tar");
    assert_names(&root, &["f", "d"]);
    assert_file(&p(&root, "f"), b"second\n");
    assert_dir(&p(&root, "d"));
    assert_mode(&p(&root, "d"), 0o700);
    assert_names(&p(&root, "d"), &["child"]);
    assert_file(&p(&root, "d/child"), b"c\n");
}

// ---------------------------------------------------------------------------------
// framing
// ---------------------------------------------------------------------------------

#[test]
fn unterminated_umoci_insert_is_accepted_with_full_content() {
    let (_t, root) = fresh();
    apply(&root, "unterminated-umoci-insert.tar");
    assert_eq!(
        show_names(&walk(&root)),
        vec!["etc", "etc/apt", "etc/apt/sources.list"],
        "tree after unterminated-umoci-insert.tar"
    );
    assert_file(
        &p(&root, "etc/apt/sources.list"),
        b"deb http://example.invalid stable main\n",
    );
}

#[test]
fn no_end_of_archive_is_accepted() {
    let (_t, root) = fresh();
    apply(&root, "no-end-of-archive.tar");
    assert_only_files(&root, &[("a", "a\n"), ("b", "b\n")]);
}

#[test]
fn one_zero_block_is_accepted() {
    let (_t, root) = fresh();
    apply(&root, "one-zero-block.tar");
    assert_only_files(&root, &[("a", "a\n")]);
}

#[test]
fn trailing_data_after_end_is_ignored_but_hashed() {
    let (_t, root) = fresh();
    let report = apply(&root, "trailing-data-after-end.tar");
    assert_only_files(&root, &[("a", "a\n")]);
    let path = edge("trailing-data-after-end.tar");
    assert_eq!(
        jstr(&report, "diff_id"),
        sha256_file(&path),
        "the diffID covers the trailing bytes"
    );
    assert_eq!(
        ju64(&report, "tar_bytes"),
        fs::metadata(&path).unwrap().len()
    );
}

#[test]
fn formats_v7_headers_are_read() {
    let (_t, root) = fresh();
    apply(&root, "formats-v7.tar");
    assert_eq!(show_names(&walk(&root)), vec!["v7dir", "v7dir/file"]);
    assert_dir(&p(&root, "v7dir"));
    assert_mode(&p(&root, "v7dir"), 0o755);
    assert_file(&p(&root, "v7dir/file"), b"v7\n");
    assert_mode(&p(&root, "v7dir/file"), 0o644);
    assert_mtime(&p(&root, "v7dir/file"), MTIME, 0);
    assert_owner(&p(&root, "v7dir/file"), 0, 0);
}

// ---------------------------------------------------------------------------------
// real trees written by GNU tar and bsdtar
// ---------------------------------------------------------------------------------

fn tree_expected() -> String {
    fs::read_to_string(corpus().join("edge/tree.expected.tsv")).unwrap()
}

/// Floors a listing's mtime_ns column to whole seconds.
fn whole_seconds(listing: &str) -> String {
    map_columns(listing, |cols| {
        if let Ok(ns) = cols[6].parse::<i128>() {
            cols[6] = (ns.div_euclid(1_000_000_000) * 1_000_000_000).to_string();
        }
    })
}

fn tree_case(file: &str, gnu_format: bool) {
    let (_t, root) = fresh();
    apply(&root, file);
    let (expected, actual) = if gnu_format {
        let e = map_columns(&whole_seconds(&tree_expected()), |c| c[11] = "-".into());
        (e, tree_listing(&root, &["--no-xattrs"]))
    } else {
        (tree_expected(), tree_listing(&root, &[]))
    };
    assert_listing_eq(
        &without_root_mtime(&expected),
        &without_root_mtime(&actual),
        &format!("{file} applied vs edge/tree.expected.tsv"),
    );
}

#[test]
fn tree_gnutar_pax_reproduces_the_tree() {
    tree_case("tree-gnutar-pax.tar", false);
}

#[test]
fn tree_gnutar_gnu_reproduces_the_tree_less_xattrs_and_subseconds() {
    tree_case("tree-gnutar-gnu.tar", true);
}

#[test]
fn tree_bsdtar_pax_reproduces_the_tree() {
    tree_case("tree-bsdtar-pax.tar", false);
}

fn sparse_case(file: &str) {
    let (_t, root) = fresh();
    apply(&root, file);
    let expected = filter_paths(&tree_expected(), |p| {
        p == "sparse" || p.starts_with("sparse/")
    });
    assert_eq!(
        expected.lines().count(),
        3,
        "tree.expected.tsv lists sparse, sparse/all-hole, sparse/extents"
    );
    let actual = filter_paths(&tree_listing(&root, &[]), |p| p != ".");
    assert_listing_eq(
        &expected,
        &actual,
        &format!("{file} applied vs the sparse lines of edge/tree.expected.tsv"),
    );

    let extents = p(&root, "sparse/extents");
    let m = lstat(&extents);
    assert_eq!(m.len(), 1 << 30, "apparent size of sparse/extents");
    let f = fs::File::open(&extents).unwrap();
    for mib in [0u64, 512, 1023] {
        let want = format!("data at {mib} MiB\n");
        let mut buf = vec![0u8; want.len() + 16];
        f.read_exact_at(&mut buf, mib << 20).unwrap();
        assert_eq!(
            &buf[..want.len()],
            want.as_bytes(),
            "sparse/extents at {mib} MiB"
        );
        assert!(
            buf[want.len()..].iter().all(|b| *b == 0),
            "zeros after the text at {mib} MiB"
        );
    }
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "holes must stay holes: sparse/extents (1 GiB, 3 small extents) allocates {} bytes",
        m.blocks() * 512
    );
    let hole = lstat(&p(&root, "sparse/all-hole"));
    assert_eq!(hole.len(), 64 << 20, "apparent size of sparse/all-hole");
    assert!(
        hole.blocks() * 512 <= 64 << 10,
        "holes must stay holes: sparse/all-hole (64 MiB, no data) allocates {} bytes",
        hole.blocks() * 512
    );
}

#[test]
fn sparse_pax_0_0_keeps_data_and_holes() {
    sparse_case("sparse-pax-0.0.tar");
}

#[test]
fn sparse_pax_0_1_keeps_data_and_holes() {
    sparse_case("sparse-pax-0.1.tar");
}

#[test]
fn sparse_pax_1_0_keeps_data_and_holes() {
    sparse_case("sparse-pax-1.0.tar");
}

#[test]
fn sparse_gnu_oldgnu_keeps_data_and_holes() {
    sparse_case("sparse-gnu-oldgnu.tar");
}

#[test]
fn peer_umoci_insert_opaque_is_accepted() {
    let (_t, root) = on_base();
    lower_etc_apt(&root);
    let before = walk(&root);
    apply(&root, "peer-umoci-insert-opaque.tar");
    let got = walk(&root);
    assert_eq!(
        show_names(&outside(&got, "etc/apt")),
        show_names(&outside(&before, "etc/apt")),
        "nothing outside etc/apt may change"
    );
    assert_eq!(
        show_names(&walk(&p(&root, "etc/apt"))),
        vec!["sources.list.d", "sources.list.d/debian.list"],
        "etc/apt is opaque and holds only this layer's sources.list.d/debian.list"
    );
    let list = String::from_utf8(read(&p(&root, "etc/apt/sources.list.d/debian.list"))).unwrap();
    assert!(
        list.starts_with("deb http://deb.debian.org/debian ")
            && list.ends_with(" main\n")
            && list.lines().count() == 1,
        "debian.list holds its full line (the unpadded last entry): {list:?}"
    );
    assert_no_whiteout_names(&root);
}

// ---------------------------------------------------------------------------------
// coverage of the table
// ---------------------------------------------------------------------------------

const COVERED: &[&str] = &[
    "whiteout-files.tar",
    "whiteout-opaque-dir.tar",
    "whiteout-opaque-before-dir.tar",
    "whiteout-opaque-after-siblings.tar",
    "whiteout-and-entry-same-layer.tar",
    "whiteout-dir-then-recreate.tar",
    "whiteout-with-dot-slash.tar",
    "hardlinks.tar",
    "hardlink-to-lower-layer.tar",
    "symlinks.tar",
    "symlink-replaced-by-file.tar",
    "longnames-pax.tar",
    "longnames-gnu.tar",
    "longnames-ustar-prefix.tar",
    "unicode-names.tar",
    "unicode-names-gnu.tar",
    "non-normalized-paths.tar",
    "pax-headers.tar",
    "mtimes.tar",
    "mtimes-gnu-base256.tar",
    "modes-and-owners.tar",
    "devices-and-fifo.tar",
    "xattrs-pax.tar",
    "empty-dirs-and-implicit-parents.tar",
    "duplicate-entries.tar",
    "unterminated-umoci-insert.tar",
    "no-end-of-archive.tar",
    "one-zero-block.tar",
    "trailing-data-after-end.tar",
    "formats-v7.tar",
    "tree-gnutar-pax.tar",
    "tree-gnutar-gnu.tar",
    "tree-bsdtar-pax.tar",
    "sparse-pax-0.0.tar",
    "sparse-pax-0.1.tar",
    "sparse-pax-1.0.tar",
    "sparse-gnu-oldgnu.tar",
    "peer-umoci-insert-opaque.tar",
];

#[test]
fn every_edge_table_row_has_a_test() {
    let mut rows = BTreeSet::new();
    for table in ["edge/expect-synthetic.tsv", "edge/expect-tree.tsv"] {
        let text = fs::read_to_string(corpus().join(table)).unwrap();
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            rows.insert(line.split('\t').next().unwrap().to_string());
        }
    }
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        rows, covered,
        "the edge-case tables and the tests in edge.rs disagree"
    );
}
