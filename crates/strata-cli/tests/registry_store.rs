//! `strata push` and `strata pull`: the store and a registry (Debian's `docker-registry`
//! on loopback), checked by the real peers. An image loaded from a docker-archive is
//! pushed (its layers compressed once and kept: a second push sends nothing and
//! compresses nothing), skopeo reads it with the corpus's IDs, a fresh store pulls it to
//! the same IDs and trees, and pushes it to another repository by mounts only. What
//! skopeo pushes, Strata pulls with its blobs kept as they came; an image sharing layers
//! with another repository is pushed by mounting them. Auth, dropped connections, a
//! corrupted blob (the store is left as it was), and the `--json` progress events.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::images::*;
use common::registry::*;
use common::*;
use serde_json::{json, Value};
use strata_registry_testkit::proxy::{Action, Proxy};
use strata_registry_testkit::token::{Policy, TokenServer};
use strata_registry_testkit::{Auth, Registry, RegistryConfig};

/// A machine: a store of its own and a home of its own (auth files).
struct Machine {
    env: Env,
    root: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let env = Env::new();
        let root = env.home.path().join("store");
        Machine { env, root }
    }

    fn args<'a>(&'a self, root: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        [&["--root", root], args].concat()
    }

    /// `strata --root ROOT --json ARGS`, required to succeed.
    fn json(&self, args: &[&str]) -> Value {
        let root = s(&self.root);
        self.env.json(&self.args(&root, args))
    }

    /// `strata --root ROOT ARGS`, required to fail cleanly: its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let root = s(&self.root);
        self.env.fails(&self.args(&root, args))
    }

    /// `strata --root ROOT --json ARGS`, required to succeed: the JSON result and the
    /// progress events (JSON lines on stderr).
    fn json_with_events(&self, args: &[&str]) -> (Value, Vec<Value>) {
        let root = s(&self.root);
        let run = self
            .env
            .run(&[&["--json"], &self.args(&root, args)[..]].concat());
        run.assert_success();
        let events = run
            .stderr
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l}: {e}"))
            })
            .collect();
        (run.json(), events)
    }

    fn load_corpus_archive(&self) {
        let archive = corpus().join("corpus.docker-archive.tar");
        self.json(&["load", "-i", &s(&archive)]);
    }

    /// The image's ID and diffIDs as the store holds them.
    fn facts(&self, image: &str) -> Facts {
        inspect_facts(&self.json(&["inspect", image]))
    }

    /// Per layer of the image, the digests of the blobs the store keeps for it.
    fn kept_blobs(&self, image: &str) -> Vec<Vec<String>> {
        let v = self.json(&["inspect", image]);
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["blobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| jstr(b, "digest").to_owned())
                    .collect()
            })
            .collect()
    }

    /// The merged tree of the image's top layer, as tree-listing.py prints it.
    fn tree(&self, image: &str) -> String {
        let v = self.json(&["inspect", image]);
        let top = jstr(&v, "top_layer").to_owned();
        let merged = PathBuf::from(jstr(&self.json(&["layer", "mount", &top]), "path"));
        let listing = without_root_mtime(&tree_listing(&merged, &[]));
        self.json(&["layer", "umount", &top]);
        listing
    }

    /// Everything a failed pull must leave as it was: images, layers, blobs.
    fn state(&self) -> (Value, Value, Vec<String>) {
        let mut blobs: Vec<String> = fs::read_dir(self.root.join("blobs"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        blobs.sort();
        (self.json(&["images"]), self.json(&["layer", "ls"]), blobs)
    }

    fn fsck_clean(&self) {
        assert_eq!(self.json(&["fsck"])["clean"], Value::Bool(true));
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `127.0.0.1:PORT/NAME`, the way a person writes it for pull and push.
fn at(port: u16, name: &str) -> String {
    format!("127.0.0.1:{port}/{name}")
}

fn expected_tree(tag: &str) -> String {
    without_root_mtime(
        &fs::read_to_string(corpus().join(format!("expected/{tag}.rootfs.tsv"))).unwrap(),
    )
}

fn report_layers(report: &Value) -> &Vec<Value> {
    report["images"][0]["layers"].as_array().unwrap()
}

#[test]
fn a_pushed_image_pulls_into_a_fresh_store_with_the_same_ids_and_tree_and_moves_by_mounts() {
    let reg = Registry::start();
    let want = corpus_facts("corpus");
    let one = Machine::new();
    one.load_corpus_archive();
    assert!(
        one.kept_blobs("strata/corpus:1").iter().all(Vec::is_empty),
        "a docker-archive has no compressed blobs"
    );

    // The first push compresses every layer once (gzip by default) and keeps the blobs.
    let target = at(reg.port, "strata/corpus:1");
    let pushed = one.json(&["push", "strata/corpus:1", &target]);
    let digests: Vec<String> = report_layers(&pushed)
        .iter()
        .map(|l| {
            assert_eq!(
                l["media_type"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_eq!(l["reused"], false);
            jstr(l, "digest").to_owned()
        })
        .collect();
    let kept = one.kept_blobs("strata/corpus:1");
    assert_eq!(
        kept,
        digests.iter().map(|d| vec![d.clone()]).collect::<Vec<_>>(),
        "the compressed blobs pushed are the ones kept"
    );
    let remote = format!("docker://{target}");
    assert_eq!(
        skopeo_facts(&remote),
        want,
        "skopeo reads what strata pushed"
    );
    let work = tempdir();
    let layout = work.path().join("skopeo");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:c", s(&layout)),
    ]);
    check_layout_blobs(&layout);

    // The second push sends no blob and makes no new one.
    let blobs_before = one.state().2;
    let before = reg.access_lines("").len();
    let again = one.json(&["push", "strata/corpus:1", &target]);
    let lines = log_since(&reg, before);
    assert!(
        report_layers(&again).iter().all(|l| l["reused"] == true),
        "{again}"
    );
    assert!(
        uploads(&lines).is_empty(),
        "the second push uploaded: {lines:#?}"
    );
    assert_eq!(
        one.state().2,
        blobs_before,
        "the second push compressed again"
    );
    assert_eq!(one.kept_blobs("strata/corpus:1"), kept);
    // The store remembers where it pushed: to another repository, blobs are mounted.
    let before = reg.access_lines("").len();
    one.json(&["push", "strata/corpus:1", &at(reg.port, "strata/third:1")]);
    let lines = log_since(&reg, before);
    assert_mounted_only(&lines, "strata/corpus", 6);

    // A fresh store pulls it: the same IDs and tree, the pushed blobs kept as they came.
    let two = Machine::new();
    let pulled = two.json(&["pull", &target]);
    assert_eq!(jstr(&pulled["images"][0], "id"), want.id);
    assert_eq!(two.facts(&target), want);
    assert_eq!(two.kept_blobs(&target), kept);
    assert_eq!(
        two.tree(&target),
        expected_tree("corpus"),
        "the pulled tree"
    );
    let names = two.json(&["inspect", &target])["names"].clone();
    assert_eq!(
        names,
        json!([target]),
        "the image is named by the reference"
    );
    two.fsck_clean();

    // Pushed from there to another repository: every blob is mounted, none is sent, and
    // the manifest is the same bytes (the store kept it with the blobs).
    let before = reg.access_lines("").len();
    let other = at(reg.port, "strata/again:1");
    two.json(&["push", &target, &other]);
    let lines = log_since(&reg, before);
    assert_mounted_only(&lines, "strata/corpus", 6);
    assert_eq!(
        remote_manifest_digest(&format!("docker://{other}")),
        remote_manifest_digest(&remote)
    );

    // Pulled again, by digest: nothing but the manifest and config is fetched.
    let digest = remote_manifest_digest(&remote);
    let before = reg.access_lines("").len();
    let by_digest = format!("{}@{digest}", at(reg.port, "strata/corpus"));
    let again = two.json(&["pull", &by_digest]);
    let lines = log_since(&reg, before);
    assert_eq!(jstr(&again["images"][0], "id"), want.id);
    assert!(
        report_layers(&again).iter().all(|l| l["reused"] == true),
        "{again}"
    );
    let blob_gets = lines
        .iter()
        .filter(|l| l.contains("\"GET ") && l.contains("/blobs/"))
        .count();
    assert_eq!(blob_gets, 1, "only the config is read: {lines:#?}");
    two.fsck_clean();
}

#[test]
fn strata_pulls_what_skopeo_pushed_and_pushes_shared_layers_by_mounting_them() {
    let reg = Registry::start();
    let corpus_oci = format!("oci:{}:corpus", s(&corpus().join("oci")));
    let skopeo_pushed = docker(reg.port, "sk/corpus:1");
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &corpus_oci,
        &skopeo_pushed,
    ]);
    let m = Machine::new();
    let name = at(reg.port, "sk/corpus:1");
    m.json(&["pull", "--jobs", "3", &format!("docker://{name}")]);
    assert_eq!(m.facts(&name), corpus_facts("corpus"));
    let layout_blobs: Vec<Vec<String>> = oci_layers("corpus")
        .into_iter()
        .map(|l| vec![l.digest])
        .collect();
    assert_eq!(m.kept_blobs(&name), layout_blobs, "blobs kept as they came");
    assert_eq!(m.tree(&name), expected_tree("corpus"));

    // The base image shares the corpus's first layer: brought in from an archive, it
    // reuses that store layer; pushed to another repository, the layer is mounted from
    // the one it was pulled from, and only the config is sent.
    let base = format!("oci-archive:{}", s(&corpus().join("base.oci-archive.tar")));
    m.json(&["copy", &base, "strata:strata/base:1"]);
    let before = reg.access_lines("").len();
    let target = at(reg.port, "other/base:1");
    let report = m.json(&["push", "strata/base:1", &target]);
    let lines = log_since(&reg, before);
    let layer = oci_layers("base").remove(0).digest;
    assert_eq!(jstr(&report_layers(&report)[0], "digest"), layer);
    let mounted: Vec<_> = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("?mount=sha256%3A{}", &layer[7..]))
                && l.contains("from=sk%2Fcorpus")
        })
        .collect();
    assert_eq!(mounted.len(), 1, "the layer was mounted: {lines:#?}");
    assert!(mounted[0].contains("\" 201 "), "{mounted:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("\"PUT ") && l.contains(&layer[7..])),
        "the layer was uploaded: {lines:#?}"
    );
    assert_eq!(
        skopeo_facts(&format!("docker://{target}")),
        corpus_facts("base")
    );
}

#[test]
fn pull_and_push_use_basic_and_token_auth_from_creds_and_auth_files() {
    let tokens_dir = tempdir();
    let tokens = TokenServer::start(tokens_dir.path(), Policy::default());
    for (kind, auth) in [
        (
            "htpasswd",
            Auth::Htpasswd(vec![("alice".into(), "wonderland".into())]),
        ),
        ("token", tokens.auth()),
    ] {
        let reg = Registry::start_with(RegistryConfig {
            auth,
            ..RegistryConfig::default()
        });
        let one = Machine::new();
        one.load_corpus_archive();
        let target = at(reg.port, "strata/corpus:1");
        let e = one.fails(&["push", "strata/corpus:1", &target]);
        assert!(e.contains("requires credentials"), "{kind}, anonymous: {e}");
        let e = one.fails(&["push", "--creds", "alice:nope", "strata/corpus:1", &target]);
        assert!(
            e.contains("did not accept the credentials"),
            "{kind}, wrong password: {e}"
        );
        one.json(&[
            "push",
            "--creds",
            "alice:wonderland",
            "strata/corpus:1",
            &target,
        ]);

        let two = Machine::new();
        let e = two.fails(&["pull", &target]);
        assert!(
            e.contains("requires credentials"),
            "{kind}, anonymous pull: {e}"
        );
        assert_eq!(
            two.state().0,
            json!([]),
            "{kind}: a refused pull stored an image"
        );
        // What `podman login` writes is used without flags.
        fs::write(
            two.env.auth_file(),
            json!({"auths": {format!("127.0.0.1:{}", reg.port): {"auth": "YWxpY2U6d29uZGVybGFuZA=="}}})
                .to_string(),
        )
        .unwrap();
        two.json(&["pull", &target]);
        assert_eq!(two.facts(&target), corpus_facts("corpus"), "{kind}");
    }
}

#[test]
fn dropped_connections_mid_blob_still_push_and_pull_the_right_image() {
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let one = Machine::new();
    one.load_corpus_archive();
    proxy.rule(
        "PUT",
        "/blobs/uploads/",
        Action::DropRequestBody(300_000),
        2,
    );
    let through_proxy = at(proxy.port, "strata/corpus:1");
    one.json(&["push", "strata/corpus:1", &through_proxy]);
    let cut = proxy
        .seen()
        .iter()
        .filter(|s| s.action == Some(Action::DropRequestBody(300_000)))
        .count();
    assert_eq!(cut, 2, "two uploads were cut");
    assert_eq!(
        skopeo_facts(&docker(reg.port, "strata/corpus:1")),
        corpus_facts("corpus")
    );

    proxy.rule("GET", "/blobs/sha256:", Action::DropResponse(300_000), 4);
    let two = Machine::new();
    two.json(&["pull", "--jobs", "1", &through_proxy]);
    let resumed = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.range.is_some())
        .count();
    assert!(resumed >= 2, "downloads resumed: {:#?}", proxy.seen());
    assert_eq!(two.facts(&through_proxy), corpus_facts("corpus"));
    assert_eq!(two.tree(&through_proxy), expected_tree("corpus"));
    two.fsck_clean();
}

#[test]
fn a_corrupted_blob_in_the_registry_fails_the_pull_and_the_store_keeps_what_it_had() {
    let reg = Registry::start();
    let corpus_oci = format!("oci:{}:corpus", s(&corpus().join("oci")));
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &corpus_oci,
        &docker(reg.port, "strata/corpus:1"),
    ]);
    let layer = corrupt_largest_layer(&reg);

    let m = Machine::new();
    m.json(&[
        "copy",
        &format!("oci:{}:base", s(&corpus().join("oci"))),
        "strata:strata/base:1",
    ]);
    let before = m.state();
    for jobs in ["1", "4"] {
        let e = m.fails(&["pull", "--jobs", jobs, &at(reg.port, "strata/corpus:1")]);
        // The store unpacks as it downloads: gzip's own checksum can find the damage
        // before the digest does.
        assert!(
            e.contains(&layer.digest)
                && (e.contains("the bytes hash to") || e.contains("corrupt gzip stream")),
            "--jobs {jobs}: {e}"
        );
        assert_eq!(m.state(), before, "--jobs {jobs}: the store changed");
        m.fsck_clean();
    }
    let e = m.fails(&["pull", &at(reg.port, "strata/nothing:1")]);
    assert!(e.contains("strata/nothing"), "{e}");
    let e = m.fails(&["push", "strata/nothing:1", &at(reg.port, "x/y:1")]);
    assert!(e.contains("no image `strata/nothing:1`"), "{e}");
    assert_eq!(m.state(), before);
}

#[test]
fn json_progress_events_follow_every_layer() {
    let reg = Registry::start();
    let one = Machine::new();
    one.load_corpus_archive();
    let target = at(reg.port, "strata/corpus:1");
    let (pushed, events) = one.json_with_events(&["push", "strata/corpus:1", &target]);
    let two = Machine::new();
    let (pulled, pull_events) = two.json_with_events(&["pull", &target]);
    for (report, events, what) in [(&pushed, &events, "push"), (&pulled, &pull_events, "pull")] {
        assert_eq!(events[0]["event"], "image", "{what}: {events:#?}");
        assert_eq!(events[0]["layers"], 5, "{what}");
        for (index, layer) in report_layers(report).iter().enumerate() {
            let of = |kind: &str| -> Vec<&Value> {
                events
                    .iter()
                    .filter(|e| e["event"] == kind && e["layer"] == index)
                    .collect()
            };
            let (start, done) = (of("layer_start"), of("layer_done"));
            assert_eq!((start.len(), done.len()), (1, 1), "{what} layer {index}");
            assert_eq!(done[0]["reused"], false);
            assert_eq!(
                done[0]["bytes"], start[0]["size"],
                "{what} layer {index}: every byte counted"
            );
            assert_eq!(done[0]["digest"], start[0]["digest"]);
            if what == "push" {
                assert_eq!(done[0]["digest"], layer["digest"]);
            }
        }
    }
}
