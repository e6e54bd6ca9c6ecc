//! Fidelity with what other tools made and what a layer holds: a base layer with paths
//! outside `Files\` (as hcsshim's base writer takes them), the four FILETIMEs of every
//! entry of a diff layer, and a folder whose stream claims more than it holds.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{EntryKind, LayerWriter};
use strata_testkit::entries::collect;
use strata_wclayer::backup::{BackupStreamWriter, StreamHeader, StreamId};
use strata_wclayer::backuptar::write_tar_from_backup_stream;
use strata_wclayer::folder::{LayerChain, LayerFolderWriter};
use strata_wclayer::inspect::{inspect_folder, inspect_tar, InspectEntry};
use strata_wclayer::{
    export_layer, extract, import_layer, FileAttributes, FileBasicInfo, FileTime, WinPath,
};

fn wp(s: &str) -> WinPath {
    WinPath::parse(s).unwrap()
}

/// Four different FILETIMEs, so that any one replaced by another shows.
fn times(k: i64, attrs: u32) -> FileBasicInfo {
    let t = |n: i64| FileTime(132_000_000_000_000_000 + k * 100_000_000 + n * 1_000_000);
    FileBasicInfo {
        creation_time: t(1),
        last_access_time: t(2),
        last_write_time: t(3),
        change_time: t(4),
        attributes: FileAttributes(attrs),
    }
}

fn data_stream(data: &[u8]) -> Vec<u8> {
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader::new(StreamId::Data, data.len() as u64))
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

fn listing(tar: &[u8]) -> Vec<InspectEntry> {
    let mut v = Vec::new();
    inspect_tar(tar, |e| {
        v.push(e.clone());
        Ok(())
    })
    .unwrap();
    v
}

/// Issue 10 item 6: after import onto a parent and export, `Files`, `Hives` and the hive
/// files keep their creation and access times (hcsshim's reader replaces them by the
/// last write).
#[test]
fn diff_layer_export_keeps_the_four_times_of_files_hives_and_hive_files() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let mut w = LayerFolderWriter::create(&base, &[]).unwrap();
    w.add(&wp("Files"), &times(0, 0x10)).unwrap();
    w.finish().unwrap();

    // The diff tar in the order and form an export writes it.
    let mut tar = TarWriter::new(Vec::new());
    let entries: [(&str, u32, Vec<u8>, bool); 4] = [
        ("Files", 0x10, Vec::new(), false),
        ("Files\\a.txt", 0x20, data_stream(b"hi"), true),
        ("Hives", 0x10, Vec::new(), false),
        (
            "Hives\\System_Delta",
            0x20,
            data_stream(b"regf delta"),
            false,
        ),
    ];
    for (k, (name, attrs, stream, security)) in entries.iter().enumerate() {
        write_tar_from_backup_stream(
            &mut tar,
            &mut Cursor::new(stream.clone()),
            &wp(name),
            &times(k as i64 + 1, *attrs),
            *security,
        )
        .unwrap();
    }
    let tar = tar.finish().unwrap();

    let diff = tmp.path().join("diff");
    let parents = vec![base];
    import_layer(&tar[..], &LayerChain::new(&diff, &parents)).unwrap();
    let mut back = Vec::new();
    export_layer(&LayerChain::new(&diff, &parents), &mut back).unwrap();
    let (want, got) = (listing(&tar), listing(&back));
    assert_eq!(want.len(), 4);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "{} came back with other times", w.name);
    }
    assert!(tar == back, "the diff tar did not come back byte for byte");
}

fn real_windows_layer() -> PathBuf {
    strata_testkit::shared().join("testdata/real/artifacts/lifecycle__some-windows-layer.tar")
}

/// (name, is dir, size) of every entry of a tar, sorted.
fn entries_of(tar: &[u8]) -> Vec<(String, bool, u64)> {
    let mut v: Vec<_> = collect(TarReader::new(tar))
        .unwrap()
        .iter()
        .map(|i| {
            (
                i.name(),
                i.entry.kind == EntryKind::Dir,
                i.entry.kind.data_len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Issue 10 item 5: the buildpacks/lifecycle Windows base layer (bsdtar) holds
/// `other-dir/other-file` beside `Files/`; hcsshim's base writer takes any relative path,
/// so the import keeps it and the export gives it back.
#[test]
fn base_layer_with_paths_outside_files_imports_and_exports_them() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read(real_windows_layer()).unwrap();
    let layer = tmp.path().join("layer");
    let s = import_layer(&original[..], &LayerChain::new(&layer, &[])).unwrap();
    assert_eq!(s.entries, 13, "{s:?}");
    assert_eq!(
        std::fs::read(layer.join("other-dir/other-file")).unwrap()[..4],
        [0, 0, 0, 0],
        "other-file is kept as a stream file (attributes, then its backup stream)"
    );
    let mut back = Vec::new();
    export_layer(&LayerChain::new(&layer, &[]), &mut back).unwrap();
    assert_eq!(entries_of(&back), entries_of(&original));
    // Files first, then the other paths; the export imports again to the same bytes.
    let names: Vec<String> = listing(&back).into_iter().map(|e| e.name).collect();
    assert_eq!(names.first().map(String::as_str), Some("Files"));
    assert_eq!(
        names[names.len() - 2..],
        ["other-dir".to_owned(), "other-dir\\other-file".to_owned()]
    );
    let again = tmp.path().join("again");
    import_layer(&back[..], &LayerChain::new(&again, &[])).unwrap();
    let mut back2 = Vec::new();
    export_layer(&LayerChain::new(&again, &[]), &mut back2).unwrap();
    assert!(back == back2, "export → import → export changed the bytes");
}

#[test]
fn paths_outside_files_are_refused_in_diff_layers_and_may_not_take_the_folders_own_names() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read(real_windows_layer()).unwrap();
    let base = tmp.path().join("base");
    import_layer(&original[..], &LayerChain::new(&base, &[])).unwrap();
    let diff = tmp.path().join("diff");
    let e = import_layer(&original[..], &LayerChain::new(&diff, &[base]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`other-dir`") && e.contains("only a base layer may hold other paths"),
        "{e}"
    );
    assert!(!diff.exists());

    for own in ["layerchain.json", "tombstones.txt", "BCD.bak"] {
        let mut tar = TarWriter::new(Vec::new());
        write_tar_from_backup_stream(
            &mut tar,
            &mut Cursor::new(data_stream(b"x")),
            &WinPath::parse_in_base_layer(own).unwrap(),
            &times(1, 0x20),
            true,
        )
        .unwrap();
        let tar = tar.finish().unwrap();
        let layer = tmp.path().join(format!("own-{own}"));
        let e = import_layer(&tar[..], &LayerChain::new(&layer, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the layer folder's own file"), "{own}: {e}");
    }
}

/// Issue 15 item 9: a folder whose data stream claims 1 TiB with 6 bytes present is
/// refused by inspect, as by export and extract.
#[test]
fn a_data_stream_claiming_more_than_the_folder_holds_is_refused_by_inspect_export_and_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("l");
    let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
    w.add(&wp("Files"), &times(0, 0x10)).unwrap();
    w.add(&wp("Files\\big"), &times(1, 0x20)).unwrap();
    let mut stream = Vec::new();
    stream.extend_from_slice(&(StreamId::Data as u32).to_le_bytes());
    stream.extend_from_slice(&0u32.to_le_bytes());
    stream.extend_from_slice(&(1u64 << 40).to_le_bytes());
    stream.extend_from_slice(&0u32.to_le_bytes());
    stream.extend_from_slice(b"hello\n");
    w.write_all(&stream).unwrap();
    w.finish().unwrap();
    let chain = LayerChain::new(&layer, &[]);

    let mut listed = Vec::new();
    let e = inspect_folder(&chain, |e| {
        listed.push(e.name.clone());
        Ok(())
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Files\\big")
            && e.contains(
                "a payload of 1099511627776 bytes at byte 20 runs past its end at byte 26"
            ),
        "{e}"
    );
    assert_eq!(listed, ["Files"], "the lying entry was listed");
    let e = export_layer(&chain, std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected end"), "{e}");
    let e = extract::extract(std::slice::from_ref(&layer), &tmp.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected end"), "{e}");
}
