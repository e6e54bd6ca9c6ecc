//! Hostile OCI layouts as sources: a layer blob that never ends (a symlink to
//! `/dev/zero`), one that is a FIFO, and descriptors that lie about a blob's size. Every
//! destination refuses each the same way, promptly, and is left as it was: no new
//! directory or archive, no stray files, no image in the store.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// An empty tar: 10240 zero bytes (which is also what `/dev/zero` starts with).
const EMPTY_TAR: usize = 10240;

fn digest_of(bytes: &[u8]) -> String {
    sha256_reader(bytes).0
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    fs::write(dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
    digest
}

/// A one-layer layout in `dir`, tagged `1`, whose layer is an empty tar (gzipped if
/// `gzipped`) that its manifest says is `claimed` bytes (its true size if `None`).
/// Returns the layer blob's path.
fn tiny_layout(dir: &Path, gzipped: bool, claimed: Option<u64>, tag: &str) -> PathBuf {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tar = vec![0u8; EMPTY_TAR];
    let blob = if gzipped { gzip(&tar) } else { tar.clone() };
    let layer = put_blob(dir, &blob);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(&tar)]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(dir, &config);
    let media = if gzipped {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media,
            "digest": layer,
            "size": claimed.unwrap_or(blob.len() as u64),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put_blob(dir, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dir.join("blobs/sha256").join(&layer[7..])
}

fn listing(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// `strata copy oci:SRC:1 DEST` into each kind of destination must fail within 30 s
/// with `expect` in its message, and leave each destination as it was.
fn every_destination_refuses(src: &Path, expect: &str) {
    let work = tempdir();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let root = work.path().join("store");
    let source = format!("oci:{}:1", src.display());
    let run = |args: &[String]| {
        let started = Instant::now();
        let mut cmd = strata_cmd(["--root"]);
        cmd.arg(&root).args(args);
        let r = run_with_timeout(cmd, Duration::from_secs(30));
        (r, started.elapsed())
    };
    let images = || run(&["--json".into(), "images".into()]).0.stdout;
    let store_before = images();
    for dest in [
        format!("oci:{}:x", out.join("layout").display()),
        format!("oci-archive:{}", out.join("o.tar").display()),
        format!("docker-archive:{}", out.join("d.tar").display()),
        "strata:x".to_string(),
    ] {
        let (r, took) = run(&["copy".into(), source.clone(), dest.clone()]);
        r.assert_strata_error();
        assert!(
            r.stderr.contains(expect),
            "into {dest}: expected `{expect}` in:\n{}",
            r.stderr
        );
        assert!(took < Duration::from_secs(20), "into {dest}: took {took:?}");
        let left = listing(&out);
        assert!(left.is_empty(), "into {dest}: a failed copy left {left:?}");
        let strays: Vec<_> = listing(work.path())
            .into_iter()
            .filter(|n| n.contains(".strata") && !n.starts_with("store"))
            .collect();
        assert!(strays.is_empty(), "into {dest}: {strays:?}");
    }
    assert_eq!(images(), store_before, "a failed copy changed the store");
    let staging = fs::read_dir(root.join("staging")).map_or(0, |d| d.count());
    assert_eq!(staging, 0, "a failed copy left staging debris");
}

#[test]
fn a_layer_blob_that_never_ends_is_refused_at_its_size() {
    let work = tempdir();
    let src = work.path().join("src");
    let blob = tiny_layout(&src, false, None, "zero");
    fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
    every_destination_refuses(&src, "is a device, not a regular file");
}

#[test]
fn a_layer_blob_that_is_a_fifo_is_refused() {
    let work = tempdir();
    let src = work.path().join("src");
    let blob = tiny_layout(&src, false, None, "fifo");
    fs::remove_file(&blob).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, &blob, rustix::fs::Mode::from(0o644)).unwrap();
    every_destination_refuses(&src, "is a FIFO, not a regular file");
}

#[test]
fn descriptor_sizes_that_lie_are_refused_by_every_destination() {
    let plain = EMPTY_TAR as u64;
    for (gzipped, claimed, expect) in [
        (
            false,
            plain + 1000,
            "expected 11240 bytes, got 10240 bytes".to_string(),
        ),
        (
            false,
            plain - 1000,
            "expected 9240 bytes, got more than 9240 bytes".to_string(),
        ),
        (
            false,
            1 << 63,
            format!("expected {} bytes, got 10240 bytes", 1u64 << 63),
        ),
        (true, 0, String::new()),
    ] {
        let work = tempdir();
        let src = work.path().join("src");
        let (claimed, expect) = if gzipped {
            // The gzip blob's true size, plus 5000.
            let size = gzip(&vec![0u8; EMPTY_TAR]).len() as u64;
            let c = size + 5000;
            (c, format!("expected {c} bytes, got {size} bytes"))
        } else {
            (claimed, expect)
        };
        tiny_layout(&src, gzipped, Some(claimed), "lie");
        every_destination_refuses(&src, &expect);
    }
}

#[test]
fn a_failed_copy_leaves_an_existing_layout_as_it_was() {
    let work = tempdir();
    let good = work.path().join("good");
    tiny_layout(&good, true, None, "good");
    let dest = work.path().join("dest");
    let into_dest = format!("oci:{}:old", dest.display());
    strata(["copy", &format!("oci:{}:1", good.display()), &into_dest]).assert_success();
    let before: Vec<(String, Vec<u8>)> = listing(&dest)
        .into_iter()
        .map(|n| {
            let bytes = fs::read(dest.join(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();

    // Another image (a new config blob) whose layer lies about its size.
    let bad = work.path().join("bad");
    tiny_layout(&bad, false, Some(EMPTY_TAR as u64 + 1000), "bad");
    let run = strata([
        "copy",
        &format!("oci:{}:1", bad.display()),
        &format!("oci:{}:new", dest.display()),
    ]);
    run.assert_strata_error();
    assert!(
        run.stderr.contains("expected 11240 bytes"),
        "{}",
        run.stderr
    );
    let after: Vec<(String, Vec<u8>)> = listing(&dest)
        .into_iter()
        .map(|n| {
            let bytes = fs::read(dest.join(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();
    assert_eq!(
        after.iter().map(|a| &a.0).collect::<Vec<_>>(),
        before.iter().map(|b| &b.0).collect::<Vec<_>>(),
        "the failed copy added or removed files"
    );
    assert!(after == before, "the failed copy changed a file");
}

/// A layer the destination already holds is not read again, so its descriptor's size is
/// checked against what the destination holds: a lie is refused there too (an OCI layout,
/// the store), instead of going into the manifest kept.
#[test]
fn a_lying_size_is_refused_when_the_destination_already_has_the_layer() {
    for gzipped in [false, true] {
        let work = tempdir();
        let (good, bad) = (work.path().join("good"), work.path().join("bad"));
        let blob = tiny_layout(&good, gzipped, None, "good");
        let size = fs::metadata(&blob).unwrap().len();
        tiny_layout(&bad, gzipped, Some(size + 5000), "bad");
        let expect = format!("expected {} bytes, got {size} bytes", size + 5000);
        let root = work.path().join("store");
        let dest = work.path().join("dest");
        for into in [format!("oci:{}:x", dest.display()), "strata:x".to_string()] {
            let copy = |from: &Path| {
                let mut cmd = strata_cmd(["--root"]);
                cmd.arg(&root)
                    .args(["copy", &format!("oci:{}:1", from.display()), &into]);
                run_with_timeout(cmd, Duration::from_secs(60))
            };
            copy(&good).assert_success();
            let run = copy(&bad);
            run.assert_strata_error();
            assert!(
                run.stderr.contains(&expect),
                "gzipped {gzipped}, into {into}: expected `{expect}` in:\n{}",
                run.stderr
            );
        }
        let mut cmd = strata_cmd(["--root"]);
        cmd.arg(&root).args(["--json", "images"]);
        let images = run_with_timeout(cmd, Duration::from_secs(60)).json();
        assert_eq!(
            images.as_array().map(Vec::len),
            Some(1),
            "only the good image is in the store: {images}"
        );
    }
}
