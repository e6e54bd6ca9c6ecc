//! Facts about images as the peers read them: image IDs and diffIDs through `skopeo
//! inspect`, and a check of every blob of an OCI layout.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// An image's ID and diffIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub id: String,
    pub diff_ids: Vec<String>,
}

pub fn facts_of_config(raw: &[u8]) -> Facts {
    let config: Value = serde_json::from_slice(raw).expect("config JSON");
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().expect("a diffID string").to_owned())
        .collect();
    Facts {
        id: sha256_reader(raw).0,
        diff_ids,
    }
}

/// What skopeo reads as the image's config (raw bytes, not re-serialized). Registries
/// (`docker://`) are the tests' own, on loopback over plain HTTP.
pub fn skopeo_facts(transport: &str) -> Facts {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--config"]);
    if transport.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    cmd.arg(transport);
    let run = run_with_timeout(cmd, Duration::from_secs(120));
    run.assert_success();
    facts_of_config(&run.stdout)
}

/// The corpus image of `tag` as the corpus's OCI layout (umoci's) holds it.
pub fn corpus_facts(tag: &str) -> Facts {
    skopeo_facts(&format!("oci:{}:{tag}", corpus().join("oci").display()))
}

pub fn peer(program: &str, args: &[OsString]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_with_timeout(cmd, Duration::from_secs(300))
}

/// Checks every blob of the OCI layout `dir` against its name, and each layer of each
/// image against its diffID (decompressed by magic).
pub fn check_layout_blobs(dir: &Path) {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let blob = |d: &str| dir.join("blobs/sha256").join(&d[7..]);
        let mdigest = jstr(m, "digest");
        assert_eq!(
            sha256_file(&blob(mdigest)),
            mdigest,
            "manifest blob of {}",
            dir.display()
        );
        let manifest: Value = serde_json::from_slice(&fs::read(blob(mdigest)).unwrap()).unwrap();
        let cdigest = jstr(&manifest["config"], "digest");
        let facts = facts_of_config(&fs::read(blob(cdigest)).unwrap());
        assert_eq!(facts.id, cdigest);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), facts.diff_ids.len());
        for (l, diff) in layers.iter().zip(&facts.diff_ids) {
            let path = blob(jstr(l, "digest"));
            assert_eq!(
                sha256_file(&path),
                jstr(l, "digest"),
                "layer blob {}",
                path.display()
            );
            assert_eq!(fs::metadata(&path).unwrap().len(), ju64(l, "size"));
            assert_eq!(
                &uncompressed_sha256(&path).0,
                diff,
                "diffID of {}",
                path.display()
            );
        }
    }
}

/// podman with its own store in a temporary directory, run as make-corpus.sh runs it.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        Podman { dir: tempdir() }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let root = self.dir.path().join("root");
        let run = self.dir.path().join("run");
        let mut all: Vec<OsString> = vec![
            "--root".into(),
            root.into(),
            "--runroot".into(),
            run.into(),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "none".into(),
        ];
        all.extend(args.iter().map(OsString::from));
        let r = peer("podman", &all);
        r.assert_success();
        r
    }

    pub fn inspect(&self, name: &str) -> Facts {
        let out = self.run(&["image", "inspect", name]).json();
        let img = &out[0];
        Facts {
            id: format!("sha256:{}", jstr(img, "Id")),
            diff_ids: img["RootFS"]["Layers"]
                .as_array()
                .expect("RootFS.Layers")
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect(),
        }
    }
}

/// The ID and diffIDs of an image as `strata --json inspect` reports them.
pub fn inspect_facts(inspect: &Value) -> Facts {
    Facts {
        id: jstr(inspect, "id").to_owned(),
        diff_ids: inspect["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| jstr(l, "diff_id").to_owned())
            .collect(),
    }
}
