//! Regular files finished on the writer's second thread: the tree, the warnings and the
//! errors are those of applying the entries one after the other.

use super::*;
use strata_layer::tar::TarReader;
use strata_layer::unpack::{unpack, UnpackOptions};
use strata_layer::LayerReader;
use strata_testkit::entries::{tar, Item as TarItem};

/// More small files than one batch holds, each with its own contents.
fn many_files(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            with_mtime(
                file(&format!("f{i:03}"), format!("body {i}\n").as_bytes()),
                1_000 + i as i64,
                0,
            )
        })
        .collect()
}

#[test]
fn a_hard_link_to_a_file_being_finished_gets_the_links_metadata() {
    let s = Scratch::new();
    let mut items = many_files(150);
    // The link entry's metadata is the inode's last word, as when applied in turn.
    items.push(with_mtime(
        with_mode(hardlink("link", "f140"), 0o600),
        77,
        5,
    ));
    items.extend(
        many_files(3)
            .into_iter()
            .map(|Item(e, d)| Item(e.mode(0o640), d)),
    );
    apply(&s.root, &items).unwrap();
    for i in 0..150 {
        let path = s.root.join(format!("f{i:03}"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            format!("body {i}\n").as_bytes()
        );
    }
    let md = std::fs::metadata(s.root.join("link")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (77, 5));
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(md.nlink(), 2);
    let f000 = std::fs::metadata(s.root.join("f000")).unwrap();
    assert_eq!(
        (f000.mtime(), f000.permissions().mode() & 0o7777),
        (1_000, 0o640)
    );
}

#[test]
fn warnings_of_files_finished_in_the_background_keep_the_entry_order() {
    let s = Scratch::new();
    let a = Item(
        Entry::file("a", 1).xattr("trusted.one", b"1"),
        b"a".to_vec(),
    );
    let b = Item(
        Entry::file("b", 1).xattr("trusted.two", b"2"),
        b"b".to_vec(),
    );
    // `a` is finished in the background, the whiteout's warning comes from the
    // writer's own thread, then `b` in the background again.
    let summary = apply(&s.root, &[a, whiteout("a"), b]).unwrap();
    let dropped = "dropped: privileged namespace (allowed only with privileged xattrs)";
    assert_eq!(
        summary.warnings,
        vec![
            format!("xattr `trusted.one` on `a` {dropped}"),
            "whiteout of `a` ignored: it was written earlier in this layer (whiteouts hide lower layers only)".to_string(),
            format!("xattr `trusted.two` on `b` {dropped}"),
        ]
    );
    assert_eq!(std::fs::read(s.root.join("a")).unwrap(), b"a");
}

#[test]
fn an_error_of_a_file_finished_in_the_background_names_its_entry_and_offset() {
    if !is_root() {
        return; // owners are applied only as root
    }
    let s = Scratch::new();
    let items = vec![
        TarItem::file("a", "first"),
        TarItem {
            entry: Entry::file("b", 6).owner(u64::from(u32::MAX), 0),
            data: b"second".to_vec(),
        },
        TarItem::file("c", "third"),
    ];
    let layer = tar(&items);
    let mut offsets = Vec::new();
    let mut reader = TarReader::new(&layer[..]);
    while reader.next_entry().unwrap().is_some() {
        offsets.push(reader.entry_offset());
    }
    let err = unpack(&layer[..], &s.root, UnpackOptions::default()).unwrap_err();
    let Error::At { offset, source } = &err else {
        panic!("not located: {err}");
    };
    assert_eq!(*offset, offsets[1], "{err}");
    assert_eq!(
        source.to_string(),
        "cannot apply `b`: uid 4294967295 is out of range"
    );
}
