//! Every kind of entry with its metadata, replacements, limits.

use super::*;

#[test]
fn creates_files_dirs_links_and_nodes_with_their_metadata() {
    let s = Scratch::new();
    let mut f = with_mtime(
        with_mode(file("etc/passwd", b"root:x:0:0\n"), 0o640),
        1_700_000_000,
        123_456_789,
    );
    f.0.meta.uid = 1000;
    f.0.meta.gid = 1001;
    f.0.meta.atime = Some(Timestamp::new(1_600_000_000, 5));
    // A hard link entry carries its target's metadata, as tar writers emit it.
    let mut passwd_link = hardlink("etc/passwd-", "etc/passwd");
    passwd_link.0.meta = f.0.meta.clone();
    let mut sym = with_mtime(
        symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
        1_000_000_000,
        0,
    );
    sym.0.meta.uid = 7;
    let mut fifo = with_mtime(
        Item(Entry::new(p("run/fifo"), EntryKind::Fifo), Vec::new()),
        42,
        0,
    );
    fifo.0.meta.mode = 0o620;
    let mut chr = Item(
        Entry::new(p("dev/null"), EntryKind::CharDevice { major: 1, minor: 3 }),
        Vec::new(),
    );
    chr.0.meta.mode = 0o666;
    let mut blk = Item(
        Entry::new(
            p("dev/loop0"),
            EntryKind::BlockDevice { major: 7, minor: 0 },
        ),
        Vec::new(),
    );
    blk.0.meta.mode = 0o660;
    let big = Item(
        Entry::new(
            p("dev/big"),
            EntryKind::CharDevice {
                major: 4095,
                minor: 1_048_575,
            },
        ),
        Vec::new(),
    );
    let items = vec![
        with_mtime(with_mode(dir("etc"), 0o750), 1_000_000_000, 0),
        f,
        with_mode(file("setuid", b"x"), 0o4755),
        with_mode(dir("sticky"), 0o1777),
        with_mode(file("zero", b""), 0o000),
        sym,
        passwd_link,
        fifo,
        chr,
        blk,
        big,
    ];
    let summary = apply(&s.root, &items).unwrap();
    assert_eq!(summary.entries, items.len() as u64);
    assert_eq!(summary.data_bytes, 12);
    let r = &s.root;

    let etc = lmeta(&r.join("etc"));
    assert!(etc.is_dir());
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!((etc.mtime(), etc.mtime_nsec()), (1_000_000_000, 0));

    let pw = lmeta(&r.join("etc/passwd"));
    assert_eq!(
        std::fs::read(r.join("etc/passwd")).unwrap(),
        b"root:x:0:0\n"
    );
    assert_eq!(pw.mode() & 0o7777, 0o640);
    assert_eq!((pw.mtime(), pw.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert_eq!((pw.atime(), pw.atime_nsec()), (1_600_000_000, 5));
    assert_eq!(pw.nlink(), 2);
    assert_eq!(lmeta(&r.join("etc/passwd-")).ino(), pw.ino());
    if is_root() {
        assert_eq!((pw.uid(), pw.gid()), (1000, 1001));
    }
    assert_eq!(lmeta(&r.join("setuid")).mode() & 0o7777, 0o4755);
    assert_eq!(lmeta(&r.join("sticky")).mode() & 0o7777, 0o1777);
    assert_eq!(lmeta(&r.join("zero")).mode() & 0o7777, 0);

    let lt = lmeta(&r.join("etc/localtime"));
    assert!(lt.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(r.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(lt.mtime(), 1_000_000_000);
    if is_root() {
        assert_eq!(lt.uid(), 7);
    }

    let fifo = lmeta(&r.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
    assert_eq!(fifo.mtime(), 42);
    // Implied parents are 0755.
    assert_eq!(lmeta(&r.join("run")).mode() & 0o7777, 0o755);

    if is_root() {
        let null = lmeta(&r.join("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rfs::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lp = lmeta(&r.join("dev/loop0"));
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.rdev(), rfs::makedev(7, 0));
        assert_eq!(
            lmeta(&r.join("dev/big")).rdev(),
            rfs::makedev(4095, 1_048_575)
        );
    } else {
        assert!(!r.join("dev/null").exists());
        assert!(summary.warnings.iter().any(|w| w.contains("dev/null")));
    }
}

#[test]
fn devices_are_skipped_with_a_warning_when_disabled_and_huge_numbers_refused() {
    let s = Scratch::new();
    let opts = DirWriterOptions {
        devices: false,
        ..DirWriterOptions::default()
    };
    let chr = Item(
        Entry::new(p("dev/null"), EntryKind::CharDevice { major: 1, minor: 3 }),
        Vec::new(),
    );
    let summary = apply_with(&s.root, &[chr], opts).unwrap();
    assert!(!s.root.join("dev/null").exists());
    assert_eq!(summary.warnings.len(), 1);
    assert!(
        summary.warnings[0].contains("dev/null"),
        "{:?}",
        summary.warnings
    );

    if is_root() {
        let huge = Item(
            Entry::new(
                p("big"),
                EntryKind::CharDevice {
                    major: 4096,
                    minor: 0,
                },
            ),
            Vec::new(),
        );
        let err = apply(&s.root, &[huge]).unwrap_err().to_string();
        assert!(err.contains("4096:0"), "{err}");
    }
}

#[test]
fn implied_parents_are_0755_and_root_owned() {
    let s = Scratch::new();
    let old = rustix::process::umask(Mode::from_raw_mode(0o077));
    let r = apply(&s.root, &[file("x/y/z/file", b"z")]);
    rustix::process::umask(old);
    r.unwrap();
    for d in ["x", "x/y", "x/y/z"] {
        let md = lmeta(&s.root.join(d));
        assert_eq!(md.mode() & 0o7777, 0o755, "{d}");
        if is_root() {
            assert_eq!((md.uid(), md.gid()), (0, 0));
        }
    }
}

#[test]
fn root_entry_must_be_a_directory_and_its_metadata_is_ignored() {
    let s = Scratch::new();
    std::fs::set_permissions(&s.root, std::fs::Permissions::from_mode(0o711)).unwrap();
    apply(&s.root, &[with_mode(dir("."), 0o700), file("a", b"a")]).unwrap();
    assert_eq!(lmeta(&s.root).mode() & 0o7777, 0o711);

    let err = apply(
        &s.root,
        &[symlink(".", &host_victim("rootlink")), file("x", b"x")],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("root entry must be a directory"),
        "{err}"
    );
    assert!(lmeta(&s.root).is_dir());
    let err = apply(&s.root, &[whiteout(".")]).unwrap_err();
    assert!(matches!(err, Error::Apply { .. }));
    assert!(s.root.join("a").exists());
}

#[test]
fn directory_replaces_file_and_file_replaces_directory() {
    let s = Scratch::new();
    apply(&s.root, &[file("x", b"file"), dir("x"), file("x/y", b"y")]).unwrap();
    assert!(lmeta(&s.root.join("x")).is_dir());
    assert_eq!(std::fs::read(s.root.join("x/y")).unwrap(), b"y");
    apply(
        &s.root,
        &[
            dir("d"),
            file("d/c", b"c"),
            dir("d/sub"),
            file("d/sub/f", b"f"),
            file("d", b"now a file"),
        ],
    )
    .unwrap();
    assert!(lmeta(&s.root.join("d")).is_file());
    assert_eq!(std::fs::read(s.root.join("d")).unwrap(), b"now a file");
    // Dir over dir merges: lower children stay, the mode is replaced.
    std::fs::create_dir(s.root.join("m")).unwrap();
    std::fs::write(s.root.join("m/lower"), b"l").unwrap();
    apply(&s.root, &[with_mode(dir("m"), 0o700)]).unwrap();
    assert!(s.root.join("m/lower").exists());
    assert_eq!(lmeta(&s.root.join("m")).mode() & 0o7777, 0o700);
}

#[test]
fn duplicate_file_last_wins_and_hook_sees_the_first_body() {
    use std::cell::RefCell;
    use std::io::Read;
    use std::rc::Rc;
    let s = Scratch::new();
    std::fs::write(s.root.join("lowerfile"), b"lower").unwrap();
    type Seen = Vec<(String, Vec<u8>)>;
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
    let sink = seen.clone();
    w.on_replace(Box::new(move |path, f| {
        let mut body = Vec::new();
        (&*f)
            .read_to_end(&mut body)
            .map_err(|e| Error::io("hook", e))?;
        sink.borrow_mut().push((path.to_string(), body));
        Ok(())
    }));
    let items = [
        file("f", b"first\n"),
        file("f", b"second\n"),
        file("empty", b""),
        file("empty", b"x"),
        file("lowerfile", b"replaces a lower file: no hook"),
        dir("d"),
        file("d/a", b"in a dir"),
        dir("d/sub"),
        file("d/sub/b", b"deeper"),
        symlink("d", "/replaced/by/symlink"),
        file("g", b"g1"),
        symlink("g", "target"),
        with_mode(dir("dd"), 0o700),
        with_mode(dir("dd"), 0o750),
        file("dd/child", b"c"),
    ];
    for Item(e, d) in &items {
        w.add(e).unwrap();
        if !d.is_empty() {
            w.write_data(d).unwrap();
        }
    }
    w.finish().unwrap();
    assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"second\n");
    let mut got = seen.borrow().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("d/a".to_string(), b"in a dir".to_vec()),
            ("d/sub/b".to_string(), b"deeper".to_vec()),
            ("f".to_string(), b"first\n".to_vec()),
            ("g".to_string(), b"g1".to_vec()),
        ]
    );
    assert!(lmeta(&s.root.join("d")).file_type().is_symlink());
    assert_eq!(lmeta(&s.root.join("dd")).mode() & 0o7777, 0o750);
    assert!(s.root.join("dd/child").exists());
}

#[test]
fn read_only_dir_holding_a_file_is_filled_then_made_read_only() {
    let s = Scratch::new();
    apply(
        &s.root,
        &[
            with_mtime(with_mode(dir("ro"), 0o555), 1_000_000_000, 0),
            file("ro/inside", b"i"),
            with_mode(dir("ro/sub"), 0o500),
            file("ro/sub/f", b"f"),
        ],
    )
    .unwrap();
    let md = lmeta(&s.root.join("ro"));
    assert_eq!(md.mode() & 0o7777, 0o555);
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(lmeta(&s.root.join("ro/sub")).mode() & 0o7777, 0o500);
    assert_eq!(std::fs::read(s.root.join("ro/sub/f")).unwrap(), b"f");
}

#[test]
fn directory_mtimes_are_applied_after_their_children() {
    let s = Scratch::new();
    let items = [
        with_mtime(dir("a"), 1000, 1),
        with_mtime(dir("a/b"), 2000, 2),
        file("a/b/f", b"f"),
        file("a/g", b"g"),
        // late/ is listed after its child.
        file("late/child", b"c"),
        with_mtime(with_mode(dir("late"), 0o700), 1_000_000_000, 0),
        with_mtime(dir("a/c"), 3000, 0),
    ];
    apply(&s.root, &items).unwrap();
    let t = |n: &str| {
        let md = lmeta(&s.root.join(n));
        (md.mtime(), md.mtime_nsec())
    };
    assert_eq!(t("a"), (1000, 1));
    assert_eq!(t("a/b"), (2000, 2));
    assert_eq!(t("a/c"), (3000, 0));
    assert_eq!(t("late"), (1_000_000_000, 0));
    assert_eq!(lmeta(&s.root.join("late")).mode() & 0o7777, 0o700);
}

#[test]
fn mtimes_before_1970_and_far_future_are_restored_exactly() {
    let s = Scratch::new();
    let cases: [(i64, u32); 7] = [
        (0, 0),
        (-1, 0),
        (-315_619_200, 0),
        ((1 << 31) + 1, 0),
        (1 << 33, 0),
        (13_569_465_600, 0),
        (1_700_000_000, 500_000_000),
    ];
    let items: Vec<Item> = cases
        .iter()
        .enumerate()
        .map(|(i, &(secs, nanos))| with_mtime(file(&format!("t{i}"), b"x"), secs, nanos))
        .collect();
    let summary = apply(&s.root, &items).unwrap();
    for (i, &(secs, nanos)) in cases.iter().enumerate() {
        let md = lmeta(&s.root.join(format!("t{i}")));
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (secs, i64::from(nanos)),
            "t{i}: {:?}",
            summary.warnings
        );
    }
}

#[test]
fn sparse_file_keeps_its_holes() {
    let s = Scratch::new();
    const MIB: u64 = 1 << 20;
    let extents = vec![
        SparseExtent { offset: 0, len: 10 },
        SparseExtent {
            offset: 512 * MIB,
            len: 0,
        },
        SparseExtent {
            offset: 512 * MIB,
            len: 10,
        },
        SparseExtent {
            offset: 1023 * MIB,
            len: 10,
        },
    ];
    let size = 1024 * MIB;
    let mut e = Entry::new(
        p("sparse/extents"),
        EntryKind::File {
            size,
            sparse: Some(extents),
        },
    );
    e.meta.mode = 0o644;
    let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
    w.add(&e).unwrap();
    w.write_data(b"data at 0 ").unwrap();
    w.write_data(b"data at 51").unwrap();
    w.write_data(b"2data at 1").unwrap();
    assert!(matches!(w.write_data(b"!"), Err(Error::Misuse(_))));
    let hole = Entry::new(
        p("sparse/all-hole"),
        EntryKind::File {
            size: 64 * MIB,
            sparse: Some(vec![]),
        },
    );
    w.add(&hole).unwrap();
    w.finish().unwrap();
    let f = File::open(s.root.join("sparse/extents")).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), size);
    assert!(
        md.blocks() * 512 < 16 * MIB,
        "holes stayed holes: {} blocks",
        md.blocks()
    );
    let mut buf = [0u8; 10];
    f.read_exact_at(&mut buf, 512 * MIB).unwrap();
    assert_eq!(&buf, b"data at 51");
    f.read_exact_at(&mut buf, 1023 * MIB).unwrap();
    assert_eq!(&buf, b"2data at 1");
    f.read_exact_at(&mut buf, 100 * MIB).unwrap();
    assert_eq!(buf, [0; 10]);
    let hole = lmeta(&s.root.join("sparse/all-hole"));
    assert_eq!((hole.len(), hole.blocks()), (64 * MIB, 0));
}

#[test]
fn data_length_is_enforced() {
    let s = Scratch::new();
    let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
    assert!(matches!(w.write_data(b"x"), Err(Error::Misuse(_))));
    w.add(&file("f", b"abc").0).unwrap();
    assert!(matches!(w.write_data(b"abcd"), Err(Error::Misuse(_))));
    w.write_data(b"ab").unwrap();
    let err = w.add(&file("g", b"").0).unwrap_err();
    assert!(err.to_string().contains("only 2 of 3"), "{err}");
    let mut w = DirWriter::open(&s.root, DirWriterOptions::default()).unwrap();
    w.add(&file("h", b"abc").0).unwrap();
    assert!(w.finish().is_err());
}

#[test]
fn xattrs_follow_the_policy() {
    let s = Scratch::new();
    let x = |n: &str, v: &[u8]| strata_layer::Xattr {
        name: n.as_bytes().to_vec(),
        value: v.to_vec(),
    };
    let mut f = file("f", b"data");
    f.0.meta.xattrs = vec![
        x(
            "security.capability",
            &[
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        x("trusted.overlay.opaque", b"y"),
        x("trusted.other", b"t"),
        x("user.bin", &[0, 0xff, 1]),
        x("user.big", &[b'v'; 4000]),
    ];
    let mut d = dir("d");
    d.0.meta.xattrs = vec![x("user.on.dir", b"d")];
    let mut l = symlink("l", "f");
    l.0.meta.xattrs = vec![x("user.on.link", b"l")];
    let summary = apply(&s.root, &[f, d, l]).unwrap();
    let get = |path: &str, name: &str| {
        let full = s.root.join(path);
        let mut buf = vec![0u8; 8192];
        rfs::lgetxattr(&full, name, &mut buf[..])
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    assert_eq!(get("f", "user.bin"), Some(vec![0, 0xff, 1]));
    assert_eq!(get("f", "user.big").map(|v| v.len()), Some(4000));
    assert_eq!(get("d", "user.on.dir"), Some(b"d".to_vec()));
    // A v3 capability is 24 bytes; 28 is malformed and refused by the kernel.
    let v3 = "010000030004000000000000000000000000000000000000e8030000";
    let v3: Vec<u8> = (0..v3.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v3[i..i + 2], 16).unwrap())
        .collect();
    if is_root() {
        let mut bad = file("badcap", b"x");
        bad.0.meta.xattrs = vec![x("security.capability", &v3)];
        let summary = apply(&s.root, &[bad]).unwrap();
        assert!(summary
            .warnings
            .iter()
            .any(|w| w.contains("rejected its value as malformed")));
        assert_eq!(get("badcap", "security.capability"), None);
        let mut good = file("goodcap", b"x");
        let v3_ok = [&v3[..20], &[0xe8, 3, 0, 0][..]].concat();
        good.0.meta.xattrs = vec![x("security.capability", &v3_ok)];
        apply(&s.root, &[good]).unwrap();
        assert_eq!(get("goodcap", "security.capability"), Some(v3_ok));

        assert_eq!(get("f", "security.capability").map(|v| v.len()), Some(20));
        assert_eq!(get("f", "trusted.other"), None);
        assert_eq!(get("f", "trusted.overlay.opaque"), None);
    }
    let w = summary.warnings.join("\n");
    assert!(
        w.contains("trusted.overlay.opaque")
            && w.contains("trusted.other")
            && w.contains("user.on.link"),
        "{w}"
    );

    // Privileged: trusted.* applied, trusted.overlay.* still dropped.
    if is_root() {
        let mut g = file("g", b"data");
        g.0.meta.xattrs = vec![x("trusted.overlay.opaque", b"y"), x("trusted.other", b"t")];
        let mut l2 = symlink("l2", "g");
        l2.0.meta.xattrs = vec![x("trusted.on.link", b"l")];
        let opts = DirWriterOptions {
            privileged_xattrs: true,
            ..DirWriterOptions::default()
        };
        apply_with(&s.root, &[g, l2], opts).unwrap();
        assert_eq!(get("g", "trusted.other"), Some(b"t".to_vec()));
        assert_eq!(get("g", "trusted.overlay.opaque"), None);
        assert_eq!(get("l2", "trusted.on.link"), Some(b"l".to_vec()));
    }
}

#[test]
fn path_of_20kb_does_not_crash() {
    let s = Scratch::on_tmpfs();
    // 100 names of 199 bytes: over PATH_MAX, under the depth limit.
    let deep = format!("{}/", "d".repeat(199)).repeat(100) + "file";
    assert_eq!(deep.len(), 20_004);
    let r = apply(&s.root, &[file(&deep, b"deep")]);
    r.unwrap();
    // Resolving it again (chunked openat2) finds the same directory.
    apply(&s.root, &[file(&deep, b"again"), hardlink("top", &deep)]).unwrap();
    assert_eq!(std::fs::read(s.root.join("top")).unwrap(), b"again");
    // And the tree can be replaced and whited out without recursion.
    let top = "d".repeat(199);
    apply(&s.root, &[file(&top, b"flat")]).unwrap();
    assert!(lmeta(&s.root.join(&top)).is_file());
}

#[test]
fn deep_tree_is_whited_out_and_opaqued_iteratively() {
    let s = Scratch::on_tmpfs();
    // Deeper than a tar name may be (MAX_DEPTH): built with `join`, as a lower layer
    // made some other way could be.
    let deep = (0..3000).fold(LayerPath::root(), |p, _| p.join(b"d").unwrap());
    let mut deep_file = file("x", b"deep");
    deep_file.0.path = deep.join(b"file").unwrap();
    apply(&s.root, std::slice::from_ref(&deep_file)).unwrap();
    apply(&s.root, &[opaque(".")]).unwrap();
    assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), 0);
    apply(&s.root, std::slice::from_ref(&deep_file)).unwrap();
    apply(&s.root, &[whiteout("d")]).unwrap();
    assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), 0);
}

#[test]
fn thousand_nested_directory_entries() {
    let s = Scratch::on_tmpfs();
    let mut items = Vec::new();
    let mut path = String::new();
    for i in 0..1000 {
        if i > 0 {
            path.push('/');
        }
        path.push('n');
        items.push(with_mtime(dir(&path), 1000 + i, 0));
    }
    items.push(file(&format!("{path}/bottom"), b"bottom"));
    apply(&s.root, &items).unwrap();
    let full = s.root.join(&path);
    assert_eq!(std::fs::read(full.join("bottom")).unwrap(), b"bottom");
    assert_eq!(lmeta(&full).mtime(), 1999);
    assert_eq!(lmeta(&s.root.join("n")).mtime(), 1000);
}

#[test]
fn names_are_kept_byte_for_byte() {
    let s = Scratch::new();
    let names: [&[u8]; 5] = [
        b"caf\xc3\xa9",
        b"cafe\xcc\x81",
        b"\xff\xfe",
        b"tab\there",
        b"-leading",
    ];
    let items: Vec<Item> = names
        .iter()
        .map(|n| {
            let e = Entry::new(
                LayerPath::from_tar_name(n).unwrap(),
                EntryKind::File {
                    size: 0,
                    sparse: None,
                },
            );
            Item(e, Vec::new())
        })
        .collect();
    apply(&s.root, &items).unwrap();
    for n in names {
        assert!(lmeta(&s.root.join(OsStr::from_bytes(n))).is_file());
    }
}

#[test]
fn parent_that_is_a_file_or_dangling_symlink_is_an_error() {
    let s = Scratch::new();
    let err = apply(&s.root, &[file("f", b"f"), file("f/x", b"x")]).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = apply(&s.root, &[symlink("dl", "/missing"), file("dl/x", b"x")]).unwrap_err();
    assert!(
        err.to_string().contains("does not exist inside the root"),
        "{err}"
    );
    assert!(!Path::new("/missing").exists());
}

/// Not a correctness test: `cargo test -p strata-layer --release --test dir_writer -- --ignored --nocapture per_entry`.
#[test]
#[ignore]
fn per_entry_cost() {
    let s = Scratch::on_tmpfs();
    let n = 20_000;
    let mut items = Vec::with_capacity(n + n / 100);
    for i in 0..n {
        if i % 100 == 0 {
            items.push(dir(&format!("small/d{:04}", i / 100)));
        }
        items.push(file(
            &format!("small/d{:04}/f{i:05}.txt", i / 100),
            &vec![b'x'; i % 4096],
        ));
    }
    let t = std::time::Instant::now();
    apply(&s.root, &items).unwrap();
    let el = t.elapsed();
    eprintln!(
        "{} entries in {:?}: {:?}/entry",
        items.len(),
        el,
        el / items.len() as u32
    );
}

/// The writer skips the chown of a node it just created when the node is its own already;
/// a directory that passes its group on (setgid, group 4242) must not fool it: every
/// entry ends with the layer's owner, 0:0, and a merged directory keeps none of its own.
#[test]
fn owners_are_exact_under_a_setgid_directory_of_another_group() {
    if !is_root() {
        eprintln!("needs root (chown); skipped");
        return;
    }
    let s = Scratch::new();
    let shared = s.root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    rustix::fs::chown(&shared, None, Some(rustix::fs::Gid::from_raw(4242))).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::create_dir(s.root.join("top")).unwrap();
    rustix::fs::chown(
        s.root.join("top"),
        Some(rustix::fs::Uid::from_raw(1)),
        Some(rustix::fs::Gid::from_raw(1)),
    )
    .unwrap();
    rustix::fs::chown(&s.root, None, Some(rustix::fs::Gid::from_raw(4343))).unwrap();
    let fifo = Item(Entry::new(p("shared/fifo"), EntryKind::Fifo), Vec::new());
    apply(
        &s.root,
        &[
            file("shared/file", b"f"),
            with_mode(dir("shared/sub"), 0o755),
            file("shared/sub/deeper", b"d"),
            symlink("shared/link", "file"),
            fifo,
            file("at-root", b"r"),
            with_mode(dir("top"), 0o750),
            file("top/in-merged", b"m"),
        ],
    )
    .unwrap();
    for name in [
        "shared/file",
        "shared/sub",
        "shared/sub/deeper",
        "shared/link",
        "shared/fifo",
        "at-root",
        "top",
        "top/in-merged",
    ] {
        let md = lmeta(&s.root.join(name));
        assert_eq!((md.uid(), md.gid()), (0, 0), "{name}");
    }
    assert_eq!(lmeta(&s.root.join("shared/sub")).mode() & 0o7777, 0o755);
}
