//! Registry helpers shared by the registry tests: `docker://` names on loopback, a
//! `strata` with a home of its own (no auth file of this machine), skopeo, and what the
//! registry's access log shows.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use strata_registry_testkit::Registry;

use super::images::peer;
use super::{
    jstr, oci_layers, run_with_timeout, sha256_reader, strata_cmd, tempdir, OciLayer, Run,
    StrataError, TIMEOUT,
};

/// `docker://127.0.0.1:PORT/NAME` (loopback: plain HTTP, no flag needed).
pub fn docker(port: u16, name: &str) -> String {
    format!("docker://127.0.0.1:{port}/{name}")
}

/// Runs `strata` with a home of its own: no auth file of this machine is read unless a
/// test writes one there (`auth.json`, found through `REGISTRY_AUTH_FILE`).
pub struct Env {
    pub home: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { home: tempdir() }
    }

    pub fn auth_file(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = strata_cmd(args);
        let h = self.home.path();
        cmd.env("HOME", h)
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("XDG_RUNTIME_DIR", h.join("run"))
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("DOCKER_CONFIG", h.join("docker"))
            .env("STRATA_TMPDIR", h);
        run_with_timeout(cmd, TIMEOUT)
    }

    /// `strata --json ARGS`, required to succeed: its JSON result.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        run.assert_success();
        run.json()
    }

    /// `strata ARGS`, required to fail cleanly; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        run.assert_strata_error();
        run.stderr
    }

    /// `strata --json copy ARGS`, required to succeed.
    pub fn copy(&self, args: &[&str]) -> Value {
        self.json(&[&["copy"], args].concat())
    }

    /// `strata copy ARGS`, required to fail cleanly; returns its stderr.
    pub fn copy_fails(&self, args: &[&str]) -> String {
        self.fails(&[&["copy"], args].concat())
    }
}

pub fn skopeo(args: &[&str]) -> Run {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let run = peer("skopeo", &args);
    run.assert_success();
    run
}

/// The sha256 of the manifest a registry serves for `transport`, as skopeo fetches it.
pub fn remote_manifest_digest(transport: &str) -> String {
    sha256_reader(&skopeo(&["inspect", "--tls-verify=false", "--raw", transport]).stdout[..]).0
}

pub fn remote_manifest(transport: &str) -> Value {
    skopeo(&["inspect", "--tls-verify=false", "--raw", transport]).json()
}

/// The access-log lines of the registry from line `from` on, once it stopped growing
/// (it writes a line after the response went out).
pub fn log_since(reg: &Registry, from: usize) -> Vec<String> {
    let mut seen = reg.access_lines("").len();
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let now = reg.access_lines("").len();
        if now == seen {
            break;
        }
        seen = now;
    }
    reg.access_lines("").split_off(from)
}

/// Requests that carry blob bytes to the registry, or start an upload.
pub fn uploads(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| {
            l.contains("\"PATCH ") || (l.contains("/blobs/uploads/") && !l.contains("?mount="))
        })
        .collect()
}

pub fn layer_digests(report: &Value) -> Vec<String> {
    report["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| jstr(l, "digest").to_owned())
        .collect()
}

/// Flips a byte in the middle of the registry's copy of the corpus image's largest layer
/// (pushed there before); returns that layer.
pub fn corrupt_largest_layer(reg: &Registry) -> OciLayer {
    let layer = oci_layers("corpus")
        .into_iter()
        .max_by_key(|l| l.size)
        .unwrap();
    let stored = reg.blob_file(&strata_registry::Digest::parse(&layer.digest).unwrap());
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&stored, &bytes).unwrap();
    layer
}

/// The access-log `lines` of a push show `count` blobs (config and layers) mounted from
/// repository `from`, each answered 201, and nothing uploaded.
pub fn assert_mounted_only(lines: &[String], from: &str, count: usize) {
    let from = format!("from={}", from.replace('/', "%2F"));
    let mounts: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("?mount=") && l.contains(&from))
        .collect();
    assert_eq!(mounts.len(), count, "blobs mounted {from}: {lines:#?}");
    assert!(mounts.iter().all(|l| l.contains("\" 201 ")), "{mounts:#?}");
    assert!(uploads(lines).is_empty(), "uploaded: {lines:#?}");
}
