use super::*;
use crate::{EntryKind, Xattr};
use rustix::fs::AtFlags;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};

fn lp(s: &[u8]) -> LayerPath {
    LayerPath::from_tar_name(s).unwrap()
}

fn all(r: &mut DirReader) -> Vec<Entry> {
    let entries = crate::testing::read_entries(r).unwrap();
    entries.into_iter().map(|(e, _)| e).collect()
}

fn paths(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.path.to_string()).collect()
}

fn dirfd(p: &Path) -> OwnedFd {
    rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// Both ways of finding types: from getdents, and stat only.
fn both_ways(root: &Path, check: impl Fn(&mut DirReader, bool)) {
    for ignore_dtype in [false, true] {
        let mut r = DirReader::open(root).unwrap();
        r.ignore_dtype = ignore_dtype;
        check(&mut r, ignore_dtype);
    }
}

#[test]
fn order_is_preorder_with_bytewise_sorted_names() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("a/c")).unwrap();
    fs::write(p.join("a/b"), "").unwrap();
    fs::write(p.join("a/c/d"), "").unwrap();
    fs::write(p.join("a.b"), "").unwrap();
    fs::write(p.join("B"), "").unwrap();
    fs::write(p.join("z"), "").unwrap();
    fs::create_dir(p.join("empty")).unwrap();
    fs::write(p.join("a-"), "").unwrap();
    both_ways(p, |r, _| {
        let got = all(r);
        assert_eq!(
            paths(&got),
            ["B", "a", "a/b", "a/c", "a/c/d", "a-", "a.b", "empty", "z"]
        );
        assert!(r.warnings().is_empty());
        // Finished readers stay finished.
        assert!(r.next_entry().unwrap().is_none());
    });
}

#[test]
fn empty_tree_yields_nothing() {
    let t = tempfile::tempdir().unwrap();
    let mut r = DirReader::open(t.path()).unwrap();
    assert!(r.next_entry().unwrap().is_none());
    assert_eq!(r.read_data(&mut [0; 8]).unwrap(), 0);
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let err = DirReader::open(&missing).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn kinds_symlinks_fifo_devices_and_socket() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    symlink("/etc/passwd", p.join("abs")).unwrap();
    symlink("nonexistent/x", p.join("dangling")).unwrap();
    symlink("../../..", p.join("up")).unwrap();
    symlink(OsStr::from_bytes(b"caf\xe9"), p.join("latin1")).unwrap();
    let d = dirfd(p);
    rfs::mknodat(&d, "fifo", FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
    let null = rfs::makedev(1, 3);
    rfs::mknodat(
        &d,
        "null",
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        null,
    )
    .unwrap();
    let loop0 = rfs::makedev(7, 0);
    rfs::mknodat(
        &d,
        "loop0",
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        loop0,
    )
    .unwrap();
    let wh = rfs::makedev(0, 0);
    rfs::mknodat(&d, "whiteout", FileType::CharacterDevice, Mode::empty(), wh).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
    // Exact modes, whatever the umask.
    fs::set_permissions(p.join("fifo"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(p.join("loop0"), fs::Permissions::from_mode(0o660)).unwrap();
    // A symlink to a directory is not followed.
    fs::create_dir(p.join("real")).unwrap();
    fs::write(p.join("real/inside"), "x").unwrap();
    symlink("real", p.join("to-real")).unwrap();

    both_ways(p, |r, _| {
        let got = all(r);
        let kinds: Vec<(String, EntryKind)> = got
            .iter()
            .map(|e| (e.path.to_string(), e.kind.clone()))
            .collect();
        let sym = |t: &[u8]| EntryKind::Symlink { target: t.to_vec() };
        assert_eq!(
            kinds,
            [
                ("abs".to_string(), sym(b"/etc/passwd")),
                ("dangling".into(), sym(b"nonexistent/x")),
                ("fifo".into(), EntryKind::Fifo),
                ("latin1".into(), sym(b"caf\xe9")),
                (
                    "loop0".into(),
                    EntryKind::BlockDevice { major: 7, minor: 0 }
                ),
                ("null".into(), EntryKind::CharDevice { major: 1, minor: 3 }),
                ("real".into(), EntryKind::Dir),
                (
                    "real/inside".into(),
                    EntryKind::File {
                        size: 1,
                        sparse: None
                    }
                ),
                ("to-real".into(), sym(b"real")),
                ("up".into(), sym(b"../../..")),
                (
                    "whiteout".into(),
                    EntryKind::CharDevice { major: 0, minor: 0 }
                ),
            ]
        );
        let modes: Vec<u32> = got.iter().map(|e| e.meta.mode).collect();
        assert_eq!(modes[2], 0o640);
        assert_eq!(modes[4], 0o660);
        assert!(got
            .iter()
            .all(|e| e.meta.atime.is_none() && e.meta.ctime.is_none()));
        assert!(got
            .iter()
            .all(|e| e.meta.uname.is_empty() && e.meta.gname.is_empty()));
        assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
        assert!(
            r.warnings()[0].contains("socket `sock`"),
            "{:?}",
            r.warnings()
        );
    });
}

#[test]
fn hard_links_point_to_the_first_path() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("a1"), "shared").unwrap();
    fs::create_dir(p.join("b")).unwrap();
    fs::hard_link(p.join("a1"), p.join("b/link")).unwrap();
    fs::hard_link(p.join("a1"), p.join("c")).unwrap();
    fs::write(p.join("d"), "alone").unwrap();
    fs::write(p.join("e"), "other").unwrap();
    fs::hard_link(p.join("e"), p.join("f")).unwrap();
    // Hard-linked fifos are linked too, like GNU tar does.
    let d = dirfd(p);
    rfs::mknodat(&d, "p1", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    fs::hard_link(p.join("p1"), p.join("p2")).unwrap();

    both_ways(p, |r, _| {
        let got: Vec<_> = (crate::testing::read_entries(&mut *r).unwrap().into_iter())
            .map(|(e, data)| (e.path.to_string(), e.kind, data))
            .collect();
        let link = |t: &[u8]| EntryKind::HardLink { target: lp(t) };
        let file = |n| EntryKind::File {
            size: n,
            sparse: None,
        };
        assert_eq!(
            got,
            [
                ("a1".to_string(), file(6), b"shared".to_vec()),
                ("b".into(), EntryKind::Dir, vec![]),
                ("b/link".into(), link(b"a1"), vec![]),
                ("c".into(), link(b"a1"), vec![]),
                ("d".into(), file(5), b"alone".to_vec()),
                ("e".into(), file(5), b"other".to_vec()),
                ("f".into(), link(b"e"), vec![]),
                ("p1".into(), EntryKind::Fifo, vec![]),
                ("p2".into(), link(b"p1"), vec![]),
            ]
        );
        // Every inode left the map once all its links were seen.
        assert!(r.links.is_empty());
    });
}

#[test]
fn metadata_xattrs_mtime_nanos_owner_and_mode() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir(p.join("dir")).unwrap();
    fs::write(p.join("dir/file"), "x").unwrap();
    // chown clears setuid, so chown first.
    std::os::unix::fs::lchown(p.join("dir/file"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(p.join("dir/file"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(p.join("dir"), fs::Permissions::from_mode(0o1777)).unwrap();
    let d = dirfd(p);
    let f = rfs::openat(&d, "dir/file", OFlags::RDONLY, Mode::empty()).unwrap();
    let flags = rfs::XattrFlags::empty();
    rfs::fsetxattr(&f, "user.b", b"2", flags).unwrap();
    rfs::fsetxattr(&f, "user.a", b"\x00\xff", flags).unwrap();
    rfs::fsetxattr(&f, "user.empty", b"", flags).unwrap();
    let dd = dirfd(&p.join("dir"));
    rfs::fsetxattr(&dd, "user.x", b"on a dir", flags).unwrap();
    let times = rfs::Timestamps {
        last_access: rfs::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
        last_modification: rfs::Timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 123_456_789,
        },
    };
    rfs::utimensat(&d, "dir/file", &times, AtFlags::empty()).unwrap();
    symlink("dir/file", p.join("link")).unwrap();
    // Symlinks and fifos cannot hold user.* xattrs, but trusted.* ones (as root).
    let proc = |name: &str| format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
    rfs::lsetxattr(proc("link"), "trusted.l", b"on a symlink", flags).unwrap();
    rfs::mknodat(&d, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    rfs::lsetxattr(proc("fifo"), "trusted.f", b"on a fifo", flags).unwrap();
    let link_times = rfs::Timestamps {
        last_access: times.last_access,
        last_modification: rfs::Timespec {
            tv_sec: -5,
            tv_nsec: 7,
        },
    };
    rfs::utimensat(&d, "link", &link_times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    // Set directory times last: creating entries in it changes them.
    let dir_times = rfs::Timestamps {
        last_access: times.last_access,
        last_modification: rfs::Timespec {
            tv_sec: 42,
            tv_nsec: 999_999_999,
        },
    };
    rfs::utimensat(&d, "dir", &dir_times, AtFlags::empty()).unwrap();

    both_ways(p, |r, _| {
        let got = all(r);
        assert_eq!(paths(&got), ["dir", "dir/file", "fifo", "link"]);
        let x = |n: &[u8], v: &[u8]| Xattr {
            name: n.to_vec(),
            value: v.to_vec(),
        };
        assert_eq!(got[0].meta.xattrs, [x(b"user.x", b"on a dir")]);
        assert_eq!(got[0].meta.mode, 0o1777);
        assert_eq!(got[0].meta.mtime, Timestamp::new(42, 999_999_999));
        let file = &got[1].meta;
        assert_eq!(
            file.xattrs,
            [
                x(b"user.a", b"\x00\xff"),
                x(b"user.b", b"2"),
                x(b"user.empty", b"")
            ]
        );
        assert_eq!(file.mode, 0o4751);
        assert_eq!((file.uid, file.gid), (1234, 5678));
        assert_eq!(file.mtime, Timestamp::new(1_600_000_000, 123_456_789));
        assert_eq!(got[2].meta.xattrs, [x(b"trusted.f", b"on a fifo")]);
        assert_eq!(got[3].meta.mtime, Timestamp::new(-5, 7));
        assert_eq!(got[3].meta.xattrs, [x(b"trusted.l", b"on a symlink")]);
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    });
}

#[test]
fn file_data_reads_back_exactly_and_unread_data_is_skipped() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 12345;
    for _ in 0..(3 << 20) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    fs::write(p.join("big"), &big).unwrap();
    fs::write(p.join("empty"), "").unwrap();
    fs::write(p.join("skipped"), "never read").unwrap();
    fs::write(p.join("small"), "hello\n").unwrap();
    for buf_len in [1usize, 4096 + 7, 1 << 20, 8 << 20] {
        let mut r = DirReader::open(p).unwrap();
        let mut buf = vec![0u8; buf_len];
        let mut read_all = |r: &mut DirReader| {
            let mut out = Vec::new();
            loop {
                let n = r.read_data(&mut buf).unwrap();
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(
            e.kind,
            EntryKind::File {
                size: big.len() as u64,
                sparse: None
            }
        );
        assert!(read_all(&mut r) == big, "buffer of {buf_len}");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, lp(b"empty"));
        assert_eq!(read_all(&mut r), b"");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, lp(b"skipped"));
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, lp(b"small"));
        assert_eq!(read_all(&mut r), b"hello\n");
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.warnings().is_empty());
    }
}

#[test]
fn a_file_that_shrinks_is_an_error_one_that_grows_gives_its_announced_size() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("grows"), vec![b'g'; 100]).unwrap();
    fs::write(p.join("shrinks"), vec![b's'; 100]).unwrap();
    let mut r = DirReader::open(p).unwrap();
    let e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.kind.data_len(), 100);
    fs::write(p.join("grows"), vec![b'G'; 200]).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(r.read_data(&mut buf).unwrap(), 100);
    assert_eq!(&buf[..100], &[b'G'; 100][..]);
    assert_eq!(r.read_data(&mut buf).unwrap(), 0);
    assert_eq!(r.warnings().len(), 1);
    assert!(
        r.warnings()[0].contains("`grows` grew"),
        "{:?}",
        r.warnings()
    );

    let e = r.next_entry().unwrap().unwrap();
    assert_eq!(e.path, lp(b"shrinks"));
    fs::write(p.join("shrinks"), vec![b's'; 10]).unwrap();
    let mut small = [0u8; 8];
    assert_eq!(r.read_data(&mut small).unwrap(), 8);
    assert_eq!(r.read_data(&mut small).unwrap(), 2);
    let err = r.read_data(&mut small).unwrap_err().to_string();
    assert!(err.contains("shrinks") && err.contains("changed"), "{err}");
    assert!(err.contains("10 of the 100"), "{err}");
}

#[test]
fn non_utf8_names_are_kept_exactly() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let dir = p.join(OsStr::from_bytes(b"caf\xe9"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(OsStr::from_bytes(b"\xff\x01name")), "").unwrap();
    fs::write(p.join("cafe"), "").unwrap();
    fs::write(p.join(OsStr::from_bytes("café".as_bytes())), "").unwrap();
    both_ways(p, |r, _| {
        let got: Vec<Vec<u8>> = all(r).iter().map(|e| e.path.as_bytes().to_vec()).collect();
        assert_eq!(
            got,
            [
                b"cafe".to_vec(),
                "café".as_bytes().to_vec(), // c3 a9
                b"caf\xe9".to_vec(),
                b"caf\xe9/\xff\x01name".to_vec(),
            ]
        );
    });
}

/// Builds `depth` nested directories named `d` under `root`, calling `at(level, fd)` in
/// each (level 1 is `root/d`).
fn make_chain(root: &Path, depth: usize, mut at: impl FnMut(usize, &OwnedFd)) {
    let mut fd = dirfd(root);
    for level in 1..=depth {
        rfs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = rfs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        at(level, &fd);
    }
}

/// Removes a chain made by `make_chain` without deep recursion: repeatedly moves the
/// second level up to the root and removes the (now empty) first one.
fn remove_chain(root: &Path) {
    let rootfd = dirfd(root);
    loop {
        let Ok(first) = rfs::openat(
            &rootfd,
            "d",
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        ) else {
            return;
        };
        for name in ["y", "z", "f"] {
            let _ = rfs::unlinkat(&first, name, AtFlags::empty());
        }
        if rfs::renameat(&first, "d", &rootfd, "next").is_ok() {
            drop(first);
            rfs::unlinkat(&rootfd, "d", AtFlags::REMOVEDIR).unwrap();
            rfs::renameat(&rootfd, "next", &rootfd, "d").unwrap();
        } else {
            drop(first);
            rfs::unlinkat(&rootfd, "d", AtFlags::REMOVEDIR).unwrap();
            return;
        }
    }
}

#[test]
fn a_3000_deep_tree_is_read_with_bounded_fds() {
    const DEPTH: usize = 3000;
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    make_chain(p, DEPTH, |level, fd| {
        let name = match level {
            1 => "z",
            1500 => "y",
            DEPTH => "f",
            _ => return,
        };
        let f = rfs::openat(
            fd,
            name,
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, name.as_bytes()).unwrap();
    });
    fs::write(p.join("zz"), "").unwrap();

    let mut r = DirReader::open(p).unwrap();
    let mut got = Vec::new();
    let mut max_open = 0;
    while let Some(e) = r.next_entry().unwrap() {
        let open = r.stack.iter().filter(|l| l.fd.is_some()).count();
        max_open = max_open.max(open);
        if e.kind.data_len() > 0 {
            let mut buf = [0u8; 4];
            let n = r.read_data(&mut buf).unwrap();
            assert_eq!(&buf[..n], e.path.file_name().unwrap());
        }
        got.push((e.path.as_bytes().len(), e.kind));
    }
    assert!(
        max_open <= MAX_OPEN_DIRS,
        "{max_open} directory fds open at once"
    );
    assert_eq!(got.len(), DEPTH + 4);
    let chain = |n: usize| 2 * n - 1; // length of "d/d/.../d" with n components
    for (i, (len, kind)) in got.iter().take(DEPTH).enumerate() {
        assert_eq!((*len, kind), (chain(i + 1), &EntryKind::Dir));
    }
    let file = |n| EntryKind::File {
        size: n,
        sparse: None,
    };
    assert_eq!(got[DEPTH], (chain(DEPTH) + 2, file(1)));
    assert_eq!(got[DEPTH + 1], (chain(1500) + 2, file(1)));
    assert_eq!(got[DEPTH + 2], (chain(1) + 2, file(1)));
    assert_eq!(got[DEPTH + 3], (2, file(0)));
    remove_chain(p);
}

#[test]
fn a_directory_moved_during_the_walk_is_detected() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let depth = MAX_OPEN_DIRS + 20;
    make_chain(p, depth, |_, _| {});
    let mut r = DirReader::open(p).unwrap();
    for _ in 0..depth {
        assert_eq!(r.next_entry().unwrap().unwrap().kind, EntryKind::Dir);
    }
    // Move level 5 (d/d/d/d/d) to the root: its `..` is no longer level 4.
    let level4 = (0..4).fold(p.to_path_buf(), |acc, _| acc.join("d"));
    fs::rename(level4.join("d"), p.join("moved")).unwrap();
    let err = loop {
        match r.next_entry() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the move was not noticed"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("changed while being read"), "{err}");
    assert!(err.contains("`d/d/d/d/d` was moved out of it"), "{err}");
    assert!(r.next_entry().unwrap().is_none());
    fs::rename(p.join("moved"), level4.join("d")).unwrap();
}

#[test]
fn overlay_upper_whiteouts_opaque_dirs_and_private_xattrs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: overlay mounts need root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    for d in [
        "lower/gone-dir/x",
        "lower/opq/old",
        "upper",
        "work",
        "merged",
    ] {
        fs::create_dir_all(p.join(d)).unwrap();
    }
    fs::write(p.join("lower/gone"), "x").unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
        p.join("lower").display(),
        p.join("upper").display(),
        p.join("work").display()
    );
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(p.join("merged"))
        .status()
        .unwrap();
    assert!(st.success());
    let m = p.join("merged");
    fs::remove_file(m.join("gone")).unwrap();
    fs::remove_dir_all(m.join("gone-dir")).unwrap();
    fs::remove_dir_all(m.join("opq")).unwrap();
    fs::create_dir(m.join("opq")).unwrap();
    fs::write(m.join("opq/new"), "n").unwrap();
    rfs::setxattr(
        m.join("opq/new"),
        "user.kept",
        b"1",
        rfs::XattrFlags::empty(),
    )
    .unwrap();
    let umount = std::process::Command::new("umount")
        .arg(&m)
        .status()
        .unwrap();
    assert!(umount.success());
    // An image xattr escaped on disk comes back unescaped.
    let up = p.join("upper");
    rfs::setxattr(
        up.join("opq/new"),
        "trusted.overlay.overlay.img",
        b"v",
        rfs::XattrFlags::empty(),
    )
    .unwrap();

    let mut r = DirReader::open_overlay_upper(&up).unwrap();
    let got: Vec<(String, EntryKind, Vec<Vec<u8>>)> = all(&mut r)
        .into_iter()
        .map(|e| {
            let names = e.meta.xattrs.iter().map(|x| x.name.clone()).collect();
            (e.path.to_string(), e.kind, names)
        })
        .collect();
    let file = EntryKind::File {
        size: 1,
        sparse: None,
    };
    assert_eq!(
        got,
        vec![
            ("gone".into(), EntryKind::Whiteout, vec![]),
            ("gone-dir".into(), EntryKind::Whiteout, vec![]),
            ("opq".into(), EntryKind::Dir, vec![]),
            ("opq".into(), EntryKind::Opaque, vec![]),
            (
                "opq/new".into(),
                file,
                vec![b"trusted.overlay.img".to_vec(), b"user.kept".to_vec()]
            ),
        ]
    );
    // The plain reader sees the devices as they are.
    let plain = all(&mut DirReader::open(&up).unwrap());
    assert_eq!(plain[0].kind, EntryKind::CharDevice { major: 0, minor: 0 });
}

#[test]
fn a_filter_picks_entries_and_links_point_only_to_returned_names() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("keep/sub")).unwrap();
    fs::create_dir_all(p.join("skip")).unwrap();
    fs::write(p.join("keep/sub/f"), "x").unwrap();
    fs::write(p.join("skip/first"), "l").unwrap();
    fs::hard_link(p.join("skip/first"), p.join("keep/sub/second")).unwrap();
    fs::hard_link(p.join("skip/first"), p.join("keep/sub/third")).unwrap();
    let want = ["keep/sub/f", "keep/sub/second", "keep/sub/third"];
    let filter: PathFilter = Box::new(move |path: &LayerPath| {
        let s = path.to_string();
        if want.contains(&s.as_str()) {
            Visit::Entry
        } else if want.iter().any(|w| w.starts_with(&format!("{s}/"))) {
            Visit::Descend
        } else {
            Visit::Skip
        }
    });
    let mut r = DirReader::open(p).unwrap().with_filter(filter);
    let got = all(&mut r);
    assert_eq!(
        paths(&got),
        ["keep/sub/f", "keep/sub/second", "keep/sub/third"]
    );
    assert_eq!(
        got[1].kind,
        EntryKind::File {
            size: 1,
            sparse: None
        }
    );
    assert_eq!(
        got[2].kind,
        EntryKind::HardLink {
            target: lp(b"keep/sub/second")
        }
    );
}

#[test]
fn xattr_lists_and_values_longer_than_the_first_buffers_come_back_whole() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("f"), "x").unwrap();
    let f = fs::File::open(p.join("f")).unwrap();
    let flags = rfs::XattrFlags::empty();
    let mut want = Vec::new();
    // 12 names make a list of 444 bytes; one value of 1500 bytes (ext4 holds 4 KiB of
    // xattrs per inode).
    for i in 0..12 {
        let name = format!("user.a-rather-long-attribute-name-{i:02}");
        rfs::fsetxattr(&f, &name, b"v", flags).unwrap();
        want.push(Xattr {
            name: name.into_bytes(),
            value: b"v".to_vec(),
        });
    }
    let long: Vec<u8> = (0..1500).map(|i| (i % 253) as u8).collect();
    rfs::fsetxattr(&f, "user.long", &long, flags).unwrap();
    want.push(Xattr {
        name: b"user.long".to_vec(),
        value: long,
    });
    want.sort_by(|a, b| a.name.cmp(&b.name));
    let got = all(&mut DirReader::open(p).unwrap());
    assert_eq!(got.len(), 1);
    assert!(got[0].meta.xattrs == want, "{:?}", got[0].meta.xattrs);
}
