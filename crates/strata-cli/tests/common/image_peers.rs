//! The image peers as oracles: what skopeo and podman say an image is.

use std::ffi::OsString;
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

/// What skopeo reads as the image's config (raw bytes, not re-serialized).
pub fn skopeo_facts(transport: &str) -> Facts {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--config", transport]);
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
