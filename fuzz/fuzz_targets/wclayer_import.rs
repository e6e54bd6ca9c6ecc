//! `strata_wclayer::import_layer` on arbitrary bytes (a layer tar, plain or compressed),
//! inside the jail of `strata_fuzz`: it never panics and never writes outside its
//! directory (the jail checks after every input); whenever an import succeeds, the
//! layer exports, the export imports again, and from then on export → import → export
//! gives the same bytes (one round is allowed to canonicalize: a type-`5` entry whose
//! `MSWINDOWS.fileattr` says "file" exports as go-winio's "file without a data stream",
//! which every import, Go's included, turns into a file with an empty data stream).
//! Inputs of odd length import as a diff layer over a small parent (with a UtilityVM),
//! even ones as a base layer.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use strata_wclayer::backup::{BackupStreamWriter, StreamHeader, StreamId};
use strata_wclayer::folder::{LayerChain, LayerFolderWriter};
use strata_wclayer::{export_layer, import_layer, FileAttributes, FileBasicInfo, WinPath};

fn parent(dir: &std::path::Path) {
    let mut w = LayerFolderWriter::create(dir, &[]).unwrap();
    let d = FileBasicInfo {
        attributes: FileAttributes(0x10),
        ..Default::default()
    };
    let f = FileBasicInfo {
        attributes: FileAttributes(0x20),
        ..Default::default()
    };
    let mut data = BackupStreamWriter::new(Vec::new());
    data.write_header(&StreamHeader::new(StreamId::Data, 2))
        .unwrap();
    data.write_all(b"hi").unwrap();
    let data = data.finish().unwrap();
    for (name, info, stream) in [
        ("Files", d, &[][..]),
        ("Files\\a.txt", f, &data[..]),
        ("UtilityVM", d, &[]),
        ("UtilityVM\\Files", d, &[]),
        ("UtilityVM\\Files\\boot.txt", f, &data[..]),
    ] {
        w.add(&WinPath::parse(name).unwrap(), &info).unwrap();
        w.write_all(stream).unwrap();
    }
    w.finish().unwrap();
}

/// The largest layer (sum of its files' apparent sizes) the round trip exports.
const ROUND_TRIP_LIMIT: u64 = 64 << 20;

/// The sum of the apparent sizes of the files under `dir`, symlinks not followed.
fn apparent_size(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    strata_fuzz::run_jailed(move |cell| {
        let parents = if data.len() % 2 == 1 {
            let p = cell.root.join("parent");
            parent(&p);
            vec![p]
        } else {
            Vec::new()
        };
        let chain = LayerChain::new(&cell.root.join("layer"), &parents);
        // The round trip holds its exports in memory: a layer whose files are large
        // (a sparse file of a few GiB from a few bytes of input) is imported, not
        // round-tripped.
        if import_layer(&data[..], &chain).is_ok()
            && apparent_size(&cell.root.join("layer")) <= ROUND_TRIP_LIMIT
        {
            let mut tar1 = Vec::new();
            export_layer(&chain, &mut tar1).expect("an imported layer exports");
            let again = LayerChain::new(&cell.root.join("again"), &parents);
            import_layer(&tar1[..], &again).expect("an exported layer imports");
            let mut tar2 = Vec::new();
            export_layer(&again, &mut tar2).expect("a re-imported layer exports");
            let third = LayerChain::new(&cell.root.join("third"), &parents);
            import_layer(&tar2[..], &third).expect("a re-exported layer imports");
            let mut tar3 = Vec::new();
            export_layer(&third, &mut tar3).expect("a re-imported layer exports");
            assert!(tar2 == tar3, "export → import → export changed the bytes");
        }
    });
});
