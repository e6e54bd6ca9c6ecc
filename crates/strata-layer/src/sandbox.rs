//! Landlock confinement of the thread that writes a layer: defence in depth.
//!
//! The first line of defence is [`crate::dir_writer::DirWriter`] itself: every path is
//! resolved by the kernel with `openat2(RESOLVE_IN_ROOT)` relative to the target root and
//! the last component is never followed. This module adds a second, independent line: a
//! [Landlock](https://docs.kernel.org/userspace-api/landlock.html) ruleset that lets the
//! calling thread create, write, truncate, link, rename and remove files only beneath the
//! root. Should a resolution bug ever hand the writer a descriptor outside the root, the
//! kernel still answers `EACCES`. Reading stays allowed everywhere (the input layer, the
//! recipe, `/proc`).
//!
//! Landlock restricts the calling thread and the threads it spawns afterwards, never its
//! parent or siblings, and cannot be lifted: run the writer on a thread of its own, and
//! call [`confine_writes_to`] there after opening every file that must be written outside
//! the root (descriptors opened before keep their access). On kernels without Landlock
//! (before 5.13, or disabled at boot) the call succeeds and reports
//! [`SandboxStatus::Unavailable`]; on older Landlock ABIs it enforces what the kernel
//! knows and reports [`SandboxStatus::Partial`].
//!
//! ```
//! use strata_layer::sandbox::{confine_writes_to, SandboxStatus};
//! let root = std::env::temp_dir().join(format!("strata-sandbox-doc-{}", std::process::id()));
//! std::fs::create_dir(&root).unwrap();
//! let r = root.clone();
//! std::thread::spawn(move || {
//!     let status = confine_writes_to(&r).unwrap();
//!     std::fs::write(r.join("inside"), b"ok").unwrap();
//!     if let SandboxStatus::Enforced { .. } = status {
//!         assert!(std::fs::write(std::env::temp_dir().join("strata-sandbox-doc-outside"), b"no").is_err());
//!     }
//! })
//! .join()
//! .unwrap();
//! std::fs::remove_dir_all(&root).unwrap();
//! ```

use std::path::Path;

use landlock::{
    AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, ABI,
};

use crate::Error;

/// The Landlock ABI whose write rights are requested: V5 (Linux 6.10) covers every right
/// that modifies the filesystem (`IoctlDev` is the last of them). Newer ABIs add rights
/// that are not writes (connecting to UNIX sockets, scoping signals).
const TARGET_ABI: ABI = ABI::V5;

/// How far the kernel confined the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Every write right is restricted to the root; `abi` is the Landlock ABI in use.
    Enforced {
        /// The Landlock ABI version.
        abi: i32,
    },
    /// Landlock is active but the kernel's ABI lacks some rights (`reason` names them).
    Partial {
        /// The rights not restricted.
        reason: String,
    },
    /// No restriction is in force (kernel without Landlock, or Landlock disabled).
    Unavailable {
        /// Why not, in words.
        reason: String,
    },
}

/// The rights Landlock handles here: everything that creates, writes or removes files.
fn write_access() -> BitFlags<AccessFs> {
    AccessFs::WriteFile
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::MakeChar
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::MakeSock
        | AccessFs::MakeFifo
        | AccessFs::MakeBlock
        | AccessFs::MakeSym
        | AccessFs::Refer
        | AccessFs::Truncate
        | AccessFs::IoctlDev
}

fn abi_number(status: &LandlockStatus) -> i32 {
    match status {
        LandlockStatus::Available { effective_abi, .. } => *effective_abi as i32,
        _ => 0,
    }
}

/// What an ABI below [`TARGET_ABI`] leaves unrestricted.
fn missing_rights(abi: i32) -> String {
    let mut missing = Vec::new();
    if abi < 2 {
        missing.push("Refer (linking or renaming across directories is then always refused)");
    }
    if abi < 3 {
        missing.push("Truncate (files opened elsewhere could still be truncated)");
    }
    if abi < 5 {
        missing.push("IoctlDev (ioctls on device files elsewhere stay allowed)");
    }
    if missing.is_empty() {
        "some requested rights are not enforced".to_string()
    } else {
        format!("Landlock ABI {abi} does not handle {}", missing.join(", "))
    }
}

/// Restricts the calling thread (and threads it spawns later) so that it can create,
/// write and remove files only beneath `root`; reading stays allowed everywhere.
///
/// This is defence in depth behind the directory writer's in-root resolution
/// (`openat2(RESOLVE_IN_ROOT)`): see the [module documentation](self). Call it on the
/// thread that will run the [`DirWriter`](crate::dir_writer::DirWriter), after opening the
/// input and any output files that live outside `root`. It cannot be undone for this
/// thread. It never fails just because the kernel lacks Landlock: it then returns
/// [`SandboxStatus::Unavailable`]. It fails if `root` cannot be opened or if the kernel
/// refuses a ruleset it claims to support.
pub fn confine_writes_to(root: &Path) -> Result<SandboxStatus, Error> {
    let access = write_access() & AccessFs::from_write(TARGET_ABI);
    let ruleset_err = |e: landlock::RulesetError| {
        Error::io(
            "setting up the Landlock sandbox",
            std::io::Error::other(e.to_string()),
        )
    };
    let dir = PathFd::new(root).map_err(|e| {
        Error::io(
            format!("opening {} for the Landlock sandbox", root.display()),
            std::io::Error::other(e.to_string()),
        )
    })?;
    let status = Ruleset::default()
        .handle_access(access)
        .map_err(ruleset_err)?
        .create()
        .map_err(ruleset_err)?
        .add_rule(PathBeneath::new(dir, access))
        .map_err(ruleset_err)?
        .restrict_self()
        .map_err(ruleset_err)?;
    let abi = abi_number(&status.landlock);
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => SandboxStatus::Enforced { abi },
        RulesetStatus::PartiallyEnforced => SandboxStatus::Partial {
            reason: missing_rights(abi),
        },
        RulesetStatus::NotEnforced => SandboxStatus::Unavailable {
            reason: match status.landlock {
                LandlockStatus::NotEnabled => {
                    "Landlock is built into the kernel but not enabled".into()
                }
                LandlockStatus::NotImplemented => {
                    "the kernel has no Landlock support (Linux < 5.13)".into()
                }
                LandlockStatus::Available { .. } => {
                    "the kernel did not enforce the Landlock ruleset".into()
                }
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn confined_thread_writes_inside_root_only() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("existing"), b"before\n").unwrap();
        let (r, o) = (root.path().to_path_buf(), other.path().to_path_buf());
        let status = std::thread::spawn(move || {
            let status = confine_writes_to(&r).unwrap();
            if !matches!(status, SandboxStatus::Enforced { .. }) {
                return status;
            }
            // Inside the root: create, write, mkdir, symlink, link, remove.
            std::fs::write(r.join("inside"), b"ok\n").unwrap();
            std::fs::create_dir(r.join("d")).unwrap();
            std::os::unix::fs::symlink("/etc", r.join("d/s")).unwrap();
            std::fs::hard_link(r.join("inside"), r.join("d/h")).unwrap();
            std::fs::remove_file(r.join("d/h")).unwrap();
            // Elsewhere: every kind of write is refused.
            let denied = |res: std::io::Result<()>| {
                assert_eq!(res.unwrap_err().kind(), ErrorKind::PermissionDenied);
            };
            denied(std::fs::write(o.join("new"), b"x"));
            denied(std::fs::write(o.join("existing"), b"x"));
            denied(std::fs::create_dir(o.join("dir")));
            denied(std::fs::remove_file(o.join("existing")));
            denied(std::os::unix::fs::symlink("/", o.join("sym")));
            denied(std::fs::hard_link(r.join("inside"), o.join("link")));
            // Reading elsewhere still works.
            assert_eq!(std::fs::read(o.join("existing")).unwrap(), b"before\n");
            status
        })
        .join()
        .unwrap();
        match status {
            SandboxStatus::Enforced { abi } => {
                assert!(abi >= 5);
                assert_eq!(std::fs::read(root.path().join("inside")).unwrap(), b"ok\n");
                assert_eq!(
                    std::fs::read(other.path().join("existing")).unwrap(),
                    b"before\n"
                );
                assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 1);
            }
            other => eprintln!("Landlock not fully enforced here, nothing to check: {other:?}"),
        }
        // The test thread that spawned the confined one is not confined.
        std::fs::write(other.path().join("after"), b"free\n").unwrap();
    }

    #[test]
    fn dir_writer_works_under_the_sandbox() {
        use crate::dir_writer::{DirWriter, DirWriterOptions};
        use crate::{Entry, EntryKind, LayerPath, LayerWriter};
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        std::fs::create_dir(r.join("lower")).unwrap();
        std::fs::write(r.join("lower/old"), b"old").unwrap();
        let status = std::thread::spawn(move || {
            let status = confine_writes_to(&r).unwrap();
            let p = |s: &str| LayerPath::from_tar_name(s.as_bytes()).unwrap();
            let mut w = DirWriter::open(&r, DirWriterOptions::default()).unwrap();
            let mut f = Entry::new(
                p("a/b/file"),
                EntryKind::File {
                    size: 2,
                    sparse: None,
                },
            );
            f.meta.mode = 0o644;
            w.add(&f).unwrap();
            w.write_data(b"hi").unwrap();
            w.add(&Entry::new(
                p("c/link"),
                EntryKind::HardLink {
                    target: p("a/b/file"),
                },
            ))
            .unwrap();
            w.add(&Entry::new(
                p("a/sym"),
                EntryKind::Symlink {
                    target: b"/etc".to_vec(),
                },
            ))
            .unwrap();
            w.add(&Entry::new(p("fifo"), EntryKind::Fifo)).unwrap();
            w.add(&Entry::new(p("lower/old"), EntryKind::Whiteout))
                .unwrap();
            w.add(&Entry::new(
                p("a/b/file"),
                EntryKind::File {
                    size: 0,
                    sparse: None,
                },
            ))
            .unwrap();
            w.finish().unwrap();
            status
        })
        .join()
        .unwrap();
        eprintln!("sandbox: {status:?}");
        let r = root.path();
        assert_eq!(std::fs::read(r.join("c/link")).unwrap(), b"hi");
        assert_eq!(std::fs::read(r.join("a/b/file")).unwrap(), b"");
        assert!(!r.join("lower/old").exists());
    }
}
