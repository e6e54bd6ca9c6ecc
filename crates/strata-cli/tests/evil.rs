//! One test per row of the "Hostile layers" table (evil/expect.tsv). Every escape aims
//! at /tmp/strata-evil-*: before each case /tmp/strata-evil-sentinel holds "sentinel\n";
//! afterwards it must be unchanged (content, link count 1) and no other
//! /tmp/strata-evil-* may exist. "refuse" rows must fail with a `strata: error:`
//! message; "confine" rows must succeed with everything inside the root;
//! "refuse-or-confine" rows may do either, and a success is checked for confinement.
//!
//! Each case runs twice: with the Landlock sandbox (the default) and with
//! `--no-sandbox`, since the writer must resolve every path inside the root on its own.
//! Every run has a 60 s timeout (no hangs) and a 4 GiB address-space limit (no
//! unbounded allocation). The cases share the real /tmp, so they run one at a time.

use crate::common;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::hostile::*;
use common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Refuse,
    Confine,
    RefuseOrConfine,
}

use Expect::*;

/// evil/expect.tsv, as these tests hold it (checked against the file).
const TABLE: &[(&str, Expect)] = &[
    ("traversal-dotdot.tar", Refuse),
    ("traversal-dotdot-dir.tar", Refuse),
    ("absolute-path.tar", RefuseOrConfine),
    ("pax-path-with-nul.tar", Refuse),
    ("symlink-absolute-then-write-through.tar", RefuseOrConfine),
    ("symlink-relative-then-write-through.tar", RefuseOrConfine),
    ("symlink-nested-then-write-through.tar", RefuseOrConfine),
    ("symlink-to-file-then-overwrite.tar", Confine),
    ("symlink-then-dir-then-write.tar", Confine),
    ("symlink-loop-then-write.tar", Refuse),
    ("root-entry-is-symlink.tar", RefuseOrConfine),
    ("hardlink-dotdot-outside.tar", Refuse),
    ("hardlink-absolute-outside.tar", RefuseOrConfine),
    ("hardlink-to-symlink-outside.tar", Confine),
    ("hardlink-through-symlinked-dir.tar", RefuseOrConfine),
    ("hardlink-to-directory.tar", Refuse),
    ("whiteout-dotdot-escape.tar", Refuse),
    ("whiteout-of-dotdot.tar", Refuse),
    ("whiteout-of-dot.tar", Refuse),
    ("whiteout-through-symlink.tar", RefuseOrConfine),
    ("opaque-marker-at-root.tar", RefuseOrConfine),
    ("opaque-marker-is-directory.tar", Refuse),
    ("opaque-marker-is-symlink.tar", RefuseOrConfine),
    ("opaque-marker-with-content.tar", RefuseOrConfine),
    ("opaque-marker-as-hardlink-target.tar", Refuse),
    ("whiteout-is-directory.tar", RefuseOrConfine),
    ("aufs-metadata.tar", RefuseOrConfine),
    ("pax-size-overflow.tar", Refuse),
    ("pax-size-huge.tar", Refuse),
    ("pax-header-huge-length.tar", Refuse),
    ("pax-record-huge-length.tar", Refuse),
    ("gnu-longname-huge.tar", Refuse),
    ("sparse-map-huge.tar", Refuse),
    ("header-size-base256-huge.tar", Refuse),
    ("truncated-in-data.tar", Refuse),
    ("truncated-in-header.tar", Refuse),
    ("bad-checksum.tar", Refuse),
    ("bad-checksum-first-header.tar", Refuse),
    ("deep-path-10000.tar", RefuseOrConfine),
    ("deep-dirs-1000.tar", RefuseOrConfine),
    ("duplicate-file-then-dir.tar", RefuseOrConfine),
    ("duplicate-dir-then-file.tar", RefuseOrConfine),
    ("duplicate-file-then-hardlink-to-self.tar", RefuseOrConfine),
];

fn expectation(file: &str) -> Expect {
    TABLE
        .iter()
        .find(|(f, _)| *f == file)
        .unwrap_or_else(|| panic!("{file} is not in the table"))
        .1
}

/// Paths below `root` whose name matches the `find -name` pattern (never following
/// symlinks, any depth).
fn find_named(root: &Path, pattern: &str) -> Vec<String> {
    let mut cmd = Command::new("find");
    cmd.arg(root).arg("-name").arg(pattern);
    let run = run_with_timeout(cmd, TIMEOUT);
    run.assert_success();
    run.stdout_text().lines().map(str::to_owned).collect()
}

fn unpack_limited(file: &str, root: &Path, sandbox: bool) -> Run {
    let mut cmd = strata_cmd(["layer", "unpack", "-i"]);
    cmd.arg(evil(file)).arg(root);
    if !sandbox {
        cmd.arg("--no-sandbox");
    }
    // SAFETY: setrlimit is a plain system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(ADDRESS_SPACE_LIMIT),
                maximum: Some(ADDRESS_SPACE_LIMIT),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)
                .map_err(io::Error::from)
        });
    }
    run_with_timeout(cmd, TIMEOUT)
}

type Setup = fn(&Path);
type Check = fn(&Path);

fn no_setup(_: &Path) {}
fn no_check(_: &Path) {}

/// Runs one hostile case (sandboxed, then unsandboxed) and checks everything.
fn case(file: &str, setup: Setup, check: Check) {
    let _lock = lock_tmp();
    let expect = expectation(file);
    for sandbox in [true, false] {
        let mode = if sandbox { "sandboxed" } else { "--no-sandbox" };
        clean_tmp();
        fs::write(SENTINEL, "sentinel\n").unwrap();
        let t = tempdir();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        setup(&root);

        let run = unpack_limited(file, &root, sandbox);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match (expect, run.success()) {
                (Refuse, _) => {
                    run.assert_strata_error();
                }
                (Confine, _) => {
                    run.assert_success();
                }
                (RefuseOrConfine, false) => {
                    run.assert_strata_error();
                }
                (RefuseOrConfine, true) => {}
            }
            if run.success() {
                let m = fs::symlink_metadata(&root).expect("the root still exists");
                assert!(
                    m.is_dir(),
                    "the root must stay a real directory, is {:?}",
                    m.file_type()
                );
                check(&root);
            }
        }));
        // Whatever happened, nothing outside the root may have changed.
        let outside = Outside::observe();
        clean_tmp();
        if let Err(e) = outcome {
            eprintln!("{file} ({mode}): strata stderr:\n{}", run.stderr);
            std::panic::resume_unwind(e);
        }
        outside.assert_untouched(&format!("{file} ({mode})"));
        eprintln!(
            "{file} ({mode}): {}",
            if run.success() {
                "accepted, confined".to_string()
            } else {
                format!("refused: {}", run.stderr.trim())
            }
        );
    }
}

fn refused(file: &str) {
    assert_eq!(expectation(file), Refuse);
    case(file, no_setup, no_check);
}

fn p(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

fn assert_pwned_file(path: &Path) {
    assert_file(path, b"pwned\n");
    assert_eq!(
        lstat(path).nlink(),
        1,
        "{} must be a file of its own",
        path.display()
    );
}

/// A file of this name was written somewhere inside the root.
fn assert_found_inside(root: &Path, name: &str) {
    let found = find_named(root, name);
    assert!(
        !found.is_empty(),
        "accepted, but {name} is nowhere inside the root"
    );
}

fn assert_no_marker_names(root: &Path) {
    let found = find_named(root, ".wh.*");
    assert!(
        found.is_empty(),
        "whiteout/opaque names were created in the root: {found:?}"
    );
}

// ---------------------------------------------------------------------------------
// path traversal
// ---------------------------------------------------------------------------------

#[test]
fn traversal_dotdot_is_refused() {
    refused("traversal-dotdot.tar");
}

#[test]
fn traversal_dotdot_dir_is_refused() {
    refused("traversal-dotdot-dir.tar");
}

#[test]
fn absolute_path_is_refused_or_lands_under_root_tmp() {
    case("absolute-path.tar", no_setup, |root| {
        assert_pwned_file(&p(root, "tmp/strata-evil-abs"));
        assert_pwned_file(&p(root, "tmp/strata-evil-abs2"));
    });
}

#[test]
fn pax_path_with_nul_is_refused() {
    refused("pax-path-with-nul.tar");
}

// ---------------------------------------------------------------------------------
// symlinks
// ---------------------------------------------------------------------------------

#[test]
fn symlink_absolute_then_write_through_stays_inside() {
    case(
        "symlink-absolute-then-write-through.tar",
        no_setup,
        |root| {
            assert_found_inside(root, "strata-evil-abs-symlink");
        },
    );
}

#[test]
fn symlink_relative_then_write_through_stays_inside() {
    case(
        "symlink-relative-then-write-through.tar",
        no_setup,
        |root| {
            assert_found_inside(root, "strata-evil-rel-symlink");
        },
    );
}

#[test]
fn symlink_nested_then_write_through_stays_inside() {
    case("symlink-nested-then-write-through.tar", no_setup, |root| {
        assert_found_inside(root, "strata-evil-nested");
    });
}

#[test]
fn symlink_to_file_then_overwrite_replaces_the_link() {
    case("symlink-to-file-then-overwrite.tar", no_setup, |root| {
        assert_pwned_file(&p(root, "x"));
    });
}

#[test]
fn symlink_then_dir_then_write_replaces_the_link_with_a_dir() {
    case("symlink-then-dir-then-write.tar", no_setup, |root| {
        assert_dir(&p(root, "s"));
        assert_pwned_file(&p(root, "s/strata-evil-symdir"));
    });
}

#[test]
fn symlink_loop_then_write_is_refused() {
    refused("symlink-loop-then-write.tar");
}

#[test]
fn root_entry_symlink_is_refused_or_confined() {
    case("root-entry-is-symlink.tar", no_setup, |root| {
        assert_pwned_file(&p(root, "strata-evil-rootlink"));
    });
}

// ---------------------------------------------------------------------------------
// hard links
// ---------------------------------------------------------------------------------

#[test]
fn hardlink_dotdot_outside_is_refused() {
    refused("hardlink-dotdot-outside.tar");
}

#[test]
fn hardlink_absolute_outside_is_refused_or_confined() {
    case("hardlink-absolute-outside.tar", no_setup, |root| {
        assert_pwned_file(&p(root, "h"));
    });
}

#[test]
fn hardlink_to_symlink_outside_links_the_symlink_itself() {
    case("hardlink-to-symlink-outside.tar", no_setup, |root| {
        assert_symlink(&p(root, "s"), SENTINEL.as_bytes());
        assert_eq!(
            lstat(&p(root, "s")).nlink(),
            1,
            "the write replaced h, so s is alone again"
        );
        assert_pwned_file(&p(root, "h"));
    });
}

#[test]
fn hardlink_through_symlinked_dir_is_refused_or_confined() {
    case("hardlink-through-symlinked-dir.tar", no_setup, |root| {
        assert_symlink(&p(root, "d"), b"/tmp");
        assert_pwned_file(&p(root, "h"));
    });
}

#[test]
fn hardlink_to_directory_is_refused() {
    refused("hardlink-to-directory.tar");
}

// ---------------------------------------------------------------------------------
// whiteouts
// ---------------------------------------------------------------------------------

#[test]
fn whiteout_dotdot_escape_is_refused() {
    refused("whiteout-dotdot-escape.tar");
}

#[test]
fn whiteout_of_dotdot_is_refused() {
    refused("whiteout-of-dotdot.tar");
}

#[test]
fn whiteout_of_dot_is_refused() {
    refused("whiteout-of-dot.tar");
}

#[test]
fn whiteout_through_symlink_removes_nothing_outside() {
    case("whiteout-through-symlink.tar", no_setup, |root| {
        assert_symlink(&p(root, "lnk"), b"/tmp");
    });
}

#[test]
fn opaque_marker_at_root_hides_only_the_lower_tree() {
    case(
        "opaque-marker-at-root.tar",
        |root| {
            fs::create_dir(p(root, "lower-dir")).unwrap();
            fs::write(p(root, "lower-dir/file"), "lower\n").unwrap();
            fs::write(p(root, "lower-file"), "lower\n").unwrap();
        },
        |root| {
            assert_eq!(
                show_names(&names(root)),
                vec!["kept"],
                "the opaque root hides the lower tree"
            );
            assert_pwned_file(&p(root, "kept"));
        },
    );
}

#[test]
fn opaque_marker_that_is_a_directory_is_refused() {
    refused("opaque-marker-is-directory.tar");
}

#[test]
fn opaque_marker_that_is_a_symlink_is_never_created() {
    case("opaque-marker-is-symlink.tar", no_setup, |root| {
        assert_dir(&p(root, "d"));
        assert_no_marker_names(root);
    });
}

#[test]
fn opaque_marker_with_content_is_refused_or_ignored() {
    case("opaque-marker-with-content.tar", no_setup, |root| {
        assert_dir(&p(root, "d"));
        assert_no_marker_names(root);
    });
}

#[test]
fn opaque_marker_as_hardlink_target_is_refused() {
    refused("opaque-marker-as-hardlink-target.tar");
}

#[test]
fn whiteout_that_is_a_directory_is_refused_or_confined() {
    case("whiteout-is-directory.tar", no_setup, |root| {
        assert_dir(&p(root, "d"));
    });
}

#[test]
fn aufs_metadata_is_never_created() {
    case("aufs-metadata.tar", no_setup, |root| {
        assert_eq!(
            show_names(&names(root)),
            vec!["kept"],
            "no AUFS bookkeeping in the root"
        );
        assert_pwned_file(&p(root, "kept"));
    });
}

// ---------------------------------------------------------------------------------
// sizes and framing
// ---------------------------------------------------------------------------------

#[test]
fn pax_size_overflow_is_refused() {
    refused("pax-size-overflow.tar");
}

#[test]
fn pax_size_huge_is_refused() {
    refused("pax-size-huge.tar");
}

#[test]
fn pax_header_huge_length_is_refused() {
    refused("pax-header-huge-length.tar");
}

#[test]
fn pax_record_huge_length_is_refused() {
    refused("pax-record-huge-length.tar");
}

#[test]
fn gnu_longname_huge_is_refused() {
    refused("gnu-longname-huge.tar");
}

#[test]
fn sparse_map_huge_is_refused() {
    refused("sparse-map-huge.tar");
}

#[test]
fn header_size_base256_huge_is_refused() {
    refused("header-size-base256-huge.tar");
}

#[test]
fn truncated_in_data_is_refused() {
    refused("truncated-in-data.tar");
}

#[test]
fn truncated_in_header_is_refused() {
    refused("truncated-in-header.tar");
}

#[test]
fn bad_checksum_is_refused() {
    refused("bad-checksum.tar");
}

#[test]
fn bad_checksum_first_header_is_refused() {
    refused("bad-checksum-first-header.tar");
}

// ---------------------------------------------------------------------------------
// depth and duplicates
// ---------------------------------------------------------------------------------

#[test]
fn deep_path_10000_is_refused_or_created_without_crashing() {
    case("deep-path-10000.tar", no_setup, |root| {
        let rel = format!("{}leaf", "a/".repeat(10000));
        let (_fd, path) = deep(root, rel.as_bytes());
        assert_file(&path, b"deep\n");
    });
}

#[test]
fn deep_dirs_1000_is_refused_or_created_without_crashing() {
    case("deep-dirs-1000.tar", no_setup, |root| {
        let rel = format!("{}leaf", "d/".repeat(1000));
        let (_fd, path) = deep(root, rel.as_bytes());
        assert_file(&path, b"deep\n");
    });
}

#[test]
fn duplicate_file_then_dir_ends_a_dir() {
    case("duplicate-file-then-dir.tar", no_setup, |root| {
        assert_dir(&p(root, "x"));
        assert_eq!(show_names(&names(&p(root, "x"))), vec!["y"]);
        assert_file(&p(root, "x/y"), b"child\n");
    });
}

#[test]
fn duplicate_dir_then_file_ends_a_file() {
    case("duplicate-dir-then-file.tar", no_setup, |root| {
        assert_file(&p(root, "d"), b"file\n");
    });
}

#[test]
fn duplicate_file_then_hardlink_to_self_keeps_the_content() {
    case(
        "duplicate-file-then-hardlink-to-self.tar",
        no_setup,
        |root| {
            assert_pwned_file(&p(root, "x"));
        },
    );
}

// ---------------------------------------------------------------------------------
// coverage of the table
// ---------------------------------------------------------------------------------

#[test]
fn every_hostile_table_row_has_a_test_with_its_expectation() {
    let text = fs::read_to_string(corpus().join("evil/expect.tsv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file\texpect\twhat"));
    let rows: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string())
        })
        .collect();
    let ours: Vec<(String, String)> = TABLE
        .iter()
        .map(|(f, e)| {
            let e = match e {
                Refuse => "refuse",
                Confine => "confine",
                RefuseOrConfine => "refuse-or-confine",
            };
            (f.to_string(), e.to_string())
        })
        .collect();
    assert_eq!(
        rows, ours,
        "evil/expect.tsv and the tests in evil.rs disagree"
    );
    let on_disk: std::collections::BTreeSet<String> = fs::read_dir(corpus().join("evil"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    let listed: std::collections::BTreeSet<String> =
        TABLE.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, listed, "evil/*.tar and evil/expect.tsv disagree");
}
