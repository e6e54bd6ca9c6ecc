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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use strata_layer::inroot;

use crate::backup::{self, StreamId, HEADER_LEN};
use crate::{Error, FileAttributes, FileBasicInfo, FileTime, WinPath};

/// The xattr holding an object's four FILETIMEs.
pub const TIMES_XATTR: &str = "user.wclayer.filetimes";
/// The suffix of a directory's stream file.
pub const WCIDIRS: &str = ".$wcidirs$";
pub const TOMBSTONES_FILE: &str = "tombstones.txt";
pub const LAYERCHAIN_FILE: &str = "layerchain.json";
/// First line of `tombstones.txt`: UTF-8 BOM + `Version 1.0`.
pub const TOMBSTONES_HEADER: &str = "\u{feff}Version 1.0";
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
pub const PROCESS_BASE_LAYER: &str = "ProcessBaseLayer (hive baselines Hives\\*_BASE, blank.vhdx/blank-base.vhdx, layout) is done by Windows' vmcompute and was not run";
pub const PROCESS_UTILITY_VM: &str = "ProcessUtilityVMImage (UtilityVM\\SystemTemplate*.vhdx, BCD rewrite) is done by Windows' vmcompute and was not run";

/// A layer folder and its parents, nearest parent first (hcsshim's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerChain {
    pub layer: PathBuf,
    pub parents: Vec<PathBuf>,
}

impl LayerChain {
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

/// `layerchain.json` as Go's `json.Marshal` writes it: `null` or `["p1","p2"]`, no spaces.
pub fn layerchain_json(parents: &[PathBuf]) -> Result<String, Error> {
    if parents.is_empty() {
        return Ok("null".into());
    }
    let mut s = String::from("[");
    for (i, p) in parents.iter().enumerate() {
        let p = p.to_str().ok_or_else(|| {
            Error::name(
                p.display().to_string(),
                "a parent path must be UTF-8 for layerchain.json",
            )
        })?;
        if i > 0 {
            s.push(',');
        }
        go_json_string(&mut s, p);
    }
    s.push(']');
    Ok(s)
}

/// Go's JSON string escaping (HTML-safe: `<`, `>`, `&` and U+2028/9 as `\u` escapes).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses `layerchain.json` (as Docker reads it): the parents, nearest first.
pub fn parse_layerchain(json: &str) -> Result<Vec<PathBuf>, Error> {
    let bad = |r: String| Error::name(LAYERCHAIN_FILE, r);
    let v: Option<Vec<String>> = serde_json_lite(json).map_err(bad)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

/// A minimal reader for `null` or an array of JSON strings (all layerchain.json holds).
fn serde_json_lite(s: &str) -> Result<Option<Vec<String>>, String> {
    let s = s.trim();
    if s == "null" {
        return Ok(None);
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("expected null or an array of strings")?;
    let mut out = Vec::new();
    let mut chars = inner.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut v = String::new();
                loop {
                    match chars.next().ok_or("unterminated string")? {
                        '"' => break,
                        '\\' => match chars.next().ok_or("unterminated escape")? {
                            'n' => v.push('\n'),
                            'r' => v.push('\r'),
                            't' => v.push('\t'),
                            'b' => v.push('\u{8}'),
                            'f' => v.push('\u{c}'),
                            'u' => {
                                let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                                let n =
                                    u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape")?;
                                v.push(char::from_u32(n).ok_or("bad \\u escape")?);
                            }
                            other => v.push(other),
                        },
                        ch => v.push(ch),
                    }
                }
                out.push(v);
            }
            ',' | ' ' | '\n' | '\t' | '\r' => {}
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(Some(out))
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

/// What is being written for the current entry.
enum Current {
    /// A stream file (`u32` attributes + stream): a file, or a directory's `.$wcidirs$`.
    Stream {
        name: WinPath,
        out: BufWriter<File>,
        info: FileBasicInfo,
        dir: bool,
        /// This file is a UtilityVM boot store file: back it up as `*.bak` when done.
        bcd: Option<&'static str>,
    },
    /// A registry hive: the stream is parsed at the end and only its data kept.
    Hive {
        name: WinPath,
        out: BufWriter<File>,
        info: FileBasicInfo,
    },
}

/// What [`LayerFolderWriter::finish`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteSummary {
    pub entries: u64,
    pub links: u64,
    pub tombstones: u64,
    /// Windows-only post-processing that was not run ([`PROCESS_BASE_LAYER`], [`PROCESS_UTILITY_VM`]).
    pub not_applicable: Vec<String>,
}

/// Writes a layer folder; see the [module documentation](self).
pub struct LayerFolderWriter {
    folder: PathBuf,
    root: OwnedFd,
    parents: Vec<PathBuf>,
    current: Option<Current>,
    /// Directories written, in order, with their info (re-applied children first).
    dirs: Vec<(WinPath, FileBasicInfo)>,
    /// Upper-cased name → exact name and whether it is a directory (NTFS sees one name).
    added: HashMap<String, (WinPath, bool)>,
    pending_links: Vec<(WinPath, LinkSource)>,
    tombstones: Vec<WinPath>,
    /// Directories whose stream holds reparse data (junctions, directory symlinks).
    reparse_dirs: Vec<WinPath>,
    has_utility_vm: bool,
    utility_vm_touched: bool,
    summary: WriteSummary,
    /// The parent directory of the last entry, resolved.
    parent_cache: Option<(String, Arc<OwnedFd>)>,
}

/// Where a hard link's target lives: this layer or one of its parents.
#[derive(Clone, Debug)]
struct LinkSource {
    /// Index into the parents, `None` for this layer.
    parent: Option<usize>,
    target: WinPath,
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

impl LayerFolderWriter {
    /// Starts a layer in `folder` (created if missing; it must be empty), on top of
    /// `parents` (nearest first). Without parents this is a base layer.
    pub fn create(folder: &Path, parents: &[PathBuf]) -> Result<Self, Error> {
        fs::create_dir_all(folder)
            .map_err(|e| folder_err(folder, ".", "cannot create the layer folder", Some(e)))?;
        let mut it = fs::read_dir(folder)
            .map_err(|e| folder_err(folder, ".", "cannot read the layer folder", Some(e)))?;
        if it.next().is_some() {
            return Err(folder_err(
                folder,
                ".",
                "the layer folder is not empty (a layer is written into an empty folder only)",
                None,
            ));
        }
        for p in parents {
            if !p.join("Files").is_dir() && !p.join(LAYERCHAIN_FILE).is_file() {
                return Err(folder_err(
                    p,
                    ".",
                    "this parent is not a layer folder (no Files directory)",
                    None,
                ));
            }
        }
        let root = inroot::open_root(folder)?;
        Ok(LayerFolderWriter {
            folder: folder.to_owned(),
            root,
            parents: parents.to_vec(),
            current: None,
            dirs: Vec::new(),
            added: HashMap::new(),
            pending_links: Vec::new(),
            tombstones: Vec::new(),
            reparse_dirs: Vec::new(),
            has_utility_vm: false,
            utility_vm_touched: false,
            summary: WriteSummary::default(),
            parent_cache: None,
        })
    }

    fn is_base(&self) -> bool {
        self.parents.is_empty()
    }

    fn err(&self, path: &WinPath, reason: impl Into<String>, source: Option<io::Error>) -> Error {
        folder_err(&self.folder, path.as_str(), reason, source)
    }

    /// The parent directory of `name`, resolved inside the folder; it must exist.
    fn parent_fd(&mut self, name: &WinPath) -> Result<(Arc<OwnedFd>, String), Error> {
        let rel = linux_rel(name);
        let (parent, base) = split_parent(&rel);
        let (parent, base) = (parent.to_owned(), base.to_owned());
        let hit = matches!(&self.parent_cache, Some((p, _)) if *p == parent);
        if !hit {
            let fd = if parent.is_empty() {
                rfs::openat(
                    &self.root,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.err(name, "cannot open the folder", Some(errno(e))))?
            } else {
                match inroot::resolve_dir(self.root.as_fd(), parent.as_bytes()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::NOTDIR) => {
                        return Err(self.err(
                            name,
                            format!(
                                "its parent `{}` has no directory entry before it (every ancestor needs its own entry)",
                                parent.replace('/', "\\")
                            ),
                            None,
                        ))
                    }
                    Err(e) => return Err(self.err(name, "cannot resolve its parent inside the folder", Some(errno(e)))),
                }
            };
            self.parent_cache = Some((parent, Arc::new(fd)));
        }
        let fd = self
            .parent_cache
            .as_ref()
            .map(|(_, fd)| fd.clone())
            .ok_or_else(|| Error::Misuse("no parent".into()))?;
        Ok((fd, base))
    }

    fn forget_parent_cache(&mut self) {
        self.parent_cache = None;
    }

    fn check_new_name(&mut self, name: &WinPath, is_dir: bool) -> Result<(), Error> {
        for suffix in [WCIDIRS, HIVE_TEMP] {
            if name.file_name().ends_with(suffix) {
                return Err(Error::name(
                    name.as_str(),
                    format!("names ending `{suffix}` are reserved by the layer folder format"),
                ));
            }
        }
        if name.depth() == 1
            && FOLDER_FILES
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name.as_str()))
        {
            return Err(Error::name(
                name.as_str(),
                "this name in the layer's root is the layer folder's own file",
            ));
        }
        if let Some(j) = self.reparse_dirs.iter().find(|d| name.is_under(d.as_str())) {
            return Err(self.err(
                name,
                format!("it lies under `{j}`, a junction or directory symlink of this layer"),
                None,
            ));
        }
        let key = name.case_key();
        if let Some((prev, _)) = self.added.get(&key) {
            let why = if prev == name {
                "it was already added by this layer".to_owned()
            } else {
                format!(
                    "`{prev}` was already added and differs only in case (NTFS holds one of them)"
                )
            };
            return Err(self.err(name, why, None));
        }
        self.added.insert(key, (name.clone(), is_dir));
        Ok(())
    }

    /// Creates `name` exclusively in its parent; with `replace`, an existing file is
    /// unlinked first (UtilityVM files replacing the parent's hard links).
    fn create_file(
        &mut self,
        name: &WinPath,
        rel_name: &str,
        replace: bool,
    ) -> Result<File, Error> {
        let (dir, _) = self.parent_fd(name)?;
        if replace {
            match rfs::unlinkat(&dir, rel_name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    return Err(self.err(
                        name,
                        "a file cannot replace the directory that holds this name",
                        None,
                    ))
                }
                Err(e) => {
                    return Err(self.err(name, "cannot replace the existing file", Some(errno(e))))
                }
            }
        }
        let fd = rfs::openat(
            &dir,
            rel_name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| match e {
            Errno::EXIST => self.err(
                name,
                "it already exists in the folder (names are created exclusively)",
                None,
            ),
            e => self.err(name, "cannot create it", Some(errno(e))),
        })?;
        Ok(File::from(fd))
    }

    fn make_dir(&mut self, name: &WinPath, base: &str, may_exist: bool) -> Result<(), Error> {
        let (dir, _) = self.parent_fd(name)?;
        match rfs::mkdirat(&dir, base, Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) if may_exist => {
                let st = rfs::statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err(name, "cannot inspect it", Some(errno(e))))?;
                if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                    return Ok(());
                }
                rfs::unlinkat(&dir, base, AtFlags::empty()).map_err(|e| {
                    self.err(
                        name,
                        "cannot replace the file with a directory",
                        Some(errno(e)),
                    )
                })?;
                rfs::mkdirat(&dir, base, Mode::from_raw_mode(0o755))
                    .map_err(|e| self.err(name, "cannot create it", Some(errno(e))))
            }
            Err(Errno::EXIST) => Err(self.err(
                name,
                "it already exists in the folder (names are created exclusively)",
                None,
            )),
            Err(e) => Err(self.err(name, "cannot create the directory", Some(errno(e)))),
        }
    }

    /// Starts an entry: `name` with `info`; its backup stream follows through `Write`.
    /// Directories (attribute `DIRECTORY`) are created now, their stream goes to
    /// `<name>.$wcidirs$`; files and directories are created exclusively and need their
    /// parent to exist.
    pub fn add(&mut self, name: &WinPath, info: &FileBasicInfo) -> Result<(), Error> {
        self.end_entry()?;
        let is_dir = info.attributes.is_dir();
        let top = name.depth() == 1;
        let in_uvm = name.starts_with("UtilityVM");
        let base_layer = self.is_base();
        if in_uvm && !top && !name.starts_with("UtilityVM\\Files") {
            return Err(self.err(
                name,
                "invalid UtilityVM layer: only UtilityVM\\Files and below may be added",
                None,
            ));
        }
        if !base_layer && !name.is_in_top_level() {
            return Err(self.err(
                name,
                "a diff layer holds only Files\\, Hives\\ and UtilityVM\\ (only a base layer may hold other paths)",
                None,
            ));
        }
        let uvm_replace = in_uvm && !top && !base_layer;
        if uvm_replace && !self.has_utility_vm {
            return Err(self.err(
                name,
                "missing UtilityVM directory (its UtilityVM entry must come first)",
                None,
            ));
        }
        if !uvm_replace {
            self.check_new_name(name, is_dir)?;
        } else {
            self.added.insert(name.case_key(), (name.clone(), is_dir));
        }
        let rel = linux_rel(name);
        let (_, base) = split_parent(&rel);
        let base = base.to_owned();
        if name.as_str() == "UtilityVM" {
            self.utility_vm_touched = true;
        }
        if name.as_str() == "UtilityVM\\Files" && base_layer {
            self.utility_vm_touched = true;
        }
        if name.starts_with("Hives") && !top && !base_layer {
            if is_dir {
                return Err(self.err(name, "Hives holds registry hive files only", None));
            }
            let out = self.create_file(name, &base, false)?;
            self.current = Some(Current::Hive {
                name: name.clone(),
                out: BufWriter::with_capacity(64 * 1024, out),
                info: *info,
            });
            self.summary.entries += 1;
            return Ok(());
        }
        let stream_base = if is_dir {
            self.make_dir(name, &base, uvm_replace)?;
            self.dirs.push((name.clone(), *info));
            self.forget_parent_cache();
            format!("{base}{WCIDIRS}")
        } else {
            base.clone()
        };
        if name.as_str() == "UtilityVM" && !base_layer {
            self.clone_utility_vm(name)?;
            self.has_utility_vm = true;
        }
        let mut out = BufWriter::with_capacity(
            64 * 1024,
            self.create_file(name, &stream_base, uvm_replace)?,
        );
        out.write_all(&info.attributes.0.to_le_bytes())
            .map_err(|e| self.err(name, "cannot write it", Some(e)))?;
        let bcd = BCD_FILES
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, b)| *b);
        self.current = Some(Current::Stream {
            name: name.clone(),
            out,
            info: *info,
            dir: is_dir,
            bcd,
        });
        self.summary.entries += 1;
        Ok(())
    }

    /// Clones the nearest parent's `UtilityVM\Files` into this layer: hard links for
    /// plain files, copies for directories' streams, reparse points and the BCD files.
    fn clone_utility_vm(&mut self, name: &WinPath) -> Result<(), Error> {
        let Some(parent) = self.parents.first().cloned() else {
            return Ok(());
        };
        let src = parent.join("UtilityVM");
        let dst = self.folder.join("UtilityVM");
        if !src.join("Files").is_dir() {
            return Ok(());
        }
        let wrap = |e: io::Error, what: &Path| {
            folder_err(
                &parent,
                what.display().to_string(),
                "cannot clone the parent's UtilityVM",
                Some(e),
            )
        };
        let copy = |from: &Path, to: &Path| -> Result<(), Error> {
            fs::copy(from, to).map_err(|e| wrap(e, from))?;
            let f = File::open(from).map_err(|e| wrap(e, from))?;
            let info = get_times(&f, FileAttributes(0)).map_err(|e| wrap(errno(e), from))?;
            let t = File::options()
                .write(true)
                .open(to)
                .map_err(|e| wrap(e, to))?;
            put_times(&t, &info).map_err(|e| wrap(errno(e), to))
        };
        let files_stream = src.join(format!("Files{WCIDIRS}"));
        if files_stream.is_file() {
            copy(&files_stream, &dst.join(format!("Files{WCIDIRS}")))?;
        }
        let mut stack = vec![(
            src.join("Files"),
            dst.join("Files"),
            WinPath::parse("UtilityVM\\Files")?,
        )];
        fs::create_dir(dst.join("Files")).map_err(|e| wrap(e, &dst))?;
        let mut dir_times = Vec::new();
        while let Some((s, d, wp)) = stack.pop() {
            for ent in sorted_children(&s).map_err(|e| wrap(e, &s))? {
                let sp = s.join(&ent);
                let dp = d.join(&ent);
                let n = ent.to_str().ok_or_else(|| {
                    folder_err(
                        &parent,
                        sp.display().to_string(),
                        "a name is not UTF-8",
                        None,
                    )
                })?;
                let md = fs::symlink_metadata(&sp).map_err(|e| wrap(e, &sp))?;
                if md.is_dir() {
                    fs::create_dir(&dp).map_err(|e| wrap(e, &dp))?;
                    dir_times.push((sp.clone(), dp.clone()));
                    stack.push((sp, dp, wp.join(n)?));
                } else if md.is_file() {
                    let child = if let Some(dirname) = n.strip_suffix(WCIDIRS) {
                        wp.join(dirname)?
                    } else {
                        wp.join(n)?
                    };
                    let is_bcd = BCD_FILES.iter().any(|(b, _)| *b == child.as_str());
                    if n.ends_with(WCIDIRS) || is_bcd || stream_file_has_reparse(&sp)? {
                        copy(&sp, &dp)?;
                    } else {
                        fs::hard_link(&sp, &dp).map_err(|e| {
                            let why = if e.raw_os_error() == Some(libc_exdev()) {
                                " (layers must share a file system)"
                            } else {
                                ""
                            };
                            folder_err(
                                &self.folder,
                                name.as_str(),
                                format!("cannot hard-link the parent's {}{why}", sp.display()),
                                Some(e),
                            )
                        })?;
                    }
                } else {
                    return Err(folder_err(
                        &parent,
                        sp.display().to_string(),
                        "not a file or directory: not a layer folder",
                        None,
                    ));
                }
            }
        }
        for (sp, dp) in dir_times.iter().rev() {
            if let (Ok(s), Ok(d)) = (File::open(sp), File::open(dp)) {
                if let Ok(st) = rfs::fstat(&s) {
                    let _ = rfs::futimens(&d, &inroot::times_of(&st));
                }
            }
        }
        self.forget_parent_cache();
        Ok(())
    }

    /// Finishes the current entry: flushes, records times, backs up BCD files, checks
    /// a directory stream for reparse data.
    fn end_entry(&mut self) -> Result<(), Error> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        match cur {
            Current::Stream {
                name,
                out,
                info,
                dir,
                bcd,
            } => {
                let mut file = out
                    .into_inner()
                    .map_err(|e| self.err(&name, "cannot write it", Some(e.into_error())))?;
                put_times(&file, &info).map_err(|e| self.err(&name, format!("cannot set the xattr {TIMES_XATTR} (does the file system support user xattrs?)"), Some(errno(e))))?;
                if dir || bcd.is_some() {
                    let back =
                        |w: &Self, e: io::Error| w.err(&name, "cannot read it back", Some(e));
                    file.seek(SeekFrom::Start(4)).map_err(|e| back(self, e))?;
                    let scan = backup::scan(io::BufReader::new(&mut file), name.as_str())?;
                    if dir && scan.reparse.is_some() {
                        self.reparse_dirs.push(name.clone());
                    }
                    if let (Some(bak), Some(d)) = (bcd, &scan.data) {
                        let fd = rfs::openat(
                            &self.root,
                            bak,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::TRUNC
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )
                        .map_err(|e| {
                            self.err(&name, format!("cannot write {bak}"), Some(errno(e)))
                        })?;
                        let mut w = File::from(fd);
                        file.seek(SeekFrom::Start(4 + d.payload_offset))
                            .map_err(|e| back(self, e))?;
                        io::copy(&mut (&mut file).take(d.size), &mut w)
                            .map_err(|e| self.err(&name, format!("cannot write {bak}"), Some(e)))?;
                    }
                }
                if name.depth() == 1 && dir {
                    // The top-level directory itself is a real object too.
                    let d = rfs::openat(
                        &self.root,
                        linux_rel(&name).as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.err(&name, "cannot open it", Some(errno(e))))?;
                    put_times(&d, &info)
                        .map_err(|e| self.err(&name, "cannot set its times", Some(errno(e))))?;
                }
            }
            Current::Hive { name, out, info } => {
                let file = out
                    .into_inner()
                    .map_err(|e| self.err(&name, "cannot write it", Some(e.into_error())))?;
                drop(file);
                self.hive_to_raw(&name, &info)?;
            }
        }
        Ok(())
    }

    /// Replaces a hive's backup stream by its data (BackupWrite without security).
    fn hive_to_raw(&mut self, name: &WinPath, info: &FileBasicInfo) -> Result<(), Error> {
        let path = self.folder.join(linux_rel(name));
        let tmp = self.folder.join(format!("{}{HIVE_TEMP}", linux_rel(name)));
        let mut f =
            File::open(&path).map_err(|e| self.err(name, "cannot read it back", Some(e)))?;
        let scan = backup::scan(io::BufReader::new(&mut f), name.as_str())?;
        if scan.ea.is_some()
            || scan.reparse.is_some()
            || !scan.alternates.is_empty()
            || scan.data.as_ref().is_some_and(|d| d.sparse)
        {
            return Err(self.err(name, "a hive's backup stream may hold only data (and a security descriptor, which is dropped)", None));
        }
        let mut w = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| self.err(name, "cannot write it", Some(e)))?;
        if let Some(d) = &scan.data {
            f.seek(SeekFrom::Start(d.payload_offset))
                .map_err(|e| self.err(name, "cannot read it back", Some(e)))?;
            let n = io::copy(&mut (&mut f).take(d.size), &mut w)
                .map_err(|e| self.err(name, "cannot write it", Some(e)))?;
            if n != d.size {
                return Err(self.err(name, "its data stream is truncated", None));
            }
        }
        put_times(&w, info).map_err(|e| self.err(name, "cannot set its times", Some(errno(e))))?;
        fs::rename(&tmp, &path).map_err(|e| self.err(name, "cannot write it", Some(e)))?;
        Ok(())
    }

    /// Adds `name` as a hard link to `target` (§4.6 `add_link`; immediate in a base
    /// layer, created in [`finish`](Self::finish) otherwise).
    pub fn add_link(&mut self, name: &WinPath, target: &WinPath) -> Result<(), Error> {
        self.end_entry()?;
        let bad_place = |w: &Self| {
            w.err(
                name,
                format!(
                    "a hard link must lie under Files\\ or UtilityVM\\Files\\ (target `{target}`)"
                ),
                None,
            )
        };
        if !(name.is_under("Files") || name.is_under("UtilityVM\\Files")) {
            return Err(bad_place(self));
        }
        let not_found = |w: &Self| {
            w.err(
                name,
                format!("failed to find link target for '{name}' -> '{target}'"),
                None,
            )
        };
        let in_layer =
            matches!(self.added.get(&target.case_key()), Some((exact, false)) if exact == target);
        let source = if target.is_under("Files") {
            if in_layer || (self.is_base() && self.exists_here(target)) {
                LinkSource {
                    parent: None,
                    target: target.clone(),
                }
            } else if self.is_base() {
                return Err(not_found(self));
            } else {
                let found = self.parents.iter().position(|p| {
                    inroot::open_root(p).is_ok_and(|root| is_file_in(root.as_fd(), target))
                });
                match found {
                    Some(i) => LinkSource {
                        parent: Some(i),
                        target: target.clone(),
                    },
                    None => return Err(not_found(self)),
                }
            }
        } else if target.is_under("UtilityVM\\Files") {
            if !self.exists_here(target) {
                return Err(not_found(self));
            }
            LinkSource {
                parent: None,
                target: target.clone(),
            }
        } else {
            return Err(self.err(name, format!("a hard link target must lie under Files\\ or UtilityVM\\Files\\, not `{target}`"), None));
        };
        if name.starts_with("UtilityVM") {
            self.added.insert(name.case_key(), (name.clone(), false));
        } else {
            self.check_new_name(name, false)?;
        }
        if self.is_base() {
            self.link_now(name, &source)?;
        } else {
            self.pending_links.push((name.clone(), source));
        }
        self.summary.links += 1;
        Ok(())
    }

    fn exists_here(&self, p: &WinPath) -> bool {
        is_file_in(self.root.as_fd(), p)
    }

    fn link_now(&mut self, name: &WinPath, source: &LinkSource) -> Result<(), Error> {
        let src_root = match source.parent {
            None => self
                .root
                .try_clone()
                .map_err(|e| Error::io("duplicating a descriptor", e))?,
            Some(i) => inroot::open_root(&self.parents[i])?,
        };
        let trel = linux_rel(&source.target);
        let (tparent, tbase) = split_parent(&trel);
        let sdir = inroot::resolve_dir(src_root.as_fd(), tparent.as_bytes()).map_err(|e| {
            self.err(
                name,
                format!("cannot resolve the link target `{}`", source.target),
                Some(errno(e)),
            )
        })?;
        let (ddir, dbase) = self.parent_fd(name)?;
        match rfs::unlinkat(&ddir, dbase.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(self.err(name, "cannot replace it with the link", Some(errno(e))))
            }
        }
        rfs::linkat(&sdir, tbase, &ddir, dbase.as_str(), AtFlags::empty()).map_err(|e| {
            let why = if e == Errno::XDEV {
                " (layers must share a file system)"
            } else {
                ""
            };
            self.err(
                name,
                format!("cannot hard-link it to `{}`{why}", source.target),
                Some(errno(e)),
            )
        })
    }

    /// Deletes `name` (§4.4, §4.6): under `Files\` a tombstone, under `UtilityVM\Files\`
    /// removed from this layer at once (it must exist); refused in a base layer.
    pub fn remove(&mut self, name: &WinPath) -> Result<(), Error> {
        self.end_entry()?;
        if self.is_base() {
            return Err(self.err(name, "base layer cannot have tombstones", None));
        }
        if name.is_under("Files") {
            self.tombstones.push(name.clone());
            self.summary.tombstones += 1;
            Ok(())
        } else if name.is_under("UtilityVM\\Files") {
            let p = self.folder.join(linux_rel(name));
            let md = fs::symlink_metadata(&p).map_err(|e| {
                self.err(
                    name,
                    "invalid tombstone: it does not exist in the UtilityVM",
                    Some(e),
                )
            })?;
            if md.is_dir() {
                fs::remove_dir_all(&p).map_err(|e| self.err(name, "cannot remove it", Some(e)))?;
                let _ = fs::remove_file(self.folder.join(format!("{}{WCIDIRS}", linux_rel(name))));
            } else {
                fs::remove_file(&p).map_err(|e| self.err(name, "cannot remove it", Some(e)))?;
            }
            self.forget_parent_cache();
            Ok(())
        } else {
            Err(self.err(
                name,
                "invalid tombstone: only Files\\… and UtilityVM\\Files\\… can be removed",
                None,
            ))
        }
    }

    /// Completes the layer: tombstones, pending links, directory times (children first),
    /// `layerchain.json`. The Windows-only processing steps are listed in the summary.
    pub fn finish(mut self) -> Result<WriteSummary, Error> {
        self.end_entry()?;
        if !self.tombstones.is_empty() {
            let mut t = String::from(TOMBSTONES_HEADER);
            t.push('\n');
            for name in &self.tombstones {
                t.push_str(name.tombstone_line().unwrap_or_default());
                t.push('\n');
                // A tombstoned path this layer itself holds is deleted after import.
                let p = self.folder.join(linux_rel(name));
                if let Ok(md) = fs::symlink_metadata(&p) {
                    let r = if md.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    r.map_err(|e| self.err(name, "cannot delete the tombstoned path", Some(e)))?;
                    let _ =
                        fs::remove_file(self.folder.join(format!("{}{WCIDIRS}", linux_rel(name))));
                }
            }
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(self.folder.join(TOMBSTONES_FILE))
                .map_err(|e| {
                    folder_err(&self.folder, TOMBSTONES_FILE, "cannot write it", Some(e))
                })?;
            f.write_all(t.as_bytes()).map_err(|e| {
                folder_err(&self.folder, TOMBSTONES_FILE, "cannot write it", Some(e))
            })?;
        }
        for (name, source) in std::mem::take(&mut self.pending_links) {
            self.link_now(&name, &source)?;
        }
        for (name, info) in self.dirs.iter().rev() {
            let rel = linux_rel(name);
            if let Ok(d) = rfs::openat(
                &self.root,
                rel.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                let _ = rfs::futimens(&d, &times_of(info));
            }
        }
        let chain = layerchain_json(
            &self
                .parents
                .iter()
                .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect::<Vec<_>>(),
        )?;
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(self.folder.join(LAYERCHAIN_FILE))
            .map_err(|e| folder_err(&self.folder, LAYERCHAIN_FILE, "cannot write it", Some(e)))?;
        f.write_all(chain.as_bytes())
            .map_err(|e| folder_err(&self.folder, LAYERCHAIN_FILE, "cannot write it", Some(e)))?;
        let _ = rfs::fchmod(&f, Mode::from_raw_mode(0o600));
        if self.is_base() {
            self.summary.not_applicable.push(PROCESS_BASE_LAYER.into());
        }
        if self.utility_vm_touched {
            self.summary.not_applicable.push(PROCESS_UTILITY_VM.into());
        }
        Ok(self.summary)
    }
}

impl Write for LayerFolderWriter {
    /// Writes backup-stream bytes of the current entry.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.current {
            Some(Current::Stream { out, .. }) | Some(Current::Hive { out, .. }) => out.write(buf),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "backup-stream bytes written with no entry started (call add first)",
            )),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Some(Current::Stream { out, .. }) | Some(Current::Hive { out, .. }) => {
                out.write_all(buf)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "backup-stream bytes written with no entry started (call add first)",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn libc_exdev() -> i32 {
    Errno::XDEV.raw_os_error()
}

/// True if `p` is a regular file inside `root` (resolved in the root, long paths fine).
fn is_file_in(root: std::os::fd::BorrowedFd<'_>, p: &WinPath) -> bool {
    let rel = linux_rel(p);
    let (parent, base) = split_parent(&rel);
    let Ok(dir) = inroot::resolve_dir(root, parent.as_bytes()) else {
        return false;
    };
    rfs::statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile)
}

/// True if a stream file (`u32` prefix + stream) holds reparse data.
fn stream_file_has_reparse(p: &Path) -> Result<bool, Error> {
    let mut f = File::open(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    f.seek(SeekFrom::Start(4))
        .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    Ok(
        backup::scan(io::BufReader::new(f), &p.display().to_string())?
            .reparse
            .is_some(),
    )
}

/// The names in `dir`, sorted by bytes (Go's `filepath.Walk` order).
fn sorted_children(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut v: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(v)
}

// ---- reading ------------------------------------------------------------------------

/// The top-level names a base layer's reader walks: `Files`, then `UtilityVM` (as
/// hcsshim's base reader does), then every other name in the root that is not the
/// folder's own file, by bytes (hcsshim's base writer puts any relative path there).
fn base_layer_tops(folder: &Path) -> Result<Vec<String>, Error> {
    let names = sorted_children(folder)
        .map_err(|e| folder_err(folder, ".", "cannot list the layer folder", Some(e)))?;
    let mut others = Vec::new();
    for n in names {
        let n = n
            .into_string()
            .map_err(|n| folder_err(folder, n.to_string_lossy(), "the name is not UTF-8", None))?;
        let own = FOLDER_FILES.contains(&n.as_str())
            || n.ends_with(WCIDIRS)
            || n.ends_with(HIVE_TEMP)
            || n == "Files"
            || n == "UtilityVM";
        if !own {
            others.push(n);
        }
    }
    let mut tops = vec!["Files".to_owned(), "UtilityVM".to_owned()];
    tops.extend(others);
    Ok(tops)
}

/// Where an entry's backup stream comes from.
#[derive(Debug)]
enum Source {
    /// A stream file: `u32` attributes, then the stream.
    StreamFile(File),
    /// A real object read by BackupRead without security: a file's content as one DATA stream.
    Raw(File),
    /// A real directory: an empty stream.
    Empty,
}

/// One entry of a layer folder, in reader order.
#[derive(Debug)]
pub struct FolderEntry {
    pub name: WinPath,
    /// `None` for a tombstone (the export writes a whiteout).
    pub info: Option<FileBasicInfo>,
    /// (device, inode) of a regular stream file, for hard-link detection.
    pub file_id: Option<(u64, u64)>,
    /// Link count of that file.
    pub links: u64,
    /// False where hcsshim's legacy reader reads without the security descriptor.
    pub with_security: bool,
    source: Option<Source>,
}

impl FolderEntry {
    pub fn is_tombstone(&self) -> bool {
        self.info.is_none()
    }

    /// Opens the entry's backup stream (Read + Seek; the stream starts at the position
    /// it is returned at).
    pub fn open_stream(&self) -> Result<EntryStream, Error> {
        let dup = |f: &File| {
            f.try_clone()
                .map_err(|e| Error::io(format!("reading `{}`", self.name), e))
        };
        match &self.source {
            Some(Source::StreamFile(f)) => {
                let mut f = dup(f)?;
                f.seek(SeekFrom::Start(4))
                    .map_err(|e| Error::io(format!("reading `{}`", self.name), e))?;
                Ok(EntryStream::File(f))
            }
            Some(Source::Raw(f)) => {
                let f = dup(f)?;
                let len = f
                    .metadata()
                    .map_err(|e| Error::io(format!("reading `{}`", self.name), e))?
                    .len();
                let mut head = Vec::with_capacity(20);
                head.extend_from_slice(&(StreamId::Data as u32).to_le_bytes());
                head.extend_from_slice(&0u32.to_le_bytes());
                head.extend_from_slice(&len.to_le_bytes());
                head.extend_from_slice(&0u32.to_le_bytes());
                Ok(EntryStream::Synthetic {
                    head,
                    file: Some(f),
                    pos: 0,
                    len: HEADER_LEN + len,
                })
            }
            Some(Source::Empty) | None => Ok(EntryStream::Synthetic {
                head: Vec::new(),
                file: None,
                pos: 0,
                len: 0,
            }),
        }
    }
}

/// A backup stream being read: a stream file, or one made up for a real object.
pub enum EntryStream {
    File(File),
    Synthetic {
        head: Vec<u8>,
        file: Option<File>,
        pos: u64,
        len: u64,
    },
}

impl Read for EntryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            EntryStream::File(f) => f.read(buf),
            EntryStream::Synthetic {
                head,
                file,
                pos,
                len,
            } => {
                if *pos >= *len {
                    return Ok(0);
                }
                let n = if (*pos as usize) < head.len() {
                    let h = &head[*pos as usize..];
                    let n = h.len().min(buf.len());
                    buf[..n].copy_from_slice(&h[..n]);
                    n
                } else {
                    let f = file.as_mut().ok_or_else(|| io::Error::other("no file"))?;
                    f.seek(SeekFrom::Start(*pos - head.len() as u64))?;
                    f.read(buf)?
                };
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

impl Seek for EntryStream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            EntryStream::File(f) => f.seek(to),
            EntryStream::Synthetic { pos, len, .. } => {
                let new = match to {
                    SeekFrom::Start(n) => n as i128,
                    SeekFrom::Current(d) => *pos as i128 + d as i128,
                    SeekFrom::End(d) => *len as i128 + d as i128,
                };
                if new < 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "seek before the start",
                    ));
                }
                *pos = new as u64;
                Ok(*pos)
            }
        }
    }
}

/// One directory being walked.
struct Frame {
    dir: OwnedFd,
    name: WinPath,
    children: std::vec::IntoIter<String>,
}

/// Reads a layer folder entry by entry; see the [module documentation](self).
pub struct LayerFolderReader {
    folder: PathBuf,
    root: OwnedFd,
    base: bool,
    stack: Vec<Frame>,
    /// Top-level names still to walk.
    tops: std::vec::IntoIter<String>,
    /// Tombstones by parent directory, in file order.
    tombstones: HashMap<String, Vec<WinPath>>,
    queue: std::collections::VecDeque<FolderEntry>,
    /// Times of `Hives\System_Delta`, which `Files` and `Hives` take.
    system_delta: Option<FileBasicInfo>,
}

/// Parses `tombstones.txt`: the deleted paths, as `Files\…`, in file order.
pub fn parse_tombstones(file: &Path, text: &[u8]) -> Result<Vec<WinPath>, Error> {
    let bad = |line: usize, r: &str| Error::BadTombstones {
        file: file.to_owned(),
        line,
        reason: r.to_owned(),
    };
    let text = std::str::from_utf8(text).map_err(|_| bad(0, "not UTF-8"))?;
    let mut lines = text.split('\n').collect::<Vec<_>>();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut it = lines
        .into_iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate();
    match it.next() {
        Some((_, h)) if h == TOMBSTONES_HEADER => {}
        _ => {
            return Err(bad(
                1,
                "the first line must be a UTF-8 BOM and `Version 1.0`",
            ))
        }
    }
    let mut out = Vec::new();
    for (i, l) in it {
        let rest = l.strip_prefix('\\').ok_or_else(|| {
            bad(
                i + 1,
                if l.is_empty() {
                    "an empty line"
                } else {
                    "a path must start with `\\`"
                },
            )
        })?;
        let p =
            WinPath::parse(&format!("Files\\{rest}")).map_err(|e| bad(i + 1, &e.to_string()))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad(i + 1, "not a path below Files"));
        }
        out.push(p);
    }
    Ok(out)
}

fn open_dir_at<Fd: AsFd>(dir: Fd, name: &str) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn open_file_at<Fd: AsFd>(dir: Fd, name: &str) -> Result<File, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

impl LayerFolderReader {
    /// Opens `chain.layer` for reading: the base reader (§4.7) without parents, the
    /// legacy reader (§4.5) with them.
    pub fn open(chain: &LayerChain) -> Result<Self, Error> {
        let folder = chain.layer.clone();
        let root = rfs::open(
            &folder,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| folder_err(&folder, ".", "cannot open the layer folder", Some(errno(e))))?;
        let base = chain.is_base();
        let mut tombstones: HashMap<String, Vec<WinPath>> = HashMap::new();
        let tpath = folder.join(TOMBSTONES_FILE);
        if let Ok(text) = fs::read(&tpath) {
            if base {
                return Err(folder_err(&folder, TOMBSTONES_FILE, "base layer cannot have tombstones (pass its parents to read it as a diff layer)", None));
            }
            for t in parse_tombstones(&tpath, &text)? {
                let parent = t
                    .parent()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                tombstones.entry(parent).or_default().push(t);
            }
        }
        let mut system_delta = None;
        if !base {
            if let Ok(f) = File::open(folder.join("Hives/System_Delta")) {
                system_delta = Some(get_times(&f, FileAttributes(0)).map_err(|e| {
                    folder_err(
                        &folder,
                        "Hives\\System_Delta",
                        "cannot read its times",
                        Some(errno(e)),
                    )
                })?);
            }
        }
        let tops = if base {
            base_layer_tops(&folder)?
        } else {
            crate::TOP_LEVEL.iter().map(|t| t.to_string()).collect()
        };
        Ok(LayerFolderReader {
            folder,
            root,
            base,
            stack: Vec::new(),
            tops: tops.into_iter(),
            tombstones,
            queue: Default::default(),
            system_delta,
        })
    }

    fn err(
        &self,
        path: impl Into<String>,
        reason: impl Into<String>,
        source: Option<io::Error>,
    ) -> Error {
        folder_err(&self.folder, path, reason, source)
    }

    /// Is `name` read as a stream object (attributes prefix + stream)?
    fn is_stream_object(&self, name: &WinPath) -> bool {
        self.base || name.is_under("Files") || name.starts_with("UtilityVM\\Files")
    }

    /// The entry `name`, the child `base` of the directory `dir`.
    fn entry_for(
        &self,
        name: WinPath,
        dir: &OwnedFd,
        base: &str,
        is_dir: bool,
    ) -> Result<FolderEntry, Error> {
        let with_security = self.base || name.is_under("Files");
        if self.is_stream_object(&name) {
            let sname = if is_dir {
                format!("{base}{WCIDIRS}")
            } else {
                base.to_owned()
            };
            let mut f = open_file_at(dir, &sname).map_err(|e| {
                self.err(
                    name.as_str(),
                    format!("cannot open its stream file `{sname}`"),
                    Some(errno(e)),
                )
            })?;
            let mut a = [0u8; 4];
            f.read_exact(&mut a).map_err(|e| {
                self.err(
                    name.as_str(),
                    "its stream file is shorter than the 4-byte attribute prefix",
                    Some(e),
                )
            })?;
            let attrs = FileAttributes(u32::from_le_bytes(a));
            let info = get_times(&f, attrs)
                .map_err(|e| self.err(name.as_str(), "cannot read its times", Some(errno(e))))?;
            if attrs.is_dir() != is_dir {
                return Err(self.err(
                    name.as_str(),
                    format!(
                        "its attributes {attrs} do not match the {} on disk",
                        if is_dir { "directory" } else { "file" }
                    ),
                    None,
                ));
            }
            let md = f
                .metadata()
                .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(e)))?;
            if !md.is_file() {
                return Err(self.err(name.as_str(), "its stream file is not a regular file", None));
            }
            return Ok(FolderEntry {
                name,
                info: Some(info),
                file_id: (!is_dir).then(|| (md.dev(), md.ino())),
                links: if is_dir { 1 } else { md.nlink() },
                with_security,
                source: Some(Source::StreamFile(f)),
            });
        }
        // Real objects of a diff layer: Files, Hives, UtilityVM, Hives\*.
        let f = if is_dir {
            open_dir_at(dir, base).map(File::from)
        } else {
            open_file_at(dir, base)
        }
        .map_err(|e| self.err(name.as_str(), "cannot open it", Some(errno(e))))?;
        let attrs = FileAttributes(if is_dir {
            FileAttributes::DIRECTORY
        } else {
            FileAttributes::ARCHIVE
        });
        // The four times the import recorded are kept (hcsshim's legacy reader replaces
        // creation and access by the last write, and takes `Files` and `Hives` times from
        // `Hives\System_Delta`: that is what a folder without recorded times gets).
        let recorded = recorded_times(&f, attrs)
            .map_err(|e| self.err(name.as_str(), "cannot read its times", Some(errno(e))))?;
        let info = match recorded {
            Some(info) => info,
            None => {
                let mut info = match self.system_delta {
                    Some(sd) if matches!(name.as_str(), "Files" | "Hives") => FileBasicInfo {
                        attributes: attrs,
                        ..sd
                    },
                    _ => get_times(&f, attrs).map_err(|e| {
                        self.err(name.as_str(), "cannot read its times", Some(errno(e)))
                    })?,
                };
                info.creation_time = info.last_write_time;
                info.last_access_time = info.last_write_time;
                info
            }
        };
        let md = f
            .metadata()
            .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(e)))?;
        Ok(FolderEntry {
            name,
            info: Some(info),
            file_id: (!is_dir).then(|| (md.dev(), md.ino())),
            links: if is_dir { 1 } else { md.nlink() },
            with_security: false,
            source: Some(if is_dir {
                Source::Empty
            } else {
                Source::Raw(f)
            }),
        })
    }

    /// The names in a directory that are entries, sorted by bytes (Go's `filepath.Walk`).
    fn children(&self, dir: &OwnedFd, name: &WinPath) -> Result<Vec<String>, Error> {
        let mut v = Vec::new();
        let d = rfs::Dir::read_from(dir)
            .map_err(|e| self.err(name.as_str(), "cannot list it", Some(errno(e))))?;
        for ent in d {
            let ent = ent.map_err(|e| self.err(name.as_str(), "cannot list it", Some(errno(e))))?;
            let raw = ent.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let s = std::str::from_utf8(raw).map_err(|_| {
                self.err(
                    format!("{name}\\{}", String::from_utf8_lossy(raw)),
                    "the name is not UTF-8",
                    None,
                )
            })?;
            if s.ends_with(WCIDIRS) || s.ends_with(HIVE_TEMP) {
                continue;
            }
            if name.as_str() == "Files" && s.eq_ignore_ascii_case("$Recycle.Bin") {
                continue;
            }
            v.push(s.to_owned());
        }
        v.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(v)
    }

    /// Yields a directory, queues its tombstones, and starts walking it.
    fn enter(&mut self, name: WinPath, parent: &OwnedFd, base: &str) -> Result<FolderEntry, Error> {
        let e = self.entry_for(name.clone(), parent, base, true)?;
        if let Some(ts) = self.tombstones.remove(name.as_str()) {
            for t in ts {
                self.queue.push_back(FolderEntry {
                    name: t,
                    info: None,
                    file_id: None,
                    links: 0,
                    with_security: false,
                    source: None,
                });
            }
        }
        let dir = open_dir_at(parent, base)
            .map_err(|e| self.err(name.as_str(), "cannot open it", Some(errno(e))))?;
        let children = self.children(&dir, &name)?;
        self.stack.push(Frame {
            dir,
            name,
            children: children.into_iter(),
        });
        Ok(e)
    }

    /// The next entry, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<FolderEntry>, Error> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            if let Some(mut frame) = self.stack.pop() {
                let Some(child) = frame.children.next() else {
                    continue;
                };
                let name = match frame.name.join(&child) {
                    Ok(n) => n,
                    Err(e) => {
                        return Err(self.err(
                            format!("{}\\{child}", frame.name),
                            e.to_string(),
                            None,
                        ))
                    }
                };
                let st = rfs::statat(&frame.dir, child.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(errno(e))));
                let st = match st {
                    Ok(st) => st,
                    Err(e) => {
                        self.stack.push(frame);
                        return Err(e);
                    }
                };
                let ft = rfs::FileType::from_raw_mode(st.st_mode);
                let r = if ft == rfs::FileType::Directory {
                    let dir = frame
                        .dir
                        .try_clone()
                        .map_err(|e| Error::io("duplicating a descriptor", e));
                    self.stack.push(frame);
                    let dir = dir?;
                    self.enter(name, &dir, &child)
                } else if ft == rfs::FileType::RegularFile {
                    let r = self.entry_for(name, &frame.dir, &child, false);
                    self.stack.push(frame);
                    r
                } else {
                    self.stack.push(frame);
                    Err(self.err(name.as_str(), "not a regular file or directory (a layer folder holds no Linux symlinks or devices)", None))
                };
                return r.map(Some);
            }
            let Some(top) = self.tops.next() else {
                return Ok(None);
            };
            let root = self
                .root
                .try_clone()
                .map_err(|e| Error::io("duplicating a descriptor", e))?;
            let top = top.as_str();
            let name = WinPath::parse_in_base_layer(top)?;
            if self.base && !matches!(top, "Files" | "UtilityVM") {
                // A base layer's other paths: a directory or a file in the root.
                let st = rfs::statat(&root, top, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err(top, "cannot stat it", Some(errno(e))))?;
                return match rfs::FileType::from_raw_mode(st.st_mode) {
                    rfs::FileType::Directory => self.enter(name, &root, top).map(Some),
                    rfs::FileType::RegularFile => self.entry_for(name, &root, top, false).map(Some),
                    _ => Err(self.err(top, "not a regular file or directory (a layer folder holds no Linux symlinks or devices)", None)),
                };
            }
            if open_dir_at(&root, top).is_err() {
                continue;
            }
            if self.base && top == "UtilityVM" {
                // Base reader: UtilityVM, then UtilityVM\Files and its subtree only.
                let uvm = open_dir_at(&root, top)
                    .map_err(|e| self.err(top, "cannot open it", Some(errno(e))))?;
                if open_dir_at(&uvm, "Files").is_err() {
                    continue;
                }
                let e = self.entry_for(name, &root, top, true)?;
                let files = self.enter(WinPath::parse("UtilityVM\\Files")?, &uvm, "Files")?;
                self.queue.push_front(files);
                return Ok(Some(e));
            }
            return self.enter(name, &root, top).map(Some);
        }
    }
}
