//! `from-rootfs`: Linux-built content (a rootfs or a Linux diff layer tar) turned into a
//! Windows layer tar that Windows accepts (`../shared/specs/windows-layer.md` §5.3).
//!
//! Output: `Files` then `Hives` directory entries; every entry renamed `Files/<name>`,
//! every ancestor directory explicit before its children, hard-link targets prefixed
//! (symlink targets left as they are); `MSWINDOWS.fileattr` 16 (directories), 32
//! (files), 32|0x400 (symlinks); `LIBARCHIVE.creationtime` = mtime, atime and ctime =
//! mtime; a default security descriptor on every entry below `Files` (BuildKit's by
//! default); Go PAX
//! encoding as go-winio writes. Names NTFS cannot hold (`\ : * ? " < > |`, control
//! characters, two names differing only in case), devices, fifos and opaque directories
//! are refused with an error naming the entry.
//!
//! ```
//! use strata_layer::{tar::TarWriter, Entry, EntryKind, LayerPath, LayerWriter};
//! use strata_wclayer::windowsify::{windowsify, SecurityChoice};
//! let mut linux = TarWriter::new(Vec::new());
//! linux.add(&Entry::new(LayerPath::from_tar_name(b"app/run.sh").unwrap(), EntryKind::File { size: 2, sparse: None })).unwrap();
//! linux.write_data(b"hi").unwrap();
//! let linux = linux.finish().unwrap();
//! let mut win = Vec::new();
//! let s = windowsify(&linux[..], &mut win, &SecurityChoice::BuildKit).unwrap();
//! assert_eq!((s.entries, s.implied_dirs), (4, 1)); // Files, Hives, Files/app, Files/app/run.sh
//! ```

use std::collections::HashSet;
use std::io::{self, Read, Write};

use base64::Engine;
use strata_layer::compress::Decompressor;
use strata_layer::tar::{HeaderStyle, TarReader, TarWriter};
use strata_layer::{Entry, EntryKind, LayerReader, LayerWriter, Timestamp};

use crate::backuptar::{
    basic_records, copy_dense, record, set_times, tar_path, write_tar_whiteout, TarData, B64,
    PAX_RAWSD,
};
use crate::reparse::{self, ReparsePoint};
use crate::sd::{SecurityDescriptor, BUILDKIT_DIR_SDDL, BUILDKIT_FILE_SDDL, KO_SD_BASE64};
use crate::{check_component, Error, FileAttributes, FileBasicInfo, FileTime, WinPath};

/// Which security descriptors the entries get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityChoice {
    /// BuildKit's: administrators and SYSTEM full control, users read and execute.
    BuildKit,
    /// ko's and crane's: owner and group BUILTIN\Users, no DACL.
    Ko,
    /// One descriptor for every entry, from SDDL.
    Sddl(String),
}

impl SecurityChoice {
    /// `buildkit`, `ko`, or SDDL text.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "buildkit" => SecurityChoice::BuildKit,
            "ko" => SecurityChoice::Ko,
            sddl => {
                SecurityDescriptor::from_sddl(sddl)?;
                SecurityChoice::Sddl(sddl.to_owned())
            }
        })
    }

    /// (directory SD, file SD), base64.
    fn descriptors(&self) -> Result<(String, String), Error> {
        Ok(match self {
            SecurityChoice::BuildKit => (
                B64.encode(SecurityDescriptor::from_sddl(BUILDKIT_DIR_SDDL)?.to_bytes()),
                B64.encode(SecurityDescriptor::from_sddl(BUILDKIT_FILE_SDDL)?.to_bytes()),
            ),
            SecurityChoice::Ko => (KO_SD_BASE64.to_owned(), KO_SD_BASE64.to_owned()),
            SecurityChoice::Sddl(s) => {
                let b = B64.encode(SecurityDescriptor::from_sddl(s)?.to_bytes());
                (b.clone(), b)
            }
        })
    }
}

/// What [`windowsify`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WindowsifySummary {
    /// Entries written, `Files` and `Hives` included.
    pub entries: u64,
    /// Directories the input did not list before their children, written for it.
    pub implied_dirs: u64,
    /// Directory entries of the input that came after an implied one and were dropped.
    pub late_dirs: u64,
    /// Bytes of file data written.
    pub data_bytes: u64,
    /// Whiteouts written (deletions carried over as whiteouts of `Files\…`).
    pub whiteouts: u64,
}

fn info_at(t: Timestamp, attributes: u32) -> FileBasicInfo {
    let ft = FileTime::from_timestamp(t);
    FileBasicInfo {
        creation_time: ft,
        last_access_time: ft,
        last_write_time: ft,
        change_time: ft,
        attributes: FileAttributes(attributes),
    }
}

struct Emitter<W: Write> {
    tar: TarWriter<W>,
    dirs: HashSet<String>,
    names: HashSet<String>,
    dir_sd: String,
    file_sd: String,
    summary: WindowsifySummary,
}

impl<W: Write> Emitter<W> {
    fn claim(&mut self, name: &str) -> Result<(), Error> {
        if !self.names.insert(name.to_uppercase()) {
            return Err(Error::name(
                name,
                "a second entry with this name, or one differing only in case (NTFS holds one)",
            ));
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryKind,
        mode: u32,
        info: FileBasicInfo,
        sd: Option<&str>,
    ) -> Result<(), Error> {
        let mut e = Entry::new(tar_path(name)?, kind);
        set_times(&mut e, &info);
        basic_records(&mut e, &info);
        if let Some(sd) = sd {
            e.pax.push(record(PAX_RAWSD, sd));
        }
        self.tar.add_as(&e, HeaderStyle::GoPax { mode })?;
        self.summary.entries += 1;
        Ok(())
    }

    fn dir(&mut self, name: &str, t: Timestamp) -> Result<(), Error> {
        self.claim(name)?;
        self.dirs.insert(name.to_owned());
        // `Files` and `Hives` get no descriptor (as BuildKit writes them, and as Windows
        // exports them: their own SD is never read back).
        let sd = name.contains('/').then(|| self.dir_sd.clone());
        self.entry(
            name,
            EntryKind::Dir,
            0o40000,
            info_at(t, FileAttributes::DIRECTORY),
            sd.as_deref(),
        )
    }

    /// Writes the ancestors of `name` that were not written yet.
    fn ancestors(&mut self, name: &str, t: Timestamp) -> Result<(), Error> {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            let dir = &name[..at + i];
            if !self.dirs.contains(dir) {
                self.dir(dir, t)?;
                self.summary.implied_dirs += 1;
            }
            at += i + 1;
        }
        Ok(())
    }
}

/// Reads a Linux layer or rootfs tar (plain, gzip or zstd) and writes the Windows layer.
pub fn windowsify<R: Read + Send, W: Write>(
    input: R,
    out: W,
    sd: &SecurityChoice,
) -> Result<WindowsifySummary, Error> {
    let (dir_sd, file_sd) = sd.descriptors()?;
    let input = Decompressor::new(input).map_err(|e| Error::io("reading the rootfs tar", e))?;
    let mut r = TarReader::new(io::BufReader::with_capacity(256 * 1024, input));
    let mut em = Emitter {
        tar: TarWriter::new(out),
        dirs: HashSet::new(),
        names: HashSet::new(),
        dir_sd,
        file_sd,
        summary: WindowsifySummary::default(),
    };
    em.dir("Files", Timestamp::EPOCH)?;
    em.dir("Hives", Timestamp::EPOCH)?;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(e) = r.next_entry()? {
        if e.path.is_root() {
            continue;
        }
        let rel = std::str::from_utf8(e.path.as_bytes())
            .map_err(|_| Error::name(e.path.to_string(), "the name is not UTF-8"))?;
        for c in rel.split('/') {
            check_component(c).map_err(|r| Error::name(rel, r))?;
        }
        let name = format!("Files/{rel}");
        let t = e.meta.mtime;
        match &e.kind {
            EntryKind::Whiteout => {
                em.ancestors(&name, t)?;
                write_tar_whiteout(&mut em.tar, &WinPath::parse(&name)?)?;
                em.summary.whiteouts += 1;
                em.summary.entries += 1;
                continue;
            }
            EntryKind::Opaque => return Err(Error::entry(rel, "an opaque directory has no Windows equivalent (Windows layers have only tombstones)")),
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {
                return Err(Error::entry(rel, format!("a {} cannot be held by a Windows layer", match e.kind { EntryKind::Fifo => "fifo", _ => "device" })))
            }
            _ => {}
        }
        em.ancestors(&name, t)?;
        match &e.kind {
            EntryKind::Dir => {
                if em.dirs.contains(&name) {
                    em.summary.late_dirs += 1;
                } else {
                    em.dir(&name, t)?;
                }
            }
            EntryKind::File { size, .. } => {
                em.claim(&name)?;
                let sd = em.file_sd.clone();
                em.entry(
                    &name,
                    EntryKind::File {
                        size: *size,
                        sparse: None,
                    },
                    0o100000,
                    info_at(t, FileAttributes::ARCHIVE),
                    Some(&sd),
                )?;
                copy_dense(&mut r, &e, &mut TarData(&mut em.tar), &mut buf)?;
                em.summary.data_bytes += size;
            }
            EntryKind::Symlink { target } => {
                em.claim(&name)?;
                let tstr = std::str::from_utf8(target)
                    .map_err(|_| Error::entry(rel, "the symlink target is not UTF-8"))?;
                // Checked now: Windows would refuse the reparse buffer at import.
                reparse::encode(&ReparsePoint {
                    target: tstr.replace('/', "\\"),
                    mount_point: false,
                })?;
                let sd = em.file_sd.clone();
                em.entry(
                    &name,
                    EntryKind::Symlink {
                        target: target.clone(),
                    },
                    0o120000,
                    info_at(t, FileAttributes::ARCHIVE | FileAttributes::REPARSE_POINT),
                    Some(&sd),
                )?;
            }
            EntryKind::HardLink { target } => {
                em.claim(&name)?;
                let tname = format!(
                    "Files/{}",
                    std::str::from_utf8(target.as_bytes())
                        .map_err(|_| Error::entry(rel, "the link target is not UTF-8"))?
                );
                em.entry(
                    &name,
                    EntryKind::HardLink {
                        target: tar_path(&tname)?,
                    },
                    0o644,
                    info_at(t, FileAttributes::ARCHIVE),
                    None,
                )?;
            }
            _ => unreachable!("handled above"),
        }
    }
    em.tar.finish()?;
    Ok(em.summary)
}
