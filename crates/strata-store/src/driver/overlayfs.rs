//! Mounting overlayfs with the new mount API: `fsopen("overlay")`, one `lowerdir+` per
//! layer (Linux 6.8; no option string to outgrow a page, so no short-link tricks are
//! needed), `fsmount`, then `move_mount` onto the target. Older kernels get a single
//! `lowerdir` string. Every mount turns off the features that break diffs taken from the
//! upper directory (image-formats §8.3): `index`, `redirect_dir` and `metacopy`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags,
};

use crate::error::{Error, Result};

/// The most lower layers overlayfs stacks (`OVL_MAX_STACK`).
pub const MAX_LOWERS: usize = 500;

/// What to mount.
pub struct OverlaySpec<'a> {
    /// Lower directories, topmost first; at least one (two when there is no upper).
    pub lowers: &'a [PathBuf],
    /// Upper and work directory, for a writable mount.
    pub upper: Option<(&'a Path, &'a Path)>,
}

fn failed(what: &str, fs: Option<&OwnedFd>, e: Errno) -> Error {
    let mut reason = format!("{what} failed ({e})");
    // The kernel explains a refused option in the context's log.
    if let Some(fd) = fs {
        let mut buf = [0u8; 512];
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            reason.push_str(": ");
            reason.push_str(line.trim_start_matches("e ").trim_end());
        }
    }
    Error::Driver {
        driver: "overlay",
        reason,
        source: None,
    }
}

fn set(fs: &OwnedFd, key: &str, value: &OsStr) -> Result<()> {
    fsconfig_set_string(fs, key, value).map_err(|e| {
        failed(
            &format!("setting {key}={}", value.to_string_lossy()),
            Some(fs),
            e,
        )
    })
}

/// Mounts `spec` at `target` (an existing directory), read-only when it has no upper.
pub fn mount(spec: &OverlaySpec<'_>, target: &Path) -> Result<()> {
    let min = if spec.upper.is_some() { 1 } else { 2 };
    if spec.lowers.len() < min || spec.lowers.len() > MAX_LOWERS {
        return Err(Error::Driver {
            driver: "overlay",
            reason: format!(
                "cannot stack {} lower layers (overlayfs takes {min} to {MAX_LOWERS})",
                spec.lowers.len()
            ),
            source: None,
        });
    }
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| failed("fsopen(\"overlay\")", None, e))?;
    let mut lowers = spec.lowers.iter();
    let first = lowers.next().map(|p| p.as_os_str()).unwrap_or_default();
    match fsconfig_set_string(&fs, "lowerdir+", first) {
        Ok(()) => {
            for l in lowers {
                set(&fs, "lowerdir+", l.as_os_str())?;
            }
        }
        // Before Linux 6.8: one colon-separated string (store paths never hold ':').
        Err(Errno::INVAL) => {
            let mut joined = Vec::new();
            for (i, l) in spec.lowers.iter().enumerate() {
                let bytes = l.as_os_str().as_bytes();
                if bytes.contains(&b':') || bytes.contains(&b',') {
                    return Err(failed(
                        &format!("lower directory {} holds ':' or ','", l.display()),
                        None,
                        Errno::INVAL,
                    ));
                }
                if i > 0 {
                    joined.push(b':');
                }
                joined.extend_from_slice(bytes);
            }
            // The message of a failure from the first attempt is not wanted in the log.
            let _ = failed("", Some(&fs), Errno::INVAL);
            set(&fs, "lowerdir", OsStr::from_bytes(&joined))?;
        }
        Err(e) => return Err(failed("setting lowerdir+", Some(&fs), e)),
    }
    if let Some((upper, work)) = spec.upper {
        set(&fs, "upperdir", upper.as_os_str())?;
        set(&fs, "workdir", work.as_os_str())?;
    } else {
        fsconfig_set_flag(&fs, "ro").map_err(|e| failed("setting ro", Some(&fs), e))?;
    }
    for (key, value) in [
        ("index", "off"),
        ("redirect_dir", "off"),
        ("metacopy", "off"),
    ] {
        set(&fs, key, OsStr::new(value))?;
    }
    fsconfig_create(&fs).map_err(|e| failed("creating the overlay", Some(&fs), e))?;
    let attrs = if spec.upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| failed("fsmount", Some(&fs), e))?;
    move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| {
        failed(
            &format!("attaching the overlay at {}", target.display()),
            None,
            e,
        )
    })
}
