//! `strata copy` to and from registries (`docker://`), against Debian's `docker-registry`
//! started on loopback by each test, checked by the real peers: what Strata pushes,
//! skopeo pulls with the same digests and umoci unpacks to the corpus's expected tree;
//! what skopeo pushes, Strata pulls with the same image ID and diffIDs. Then what the
//! registry's access log proves (a second push sends no blob, a copy within the registry
//! mounts), Basic and bearer-token auth, dropped connections, a corrupted blob in the
//! registry, a source that fails verification, and a manifest list with two platforms.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::images::*;
use common::registry::*;
use common::*;
use serde_json::{json, Value};
use strata_registry::{Client, ManifestKind, Options, Reference, RepositoryName};
use strata_registry_testkit::proxy::{Action, Proxy};
use strata_registry_testkit::token::{Policy, TokenServer};
use strata_registry_testkit::{Auth, Registry, RegistryConfig};

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn corpus_oci(tag: &str) -> String {
    format!("oci:{}:{tag}", p(&corpus().join("oci")))
}

/// The descriptor of tag `tag` in the corpus layout's `index.json`.
fn corpus_descriptor(tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(corpus().join("oci/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no tag {tag} in the corpus layout"))
}

/// The descriptor of the only image of a layout skopeo wrote.
fn only_descriptor(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    manifests[0].clone()
}

#[test]
fn what_strata_pushes_skopeo_pulls_with_the_same_digests_and_umoci_unpacks_to_the_expected_tree() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let dest = docker(reg.port, "strata/corpus:1");
    let report = env.copy(&[&corpus_oci("corpus"), &dest]);
    assert_eq!(jstr(&report["images"][0], "id"), corpus_facts("corpus").id);

    // The manifest was pushed byte for byte, so its digest is the layout's.
    let want = corpus_descriptor("corpus");
    assert_eq!(remote_manifest_digest(&dest), jstr(&want, "digest"));

    let pulled = work.path().join("skopeo-oci");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:c", p(&pulled)),
    ]);
    assert_eq!(
        jstr(&only_descriptor(&pulled), "digest"),
        jstr(&want, "digest")
    );
    for layer in oci_layers("corpus") {
        let copy = pulled.join("blobs/sha256").join(&layer.digest[7..]);
        assert_eq!(
            sha256_file(&copy),
            layer.digest,
            "layer blob as skopeo pulled it"
        );
    }
    check_layout_blobs(&pulled);

    let bundle = work.path().join("bundle");
    let r = peer(
        "umoci",
        &[
            "unpack".into(),
            "--image".into(),
            format!("{}:c", p(&pulled)).into(),
            bundle.clone().into(),
        ],
    );
    r.assert_success();
    let expected = fs::read_to_string(corpus().join("expected/corpus.rootfs.tsv")).unwrap();
    assert_listing_eq(
        &expected,
        &tree_listing(&bundle.join("rootfs"), &[]),
        "umoci unpack of what skopeo pulled from what strata pushed",
    );
}

#[test]
fn what_skopeo_pushes_strata_pulls_to_oci_and_docker_archive_with_the_same_ids() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let want = corpus_facts("corpus");
    // skopeo's own push (OCI manifest, as the layout has) and a Docker schema 2 one.
    for (format, repo) in [("oci", "strata/sk-oci:1"), ("v2s2", "strata/sk-v2s2:1")] {
        let src = docker(reg.port, repo);
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--format",
            format,
            &corpus_oci("corpus"),
            &src,
        ]);
        let oci = work.path().join(format!("{format}-oci"));
        let report = env.copy(&[&src, &format!("oci:{}:c", p(&oci))]);
        assert_eq!(jstr(&report["images"][0], "id"), want.id, "{src}");
        assert_eq!(
            skopeo_facts(&format!("oci:{}:c", p(&oci))),
            want,
            "{src} -> oci"
        );
        check_layout_blobs(&oci);

        let archive = work.path().join(format!("{format}.tar"));
        env.copy(&[
            &src,
            &format!("docker-archive:{}:strata/corpus:1", p(&archive)),
        ]);
        assert_eq!(
            skopeo_facts(&format!("docker-archive:{}", p(&archive))),
            want,
            "{src} -> docker-archive"
        );
    }
    let raw = remote_manifest(&docker(reg.port, "strata/sk-v2s2:1"));
    assert_eq!(
        raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "skopeo --format v2s2 pushed {raw}"
    );
}

#[test]
fn a_second_push_sends_no_blob_and_a_copy_within_the_registry_mounts_every_blob() {
    let reg = Registry::start();
    let env = Env::new();
    let dest = docker(reg.port, "strata/corpus:1");
    env.copy(&[&corpus_oci("corpus"), &dest]);
    // The first push asks for each blob once: the upload of a blob found missing does
    // not ask again.
    let heads: Vec<String> = reg
        .access_lines("\"HEAD /v2/strata/corpus/blobs/")
        .into_iter()
        .collect();
    let mut asked: Vec<&str> = heads
        .iter()
        .filter_map(|l| l.split("/blobs/").nth(1)?.split(' ').next())
        .collect();
    let count = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(
        (count, asked.len()),
        (6, 6),
        "one HEAD per blob: {heads:#?}"
    );
    let before = reg.access_lines("").len();
    let again = env.copy(&[&corpus_oci("corpus"), &dest]);
    let lines = log_since(&reg, before);
    let layers = again["images"][0]["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["reused"] == true), "{again}");
    assert!(
        uploads(&lines).is_empty(),
        "the second push uploaded: {lines:#?}"
    );
    let puts: Vec<_> = lines.iter().filter(|l| l.contains("\"PUT ")).collect();
    assert_eq!(puts.len(), 1, "only the manifest is put again: {lines:#?}");
    assert!(puts[0].contains("/manifests/1 "), "{puts:?}");

    // Layers compressed on the way (a docker-archive holds plain tars) compress to the
    // same blobs again, which the registry then has.
    let archive = format!(
        "docker-archive:{}",
        p(&corpus().join("corpus.docker-archive.tar"))
    );
    let gz = docker(reg.port, "strata/from-archive:1");
    let first = env.copy(&[&archive, &gz]);
    let before = reg.access_lines("").len();
    let second = env.copy(&[&archive, &gz]);
    let lines = log_since(&reg, before);
    assert_eq!(layer_digests(&first), layer_digests(&second));
    assert!(
        uploads(&lines).is_empty(),
        "the second push uploaded: {lines:#?}"
    );

    // docker:// to another repository of the same registry: every blob is mounted, no
    // layer is even downloaded, and the manifest is the same bytes.
    let before = reg.access_lines("").len();
    let copied = docker(reg.port, "strata/copy:1");
    env.copy(&[&dest, &copied]);
    let lines = log_since(&reg, before);
    assert_mounted_only(&lines, "strata/corpus", 6);
    let layer_gets = lines
        .iter()
        .filter(|l| l.contains("\"GET /v2/strata/corpus/blobs/"))
        .count();
    assert_eq!(layer_gets, 1, "only the config is read: {lines:#?}");
    assert_eq!(
        remote_manifest_digest(&copied),
        remote_manifest_digest(&dest)
    );
}

#[test]
fn uncompressed_layers_are_pushed_as_gzip_by_default_or_zstd_and_read_back_by_skopeo() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let want = corpus_facts("corpus");
    let archive = format!(
        "docker-archive:{}",
        p(&corpus().join("corpus.docker-archive.tar"))
    );
    for (flags, repo, media_type) in [
        (
            vec![],
            "strata/gz:1",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            vec!["--compress", "zstd"],
            "strata/zstd:1",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let dest = docker(reg.port, repo);
        let mut args = flags.clone();
        args.extend([archive.as_str(), dest.as_str()]);
        env.copy(&args);
        let raw = remote_manifest(&dest);
        assert_eq!(
            raw["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        for l in raw["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], media_type, "{dest}: {raw}");
        }
        assert_eq!(skopeo_facts(&dest), want, "{dest}");
        let back = work.path().join(repo.replace(['/', ':'], "-"));
        skopeo(&[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &dest,
            &format!("oci:{}:x", p(&back)),
        ]);
        check_layout_blobs(&back);
    }
}

#[test]
fn copies_between_two_registries_keep_the_manifest() {
    let (one, two) = (Registry::start(), Registry::start());
    let env = Env::new();
    let src = docker(one.port, "strata/corpus:1");
    env.copy(&[&corpus_oci("corpus"), &src]);
    let dest = docker(two.port, "other/corpus:7");
    env.copy(&[
        "--jobs",
        "3",
        "--src-tls-verify=false",
        "--dest-tls-verify=true",
        &src,
        &dest,
    ]);
    assert_eq!(
        remote_manifest_digest(&dest),
        jstr(&corpus_descriptor("corpus"), "digest")
    );
    assert_eq!(skopeo_facts(&dest), corpus_facts("corpus"));
    let leftovers: Vec<_> = fs::read_dir(env.home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "auth.json")
        .collect();
    assert!(leftovers.is_empty(), "spool files left: {leftovers:?}");
}

#[test]
fn basic_and_bearer_token_auth_work_through_src_and_dest_creds_and_auth_files() {
    let tokens_dir = tempdir();
    let tokens = TokenServer::start(tokens_dir.path(), Policy::default());
    let registries = [
        (
            "htpasswd",
            Registry::start_with(RegistryConfig {
                auth: Auth::Htpasswd(vec![("alice".into(), "wonderland".into())]),
                ..RegistryConfig::default()
            }),
        ),
        (
            "token",
            Registry::start_with(RegistryConfig {
                auth: tokens.auth(),
                ..RegistryConfig::default()
            }),
        ),
    ];
    let work = tempdir();
    let want = corpus_facts("base");
    for (kind, reg) in &registries {
        let env = Env::new();
        let dest = docker(reg.port, "strata/base:1");
        let e = env.copy_fails(&[&corpus_oci("base"), &dest]);
        assert!(e.contains("requires credentials"), "{kind}, anonymous: {e}");
        let e = env.copy_fails(&["--dest-creds", "alice:nope", &corpus_oci("base"), &dest]);
        assert!(
            e.contains("did not accept the credentials"),
            "{kind}, wrong password: {e}"
        );
        env.copy(&[
            "--dest-creds",
            "alice:wonderland",
            &corpus_oci("base"),
            &dest,
        ]);

        let pulled = work.path().join(format!("{kind}-oci"));
        let into = format!("oci:{}:b", p(&pulled));
        let e = env.copy_fails(&[&dest, &into]);
        assert!(
            e.contains("requires credentials"),
            "{kind}, anonymous pull: {e}"
        );
        env.copy(&["--src-creds", "alice:wonderland", &dest, &into]);
        assert_eq!(skopeo_facts(&into), want, "{kind}");

        // The user's auth file (podman login writes it) is used without flags.
        fs::write(
            env.auth_file(),
            json!({"auths": {format!("127.0.0.1:{}", reg.port): {"auth": "YWxpY2U6d29uZGVybGFuZA=="}}})
                .to_string(),
        )
        .unwrap();
        env.copy(&[&corpus_oci("corpus"), &docker(reg.port, "strata/corpus:1")]);
    }
    let seen = tokens.seen();
    assert!(
        seen.iter().any(|s| s.account.as_deref() == Some("alice")
            && s.scopes
                .iter()
                .any(|sc| sc == "repository:strata/base:pull,push")),
        "the token server gave alice a push token: {seen:#?}"
    );
}

#[test]
fn dropped_connections_mid_blob_still_push_and_pull_the_right_digests() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let proxy = Proxy::start(reg.port);
    // Uploads of the small corpus go in one PUT each; downloads are one GET each.
    proxy.rule(
        "PUT",
        "/blobs/uploads/",
        Action::DropRequestBody(300_000),
        2,
    );
    let dest = docker(proxy.port, "strata/corpus:1");
    env.copy(&[&corpus_oci("corpus"), &dest]);
    let cut_puts = proxy
        .seen()
        .iter()
        .filter(|s| s.action == Some(Action::DropRequestBody(300_000)))
        .count();
    assert_eq!(cut_puts, 2, "two uploads were cut");
    // What the registry holds, asked directly: the corpus, byte for byte.
    let direct = docker(reg.port, "strata/corpus:1");
    assert_eq!(
        remote_manifest_digest(&direct),
        jstr(&corpus_descriptor("corpus"), "digest")
    );
    let check = work.path().join("check");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &direct,
        &format!("oci:{}:c", p(&check)),
    ]);
    check_layout_blobs(&check);

    // The config's answer is too short to be cut; a layer's is cut, and its resumed
    // answers are cut again.
    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(300_000), 4);
    let pulled = work.path().join("pulled");
    let into = format!("oci:{}:c", p(&pulled));
    env.copy(&["--jobs", "1", &dest, &into]);
    let resumed = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.range.is_some())
        .count();
    assert!(
        resumed >= 2,
        "downloads resumed with Range: {:#?}",
        proxy.seen()
    );
    assert_eq!(skopeo_facts(&into), corpus_facts("corpus"));
    check_layout_blobs(&pulled);
    for layer in oci_layers("corpus") {
        assert_eq!(
            sha256_file(&pulled.join("blobs/sha256").join(&layer.digest[7..])),
            layer.digest
        );
    }
}

#[test]
fn a_corrupted_blob_in_the_registry_fails_the_pull_and_leaves_the_destination_as_it_was() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let src = docker(reg.port, "strata/corpus:1");
    env.copy(&[&corpus_oci("corpus"), &src]);
    let layer = corrupt_largest_layer(&reg);

    let dest = work.path().join("dest");
    env.copy(&[&corpus_oci("base"), &format!("oci:{}:old", p(&dest))]);
    let index_before = fs::read(dest.join("index.json")).unwrap();
    for jobs in ["1", "4"] {
        let e = env.copy_fails(&["--jobs", jobs, &src, &format!("oci:{}:new", p(&dest))]);
        assert!(
            e.contains(&layer.digest) && e.contains("the bytes hash to"),
            "--jobs {jobs}: {e}"
        );
        assert_eq!(fs::read(dest.join("index.json")).unwrap(), index_before);
        assert!(
            !dest.join("blobs/sha256").join(&layer.digest[7..]).exists(),
            "the corrupted blob was kept"
        );
    }
    let archive = work.path().join("out.tar");
    env.copy_fails(&[&src, &format!("docker-archive:{}", p(&archive))]);
    assert!(!archive.exists(), "a failed pull left an archive");
}

/// A copy of the corpus layout whose `corpus` config names a wrong diffID for layer 2
/// (blobs intact, so only the diffID check can find it), as `work/bad`.
fn layout_with_a_wrong_diff_id(work: &Path) -> PathBuf {
    let bad = work.join("bad");
    sh(&format!("cp -r {} {}", p(&corpus().join("oci")), p(&bad)));
    let blob = |d: &str| bad.join("blobs/sha256").join(&d[7..]);
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = sha256_reader(bytes).0;
        fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let desc = corpus_descriptor("corpus");
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(blob(jstr(&desc, "digest"))).unwrap()).unwrap();
    let mut config: Value =
        serde_json::from_slice(&fs::read(blob(jstr(&manifest["config"], "digest"))).unwrap())
            .unwrap();
    config["rootfs"]["diff_ids"][2] = json!(sha256_reader(&b"not this layer"[..]).0);
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(cd);
    manifest["config"]["size"] = json!(cs);
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "corpus"}}]});
    fs::write(bad.join("index.json"), index.to_string()).unwrap();
    bad
}

#[test]
fn a_source_that_fails_verification_pushes_neither_its_blob_nor_a_tag() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let bad = layout_with_a_wrong_diff_id(work.path());
    let dest = docker(reg.port, "strata/bad:1");
    // Twice into the same repository: a blob that failed is not there to be reused.
    for jobs in ["4", "1"] {
        let e = env.copy_fails(&[
            "--verify-diff-ids",
            "--jobs",
            jobs,
            &format!("oci:{}:corpus", p(&bad)),
            &dest,
        ]);
        assert!(
            e.contains("invalid diffID for layer 2"),
            "--jobs {jobs}: {e}"
        );
    }
    let lines = reg.access_lines("/manifests/");
    assert!(
        lines.iter().all(|l| !l.contains("\"PUT ")),
        "a manifest was pushed: {lines:#?}"
    );
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--raw", &dest]);
    let run = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!run.success(), "the tag exists after a failed push");
    let repo = Client::new(reg.host(), Options::default())
        .unwrap()
        .repository(RepositoryName::parse("strata/bad").unwrap());
    let layers = oci_layers("corpus");
    let bad_blob = strata_registry::Digest::parse(&layers[2].digest).unwrap();
    assert_eq!(
        repo.stat_blob(&bad_blob).unwrap(),
        None,
        "the unverified blob was committed"
    );
    let good_blob = strata_registry::Digest::parse(&layers[0].digest).unwrap();
    assert!(repo.stat_blob(&good_blob).unwrap().is_some());

    // By default a blob passes through on its digest alone, as skopeo copies it; the
    // diffID is checked where the layer is unpacked: a pull into a store refuses it.
    env.copy(&[&format!("oci:{}:corpus", p(&bad)), &dest]);
    assert_eq!(
        repo.stat_blob(&bad_blob).unwrap().map(|s| s > 0),
        Some(true)
    );
    let root = work.path().join("store");
    let e = env.fails(&["--root", &p(&root), "pull", &dest]);
    assert!(e.contains("invalid diffID for layer 2"), "{e}");
    let images = env.json(&["--root", &p(&root), "images"]);
    assert_eq!(images, json!([]), "a refused pull left an image");
}

#[test]
fn a_manifest_list_gives_the_image_of_the_platform_asked_for() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    env.copy(&[
        &corpus_oci("corpus"),
        &docker(reg.port, "strata/multi:amd64"),
    ]);
    env.copy(&[&corpus_oci("base"), &docker(reg.port, "strata/multi:arm64")]);
    let entry = |tag: &str, arch: &str, variant: Option<&str>| {
        let d = corpus_descriptor(tag);
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"], "platform": platform})
    };
    let repo = Client::new(reg.host(), Options::default())
        .unwrap()
        .repository(RepositoryName::parse("strata/multi").unwrap());
    for (kind, tag) in [
        (ManifestKind::OciIndex, "oci-index"),
        (ManifestKind::DockerManifestList, "docker-list"),
    ] {
        let list = json!({
            "schemaVersion": 2,
            "mediaType": kind.media_type(),
            "manifests": [entry("corpus", "amd64", None), entry("base", "arm64", Some("v8"))],
        });
        repo.put_manifest(
            &Reference::parse(tag).unwrap(),
            kind,
            list.to_string().as_bytes(),
        )
        .unwrap();
        let src = docker(reg.port, &format!("strata/multi:{tag}"));
        for (platform, image) in [
            ("linux/amd64", "corpus"),
            ("linux/arm64", "base"),
            ("linux/arm64/v8", "base"),
        ] {
            let out = work
                .path()
                .join(format!("{tag}-{}", platform.replace('/', "-")));
            let into = format!("oci:{}:x", p(&out));
            let report = env.copy(&["--platform", platform, &src, &into]);
            let want = corpus_facts(image);
            assert_eq!(
                jstr(&report["images"][0], "id"),
                want.id,
                "{tag} {platform}"
            );
            assert_eq!(skopeo_facts(&into), want, "{tag} {platform}");
        }
        let e = env.copy_fails(&[
            "--platform",
            "linux/s390x",
            &src,
            &format!("oci:{}:x", p(&work.path().join("none"))),
        ]);
        assert!(
            e.contains("no image for linux/s390x")
                && e.contains("linux/amd64, linux/arm64/v8")
                && e.contains("--platform"),
            "{tag}: {e}"
        );
    }
}

#[test]
fn registry_errors_name_what_and_where() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let into = format!("oci:{}:x", p(&work.path().join("x")));
    let e = env.copy_fails(&[&docker(reg.port, "strata/nothing:1"), &into]);
    assert!(
        e.contains("docker://127.0.0.1:") && e.contains("strata/nothing") && e.contains("unknown"),
        "{e}"
    );
    env.copy(&[&corpus_oci("base"), &docker(reg.port, "strata/base:1")]);
    let e = env.copy_fails(&[&docker(reg.port, "strata/base:2"), &into]);
    assert!(e.contains("manifest 2 is unknown in strata/base"), "{e}");
    // Nothing listens there.
    let closed = strata_registry_testkit::registry::free_port();
    let e = env.copy_fails(&[&docker(closed, "strata/base:1"), &into]);
    assert!(e.contains(&format!("127.0.0.1:{closed}")), "{e}");
    let e = env.copy_fails(&[
        "--dest-creds",
        "nocolon",
        &corpus_oci("base"),
        &docker(reg.port, "x/y:1"),
    ]);
    assert!(e.contains("USER:PASSWORD"), "{e}");
    let every_tag = format!("oci:{}", p(&corpus().join("oci")));
    let e = env.copy_fails(&["--all", &every_tag, &docker(reg.port, "x/y:1")]);
    assert!(e.contains("names one image"), "{e}");
}
