//! Extended attributes: reading them from a tree, the policy for writing them, and the
//! overlay's own names. Shared by the [reader](crate::dir_reader) and the
//! [writer](crate::dir_writer) so that both sides agree on every name.
//!
//! Symlinks, devices and fifos cannot be opened to call `f*xattr`, and there are no
//! `*at` xattr calls: they are reached through their directory's descriptor in
//! `/proc/self/fd/DIRFD/NAME` with the `l*xattr` calls, which resolve the directory we
//! hold and then `NAME` without following it.

use std::ffi::CStr;
use std::io::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, FileType};
use rustix::io::Errno;

use crate::{LayerPath, Xattr};

/// The first size of the name list and value buffers; they grow when a call says
/// `ERANGE`. Small on purpose: the kernel allocates (and for a value, zeroes) a buffer of
/// the size asked for on every call, so a 64 KiB buffer (`XATTR_LIST_MAX`) cost a
/// multi-page allocation per entry read, where most entries have no xattrs at all.
const XATTR_BUF_LEN: usize = 256;

/// The namespace overlayfs keeps its bookkeeping in.
pub(crate) const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";
/// Marks an empty regular file as a whiteout (newer kernels).
pub(crate) const OVERLAY_WHITEOUT: &[u8] = b"trusted.overlay.whiteout";
/// Makes a directory hide what lies beneath it (value `y`).
pub(crate) const OVERLAY_OPAQUE: &CStr = c"trusted.overlay.opaque";

/// `/proc/self/fd/DIRFD/NAME` into `out` (cleared first).
pub(crate) fn proc_path(out: &mut Vec<u8>, dir: BorrowedFd<'_>, name: &[u8]) {
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "/proc/self/fd/{}/", dir.as_raw_fd());
    out.extend_from_slice(name);
}

/// Why an xattr of a layer entry may not be applied, or `None` when it may.
/// `privileged`: `trusted.*` and `security.*` are allowed.
pub(crate) fn refusal(name: &[u8], privileged: bool) -> Option<&'static str> {
    if name.starts_with(b"user.") || name == b"security.capability" {
        None
    } else if name.starts_with(OVERLAY_PREFIX) {
        Some("trusted.overlay.* is private to the store's overlay mounts")
    } else if name.starts_with(b"trusted.") || name.starts_with(b"security.") {
        (!privileged).then_some("privileged namespace (allowed only with privileged xattrs)")
    } else if name == b"system.posix_acl_access" || name == b"system.posix_acl_default" {
        None
    } else {
        Some("unknown xattr namespace")
    }
}

/// Drops overlay's own xattrs from `xattrs` and unescapes the image's
/// (`trusted.overlay.overlay.NAME` -> `trusted.overlay.NAME`); true if the entry was
/// marked opaque (`trusted.overlay.opaque` = `y`).
pub(crate) fn from_overlay(xattrs: &mut Vec<Xattr>) -> bool {
    let opaque = xattrs
        .iter()
        .any(|x| x.name == OVERLAY_OPAQUE.to_bytes() && x.value == b"y");
    xattrs.retain_mut(|x| {
        let Some(rest) = x.name.strip_prefix(OVERLAY_PREFIX) else {
            return true;
        };
        if rest.starts_with(b"overlay.") {
            x.name.drain(b"trusted.".len()..OVERLAY_PREFIX.len());
            true
        } else {
            false
        }
    });
    xattrs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    opaque
}

/// Where to read extended attributes from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// An open regular file or directory.
    Fd(BorrowedFd<'a>),
    /// A path not to follow (`l*xattr`): `/proc/self/fd/DIRFD/NAME`.
    Path(&'a [u8]),
}

impl Source<'_> {
    fn list(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Source::Fd(fd) => rfs::flistxattr(fd, buf),
            Source::Path(p) => rfs::llistxattr(p, buf),
        }
    }

    fn list_len(self) -> rustix::io::Result<usize> {
        match self {
            Source::Fd(fd) => rfs::flistxattr_query(fd),
            Source::Path(p) => rfs::llistxattr_query(p),
        }
    }

    fn get(self, name: &[u8], buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Source::Fd(fd) => rfs::fgetxattr(fd, name, buf),
            Source::Path(p) => rfs::lgetxattr(p, name, buf),
        }
    }

    fn get_len(self, name: &[u8]) -> rustix::io::Result<usize> {
        match self {
            Source::Fd(fd) => rfs::fgetxattr_query(fd, name),
            Source::Path(p) => rfs::lgetxattr_query(p, name),
        }
    }
}

/// Reusable buffers for reading extended attributes.
pub(crate) struct XattrBufs {
    list: Vec<u8>,
    value: Vec<u8>,
    proc_path: Vec<u8>,
    /// Whether `/proc/self/fd` is usable: checked on first need.
    proc_ok: Option<bool>,
    proc_warned: bool,
}

impl XattrBufs {
    pub(crate) fn new() -> Self {
        XattrBufs {
            // Never empty: a zero-length buffer would turn the calls into size queries.
            list: vec![0; XATTR_BUF_LEN],
            value: vec![0; XATTR_BUF_LEN],
            proc_path: Vec::with_capacity(64),
            proc_ok: None,
            proc_warned: false,
        }
    }

    /// The xattrs of `name` in `dirfd`, not following it (for symlinks, devices, fifos).
    pub(crate) fn read_at(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &[u8],
        path: &LayerPath,
        warnings: &mut Vec<String>,
    ) -> Vec<Xattr> {
        let proc_ok = *self.proc_ok.get_or_insert_with(|| {
            rfs::statat(rfs::CWD, c"/proc/self/fd", AtFlags::empty())
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        });
        if !proc_ok {
            if !self.proc_warned {
                self.proc_warned = true;
                warnings.push(format!(
                    "extended attributes of symlinks, devices and fifos are not read because \
                     /proc/self/fd is not available (the first one stored without them is `{path}`)"
                ));
            }
            return Vec::new();
        }
        let mut proc_path = std::mem::take(&mut self.proc_path);
        self::proc_path(&mut proc_path, dirfd, name);
        let xattrs = self.read(Source::Path(&proc_path), path, warnings);
        self.proc_path = proc_path;
        xattrs
    }

    /// All xattrs of `src`, sorted by name. `ENOTSUP` means none; other failures leave a
    /// warning and skip what could not be read.
    pub(crate) fn read(
        &mut self,
        src: Source<'_>,
        path: &LayerPath,
        warnings: &mut Vec<String>,
    ) -> Vec<Xattr> {
        let len = match fill(&mut self.list, |b| src.list(b), || src.list_len()) {
            Ok(len) => len,
            Err(Errno::NOTSUP) => return Vec::new(),
            Err(e) => {
                warnings.push(format!(
                    "could not list the extended attributes of `{path}` ({e}); stored it without them"
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for name in self.list[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            match fill(&mut self.value, |b| src.get(name, b), || src.get_len(name)) {
                Ok(n) => out.push(Xattr {
                    name: name.to_vec(),
                    value: self.value[..n].to_vec(),
                }),
                // Removed since it was listed.
                Err(Errno::NODATA) => {}
                Err(e) => warnings.push(format!(
                    "could not read extended attribute `{}` of `{path}` ({e}); skipped it",
                    name.escape_ascii()
                )),
            }
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Runs `op` on `buf`, growing `buf` to the size `len` reports when `op` says `ERANGE`
/// (the attribute grew between calls); gives up with `ERANGE` after a few rounds.
fn fill(
    buf: &mut Vec<u8>,
    mut op: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut len: impl FnMut() -> rustix::io::Result<usize>,
) -> rustix::io::Result<usize> {
    for _ in 0..4 {
        match op(&mut buf[..]) {
            Err(Errno::RANGE) => {
                let need = len()?.max(buf.len().saturating_mul(2));
                buf.resize(need, 0);
            }
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}
