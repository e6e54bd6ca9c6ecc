//! `DirWriter::open_upper` against the kernel: each case builds lower layers, then
//! applies the same layer twice, once through a real overlayfs mount of the lowers (the
//! reference: the kernel copies up, whites out, makes directories opaque) and once
//! straight into a bare upper directory; the two merged views, mounted, must be the same
//! tree (types, modes, owners, times, user xattrs, contents, link targets), and a layer
//! refused one way must be refused the other. Needs root and overlayfs; skipped (with a
//! note) where they are missing.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_layer::dir_writer::{DirWriter, DirWriterOptions};
use strata_layer::{Entry, LayerWriter, Timestamp};
use strata_testkit::entries::EntryExt;

/// An entry and its data.
struct Item(Entry, Vec<u8>);

fn with_meta(mut e: Entry, mode: u32, secs: i64) -> Entry {
    e.meta.mode = mode;
    e.meta.mtime = Timestamp::new(secs, 123);
    e.meta.uid = 1000 + secs as u64 % 7;
    e.meta.gid = 2000;
    e
}
fn file(path: &str, data: &str, secs: i64) -> Item {
    let e = Entry::file(path, data.len() as u64);
    Item(with_meta(e, 0o640, secs), data.as_bytes().to_vec())
}
fn dir(path: &str, mode: u32, secs: i64) -> Item {
    Item(with_meta(Entry::dir(path), mode, secs), Vec::new())
}
fn dir_x(path: &str, secs: i64, xattr: &str) -> Item {
    let e = with_meta(Entry::dir(path), 0o751, secs).xattr("user.note", xattr.as_bytes());
    Item(e, Vec::new())
}
fn symlink(path: &str, target: &str, secs: i64) -> Item {
    Item(
        with_meta(Entry::symlink(path, target), 0o777, secs),
        Vec::new(),
    )
}
fn hardlink(path: &str, target: &str) -> Item {
    Item(
        with_meta(Entry::hardlink(path, target), 0o640, 5),
        Vec::new(),
    )
}
fn whiteout(path: &str) -> Item {
    Item(Entry::whiteout(path), Vec::new())
}
fn opaque(path: &str) -> Item {
    Item(Entry::opaque(path), Vec::new())
}

fn apply(mut w: DirWriter, items: &[Item]) -> Result<(), String> {
    for Item(e, data) in items {
        w.add(e).map_err(|e| e.to_string())?;
        if !data.is_empty() {
            w.write_data(data).map_err(|e| e.to_string())?;
        }
    }
    w.finish().map(drop).map_err(|e| e.to_string())
}

/// A scratch directory on tmpfs (overlayfs needs an upper file system with xattrs and
/// whiteouts; tmpfs has both).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-upper-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, at: &Path) -> bool {
    let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts `at`. The tests run in parallel, and a child another test forks (mount,
/// getfattr) holds copies of this process's descriptors until it execs, so the mount may
/// be busy for a moment: try again for up to two seconds.
fn umount(at: &Path) {
    for _ in 0..100 {
        let out = Command::new("umount").arg(at).output().unwrap();
        if out.status.success() {
            return;
        }
        if !String::from_utf8_lossy(&out.stderr).contains("busy") {
            panic!(
                "umount {}: {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("umount {}: still busy after 2 s", at.display());
}

/// What a tree holds, path by path.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!(
                    "file {:?} ino-links {}",
                    std::fs::read_to_string(&path).unwrap(),
                    m.nlink()
                )
            } else if ft.is_char_device() {
                format!("char {}", m.rdev())
            } else {
                "other".to_string()
            };
            let xattr = if ft.is_symlink() {
                String::new()
            } else {
                let out = Command::new("getfattr")
                    .args(["--absolute-names", "-d", "-m", "user\\."])
                    .arg(&path)
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .skip(1)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                out
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            // The layers' own times are small; a large one is the time of the run (an
            // implied directory, a directory changed but not listed), the same either way
            // only to the second.
            let mtime = if m.mtime() > 1_000_000_000 {
                "now".to_string()
            } else {
                format!("{}.{}", m.mtime(), m.mtime_nsec())
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{} mtime {mtime} {xattr}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                ),
            );
        }
    }
    out
}

/// Builds `lowers` (bottom first), applies `layer` both ways, and compares. The bottom
/// lower is a plain tree; each one above it is written by the writer in upper mode over
/// those below, so it holds whiteouts and opaque markers as a layer of the store does.
/// Returns false when the machine cannot run the comparison.
fn same_both_ways(name: &str, lowers: &[&[Item]], layer: &[Item]) -> bool {
    if !rustix::process::geteuid().is_root() || !Path::new("/dev/shm").is_dir() {
        eprintln!("{name}: needs root and /dev/shm; skipped");
        return false;
    }
    let t = scratch();
    let d = |s: &str| {
        let p = t.path().join(s);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, items) in lowers.iter().enumerate() {
        let l = d(&format!("lower{i}"));
        let w = if dirs.is_empty() {
            DirWriter::open(&l, DirWriterOptions::default())
        } else {
            DirWriter::open_upper(&l, &dirs, DirWriterOptions::default())
        };
        apply(w.unwrap(), items).unwrap();
        dirs.insert(0, l);
    }
    let (ref_upper, ref_work, ref_m) = (d("ref-upper"), d("ref-work"), d("ref-m"));
    if !mount(&dirs, &ref_upper, &ref_work, &ref_m) {
        eprintln!("{name}: cannot mount overlayfs here; skipped");
        return false;
    }
    let by_kernel = apply(
        DirWriter::open(&ref_m, DirWriterOptions::default()).unwrap(),
        layer,
    );
    let want = listing(&ref_m);
    umount(&ref_m);

    let (upper, work, m) = (d("upper"), d("work"), d("m"));
    let direct = apply(
        DirWriter::open_upper(&upper, &dirs, DirWriterOptions::default()).unwrap(),
        layer,
    );
    assert!(mount(&dirs, &upper, &work, &m));
    let got = listing(&m);
    umount(&m);
    assert_eq!(
        by_kernel.is_ok(),
        direct.is_ok(),
        "{name}: through a mount {by_kernel:?}, into the upper directory {direct:?}"
    );
    // Once more with the lowers named only when first needed: the same in every way.
    let (upper_later, work_later, m_later) = (d("upper-later"), d("work-later"), d("m-later"));
    let named = dirs.clone();
    let later = apply(
        DirWriter::open_upper_later(
            &upper_later,
            Box::new(move || Ok(named)),
            DirWriterOptions::default(),
        )
        .unwrap(),
        layer,
    );
    assert_eq!(direct, later, "{name}: lowers now and lowers later");
    assert!(mount(&dirs, &upper_later, &work_later, &m_later));
    let got_later = listing(&m_later);
    umount(&m_later);
    if direct.is_ok() {
        assert_eq!(got, got_later, "{name}: lowers now and lowers later");
    }
    if by_kernel.is_ok() {
        for (path, want) in &want {
            assert_eq!(Some(want), got.get(path), "{name}: `{path}` differs");
        }
        assert_eq!(want, got, "{name}: extra entries");
    }
    true
}

/// The base most cases sit on.
fn base() -> Vec<Item> {
    vec![
        dir("etc", 0o755, 10),
        file("etc/passwd", "root", 11),
        file("etc/group", "wheel", 12),
        dir_x("usr", 13, "kept on copy-up"),
        dir("usr/lib", 0o755, 14),
        file("usr/lib/libc.so", "elf", 15),
        dir("usr/lib/deep", 0o700, 16),
        file("usr/lib/deep/x", "x", 17),
        symlink("lib", "usr/lib", 18),
        symlink("abs", "/usr/lib/deep", 19),
        dir("var", 0o755, 20),
        dir("var/cache", 0o755, 21),
        file("var/cache/a", "a", 22),
        file("var/cache/b", "b", 23),
        dir("opt", 0o755, 24),
        file("opt/tool", "tool", 25),
    ]
}

#[test]
fn new_files_in_lower_directories_copy_them_up_with_their_metadata() {
    same_both_ways(
        "copy-up",
        &[&base()],
        &[
            file("usr/lib/deep/new", "new", 30),
            file("etc/hosts", "localhost", 31),
            file("brand/new/dir/file", "implied", 32),
            dir("var", 0o700, 33),
            file("var/cache/c", "c", 34),
        ],
    );
}

#[test]
fn writes_through_lower_symlinks_stay_inside_and_land_where_the_kernel_puts_them() {
    same_both_ways(
        "symlinks",
        &[&base()],
        &[
            file("lib/through-relative", "r", 40),
            file("abs/through-absolute", "a", 41),
            symlink("up", "../../../../..", 43),
            file("up/etc/from-above", "confined", 44),
        ],
    );
    let mut loops = base();
    loops.push(symlink("loop1", "loop2", 45));
    loops.push(symlink("loop2", "/loop1", 46));
    same_both_ways("symlink loop", &[&loops], &[file("loop1/x", "never", 47)]);
    same_both_ways(
        "dangling",
        &[&base()],
        &[
            symlink("dangling", "/no/such/dir", 48),
            file("dangling/x", "no", 49),
        ],
    );
}

#[test]
fn whiteouts_hide_lower_entries_and_keep_this_layers() {
    same_both_ways(
        "whiteouts",
        &[&base()],
        &[
            whiteout("etc/passwd"),
            whiteout("usr/lib/deep"),
            whiteout("not/there/at/all"),
            whiteout("nothing-here"),
            file("var/cache/mine", "mine", 50),
            whiteout("var/cache"),
            file("opt/tool2", "t2", 51),
            whiteout("opt/tool2"),
            whiteout("lib"),
        ],
    );
}

#[test]
fn a_whiteout_then_the_same_name_again_holds_only_the_new_content() {
    same_both_ways(
        "whiteout then recreate",
        &[&base()],
        &[
            whiteout("var/cache"),
            dir("var/cache", 0o750, 60),
            file("var/cache/fresh", "f", 61),
            whiteout("etc/group"),
            file("etc/group", "new group", 62),
        ],
    );
}

#[test]
fn opaque_directories_hide_lower_content_wherever_the_marker_sits() {
    same_both_ways(
        "opaque",
        &[&base()],
        &[
            file("var/cache/kept", "k", 70),
            opaque("var/cache"),
            opaque("usr/lib"),
            file("usr/lib/after", "after", 71),
            dir("usr/lib/deep", 0o755, 72),
            opaque("brand-new"),
        ],
    );
    same_both_ways("opaque in a lower symlink", &[&base()], &[opaque("lib")]);
    same_both_ways(
        "opaque in a lower file",
        &[&base()],
        &[opaque("etc/passwd")],
    );
}

#[test]
fn an_opaque_root_hides_every_lower_entry() {
    same_both_ways(
        "opaque root",
        &[&base()],
        &[
            dir("etc", 0o755, 80),
            file("etc/only", "only", 81),
            opaque(""),
        ],
    );
}

#[test]
fn replacing_lower_entries_by_other_kinds() {
    same_both_ways(
        "replace",
        &[&base()],
        &[
            file("usr/lib/deep", "a file where a dir was", 90),
            dir("etc/passwd", 0o755, 91),
            file("etc/passwd/inside", "i", 92),
            file("var/cache", "first a file", 93),
            dir("var/cache", 0o755, 94),
            file("var/cache/z", "z", 95),
            symlink("opt", "/etc", 96),
        ],
    );
}

#[test]
fn hard_links_to_lower_files_copy_them_up_first() {
    same_both_ways(
        "hard links",
        &[&base()],
        &[
            hardlink("etc/passwd-link", "etc/passwd"),
            hardlink("new/dir/libc", "usr/lib/libc.so"),
            hardlink("symlink-link", "lib"),
            hardlink("through", "lib/deep/x"),
        ],
    );
    same_both_ways(
        "hard link to a whited-out file",
        &[&base()],
        &[whiteout("etc/group"), hardlink("g", "etc/group")],
    );
    same_both_ways(
        "hard link to a lower directory",
        &[&base()],
        &[hardlink("d", "usr/lib")],
    );
}

#[test]
fn several_lowers_merge_as_overlayfs_merges_them() {
    let middle = vec![
        whiteout("etc/passwd"),
        opaque("var/cache"),
        file("var/cache/middle", "m", 100),
        file("usr/lib/middle", "m", 101),
        dir("usr/lib/deep", 0o711, 102),
    ];
    same_both_ways(
        "three layers",
        &[&base(), &middle],
        &[
            file("etc/passwd", "back", 110),
            whiteout("var/cache/middle"),
            file("var/cache/top", "t", 111),
            file("usr/lib/deep/top", "t", 112),
            hardlink("usr/lib/deep/x-again", "usr/lib/deep/x"),
            whiteout("usr/lib/libc.so"),
        ],
    );
    same_both_ways(
        "opaque over two",
        &[&base(), &middle],
        &[opaque("usr"), file("usr/only", "o", 113)],
    );
}

/// The store applies a layer while its parent is still being written: the writer must
/// not look below before the lowers are complete, and must give the same tree as when
/// they were there from the start.
#[test]
fn lowers_finished_only_when_first_needed_give_the_same_upper() {
    if !rustix::process::geteuid().is_root() || !Path::new("/dev/shm").is_dir() {
        eprintln!("needs root and /dev/shm; skipped");
        return;
    }
    let t = scratch();
    let d = |s: &str| {
        let p = t.path().join(s);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let layer = [
        dir("srv", 0o755, 40),
        file("srv/fresh", "only new directories", 41),
        file("usr/lib/deep/new", "needs the lower usr", 42),
        whiteout("etc/group"),
    ];
    // Written with the lowers complete from the start.
    let lower = d("lower");
    apply(
        DirWriter::open(&lower, DirWriterOptions::default()).unwrap(),
        &base(),
    )
    .unwrap();
    let want = d("want");
    apply(
        DirWriter::open_upper(
            &want,
            std::slice::from_ref(&lower),
            DirWriterOptions::default(),
        )
        .unwrap(),
        &layer,
    )
    .unwrap();
    // Written while the lower is still empty: the lower is filled in the callback.
    let late = d("late-lower");
    let upper = d("upper");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, late_dir, upper_dir) = (calls.clone(), late.clone(), upper.clone());
    let mut w = DirWriter::open_upper_later(
        &upper,
        Box::new(move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // What the layer wrote before it needed to look below is there already.
            assert!(upper_dir.join("srv/fresh").is_file());
            apply(
                DirWriter::open(&late_dir, DirWriterOptions::default()).unwrap(),
                &base(),
            )
            .unwrap();
            Ok(vec![late_dir])
        }),
        DirWriterOptions::default(),
    )
    .unwrap();
    for Item(e, data) in &layer[..2] {
        w.add(e).unwrap();
        if !data.is_empty() {
            w.write_data(data).unwrap();
        }
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(std::fs::read_dir(&late).unwrap().count(), 0);
    for Item(e, data) in &layer[2..] {
        w.add(e).unwrap();
        if !data.is_empty() {
            w.write_data(data).unwrap();
        }
    }
    w.finish().unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(listing(&want), listing(&upper));
    assert_eq!(
        std::fs::symlink_metadata(upper.join("etc/group"))
            .map(|m| m.rdev())
            .ok(),
        Some(0),
        "the whiteout of a lower file is a 0/0 device"
    );
}

/// A layer that never needs to look below never waits for the lowers.
#[test]
fn lowers_are_not_waited_for_by_a_layer_of_new_directories() {
    let t = tempfile::tempdir().unwrap();
    let w = DirWriter::open_upper_later(
        t.path(),
        Box::new(|| panic!("the lowers were asked for")),
        DirWriterOptions::default(),
    )
    .unwrap();
    apply(
        w,
        &[
            dir("a", 0o755, 1),
            file("a/f", "x", 2),
            dir("a/b", 0o700, 3),
            symlink("a/b/l", "../f", 4),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(t.path().join("a/f")).unwrap(), b"x");
}
