//! Layer folders: the transport format Windows' `ExportLayer`/`ImportLayer` exchange,
//! and base layers, kept on a Linux file system (`../shared/specs/windows-layer.md` §4).
//!
//! # The folder on Linux
//! Windows keeps four FILETIMEs and attributes on every NTFS object; Linux cannot, so a
//! layer folder here is the transport folder with those kept alongside:
//!
//! | object | Linux form |
//! | --- | --- |
//! | `Files\a.txt` (and everything at or under `UtilityVM\Files`, and every object of a base layer) | regular file: `u32` attributes + the backup stream, byte for byte as Windows writes it |
//! | a directory among those | real directory + sibling `<dir>.$wcidirs$` (attributes + the directory's backup stream) |
//! | `Files`, `Hives`, `UtilityVM` themselves | real directory (+ `<name>.$wcidirs$` with the entry's stream, as hcsshim writes it) |
//! | `Hives\System_Delta` … | regular file holding the raw hive bytes |
//! | `tombstones.txt` | the deletions of a diff layer, in the historic hcsshim format (§4.4) |
//! | `layerchain.json` | the parents, nearest first, as Docker writes it (§4.8) |
//! | `bcd.bak` … | plain copies of the UtilityVM boot store, as hcsshim keeps them (§4.7) |
//!
//! The four FILETIMEs of an object are the xattr [`TIMES_XATTR`] (32 bytes, i64 LE each,
//! FILE_BASIC_INFO order) on its stream file (or on the real object), and its Linux
//! mtime/atime are set to LastWrite/LastAccess for people and tools. Hard links are
//! Linux hard links (links to a parent layer cross folders: layers must share a file
//! system, as on Windows). Nothing else lives in a layer folder; root files other than
//! the three top-level directories are layer metadata and never entries.
//!
//! # Lifecycle
//! [`LayerFolderWriter::create`] an empty folder with its parents (nearest first; none
//! makes a base layer), then per entry [`add`](LayerFolderWriter::add) and write its
//! backup stream with `Write`, or [`add_link`](LayerFolderWriter::add_link), or
//! [`remove`](LayerFolderWriter::remove); [`finish`](LayerFolderWriter::finish) writes
//! tombstones, pending links and directory times. [`LayerFolderReader::open`] yields the
//! entries back in hcsshim's order (§4.5 for diff layers, §4.7 for base layers).
//!
//! Both also speak the crate-wide vocabulary, in the form a Windows layer tar holds
//! entries (`MSWINDOWS.*` PAX records, alternate streams as `<file>:<stream>` entries):
//! the writer is a [`strata_layer::LayerWriter`], which is how [`crate::import_layer`]
//! fills it, and the reader a [`strata_layer::LayerReader`], which is how
//! [`crate::export_layer`] empties it into a tar. The entries it reads carry go-winio's
//! header style with the Windows-derived mode field ([`strata_layer::Entry::header`]),
//! so a tar written from them is the one Windows writes, byte for byte; see `entries.rs`.
//!
//! Every object of a layer folder is reached through a [`strata_layer::root::Root`]
//! of the folder (and of each parent): names are resolved inside it, never joined onto
//! the folder's path.
//!
//! Modules: `writer` and `reader` (the Windows level), `entries` (the entry level),
//! `tombstones` (`tombstones.txt`), `layerchain` (`layerchain.json`).
//!
//! ```
//! use std::io::Write;
//! use strata_wclayer::folder::{LayerFolderReader, LayerFolderWriter, LayerChain};
//! use strata_wclayer::{FileAttributes, FileBasicInfo, WinPath};
//! let tmp = tempfile::tempdir().unwrap();
//! let layer = tmp.path().join("layer");
//! let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
//! let dir = FileBasicInfo { attributes: FileAttributes(0x10), ..Default::default() };
//! w.add(&WinPath::parse("Files").unwrap(), &dir).unwrap();
//! w.add(&WinPath::parse("Files\\a.txt").unwrap(), &FileBasicInfo { attributes: FileAttributes(0x20), ..Default::default() }).unwrap();
//! w.write_all(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']).unwrap(); // DATA "hi"
//! w.finish().unwrap();
//! assert_eq!(std::fs::read(layer.join("Files/a.txt")).unwrap()[..4], [0x20, 0, 0, 0]);
//! let mut r = LayerFolderReader::open(&LayerChain::new(&layer, &[])).unwrap();
//! assert_eq!(r.next().unwrap().unwrap().name.as_str(), "Files");
//! assert_eq!(r.next().unwrap().unwrap().name.as_str(), "Files\\a.txt");
//! assert!(r.next().unwrap().is_none());
//! ```

mod entries;
mod layerchain;
mod reader;
mod tombstones;
mod writer;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use strata_layer::root::{Dir, Root};

use crate::backup;
use crate::{Error, FileAttributes, FileBasicInfo, FileTime, WinPath};

pub use layerchain::{layerchain_json, parse_layerchain};
pub use reader::{EntryStream, FolderEntry, LayerFolderReader};
pub use tombstones::{parse_tombstones, tombstones_text, TOMBSTONES_HEADER};
pub use writer::{LayerFolderWriter, WriteSummary};

/// The xattr holding an object's four FILETIMEs.
pub const TIMES_XATTR: &str = "user.wclayer.filetimes";
/// The suffix of a directory's stream file.
pub const WCIDIRS: &str = ".$wcidirs$";
/// The file of a diff layer's deletions (§4.4).
pub const TOMBSTONES_FILE: &str = "tombstones.txt";
/// The file naming a layer's parents (§4.8).
pub const LAYERCHAIN_FILE: &str = "layerchain.json";
/// The UtilityVM boot store files and the backups an import keeps of them.
pub const BCD_FILES: [(&str, &str); 4] = [
    ("UtilityVM\\Files\\EFI\\Microsoft\\Boot\\BCD", "bcd.bak"),
    (
        "UtilityVM\\Files\\EFI\\Microsoft\\Boot\\BCD.LOG",
        "bcd.log.bak",
    ),
    (
        "UtilityVM\\Files\\EFI\\Microsoft\\Boot\\BCD.LOG1",
        "bcd.log1.bak",
    ),
    (
        "UtilityVM\\Files\\EFI\\Microsoft\\Boot\\BCD.LOG2",
        "bcd.log2.bak",
    ),
];
/// Names in a layer folder's root that are the folder's own files, never entries: a
/// base layer's entries outside `Files\`, `Hives\` and `UtilityVM\` may not take them.
pub const FOLDER_FILES: [&str; 6] = [
    LAYERCHAIN_FILE,
    TOMBSTONES_FILE,
    "bcd.bak",
    "bcd.log.bak",
    "bcd.log1.bak",
    "bcd.log2.bak",
];
/// The suffix of a hive being rewritten (a temporary file of the writer).
const HIVE_TEMP: &str = ".strata-hive";

/// Windows-only steps that a Linux import cannot run, reported instead of faked.
/// A base layer's post-processing.
pub const PROCESS_BASE_LAYER: &str = "ProcessBaseLayer (hive baselines Hives\\*_BASE, blank.vhdx/blank-base.vhdx, layout) is done by Windows' vmcompute and was not run";
/// A utility VM's post-processing.
pub const PROCESS_UTILITY_VM: &str = "ProcessUtilityVMImage (UtilityVM\\SystemTemplate*.vhdx, BCD rewrite) is done by Windows' vmcompute and was not run";

/// A layer folder and its parents, nearest parent first (hcsshim's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerChain {
    /// The layer's own folder.
    pub layer: PathBuf,
    /// Its parents' folders, nearest first (empty for a base layer).
    pub parents: Vec<PathBuf>,
}

impl LayerChain {
    /// The chain of `layer` on `parents` (nearest first).
    pub fn new(layer: &Path, parents: &[PathBuf]) -> Self {
        LayerChain {
            layer: layer.to_owned(),
            parents: parents.to_vec(),
        }
    }

    /// A layer without parents is a base layer (§4.7).
    pub fn is_base(&self) -> bool {
        self.parents.is_empty()
    }
}

fn folder_err(
    folder: &Path,
    path: impl Into<String>,
    reason: impl Into<String>,
    source: Option<io::Error>,
) -> Error {
    Error::Folder {
        folder: folder.to_owned(),
        path: path.into(),
        reason: reason.into(),
        source,
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn times_of(info: &FileBasicInfo) -> Timestamps {
    let ts = |t: FileTime| {
        let s = t.to_timestamp();
        Timespec {
            tv_sec: s.secs,
            tv_nsec: s.nanos as _,
        }
    };
    Timestamps {
        last_access: ts(info.last_access_time),
        last_modification: ts(info.last_write_time),
    }
}

/// Records the times on an open object: the xattr, then the Linux times (best effort:
/// file systems clamp times outside their range).
fn put_times<Fd: AsFd>(fd: Fd, info: &FileBasicInfo) -> Result<(), Errno> {
    rfs::fsetxattr(&fd, TIMES_XATTR, &info.times_bytes(), XattrFlags::empty())?;
    let _ = rfs::futimens(&fd, &times_of(info));
    Ok(())
}

/// The four times recorded on an object ([`TIMES_XATTR`]), `None` if it has none.
fn recorded_times<Fd: AsFd>(
    fd: Fd,
    attributes: FileAttributes,
) -> Result<Option<FileBasicInfo>, Errno> {
    let mut buf = [0u8; 32];
    match rfs::fgetxattr(&fd, TIMES_XATTR, &mut buf) {
        Ok(32) => Ok(FileBasicInfo::with_times_bytes(attributes, &buf)),
        Ok(_) | Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads an object's times: the xattr, or (a folder made elsewhere) its Linux times.
fn get_times<Fd: AsFd>(fd: Fd, attributes: FileAttributes) -> Result<FileBasicInfo, Errno> {
    let mut buf = [0u8; 32];
    match rfs::fgetxattr(&fd, TIMES_XATTR, &mut buf) {
        Ok(32) => Ok(FileBasicInfo::with_times_bytes(attributes, &buf).unwrap_or_default()),
        Ok(_) | Err(Errno::NODATA) | Err(Errno::NOTSUP) => {
            let st = rfs::fstat(&fd)?;
            let t = |s: i64, n: i64| {
                FileTime::from_unix_nanos(s.wrapping_mul(1_000_000_000).wrapping_add(n))
            };
            let mtime = t(st.st_mtime, st.st_mtime_nsec as i64);
            Ok(FileBasicInfo {
                creation_time: mtime,
                last_access_time: t(st.st_atime, st.st_atime_nsec as i64),
                last_write_time: mtime,
                change_time: t(st.st_ctime, st.st_ctime_nsec as i64),
                attributes,
            })
        }
        Err(e) => Err(e),
    }
}

fn linux_rel(p: &WinPath) -> String {
    p.to_slash()
}

fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// True if `p` is a regular file inside `root`.
fn is_file_in(root: &Root, p: &WinPath) -> bool {
    let rel = linux_rel(p);
    let (parent, base) = split_parent(&rel);
    let (Ok(dir), Ok(base)) = (root.dir(parent.as_bytes()), CString::new(base)) else {
        return false;
    };
    dir.stat(&base)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
}

/// True if a stream file (`u32` prefix + stream) holds reparse data.
fn stream_file_has_reparse(mut f: File, what: &str) -> Result<bool, Error> {
    f.seek(SeekFrom::Start(4))
        .map_err(|e| Error::io(format!("reading {what}"), e))?;
    Ok(backup::scan(io::BufReader::new(f), what)?.reparse.is_some())
}

/// The entries of `dir` (open for reading), sorted by bytes (Go's `filepath.Walk` order).
fn sorted_list(dir: &Dir) -> Result<Vec<(CString, FileType)>, Errno> {
    let mut v = dir.list()?;
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// `name` as a C string for the `*at` calls (a name from a [`WinPath`] holds no NUL).
fn c_name(folder: &Path, path: &str, name: &str) -> Result<CString, Error> {
    CString::new(name).map_err(|_| folder_err(folder, path, "the name holds a NUL byte", None))
}
