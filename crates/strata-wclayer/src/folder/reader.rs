//! Reading a layer folder: [`LayerFolderReader`], in hcsshim's order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use strata_layer::root::{Dir, Root};

use super::{
    c_name, errno, folder_err, get_times, recorded_times, sorted_list,
    tombstones::parse_tombstones, LayerChain, FOLDER_FILES, HIVE_TEMP, TOMBSTONES_FILE, WCIDIRS,
};
use crate::backup::{StreamId, HEADER_LEN};
use crate::{Error, FileAttributes, FileBasicInfo, WinPath};

/// The top-level names a base layer's reader walks: `Files`, then `UtilityVM` (as
/// hcsshim's base reader does), then every other name in the root that is not the
/// folder's own file, by bytes (hcsshim's base writer puts any relative path there).
fn base_layer_tops(folder: &Path, root: &Root) -> Result<Vec<String>, Error> {
    let names = root
        .top()
        .reopen()
        .and_then(|d| sorted_list(&d))
        .map_err(|e| folder_err(folder, ".", "cannot list the layer folder", Some(errno(e))))?;
    let mut others = Vec::new();
    for (n, _) in names {
        let n = n.into_string().map_err(|n| {
            folder_err(
                folder,
                n.into_cstring().as_bytes().escape_ascii().to_string(),
                "the name is not UTF-8",
                None,
            )
        })?;
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
    /// The object's path in the layer.
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
    /// Whether this entry is a deletion (`tombstones.txt`) rather than an object.
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
#[derive(Debug)]
pub enum EntryStream {
    /// A stream file, positioned after its attribute prefix.
    File(File),
    /// A stream made up of a header and a real file's content.
    Synthetic {
        /// The stream's first bytes (a DATA stream header; empty for a directory).
        head: Vec<u8>,
        /// The file whose content follows `head`.
        file: Option<File>,
        /// The read position in the whole stream.
        pos: u64,
        /// The whole stream's length.
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
    dir: Arc<Dir>,
    name: WinPath,
    children: std::vec::IntoIter<String>,
}

/// Reads a layer folder entry by entry; see the [module documentation](self).
pub struct LayerFolderReader {
    folder: PathBuf,
    root: Root,
    base: bool,
    stack: Vec<Frame>,
    /// Top-level names still to walk.
    tops: std::vec::IntoIter<String>,
    /// Tombstones by parent directory, in file order.
    tombstones: HashMap<String, Vec<WinPath>>,
    queue: std::collections::VecDeque<FolderEntry>,
    /// Times of `Hives\System_Delta`, which `Files` and `Hives` take.
    system_delta: Option<FileBasicInfo>,
    /// The state of reading through [`LayerReader`](strata_layer::LayerReader).
    pub(super) entry_level: super::entries::EntryLevel,
}

impl LayerFolderReader {
    /// Opens `chain.layer` for reading: the base reader (§4.7) without parents, the
    /// legacy reader (§4.5) with them.
    pub fn open(chain: &LayerChain) -> Result<Self, Error> {
        let folder = chain.layer.clone();
        let root = rfs::open(
            &folder,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(Root::from_fd)
        .map_err(|e| folder_err(&folder, ".", "cannot open the layer folder", Some(errno(e))))?;
        let base = chain.is_base();
        let mut tombstones: HashMap<String, Vec<WinPath>> = HashMap::new();
        let tpath = folder.join(TOMBSTONES_FILE);
        let read_all = |mut f: File| {
            let mut v = Vec::new();
            f.read_to_end(&mut v).map(|_| v)
        };
        let text = root.top().open_file(c"tombstones.txt").ok().map(read_all);
        if let Some(Ok(text)) = text {
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
            let hive = root
                .dir(b"Hives")
                .and_then(|d| d.open_file(c"System_Delta"));
            if let Ok(f) = hive {
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
            base_layer_tops(&folder, &root)?
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
            entry_level: Default::default(),
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
        dir: &Dir,
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
            let c = c_name(&self.folder, name.as_str(), &sname)?;
            let mut f = dir.open_file(&c).map_err(|e| {
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
            let md = rfs::fstat(&f)
                .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(errno(e))))?;
            if FileType::from_raw_mode(md.st_mode) != FileType::RegularFile {
                return Err(self.err(name.as_str(), "its stream file is not a regular file", None));
            }
            return Ok(FolderEntry {
                name,
                info: Some(info),
                file_id: (!is_dir).then_some((md.st_dev, md.st_ino)),
                links: if is_dir { 1 } else { md.st_nlink },
                with_security,
                source: Some(Source::StreamFile(f)),
            });
        }
        // Real objects of a diff layer: Files, Hives, UtilityVM, Hives\*.
        let c = c_name(&self.folder, name.as_str(), base)?;
        let f = if is_dir {
            dir.open_dir(&c).map(|d| File::from(OwnedFd::from(d)))
        } else {
            dir.open_file(&c)
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
        let md = rfs::fstat(&f)
            .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(errno(e))))?;
        Ok(FolderEntry {
            name,
            info: Some(info),
            file_id: (!is_dir).then_some((md.st_dev, md.st_ino)),
            links: if is_dir { 1 } else { md.st_nlink },
            with_security: false,
            source: Some(if is_dir {
                Source::Empty
            } else {
                Source::Raw(f)
            }),
        })
    }

    /// The names in a directory that are entries, sorted by bytes (Go's `filepath.Walk`).
    fn children(&self, dir: &Dir, name: &WinPath) -> Result<Vec<String>, Error> {
        let mut v = Vec::new();
        let list = dir
            .list()
            .map_err(|e| self.err(name.as_str(), "cannot list it", Some(errno(e))))?;
        for (ent, _) in list {
            let raw = ent.to_bytes();
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
    fn enter(&mut self, name: WinPath, parent: &Dir, base: &str) -> Result<FolderEntry, Error> {
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
        let dir = parent
            .open_dir(&c_name(&self.folder, name.as_str(), base)?)
            .map_err(|e| self.err(name.as_str(), "cannot open it", Some(errno(e))))?;
        let children = self.children(&dir, &name)?;
        self.stack.push(Frame {
            dir: Arc::new(dir),
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
                let st = c_name(&self.folder, name.as_str(), &child).and_then(|c| {
                    frame
                        .dir
                        .stat(&c)
                        .map_err(|e| self.err(name.as_str(), "cannot stat it", Some(errno(e))))
                });
                let st = match st {
                    Ok(st) => st,
                    Err(e) => {
                        self.stack.push(frame);
                        return Err(e);
                    }
                };
                let ft = FileType::from_raw_mode(st.st_mode);
                let r = if ft == FileType::Directory {
                    let dir = frame.dir.clone();
                    self.stack.push(frame);
                    self.enter(name, &dir, &child)
                } else if ft == FileType::RegularFile {
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
            let root = self.root.top().clone();
            let top = top.as_str();
            let name = WinPath::parse_in_base_layer(top)?;
            let ctop = c_name(&self.folder, top, top)?;
            if self.base && !matches!(top, "Files" | "UtilityVM") {
                // A base layer's other paths: a directory or a file in the root.
                let st = root
                    .stat(&ctop)
                    .map_err(|e| self.err(top, "cannot stat it", Some(errno(e))))?;
                return match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => self.enter(name, &root, top).map(Some),
                    FileType::RegularFile => self.entry_for(name, &root, top, false).map(Some),
                    _ => Err(self.err(top, "not a regular file or directory (a layer folder holds no Linux symlinks or devices)", None)),
                };
            }
            let Ok(top_dir) = root.open_dir(&ctop) else {
                continue;
            };
            if self.base && top == "UtilityVM" {
                // Base reader: UtilityVM, then UtilityVM\Files and its subtree only.
                let uvm = top_dir;
                if uvm.open_dir(c"Files").is_err() {
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
