//! Writing a layer folder: [`LayerFolderWriter`].

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, FileType, Mode};
use rustix::io::Errno;
use strata_layer::inroot;
use strata_layer::root::{Dir, Root, Sweep};
use strata_layer::LayerPath;

use super::{
    c_name, errno, folder_err, get_times, is_file_in, layerchain, linux_rel, put_times,
    sorted_list, split_parent, stream_file_has_reparse, times_of, tombstones, BCD_FILES,
    FOLDER_FILES, HIVE_TEMP, LAYERCHAIN_FILE, PROCESS_BASE_LAYER, PROCESS_UTILITY_VM, TIMES_XATTR,
    TOMBSTONES_FILE, WCIDIRS,
};
use crate::backup;
use crate::{Error, FileAttributes, FileBasicInfo, WinPath};

/// What is being written for the current entry.
enum Current {
    /// A stream file (`u32` attributes + stream): a file, or a directory's `.$wcidirs$`.
    Stream {
        name: WinPath,
        out: BufWriter<File>,
        /// The directory holding the stream file and its name there, to read it back.
        parent: Arc<Dir>,
        file: CString,
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
    /// Objects added (files, directories, hives), alternate streams not counted.
    pub entries: u64,
    /// Hard links added.
    pub links: u64,
    /// Deletions recorded in `tombstones.txt`.
    pub tombstones: u64,
    /// The sum of the data sizes of the regular files added as [`Entry`](strata_layer::Entry)
    /// values (hcsshim's `ImportLayer` return value).
    pub size: u64,
    /// Alternate data streams added as entries of their own.
    pub alternate_streams: u64,
    /// Windows-only post-processing that was not run ([`PROCESS_BASE_LAYER`], [`PROCESS_UTILITY_VM`]).
    pub not_applicable: Vec<String>,
}

/// Writes a layer folder; see the [module documentation](self).
pub struct LayerFolderWriter {
    folder: PathBuf,
    root: Root,
    pub(super) parents: Vec<PathBuf>,
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
    pub(super) summary: WriteSummary,
    /// The parent directory of the last entry, resolved.
    parent_cache: Option<(String, Arc<Dir>)>,
    /// Entry level ([`LayerWriter`](strata_layer::LayerWriter)): the data still to come.
    pub(super) entry_data: Option<super::entries::DenseData>,
    /// Entry level: `<path>:` of the last main entry, which its alternate streams extend.
    pub(super) ads_prefix: Option<Vec<u8>>,
}

/// Where a hard link's target lives: this layer or one of its parents.
#[derive(Clone, Debug)]
struct LinkSource {
    /// Index into the parents, `None` for this layer.
    parent: Option<usize>,
    target: WinPath,
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
            let is_layer = Root::open(p).is_ok_and(|r| {
                let is = |name: &CStr, t: FileType| {
                    r.top()
                        .stat(name)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == t)
                };
                is(c"Files", FileType::Directory) || is(c"layerchain.json", FileType::RegularFile)
            });
            if !is_layer {
                return Err(folder_err(
                    p,
                    ".",
                    "this parent is not a layer folder (no Files directory)",
                    None,
                ));
            }
        }
        let root = Root::open(folder)?;
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
            entry_data: None,
            ads_prefix: None,
        })
    }

    fn is_base(&self) -> bool {
        self.parents.is_empty()
    }

    fn err(&self, path: &WinPath, reason: impl Into<String>, source: Option<io::Error>) -> Error {
        folder_err(&self.folder, path.as_str(), reason, source)
    }

    /// The parent directory of `name`, resolved inside the folder (it must exist), and
    /// the last component of `name`.
    fn parent_fd(&mut self, name: &WinPath) -> Result<(Arc<Dir>, CString), Error> {
        let rel = linux_rel(name);
        let (parent, base) = split_parent(&rel);
        let hit = matches!(&self.parent_cache, Some((p, _)) if p == parent);
        if !hit {
            let dir = match self.root.dir(parent.as_bytes()) {
                Ok(d) => d,
                Err(Errno::NOENT | Errno::NOTDIR) if !parent.is_empty() => {
                    return Err(self.err(
                        name,
                        format!(
                            "its parent `{}` has no directory entry before it (every ancestor needs its own entry)",
                            parent.replace('/', "\\")
                        ),
                        None,
                    ))
                }
                Err(e) if parent.is_empty() => {
                    return Err(self.err(name, "cannot open the folder", Some(errno(e))))
                }
                Err(e) => {
                    return Err(self.err(
                        name,
                        "cannot resolve its parent inside the folder",
                        Some(errno(e)),
                    ))
                }
            };
            self.parent_cache = Some((parent.to_owned(), Arc::new(dir)));
        }
        let dir = self
            .parent_cache
            .as_ref()
            .map(|(_, d)| d.clone())
            .ok_or_else(|| Error::Misuse("no parent".into()))?;
        Ok((dir, c_name(&self.folder, name.as_str(), base)?))
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

    /// Creates `file` (`name`'s own last component or its stream file's name)
    /// exclusively in `name`'s parent, which it returns too; with `replace`, an existing
    /// file is unlinked first (UtilityVM files replacing the parent's hard links).
    fn create_file(
        &mut self,
        name: &WinPath,
        file: &str,
        replace: bool,
    ) -> Result<(File, Arc<Dir>, CString), Error> {
        let (dir, _) = self.parent_fd(name)?;
        let file = c_name(&self.folder, name.as_str(), file)?;
        if replace {
            match dir.unlink(&file) {
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
        let f = dir.create_file(&file, 0o644).map_err(|e| match e {
            Errno::EXIST => self.err(
                name,
                "it already exists in the folder (names are created exclusively)",
                None,
            ),
            e => self.err(name, "cannot create it", Some(errno(e))),
        })?;
        Ok((f, dir, file))
    }

    fn make_dir(&mut self, name: &WinPath, may_exist: bool) -> Result<(), Error> {
        let (dir, base) = self.parent_fd(name)?;
        match dir.mkdir(&base, 0o755) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) if may_exist => {
                let st = dir
                    .stat(&base)
                    .map_err(|e| self.err(name, "cannot inspect it", Some(errno(e))))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Ok(());
                }
                dir.unlink(&base).map_err(|e| {
                    self.err(
                        name,
                        "cannot replace the file with a directory",
                        Some(errno(e)),
                    )
                })?;
                dir.mkdir(&base, 0o755)
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
            let (out, _, _) = self.create_file(name, &base, false)?;
            self.current = Some(Current::Hive {
                name: name.clone(),
                out: BufWriter::with_capacity(64 * 1024, out),
                info: *info,
            });
            self.summary.entries += 1;
            return Ok(());
        }
        let stream_base = if is_dir {
            self.make_dir(name, uvm_replace)?;
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
        let (out, parent, file) = self.create_file(name, &stream_base, uvm_replace)?;
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        out.write_all(&info.attributes.0.to_le_bytes())
            .map_err(|e| self.err(name, "cannot write it", Some(e)))?;
        let bcd = BCD_FILES
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, b)| *b);
        self.current = Some(Current::Stream {
            name: name.clone(),
            out,
            parent,
            file,
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
        let Ok(src) = Root::open(&parent) else {
            return Ok(());
        };
        let is_dir = |d: &Dir, n: &CStr| {
            d.stat(n)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        };
        let Ok(src_uvm) = src.top().open_dir(c"UtilityVM") else {
            return Ok(());
        };
        if !is_dir(&src_uvm, c"Files") {
            return Ok(());
        }
        let wrap_io = |e: io::Error, what: &str| {
            folder_err(
                &parent,
                what,
                "cannot clone the parent's UtilityVM",
                Some(e),
            )
        };
        let wrap = |e: Errno, what: &str| wrap_io(errno(e), what);
        // A copy keeps the file's permissions and recorded times.
        let copy = |from: &Dir, to: &Dir, n: &CStr, what: &str| -> Result<(), Error> {
            let mut f = from.open_file(n).map_err(|e| wrap(e, what))?;
            let st = rfs::fstat(&f).map_err(|e| wrap(e, what))?;
            let mut t = to.create_file(n, 0o600).map_err(|e| wrap(e, what))?;
            io::copy(&mut f, &mut t).map_err(|e| wrap_io(e, what))?;
            rfs::fchmod(&t, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| wrap(e, what))?;
            let info = get_times(&f, FileAttributes(0)).map_err(|e| wrap(e, what))?;
            put_times(&t, &info).map_err(|e| wrap(e, what))
        };
        let dst_uvm = self
            .root
            .top()
            .open_dir(c"UtilityVM")
            .map_err(|e| wrap(e, "UtilityVM"))?;
        let files_stream = c"Files.$wcidirs$";
        if src_uvm
            .stat(files_stream)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
        {
            copy(
                &src_uvm,
                &dst_uvm,
                files_stream,
                "UtilityVM/Files.$wcidirs$",
            )?;
        }
        dst_uvm
            .mkdir(c"Files", 0o777)
            .map_err(|e| wrap(e, "UtilityVM/Files"))?;
        // Directories are reopened by path from both roots as the walk reaches them, so
        // a wide tree costs no more descriptors than a narrow one.
        let mut stack = vec![(
            "UtilityVM/Files".to_owned(),
            WinPath::parse("UtilityVM\\Files")?,
        )];
        let mut dir_times = Vec::new();
        while let Some((rel, wp)) = stack.pop() {
            let s = src
                .dir(rel.as_bytes())
                .and_then(|d| d.reopen())
                .map_err(|e| wrap(e, &rel))?;
            let d = self.root.dir(rel.as_bytes()).map_err(|e| wrap(e, &rel))?;
            for (ent, ft) in sorted_list(&s).map_err(|e| wrap(e, &rel))? {
                let n = ent.to_str().map_err(|_| {
                    folder_err(
                        &parent,
                        format!("{rel}/{}", ent.to_bytes().escape_ascii()),
                        "a name is not UTF-8",
                        None,
                    )
                })?;
                let sp = format!("{rel}/{n}");
                if ft == FileType::Directory {
                    d.mkdir(&ent, 0o777).map_err(|e| wrap(e, &sp))?;
                    let st = s.stat(&ent).map_err(|e| wrap(e, &sp))?;
                    dir_times.push((inroot::times_of(&st), sp.clone()));
                    stack.push((sp, wp.join(n)?));
                } else if ft == FileType::RegularFile {
                    let child = if let Some(dirname) = n.strip_suffix(WCIDIRS) {
                        wp.join(dirname)?
                    } else {
                        wp.join(n)?
                    };
                    let is_bcd = BCD_FILES.iter().any(|(b, _)| *b == child.as_str());
                    let reparse = || -> Result<bool, Error> {
                        stream_file_has_reparse(s.open_file(&ent).map_err(|e| wrap(e, &sp))?, &sp)
                    };
                    if n.ends_with(WCIDIRS) || is_bcd || reparse()? {
                        copy(&s, &d, &ent, &sp)?;
                    } else {
                        d.hard_link(&ent, &s, &ent).map_err(|e| {
                            let why = if e == Errno::XDEV {
                                " (layers must share a file system)"
                            } else {
                                ""
                            };
                            folder_err(
                                &self.folder,
                                name.as_str(),
                                format!("cannot hard-link the parent's {sp}{why}"),
                                Some(errno(e)),
                            )
                        })?;
                    }
                } else {
                    return Err(folder_err(
                        &parent,
                        sp,
                        "not a file or directory: not a layer folder",
                        None,
                    ));
                }
            }
        }
        for (times, rel) in dir_times.iter().rev() {
            if let Ok(d) = self.root.dir(rel.as_bytes()).and_then(|d| d.reopen()) {
                let _ = d.set_times(times);
            }
        }
        self.forget_parent_cache();
        Ok(())
    }

    /// Finishes the current entry: flushes, records times, backs up BCD files, checks
    /// a directory stream for reparse data.
    pub(super) fn end_entry(&mut self) -> Result<(), Error> {
        self.end_entry_data()?;
        self.ads_prefix = None;
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        match cur {
            Current::Stream {
                name,
                out,
                parent,
                file,
                info,
                dir,
                bcd,
            } => {
                let out = out
                    .into_inner()
                    .map_err(|e| self.err(&name, "cannot write it", Some(e.into_error())))?;
                put_times(&out, &info).map_err(|e| self.err(&name, format!("cannot set the xattr {TIMES_XATTR} (does the file system support user xattrs?)"), Some(errno(e))))?;
                drop(out);
                if dir || bcd.is_some() {
                    let back =
                        |w: &Self, e: io::Error| w.err(&name, "cannot read it back", Some(e));
                    let mut file = parent.open_file(&file).map_err(|e| back(self, errno(e)))?;
                    file.seek(SeekFrom::Start(4)).map_err(|e| back(self, e))?;
                    let scan = backup::scan(io::BufReader::new(&mut file), name.as_str())?;
                    if dir && scan.reparse.is_some() {
                        self.reparse_dirs.push(name.clone());
                    }
                    if let (Some(bak), Some(d)) = (bcd, &scan.data) {
                        let cant = |w: &Self, e: io::Error| {
                            w.err(&name, format!("cannot write {bak}"), Some(e))
                        };
                        let top = self.root.top();
                        let bak_name = c_name(&self.folder, bak, bak)?;
                        match top.unlink(&bak_name) {
                            Ok(()) | Err(Errno::NOENT) => {}
                            Err(e) => return Err(cant(self, errno(e))),
                        }
                        let mut w = top
                            .create_file(&bak_name, 0o644)
                            .map_err(|e| cant(self, errno(e)))?;
                        file.seek(SeekFrom::Start(4 + d.payload_offset))
                            .map_err(|e| back(self, e))?;
                        io::copy(&mut (&mut file).take(d.size), &mut w)
                            .map_err(|e| cant(self, e))?;
                    }
                }
                if name.depth() == 1 && dir {
                    // The top-level directory itself is a real object too.
                    let top_name = c_name(&self.folder, name.as_str(), name.as_str())?;
                    let d = self
                        .root
                        .top()
                        .open_dir(&top_name)
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
        let (dir, base) = self.parent_fd(name)?;
        let tmp_name = format!("{}{HIVE_TEMP}", name.file_name());
        let tmp = c_name(&self.folder, name.as_str(), &tmp_name)?;
        let mut f = dir
            .open_file(&base)
            .map_err(|e| self.err(name, "cannot read it back", Some(errno(e))))?;
        let scan = backup::scan(io::BufReader::new(&mut f), name.as_str())?;
        if scan.ea.is_some()
            || scan.reparse.is_some()
            || !scan.alternates.is_empty()
            || scan.data.as_ref().is_some_and(|d| d.sparse)
        {
            return Err(self.err(name, "a hive's backup stream may hold only data (and a security descriptor, which is dropped)", None));
        }
        let mut w = dir
            .create_file(&tmp, 0o644)
            .map_err(|e| self.err(name, "cannot write it", Some(errno(e))))?;
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
        dir.rename(&tmp, &dir, &base)
            .map_err(|e| self.err(name, "cannot write it", Some(errno(e))))?;
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
                let found = self
                    .parents
                    .iter()
                    .position(|p| Root::open(p).is_ok_and(|root| is_file_in(&root, target)));
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
        is_file_in(&self.root, p)
    }

    fn link_now(&mut self, name: &WinPath, source: &LinkSource) -> Result<(), Error> {
        let src_root = match source.parent {
            None => self.root.clone(),
            Some(i) => Root::open(&self.parents[i])?,
        };
        let trel = linux_rel(&source.target);
        let (tparent, tbase) = split_parent(&trel);
        let tbase = c_name(&self.folder, source.target.as_str(), tbase)?;
        let sdir = src_root.dir(tparent.as_bytes()).map_err(|e| {
            self.err(
                name,
                format!("cannot resolve the link target `{}`", source.target),
                Some(errno(e)),
            )
        })?;
        let (ddir, dbase) = self.parent_fd(name)?;
        match ddir.unlink(&dbase) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(self.err(name, "cannot replace it with the link", Some(errno(e))))
            }
        }
        ddir.hard_link(&dbase, &sdir, &tbase).map_err(|e| {
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

    /// The directory holding `name` in this layer and its last component, with what
    /// is there (`None` when `name` or its parent does not exist).
    fn find_here(&self, name: &WinPath) -> Result<Option<(Dir, CString, FileType)>, Error> {
        let rel = linux_rel(name);
        let (parent, base) = split_parent(&rel);
        let base = c_name(&self.folder, name.as_str(), base)?;
        let Ok(dir) = self.root.dir(parent.as_bytes()) else {
            return Ok(None);
        };
        Ok(dir
            .stat(&base)
            .ok()
            .map(|st| (dir, base, FileType::from_raw_mode(st.st_mode))))
    }

    /// Deletes `name` (found by [`find_here`](Self::find_here)) from this layer: a
    /// directory with its subtree and its stream file, or a file.
    fn delete_here(
        &self,
        name: &WinPath,
        (dir, base, ftype): (Dir, CString, FileType),
        why: &str,
    ) -> Result<(), Error> {
        let fail = |e: io::Error| self.err(name, why, Some(e));
        if ftype != FileType::Directory {
            return dir.unlink(&base).map_err(|e| fail(errno(e)));
        }
        let rel = linux_rel(name);
        let path = LayerPath::from_tar_name(rel.as_bytes())
            .map_err(|e| fail(io::Error::other(e.to_string())))?;
        let sub = dir.open_dir(&base).map_err(|e| fail(errno(e)))?;
        sub.sweep(&path, Sweep::All, &mut ())
            .map_err(|e| fail(io::Error::other(e)))?;
        drop(sub);
        dir.rmdir(&base).map_err(|e| fail(errno(e)))?;
        let stream = format!("{}{WCIDIRS}", name.file_name());
        let _ = dir.unlink(&c_name(&self.folder, name.as_str(), &stream)?);
        Ok(())
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
            let Some(found) = self.find_here(name)? else {
                return Err(self.err(
                    name,
                    "invalid tombstone: it does not exist in the UtilityVM",
                    Some(io::Error::from(io::ErrorKind::NotFound)),
                ));
            };
            self.delete_here(name, found, "cannot remove it")?;
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
            let t = tombstones::tombstones_text(&self.tombstones);
            for name in &self.tombstones {
                // A tombstoned path this layer itself holds is deleted after import.
                if let Some(found) = self.find_here(name)? {
                    self.delete_here(name, found, "cannot delete the tombstoned path")?;
                }
            }
            self.forget_parent_cache();
            let cant = |e: Errno| {
                folder_err(
                    &self.folder,
                    TOMBSTONES_FILE,
                    "cannot write it",
                    Some(errno(e)),
                )
            };
            let mut f = self
                .root
                .top()
                .create_file(c"tombstones.txt", 0o666)
                .map_err(cant)?;
            f.write_all(t.as_bytes()).map_err(|e| {
                folder_err(&self.folder, TOMBSTONES_FILE, "cannot write it", Some(e))
            })?;
        }
        for (name, source) in std::mem::take(&mut self.pending_links) {
            self.link_now(&name, &source)?;
        }
        for (name, info) in self.dirs.iter().rev() {
            let rel = linux_rel(name);
            if let Ok(d) = self.root.dir(rel.as_bytes()).and_then(|d| d.reopen()) {
                let _ = d.set_times(&times_of(info));
            }
        }
        let chain = layerchain::layerchain_json(
            &self
                .parents
                .iter()
                .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect::<Vec<_>>(),
        )?;
        let mut f = self
            .root
            .top()
            .create_file(c"layerchain.json", 0o666)
            .map_err(|e| {
                folder_err(
                    &self.folder,
                    LAYERCHAIN_FILE,
                    "cannot write it",
                    Some(errno(e)),
                )
            })?;
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
