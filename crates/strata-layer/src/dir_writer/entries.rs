//! The entries of a layer, one method per kind, written the same way into either target.

use std::os::fd::AsFd;
use std::sync::Arc;

use rustix::fs::{self as rfs, FileType, Mode};
use rustix::io::Errno;

use super::background::{Finish, Handed, MAX_HANDED};
use super::tree::{DirMeta, Owner};
use super::{file_type, io_err, DirWriter, OpenFile};
use crate::root::Sweep;
use crate::{Entry, EntryKind, Error, LayerPath, SparseExtent};

impl DirWriter {
    /// Finishes the regular file being written: checks its length, punches the sparse
    /// tail, applies its metadata (after the data: a write clears `security.capability`).
    pub(super) fn complete_current(&mut self) -> Result<(), Error> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        if cur.delivered != cur.expected {
            return Err(Error::apply(
                &cur.path,
                format!(
                    "only {} of {} data bytes were delivered",
                    cur.delivered, cur.expected
                ),
            ));
        }
        // Created with its permission bits already (umask 0), a file needs a chmod only
        // for setuid, setgid or sticky, which must follow the chown that clears them.
        let mode = if self.tree.exact_create_mode && cur.meta.mode & 0o7000 == 0 {
            None
        } else {
            Some(cur.meta.mode)
        };
        if cur.handed {
            if let Some(file) = cur.file {
                let handed = Handed {
                    file,
                    path: cur.path,
                    seq: cur.seq,
                };
                self.tree.background.begin(handed);
            }
            return self.tree.background.end(Finish {
                meta: cur.meta,
                mode,
                owner: cur.owner,
            });
        }
        let Some(file) = cur.file else {
            return Err(Error::Misuse(format!("`{}` is not open", cur.path)));
        };
        if cur.sparse.is_some() {
            rfs::ftruncate(&file, cur.size).map_err(|e| {
                Error::apply_io(&cur.path, "cannot set the size of a sparse file", io_err(e))
            })?;
        }
        self.tree
            .meta
            .apply_meta_fd(file.as_fd(), &cur.path, &cur.meta, mode, true, cur.owner)
    }

    /// Who owns a node this writer creates now in the directory [`parent`](Self::parent)
    /// returned last: the creator, unless that directory may pass another group on.
    fn created_owner(&self) -> Owner {
        if self.tree.parent_foreign {
            Owner::Unknown
        } else {
            Owner::Creator
        }
    }

    pub(super) fn add_root(&mut self, entry: &Entry) -> Result<(), Error> {
        match entry.kind {
            // Its metadata is ignored (image-formats §6.4).
            EntryKind::Dir => Ok(()),
            EntryKind::Opaque => {
                self.opaque.push(LayerPath::root());
                Ok(())
            }
            EntryKind::Whiteout => Err(Error::apply(
                &entry.path,
                "a whiteout cannot remove the root",
            )),
            _ => Err(Error::apply(&entry.path, "root entry must be a directory")),
        }
    }

    pub(super) fn add_file(
        &mut self,
        entry: &Entry,
        size: u64,
        sparse: Option<&[SparseExtent]>,
    ) -> Result<(), Error> {
        let path = &entry.path;
        if let Some(extents) = sparse {
            for e in extents {
                match e.offset.checked_add(e.len) {
                    Some(end) if end <= size => {}
                    _ => {
                        return Err(Error::apply(
                            path,
                            "a sparse extent lies beyond the file's size",
                        ))
                    }
                }
            }
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let owner = self.created_owner();
        let mut removed = false;
        let create_mode = if self.tree.exact_create_mode {
            entry.meta.mode & 0o777
        } else {
            0o600
        };
        let file = loop {
            match dir.create_file(&name, create_mode) {
                Ok(file) => break file,
                Err(Errno::EXIST) if !removed => {
                    self.tree.remove_existing(&dir, &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create file", io_err(e))),
            }
        };
        self.tree.mark_written(path);
        let data_len = entry.kind.data_len();
        self.current = Some(OpenFile {
            path: path.clone(),
            file: Some(file),
            handed: sparse.is_none()
                && data_len <= MAX_HANDED
                && self.tree.background.ready(self.tree.meta.policy),
            seq: self.entries,
            meta: entry.meta.clone(),
            size,
            expected: entry.kind.data_len(),
            delivered: 0,
            sparse: sparse.map(|e| (e.to_vec(), 0, 0)),
            owner,
        });
        if entry.kind.data_len() == 0 {
            self.complete_current()?;
        }
        Ok(())
    }

    pub(super) fn add_dir(&mut self, entry: &Entry) -> Result<(), Error> {
        let path = &entry.path;
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let fail = |what: &str, e: Errno| {
            Error::apply_io(path, format!("cannot {what} directory"), io_err(e))
        };
        let mut owner = self.created_owner();
        let mut replaced = false;
        match dir.mkdir(&name, 0o700) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = dir.stat(&name).map_err(|e| fail("inspect", e))?;
                if file_type(&st) != FileType::Directory {
                    self.tree.remove_existing(&dir, &name, path)?;
                    dir.mkdir(&name, 0o700).map_err(|e| fail("create", e))?;
                    replaced = true;
                } else {
                    owner = Owner::Unknown; // merged: whoever owned it still does
                }
            }
            Err(e) => return Err(fail("create", e)),
        }
        let fd = dir.open_dir(&name).map_err(|e| fail("open", e))?;
        // In an upper directory, a directory that replaced what hid a lower entry (a
        // file, a whiteout) must not merge with the lower directory it hid.
        if replaced && self.lower_holds(path)? {
            self.target.hide_below(&mut self.tree, &fd, path)?;
        }
        // A mode that would stop us from creating children (0555) is set in finish().
        let mode = entry.meta.mode & 0o7777;
        let (now, later) = if mode & 0o700 == 0o700 {
            (mode, None)
        } else {
            (mode | 0o700, Some(mode))
        };
        self.tree
            .meta
            .apply_meta_fd(fd.as_fd(), path, &entry.meta, Some(now), false, owner)?;
        let foreign = self.tree.foreign_group_of(&entry.meta);
        self.tree.mark_written(path);
        self.tree.dir_meta.insert(
            path.as_bytes().into(),
            DirMeta {
                path: path.clone(),
                mode: later,
                mtime: entry.meta.mtime,
                atime: entry.meta.atime.unwrap_or(entry.meta.mtime),
            },
        );
        self.tree.cache.put(path.as_bytes(), Arc::new(fd), foreign);
        Ok(())
    }

    pub(super) fn add_symlink(&mut self, entry: &Entry, target: &[u8]) -> Result<(), Error> {
        let path = &entry.path;
        if target.contains(&0) {
            return Err(Error::apply(path, "symlink target holds a NUL byte"));
        }
        if target.is_empty() {
            return Err(Error::apply(path, "symlink target is empty"));
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let owner = self.created_owner();
        let mut removed = false;
        loop {
            match dir.symlink(&name, target) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    self.tree.remove_existing(&dir, &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create symlink", io_err(e))),
            }
        }
        self.tree.mark_written(path);
        self.tree
            .meta
            .apply_meta_at(&dir, &name, path, &entry.meta, true, owner)
    }

    pub(super) fn add_hardlink(&mut self, entry: &Entry, target: &LayerPath) -> Result<(), Error> {
        let path = &entry.path;
        if target.is_root() {
            return Err(Error::apply(path, "hard link to the root directory"));
        }
        // The target may be a file still being finished: its metadata goes first.
        self.tree.background.sync()?;
        let missing = || Error::apply(path, format!("hard link target `{target}` does not exist"));
        let Some((tdir, tname)) = self.parent(target, false)? else {
            return Err(missing());
        };
        let mut tst = tdir.stat(&tname);
        match &tst {
            Ok(st) if self.target.is_whiteout(st) => return Err(missing()),
            // Only a lower layer holds it: copied up first, as overlayfs does.
            Err(Errno::NOENT)
                if matches!(
                    self.target
                        .lower_at(&mut self.tree, target, Some(&tdir), |t| t
                            != FileType::Directory)?,
                    Some((_, true))
                ) =>
            {
                tst = tdir.stat(&tname);
            }
            _ => {}
        }
        let tst = match tst {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    format!("cannot inspect hard link target `{target}`"),
                    io_err(e),
                ))
            }
        };
        if file_type(&tst) == FileType::Directory {
            return Err(Error::apply(
                path,
                format!("hard link target `{target}` is a directory"),
            ));
        }
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut removed = false;
        loop {
            match dir.hard_link(&name, &tdir, &tname) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    let st = dir.stat(&name).map_err(|e| {
                        Error::apply_io(path, "cannot inspect the existing entry", io_err(e))
                    })?;
                    if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino) {
                        // Already a name of the target (`x -> x`, or a repeated link): keep it.
                        self.tree.mark_written(path);
                        return Ok(());
                    }
                    self.tree.remove_existing(&dir, &name, path)?;
                    removed = true;
                }
                Err(Errno::NOENT) => return Err(missing()),
                Err(e) => {
                    return Err(Error::apply_io(
                        path,
                        format!("cannot create hard link to `{target}`"),
                        io_err(e),
                    ))
                }
            }
        }
        self.tree.mark_written(path);
        // Metadata goes through the link only to a regular file: never chmod a symlink's
        // target (CVE-2021-32760), never open a device or fifo.
        if file_type(&tst) == FileType::RegularFile {
            let fd = dir
                .open_file(&name)
                .map_err(|e| Error::apply_io(path, "cannot open the new hard link", io_err(e)))?;
            self.tree.meta.apply_meta_fd(
                fd.as_fd(),
                path,
                &entry.meta,
                Some(entry.meta.mode),
                true,
                Owner::Unknown,
            )?;
        }
        Ok(())
    }

    pub(super) fn add_node(
        &mut self,
        entry: &Entry,
        ftype: FileType,
        dev: Option<(u32, u32)>,
    ) -> Result<(), Error> {
        let path = &entry.path;
        let rdev = match dev {
            None => 0,
            Some((major, minor)) => {
                if !self.tree.opts().devices {
                    let kind = if ftype == FileType::BlockDevice {
                        "block"
                    } else {
                        "char"
                    };
                    self.tree.warn(format!(
                        "{kind} device `{path}` ({major}:{minor}) skipped: creating devices needs privileges"
                    ));
                    return Ok(());
                }
                // mknod(2) takes a 32-bit device number: 12 bits of major, 20 of minor.
                if major > 0xfff || minor > 0xf_ffff {
                    return Err(Error::apply(
                        path,
                        format!("device number {major}:{minor} cannot be represented (at most 4095:1048575)"),
                    ));
                }
                rfs::makedev(major, minor)
            }
        };
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let owner = self.created_owner();
        let mut removed = false;
        loop {
            match dir.mknod(&name, ftype, 0o600, rdev) {
                Ok(()) => break,
                Err(Errno::EXIST) if !removed => {
                    self.tree.remove_existing(&dir, &name, path)?;
                    removed = true;
                }
                Err(e) => return Err(Error::apply_io(path, "cannot create node", io_err(e))),
            }
        }
        self.tree.mark_written(path);
        self.tree
            .meta
            .apply_meta_at(&dir, &name, path, &entry.meta, false, owner)
    }

    pub(super) fn whiteout(&mut self, path: &LayerPath) -> Result<(), Error> {
        let Some((dir, name)) = self.parent(path, false)? else {
            return Ok(()); // parent missing: nothing to hide
        };
        let st = match dir.stat(&name) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                // In an upper directory, what a lower layer holds is hidden by a whiteout.
                if self.lower_holds(path)? {
                    self.target.hide(&mut self.tree, &dir, &name, path)?;
                }
                return Ok(());
            }
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    "cannot inspect whiteout target",
                    io_err(e),
                ))
            }
        };
        if self.target.is_whiteout(&st) {
            return Ok(()); // hidden already
        }
        if self.tree.is_written(path.as_bytes()) {
            self.tree.warn(format!(
                "whiteout of `{path}` ignored: it was written earlier in this layer (whiteouts hide lower layers only)"
            ));
            return Ok(());
        }
        if file_type(&st) == FileType::Directory && self.tree.has_written_under(path.as_bytes()) {
            self.tree.warn(format!(
                "whiteout of `{path}` keeps what this layer wrote beneath it (whiteouts hide lower layers only)"
            ));
            let fd = dir
                .open_dir(&name)
                .map_err(|e| Error::apply_io(path, "cannot open whiteout target", io_err(e)))?;
            self.tree.cache.clear();
            if self.lower_holds(path)? {
                self.target.hide_below(&mut self.tree, &fd, path)?;
            }
            return fd.sweep(path, Sweep::Unkept, &mut self.tree);
        }
        self.tree.remove_existing(&dir, &name, path)?;
        if self.lower_holds(path)? {
            self.target.hide(&mut self.tree, &dir, &name, path)?;
        }
        Ok(())
    }

    pub(super) fn opaque(&mut self, path: &LayerPath) -> Result<(), Error> {
        let Some((dir, name)) = self.parent(path, true)? else {
            return Err(Error::apply(path, "cannot resolve the parent directory"));
        };
        let mut st = dir.stat(&name);
        match &st {
            // A whiteout this layer left: the directory takes its place.
            Ok(s) if self.target.is_whiteout(s) => {
                dir.unlink(&name)
                    .map_err(|e| Error::apply_io(path, "cannot remove the whiteout", io_err(e)))?;
                st = Err(Errno::NOENT);
            }
            // Only a lower layer holds it: a directory is copied up, anything else is
            // what the marker is in.
            Err(Errno::NOENT) => {
                let copy_dir = |t| t == FileType::Directory;
                match self
                    .target
                    .lower_at(&mut self.tree, path, Some(&dir), copy_dir)?
                {
                    Some((_, true)) => st = dir.stat(&name),
                    Some((lst, false)) => st = Ok(lst),
                    None => {}
                }
            }
            _ => {}
        }
        match st {
            Ok(st) if file_type(&st) == FileType::Directory => {}
            Ok(_) => {
                return Err(Error::apply(
                    path,
                    "opaque marker in something that is not a directory",
                ));
            }
            Err(Errno::NOENT) => {
                self.tree
                    .make_implied_dir(&dir, &name, path.as_bytes(), path)?;
            }
            Err(e) => {
                return Err(Error::apply_io(
                    path,
                    "cannot inspect opaque directory",
                    io_err(e),
                ))
            }
        }
        // The marker says this layer holds the directory: later whiteouts keep it.
        self.tree.mark_written(path);
        self.opaque.push(path.clone());
        Ok(())
    }

    /// Removes, below each opaque directory, everything this layer did not write.
    pub(super) fn finish_opaque(&mut self) -> Result<(), Error> {
        let mut dirs = std::mem::take(&mut self.opaque);
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            let opened = if d.is_root() {
                self.tree.root.top().reopen()
            } else {
                let Some((dir, name)) = self.parent(&d, false)? else {
                    continue;
                };
                dir.open_dir(&name)
            };
            let fd = match opened {
                Ok(fd) => fd,
                // Replaced later in this layer by a non-directory: nothing to hide.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => {
                    return Err(Error::apply_io(
                        &d,
                        "cannot open opaque directory",
                        io_err(e),
                    ))
                }
            };
            self.tree.cache.clear();
            // The sweep removes what is not this layer's (for an upper directory: copies
            // up and whiteouts too); the target hides what lies below.
            fd.sweep(&d, Sweep::Unkept, &mut self.tree)?;
            self.target.hide_below(&mut self.tree, &fd, &d)?;
        }
        Ok(())
    }

    /// Directory times (and deferred modes), deepest first so nothing bumps them afterwards.
    pub(super) fn finish_dirs(&mut self) -> Result<(), Error> {
        let mut dirs: Vec<DirMeta> = std::mem::take(&mut self.tree.dir_meta)
            .into_values()
            .collect();
        let depth = |d: &DirMeta| d.path.as_bytes().iter().filter(|&&b| b == b'/').count();
        // Stable: siblings stay together, which keeps the parent cache warm.
        dirs.sort_by_key(|d| std::cmp::Reverse(depth(d)));
        for d in dirs {
            let Some((dir, name)) = self.parent(&d.path, false)? else {
                continue;
            };
            match d.mode {
                // Kept times of a directory reached through a symlink are not the
                // symlink's: it keeps its own.
                None if dir
                    .stat(&name)
                    .is_ok_and(|st| file_type(&st) == FileType::Symlink) => {}
                None => {
                    self.tree.meta.set_times(&d.path, d.mtime, d.atime, |ts| {
                        match dir.set_times_at(&name, ts) {
                            Err(Errno::NOENT) => Ok(()), // gone since: nothing to date
                            r => r,
                        }
                    })?;
                }
                Some(mode) => {
                    let fd = match dir.open_dir(&name) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                        Err(e) => {
                            return Err(Error::apply_io(
                                &d.path,
                                "cannot open directory",
                                io_err(e),
                            ))
                        }
                    };
                    rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                        .map_err(|e| Error::apply_io(&d.path, "cannot chmod", io_err(e)))?;
                    self.tree
                        .meta
                        .set_times(&d.path, d.mtime, d.atime, |ts| fd.set_times(ts))?;
                }
            }
        }
        Ok(())
    }
}
