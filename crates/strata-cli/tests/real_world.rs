//! Files other tools made (`$STRATA_SHARED/testdata/real`: docker save of several eras,
//! buildkit, kaniko, jib, `ctr export`, go-containerregistry and regclient layouts), read
//! by Strata and by skopeo side by side. Each case says what Strata must do with it, and
//! the test checks that against what skopeo does with the same file: the same config
//! bytes (so image ID and diffIDs), the same layer digests, the same stored manifest;
//! where skopeo and Docker refuse a file, a clear Strata error and nothing stored.

use crate::common;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use common::images::{check_layout_blobs, facts_of_config, peer, Facts};
use common::*;
use serde_json::Value;

type Store = TempStore;

impl TempStore {
    fn image_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .json(&["images"])
            .as_array()
            .expect("images is a list")
            .iter()
            .map(|i| jstr(i, "id").to_string())
            .collect();
        ids.sort();
        ids
    }
}

fn real(rel: &str) -> String {
    shared()
        .join("testdata/real")
        .join(rel)
        .display()
        .to_string()
}

/// What Strata must do with a source.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Copies it as skopeo reads it: the same config bytes and layers. `same_manifest`:
    /// the manifest Strata shows is the very one skopeo shows (an OCI source that
    /// stores its manifest, no index on top).
    Copies { same_manifest: bool },
    /// Copies it where skopeo refuses; Docker (for archives) or go-containerregistry
    /// and containerd (for layouts) read it, and say why in `because`.
    CopiesUnlikeSkopeo { because: &'static str },
    /// Refuses it, as skopeo (and Docker, for archives) do, with this in the error.
    Refused(&'static str),
    /// Shows it (its config is there) but refuses to copy it, as skopeo does: a layer
    /// blob is missing.
    CopyRefused(&'static str),
    /// An artifact that skopeo copies blob by blob; Strata copies images only and says
    /// so, with this in the error.
    NotAnImage(&'static str),
}

use Expect::*;

/// One source: a transport string relative to the real-data folder (`docker-archive:`,
/// `oci-archive:`, `oci:`), and what Strata must do with it.
struct Case {
    source: &'static str,
    expect: Expect,
}

const fn case(source: &'static str, expect: Expect) -> Case {
    Case { source, expect }
}

const ARCHIVED: Expect = Copies {
    same_manifest: false,
};
const STORED: Expect = Copies {
    same_manifest: true,
};

/// Every image archive and layout of the real data, as a source.
const CASES: &[Case] = &[
    // docker save, 2017-2019, and Docker 25's OCI form (untagged).
    case("docker-archive:artifacts/cimage__almostempty.tar", ARCHIVED),
    case(
        "docker-archive:artifacts/dive__test-docker-image.tar",
        ARCHIVED,
    ),
    case("docker-archive:artifacts/jib__busybox-docker.tar", ARCHIVED),
    case("docker-archive:artifacts/jib__docker-save.tar", ARCHIVED),
    case(
        "docker-archive:artifacts/ggcr__hello-world-v25.tar",
        ARCHIVED,
    ),
    // kaniko and go-containerregistry tarball writers, legacy bazel archives.
    case(
        "docker-archive:artifacts/dive__test-kaniko-image.tar",
        ARCHIVED,
    ),
    case("docker-archive:artifacts/ggcr__test_image_1.tar", ARCHIVED),
    case(
        "docker-archive:artifacts/ggcr__overwritten_file.tar",
        ARCHIVED,
    ),
    case(
        "docker-archive:artifacts/ggcr__whiteout_image.tar",
        ARCHIVED,
    ),
    case("docker-archive:artifacts/ggcr__whiteout_dir.tar", ARCHIVED),
    case(
        "docker-archive:artifacts/ggcr__source_image_with_empty_layer_history.tar",
        ARCHIVED,
    ),
    case("docker-archive:artifacts/ggcr__test_link.tar:@0", ARCHIVED),
    case("docker-archive:artifacts/ggcr__test_link.tar:@1", ARCHIVED),
    // jib: lowercase `config`, `repoTags`, `layers` (issue 10, item 1).
    case("docker-archive:artifacts/jib__jib-image.tar", ARCHIVED),
    case("docker-archive:artifacts/jib__busybox-jib.tar", ARCHIVED),
    // containerd `ctr export`: an index.json over a manifest list, plus manifest.json.
    case("docker-archive:artifacts/oras__hello-world.tar", ARCHIVED),
    case(
        "docker-archive:artifacts/oras__hello-world-prefixed-path.tar",
        ARCHIVED,
    ),
    case("oci-archive:artifacts/oras__hello-world.tar", ARCHIVED),
    case(
        "oci-archive:artifacts/oras__hello-world-prefixed-path.tar",
        ARCHIVED,
    ),
    // buildkit --output type=oci (linux/arm64, a manifest at the top of index.json).
    case(
        "oci-archive:artifacts/dive__test-oci-gzip-image.tar",
        STORED,
    ),
    case(
        "oci-archive:artifacts/dive__test-oci-zstd-image.tar",
        STORED,
    ),
    case(
        "oci-archive:artifacts/dive__test-oci-estargz-image.tar",
        STORED,
    ),
    case(
        "oci-archive:artifacts/dive__test-oci-uncompressed-image.tar",
        STORED,
    ),
    // Refused by Docker 29 and skopeo alike.
    case(
        "docker-archive:artifacts/ggcr__no_manifest.tar",
        Refused("pre-1.10 archive"),
    ),
    case(
        "docker-archive:artifacts/moby__emptyLayer.tar",
        Refused("pre-1.10 archive"),
    ),
    case(
        "docker-archive:artifacts/ggcr__null_manifest.tar",
        Refused("manifest.json is `null`"),
    ),
    // `RepoTags: ["test_image_2"]`: docker load says "invalid tag".
    case(
        "docker-archive:artifacts/ggcr__test_bundle.tar",
        Refused("which is not name:tag"),
    ),
    // Docker 25 archive of an untagged image: index.json lists nothing.
    case(
        "oci-archive:artifacts/ggcr__hello-world-v25.tar",
        Refused("it holds no images"),
    ),
    // OCI layouts.
    case("oci:layouts/ggcr__test_index_one_image", STORED),
    case("oci:layouts/imgutil__busybox", ARCHIVED),
    // The descriptor says OCI, the manifest Docker: its own type wins (item 3).
    case("oci:layouts/ggcr__test_index:1", STORED),
    case("oci:layouts/ggcr__test_index:3", ARCHIVED),
    case(
        "oci:layouts/ggcr__test_index:4",
        CopiesUnlikeSkopeo {
            because: "a Docker manifest list in index.json: go-containerregistry and containerd \
                      read it, skopeo 1.9 looks up OCI media types only",
        },
    ),
    case(
        "oci:layouts/ggcr__test_index:2",
        Refused("neither an image manifest nor an index"),
    ),
    case("oci:layouts/ggcr__test_index", Refused("it holds 3 images")),
    case(
        "oci:layouts/ggcr__test_index_media_type",
        NotAnImage("an artifact (its config is `application/vnd.cncf.helm.config.v1+json`)"),
    ),
    case(
        "oci:layouts/imgutil__busybox-sparse",
        CopyRefused("is missing"),
    ),
    case(
        "oci:layouts/imgutil__index-with-docker-media-type",
        Refused("cannot open blob"),
    ),
    // regclient: one tag among artifacts, referrers and attestations (item 2).
    case("oci:layouts/regclient__testrepo:v1", ARCHIVED),
    case("oci:layouts/regclient__testrepo:v2", ARCHIVED),
    case("oci:layouts/regclient__testrepo:v3", ARCHIVED),
    case("oci:layouts/regclient__testrepo:b1", ARCHIVED),
    case(
        "oci:layouts/regclient__testrepo",
        Refused("name one (`:REF` or `:@N`)"),
    ),
    case(
        "oci:layouts/regclient__testrepo:a1",
        NotAnImage("an artifact (artifactType `application/example.sbom`)"),
    ),
    case(
        "oci:layouts/regclient__testrepo:a-docker",
        NotAnImage("layer 0 is `application/vnd.example.build-type+json`"),
    ),
];

/// The transport string with the real-data path made absolute.
fn transport(source: &str) -> String {
    let (name, rest) = source.split_once(':').expect("a transport");
    format!("{name}:{}", real(rest))
}

/// The archive file of a `docker-archive:`/`oci-archive:` source.
fn archive_file(source: &str) -> Option<String> {
    let (name, rest) = source.split_once(':')?;
    if name == "oci" {
        return None;
    }
    let path = rest.split(':').next()?;
    Some(real(path))
}

fn skopeo(args: &[&str]) -> Run {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    peer("skopeo", &args)
}

/// What skopeo reads: the config bytes and its manifest, or its error.
struct SkopeoView {
    config: Result<Vec<u8>, String>,
    manifest: Option<Value>,
    manifest_bytes: Vec<u8>,
}

fn skopeo_view(source: &str) -> SkopeoView {
    let config = skopeo(&["inspect", "--raw", "--config", source]);
    let manifest = skopeo(&["inspect", "--raw", source]);
    SkopeoView {
        config: if config.success() {
            Ok(config.stdout)
        } else {
            Err(config.stderr)
        },
        manifest: serde_json::from_slice(&manifest.stdout).ok(),
        manifest_bytes: manifest.stdout,
    }
}

/// The layer digests a manifest lists.
fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .map(|ls| ls.iter().map(|l| jstr(l, "digest").to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn real_world_images_load_copy_and_list_as_skopeo_and_docker_read_them() {
    let mut failures = Vec::new();
    for case in CASES {
        let result = std::panic::catch_unwind(|| check_case(case));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.source));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} real-world sources went wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

fn check_case(case: &Case) {
    let source = transport(case.source);
    let peer = skopeo_view(&source);
    let st = Store::new();
    let out = st.path("out");
    let dest = format!("oci:{}:x", out.display());
    match case.expect {
        Refused(why) | NotAnImage(why) => {
            if let Refused(_) = case.expect {
                assert!(
                    peer.config.is_err(),
                    "skopeo reads {source}, so Strata must too"
                );
            }
            let e = st.run(&["inspect", &source]);
            e.assert_strata_error();
            assert!(e.stderr.contains(why), "inspect: {}", e.stderr);
            let e = st.run(&["copy", &source, &dest]);
            e.assert_strata_error();
            assert!(e.stderr.contains(why), "copy: {}", e.stderr);
            assert!(
                !out.join("index.json").exists(),
                "a refused copy wrote {}",
                out.display()
            );
            // A refused archive leaves the store empty (load takes every image or none).
            if let (Some(file), true) = (
                archive_file(case.source),
                source.starts_with("docker-archive:"),
            ) {
                let e = st.run(&["load", "-i", &file]);
                e.assert_strata_error();
                assert!(e.stderr.contains(why), "load: {}", e.stderr);
                assert_eq!(st.image_ids(), Vec::<String>::new());
            }
        }
        CopyRefused(why) => {
            let peer_copy = skopeo(&[
                "copy",
                &source,
                &format!("oci:{}:x", st.path("peer").display()),
            ]);
            assert!(
                !peer_copy.success(),
                "skopeo copies {source}, so Strata must too"
            );
            let shown = st.json(&["inspect", &source]);
            assert_eq!(
                jstr(&shown, "id"),
                facts_of_config(peer.config.as_ref().expect("skopeo reads the config")).id
            );
            let e = st.run(&["copy", &source, &dest]);
            e.assert_strata_error();
            assert!(e.stderr.contains(why), "copy: {}", e.stderr);
        }
        Copies { .. } | CopiesUnlikeSkopeo { .. } => {
            let config = st.ok(&["inspect", "--config", &source]).stdout;
            let facts = facts_of_config(&config);
            let shown = st.json(&["inspect", &source]);
            assert_eq!(jstr(&shown, "id"), facts.id);
            let diff_ids: Vec<String> = shown["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| jstr(l, "diff_id").to_string())
                .collect();
            assert_eq!(diff_ids, facts.diff_ids);
            match (&case.expect, &peer.config) {
                (Copies { same_manifest }, Ok(peer_config)) => {
                    assert_eq!(
                        &config, peer_config,
                        "Strata and skopeo read different configs"
                    );
                    let peer_manifest = peer.manifest.as_ref().expect("skopeo's manifest");
                    if source.starts_with("docker-archive:") {
                        // skopeo describes each archived layer by its diffID.
                        assert_eq!(layer_digests(peer_manifest), facts.diff_ids);
                    }
                    if *same_manifest {
                        let raw = st.ok(&["inspect", "--raw", &source]).stdout;
                        assert_eq!(raw, peer.manifest_bytes, "the stored manifest");
                        assert_eq!(
                            jstr(&shown["manifest"], "digest"),
                            sha256_reader(&raw[..]).0
                        );
                    }
                }
                (Copies { .. }, Err(e)) => panic!("skopeo cannot read {source}: {e}"),
                (CopiesUnlikeSkopeo { because }, peer_config) => {
                    assert!(peer_config.is_err(), "skopeo reads it now ({because})");
                }
                (Refused(_) | CopyRefused(_) | NotAnImage(_), _) => unreachable!(),
            }
            // Copied to a layout that skopeo reads back as the same image, every blob
            // checked against its digest and every layer against its diffID.
            st.ok(&["copy", &source, &dest]);
            check_layout_blobs(&out);
            let back = skopeo(&["inspect", "--raw", "--config", &dest]);
            back.assert_success();
            assert_eq!(back.stdout, config, "skopeo reads Strata's copy");
            // Loaded into a store (archives): listed with the same ID.
            if let Some(file) = archive_file(case.source) {
                st.ok(&["load", "-i", &file]);
                assert!(
                    st.image_ids().contains(&facts.id),
                    "{} not in {:?}",
                    facts.id,
                    st.image_ids()
                );
                let Facts { id, diff_ids } = facts;
                let stored = st.json(&["inspect", &id]);
                let stored_diffs: Vec<&str> = stored["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| jstr(l, "diff_id"))
                    .collect();
                assert_eq!(stored_diffs, diff_ids);
            }
        }
    }
}

/// jib names the fields of manifest.json in lower case; Docker, containerd and skopeo
/// read them (Go matches JSON keys case-insensitively), so Strata does (issue 10, item 1).
#[test]
fn jib_archives_load_with_their_names() {
    let st = Store::new();
    st.ok(&["load", "-i", &real("artifacts/jib__jib-image.tar")]);
    let images = st.json(&["images"]);
    assert_eq!(
        images[0]["names"],
        serde_json::json!(["docker.io/library/extraction.test:latest"])
    );
    // The same image as Docker saved it (jib's test data has both).
    st.ok(&["load", "-i", &real("artifacts/jib__docker-save.tar")]);
    assert_eq!(st.image_ids().len(), 1);
}

/// A manifest.json error says its reason once, not once per cause.
#[test]
fn a_json_error_is_said_once() {
    let st = Store::new();
    let dir = st.path("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), br#"[{"Layers":[]}]"#).unwrap();
    let tar = st.path("bad.tar");
    let made = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .arg("manifest.json")
        .status()
        .unwrap();
    assert!(made.success());
    let e = st.run(&["load", "-i", &tar.display().to_string()]);
    e.assert_strata_error();
    assert_eq!(
        e.stderr.matches("missing field `Config`").count(),
        1,
        "{}",
        e.stderr
    );
}

/// One tag of a layout full of artifacts, signatures and attestations copies alone;
/// `--all` copies every image and says which entries it passed over and why (item 2).
#[test]
fn copy_all_passes_over_what_is_not_an_image_and_says_why() {
    let st = Store::new();
    let out = st.path("all");
    let report = st.json(&[
        "copy",
        "--all",
        &transport("oci:layouts/regclient__testrepo"),
        &format!("oci:{}", out.display()),
    ]);
    let copied = report["images"].as_array().unwrap().len();
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(copied + skipped.len(), 26, "{report}");
    assert_eq!(copied, 7, "b1 b2 b3 v1 v2 v3 and the tag-less v3 alias");
    let reason = |tag: &str| {
        skipped
            .iter()
            .find(|s| s["ref_name"] == tag)
            .map(|s| jstr(s, "reason").to_string())
            .unwrap_or_else(|| panic!("`{tag}` is not among the skipped: {report}"))
    };
    assert!(reason("a1").contains("an artifact (artifactType `application/example.sbom`)"));
    assert!(reason("a-docker").contains("application/vnd.example.build-type+json"));
    assert!(reason("ai").contains("an index of artifacts"));
    check_layout_blobs(&out);
    // In text, each passed-over entry is a note.
    let text = st.ok(&[
        "copy",
        "--all",
        &transport("oci:layouts/regclient__testrepo"),
        &format!("oci:{}", st.path("all2").display()),
    ]);
    assert_eq!(
        text.stderr.matches("strata: note: skipped @").count(),
        skipped.len(),
        "{}",
        text.stderr
    );
}

/// The manifest's own media type wins over its descriptor's, with a warning under -v
/// only (item 3).
#[test]
fn a_manifest_of_another_type_than_its_descriptor_is_read_as_itself() {
    let st = Store::new();
    let source = transport("oci:layouts/ggcr__test_index:1");
    let quiet = st.ok(&["inspect", &source]);
    assert_eq!(quiet.stderr, "");
    let shown = quiet.json();
    assert_eq!(
        shown["manifest"]["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let loud = st.ok(&["-v", "inspect", &source]);
    assert!(
        loud.stderr
            .contains("says it is `application/vnd.docker.distribution.manifest.v2+json` but is listed as `application/vnd.oci.image.manifest.v1+json`"),
        "{}",
        loud.stderr
    );
}

/// `strata history IMG | head`: the reader goes away, and strata ends quietly with the
/// status of a process killed by SIGPIPE (item 11).
#[test]
fn a_closed_stdout_ends_quietly() {
    let st = Store::new();
    st.ok(&["load", "-i", &real("artifacts/dive__test-docker-image.tar")]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for args in [
        &["history", "dive-test"][..],
        &["images"],
        &["inspect", "dive-test"],
    ] {
        let mut cmd = st.cmd(args);
        cmd.stdout(Stdio::from(OwnedFd::from(writer.try_clone().unwrap())))
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(141), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

/// A load says where the images went in words (not `strata::`), and an image loaded from
/// an OCI-form archive keeps its manifest, whether its layers are compressed (`ctr
/// export`) or not (Docker 25+) (item 12).
#[test]
fn load_names_the_store_and_keeps_oci_manifests() {
    let st = Store::new();
    let run = st.ok(&["load", "-i", &real("artifacts/oras__hello-world.tar")]);
    let text = run.stdout_text();
    assert!(
        text.starts_with(
            "copied sha256:feb5d9fea6a5e9606aa995e879d862b825965ba48de054caab5ef356dc6b3412 \
             (docker.io/library/hello-world:latest) to the store: 1 layer (0 already there)"
        ),
        "{text}"
    );
    let kept = st.json(&["inspect", "hello-world"]);
    assert_eq!(
        kept["manifest"]["digest"],
        "sha256:f54a58bc1aac5ea1a25d796ae155dc228b3f0e11d046ae276b39c4bf2f13d8c4"
    );
    // Saved as Docker 25+ does (an OCI manifest over plain tars), loaded elsewhere.
    let archive = st.path("hello.tar");
    st.ok(&["save", "hello-world", "-o", &archive.display().to_string()]);
    let saved = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", archive.display()),
    ]);
    saved.assert_success();
    let other = Store::new();
    other.ok(&["load", "-i", &archive.display().to_string()]);
    let loaded = other.json(&["inspect", "hello-world"]);
    assert_eq!(
        jstr(&loaded["manifest"], "digest"),
        sha256_reader(&saved.stdout[..]).0,
        "{loaded}"
    );
}

/// `inspect` reads transports as skopeo does (item 10): the config as stored, the stored
/// manifest, or for a `docker save` archive, which stores none, a Docker schema 2 one.
#[test]
fn inspect_reads_transports() {
    let st = Store::new();
    let source = transport("docker-archive:artifacts/jib__docker-save.tar");
    let raw = st.ok(&["inspect", "--raw", &source]).json();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["config"]["digest"],
        "sha256:066872f17ae819f846a6d5abcfc3165abe13fb0a157640fa8cb7af81077670c0"
    );
    let shown = st.json(&["inspect", &source]);
    assert_eq!(shown["manifest"]["stored"], false);
    let e = st.run(&["inspect", &transport("oci:layouts/regclient__testrepo:a1")]);
    e.assert_strata_error();
    assert!(
        e.stderr.contains("Strata copies images only"),
        "{}",
        e.stderr
    );
}
