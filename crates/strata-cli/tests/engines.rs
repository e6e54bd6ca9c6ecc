//! Docker Engine 20.10 and containerd 1.6 as ground truth, each started by the test with
//! its own data directories and socket (see `common/engines.rs`):
//!
//! - `strata save --format docker-legacy` is byte-identical to `docker save` of the same
//!   images (one, several, by ID, by one of several names, by repository);
//! - what `docker save` writes (images built with `docker build`: whiteouts, an opaque
//!   directory, hard links; a `docker import` with xattrs and a file capability) loads
//!   with docker's image IDs and diffIDs, and mounts as the tree docker's overlay2 shows;
//! - what `strata save` writes (both formats, several images, by ID) loads in a fresh
//!   dockerd with the same IDs, runs, and saves again byte-identical;
//! - containerd imports Strata's archives (same manifest digests) and runs them, and
//!   Strata loads what `ctr images export` writes.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::engines::*;
use common::images::*;
use common::*;
use serde_json::Value;

type Store = TempStore;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn member(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-xOf", &s(archive), name])
        .output()
        .unwrap();
    assert!(out.status.success(), "no {name} in {}", s(archive));
    out.stdout
}

/// The `Config` members of `manifest.json`, in its order.
fn configs(archive: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&member(archive, "manifest.json")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| jstr(e, "Config").to_string())
        .collect()
}

/// A layer tar (GNU tar, PAX) of a small tree with `user.*` xattrs and a file capability,
/// for `docker import`.
fn xattr_tar(dir: &Path) -> PathBuf {
    let root = dir.join("xattr-root");
    sh(&format!(
        "set -e; mkdir -p {r}/usr/bin {r}/data; printf 'cap' > {r}/usr/bin/ping; \
         printf 'x' > {r}/data/f; ln {r}/data/f {r}/data/g; \
         setfattr -n user.note -v hello {r}/data/f; setfattr -n user.dir -v d {r}/data; \
         setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 {r}/usr/bin/ping; \
         chown 1000:1000 {r}/data/f; chmod 4755 {r}/usr/bin/ping; \
         touch -d '2021-02-03 04:05:06.123456789' {r}/data/f {r}/data {r}/usr/bin/ping",
        r = root.display()
    ));
    let tar = dir.join("xattr.tar");
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner --format=pax -C {} -cf {} usr data",
        root.display(),
        tar.display()
    ));
    tar
}

/// Loads the corpus image (`strata/corpus:1`, busybox with a shell) into `d`, imports the
/// xattr tree as `strata/imported:1`, and builds `strata/built:1` on the corpus image.
fn docker_images(d: &Dockerd) {
    d.ok(&[
        "load",
        "-i",
        &s(&corpus().join("corpus.docker-archive.tar")),
    ]);
    let tar = xattr_tar(&d.path(""));
    d.ok(&["import", &s(&tar), "strata/imported:1"]);
    let ctx = d.path("context");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM strata/corpus:1\n\
         COPY hello.txt /opt/hello.txt\n\
         RUN rm /bin/ls && rm -rf /etc/corpus && mkdir /etc/corpus && echo new > /etc/corpus/n \
         && ln /opt/hello.txt /opt/hello-link && touch -d @1600000000 /opt/hello-link\n\
         RUN rm -rf /opt/big && mkdir -p /var/empty\n",
    )
    .unwrap();
    d.ok(&[
        "build",
        "--network",
        "none",
        "-t",
        "strata/built:1",
        &s(&ctx),
    ]);
}

/// `docker save ARGS` until its `manifest.json` lists the images in `order` (Docker 20.10
/// iterates a Go map), at most 16 times.
fn docker_save_in_order(d: &Dockerd, args: &[&str], order: &[String], out: &Path) {
    for _ in 0..16 {
        let mut a = vec!["save", "-o", out.to_str().unwrap()];
        a.extend_from_slice(args);
        d.ok(&a);
        if configs(out) == order {
            return;
        }
    }
    panic!("docker save {args:?} never listed the images as {order:?}");
}

#[test]
fn legacy_save_is_byte_identical_to_docker_save() {
    let d = Dockerd::start();
    eprintln!("engines: {}", versions(Some(&d), None));
    docker_images(&d);
    d.ok(&["tag", "strata/corpus:1", "strata/corpus:2"]);
    d.ok(&["tag", "strata/corpus:1", "other:x"]);
    let st = Store::new();
    let all = d.path("all.tar");
    d.ok(&[
        "save",
        "-o",
        &s(&all),
        "strata/corpus",
        "other:x",
        "strata/imported:1",
    ]);
    st.ok(&["load", "-i", &s(&all)]);
    for image in ["strata/corpus:2", "other:x", "strata/imported:1"] {
        assert_eq!(st.facts(image), d.facts(image), "{image}");
    }
    let corpus = d.facts("strata/corpus:1").id;
    let imported = d.facts("strata/imported:1").id;
    let config = |id: &str| format!("{}.json", &id[7..]);
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec!["strata/corpus:1"], vec![config(&corpus)]),
        (vec!["strata/corpus"], vec![config(&corpus)]),
        (vec![&corpus[..]], vec![config(&corpus)]),
        (vec![&corpus[7..19]], vec![config(&corpus)]),
        (vec!["other:x", &corpus[..]], vec![config(&corpus)]),
        (
            vec!["strata/imported:1", "strata/corpus:2"],
            vec![config(&imported), config(&corpus)],
        ),
        (
            vec!["strata/corpus:2", "strata/imported:1"],
            vec![config(&corpus), config(&imported)],
        ),
    ];
    for (args, order) in cases {
        let (theirs, ours) = (d.path("docker.tar"), d.path("strata.tar"));
        docker_save_in_order(&d, &args, &order, &theirs);
        let mut a = vec![
            "save",
            "--format",
            "docker-legacy",
            "-o",
            ours.to_str().unwrap(),
        ];
        a.extend_from_slice(&args);
        st.ok(&a);
        assert_eq!(
            sha256_file(&ours),
            sha256_file(&theirs),
            "save {args:?}: strata's legacy archive differs from docker's; manifest.json: {} vs {}",
            String::from_utf8_lossy(&member(&ours, "manifest.json")),
            String::from_utf8_lossy(&member(&theirs, "manifest.json")),
        );
    }
}

/// A read-only overlay mount (or a plain directory), unmounted when dropped.
struct Mounted {
    path: PathBuf,
    unmount: Option<Box<dyn FnOnce()>>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(u) = self.unmount.take() {
            u();
        }
    }
}

/// The root filesystem of `image` as docker's overlay2 holds it: its layer directories
/// mounted as one read-only overlay (the top one alone for a one-layer image).
fn docker_rootfs(d: &Dockerd, image: &str, at: &Path) -> Mounted {
    let data: Value = serde_json::from_str(&d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .GraphDriver.Data}}",
        image,
    ]))
    .unwrap();
    let upper = jstr(&data, "UpperDir").to_string();
    let Some(lower) = data["LowerDir"].as_str() else {
        return Mounted {
            path: PathBuf::from(upper),
            unmount: None,
        };
    };
    std::fs::create_dir_all(at).unwrap();
    sh(&format!(
        "mount -t overlay overlay -o ro,lowerdir={upper}:{lower} {}",
        at.display()
    ));
    let target = at.to_owned();
    Mounted {
        path: at.to_owned(),
        unmount: Some(Box::new(move || {
            let _ = Command::new("umount").arg(&target).status();
        })),
    }
}

/// The root filesystem of `image` as the store mounts it.
fn strata_rootfs(st: &Store, image: &str) -> Mounted {
    let top = jstr(&st.json(&["inspect", image]), "top_layer").to_string();
    let path = PathBuf::from(jstr(&st.json(&["layer", "mount", &top]), "path"));
    let (strata, root) = (
        std::env::var("CARGO_BIN_EXE_strata").ok(),
        st.root().to_path_buf(),
    );
    Mounted {
        path,
        unmount: Some(Box::new(move || {
            let mut cmd = Command::new(strata.unwrap_or_else(|| "strata".into()));
            let _ = cmd
                .arg("--root")
                .arg(root)
                .args(["layer", "umount", &top])
                .stdout(std::process::Stdio::null())
                .status();
        })),
    }
}

#[test]
fn docker_and_strata_read_each_others_archives() {
    let files = tempdir();
    let f = |name: &str| files.path().join(name);
    let d = Dockerd::start();
    eprintln!("engines: {}", versions(Some(&d), None));
    docker_images(&d);
    let images = ["strata/built:1", "strata/imported:1"];
    let from_docker = f("from-docker.tar");
    d.ok(&["save", "-o", &s(&from_docker), images[0], images[1]]);
    let st = Store::new();
    st.ok(&["load", "-i", &s(&from_docker)]);
    for image in images {
        assert_eq!(st.facts(image), d.facts(image), "{image}: IDs and diffIDs");
    }
    // A dockerd that loads the same archive lays out the same trees as Strata: contents,
    // modes, owners, nanosecond times, hard links, xattrs (the root directory's time is
    // no layer's). (The diff directories `docker build` leaves are no oracle: they keep
    // the build's nanosecond times, which docker's own tars cut to seconds.)
    drop(d);
    let fresh = Dockerd::start();
    let load_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    fresh.ok(&["load", "-i", &s(&from_docker)]);
    for image in images {
        let theirs = docker_rootfs(&fresh, image, &fresh.path("docker-rootfs"));
        let ours = strata_rootfs(&st, image);
        let theirs = without_root_mtime(&tree_listing(&theirs.path, &[]));
        // A directory a layer has entries under but no entry for (the corpus's whiteout
        // layers lack `usr/`) docker creates at the time of the load; Strata (like
        // containerd) keeps the one below. Those times only are left out.
        let mut stamped = Vec::new();
        for line in theirs.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols[1] == "d" && cols[6].parse::<u128>().is_ok_and(|t| t >= load_started) {
                stamped.push(cols[0].to_string());
            }
        }
        assert!(
            stamped.len() <= 2,
            "{image}: dirs stamped at load: {stamped:?}"
        );
        let blank = |l: &str| {
            map_columns(l, |cols| {
                if stamped.contains(&cols[0]) {
                    cols[6] = "-".into();
                }
            })
        };
        assert_listing_eq(
            &blank(&theirs),
            &blank(&without_root_mtime(&tree_listing(&ours.path, &[]))),
            &format!("{image}: strata's rootfs against docker's overlay2"),
        );
    }
    fresh.ok(&["rmi", images[0], images[1]]);

    // Strata's archives, into a dockerd that has never seen these images.
    let built = st.facts(images[0]).id;
    let legacy = f("strata-legacy.tar");
    st.ok(&[
        "save",
        "--format",
        "docker-legacy",
        "-o",
        &s(&legacy),
        images[0],
        images[1],
    ]);
    let oci_layout = f("strata-docker.tar");
    st.ok(&["save", "-o", &s(&oci_layout), images[0], images[1]]);
    let by_id = f("strata-by-id.tar");
    st.ok(&["save", "-o", &s(&by_id), &built]);
    for archive in [&legacy, &oci_layout] {
        fresh.ok(&["load", "-i", &s(archive)]);
        for image in images {
            assert_eq!(
                fresh.facts(image),
                st.facts(image),
                "{image} from {}",
                s(archive)
            );
        }
        let hello = fresh.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            images[0],
            "cat",
            "/opt/hello-link",
        ]);
        assert_eq!(
            hello,
            "hello",
            "docker run of {} from {}",
            images[0],
            s(archive)
        );
        // docker save of what it loaded: strata's legacy archive again, byte for byte.
        let again = f("again.tar");
        let order = configs(&legacy);
        docker_save_in_order(&fresh, &images, &order, &again);
        assert_eq!(
            sha256_file(&again),
            sha256_file(&legacy),
            "docker save after loading {}",
            s(archive)
        );
        fresh.ok(&["rmi", images[0], images[1]]);
    }
    // By ID: loaded untagged, with the same ID.
    let loaded = fresh.ok(&["load", "-i", &s(&by_id)]);
    assert!(loaded.contains(&built), "{loaded}");
    assert_eq!(fresh.facts(&built), st.facts(&built));
    let tags = fresh.ok(&["image", "inspect", "-f", "{{json .RepoTags}}", &built]);
    assert_eq!(tags, "[]");
}

/// `ctr images ls`: reference and manifest digest of every image.
fn ctr_images(c: &Containerd) -> Vec<(String, String)> {
    c.ok(&["images", "ls"])
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect()
}

/// The manifest digest `index.json` of `archive` gives each image name.
fn index_digests(archive: &Path) -> Vec<(String, String)> {
    let index: Value = serde_json::from_slice(&member(archive, "index.json")).unwrap();
    let mut out: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                jstr(&m["annotations"], "io.containerd.image.name").to_string(),
                jstr(m, "digest").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn containerd_imports_and_runs_strata_archives_and_strata_loads_its_exports() {
    let c = Containerd::start();
    eprintln!("engines: {}", versions(None, Some(&c)));
    let layout = s(&corpus().join("oci"));
    let st = Store::new();
    st.ok(&[
        "copy",
        &format!("oci:{layout}:corpus"),
        "strata:strata/corpus:1",
    ]);
    st.ok(&[
        "copy",
        &format!("oci:{layout}:base"),
        "strata:strata/base:1",
    ]);
    let images = ["docker.io/strata/base:1", "docker.io/strata/corpus:1"];
    let files = tempdir();
    let f = |name: &str| files.path().join(name);
    // Both archives that carry an OCI index import with Strata's manifest digests.
    for format in ["docker-archive", "oci-archive"] {
        let archive = f(&format!("{format}.tar"));
        st.ok(&[
            "save",
            "--format",
            format,
            "-o",
            &s(&archive),
            images[1],
            images[0],
        ]);
        c.ok(&["images", "import", &s(&archive)]);
        let want = index_digests(&archive);
        assert_eq!(want.len(), 2, "{format}: {want:?}");
        assert_eq!(ctr_images(&c), want, "{format}: ctr's images");
        c.ok(&["images", "rm", images[0], images[1]]);
    }
    // The legacy layout has no manifest: containerd makes one around Strata's config.
    let legacy = f("legacy.tar");
    st.ok(&[
        "save",
        "--format",
        "docker-legacy",
        "-o",
        &s(&legacy),
        images[1],
    ]);
    c.ok(&["images", "import", &s(&legacy)]);
    let listed = ctr_images(&c);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let manifest: Value = serde_json::from_str(&c.ok(&["content", "get", &listed[0].1])).unwrap();
    assert_eq!(
        jstr(&manifest["config"], "digest"),
        st.facts(images[1]).id,
        "the legacy import's config"
    );
    // ctr run of a Strata-saved image.
    let out = c.ok(&[
        "run",
        "--rm",
        images[1],
        "strata-run",
        "/bin/sh",
        "-c",
        "cat /etc/hostname",
    ]);
    assert_eq!(out, "corpus");
    // What ctr exports, Strata loads with the same IDs and diffIDs.
    c.ok(&["images", "import", &s(&f("oci-archive.tar"))]);
    let export = f("export.tar");
    c.ok(&["images", "export", &s(&export), images[0], images[1]]);
    let other = Store::new();
    other.ok(&["load", "-i", &s(&export)]);
    assert_eq!(other.facts("strata/corpus:1"), corpus_facts("corpus"));
    assert_eq!(other.facts("strata/base:1"), corpus_facts("base"));
}
