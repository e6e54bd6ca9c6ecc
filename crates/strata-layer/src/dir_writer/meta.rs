//! Metadata of the entries written: owner, extended attributes (by the policy of
//! [`DirWriterOptions`](super::DirWriterOptions)), mode and times, in the order that
//! keeps each from undoing another (chown clears setuid bits and capabilities).

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::tree::Owner;
use super::{io_err, DirWriterOptions};
use crate::root::{shown, Dir};
use crate::xattr;
use crate::{Error, LayerPath, Metadata, Timestamp};

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999).into(),
    }
}

/// What metadata the writer may apply (from [`DirWriterOptions`] and who runs it): all
/// that applying an entry's metadata needs besides the descriptor, so that the thread
/// finishing files in the background applies it the same way.
#[derive(Clone, Copy)]
pub(super) struct MetaPolicy {
    pub(super) opts: DirWriterOptions,
    /// The uid and gid that own what this writer creates (its effective ids).
    pub(super) creator: (u64, u64),
    /// Not running as root: EPERM on an xattr is expected, not an error.
    pub(super) unprivileged: bool,
}

/// Warnings, each with the number of the entry it belongs to, so that those found on
/// the background thread can be put back in the order of the entries. At most
/// [`MAX_WARNINGS`] are kept; the rest are counted.
#[derive(Default)]
pub(super) struct Warnings {
    list: Vec<(u64, String)>,
    dropped: u64,
    /// The entry the next warnings belong to.
    pub(super) seq: u64,
}

/// At most this many warnings are kept; the rest are counted.
const MAX_WARNINGS: usize = 1000;

impl Warnings {
    pub(super) fn warn(&mut self, msg: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push((self.seq, msg));
        } else {
            self.dropped += 1;
        }
    }

    /// Adds those of `later`, which came after these for the same entry number.
    pub(super) fn merge(&mut self, later: Warnings) {
        // Each list holds its own first MAX_WARNINGS, so the first MAX_WARNINGS of the
        // two together are among them.
        let kept = self.list.len() + later.list.len();
        self.list.extend(later.list);
        self.list.sort_by_key(|(seq, _)| *seq); // stable: these first within an entry
        self.list.truncate(MAX_WARNINGS);
        self.dropped += later.dropped + (kept - self.list.len()) as u64;
    }

    /// The warnings in entry order, with a last line counting those dropped.
    pub(super) fn take(&mut self) -> Vec<String> {
        let mut out: Vec<String> = std::mem::take(&mut self.list)
            .into_iter()
            .map(|(_, msg)| msg)
            .collect();
        if self.dropped > 0 {
            out.push(format!("... and {} more warnings", self.dropped));
            self.dropped = 0;
        }
        out
    }
}

/// Applies metadata by a [`MetaPolicy`], collecting the warnings: one on the writer's
/// thread, one on the background thread.
pub(super) struct MetaWriter {
    pub(super) policy: MetaPolicy,
    pub(super) warnings: Warnings,
}

impl MetaWriter {
    fn owner(
        &self,
        path: &LayerPath,
        meta: &Metadata,
        now: Owner,
    ) -> Result<Option<(Uid, Gid)>, Error> {
        let policy = &self.policy;
        if !policy.opts.chown || (now == Owner::Creator && (meta.uid, meta.gid) == policy.creator) {
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
                self.warnings.warn(format!(
                    "xattr `{}` on `{path}` not applied: the filesystem does not support it",
                    shown(name)
                ));
                Ok(())
            }
            // Linux refuses user.* on symlinks and device nodes.
            Err(Errno::PERM) if special && name.starts_with(b"user.") => {
                self.warnings.warn(format!(
                    "xattr `{}` on `{path}` not applied: user.* attributes are only allowed on files and directories",
                    shown(name)
                ));
                Ok(())
            }
            Err(Errno::PERM) if self.policy.unprivileged => {
                self.warnings.warn(format!(
                    "xattr `{}` on `{path}` not applied: not permitted without privileges",
                    shown(name)
                ));
                Ok(())
            }
            // A malformed value (a 28-byte v3 capability, say) is dropped, not fatal: not
            // applying an attribute grants nothing, and the rest of the layer is sound.
            Err(Errno::INVAL) => {
                self.warnings.warn(format!(
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
        match xattr::refusal(name, self.policy.opts.privileged_xattrs) {
            None => true,
            Some(why) => {
                self.warnings.warn(format!(
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
                self.warnings.warn(format!(
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
                self.warnings.warn(format!(
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
