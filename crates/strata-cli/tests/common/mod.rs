//! Shared helpers for the `strata` integration tests: where the corpus is, running the
//! binary (with a timeout), hashing, tree listings, and reading the corpus's OCI layout.
//!
//! The corpus is built by `CORPUS_SIZE=small ../shared/testdata/make-corpus.sh
//! target/corpus`; tests find it through `STRATA_CORPUS`, else `<workspace>/target/corpus`,
//! and fail (never skip) when it is missing.

#![allow(dead_code)]

pub mod engines;
pub mod hostile;
pub mod images;
pub mod registry;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The shared folder (specs and test data): `STRATA_SHARED`, else `shared/` beside the
/// repository.
pub fn shared() -> PathBuf {
    match std::env::var_os("STRATA_SHARED") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace()
            .parent()
            .map(|p| p.join("shared"))
            .expect("the workspace has a parent directory"),
    }
}

/// The tree-listing oracle shipped with the test data.
pub fn tree_listing_script() -> PathBuf {
    shared().join("testdata/tree-listing.py")
}

/// How long any one `strata` run may take before the test calls it a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (two levels above this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in <workspace>/crates/strata-cli")
        .to_path_buf()
}

/// The corpus directory; panics with instructions when it is absent or incomplete.
pub fn corpus() -> &'static Path {
    static CORPUS: OnceLock<PathBuf> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let (dir, from) = match std::env::var_os("STRATA_CORPUS") {
            Some(v) if !v.is_empty() => (PathBuf::from(v), "STRATA_CORPUS"),
            _ => (
                workspace().join("target/corpus"),
                "the default <workspace>/target/corpus",
            ),
        };
        let needed = [
            "oci/index.json",
            "layers.tsv",
            "expected/base.rootfs.tsv",
            "expected/corpus.rootfs.tsv",
            "edge/expect-synthetic.tsv",
            "edge/expect-tree.tsv",
            "edge/tree.expected.tsv",
            "evil/expect.tsv",
        ];
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|p| !dir.join(p).exists())
            .collect();
        if !missing.is_empty() {
            panic!(
                "the test corpus is missing or incomplete at {} (from {from}; missing: {}).\n\
                 Build it with `CORPUS_SIZE=small ../shared/testdata/make-corpus.sh target/corpus` \
                 from the workspace root, or point STRATA_CORPUS at a built corpus.",
                dir.display(),
                missing.join(", ")
            );
        }
        dir
    })
}

pub fn edge(name: &str) -> PathBuf {
    corpus().join("edge").join(name)
}

pub fn evil(name: &str) -> PathBuf {
    corpus().join("evil").join(name)
}

/// A fresh temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("create a temporary directory")
}

// ---------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------

/// The result of one command run.
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics (showing everything) unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstderr:\n{}\nstdout:\n{}",
            self.cmdline,
            self.status,
            self.stderr,
            self.stdout_text()
        );
        self
    }

    /// Panics unless the command failed cleanly: a non-zero exit (not a signal) with a
    /// `strata: error:` message on stderr.
    pub fn assert_strata_error(&self) -> &Self {
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

    /// Parses stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no valid JSON ({e}):\n{}",
                self.cmdline,
                self.stdout_text()
            )
        })
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let cmdline = show(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for a child") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
            panic!("`{cmdline}` did not finish within {timeout:?} (hang?); killed it.\nstderr so far:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Run {
        cmdline,
        status,
        stdout,
        stderr,
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

/// `strata layer unpack -i LAYER DIR [extra...] --json`, required to succeed.
pub fn unpack(layer: &Path, dir: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<OsString> = vec![
        "layer".into(),
        "unpack".into(),
        "-i".into(),
        layer.into(),
        dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    strata_json(args)
}

/// `strata layer unpack -i LAYER DIR [extra...]`, whatever the outcome.
pub fn try_unpack(layer: &Path, dir: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = vec![
        "layer".into(),
        "unpack".into(),
        "-i".into(),
        layer.into(),
        dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    strata(args)
}

/// A string field of a JSON object, or a panic naming it.
pub fn jstr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("JSON has no string `{key}`: {v}"))
}

pub fn ju64(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("JSON has no number `{key}`: {v}"))
}

// ---------------------------------------------------------------------------------
// Hashing (through sha256sum, gzip and zstd: the test profile builds the hashing and
// compression crates unoptimized, at a few tens of MB/s)
// ---------------------------------------------------------------------------------

/// `sha256:<hex>` of everything `r` yields, and the byte count (piped to `sha256sum`).
pub fn sha256_reader(mut r: impl Read) -> (String, u64) {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let n = io::copy(&mut r, &mut stdin).expect("feed sha256sum");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let text = String::from_utf8(out.stdout).expect("sha256sum output");
    let hex = text.split_whitespace().next().expect("a digest");
    assert_eq!(hex.len(), 64, "unexpected sha256sum output {text:?}");
    (format!("sha256:{hex}"), n)
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256_reader(f).0
}

/// The decompressing command for a layer file, chosen by magic (None: plain tar).
fn decompressor(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Some("gzip")
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Some("zstd")
    } else {
        None
    }
}

/// Runs `f` on a layer's uncompressed tar stream (gzip, zstd or plain by magic).
fn with_tar_stream<T>(path: &Path, f: impl FnOnce(&mut dyn Read) -> T) -> T {
    match decompressor(path) {
        None => f(&mut File::open(path).expect("open layer")),
        Some(tool) => {
            let mut child = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run {tool}: {e}"));
            let mut out = child.stdout.take().expect("piped stdout");
            let v = f(&mut out);
            drop(out);
            let st = child.wait().expect("wait for the decompressor");
            assert!(st.success(), "{tool} -dc {} failed", path.display());
            v
        }
    }
}

/// `sha256:<hex>` and size of a layer's uncompressed tar.
pub fn uncompressed_sha256(path: &Path) -> (String, u64) {
    with_tar_stream(path, |r| sha256_reader(r))
}

/// Writes a layer's uncompressed tar to `out`.
pub fn decompress_to(path: &Path, out: &Path) {
    let mut w = File::create(out).expect("create output");
    with_tar_stream(path, |r| io::copy(r, &mut w).expect("decompress"));
}

// ---------------------------------------------------------------------------------
// Tree listings (the oracle)
// ---------------------------------------------------------------------------------

/// `python3 tree-listing.py [flags] DIR`.
pub fn tree_listing(dir: &Path, flags: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(tree_listing_script()).args(flags).arg(dir);
    let run = run_with_timeout(cmd, Duration::from_secs(300));
    run.assert_success();
    assert!(
        run.stderr.is_empty(),
        "tree-listing.py wrote to stderr:\n{}",
        run.stderr
    );
    String::from_utf8(run.stdout).expect("tree-listing output is UTF-8 (it escapes)")
}

/// Replaces one tab-separated column (0-based) of the line for `path`.
pub fn set_column(listing: &str, path: &str, column: usize, value: &str) -> String {
    listing
        .lines()
        .map(|line| {
            let mut cols: Vec<&str> = line.split('\t').collect();
            if cols[0] == path && cols.len() > column {
                cols[column] = value;
            }
            cols.join("\t") + "\n"
        })
        .collect()
}

/// The root directory's mtime is not part of any layer: blank it.
pub fn without_root_mtime(listing: &str) -> String {
    set_column(listing, ".", 6, "-")
}

/// Applies `f` to every line's columns.
pub fn map_columns(listing: &str, mut f: impl FnMut(&mut Vec<String>)) -> String {
    listing
        .lines()
        .map(|line| {
            let mut cols: Vec<String> = line.split('\t').map(str::to_owned).collect();
            f(&mut cols);
            cols.join("\t") + "\n"
        })
        .collect()
}

/// Keeps the lines whose path satisfies `keep`.
pub fn filter_paths(listing: &str, keep: impl Fn(&str) -> bool) -> String {
    listing
        .lines()
        .filter(|l| keep(l.split('\t').next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Asserts two listings are equal, printing a unified diff (`diff -u`) when not.
pub fn assert_listing_eq(expected: &str, actual: &str, what: &str) {
    if expected == actual {
        return;
    }
    let dir = tempdir();
    let (e, a) = (dir.path().join("expected"), dir.path().join("actual"));
    fs::write(&e, expected).unwrap();
    fs::write(&a, actual).unwrap();
    let out = Command::new("diff")
        .args(["-u", "--label", "expected", "--label", "actual"])
        .arg(&e)
        .arg(&a)
        .output()
        .expect("run diff");
    let diff = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = diff.lines().collect();
    let shown = lines.len().min(400);
    panic!(
        "{what}: tree listings differ ({} expected lines, {} actual; columns: path type mode uid gid \
         size mtime_ns target sha256 link_group rdev xattrs)\n{}{}",
        expected.lines().count(),
        actual.lines().count(),
        lines[..shown].join("\n"),
        if shown < lines.len() {
            format!("\n... {} more diff lines", lines.len() - shown)
        } else {
            String::new()
        }
    );
}

// ---------------------------------------------------------------------------------
// The corpus image
// ---------------------------------------------------------------------------------

/// One row of `layers.tsv`.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub index: usize,
    pub blob_digest: String,
    pub blob_bytes: u64,
    pub diff_id: String,
    pub docker_archive_member: String,
    pub created_by: String,
}

/// `layers.tsv`: the corpus tag's layers, in order.
pub fn layers_tsv() -> Vec<LayerRow> {
    let text = fs::read_to_string(corpus().join("layers.tsv")).expect("read layers.tsv");
    let mut lines = text.lines();
    let header = lines.next().expect("layers.tsv has a header");
    assert_eq!(
        header, "index\tblob_digest\tblob_bytes\tdiff_id\tdocker_archive_member\tcreated_by",
        "layers.tsv header changed"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(6, '\t').collect();
            assert_eq!(c.len(), 6, "bad layers.tsv row: {l}");
            LayerRow {
                index: c[0].parse().expect("index"),
                blob_digest: c[1].to_owned(),
                blob_bytes: c[2].parse().expect("blob_bytes"),
                diff_id: c[3].to_owned(),
                docker_archive_member: c[4].to_owned(),
                created_by: c[5].to_owned(),
            }
        })
        .collect()
}

/// One layer of an OCI manifest.
#[derive(Debug, Clone)]
pub struct OciLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The layers of `tag` in the OCI layout at `layout`, bottom first.
pub fn oci_layers_in(layout: &Path, tag: &str) -> Vec<OciLayer> {
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"]
        .as_array()
        .expect("index.json has manifests");
    let desc = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.join("index.json").display()));
    let manifest = read_json(&blob_path(layout, jstr(desc, "digest")));
    manifest["layers"]
        .as_array()
        .expect("manifest has layers")
        .iter()
        .map(|l| {
            let digest = jstr(l, "digest").to_owned();
            OciLayer {
                path: blob_path(layout, &digest),
                size: ju64(l, "size"),
                media_type: jstr(l, "mediaType").to_owned(),
                digest,
            }
        })
        .collect()
}

/// The layers of `tag` in the corpus's `oci/` layout, bottom first.
pub fn oci_layers(tag: &str) -> Vec<OciLayer> {
    oci_layers_in(&corpus().join("oci"), tag)
}

/// Applies every layer of `tag`, in order, onto `dir`.
pub fn apply_tag(tag: &str, dir: &Path) {
    for layer in oci_layers(tag) {
        unpack(&layer.path, dir, &[]);
    }
}

// ---------------------------------------------------------------------------------
// Looking at trees
// ---------------------------------------------------------------------------------

/// Every path below `root` (relative, as bytes), not following symlinks.
pub fn walk(root: &Path) -> BTreeSet<Vec<u8>> {
    fn go(root: &Path, rel: &Path, out: &mut BTreeSet<Vec<u8>>) {
        let dir = root.join(rel);
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let e = e.expect("dir entry");
            let r = rel.join(e.file_name());
            out.insert(r.as_os_str().as_bytes().to_vec());
            if e.file_type().expect("file type").is_dir() {
                go(root, &r, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    go(root, Path::new(""), &mut out);
    out
}

/// The names directly in `dir`, as bytes.
pub fn names(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().into_vec())
        .collect()
}

pub fn name_set(names: &[&str]) -> BTreeSet<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

/// Shows a set of byte names readably.
pub fn show_names(set: &BTreeSet<Vec<u8>>) -> Vec<String> {
    set.iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// The content of a regular file (panics naming it).
pub fn read(path: &Path) -> Vec<u8> {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    assert!(
        m.file_type().is_file(),
        "{} is not a regular file ({:?})",
        path.display(),
        m.file_type()
    );
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn lstat(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

pub fn assert_file(path: &Path, content: &[u8]) {
    let got = read(path);
    assert_eq!(
        got,
        content,
        "content of {}: got {:?}, want {:?}",
        path.display(),
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(content)
    );
}

pub fn assert_symlink(path: &Path, target: &[u8]) {
    let m = lstat(path);
    assert!(
        m.file_type().is_symlink(),
        "{} is not a symlink ({:?})",
        path.display(),
        m.file_type()
    );
    let got = fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
    assert_eq!(
        got.as_os_str().as_bytes(),
        target,
        "target of {}: got {:?}",
        path.display(),
        got
    );
}

pub fn assert_dir(path: &Path) {
    let m = lstat(path);
    assert!(
        m.file_type().is_dir(),
        "{} is not a directory ({:?})",
        path.display(),
        m.file_type()
    );
}

pub fn assert_absent(path: &Path) {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("lstat {}: {e}", path.display()),
        Ok(m) => panic!(
            "{} must not exist, but is there ({:?})",
            path.display(),
            m.file_type()
        ),
    }
}

/// Permission bits with setuid/setgid/sticky.
pub fn mode(path: &Path) -> u32 {
    lstat(path).mode() & 0o7777
}

/// mtime as (seconds, nanoseconds).
pub fn mtime(path: &Path) -> (i64, i64) {
    let m = lstat(path);
    (m.mtime(), m.mtime_nsec())
}

/// All extended attributes of `path` (not following symlinks), sorted by name.
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut list = vec![0u8; 1 << 16];
    let n = rustix::fs::llistxattr(path, &mut list[..])
        .unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display()));
    let mut out = Vec::new();
    for name in list[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 1 << 16];
        let k = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..])
            .unwrap_or_else(|e| panic!("getxattr {} {name}: {e}", path.display()));
        value.truncate(k);
        out.push((name, value));
    }
    out.sort();
    out
}

/// (major, minor) of a device node.
pub fn rdev(path: &Path) -> (u32, u32) {
    let d = lstat(path).rdev();
    (rustix::fs::major(d), rustix::fs::minor(d))
}

/// Access to a path too long for one system call (over PATH_MAX): opens each parent
/// directory in turn (never following symlinks) and names the entry through
/// `/proc/self/fd/N/<leaf>`. Keep the returned fd alive while using the path.
pub fn deep(root: &Path, rel: &[u8]) -> (OwnedFd, PathBuf) {
    use rustix::fs::{Mode, OFlags, CWD};
    let mut parts: Vec<&[u8]> = rel
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let leaf = parts.pop().expect("a non-empty relative path");
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::openat(CWD, root, flags, Mode::empty()).expect("open root");
    for p in parts {
        fd = rustix::fs::openat(&fd, OsStr::from_bytes(p), flags, Mode::empty()).unwrap_or_else(
            |e| {
                panic!(
                    "open component {:?} of {:?} below {}: {e}",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(rel),
                    root.display()
                )
            },
        );
    }
    let path =
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(OsStr::from_bytes(leaf));
    (fd, path)
}

/// Runs `sh -c SCRIPT` and returns stdout, requiring success.
pub fn sh(script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    let run = run_with_timeout(cmd, Duration::from_secs(300));
    run.assert_success();
    run.stdout_text()
}
