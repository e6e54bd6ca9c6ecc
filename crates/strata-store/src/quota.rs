//! The `size` option enforced with project quotas, as Docker's overlay2 does on XFS: the
//! layer's directory gets a project ID of its own (`FS_IOC_FSSETXATTR`, inherited by
//! everything created below it) and that project a block hard limit
//! (`quotactl_fd(Q_SETQUOTA, PRJQUOTA)`, Linux 5.14). The generic quota interface serves
//! both XFS (`prjquota` mount option) and ext4 (`project` feature, `prjquota`).
//!
//! Where the file system cannot do it, [`probe`] says why in words, and the layer is not
//! created.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

const PRJQUOTA: u32 = 2;
const Q_GETINFO: u32 = 0x80_0005;
const Q_SETQUOTA: u32 = 0x80_0008;
const QIF_BLIMITS: u32 = 1;
/// Quota block limits count 1 KiB blocks (`QIF_DQBLKSIZE`).
const QUOTA_BLOCK: u64 = 1024;
const FS_XFLAG_PROJINHERIT: u32 = 0x200;
/// `_IOR('X', 31, struct fsxattr)` and `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;

/// `struct fsxattr` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `struct if_dqinfo` of `<linux/quota.h>`.
#[repr(C)]
#[derive(Default)]
struct DqInfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

/// `struct if_dqblk` of `<linux/quota.h>`.
#[repr(C)]
#[derive(Default)]
struct DqBlk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

fn qcmd(cmd: u32) -> libc::c_int {
    ((cmd << 8) | PRJQUOTA) as libc::c_int
}

fn open_dir(dir: &Path) -> Result<File> {
    File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))
}

fn quotactl(fd: &File, cmd: u32, id: u32, addr: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: quotactl_fd reads or writes the one struct `addr` points to, of the type the
    // command names; the fd stays open for the call.
    let r = unsafe { libc::syscall(libc::SYS_quotactl_fd, fd.as_raw_fd(), qcmd(cmd), id, addr) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Why project quotas cannot limit the size of directories below `dir`, or `Ok` if they can.
pub fn probe(dir: &Path) -> Result<()> {
    let fd = open_dir(dir)?;
    let mut info = DqInfo::default();
    match quotactl(&fd, Q_GETINFO, 0, (&mut info as *mut DqInfo).cast()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ENOSYS) => "this kernel has no quotactl_fd (Linux 5.14 or newer is needed)".to_string(),
                Some(libc::ESRCH) | Some(libc::ENOENT) => "project quotas are not turned on for that file system (mount it with prjquota: XFS, or ext4 made with the project feature)".to_string(),
                Some(libc::ENOTSUP) | Some(libc::EINVAL) | Some(libc::ENOTTY) => "the file system (or this kernel: CONFIG_QUOTA, CONFIG_QFMT_V2, CONFIG_XFS_QUOTA) does not support project quotas".to_string(),
                _ => format!("asking for its project quota state failed: {e}"),
            };
            Err(Error::BadOption {
                name: "size".into(),
                reason: format!("cannot be enforced on {}: {why}", dir.display()),
            })
        }
    }
}

/// Gives `dir` the project `project` (inherited by new entries) and limits that project
/// to `bytes`.
pub fn limit(dir: &Path, project: u32, bytes: u64) -> Result<()> {
    let fd = open_dir(dir)?;
    let fail = |what: &str, e: std::io::Error| {
        Error::io(
            format!("{what} of {} for the size option", dir.display()),
            e,
        )
    };
    let mut attr = FsXattr::default();
    // SAFETY: both ioctls take a pointer to one `struct fsxattr`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr as *mut FsXattr) } < 0 {
        return Err(fail("reading the project", std::io::Error::last_os_error()));
    }
    attr.projid = project;
    attr.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &attr as *const FsXattr) } < 0 {
        return Err(fail("setting the project", std::io::Error::last_os_error()));
    }
    let blocks = bytes.div_ceil(QUOTA_BLOCK);
    let mut q = DqBlk {
        bhardlimit: blocks,
        bsoftlimit: blocks,
        valid: QIF_BLIMITS,
        ..DqBlk::default()
    };
    quotactl(&fd, Q_SETQUOTA, project, (&mut q as *mut DqBlk).cast())
        .map_err(|e| fail("setting the quota", e))
}

/// Lifts the limit of `project` (when its layer is removed).
pub fn clear(dir: &Path, project: u32) -> Result<()> {
    let fd = open_dir(dir)?;
    let mut q = DqBlk {
        valid: QIF_BLIMITS,
        ..DqBlk::default()
    };
    quotactl(&fd, Q_SETQUOTA, project, (&mut q as *mut DqBlk).cast())
        .map_err(|e| Error::io(format!("clearing project quota {project}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<DqInfo>(), 24);
        assert_eq!(std::mem::size_of::<DqBlk>(), 72);
    }

    #[test]
    fn a_file_system_without_project_quotas_is_explained() {
        // tmpfs has no project quotas on any kernel.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let e = probe(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("storage option `size`: cannot be enforced on /dev/shm/"),
            "{e}"
        );
    }
}
