//! Images in the store, against the real peers: what `strata save` writes is read by
//! skopeo, podman and umoci with the same configs, diffIDs and trees; what skopeo, podman
//! and umoci write, `strata load` (or `copy … strata:`) takes in and saves again with the
//! same IDs; saves are byte-identical; `commit` and `import-dir` make images the peers
//! read; `rmi` takes what nothing else needs.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::images::*;
use common::*;
use serde_json::Value;

type Store = TempStore;

impl TempStore {
    fn fsck_clean(&self) {
        assert_eq!(self.json(&["fsck"])["clean"], Value::Bool(true));
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn layout() -> String {
    s(&corpus().join("oci"))
}

/// A store holding the corpus image (from the corpus's OCI layout: gzip blobs kept) as
/// `strata/corpus:1` and its base as `strata/base:1`.
fn store_with_corpus() -> Store {
    let st = Store::new();
    st.ok(&[
        "copy",
        &format!("oci:{}:corpus", layout()),
        "strata:strata/corpus:1",
    ]);
    st.ok(&[
        "copy",
        &format!("oci:{}:base", layout()),
        "strata:strata/base:1",
    ]);
    st
}

#[test]
fn saved_archives_are_read_by_skopeo_podman_and_umoci_with_the_same_ids_and_trees() {
    let st = store_with_corpus();
    let want = corpus_facts("corpus");
    assert_eq!(
        st.facts("strata/corpus:1"),
        want,
        "the store holds the corpus image"
    );

    // Docker 25+ layout (default) and legacy: skopeo and podman read the same image.
    for format in ["docker-archive", "docker-legacy"] {
        let out = st.path(&format!("{format}.tar"));
        st.ok(&[
            "save",
            "strata/corpus:1",
            "-o",
            &s(&out),
            "--format",
            format,
        ]);
        let archive = format!("docker-archive:{}", out.display());
        assert_eq!(skopeo_facts(&archive), want, "{format}: skopeo inspect");
        let oci = st.path(&format!("{format}-via-skopeo"));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", &archive, &format!("oci:{}:c", oci.display())]);
        run_with_timeout(cmd, TIMEOUT).assert_success();
        // skopeo rewrites a Docker config as an OCI one (a new image ID); the layers stay.
        assert_eq!(
            skopeo_facts(&format!("oci:{}:c", oci.display())).diff_ids,
            want.diff_ids,
            "{format}: skopeo copy"
        );
        let podman = Podman::new();
        podman.run(&["load", "-i", &s(&out)]);
        // (podman names a legacy archive's image localhost/strata/corpus:1: by ID, then.)
        assert_eq!(podman.inspect(&want.id[7..]), want, "{format}: podman load");
    }

    // OCI layout (kept gzip blobs, kept manifest): umoci unpacks the expected tree.
    let oci = st.path("saved-oci");
    st.ok(&["save", "strata/corpus:1", "-o", &s(&oci), "--format", "oci"]);
    let index: Value = serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    let ours = jstr(&index["manifests"][0], "digest").to_owned();
    let theirs = oci_layers("corpus"); // same blobs as the corpus's layout
    for l in &theirs {
        assert!(
            oci.join("blobs/sha256").join(&l.digest[7..]).exists(),
            "blob {} kept",
            l.digest
        );
    }
    let corpus_index: Value =
        serde_json::from_slice(&fs::read(corpus().join("oci/index.json")).unwrap()).unwrap();
    let corpus_manifest = corpus_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "corpus")
        .map(|m| jstr(m, "digest").to_owned())
        .unwrap();
    assert_eq!(
        ours, corpus_manifest,
        "the manifest survives the store byte for byte"
    );
    let bundle = st.path("bundle");
    let mut cmd = Command::new("umoci");
    cmd.args([
        "unpack",
        "--image",
        &format!("{}:1", oci.display()),
        &s(&bundle),
    ]);
    run_with_timeout(cmd, TIMEOUT).assert_success();
    let expected = fs::read_to_string(corpus().join("expected/corpus.rootfs.tsv")).unwrap();
    assert_listing_eq(
        &without_root_mtime(&expected),
        &without_root_mtime(&tree_listing(&bundle.join("rootfs"), &[])),
        "umoci unpack of strata save --format oci",
    );

    // oci-archive: skopeo reads it.
    let oa = st.path("saved.oci.tar");
    st.ok(&[
        "save",
        "strata/corpus:1",
        "-o",
        &s(&oa),
        "--format",
        "oci-archive",
    ]);
    assert_eq!(
        skopeo_facts(&format!("oci-archive:{}:1", oa.display())),
        want
    );
}

#[test]
fn loads_what_the_peers_write_and_saves_it_again_with_the_same_ids() {
    let want = corpus_facts("corpus");
    let base = corpus_facts("base");
    let podman = Podman::new();
    podman.run(&[
        "load",
        "-i",
        &s(&corpus().join("corpus.docker-archive.tar")),
    ]);
    let work = tempdir();
    let podman_docker = work.path().join("podman-docker.tar");
    let podman_oci = work.path().join("podman-oci.tar");
    podman.run(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        &s(&podman_docker),
        "docker.io/strata/corpus:1",
    ]);
    podman.run(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &s(&podman_oci),
        "docker.io/strata/corpus:1",
    ]);
    for (what, archive, transport) in [
        (
            "skopeo's docker-archive",
            corpus().join("corpus.docker-archive.tar"),
            "docker-archive",
        ),
        (
            "podman save --format docker-archive",
            podman_docker,
            "docker-archive",
        ),
        (
            "podman save --format oci-archive",
            podman_oci,
            "oci-archive",
        ),
    ] {
        // The image as skopeo reads the archive (podman's OCI save has a config of its own).
        let theirs = skopeo_facts(&format!("{transport}:{}", archive.display()));
        assert_eq!(theirs.diff_ids, want.diff_ids, "{what}");
        let st = Store::new();
        st.ok(&["load", "-i", &s(&archive)]);
        let images = st.json(&["images"]);
        assert_eq!(images.as_array().unwrap().len(), 1, "{what}: {images}");
        let id = jstr(&images[0], "id").to_owned();
        assert_eq!(st.facts(&id), theirs, "{what}: loaded");
        let again = st.path("again.tar");
        st.ok(&["save", &id, "-o", &s(&again)]);
        assert_eq!(
            skopeo_facts(&format!("docker-archive:{}", again.display())),
            theirs,
            "{what}: re-saved"
        );
        st.fsck_clean();
    }
    // podman save -m (two images sharing the base layer) and umoci's layout.
    let st = Store::new();
    st.ok(&[
        "load",
        "-i",
        &s(&corpus().join("multi.podman-docker-archive.tar")),
    ]);
    assert_eq!(st.facts("docker.io/strata/corpus:1"), want);
    assert_eq!(st.facts("localhost/strata/base:1"), base);
    let layers = st.json(&["layer", "ls"]);
    assert_eq!(
        layers.as_array().unwrap().len(),
        5,
        "the shared base layer is stored once"
    );
    st.ok(&[
        "copy",
        &format!("oci:{}:corpus", layout()),
        "strata:from-umoci:1",
    ]);
    assert_eq!(st.facts("from-umoci:1"), want, "umoci's layout");
    assert_eq!(
        st.json(&["layer", "ls"]).as_array().unwrap().len(),
        5,
        "nothing twice"
    );
    st.fsck_clean();
}

#[test]
fn saving_twice_gives_identical_bytes_and_load_reads_pipes() {
    let st = store_with_corpus();
    for format in ["docker-archive", "docker-legacy", "oci-archive"] {
        let a = st.path(&format!("a-{format}.tar"));
        let b = st.path(&format!("b-{format}.tar"));
        for out in [&a, &b] {
            st.ok(&[
                "save",
                "strata/corpus:1",
                "strata/base:1",
                "-o",
                &s(out),
                "--format",
                format,
            ]);
        }
        assert!(read(&a) == read(&b), "{format}: two saves differ");
    }
    // To standard output, then from standard input, gzip-compressed on the way.
    let gz = st.path("piped.tar.gz");
    let mut save = st.cmd(&["save", "strata/corpus:1", "-o", "-"]);
    save.stdout(Stdio::piped());
    let mut child = save.spawn().unwrap();
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(child.stdout.take().unwrap())
        .stdout(fs::File::create(&gz).unwrap())
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success() && gzip.wait().unwrap().success());
    let other = Store::new();
    let mut load = other.cmd(&["load", "-i", "-"]);
    load.stdin(fs::File::open(&gz).unwrap());
    let r = load.output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(other.facts("strata/corpus:1"), corpus_facts("corpus"));
}

#[test]
fn import_dir_and_commit_make_images_the_peers_read() {
    let st = store_with_corpus();
    // import-dir: a one-layer image of a directory.
    let tree = st.path("tree");
    fs::create_dir_all(tree.join("app/bin")).unwrap();
    fs::write(tree.join("app/bin/run"), "#!/bin/sh\necho hi\n").unwrap();
    let v = st.json(&["import-dir", &s(&tree), "demo/app:1"]);
    let id = jstr(&v, "id").to_owned();
    let out = st.path("app.tar");
    st.ok(&["save", "demo/app:1", "-o", &s(&out)]);
    let podman = Podman::new();
    podman.run(&["load", "-i", &s(&out)]);
    assert_eq!(podman.inspect("docker.io/demo/app:1").id, id);

    // commit: a container's changes on the corpus image become its next image.
    let top = jstr(&st.json(&["inspect", "strata/corpus:1"]), "top_layer").to_owned();
    st.ok(&["layer", "create", "--rw", "--parent", &top, "ctr"]);
    let m = PathBuf::from(jstr(&st.json(&["layer", "mount", "ctr"]), "path"));
    fs::write(m.join("etc/committed"), "yes\n").unwrap();
    fs::remove_file(m.join("etc/corpus/replaced.conf")).unwrap();
    let c = st.json(&["commit", "ctr", "strata/corpus:2", "-m", "a test commit"]);
    let history = st.json(&["history", "strata/corpus:2"]);
    assert_eq!(jstr(&history[0], "comment"), "a test commit");
    let facts = st.facts("strata/corpus:2");
    let mut want = corpus_facts("corpus").diff_ids;
    want.push(jstr(&c, "diff_id").to_owned());
    assert_eq!(facts.diff_ids, want, "the parent's layers and one more");
    let oci = st.path("committed-oci");
    st.ok(&["save", "strata/corpus:2", "-o", &s(&oci), "--format", "oci"]);
    let bundle = st.path("committed-bundle");
    let mut cmd = Command::new("umoci");
    cmd.args([
        "unpack",
        "--image",
        &format!("{}:2", oci.display()),
        &s(&bundle),
    ]);
    run_with_timeout(cmd, TIMEOUT).assert_success();
    // The container's own entries: what its init layer holds (the runtime's mountpoints)
    // is not committed.
    let init: Vec<String> = st
        .ok(&["layer", "changes", "ctr-init"])
        .stdout_text()
        .lines()
        .filter_map(|l| l.strip_prefix("A /"))
        .map(str::to_owned)
        .collect();
    assert!(init.contains(&".dockerenv".to_owned()), "{init:?}");
    assert_listing_eq(
        &filter_paths(&without_root_mtime(&tree_listing(&m, &[])), |p| {
            !init.iter().any(|i| i == p)
        }),
        &without_root_mtime(&tree_listing(&bundle.join("rootfs"), &[])),
        "umoci's view of the committed image vs the container",
    );
    st.ok(&["layer", "umount", "ctr"]);

    // rmi: refused while the container sits on the image's layers, forced keeps them.
    let r = st.run(&["rmi", "strata/corpus:1"]);
    r.assert_strata_error();
    assert!(
        r.stderr.contains("has read-write layers on it (ctr)"),
        "{}",
        r.stderr
    );
    st.ok(&["layer", "rm", "ctr"]);
    // The committed image still needs every layer of corpus:1.
    let removed = st.json(&["rmi", "strata/corpus:1"]);
    assert_eq!(removed["layers_removed"].as_array().unwrap().len(), 0);
    let removed = st.json(&["rmi", "strata/corpus:2"]);
    assert_eq!(
        removed["layers_removed"].as_array().unwrap().len(),
        5,
        "{removed}"
    );
    // base:1 keeps layer 1.
    assert_eq!(
        st.json(&["layer", "ls"]).as_array().unwrap().len(),
        2,
        "base's layer and app's"
    );
    st.fsck_clean();
}

#[test]
fn names_resolve_like_docker_and_tags_move() {
    let st = store_with_corpus();
    let id = st.facts("strata/corpus:1").id;
    for spec in [
        &id[..],
        &id[7..],
        &id[7..19],
        "docker.io/strata/corpus:1",
        "strata/corpus:1",
    ] {
        assert_eq!(st.facts(spec).id, id, "{spec}");
    }
    st.ok(&["tag", "strata/corpus:1", "busybox"]);
    assert_eq!(st.facts("docker.io/library/busybox:latest").id, id);
    // By one of several names, rmi untags only.
    let v = st.json(&["rmi", "busybox"]);
    assert_eq!(v["untagged"][0], "docker.io/library/busybox:latest");
    assert_eq!(st.facts("strata/corpus:1").id, id);
    let r = st.run(&["inspect", "busybox"]);
    r.assert_strata_error();
    assert!(
        r.stderr.contains("no image `busybox` in the store"),
        "{}",
        r.stderr
    );
}

/// `manifest.json` of a docker-archive: per image, its config member and `RepoTags`.
fn archive_manifest(archive: &Path) -> Vec<(String, Value)> {
    let out = Command::new("tar")
        .args(["-xOf", &s(archive), "manifest.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "no manifest.json in {}", s(archive));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| (jstr(e, "Config").to_string(), e["RepoTags"].clone()))
        .collect()
}

#[test]
fn save_names_images_as_docker_save_does() {
    let st = store_with_corpus();
    let corpus = st.facts("strata/corpus:1").id;
    let base = st.facts("strata/base:1").id;
    st.ok(&["tag", "strata/corpus:1", "strata/corpus:2"]);
    st.ok(&["tag", "strata/corpus:1", "other:x"]);
    let config = |id: &str| format!("{}.json", &id[7..]);
    let out = st.path("names.tar");
    let save = |args: &[&str]| {
        let mut a = vec![
            "save",
            "--format",
            "docker-legacy",
            "-o",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        st.ok(&a);
        archive_manifest(&out)
    };
    let tags = |t: &[&str]| serde_json::json!(t);
    // NAME:TAG: that name only, not the image's other two.
    assert_eq!(
        save(&["strata/corpus:1"]),
        vec![(config(&corpus), tags(&["strata/corpus:1"]))]
    );
    // A repository: every tag of it (there is no `latest`).
    assert_eq!(
        save(&["strata/corpus"]),
        vec![(
            config(&corpus),
            tags(&["strata/corpus:1", "strata/corpus:2"])
        )]
    );
    let repositories = Command::new("tar")
        .args(["-xOf", &s(&out), "repositories"])
        .output()
        .unwrap();
    let repositories: Value = serde_json::from_slice(&repositories.stdout).unwrap();
    assert_eq!(
        repositories.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["strata/corpus"]
    );
    // By ID (whole or a prefix): no names at all.
    for id in [&corpus[..], &corpus[7..], &corpus[7..19]] {
        assert_eq!(
            save(&[id]),
            vec![(config(&corpus), Value::Null)],
            "save {id}"
        );
    }
    // Several arguments: listed in their order; one image named twice is listed once.
    assert_eq!(
        save(&["strata/base:1", "other:x"]),
        vec![
            (config(&base), tags(&["strata/base:1"])),
            (config(&corpus), tags(&["other:x"]))
        ]
    );
    assert_eq!(
        save(&["other:x", &corpus, "strata/base:1", "strata/corpus:2"]),
        vec![
            (config(&corpus), tags(&["other:x", "strata/corpus:2"])),
            (config(&base), tags(&["strata/base:1"]))
        ]
    );
    // The Docker 25+ layout names them the same way.
    st.ok(&["save", "-o", &s(&out), "strata/corpus:2"]);
    assert_eq!(
        archive_manifest(&out),
        vec![(
            format!("blobs/sha256/{}", &corpus[7..]),
            tags(&["strata/corpus:2"])
        )]
    );
    // A tag the repository lacks is an error that names it.
    let r = st.run(&["save", "-o", &s(&out), "strata/corpus:3"]);
    r.assert_strata_error();
    assert!(
        r.stderr.contains("no image `strata/corpus:3` in the store"),
        "{}",
        r.stderr
    );
}
