//! Metadata of the entries written: owner, extended attributes (by the policy of
//! [`DirWriterOptions`](super::DirWriterOptions)), mode and times, in the order that
//! keeps each from undoing another (chown clears setuid bits and capabilities).

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::io_err;
use super::tree::{Owner, Tree};
use crate::root::{shown, Dir};
use crate::xattr;
use crate::{Error, LayerPath, Metadata, Timestamp};

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999).into(),
    }
}

impl Tree {
    fn owner(
        &self,
        path: &LayerPath,
        meta: &Metadata,
        now: Owner,
    ) -> Result<Option<(Uid, Gid)>, Error> {
        if !self.opts.chown || (now == Owner::Creator && (meta.uid, meta.gid) == self.creator) {
            return Ok(None);
        }
        // u32::MAX is -1, "leave unchanged", for chown(2).
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| Error::apply(path, format!("{what} {v} is out of range")))
        };
        Ok(Some((
            Uid::from_raw(id(meta.uid, "uid")?),
            Gid::from_raw(id(meta.gid, "gid")?),
        )))
    }

    /// Handles a setxattr result by the policy: unsupported → warning.
    fn xattr_result(
        &mut self,
        path: &LayerPath,
        name: &[u8],
        r: Result<(), Errno>,
        special: bool,
    ) -> Result<(), Error> {
        match r {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: the filesystem does not support it",
                    shown(name)
                ));
                Ok(())
            }
            // Linux refuses user.* on symlinks and device nodes.
            Err(Errno::PERM) if special && name.starts_with(b"user.") => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: user.* attributes are only allowed on files and directories",
                    shown(name)
                ));
                Ok(())
            }
            Err(Errno::PERM) if self.unprivileged => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: not permitted without privileges",
                    shown(name)
                ));
                Ok(())
            }
            // A malformed value (a 28-byte v3 capability, say) is dropped, not fatal: not
            // applying an attribute grants nothing, and the rest of the layer is sound.
            Err(Errno::INVAL) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` not applied: the kernel rejected its value as malformed",
                    shown(name)
                ));
                Ok(())
            }
            Err(e) => Err(Error::apply_io(
                path,
                format!("cannot set xattr `{}`", shown(name)),
                io_err(e),
            )),
        }
    }

    fn allowed_xattr(&mut self, path: &LayerPath, name: &[u8]) -> bool {
        match xattr::refusal(name, self.opts.privileged_xattrs) {
            None => true,
            Some(why) => {
                self.warn(format!(
                    "xattr `{}` on `{path}` dropped: {why}",
                    shown(name)
                ));
                false
            }
        }
    }

    /// Times through `set`; if the kernel rejects them, clamps into 1970..=2^63 and warns.
    pub(super) fn set_times(
        &mut self,
        path: &LayerPath,
        mtime: Timestamp,
        atime: Timestamp,
        set: impl Fn(&Timestamps) -> Result<(), Errno>,
    ) -> Result<(), Error> {
        let ts = Timestamps {
            last_access: timespec(atime),
            last_modification: timespec(mtime),
        };
        match set(&ts) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::OVERFLOW) => {
                let clamp = |t: Timestamp| if t.secs < 0 { Timestamp::EPOCH } else { t };
                let ts = Timestamps {
                    last_access: timespec(clamp(atime)),
                    last_modification: timespec(clamp(mtime)),
                };
                set(&ts).map_err(|e| Error::apply_io(path, "cannot set times", io_err(e)))?;
                self.warn(format!(
                    "times of `{path}` were rejected by the filesystem and clamped to 1970"
                ));
                Ok(())
            }
            Err(e) => Err(Error::apply_io(path, "cannot set times", io_err(e))),
        }
    }

    /// chown → xattrs → chmod → times through an open descriptor (files, directories);
    /// `now` says who owns the node already (the chown is skipped when it would change
    /// nothing).
    pub(super) fn apply_meta_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &LayerPath,
        meta: &Metadata,
        mode: Option<u32>,
        times: bool,
        now: Owner,
    ) -> Result<(), Error> {
        if let Some((uid, gid)) = self.owner(path, meta, now)? {
            rfs::fchown(fd, Some(uid), Some(gid))
                .map_err(|e| Error::apply_io(path, "cannot chown", io_err(e)))?;
        }
        for x in &meta.xattrs {
            if self.allowed_xattr(path, &x.name) {
                let r = rfs::fsetxattr(fd, &x.name[..], &x.value, XattrFlags::empty());
                self.xattr_result(path, &x.name, r, false)?;
            }
        }
        if let Some(m) = mode {
            rfs::fchmod(fd, Mode::from_raw_mode(m & 0o7777))
                .map_err(|e| Error::apply_io(path, "cannot chmod", io_err(e)))?;
        }
        if times {
            let atime = meta.atime.unwrap_or(meta.mtime);
            self.set_times(path, meta.mtime, atime, |ts| rfs::futimens(fd, ts))?;
        }
        Ok(())
    }

    /// chown → xattrs → chmod → times for `name` in `dir`, never following it (symlinks,
    /// devices, fifos: nodes that cannot be opened for this without side effects).
    pub(super) fn apply_meta_at(
        &mut self,
        dir: &Dir,
        name: &CStr,
        path: &LayerPath,
        meta: &Metadata,
        is_symlink: bool,
        now: Owner,
    ) -> Result<(), Error> {
        if let Some((uid, gid)) = self.owner(path, meta, now)? {
            dir.chown_at(name, uid, gid)
                .map_err(|e| Error::apply_io(path, "cannot chown", io_err(e)))?;
        }
        for x in &meta.xattrs {
            if !self.allowed_xattr(path, &x.name) {
                continue;
            }
            if is_symlink && x.name.starts_with(b"user.") {
                self.warn(format!(
                    "xattr `{}` on symlink `{path}` not applied: Linux allows user.* only on files and directories",
                    shown(&x.name)
                ));
                continue;
            }
            let r = dir.set_xattr_at(name, &x.name, &x.value);
            self.xattr_result(path, &x.name, r, true)?;
        }
        if !is_symlink {
            // The node was created a moment ago by this writer in a directory only this
            // writer changes, so `name` is not a symlink.
            dir.chmod_node(name, meta.mode)
                .map_err(|e| Error::apply_io(path, "cannot chmod", io_err(e)))?;
        }
        let atime = meta.atime.unwrap_or(meta.mtime);
        self.set_times(path, meta.mtime, atime, |ts| dir.set_times_at(name, ts))
    }
}
