//! Shared helpers for the `strata` integration tests: running the binary (bound to a
//! store or not) and what its errors look like. What is not about the CLI (the corpus,
//! running commands, hashing, tree listings and assertions, the hostile-layer sentinel)
//! is `strata-testkit`, re-exported here.

#![allow(dead_code)]

pub mod engines;
pub mod images;
pub mod registry;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
pub use strata_testkit::*;

/// How a `strata` command fails: a non-zero exit (not a signal) with a `strata: error:`
/// message on stderr.
pub trait StrataError {
    /// Panics unless the command failed cleanly.
    fn assert_strata_error(&self) -> &Self;
}

impl StrataError for Run {
    fn assert_strata_error(&self) -> &Self {
        assert!(
            !self.status.success(),
            "`{}` succeeded but must fail\nstderr:\n{}\nstdout:\n{}",
            self.cmdline,
            self.stderr,
            self.stdout_text()
        );
        assert!(
            self.status.code().is_some(),
            "`{}` was killed by a signal ({}) instead of failing with an error\nstderr:\n{}",
            self.cmdline,
            self.status,
            self.stderr
        );
        assert!(
            self.stderr.lines().any(|l| l.starts_with("strata: error:")),
            "`{}` failed ({}) without a `strata: error:` message\nstderr:\n{}",
            self.cmdline,
            self.status,
            self.stderr
        );
        self
    }
}

/// `strata` bound to one store: an implementor says where it is (and with which driver
/// it is made); building and running its commands comes with it.
pub trait StoreCli {
    fn root(&self) -> &Path;

    /// `--driver` for every command (a new store is made with it), or none.
    fn driver(&self) -> Option<&str> {
        None
    }

    /// `strata --root ROOT [--driver D] ARGS`, not yet run.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = strata_cmd(["--root"]);
        cmd.arg(self.root());
        if let Some(d) = self.driver() {
            cmd.args(["--driver", d]);
        }
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        run_with_timeout(self.cmd(args), TIMEOUT)
    }

    /// Runs, required to succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        r.assert_success();
        r
    }

    /// `--json ARGS`, required to succeed: the JSON result.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }
}

/// A store in a temporary directory (`DIR/store`), with room beside it for the files a
/// test writes ([`TempStore::path`]); all of it goes when the value is dropped.
pub struct TempStore {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl TempStore {
    pub fn new() -> TempStore {
        let dir = tempdir();
        let root = dir.path().join("store");
        TempStore { dir, root }
    }

    /// `name` beside the store, in its temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The image's ID and diffIDs as the store holds them.
    pub fn facts(&self, image: &str) -> images::Facts {
        images::inspect_facts(&self.json(&["inspect", image]))
    }
}

impl StoreCli for TempStore {
    fn root(&self) -> &Path {
        &self.root
    }
}

/// A `strata` command with the given arguments.
pub fn strata_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args);
    cmd
}

/// Runs `strata ARGS` (60 s timeout).
pub fn strata<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_timeout(strata_cmd(args), TIMEOUT)
}

/// Runs `strata --json ARGS`, requires success and returns the parsed JSON.
pub fn strata_json<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<OsString> = vec!["--json".into()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
    let run = strata(&all);
    run.assert_success();
    run.json()
}

/// `layer unpack -i LAYER DIR [extra...]`.
fn unpack_args(layer: &Path, dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "layer".into(),
        "unpack".into(),
        "-i".into(),
        layer.into(),
        dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// `strata layer unpack -i LAYER DIR [extra...] --json`, required to succeed.
pub fn unpack(layer: &Path, dir: &Path, extra: &[&str]) -> Value {
    strata_json(unpack_args(layer, dir, extra))
}

/// `strata layer unpack -i LAYER DIR [extra...]`, whatever the outcome.
pub fn try_unpack(layer: &Path, dir: &Path, extra: &[&str]) -> Run {
    strata(unpack_args(layer, dir, extra))
}

/// Applies every layer of `tag`, in order, onto `dir`.
pub fn apply_tag(tag: &str, dir: &Path) {
    for layer in oci_layers(tag) {
        unpack(&layer.path, dir, &[]);
    }
}
