//! `DirWriter` on a plain directory: every kind of entry, confinement against hostile
//! symlinks, whiteouts and opaque directories, metadata, and the cost per entry.
//! Helpers are here; the cases are in `kinds` (each kind of entry, metadata, limits),
//! `confinement` (hostile symlinks and links), `layers` (whiteouts, opaque markers),
//! `background` (files finished on the writer's second thread) and `mapped` (layers read
//! through memory maps).

mod background;
mod confinement;
mod kinds;
mod layers;
mod mapped;

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{self as rfs, Mode};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use strata_layer::dir_writer::{ApplySummary, DirWriter, DirWriterOptions};
use strata_layer::{Entry, EntryKind, Error, LayerPath, LayerWriter, SparseExtent, Timestamp};
use strata_testkit::entries::EntryExt;

fn p(s: &str) -> LayerPath {
    LayerPath::from_tar_name(s.as_bytes()).unwrap()
}

/// An entry and the data that follows it.
struct Item(Entry, Vec<u8>);

fn file(path: &str, data: &[u8]) -> Item {
    Item(Entry::file(path, data.len() as u64), data.to_vec())
}
fn dir(path: &str) -> Item {
    Item(Entry::dir(path), Vec::new())
}
fn symlink(path: &str, target: &str) -> Item {
    Item(Entry::symlink(path, target).mode(0), Vec::new())
}
fn hardlink(path: &str, target: &str) -> Item {
    Item(Entry::hardlink(path, target), Vec::new())
}
fn whiteout(path: &str) -> Item {
    Item(Entry::whiteout(path), Vec::new())
}
fn opaque(path: &str) -> Item {
    Item(Entry::opaque(path), Vec::new())
}
fn with_mode(mut i: Item, mode: u32) -> Item {
    i.0.meta.mode = mode;
    i
}
fn with_mtime(mut i: Item, secs: i64, nanos: u32) -> Item {
    i.0.meta.mtime = Timestamp::new(secs, nanos);
    i
}

fn apply_with(root: &Path, items: &[Item], opts: DirWriterOptions) -> Result<ApplySummary, Error> {
    let mut w = DirWriter::open(root, opts)?;
    for Item(e, data) in items {
        w.add(e)?;
        if !data.is_empty() {
            w.write_data(data)?;
        }
    }
    w.finish()
}
fn apply(root: &Path, items: &[Item]) -> Result<ApplySummary, Error> {
    apply_with(root, items, DirWriterOptions::default())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A name under the host's /tmp that no test creates on purpose: escapes aim at it.
fn host_victim(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "strata-evil-dw-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    assert!(!Path::new("/tmp").join(&name).exists());
    name
}

/// A root inside a scratch directory that also holds an `outside/sentinel` file.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}
impl Scratch {
    fn new() -> Self {
        Self::in_dir(tempfile::tempdir().unwrap())
    }
    /// On tmpfs when there is one: the deep-tree tests create tens of thousands of
    /// directories, which ext4's inode allocator makes slow after many deletions.
    fn on_tmpfs() -> Self {
        Self::in_dir(
            tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        )
    }
    fn in_dir(tmp: tempfile::TempDir) -> Self {
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"sentinel\n").unwrap();
        // Explicit: another test changes the process umask for a moment.
        std::fs::set_permissions(
            outside.join("sentinel"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Scratch {
            _tmp: tmp,
            root,
            outside,
        }
    }
    fn sentinel(&self) -> String {
        self.outside.join("sentinel").to_str().unwrap().to_string()
    }
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
        let s = self.outside.join("sentinel");
        assert_eq!(std::fs::read(&s).unwrap(), b"sentinel\n");
        let md = std::fs::symlink_metadata(&s).unwrap();
        assert_eq!(md.nlink(), 1);
        assert!(md.file_type().is_file());
        assert_eq!(md.permissions().mode() & 0o7777, 0o644);
    }
}

fn lmeta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap()
}
