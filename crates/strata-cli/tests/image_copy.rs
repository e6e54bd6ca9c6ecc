//! `strata copy` between the file transports, checked by the real peers: every pair of
//! transports keeps the image ID (sha256 of the config bytes) and the diffIDs, as
//! `skopeo inspect --raw --config` reads them back; Strata's docker-archives load in
//! skopeo and podman, its OCI layouts unpack with umoci to the corpus's expected tree;
//! Strata reads what skopeo, podman (both formats, multi-image) and umoci write and
//! re-writes it with the same IDs; and writing the same image twice gives the same bytes.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::images::*;
use common::*;
use serde_json::Value;

fn copy(args: &[&str]) -> Value {
    let mut all = vec!["copy"];
    all.extend_from_slice(args);
    strata_json(all)
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The transports the corpus offers as sources, with the image each one names.
fn corpus_sources() -> Vec<(String, &'static str)> {
    let c = corpus();
    vec![
        (format!("oci:{}:corpus", p(&c.join("oci"))), "corpus"),
        (format!("oci:{}:base", p(&c.join("oci"))), "base"),
        (
            format!("docker-archive:{}", p(&c.join("corpus.docker-archive.tar"))),
            "corpus",
        ),
        (
            format!("oci-archive:{}", p(&c.join("base.oci-archive.tar"))),
            "base",
        ),
        (
            format!(
                "docker-archive:{}:@0",
                p(&c.join("multi.podman-docker-archive.tar"))
            ),
            "corpus",
        ),
        (
            format!(
                "docker-archive:{}:localhost/strata/base:1",
                p(&c.join("multi.podman-docker-archive.tar"))
            ),
            "base",
        ),
        (format!("oci:{}:base", p(&c.join("oci-zstd"))), "zstd"),
    ]
}

#[test]
fn copies_between_every_pair_of_file_transports_keep_ids_and_diff_ids() {
    let work = tempdir();
    let zstd = skopeo_facts(&format!("oci:{}:base", p(&corpus().join("oci-zstd"))));
    for (i, (source, which)) in corpus_sources().iter().enumerate() {
        let want = match *which {
            "zstd" => zstd.clone(),
            tag => corpus_facts(tag),
        };
        assert_eq!(skopeo_facts(source), want, "{source} as skopeo reads it");
        let d = work.path().join(format!("s{i}"));
        fs::create_dir(&d).unwrap();
        let dests = [
            (
                vec![],
                format!("docker-archive:{}:strata/out:{i}", p(&d.join("da.tar"))),
            ),
            (
                vec!["--format", "docker-legacy"],
                format!(
                    "docker-archive:{}:strata/legacy:{i}",
                    p(&d.join("legacy.tar"))
                ),
            ),
            (vec![], format!("oci:{}:out", p(&d.join("oci")))),
            (
                vec!["--compress", "gzip"],
                format!("oci:{}:gz", p(&d.join("oci"))),
            ),
            (vec![], format!("oci-archive:{}:out", p(&d.join("oci.tar")))),
            (
                vec!["--compress", "zstd"],
                format!("oci-archive:{}", p(&d.join("zstd.tar"))),
            ),
        ];
        for (flags, dest) in &dests {
            let mut args: Vec<&str> = flags.clone();
            args.push(source);
            args.push(dest);
            let report = copy(&args);
            assert_eq!(
                jstr(&report["images"][0], "id"),
                want.id,
                "{source} -> {dest}: report"
            );
            assert_eq!(
                skopeo_facts(dest),
                want,
                "{source} -> {dest}, read back by skopeo"
            );
            // And once more, from what was written, to a docker-archive.
            let again = format!("docker-archive:{}", p(&d.join("again.tar")));
            copy(&[dest, &again]);
            assert_eq!(
                skopeo_facts(&again),
                want,
                "{source} -> {dest} -> docker-archive"
            );
        }
        check_layout_blobs(&d.join("oci"));
        // Compressed blobs were kept as they came; uncompressed ones stayed so.
        let layout: Value =
            serde_json::from_slice(&fs::read(d.join("oci/index.json")).unwrap()).unwrap();
        assert_eq!(
            layout["manifests"].as_array().unwrap().len(),
            2,
            "tags out and gz in {}",
            d.display()
        );
    }
}

#[test]
fn compressed_layers_are_kept_byte_for_byte_and_the_manifest_digest_survives() {
    let work = tempdir();
    let src = corpus().join("oci");
    let dest = work.path().join("oci");
    copy(&[
        &format!("oci:{}:corpus", p(&src)),
        &format!("oci:{}:corpus", p(&dest)),
    ]);
    let digest_of = |dir: &Path| -> String {
        let index: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "corpus")
            .map(|m| jstr(m, "digest").to_owned())
            .unwrap()
    };
    assert_eq!(
        digest_of(&dest),
        digest_of(&src),
        "the manifest is kept as it was"
    );
    for layer in oci_layers("corpus") {
        let copied = dest.join("blobs/sha256").join(&layer.digest[7..]);
        assert_eq!(
            fs::read(&copied).unwrap(),
            fs::read(&layer.path).unwrap(),
            "{}",
            layer.digest
        );
    }
    // A second copy into the same layout finds every layer there and reads none.
    let report = copy(&[
        &format!("oci:{}:corpus", p(&src)),
        &format!("oci:{}:again", p(&dest)),
    ]);
    let layers = report["images"][0]["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["reused"] == true), "{report}");
}

#[test]
fn docker_archives_load_in_skopeo_and_podman_with_the_same_config_and_diff_ids() {
    let work = tempdir();
    let want = corpus_facts("corpus");
    let src = format!("oci:{}:corpus", p(&corpus().join("oci")));
    // skopeo's own conversion of the corpus archive, to compare with.
    let reference = work.path().join("reference-oci");
    let r = peer(
        "skopeo",
        &[
            "copy".into(),
            "-q".into(),
            format!(
                "docker-archive:{}",
                p(&corpus().join("corpus.docker-archive.tar"))
            )
            .into(),
            format!("oci:{}:x", p(&reference)).into(),
        ],
    );
    r.assert_success();
    let converted = skopeo_facts(&format!("oci:{}:x", p(&reference)));
    let podman = Podman::new();
    for (format, name) in [
        ("docker", "strata/corpus:1"),
        ("docker-legacy", "strata/legacy:1"),
    ] {
        let archive = work.path().join(format!("{format}.tar"));
        copy(&[
            "--format",
            format,
            &src,
            &format!("docker-archive:{}:{name}", p(&archive)),
        ]);
        let da = format!("docker-archive:{}", p(&archive));

        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", &da]);
        let inspect = run_with_timeout(cmd, Duration::from_secs(60));
        inspect.assert_success();
        let layers: Vec<String> = inspect.json()["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(layers, want.diff_ids, "skopeo inspect {da}: layers");
        assert_eq!(skopeo_facts(&da), want, "skopeo inspect --config {da}");

        let oci = work.path().join(format!("{format}-oci"));
        let r = peer(
            "skopeo",
            &[
                "copy".into(),
                "-q".into(),
                da.clone().into(),
                format!("oci:{}:x", p(&oci)).into(),
            ],
        );
        r.assert_success();
        assert_eq!(
            skopeo_facts(&format!("oci:{}:x", p(&oci))),
            converted,
            "skopeo copy {da} oci: converts the config as it converts its own archive's"
        );
        assert_eq!(converted.diff_ids, want.diff_ids);

        let out = podman.run(&["load", "-i", &p(&archive)]);
        let text = out.stdout_text();
        let loaded = text
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| panic!("podman load {}: {text}", archive.display()));
        assert!(
            loaded.ends_with(name),
            "podman load {} named it {loaded}",
            archive.display()
        );
        let ids = podman.inspect(loaded);
        assert_eq!(ids, want, "podman load of the {format} archive");
    }
}

#[test]
fn oci_layouts_unpack_with_umoci_to_the_expected_tree() {
    let work = tempdir();
    let expected = fs::read_to_string(corpus().join("expected/corpus.rootfs.tsv")).unwrap();
    let src = format!(
        "docker-archive:{}",
        p(&corpus().join("corpus.docker-archive.tar"))
    );
    for compress in ["none", "gzip"] {
        let layout = work.path().join(format!("oci-{compress}"));
        copy(&[
            "--compress",
            compress,
            &src,
            &format!("oci:{}:t", p(&layout)),
        ]);
        let bundle = work.path().join(format!("bundle-{compress}"));
        let r = peer(
            "umoci",
            &[
                "unpack".into(),
                "--image".into(),
                format!("{}:t", p(&layout)).into(),
                bundle.clone().into(),
            ],
        );
        r.assert_success();
        let actual = tree_listing(&bundle.join("rootfs"), &[]);
        assert_listing_eq(
            &expected,
            &actual,
            &format!("umoci unpack of strata's oci layout (--compress {compress})"),
        );
    }
}

#[test]
fn reads_what_podman_saves_and_rewrites_the_same_ids() {
    let work = tempdir();
    let podman = Podman::new();
    podman.run(&[
        "load",
        "-q",
        "-i",
        &p(&corpus().join("corpus.docker-archive.tar")),
    ]);
    let base_id = podman.run(&[
        "load",
        "-q",
        "-i",
        &p(&corpus().join("base.oci-archive.tar")),
    ]);
    let base_id = base_id.stdout_text();
    let base_id = base_id.trim().rsplit(' ').next().unwrap().to_owned();
    podman.run(&["tag", &base_id, "strata/base:1"]);
    let saved = |name: &str, args: &[&str]| -> PathBuf {
        let out = work.path().join(name);
        let mut all = vec!["save", "-q", "-o", out.to_str().unwrap()];
        all.extend_from_slice(args);
        podman.run(&all);
        out
    };
    let docker = saved(
        "podman-docker.tar",
        &["--format", "docker-archive", "docker.io/strata/corpus:1"],
    );
    let oci = saved(
        "podman-oci.tar",
        &["--format", "oci-archive", "docker.io/strata/corpus:1"],
    );
    let multi = saved(
        "podman-multi.tar",
        &[
            "-m",
            "--format",
            "docker-archive",
            "docker.io/strata/corpus:1",
            "localhost/strata/base:1",
        ],
    );

    for source in [
        format!("docker-archive:{}", p(&docker)),
        format!("oci-archive:{}", p(&oci)),
    ] {
        let want = skopeo_facts(&source);
        assert_eq!(want.diff_ids, corpus_facts("corpus").diff_ids);
        for (i, dest) in [
            format!("docker-archive:{}", p(&work.path().join("re.tar"))),
            format!("oci:{}:re", p(&work.path().join("re-oci"))),
            format!("oci-archive:{}", p(&work.path().join("re-oci.tar"))),
        ]
        .iter()
        .enumerate()
        {
            let report = copy(&[&source, dest]);
            assert_eq!(
                jstr(&report["images"][0], "id"),
                want.id,
                "{source} -> {dest} ({i})"
            );
            assert_eq!(skopeo_facts(dest), want, "{source} -> {dest}");
        }
    }

    // The multi-image archive: every image, the shared base layer written once.
    let all = work.path().join("multi-copy.tar");
    let report = copy(&[
        "--all",
        &format!("docker-archive:{}", p(&multi)),
        &format!("docker-archive:{}", p(&all)),
    ]);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[1]["layers"][0]["reused"], true,
        "the base layer is shared: {report}"
    );
    for (name, tag) in [
        ("docker.io/strata/corpus:1", "corpus"),
        ("localhost/strata/base:1", "base"),
    ] {
        let want = corpus_facts(tag);
        assert_eq!(
            skopeo_facts(&format!("docker-archive:{}:{name}", p(&all))),
            want,
            "{name}"
        );
    }
    let manifest = sh(&format!("tar -xOf {} manifest.json", p(&all)));
    assert!(
        manifest.contains(r#""RepoTags":["localhost/strata/base:1"]"#),
        "{manifest}"
    );
    assert!(
        manifest.contains(r#""RepoTags":["strata/corpus:1"]"#),
        "{manifest}"
    );
    let fresh = Podman::new();
    fresh.run(&["load", "-i", &p(&all)]);
    for (name, tag) in [("strata/base:1", "base"), ("strata/corpus:1", "corpus")] {
        let want = corpus_facts(tag);
        assert_eq!(
            fresh.inspect(&want.id),
            want,
            "podman load of the multi-image archive: {name}"
        );
        let names = fresh
            .run(&[
                "image",
                "inspect",
                "--format",
                "{{json .RepoTags}}",
                &want.id,
            ])
            .stdout_text();
        assert!(names.contains(name), "{name} in {names}");
    }
}

#[test]
fn reads_what_skopeo_writes_and_what_it_reads_back_matches() {
    let work = tempdir();
    let src = format!("oci:{}:corpus", p(&corpus().join("oci")));
    // skopeo writes each file transport; Strata copies each to the others.
    let sk_da = format!(
        "docker-archive:{}:strata/corpus:1",
        p(&work.path().join("sk.tar"))
    );
    let sk_oa = format!("oci-archive:{}:c", p(&work.path().join("sk-oci.tar")));
    for dest in [&sk_da, &sk_oa] {
        let r = peer(
            "skopeo",
            &["copy".into(), "-q".into(), src.clone().into(), dest.into()],
        );
        r.assert_success();
    }
    let want = corpus_facts("corpus");
    for source in [&sk_da, &sk_oa] {
        let out = format!("oci:{}:x", p(&work.path().join("from-skopeo")));
        copy(&[source, &out]);
        assert_eq!(skopeo_facts(&out), want, "{source} -> {out}");
    }
    check_layout_blobs(&work.path().join("from-skopeo"));
}

#[test]
fn writing_the_same_images_twice_gives_identical_bytes() {
    let work = tempdir();
    let multi = format!(
        "docker-archive:{}",
        p(&corpus().join("multi.podman-docker-archive.tar"))
    );
    for (flags, name) in [
        (vec!["--all"], "docker.tar"),
        (vec!["--all", "--format", "docker-legacy"], "legacy.tar"),
        (vec!["--all", "--compress", "gzip"], "oci.tar"),
    ] {
        let transport = if name == "oci.tar" {
            "oci-archive"
        } else {
            "docker-archive"
        };
        let mut outputs = Vec::new();
        for run in 0..2 {
            let out = work.path().join(format!("{run}-{name}"));
            let mut args = flags.clone();
            let dest = format!("{transport}:{}", p(&out));
            args.push(&multi);
            args.push(&dest);
            copy(&args);
            outputs.push(fs::read(&out).unwrap());
            // Through a pipe, the members whose size is learnt on the way are spooled:
            // the bytes must not change.
            if run == 1 && transport == "oci-archive" {
                let piped = sh(&format!(
                    "{} copy --all --compress gzip {multi} oci-archive:/dev/stdout | sha256sum | cut -d' ' -f1",
                    env!("CARGO_BIN_EXE_strata")
                ));
                assert_eq!(
                    format!("sha256:{}", piped.trim()),
                    sha256_file(&out),
                    "{name} written to a pipe"
                );
            }
        }
        assert!(outputs[0] == outputs[1], "{name}: two copies differ");
    }
    // Two layouts written from the same source hold the same files.
    for run in 0..2 {
        let second = format!("{multi}:@1");
        copy(&[
            &second,
            &format!("oci:{}:b", p(&work.path().join(format!("layout{run}")))),
        ]);
    }
    assert_eq!(
        tree_listing(&work.path().join("layout0"), &["--no-mtime"]),
        tree_listing(&work.path().join("layout1"), &["--no-mtime"])
    );
}

#[test]
fn piped_and_compressed_archives_are_read() {
    let work = tempdir();
    let archive = corpus().join("corpus.docker-archive.tar");
    let want = corpus_facts("corpus");
    let gz = work.path().join("corpus.tar.gz");
    sh(&format!("gzip -c {} > {}", p(&archive), p(&gz)));
    let out = work.path().join("from-gz.tar");
    copy(&[
        &format!("docker-archive:{}", p(&gz)),
        &format!("docker-archive:{}", p(&out)),
    ]);
    assert_eq!(skopeo_facts(&format!("docker-archive:{}", p(&out))), want);
    let piped = work.path().join("from-pipe");
    sh(&format!(
        "zstd -q -c {} | {} copy --tmpdir {} docker-archive:/dev/stdin oci:{}:p",
        p(&archive),
        env!("CARGO_BIN_EXE_strata"),
        p(work.path()),
        p(&piped)
    ));
    assert_eq!(skopeo_facts(&format!("oci:{}:p", p(&piped))), want);
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".strata-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "spool files left behind: {leftovers:?}"
    );
}
