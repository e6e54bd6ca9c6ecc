//! The walk: one level per directory on the current path, listed and sorted once,
//! with a bounded number of open descriptors.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;

use super::{
    io_error, DirReader, Level, Span, StatInfo, Visit, DIRENT_BUF_LEN, MAX_OPEN_DIRS, OPEN_FLAGS,
    POOL_MAX,
};
use crate::{Entry, Error, LayerPath};

impl DirReader {
    /// Lists the directory open at `fd`, sorts its names and makes it the current level.
    pub(super) fn push_level(
        &mut self,
        path: LayerPath,
        fd: OwnedFd,
        st: &StatInfo,
    ) -> Result<(), Error> {
        let (mut names, mut spans) = self.pool.pop().unwrap_or_default();
        names.clear();
        spans.clear();
        if let Err(e) = list_dir(fd.as_fd(), &mut self.dirent_buf, &mut names, &mut spans) {
            return Err(self.err("cannot list directory", &path, e));
        }
        spans.sort_unstable_by(|a, b| {
            names[a.start..a.start + a.len].cmp(&names[b.start..b.start + b.len])
        });
        self.stack.push(Level {
            path,
            fd: Some(fd),
            dev: st.dev,
            ino: st.ino,
            names,
            spans,
            next: 0,
        });
        // Keep the fds of the deepest MAX_OPEN_DIRS levels only.
        if let Some(i) = self.stack.len().checked_sub(MAX_OPEN_DIRS + 1) {
            self.stack[i].fd = None;
        }
        Ok(())
    }

    /// Leaves the current directory. If its parent's fd was closed, reopens the parent as
    /// `..` of the directory being left and checks it is the same directory as before.
    fn pop_level(&mut self) -> Result<(), Error> {
        let Some(done) = self.stack.pop() else {
            return Ok(());
        };
        let Level {
            path: done_path,
            fd: done_fd,
            names,
            spans,
            ..
        } = done;
        if self.pool.len() < POOL_MAX {
            self.pool.push((names, spans));
        }
        let Some(parent) = self.stack.last_mut() else {
            return Ok(());
        };
        if parent.fd.is_some() {
            return Ok(());
        }
        let Some(done_fd) = done_fd else {
            return Err(io_error(
                &self.root,
                "internal error: no fd for directory",
                &done_path,
                io::Error::from(io::ErrorKind::Other),
            ));
        };
        let reopen = rfs::openat(
            &done_fd,
            c"..",
            OPEN_FLAGS | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .and_then(|fd| rfs::fstat(&fd).map(|st| (fd, StatInfo::new(&st))));
        let (fd, st) = reopen.map_err(|e| {
            io_error(
                &self.root,
                "cannot reopen directory",
                &parent.path,
                e.into(),
            )
        })?;
        if (st.dev, st.ino) != (parent.dev, parent.ino) {
            return Err(io_error(
                &self.root,
                "directory changed while being read:",
                &parent.path,
                io::Error::other(format!(
                    "`{done_path}` was moved out of it, so the walk cannot climb back safely"
                )),
            ));
        }
        parent.fd = Some(fd);
        Ok(())
    }

    /// The next entry of the walk, skipping what cannot be stored.
    pub(super) fn advance(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(&span) = top.spans.get(top.next) else {
                self.pop_level()?;
                continue;
            };
            top.next += 1;
            self.name.clear();
            self.name
                .extend_from_slice(&top.names[span.start..span.start + span.len]);
            let path = match top.path.join(&self.name) {
                Ok(path) => path,
                Err(e) => {
                    let parent = top.path.clone();
                    return Err(io_error(
                        &self.root,
                        &format!("bad name `{}` in directory", self.name.escape_ascii()),
                        &parent,
                        io::Error::new(io::ErrorKind::InvalidData, e),
                    ));
                }
            };
            #[cfg(test)]
            let dtype = if self.ignore_dtype {
                FileType::Unknown
            } else {
                span.dtype
            };
            #[cfg(not(test))]
            let dtype = span.dtype;
            let verdict = match self.filter.as_mut() {
                Some(f) => f(&path),
                None => Visit::Entry,
            };
            match verdict {
                Visit::Skip => continue,
                Visit::Descend if !matches!(dtype, FileType::Directory | FileType::Unknown) => {
                    continue
                }
                Visit::Descend => {
                    // Listed for its contents only: the entry itself is not returned.
                    self.visit(path, dtype)?;
                }
                Visit::Entry => {
                    if let Some(entry) = self.visit(path, dtype)? {
                        return Ok(Some(entry));
                    }
                }
            }
        }
    }
}

/// Reads every name of the directory open at `fd` (except `.` and `..`) into `names`,
/// one span each.
fn list_dir(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    names: &mut Vec<u8>,
    spans: &mut Vec<Span>,
) -> Result<(), Errno> {
    buf.clear();
    buf.reserve(DIRENT_BUF_LEN);
    let mut dir = RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        spans.push(Span {
            start: names.len(),
            len: name.len(),
            dtype: entry.file_type(),
        });
        names.extend_from_slice(name);
    }
    Ok(())
}
