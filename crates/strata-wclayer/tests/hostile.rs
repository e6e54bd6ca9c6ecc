//! Hostile input: each is a clear error, and nothing is written outside the target folder.

use std::io::Write;
use std::path::Path;

use strata_layer::tar::{HeaderStyle, TarWriter};
use strata_layer::{Entry, EntryKind, LayerWriter, PaxRecord};
use strata_testkit::entries::{path, EntryExt};
use strata_wclayer::folder::{parse_tombstones, LayerChain, LayerFolderReader, LayerFolderWriter};
use strata_wclayer::{import_layer, FileAttributes, FileBasicInfo, WinPath};

fn wp(s: &str) -> WinPath {
    WinPath::parse(s).unwrap()
}

fn dir() -> FileBasicInfo {
    FileBasicInfo {
        attributes: FileAttributes(0x10),
        ..Default::default()
    }
}

fn file() -> FileBasicInfo {
    FileBasicInfo {
        attributes: FileAttributes(0x20),
        ..Default::default()
    }
}

/// A Windows tar of (name, kind, fileattr) entries, the way a third party might write it.
fn tar(entries: &[(&str, EntryKind, &str)]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for (name, kind, attr) in entries {
        let mut e = Entry::new(path(name), kind.clone());
        if !attr.is_empty() {
            e.pax.push(PaxRecord {
                key: "MSWINDOWS.fileattr".into(),
                value: attr.as_bytes().to_vec(),
            });
        }
        w.add_as(&e, HeaderStyle::GoPax { mode: 0 }).unwrap();
        if let EntryKind::File { size, .. } = kind {
            w.write_data(&vec![b'x'; *size as usize]).unwrap();
        }
    }
    w.finish().unwrap()
}

fn import_err(t: &[u8], root: &Path) -> String {
    let layer = root.join("layer");
    let e = import_layer(t, &LayerChain::new(&layer, &[]))
        .unwrap_err()
        .to_string();
    assert!(!layer.exists(), "a failed import left {layer:?} behind");
    let left: Vec<_> = std::fs::read_dir(root).unwrap().collect();
    assert!(left.is_empty(), "a failed import left {left:?}");
    e
}

type Case<'a> = (&'a [(&'a str, EntryKind, &'a str)], &'a str);

fn f(n: u64) -> EntryKind {
    EntryKind::File {
        size: n,
        sparse: None,
    }
}

#[test]
fn names_escaping_files_dotdot_and_case_duplicates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[Case] = &[
        // A base layer may hold paths outside Files\ (hcsshim's base writer takes any
        // relative path), but not the folder's own files.
        (
            &[
                ("Files", EntryKind::Dir, "16"),
                ("layerchain.json", f(1), "32"),
            ],
            "the layer folder's own file",
        ),
        (
            &[("Files", EntryKind::Dir, "16"), ("Files/a:b", f(1), "32")],
            "NTFS cannot store",
        ),
        (
            &[
                ("Files", EntryKind::Dir, "16"),
                ("Files/A.txt", f(1), "32"),
                ("Files/a.TXT", f(1), "32"),
            ],
            "differs only in case",
        ),
        (
            &[("Files/x", f(1), "32")],
            "has no directory entry before it",
        ),
        (
            &[("Files", EntryKind::Dir, "16"), ("Files/x", f(1), "1e3")],
            "not a decimal u32",
        ),
        (
            &[
                ("Files", EntryKind::Dir, "16"),
                ("Files/x.$wcidirs$", f(1), "32"),
            ],
            "reserved",
        ),
        (
            &[
                ("Files", EntryKind::Dir, "16"),
                (
                    "Files/l",
                    EntryKind::HardLink {
                        target: path("Files/none"),
                    },
                    "",
                ),
            ],
            "failed to find link target",
        ),
        (
            &[
                ("Files", EntryKind::Dir, "16"),
                ("Files/x", f(0), "32"),
                ("Files/x", f(0), "32"),
            ],
            "already added",
        ),
    ];
    for (entries, want) in cases {
        let e = import_err(&tar(entries), tmp.path());
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    // A whiteout in a base layer, `..` through the tar reader.
    let wh = tar(&[("Files", EntryKind::Dir, "16")]);
    let mut with_wh = wh[..wh.len() - 1024].to_vec();
    let mut w = TarWriter::new(Vec::new());
    w.add(&Entry::whiteout("Files/gone")).unwrap();
    with_wh.extend(w.finish().unwrap());
    assert!(import_err(&with_wh, tmp.path()).contains("base layer cannot have tombstones"));
}

#[test]
fn truncated_streams_and_lying_lengths_in_a_folder_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("l");
    let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
    w.add(&wp("Files"), &dir()).unwrap();
    w.add(&wp("Files\\a"), &file()).unwrap();
    // DATA of 100 bytes with 3 present.
    w.write_all(&[
        1, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c',
    ])
    .unwrap();
    w.finish().unwrap();
    let mut out = Vec::new();
    let e = strata_wclayer::export_layer(&LayerChain::new(&layer, &[]), &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected end"), "{e}");
}

#[test]
fn the_writer_never_follows_links_planted_in_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let layer = tmp.path().join("l");
    let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
    w.add(&wp("Files"), &dir()).unwrap();
    // Someone plants a symlink where a directory of the layer will be resolved.
    std::os::unix::fs::symlink(&outside, layer.join("Files/evil")).unwrap();
    w.add(&wp("Files\\evil\\x"), &file()).unwrap_err();
    std::os::unix::fs::symlink("../../outside", layer.join("Files/up")).unwrap();
    let _ = w.add(&wp("Files\\up\\y"), &file());
    let _ = w.finish();
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside the folder"
    );
    // And the reader refuses Linux symlinks in a folder.
    let mut r = LayerFolderReader::open(&LayerChain::new(&layer, &[])).unwrap();
    let mut err = None;
    while err.is_none() {
        match r.next() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => err = Some(e.to_string()),
        }
    }
    assert!(err.unwrap().contains("no Linux symlinks"));
}

#[test]
fn tombstones_with_empty_lines_or_dotdot_are_refused() {
    let p = Path::new("tombstones.txt");
    let ok = parse_tombstones(p, "\u{feff}Version 1.0\r\n\\a\\b\r\n\\c\n".as_bytes()).unwrap();
    assert_eq!(
        ok.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
        ["Files\\a\\b", "Files\\c"]
    );
    for (bad, want) in [
        ("\u{feff}Version 1.0\n\n\\a\n", "line 2: an empty line"),
        ("\u{feff}Version 1.0\n\\..\\..\\etc\\passwd\n", "line 2"),
        ("Version 1.0\n\\a\n", "line 1"),
        ("\u{feff}Version 1.0\nno-backslash\n", "must start with"),
        ("\u{feff}Version 1.0\n\\\n", "line 2"),
    ] {
        let e = parse_tombstones(p, bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    // A folder with a bad tombstones file cannot be read.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("b");
    let mut w = LayerFolderWriter::create(&base, &[]).unwrap();
    w.add(&wp("Files"), &dir()).unwrap();
    w.finish().unwrap();
    let d = tmp.path().join("d");
    let mut w = LayerFolderWriter::create(&d, std::slice::from_ref(&base)).unwrap();
    w.add(&wp("Files"), &dir()).unwrap();
    w.finish().unwrap();
    std::fs::write(d.join("tombstones.txt"), "\u{feff}Version 1.0\n\n").unwrap();
    assert!(LayerFolderReader::open(&LayerChain::new(&d, &[base])).is_err());
}

#[test]
fn utility_vm_and_tombstone_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("b");
    let mut w = LayerFolderWriter::create(&base, &[]).unwrap();
    w.add(&wp("Files"), &dir()).unwrap();
    assert!(w
        .remove(&wp("Files\\x"))
        .unwrap_err()
        .to_string()
        .contains("base layer cannot have tombstones"));
    w.finish().unwrap();
    let d = tmp.path().join("d");
    let mut w = LayerFolderWriter::create(&d, &[base]).unwrap();
    assert!(w
        .add(&wp("UtilityVM\\Files\\x"), &file())
        .unwrap_err()
        .to_string()
        .contains("missing UtilityVM directory"));
    assert!(w
        .add(&wp("UtilityVM\\Other"), &dir())
        .unwrap_err()
        .to_string()
        .contains("invalid UtilityVM layer"));
    assert!(w
        .remove(&wp("Hives\\System_Delta"))
        .unwrap_err()
        .to_string()
        .contains("invalid tombstone"));
    w.add(&wp("Files"), &dir()).unwrap();
    w.add(
        &wp("Files\\j"),
        &FileBasicInfo {
            attributes: FileAttributes(0x410),
            ..Default::default()
        },
    )
    .unwrap();
    let rp = strata_wclayer::reparse::encode(&strata_wclayer::reparse::ReparsePoint {
        target: r"C:\x".into(),
        mount_point: true,
    })
    .unwrap();
    let mut s = vec![8, 0, 0, 0, 0, 0, 0, 0];
    s.extend_from_slice(&(rp.len() as u64).to_le_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(&rp);
    w.write_all(&s).unwrap();
    // Nothing may be created under a junction of this layer.
    assert!(w
        .add(&wp("Files\\j\\x"), &file())
        .unwrap_err()
        .to_string()
        .contains("junction"));
}
