//! Looking at directory trees: the tree-listing oracle shipped with the test data (one
//! line per path: type, mode, owner, size, mtime, target, content digest, hard-link
//! group, device, xattrs) and assertions on single paths.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{run_with_timeout, shared, tempdir};

/// The tree-listing oracle shipped with the test data.
pub fn tree_listing_script() -> PathBuf {
    shared().join("testdata/tree-listing.py")
}

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
