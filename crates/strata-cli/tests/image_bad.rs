//! Bad archives and layouts: each gives its own clear error, a non-zero exit, and leaves
//! the destination as it was (no archive file, an OCI layout's `index.json` unchanged).
//! The fixtures are the corpus's own archives with one thing broken.

use crate::common;

use std::fs;
use std::path::Path;

use common::*;
use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{Entry, EntryKind};
use strata_testkit::entries::{collect, write_items, EntryExt, Item};

/// One archive member: a file's bytes, or a symlink's target.
#[derive(Clone)]
enum Member {
    File(Vec<u8>),
    Symlink(String),
    Dir,
}

fn read_archive(path: &Path) -> Vec<(String, Member)> {
    collect(TarReader::new(fs::File::open(path).unwrap()))
        .unwrap()
        .into_iter()
        .map(|i| {
            let m = match &i.entry.kind {
                EntryKind::File { .. } => Member::File(i.data.clone()),
                EntryKind::Symlink { target } => {
                    Member::Symlink(String::from_utf8(target.clone()).unwrap())
                }
                _ => Member::Dir,
            };
            (i.name(), m)
        })
        .collect()
}

fn write_archive(path: &Path, members: &[(String, Member)]) {
    let items: Vec<Item> = members
        .iter()
        .map(|(name, m)| match m {
            Member::File(d) => Item::file(name, d),
            Member::Symlink(t) => Item::of(Entry::symlink(name, t).mode(0o644)),
            Member::Dir => Item::of(Entry::dir(name).mode(0o644)),
        })
        .collect();
    write_items(TarWriter::new(fs::File::create(path).unwrap()), &items).unwrap();
}

fn file<'a>(members: &'a mut [(String, Member)], name: &str) -> &'a mut Vec<u8> {
    match members.iter_mut().find(|(n, _)| n == name) {
        Some((_, Member::File(d))) => d,
        _ => panic!("no file member {name}"),
    }
}

/// The corpus's docker-archive (skopeo's), as members.
fn docker_archive() -> Vec<(String, Member)> {
    read_archive(&corpus().join("corpus.docker-archive.tar"))
}

fn manifest_json(members: &mut [(String, Member)]) -> serde_json::Value {
    serde_json::from_slice(file(members, "manifest.json")).unwrap()
}

fn set_manifest_json(members: &mut [(String, Member)], v: &serde_json::Value) {
    *file(members, "manifest.json") = serde_json::to_vec(v).unwrap();
}

/// `strata copy SOURCE docker-archive:OUT` must fail with `expect` in its message, and
/// leave no OUT behind.
fn refuses(source: &str, expect: &str) {
    let work = tempdir();
    let out = work.path().join("out.tar");
    let run = strata(["copy", source, &format!("docker-archive:{}", out.display())]);
    run.assert_strata_error();
    assert!(
        run.stderr.contains(expect),
        "`{source}`: expected `{expect}` in:\n{}",
        run.stderr
    );
    let left: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a failed copy left {left:?} behind");
    refused_by_the_store(source, expect);
}

/// The same source copied into a store that already holds an image fails the same way,
/// and leaves the store as it was (its images, its layers, fsck clean). (Not one of the
/// corpus's: a layer the store has is reused without being read, corrupt source or not.)
fn refused_by_the_store(source: &str, expect: &str) {
    let work = tempdir();
    let root = work.path().join("store");
    let st = |args: &[&str]| {
        let mut all = vec!["--root".to_string(), root.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        strata(all)
    };
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), "hello\n").unwrap();
    st(&["import-dir", &tree.display().to_string(), "existing:1"]).assert_success();
    let before = (
        st(&["--json", "images"]).stdout,
        st(&["--json", "layer", "ls"]).stdout,
    );
    let run = st(&["copy", source, "strata:bad"]);
    run.assert_strata_error();
    assert!(
        run.stderr.contains(expect),
        "`{source}` into the store: expected `{expect}` in:\n{}",
        run.stderr
    );
    let after = (
        st(&["--json", "images"]).stdout,
        st(&["--json", "layer", "ls"]).stdout,
    );
    assert!(
        before == after,
        "`{source}`: a failed load changed the store"
    );
    st(&["fsck"]).assert_success();
    let staging = fs::read_dir(root.join("staging")).unwrap().count();
    assert_eq!(staging, 0, "`{source}`: a failed load left staging debris");
}

fn refuses_archive(members: &[(String, Member)], expect: &str) {
    let work = tempdir();
    let bad = work.path().join("bad.tar");
    write_archive(&bad, members);
    refuses(&format!("docker-archive:{}", bad.display()), expect);
}

#[test]
fn missing_manifest_json() {
    let mut m = docker_archive();
    m.retain(|(n, _)| n != "manifest.json");
    refuses_archive(&m, "does not contain a manifest.json");
}

#[test]
fn manifest_json_null() {
    let mut m = docker_archive();
    *file(&mut m, "manifest.json") = b"null".to_vec();
    refuses_archive(&m, "manifest.json is `null`");
}

#[test]
fn wrong_diff_id() {
    let mut m = docker_archive();
    let rows = layers_tsv();
    let config_name = manifest_json(&mut m)[0]["Config"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = String::from_utf8(file(&mut m, &config_name).clone()).unwrap();
    // Layer 0 claims layer 1's diffID.
    let config = config.replacen(&rows[0].diff_id, &rows[1].diff_id, 1);
    *file(&mut m, &config_name) = config.into_bytes();
    refuses_archive(&m, "invalid diffID for layer 0 of image sha256:");
    refuses_archive(
        &m,
        &format!("expected {}, got {}", rows[1].diff_id, rows[0].diff_id),
    );
}

#[test]
fn layer_count_mismatch() {
    let mut m = docker_archive();
    let mut mj = manifest_json(&mut m);
    mj[0]["Layers"].as_array_mut().unwrap().pop();
    set_manifest_json(&mut m, &mj);
    refuses_archive(&m, "4 layers listed but its config has 5 diffIDs");
}

#[test]
fn symlink_escaping_the_archive() {
    for (target, why) in [
        ("../../../etc/passwd", "climbs out of the archive"),
        ("/etc/passwd", "is absolute"),
    ] {
        let mut m = docker_archive();
        let mut mj = manifest_json(&mut m);
        mj[0]["Layers"][0] = "evil/layer.tar".into();
        set_manifest_json(&mut m, &mj);
        m.push(("evil/layer.tar".into(), Member::Symlink(target.into())));
        refuses_archive(
            &m,
            &format!("`evil/layer.tar` is a symlink to `{target}`, which {why}"),
        );
    }
}

#[test]
fn symlink_loop() {
    let mut m = docker_archive();
    let mut mj = manifest_json(&mut m);
    mj[0]["Layers"][0] = "a".into();
    set_manifest_json(&mut m, &mj);
    m.push(("a".into(), Member::Symlink("b".into())));
    m.push(("b".into(), Member::Symlink("a".into())));
    refuses_archive(&m, "takes more than 8 links to resolve");
}

#[test]
fn missing_layer_member() {
    let mut m = docker_archive();
    let first = layers_tsv()[0].docker_archive_member.clone();
    m.retain(|(n, _)| *n != first);
    refuses_archive(&m, "is missing");
}

#[test]
fn truncated_blob() {
    let work = tempdir();
    let bad = work.path().join("truncated.tar");
    let src = fs::read(corpus().join("corpus.docker-archive.tar")).unwrap();
    // Cut inside the big layer (the 4th member).
    fs::write(&bad, &src[..12 * 1024 * 1024]).unwrap();
    refuses(
        &format!("docker-archive:{}", bad.display()),
        "is truncated (its data ends at byte",
    );
}

#[test]
fn unknown_layer_media_type() {
    let mut m = read_archive(&corpus().join("base.oci-archive.tar"));
    let index: serde_json::Value = serde_json::from_slice(file(&mut m, "index.json")).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mname = format!("blobs/sha256/{}", &old[7..]);
    let manifest = String::from_utf8(file(&mut m, &mname).clone()).unwrap();
    let manifest = manifest.replace(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.example.unknown",
    );
    let (new, size) = sha256_reader(manifest.as_bytes());
    let index = serde_json::to_string(&index)
        .unwrap()
        .replace(&old, &new)
        .replace(
            &format!("\"size\":{}", index["manifests"][0]["size"]),
            &format!("\"size\":{size}"),
        );
    m.retain(|(n, _)| *n != mname);
    m.push((
        format!("blobs/sha256/{}", &new[7..]),
        Member::File(manifest.into_bytes()),
    ));
    *file(&mut m, "index.json") = index.into_bytes();
    let work = tempdir();
    let bad = work.path().join("bad-oci.tar");
    write_archive(&bad, &m);
    refuses(
        &format!("oci-archive:{}", bad.display()),
        "layer 0 is `application/vnd.example.unknown`, not a layer media type",
    );
}

/// A copy of the corpus's OCI layout in `work/src` with one byte of layer `index` of
/// `tag` flipped (near its end, so that gzip notices only there).
fn corrupt_copy_of_the_corpus_layout(work: &Path, tag: &str, index: usize) -> std::path::PathBuf {
    let src = work.join("src");
    sh(&format!(
        "cp -r {} {}",
        corpus().join("oci").display(),
        src.display()
    ));
    let layer = &oci_layers(tag)[index];
    let blob = src.join("blobs/sha256").join(&layer.digest[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.len() - bytes.len().min(100);
    bytes[at] ^= 0x55;
    fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&blob, &bytes).unwrap();
    src
}

#[test]
fn corrupt_blob_in_a_layout_leaves_the_destination_layout_unchanged() {
    let work = tempdir();
    let src = corrupt_copy_of_the_corpus_layout(work.path(), "base", 0);

    // A destination layout that already holds another image (a zstd copy of base).
    let dest = work.path().join("dest");
    strata_json([
        "copy",
        &format!("oci:{}:base", corpus().join("oci-zstd").display()),
        &format!("oci:{}:old", dest.display()),
    ]);
    let index_before = fs::read(dest.join("index.json")).unwrap();
    let run = strata([
        "copy",
        &format!("oci:{}:base", src.display()),
        &format!("oci:{}:new", dest.display()),
    ]);
    run.assert_strata_error();
    assert!(
        run.stderr.contains("layer 0 of image")
            && (run.stderr.contains("digest") || run.stderr.contains("deflate")),
        "{}",
        run.stderr
    );
    assert_eq!(
        fs::read(dest.join("index.json")).unwrap(),
        index_before,
        "index.json changed"
    );
    let leftovers: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".strata"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    refused_by_the_store(&format!("oci:{}:base", src.display()), "layer 0 of image");
}

#[test]
fn a_corrupt_middle_layer_fails_a_parallel_copy_and_commits_nothing() {
    let work = tempdir();
    let src = corrupt_copy_of_the_corpus_layout(work.path(), "corpus", 2);
    let dest = work.path().join("dest");
    for jobs in ["1", "4"] {
        let run = strata([
            "copy",
            "--jobs",
            jobs,
            &format!("oci:{}:corpus", src.display()),
            &format!("oci:{}:c", dest.display()),
        ]);
        run.assert_strata_error();
        assert!(
            run.stderr.contains("layer 2 of image"),
            "--jobs {jobs}: {}",
            run.stderr
        );
        assert!(
            !dest.join("index.json").exists(),
            "--jobs {jobs}: a failed copy wrote index.json"
        );
    }
    // Into the store, layers 3 and 4 download while 2 applies (and fails): nothing stays.
    refused_by_the_store(&format!("oci:{}:corpus", src.display()), "layer 2 of image");
}

#[test]
fn not_an_archive_and_unsupported_transports() {
    let work = tempdir();
    let junk = work.path().join("junk.tar");
    fs::write(&junk, vec![b'x'; 4096]).unwrap();
    refuses(
        &format!("docker-archive:{}", junk.display()),
        "is not a readable tar",
    );
    for (src, why) in [
        ("strata:busybox", "no image `busybox` in the store"),
        ("busybox", "names no transport"),
    ] {
        refuses(src, why);
    }
    let multi = format!(
        "docker-archive:{}",
        corpus().join("multi.podman-docker-archive.tar").display()
    );
    refuses(
        &multi,
        "it holds 2 images (@0 docker.io/strata/corpus:1, @1 localhost/strata/base:1)",
    );
    refuses(&format!("{multi}:nosuch"), "no image is named `nosuch`");
}
