//! `strata layer pack` writes tars the peers read back exactly: GNU tar extracts the
//! same tree (tree-listing.py equal), GNU tar and bsdtar list them cleanly; packing is
//! deterministic; gzip and zstd packs unpack to the same tree and keep the diffID.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// `strata --json layer pack DIR -o OUT [--compress C]`.
fn pack(dir: &Path, out: &Path, compress: Option<&str>) -> Value {
    let mut args: Vec<&OsStr> = vec![
        "layer".as_ref(),
        "pack".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    if let Some(c) = compress {
        args.push("--compress".as_ref());
        args.push(c.as_ref());
    }
    strata_json(args)
}

/// Checks a pack report against the file it describes.
fn check_pack_report(report: &Value, out: &Path, compression: &str) {
    let (blob, blob_bytes) = sha256_reader(fs::File::open(out).unwrap());
    let (tar, tar_bytes) = uncompressed_sha256(out);
    assert_eq!(
        jstr(report, "compression"),
        compression,
        "{}: compression",
        out.display()
    );
    assert_eq!(
        jstr(report, "blob_digest"),
        blob,
        "{}: blob_digest",
        out.display()
    );
    assert_eq!(
        ju64(report, "blob_bytes"),
        blob_bytes,
        "{}: blob_bytes",
        out.display()
    );
    assert_eq!(jstr(report, "diff_id"), tar, "{}: diff_id", out.display());
    assert_eq!(
        ju64(report, "tar_bytes"),
        tar_bytes,
        "{}: tar_bytes",
        out.display()
    );
}

/// GNU tar extracts `tar` into a new directory `dest` (as root: owners, modes, xattrs).
fn gnu_tar_extract(tar: &Path, dest: &Path) {
    fs::create_dir(dest).unwrap();
    let mut cmd = Command::new("tar");
    // --warning=no-timestamp: the trees hold mtimes in the future (2038, 2242, 2400).
    cmd.args([
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "-p",
        "--warning=no-timestamp",
        "-xf",
    ])
    .arg(tar)
    .arg("-C")
    .arg(dest);
    let run = run_with_timeout(cmd, TIMEOUT);
    run.assert_success();
    assert!(
        run.stderr.is_empty(),
        "GNU tar -x complained:\n{}",
        run.stderr
    );
}

/// GNU tar and bsdtar list `tar` with exit 0 and nothing on stderr.
fn peers_list_cleanly(tar: &Path) {
    for (prog, args) in [("tar", ["-tvf"]), ("bsdtar", ["-tvf"])] {
        let mut cmd = Command::new(prog);
        cmd.args(args).arg(tar).env("LC_ALL", "C.UTF-8");
        let run = run_with_timeout(cmd, TIMEOUT);
        run.assert_success();
        assert!(
            run.stderr.is_empty(),
            "`{prog} -tvf` wrote to stderr:\n{}",
            run.stderr
        );
        assert!(!run.stdout.is_empty(), "`{prog} -tvf` listed nothing");
    }
}

fn listing(dir: &Path) -> String {
    without_root_mtime(&tree_listing(dir, &[]))
}

/// Pack `src`, extract with GNU tar, compare trees; also packing the extracted copy
/// gives the same bytes (same tree, same tar).
fn pack_then_gnu_tar_reproduces(src: &Path, work: &Path, what: &str) {
    let tar = work.join("packed.tar");
    let report = pack(src, &tar, None);
    check_pack_report(&report, &tar, "none");
    peers_list_cleanly(&tar);

    let copy = work.join("gnu-extracted");
    gnu_tar_extract(&tar, &copy);
    assert_listing_eq(
        &listing(src),
        &listing(&copy),
        &format!("{what}: packed by strata, extracted by GNU tar"),
    );

    let again = work.join("packed-again.tar");
    let report2 = pack(&copy, &again, None);
    assert_eq!(
        jstr(&report2, "diff_id"),
        jstr(&report, "diff_id"),
        "{what}: packing the GNU-tar-extracted copy of the same tree must give the same tar"
    );
}

#[test]
fn packed_corpus_rootfs_extracts_identically_with_gnu_tar() {
    let work = tempdir();
    let src = work.path().join("rootfs");
    fs::create_dir(&src).unwrap();
    apply_tag("corpus", &src);
    pack_then_gnu_tar_reproduces(&src, work.path(), "merged oci:corpus rootfs");
}

#[test]
fn packed_edge_tree_extracts_identically_with_gnu_tar() {
    let work = tempdir();
    let src = work.path().join("tree");
    unpack(&edge("tree-gnutar-pax.tar"), &src, &[]);
    // The pack writer stores sparse files in full (documented: holes become zeros), so
    // the 1 GiB sparse/extents would make a 1 GiB tar; edge.rs covers sparse unpacking.
    fs::remove_dir_all(src.join("sparse")).unwrap();
    pack_then_gnu_tar_reproduces(&src, work.path(), "edge tree (tree-gnutar-pax.tar)");
}

#[test]
fn pack_is_deterministic() {
    let work = tempdir();
    let src = work.path().join("rootfs");
    fs::create_dir(&src).unwrap();
    apply_tag("corpus", &src);
    let (a, b) = (work.path().join("a.tar"), work.path().join("b.tar"));
    let ra = pack(&src, &a, None);
    let rb = pack(&src, &b, None);
    assert_eq!(
        sha256_file(&a),
        sha256_file(&b),
        "two packs of one tree differ"
    );
    assert_eq!(ra, rb, "two packs of one tree report differently");
}

#[test]
fn compressed_packs_unpack_to_the_same_tree_and_keep_the_diff_id() {
    let work = tempdir();
    let src = work.path().join("rootfs");
    fs::create_dir(&src).unwrap();
    apply_tag("corpus", &src);
    let want = listing(&src);

    let plain = work.path().join("layer.tar");
    let plain_report = pack(&src, &plain, None);
    let diff_id = jstr(&plain_report, "diff_id").to_owned();
    assert_eq!(sha256_file(&plain), diff_id);

    for (c, magic) in [
        ("gzip", &[0x1f, 0x8b][..]),
        ("zstd", &[0x28, 0xb5, 0x2f, 0xfd][..]),
    ] {
        let out = work.path().join(format!("layer.tar.{c}"));
        let report = pack(&src, &out, Some(c));
        check_pack_report(&report, &out, c);
        assert_eq!(
            jstr(&report, "diff_id"),
            diff_id,
            "{c} pack: diffID differs from the plain pack"
        );
        let head = fs::read(&out).unwrap();
        assert!(
            head.starts_with(magic),
            "{c} pack does not start with the {c} magic"
        );

        let d = strata_json(["layer".as_ref(), "digest".as_ref(), out.as_os_str()]);
        assert_eq!(
            jstr(&d, "compression"),
            c,
            "digest of the {c} pack: compression"
        );
        assert_eq!(
            jstr(&d, "diff_id"),
            diff_id,
            "digest of the {c} pack: diff_id"
        );
        assert_eq!(
            jstr(&d, "blob_digest"),
            sha256_file(&out),
            "digest of the {c} pack: blob_digest"
        );

        let dir = work.path().join(format!("unpacked-{c}"));
        let u = unpack(&out, &dir, &[]);
        assert_eq!(jstr(&u, "compression"), c);
        assert_eq!(
            jstr(&u, "diff_id"),
            diff_id,
            "unpack of the {c} pack: diff_id"
        );
        assert_listing_eq(
            &want,
            &listing(&dir),
            &format!("{c} pack unpacked vs the packed tree"),
        );
    }
}
