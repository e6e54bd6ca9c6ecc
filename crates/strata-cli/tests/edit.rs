//! `strata mutate` and `strata append` against real peers: on a loopback docker-registry
//! (the access log counts what moved: mutate uploads only the config, append only the new
//! layer and the config, a base layer in another repository is mounted), read back by
//! skopeo and unpacked by umoci; loaded into Docker 20.10 and run; into the store; and
//! reproducible under SOURCE_DATE_EPOCH. Bad input leaves the destination as it was.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::engines::Dockerd;
use common::registry::*;
use common::*;
use serde_json::Value;
use strata_registry_testkit::Registry;

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn corpus_base() -> String {
    format!("oci:{}:base", p(&corpus().join("oci")))
}

/// The `digest=` of every upload finished (`PUT …/blobs/uploads/…?digest=`) in `lines`.
fn uploaded(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.contains("\"PUT ") && l.contains("/blobs/uploads/"))
        .filter_map(|l| {
            let d = l.split("digest=").nth(1)?;
            let d = d.split(['&', ' ']).next()?;
            Some(d.replace("%3A", ":"))
        })
        .collect()
}

/// A directory with an executable script `/hello.sh` printing `appended $GREETING`.
fn script_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("app");
    fs::create_dir_all(dir.join("opt/app")).unwrap();
    fs::write(
        dir.join("opt/app/hello.sh"),
        "#!/bin/sh\necho \"appended $GREETING\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        dir.join("opt/app/hello.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    dir
}

fn config_of(transport: &str) -> Value {
    skopeo(&["inspect", "--tls-verify=false", "--config", transport]).json()
}

#[test]
fn on_a_registry_mutate_uploads_only_the_config_and_append_only_the_new_layer() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let base = docker(reg.port, "strata/base:1");
    env.copy(&[&corpus_base(), &base]);
    let base_layers = remote_manifest(&base)["layers"].as_array().unwrap().clone();

    // mutate: the config is the only blob uploaded; no layer is read or sent.
    let before = reg.access_lines("").len();
    let mutated = docker(reg.port, "strata/base:mutated");
    let report = env.json(&[
        "mutate",
        &base,
        &mutated,
        "--entrypoint",
        r#"["/bin/sh","-c"]"#,
        "--env",
        "GREETING=world",
        "--label",
        "org.example.by=strata",
        "--workdir",
        "/opt",
    ]);
    let lines = log_since(&reg, before);
    let config_digest = remote_manifest(&mutated)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        uploaded(&lines),
        BTreeSet::from([config_digest.clone()]),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("\"GET ")
            && l.contains("/blobs/")
            && !l.contains(&config_digest)
            && base_layers
                .iter()
                .any(|b| l.contains(b["digest"].as_str().unwrap()))),
        "a layer was read: {lines:#?}"
    );
    assert!(
        report["images"][0]["layers"][0]["reused"] == true,
        "{report}"
    );
    let config = config_of(&mutated);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=world"));
    assert_eq!(config["config"]["Labels"]["org.example.by"], "strata");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created_by"], "WORKDIR /opt");
    assert_eq!(history.last().unwrap()["empty_layer"], true);

    // append: the new layer and the config are uploaded, the base layer is not.
    let app = script_dir(work.path());
    let before = reg.access_lines("").len();
    let appended = docker(reg.port, "strata/base:appended");
    let report = env.json(&["append", &mutated, &appended, "--layer", &p(&app)]);
    let lines = log_since(&reg, before);
    let manifest = remote_manifest(&appended);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), base_layers.len() + 1);
    assert_eq!(layers[0]["digest"], base_layers[0]["digest"]);
    let new_layer = layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        uploaded(&lines),
        BTreeSet::from([new_layer.clone(), config_digest]),
        "{lines:#?}"
    );
    assert_eq!(report["images"][0]["layers"][0]["reused"], true);

    // To another repository of the registry: the base layer is mounted, not sent.
    let before = reg.access_lines("").len();
    let other = docker(reg.port, "strata/other:1");
    let more = work.path().join("more");
    fs::create_dir_all(&more).unwrap();
    fs::write(more.join("note"), "more\n").unwrap();
    env.json(&["append", &appended, &other, "--layer", &p(&more)]);
    let lines = log_since(&reg, before);
    let mounts = lines
        .iter()
        .filter(|l| l.contains("?mount=") && l.contains("\" 201 "))
        .count();
    assert_eq!(
        mounts, 2,
        "the base and the first appended layer: {lines:#?}"
    );
    let manifest = remote_manifest(&other);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        uploaded(&lines),
        BTreeSet::from([
            layers[2]["digest"].as_str().unwrap().to_string(),
            manifest["config"]["digest"].as_str().unwrap().to_string()
        ]),
        "{lines:#?}"
    );

    // skopeo copies the result; umoci unpacks it with the script in place.
    let layout = work.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &appended,
        &format!("oci:{}:x", p(&layout)),
    ]);
    let bundle = work.path().join("bundle");
    let run = common::images::peer(
        "umoci",
        &[
            "unpack".into(),
            "--rootless".into(),
            "--image".into(),
            format!("{}:x", p(&layout)).into(),
            bundle.clone().into(),
        ],
    );
    run.assert_success();
    let script = fs::read_to_string(bundle.join("rootfs/opt/app/hello.sh")).unwrap();
    assert!(script.contains("appended $GREETING"));
    assert!(bundle.join("rootfs/bin/busybox").exists());

    // The same inputs and SOURCE_DATE_EPOCH: the same manifest, run after run.
    let digests: Vec<String> = ["r1", "r2"]
        .iter()
        .map(|tag| {
            let dest = docker(reg.port, &format!("strata/base:{tag}"));
            let mut cmd = strata_cmd(["append", &base, &dest, "--layer", &p(&app)]);
            cmd.env("SOURCE_DATE_EPOCH", "1700000000");
            run_with_timeout(cmd, std::time::Duration::from_secs(120)).assert_success();
            remote_manifest_digest(&dest)
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    let config = config_of(&docker(reg.port, "strata/base:r1"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    // Bad input: nothing is uploaded and the tag is not made.
    let junk = work.path().join("junk.tar");
    fs::write(&junk, vec![7u8; 3000]).unwrap();
    let before = reg.access_lines("").len();
    let bad = docker(reg.port, "strata/base:bad");
    let err = env.fails(&["append", &base, &bad, "--layer", &p(&junk)]);
    assert!(err.contains("junk.tar: it is not a valid tar"), "{err}");
    let err = env.fails(&["mutate", &base, &bad, "--expose", "80/icmp"]);
    assert!(err.contains("--expose `80/icmp`"), "{err}");
    let err = env.fails(&["mutate", &base, &bad]);
    assert!(err.contains("nothing to change"), "{err}");
    let lines = log_since(&reg, before);
    assert!(uploads(&lines).is_empty(), "{lines:#?}");
    assert!(!lines
        .iter()
        .any(|l| l.contains("/manifests/bad") && l.contains("\"PUT ")));
}

#[test]
fn docker_runs_what_append_and_mutate_made_and_the_store_takes_it_too() {
    let work = tempdir();
    let app = script_dir(work.path());
    let layout = work.path().join("layout");
    // oci: to oci: (the same layout, new tags), then to a docker-archive.
    let appended = format!("oci:{}:appended", p(&layout));
    strata_json(["copy", &corpus_base(), &format!("oci:{}:base", p(&layout))]);
    let first = strata_json([
        "append",
        &format!("oci:{}:base", p(&layout)),
        &appended,
        "--layer",
        &p(&app),
        "--compress",
        "zstd",
    ]);
    assert_eq!(
        first["images"][0]["layers"][1]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let archive = work.path().join("image.tar");
    strata_json([
        "mutate",
        &appended,
        &format!("docker-archive:{}:example/app:1", p(&archive)),
        "--entrypoint",
        "/opt/app/hello.sh",
        "--env",
        "GREETING=from docker",
    ]);
    let d = Dockerd::start();
    d.ok(&["load", "-i", &p(&archive)]);
    let out = d.ok(&["run", "--rm", "--network", "none", "example/app:1"]);
    assert_eq!(out, "appended from docker");

    // Into the store, and out of it again.
    let store = TempStore::new();
    store.json(&[
        "append",
        &appended,
        "strata:example/stored:1",
        "--layer",
        &p(&app),
    ]);
    let facts = store.facts("example/stored:1");
    assert_eq!(facts.diff_ids.len(), 3);
}

#[test]
fn manifest_config_digest_ls_catalog_tag_and_delete_move_no_layer() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let base = docker(reg.port, "strata/base:1");
    env.copy(&[&corpus_base(), &base]);

    // manifest, digest and config agree with skopeo.
    let raw = env.run(&["manifest", &base]);
    raw.assert_success();
    assert_eq!(
        raw.stdout,
        skopeo(&["inspect", "--tls-verify=false", "--raw", &base]).stdout
    );
    let digest = env.json(&["digest", &base]);
    assert_eq!(
        digest["digest"].as_str().unwrap(),
        remote_manifest_digest(&base)
    );
    let config = env.run(&["config", &base]);
    config.assert_success();
    // The bytes as stored (skopeo pretty-prints them): their digest is the manifest's.
    assert_eq!(config.json(), config_of(&base));
    assert_eq!(
        sha256_reader(&config.stdout[..]).0,
        remote_manifest(&base)["config"]["digest"].as_str().unwrap()
    );

    // tag: one manifest PUT, no blob moved; ls and catalog see it.
    let before = reg.access_lines("").len();
    env.json(&["tag", &base, "v2"]);
    let lines = log_since(&reg, before);
    assert!(uploads(&lines).is_empty(), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("/blobs/")), "{lines:#?}");
    let puts: Vec<_> = lines.iter().filter(|l| l.contains("\"PUT ")).collect();
    assert_eq!(puts.len(), 1, "{lines:#?}");
    assert_eq!(
        remote_manifest_digest(&docker(reg.port, "strata/base:v2")),
        remote_manifest_digest(&base)
    );
    let tags = env.json(&["ls", &docker(reg.port, "strata/base")]);
    let mut tags: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", "v2"], "in the registry's order");
    env.copy(&[&corpus_base(), &docker(reg.port, "strata/other:1")]);
    let repos = env.json(&["catalog", &format!("127.0.0.1:{}", reg.port)]);
    assert_eq!(repos, serde_json::json!(["strata/base", "strata/other"]));

    // delete: the manifest goes, with both its tags.
    env.json(&["delete", &docker(reg.port, "strata/base:v2")]);
    let err = env.fails(&["digest", &base]);
    assert!(err.contains("strata/base"), "{err}");

    // In a layout: tag adds an index entry, ls lists it, delete takes the name away.
    let layout = work.path().join("layout");
    strata_json(["copy", &corpus_base(), &format!("oci:{}:base", p(&layout))]);
    let blobs_before = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    strata_json(["tag", &format!("oci:{}:base", p(&layout)), "v2"]);
    let names = strata_json(["ls", &format!("oci:{}", p(&layout))]);
    assert_eq!(names, serde_json::json!(["base", "v2"]));
    let a = strata_json(["digest", &format!("oci:{}:base", p(&layout))]);
    let b = strata_json(["digest", &format!("oci:{}:v2", p(&layout))]);
    assert_eq!(a["digest"], b["digest"]);
    strata_json(["delete", &format!("oci:{}:base", p(&layout))]);
    let names = strata_json(["ls", &format!("oci:{}", p(&layout))]);
    assert_eq!(names, serde_json::json!(["v2"]));
    assert_eq!(
        fs::read_dir(layout.join("blobs/sha256")).unwrap().count(),
        blobs_before
    );
    // umoci still reads the layout by its remaining name.
    common::images::peer(
        "umoci",
        &[
            "stat".into(),
            "--image".into(),
            format!("{}:v2", p(&layout)).into(),
        ],
    )
    .assert_success();
}

/// The corpus's expected tree (umoci unpack), its root mtime blanked.
fn expected_tree(tag: &str) -> String {
    without_root_mtime(
        &fs::read_to_string(corpus().join(format!("expected/{tag}.rootfs.tsv"))).unwrap(),
    )
}

#[test]
fn export_and_flatten_give_the_tree_umoci_unpacks() {
    let work = tempdir();
    let corpus_tag = format!("oci:{}:corpus", p(&corpus().join("oci")));
    // export: one tar of the merged tree (whiteouts and opaque directories applied).
    let tar = work.path().join("rootfs.tar");
    let exported = strata_json(["export", &corpus_tag, "-o", &p(&tar)]);
    let dir = work.path().join("exported");
    fs::create_dir(&dir).unwrap();
    unpack(&tar, &dir, &[]);
    assert_listing_eq(
        &expected_tree("corpus"),
        &without_root_mtime(&tree_listing(&dir, &[])),
        "strata export of oci:corpus vs umoci unpack",
    );

    // flatten: one layer with that tree, read by umoci; the history kept as empty entries.
    let layout = work.path().join("layout");
    strata_json(["flatten", &corpus_tag, &format!("oci:{}:flat", p(&layout))]);
    let bundle = work.path().join("bundle");
    common::images::peer(
        "umoci",
        &[
            "unpack".into(),
            "--image".into(),
            format!("{}:flat", p(&layout)).into(),
            bundle.clone().into(),
        ],
    )
    .assert_success();
    assert_listing_eq(
        &expected_tree("corpus"),
        &without_root_mtime(&tree_listing(&bundle.join("rootfs"), &[])),
        "umoci unpack of the flattened corpus vs of the corpus",
    );
    let (manifest, config) = {
        let m = strata(["manifest", &format!("oci:{}:flat", p(&layout))]);
        let c = strata(["config", &format!("oci:{}:flat", p(&layout))]);
        (m.assert_success().json(), c.assert_success().json())
    };
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([exported["diff_id"]])
    );
    let history = config["history"].as_array().unwrap();
    let with_layers: Vec<_> = history
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .collect();
    assert_eq!(with_layers.len(), 1, "{history:#?}");
    assert_eq!(with_layers[0]["created_by"], "strata flatten");
    assert!(history.len() > 5, "the corpus's own history is kept");
}

#[test]
fn rebase_mounts_the_new_base_and_refuses_a_base_that_is_not_the_bottom() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let old = docker(reg.port, "strata/oldbase:1");
    let app = docker(reg.port, "strata/app:1");
    let new = docker(reg.port, "strata/newbase:1");
    env.copy(&[&corpus_base(), &old]);
    env.copy(&[&format!("oci:{}:corpus", p(&corpus().join("oci"))), &app]);
    let patch = work.path().join("patch");
    fs::create_dir_all(patch.join("etc")).unwrap();
    fs::write(patch.join("etc/patched"), "yes\n").unwrap();
    env.json(&["append", &old, &new, "--layer", &p(&patch)]);

    let before = reg.access_lines("").len();
    let rebased = docker(reg.port, "strata/app:rebased");
    env.json(&[
        "rebase",
        &app,
        &rebased,
        "--old-base",
        &old,
        "--new-base",
        &new,
    ]);
    let lines = log_since(&reg, before);
    let m = remote_manifest(&rebased);
    let (app_m, new_m) = (remote_manifest(&app), remote_manifest(&new));
    let digests = |m: &Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let expected: Vec<String> = digests(&new_m)
        .into_iter()
        .chain(digests(&app_m).into_iter().skip(1))
        .collect();
    assert_eq!(digests(&m), expected);
    assert_eq!(m["annotations"]["org.opencontainers.image.base.name"], new);
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        remote_manifest_digest(&new)
    );
    // The new base's own layer is mounted from its repository; only the config is sent.
    let from_new = lines
        .iter()
        .filter(|l| l.contains("from=strata%2Fnewbase") && l.contains("\" 201 "))
        .count();
    assert_eq!(from_new, 1, "{lines:#?}");
    assert_eq!(
        uploaded(&lines),
        BTreeSet::from([m["config"]["digest"].as_str().unwrap().to_string()]),
        "{lines:#?}"
    );
    let config = config_of(&rebased);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 6);

    // umoci unpacks it: the patch and the image's own files.
    let layout = work.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &rebased,
        &format!("oci:{}:x", p(&layout)),
    ]);
    let bundle = work.path().join("bundle");
    common::images::peer(
        "umoci",
        &[
            "unpack".into(),
            "--image".into(),
            format!("{}:x", p(&layout)).into(),
            bundle.clone().into(),
        ],
    )
    .assert_success();
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/patched")).unwrap(),
        "yes\n"
    );
    assert!(bundle.join("rootfs/opt/big/blob.bin").exists());

    // The new base is not the bottom of the app: refused, nothing pushed.
    let before = reg.access_lines("").len();
    let bad = docker(reg.port, "strata/app:bad");
    let err = env.fails(&["rebase", &app, &bad, "--old-base", &new, "--new-base", &old]);
    assert!(err.contains("are not its bottom layers"), "{err}");
    let lines = log_since(&reg, before);
    assert!(uploads(&lines).is_empty() && !lines.iter().any(|l| l.contains("\"PUT ")));
}

#[test]
fn index_create_append_and_remove_move_no_blob() {
    let reg = Registry::start();
    let env = Env::new();
    let amd = docker(reg.port, "strata/multi:amd64");
    let arm = docker(reg.port, "strata/multi:arm64");
    let all = docker(reg.port, "strata/multi:all");
    env.copy(&[&corpus_base(), &amd]);
    env.json(&["mutate", &amd, &arm, "--set-platform", "linux/arm64/v8"]);

    let before = reg.access_lines("").len();
    env.json(&["index", "create", &all, &amd, &arm]);
    let lines = log_since(&reg, before);
    assert!(uploads(&lines).is_empty(), "{lines:#?}");
    let puts: Vec<_> = lines.iter().filter(|l| l.contains("\"PUT ")).collect();
    assert_eq!(puts.len(), 1, "only the index: {lines:#?}");
    let index = remote_manifest(&all);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms = |index: &Value| -> Vec<String> {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let v = p["variant"]
                    .as_str()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default();
                format!("{}/{}{v}", jstr(p, "os"), jstr(p, "architecture"))
            })
            .collect()
    };
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        index["manifests"][1]["digest"].as_str().unwrap(),
        remote_manifest_digest(&arm)
    );
    // skopeo picks each platform from it.
    let arm_config = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "--config",
        &all,
    ])
    .json();
    assert_eq!(arm_config["architecture"], "arm64");

    env.json(&["index", "remove", &all, "--platform", "linux/arm64"]);
    assert_eq!(platforms(&remote_manifest(&all)), ["linux/amd64"]);
    env.json(&["index", "append", &all, &arm]);
    assert_eq!(
        platforms(&remote_manifest(&all)),
        ["linux/amd64", "linux/arm64/v8"]
    );
    // An image elsewhere is refused: an index moves no blob.
    let err = env.fails(&["index", "append", &all, &corpus_base()]);
    assert!(err.contains("copy it there first"), "{err}");

    // In a layout: the index is a blob named in index.json; skopeo picks from it.
    let work = tempdir();
    let l = |tag: &str| format!("oci:{}:{tag}", p(&work.path().join("l")));
    strata_json(["copy", &corpus_base(), &l("amd64")]);
    strata_json([
        "mutate",
        &l("amd64"),
        &l("arm64"),
        "--set-platform",
        "linux/arm64/v8",
    ]);
    strata_json(["index", "create", &l("all"), &l("amd64"), &l("arm64")]);
    let arm_config = skopeo(&[
        "inspect",
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "--config",
        &l("all"),
    ])
    .json();
    assert_eq!(arm_config["architecture"], "arm64");
}

/// Checks a Windows layer tar as hcsshim's writer expects it (Python's tarfile reads
/// it): `Files` and `Hives` first, every parent directory before its children, every
/// entry with `MSWINDOWS.fileattr` and a creation time, every entry below `Files/` with a
/// security descriptor. Prints the names, one a line.
const PY_WINDOWS_LAYER: &str = r#"
import sys, tarfile
seen = set()
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        n = m.name
        assert n not in seen, n
        parent = n.rsplit("/", 1)[0] if "/" in n else None
        assert parent is None or parent in seen, "no parent before " + n
        if not seen:
            assert n == "Files", n
        elif len(seen) == 1:
            assert n == "Hives", n
        else:
            assert n.startswith("Files/"), n
            assert "MSWINDOWS.rawsd" in m.pax_headers, n
        assert "MSWINDOWS.fileattr" in m.pax_headers, n
        assert "LIBARCHIVE.creationtime" in m.pax_headers, n
        seen.add(n)
        print(n, m.pax_headers["MSWINDOWS.fileattr"])
"#;

fn windows_layer_entries(tar: &Path) -> Vec<String> {
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(PY_WINDOWS_LAYER)
        .arg(tar)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    String::from_utf8(py.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// An OCI layout (tag `win`) of a Windows image as Microsoft ships them: a foreign base
/// layer (its blob at mcr.microsoft.com, in no layout and no registry here) and a
/// distributable layer `base` (a Windows layer tar) on it, Docker media types, a config
/// with `os.version`. Returns the foreign layer's descriptor.
fn windows_layout(layout: &Path, base: &Path) -> Value {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let (digest, size) = sha256_reader(bytes);
        fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
        (digest, size)
    };
    let (base_digest, base_size) = put(&fs::read(base).unwrap());
    let (foreign_digest, _) = sha256_reader(&b"the nanoserver base layer"[..]);
    let (foreign_diff, _) = sha256_reader(&b"its tar"[..]);
    let foreign = serde_json::json!({
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "size": 120_000_000,
        "digest": foreign_digest,
        "urls": [format!("https://mcr.microsoft.com/v2/windows/nanoserver/blobs/{foreign_digest}")],
    });
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5122",
        "config": {"Cmd": ["c:\\windows\\system32\\cmd.exe"]},
        "rootfs": {"type": "layers", "diff_ids": [foreign_diff, base_digest]},
        "history": [{"created_by": "Apply image 10.0.17763.5122"}, {"created_by": "base"}],
    });
    let config = serde_json::to_vec(&config).unwrap();
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config_size, "digest": config_digest},
        "layers": [foreign, {"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                             "size": base_size, "digest": base_digest}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "size": manifest_size, "digest": manifest_digest,
                       "annotations": {"org.opencontainers.image.ref.name": "win"}}],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    foreign
}

#[test]
fn append_to_a_windows_image_adds_a_windows_layer_and_leaves_the_foreign_layer_where_it_is() {
    let reg = Registry::start();
    let env = Env::new();
    let work = tempdir();
    let w = |name: &str| p(&work.path().join(name));

    // The base's own layer: a Linux tree made a Windows layer by `wclayer from-rootfs`.
    let root = work.path().join("winroot");
    fs::create_dir_all(root.join("Windows/System32")).unwrap();
    fs::write(root.join("Windows/System32/base.txt"), "from the base\n").unwrap();
    let linux = std::process::Command::new("tar")
        .args(["-cf", &w("base-linux.tar"), "-C", &p(&root), "Windows"])
        .status()
        .unwrap();
    assert!(linux.success());
    env.run(&[
        "wclayer",
        "from-rootfs",
        "-i",
        &w("base-linux.tar"),
        "-o",
        &w("base.tar"),
    ])
    .assert_success();
    let foreign = windows_layout(&work.path().join("layout"), &work.path().join("base.tar"));
    let foreign_digest = foreign["digest"].as_str().unwrap();
    let base = docker(reg.port, "win/base:ltsc2019");
    env.copy(&[&format!("oci:{}:win", w("layout")), &base]);
    let base_manifest = remote_manifest(&base);
    assert_eq!(base_manifest["layers"][0], foreign);

    // A layer appended from a Linux directory, to another repository.
    let app = script_dir(work.path());
    let before = reg.access_lines("").len();
    let appended = docker(reg.port, "win/app:1");
    env.json(&["append", &base, &appended, "--layer", &p(&app)]);
    let lines = log_since(&reg, before);
    assert!(
        !lines.iter().any(|l| l.contains(foreign_digest)),
        "the foreign layer was asked for: {lines:#?}"
    );
    let manifest = remote_manifest(&appended);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(
        layers[0], foreign,
        "the foreign descriptor is kept as it was"
    );
    assert_eq!(layers[1], base_manifest["layers"][1]);
    let new_layer = layers[2]["digest"].as_str().unwrap();
    assert_eq!(
        uploaded(&lines),
        BTreeSet::from([
            new_layer.to_string(),
            manifest["config"]["digest"].as_str().unwrap().to_string()
        ]),
        "only the new layer and the config are uploaded: {lines:#?}"
    );
    let config = config_of(&appended);
    assert_eq!(config["os"], "windows");
    assert_eq!(config["os.version"], "10.0.17763.5122");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    // The new layer is what hcsshim's writer expects...
    let blob = reg.blob_file(&new_layer.parse().unwrap());
    assert_eq!(
        windows_layer_entries(&blob),
        [
            "Files 16",
            "Hives 16",
            "Files/opt 16",
            "Files/opt/app 16",
            "Files/opt/app/hello.sh 32"
        ]
    );
    // ...and imports on the base's layer folder; the merged view holds both.
    env.run(&["wclayer", "import", "-i", &w("base.tar"), &w("base-folder")])
        .assert_success();
    env.run(&[
        "wclayer",
        "import",
        "-i",
        &p(&blob),
        &w("app-folder"),
        "--parent",
        &w("base-folder"),
    ])
    .assert_success();
    env.run(&[
        "wclayer",
        "extract",
        &w("app-folder"),
        &w("base-folder"),
        &w("merged"),
    ])
    .assert_success();
    let merged = work.path().join("merged");
    assert_eq!(
        fs::read_to_string(merged.join("Windows/System32/base.txt")).unwrap(),
        "from the base\n"
    );
    assert!(fs::read_to_string(merged.join("opt/app/hello.sh"))
        .unwrap()
        .contains("appended $GREETING"));

    // Flatten and export say why they refuse.
    let err = env.fails(&["flatten", &appended, &docker(reg.port, "win/flat:1")]);
    assert!(
        err.contains("flattening a Windows image is refused"),
        "{err}"
    );
    let err = env.fails(&["export", &appended, "-o", &w("rootfs.tar")]);
    assert!(
        err.contains("exporting a Windows image is refused"),
        "{err}"
    );
}

/// A registry that pages its tags as distribution 3 and the hosted registries do
/// (distribution 2.8 never pages tags): at most 3 a page however many `n=` asks for, the
/// next page named by a `Link` header, in its own order (not sorted). It answers every
/// request it reads and records their targets.
struct PagingRegistry {
    port: u16,
    targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

const PAGED_TAGS: [&str; 8] = [
    "latest", "1.10", "1.9", "1.2", "beta", "alpha", "0.1", "edge",
];

impl PagingRegistry {
    fn start() -> PagingRegistry {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    while let Some(head) =
                        strata_registry_testkit::http::read_head(&mut conn, &mut buf)
                    {
                        seen.lock().unwrap().push(head.target.clone());
                        let (status, body, link) = PagingRegistry::answer(&head.target);
                        let mut resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                             Docker-Distribution-API-Version: registry/2.0\r\n\
                             Content-Length: {}\r\n",
                            body.len()
                        );
                        if let Some(link) = link {
                            resp.push_str(&format!("Link: <{link}>; rel=\"next\"\r\n"));
                        }
                        resp.push_str("\r\n");
                        resp.push_str(&body);
                        if conn.write_all(resp.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        PagingRegistry { port, targets }
    }

    /// (status line, body, next page) for a request target.
    fn answer(target: &str) -> (&'static str, String, Option<String>) {
        if target == "/v2/" {
            return ("200 OK", "{}".into(), None);
        }
        let Some(query) = target.strip_prefix("/v2/strata/many/tags/list?") else {
            return ("404 Not Found", r#"{"errors":[]}"#.into(), None);
        };
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")[..]))
        };
        let n: usize = param("n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(100)
            .min(3);
        let from = param("last").map_or(0, |last| {
            PAGED_TAGS.iter().position(|t| *t == last).unwrap() + 1
        });
        let page = &PAGED_TAGS[from..(from + n).min(PAGED_TAGS.len())];
        let next = (from + n < PAGED_TAGS.len())
            .then(|| format!("/v2/strata/many/tags/list?n={n}&last={}", page[n - 1]));
        let body = serde_json::json!({"name": "strata/many", "tags": page}).to_string();
        ("200 OK", body, next)
    }
}

#[test]
fn ls_follows_every_page_of_tags_in_the_registrys_order() {
    let reg = PagingRegistry::start();
    let env = Env::new();
    let tags = env.json(&["ls", &docker(reg.port, "strata/many")]);
    assert_eq!(tags, serde_json::json!(PAGED_TAGS));
    let lists: Vec<String> = reg
        .targets
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.contains("/tags/list"))
        .cloned()
        .collect();
    assert_eq!(
        lists,
        [
            "/v2/strata/many/tags/list?n=1000",
            "/v2/strata/many/tags/list?n=3&last=1.9",
            "/v2/strata/many/tags/list?n=3&last=alpha",
        ],
        "three pages, each asked once"
    );
    // Plain text: one tag a line, in the same order.
    let plain = env.run(&["ls", &docker(reg.port, "strata/many")]);
    plain.assert_success();
    assert_eq!(plain.stdout_text().lines().collect::<Vec<_>>(), PAGED_TAGS);
}

/// The container defaults a person sets: the `config` fields compared across tools
/// (buildah's own `io.buildah.version` label left out).
fn container_defaults(config: &Value) -> Value {
    let mut c = config["config"].clone();
    if let Some(labels) = c["Labels"].as_object_mut() {
        labels.remove("io.buildah.version");
    }
    let keys = [
        "Env",
        "Entrypoint",
        "Cmd",
        "User",
        "WorkingDir",
        "ExposedPorts",
        "Volumes",
        "Labels",
    ];
    keys.iter().map(|k| (k.to_string(), c[k].clone())).collect()
}

#[test]
fn append_and_mutate_agree_with_umoci_insert_config_and_buildah_add_config_commit() {
    // buildah names the image after the layout's path, which must be lowercase.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let work = tempfile::Builder::new()
        .prefix(&format!("strata-peers-{}-{stamp}", std::process::id()))
        .rand_bytes(0)
        .tempdir()
        .unwrap();
    let w = |name: &str| p(&work.path().join(name));
    let app = script_dir(work.path());
    fs::create_dir_all(app.join("etc")).unwrap();
    fs::write(app.join("etc/motd2"), "added\n").unwrap();
    // Whole seconds: umoci's and buildah's tars keep no fraction.
    for f in ["opt/app/hello.sh", "opt/app", "opt", "etc/motd2", "etc", ""] {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000);
        fs::File::open(app.join(f))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let layout = w("layout");
    let tag = |t: &str| format!("oci:{layout}:{t}");
    // A small base (a few entries keep the three unpacks and listings quick).
    let base = work.path().join("base");
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::write(base.join("etc/motd"), "base\n").unwrap();
    fs::write(base.join("bin/tool"), "tool\n").unwrap();
    let store = w("store");
    strata_json(["--root", &store, "import-dir", &p(&base), "example/base:1"]);
    strata_json([
        "--root",
        &store,
        "copy",
        "strata:example/base:1",
        &tag("base"),
    ]);

    strata_json([
        "append",
        &tag("base"),
        &tag("appended"),
        "--layer",
        &p(&app),
    ]);
    strata_json([
        "mutate",
        &tag("appended"),
        &tag("strata"),
        "--env",
        "K=V",
        "--entrypoint",
        r#"["/bin/sh"]"#,
        "--cmd",
        r#"["-c","echo hi"]"#,
        "--user",
        "1000",
        "--workdir",
        "/srv",
        "--label",
        "a=b",
        "--expose",
        "8080/tcp",
        "--volume",
        "/data",
    ]);

    let umoci = |args: &[&str]| {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        common::images::peer("umoci", &args).assert_success();
    };
    let base_ref = format!("{layout}:base");
    umoci(&[
        "insert",
        "--image",
        &base_ref,
        "--tag",
        "umoci",
        &p(&app),
        "/",
    ]);
    umoci(&[
        "config",
        "--image",
        &format!("{layout}:umoci"),
        "--config.env",
        "K=V",
        "--config.entrypoint",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo hi",
        "--config.user",
        "1000",
        "--config.workingdir",
        "/srv",
        "--config.label",
        "a=b",
        "--config.exposedports",
        "8080/tcp",
        "--config.volume",
        "/data",
    ]);

    let buildah = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = vec![
            "--root".into(),
            w("buildah-root").into(),
            "--runroot".into(),
            w("buildah-run").into(),
            "--storage-driver".into(),
            "vfs".into(),
        ];
        all.extend(args.iter().map(Into::into));
        let run = common::images::peer("buildah", &all);
        run.assert_success();
        run
    };
    buildah(&["from", "--pull-never", "--name", "peer", &tag("base")]);
    buildah(&["add", "peer", &p(&app), "/"]);
    buildah(&[
        "config",
        "--env",
        "K=V",
        "--entrypoint",
        r#"["/bin/sh"]"#,
        "--cmd",
        r#"["-c","echo hi"]"#,
        "--user",
        "1000",
        "--workingdir",
        "/srv",
        "--label",
        "a=b",
        "--port",
        "8080/tcp",
        "--volume",
        "/data",
        "peer",
    ]);
    buildah(&["commit", "-q", "peer", &tag("buildah")]);
    buildah(&["rm", "peer"]);

    // The merged trees, as umoci unpacks each (the root's own mtime aside).
    let tree = |t: &str| {
        let bundle = work.path().join(format!("bundle-{t}"));
        umoci(&["unpack", "--image", &format!("{layout}:{t}"), &p(&bundle)]);
        without_root_mtime(&tree_listing(&bundle.join("rootfs"), &[]))
    };
    let ours = tree("strata");
    assert!(ours.contains("opt/app/hello.sh\tf\t0755\t"), "{ours}");
    assert!(ours.contains("etc/motd\t"), "{ours}");
    assert_listing_eq(&tree("umoci"), &ours, "umoci insert vs strata append");
    assert_listing_eq(&tree("buildah"), &ours, "buildah add vs strata append");

    // The config fields each set.
    let config = |t: &str| {
        let run = strata(["config", &tag(t)]);
        run.assert_success();
        container_defaults(&run.json())
    };
    let ours = config("strata");
    assert_eq!(ours["Env"], serde_json::json!(["K=V"]), "{ours:#}");
    assert_eq!(ours["Labels"]["a"], "b", "{ours:#}");
    assert_eq!(config("umoci"), ours, "umoci config vs strata mutate");
    assert_eq!(config("buildah"), ours, "buildah config vs strata mutate");
}
