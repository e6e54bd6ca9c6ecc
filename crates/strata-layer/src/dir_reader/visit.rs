//! One name of the current directory made into its entry: stat once, open what must
//! be opened anyway, hard links, overlay whiteouts and opaque markers, xattrs.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{DirReader, OpenFile, StatInfo, FILE_FLAGS, OPEN_FLAGS};
use crate::tar::HeaderStyle;
use crate::xattr;
use crate::{Entry, EntryKind, Error, LayerPath, Metadata};

impl DirReader {
    /// Makes the entry for `self.name` in the current directory, or `None` to skip it.
    pub(super) fn visit(
        &mut self,
        path: LayerPath,
        dtype: FileType,
    ) -> Result<Option<Entry>, Error> {
        let Some(dirfd) = self.stack.last().and_then(|l| l.fd.as_ref()) else {
            return Err(self.err(
                "internal error: no open directory for",
                &path,
                io::Error::from(io::ErrorKind::Other),
            ));
        };
        let dirfd = dirfd.as_fd();
        let name = &self.name[..];

        // Stat once. Regular files and directories are opened anyway (for data, listing and
        // xattrs), so when getdents says that is what they are, open first and fstat the fd.
        let mut opened = None;
        let mut st = None;
        let hint = match dtype {
            FileType::RegularFile => Some(FILE_FLAGS),
            FileType::Directory => Some(OFlags::DIRECTORY),
            _ => None,
        };
        if let Some(extra) = hint {
            if let Ok(fd) = rfs::openat(dirfd, name, OPEN_FLAGS | extra, Mode::empty()) {
                let s = rfs::fstat(&fd).map_err(|e| self.err("cannot stat", &path, e))?;
                st = Some(StatInfo::new(&s));
                opened = Some(fd);
            }
        }
        let mut st = match st {
            Some(st) => st,
            None => match rfs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => StatInfo::new(&s),
                Err(Errno::NOENT) => {
                    self.warnings.push(format!(
                        "`{path}` vanished while the tree was being read; skipped it"
                    ));
                    return Ok(None);
                }
                Err(e) => return Err(self.err("cannot stat", &path, e)),
            },
        };
        let ftype = st.file_type();
        if matches!(ftype, FileType::RegularFile | FileType::Directory) && opened.is_none() {
            let extra = if ftype == FileType::Directory {
                OFlags::DIRECTORY
            } else {
                FILE_FLAGS
            };
            let fd = rfs::openat(dirfd, name, OPEN_FLAGS | extra, Mode::empty())
                .map_err(|e| self.err("cannot open", &path, e))?;
            let now = rfs::fstat(&fd).map_err(|e| self.err("cannot stat", &path, e))?;
            let now = StatInfo::new(&now);
            if (now.dev, now.ino) != (st.dev, st.ino) {
                return Err(self.err(
                    "changed while being read:",
                    &path,
                    io::Error::other("it was replaced between stat and open"),
                ));
            }
            st = now;
            opened = Some(fd);
        }

        let mut meta = Metadata {
            mode: st.mode & 0o7777,
            uid: st.uid.into(),
            gid: st.gid.into(),
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: st.mtime,
            atime: None,
            ctime: None,
            xattrs: Vec::new(),
        };

        if matches!(ftype, FileType::Socket | FileType::Unknown) {
            let what = if ftype == FileType::Socket {
                "socket"
            } else {
                "file of unknown type"
            };
            self.warnings.push(format!(
                "skipped {what} `{path}`: it cannot be stored in a layer"
            ));
            return Ok(None);
        }

        // Overlay whiteouts share one inode (the kernel links them), so they are decided
        // before hard links are.
        if self.overlay_upper && self.is_overlay_whiteout(&st, opened.as_ref()) {
            return Ok(Some(Entry {
                path,
                kind: EntryKind::Whiteout,
                meta: Metadata::default(),
                pax: Vec::new(),
                header: HeaderStyle::Strata,
            }));
        }

        // Hard links: the first name is the entry, later names point to it.
        if ftype != FileType::Directory && st.nlink > 1 {
            let key = (st.dev, st.ino);
            if let Some((first, left)) = self.links.get_mut(&key) {
                let target = first.clone();
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.links.remove(&key);
                }
                return Ok(Some(Entry {
                    path,
                    kind: EntryKind::HardLink { target },
                    meta,
                    pax: Vec::new(),
                    header: HeaderStyle::Strata,
                }));
            }
            self.links.insert(key, (path.clone(), st.nlink - 1));
        }

        let kind = match ftype {
            FileType::RegularFile | FileType::Directory => {
                let Some(fd) = opened.take() else {
                    return Err(self.err(
                        "internal error: not opened:",
                        &path,
                        io::Error::from(io::ErrorKind::Other),
                    ));
                };
                meta.xattrs =
                    self.xattrs
                        .read(xattr::Source::Fd(fd.as_fd()), &path, &mut self.warnings);
                if self.overlay_upper {
                    let opaque = xattr::from_overlay(&mut meta.xattrs);
                    if opaque && ftype == FileType::Directory {
                        self.pending = Some(Entry::new(path.clone(), EntryKind::Opaque));
                    }
                }
                if ftype == FileType::Directory {
                    self.push_level(path.clone(), fd, &st)?;
                    EntryKind::Dir
                } else {
                    let size = u64::try_from(st.size).map_err(|_| {
                        self.err(
                            "impossible size of",
                            &path,
                            io::Error::from(io::ErrorKind::InvalidData),
                        )
                    })?;
                    self.file = Some(OpenFile {
                        fd,
                        path: path.clone(),
                        size,
                        remaining: size,
                    });
                    EntryKind::File { size, sparse: None }
                }
            }
            FileType::Symlink => {
                let target = match rfs::readlinkat(dirfd, name, Vec::new()) {
                    Ok(target) => target.into_bytes(),
                    Err(Errno::NOENT) => {
                        self.warnings.push(format!(
                            "`{path}` vanished while the tree was being read; skipped it"
                        ));
                        return Ok(None);
                    }
                    Err(e) => return Err(self.err("cannot read symlink", &path, e)),
                };
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                EntryKind::Symlink { target }
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                let (major, minor) = (rfs::major(st.rdev), rfs::minor(st.rdev));
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                if ftype == FileType::CharacterDevice {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            FileType::Fifo => {
                meta.xattrs = self.xattrs.read_at(dirfd, name, &path, &mut self.warnings);
                EntryKind::Fifo
            }
            FileType::Socket | FileType::Unknown => return Ok(None),
        };
        if self.overlay_upper && !matches!(ftype, FileType::RegularFile | FileType::Directory) {
            xattr::from_overlay(&mut meta.xattrs);
        }
        Ok(Some(Entry {
            path,
            kind,
            meta,
            pax: Vec::new(),
            header: HeaderStyle::Strata,
        }))
    }

    /// An overlay whiteout: a 0/0 character device, or an empty regular file marked with
    /// `trusted.overlay.whiteout` (the xattr form of newer kernels).
    fn is_overlay_whiteout(&self, st: &StatInfo, opened: Option<&OwnedFd>) -> bool {
        match st.file_type() {
            FileType::CharacterDevice => st.rdev == 0,
            FileType::RegularFile if st.size == 0 => opened.is_some_and(|fd| {
                rfs::fgetxattr(fd, xattr::OVERLAY_WHITEOUT, &mut [0u8; 8]).is_ok()
            }),
            _ => false,
        }
    }
}
