//! The backup-stream reader on arbitrary bytes: reading and scanning never panic, and
//! whenever a stream exports to a tar entry, that tar imports back to a stream, and one
//! more round gives the same tar and stream again (the mapping is stable after one pass).
#![no_main]

use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{LayerReader, LayerWriter};
use strata_wclayer::backup::{self, BackupStreamReader};
use strata_wclayer::backuptar::{write_backup_stream_from_tar, write_tar_from_backup_stream};
use strata_wclayer::{FileAttributes, FileBasicInfo, FileTime, WinPath};

fn to_tar(stream: &[u8], info: &FileBasicInfo) -> Option<Vec<u8>> {
    let mut tar = TarWriter::new(Vec::new());
    let name = WinPath::parse("Files\\f").unwrap();
    write_tar_from_backup_stream(&mut tar, &mut Cursor::new(stream), &name, info, true).ok()?;
    tar.finish().ok()
}

fn to_stream(tar: &[u8]) -> Vec<u8> {
    let mut r = TarReader::new(tar);
    let e = r
        .next_entry()
        .expect("an exported tar reads back")
        .expect("it has an entry");
    let mut out = Vec::new();
    let next =
        write_backup_stream_from_tar(&mut r, &e, &mut out).expect("an exported tar imports back");
    assert!(
        next.is_none(),
        "one object exports to one entry and its streams"
    );
    out
}

fuzz_target!(|data: &[u8]| {
    let mut r = BackupStreamReader::new(data);
    let mut sink = Vec::new();
    while let Ok(Some(_)) = r.next_header() {
        sink.clear();
        if r.by_ref().take(1 << 20).read_to_end(&mut sink).is_err() {
            break;
        }
    }

    let attrs = data
        .first()
        .map_or(0, |&b| if b & 1 == 1 { 0x10 } else { 0x20 });
    let t = FileTime(132223104001234567);
    let info = FileBasicInfo {
        creation_time: t,
        last_access_time: t,
        last_write_time: t,
        change_time: t,
        attributes: FileAttributes(attrs),
    };
    // The harness keeps tars in memory: skip streams whose (sparse) file is huge.
    let small = backup::scan(Cursor::new(data), "fuzz").is_ok_and(|s| {
        let data = s.data.map_or(0, |d| d.logical_size.max(d.size));
        let alts: u64 = s.alternates.iter().map(|a| a.size).sum();
        data.saturating_add(alts) < 1 << 24
    });
    if let Some(tar1) = small.then(|| to_tar(data, &info)).flatten() {
        let s2 = to_stream(&tar1);
        let tar2 = to_tar(&s2, &info).expect("a re-imported stream exports");
        let s3 = to_stream(&tar2);
        assert_eq!(s2, s3, "stream not stable after one round");
        assert_eq!(
            tar2,
            to_tar(&s3, &info).unwrap(),
            "tar not stable after one round"
        );
    }
});
