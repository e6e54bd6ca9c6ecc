//! The worked test vectors TV1-TV10 of `../shared/specs/windows-layer.md` §7, byte for
//! byte, in both directions.

use std::io::{Cursor, Write};

use base64::Engine;
use sha2::{Digest, Sha256};
use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{LayerReader, LayerWriter};
use strata_testkit::entries::{outline, EntryExt};
use strata_wclayer::backup::{BackupStreamWriter, StreamHeader, StreamId, SPARSE_ATTRIBUTE};
use strata_wclayer::backuptar::{
    file_info_from_entry, write_backup_stream_from_tar, write_tar_from_backup_stream,
    write_tar_hard_link, write_tar_whiteout,
};
use strata_wclayer::folder::{LayerChain, LayerFolderWriter, TOMBSTONES_FILE};
use strata_wclayer::reparse::{self, ReparsePoint};
use strata_wclayer::sd::KO_SD_BASE64;
use strata_wclayer::{
    export_layer, import_layer, FileAttributes, FileBasicInfo, FileTime, WinPath,
};

/// `bytes` are the vector's: `len` bytes with this sha256.
fn assert_vector(bytes: &[u8], len: usize, sha256: &str) {
    assert_eq!(bytes.len(), len);
    assert_eq!(hex::encode(Sha256::digest(bytes)), sha256);
}

fn info(attrs: u32) -> FileBasicInfo {
    FileBasicInfo {
        creation_time: FileTime(132223103990000000),
        last_access_time: FileTime(132223104000000000),
        last_write_time: FileTime(132223104001234567),
        change_time: FileTime(132223104005000000),
        attributes: FileAttributes(attrs),
    }
}

fn wp(s: &str) -> WinPath {
    WinPath::parse(s).unwrap()
}

const ZONE: &[u8] = b"[ZoneTransfer]\r\nZoneId=3\r\n";

fn tv1() -> Vec<u8> {
    let sd = base64::engine::general_purpose::STANDARD
        .decode(KO_SD_BASE64)
        .unwrap();
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader::new(StreamId::SecurityData, 52))
        .unwrap();
    w.write_all(&sd).unwrap();
    w.write_header(&StreamHeader::new(StreamId::Data, 6))
        .unwrap();
    w.write_all(b"hello\n").unwrap();
    w.write_header(&StreamHeader::alternate(":Zone.Identifier:$DATA", 26))
        .unwrap();
    w.write_all(ZONE).unwrap();
    w.finish().unwrap()
}

/// A tar of the one entry `name` (with `info`) whose backup stream is `stream`.
fn tar_of_stream(stream: &[u8], name: &str, info: &FileBasicInfo) -> Vec<u8> {
    let mut tar = TarWriter::new(Vec::new());
    write_tar_from_backup_stream(&mut tar, &mut Cursor::new(stream), &wp(name), info, true)
        .unwrap();
    tar.finish().unwrap()
}

/// The backup stream of the first entry of `tar`.
fn stream_of_tar(tar: &[u8]) -> Vec<u8> {
    let mut r = TarReader::new(tar);
    let e = r.next_entry().unwrap().unwrap();
    let mut stream = Vec::new();
    write_backup_stream_from_tar(&mut r, &e, &mut stream).unwrap();
    stream
}

fn tv3() -> Vec<u8> {
    tar_of_stream(&tv1(), "Files\\hello.txt", &info(32))
}

#[test]
fn tv1_backup_stream_bytes() {
    let s = tv1();
    assert_vector(
        &s,
        188,
        "488bb1f0d8639c45bb5cad2dfcde7afb5bafddeca5e46eb89460e256248c6816",
    );
    assert_eq!(
        &s[0x40..0x50],
        &[0x20, 0, 0, 0, 0x21, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn tv3_tar_from_stream_and_back() {
    let tar = tv3();
    assert_vector(
        &tar,
        5120,
        "806beeea158f96bb047c4cbdd326241a905c5143422fcf0abe7b3171abcdc0f4",
    );
    assert_eq!(&tar[..28], b"Files/PaxHeaders.0/hello.txt");
    assert_eq!(&tar[124..136], b"00000000341\0");
    assert_eq!(&tar[148..156], b"013125\0 ");
    let records = String::from_utf8(tar[512..512 + 225].to_vec()).unwrap();
    assert_eq!(
        records,
        "38 LIBARCHIVE.creationtime=1577836799\n25 MSWINDOWS.fileattr=32\n\
         92 MSWINDOWS.rawsd=AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA==\n\
         20 atime=1577836800\n22 ctime=1577836800.5\n28 mtime=1577836800.1234567\n"
    );
    assert_eq!(&tar[1024 + 100..1024 + 108], b"0100000\0");
    assert_eq!(&tar[1024 + 136..1024 + 148], b"13602760400\0");
    assert_eq!(&tar[1024 + 148..1024 + 156], b"012127\0 ");
    assert_eq!(
        &tar[2048..2048 + 44],
        b"Files/PaxHeaders.0/hello.txt:Zone.Identifier"
    );
    assert_eq!(&tar[3072 + 148..3072 + 156], b"015135\0 ");

    // Back: the header gives the FILETIMEs, the stream is TV1 again.
    let mut r = TarReader::new(&tar[..]);
    let e = r.next_entry().unwrap().unwrap();
    let (size, got) = file_info_from_entry(&e).unwrap();
    assert_eq!((size, got), (6, info(32)));
    let mut stream = Vec::new();
    let next = write_backup_stream_from_tar(&mut r, &e, &mut stream).unwrap();
    assert!(next.is_none());
    assert_eq!(stream, tv1());
}

#[test]
fn tv2_transport_folder_file() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("l");
    let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
    w.add(&wp("Files"), &info(16)).unwrap();
    w.add(&wp("Files\\hello.txt"), &info(32)).unwrap();
    w.write_all(&tv1()).unwrap();
    w.finish().unwrap();
    let f = std::fs::read(layer.join("Files/hello.txt")).unwrap();
    assert_vector(
        &f,
        192,
        "2086169faf8e7971096fea3722f4b5a20a80607d51bcdae406d3c9a0850e9207",
    );
    // And the folder exports TV3's entry again (after the Files directory).
    let mut tar = Vec::new();
    export_layer(&LayerChain::new(&layer, &[]), &mut tar).unwrap();
    assert_eq!(&tar[1536..1536 + 5120 - 1024], &tv3()[..5120 - 1024]);
}

fn tv4() -> Vec<u8> {
    let mut tar = TarWriter::new(Vec::new());
    write_tar_from_backup_stream(
        &mut tar,
        &mut Cursor::new(Vec::new()),
        &wp("Files"),
        &info(16),
        true,
    )
    .unwrap();
    write_tar_whiteout(&mut tar, &wp("Files\\old.txt")).unwrap();
    write_tar_hard_link(
        &mut tar,
        &wp("Files\\link.txt"),
        &wp("Files\\hello.txt"),
        &info(32),
    )
    .unwrap();
    tar.finish().unwrap()
}

#[test]
fn tv4_directory_whiteout_hard_link() {
    let tar = tv4();
    assert_vector(
        &tar,
        4608,
        "3678a0daf78b92b04e7fdaf5808ce205a8bee79e23eb9ef9f73a48e6ae9679db",
    );
    assert_eq!(&tar[..18], b"PaxHeaders.0/Files");
    assert_eq!(&tar[1024 + 100..1024 + 108], b"0040000\0");
    assert_eq!(tar[1024 + 156], b'5');
    assert_eq!(&tar[1536..1536 + 17], b"Files/.wh.old.txt");
    assert_eq!(&tar[1536 + 148..1536 + 156], b"012231\0 ");
    assert_eq!(&tar[3072 + 100..3072 + 108], b"0000644\0");
    assert_eq!(tar[3072 + 156], b'1');
    assert_eq!(&tar[3072 + 157..3072 + 157 + 15], b"Files/hello.txt");
    // Back: the whiteout is a tombstone, the link a link.
    let mut r = TarReader::new(&tar[..]);
    let dir = r.next_entry().unwrap().unwrap();
    assert_eq!(file_info_from_entry(&dir).unwrap(), (0, info(16)));
    let wh = r.next_entry().unwrap().unwrap();
    assert_eq!(wh.kind, strata_layer::EntryKind::Whiteout);
    assert_eq!(wh.path.as_bytes(), b"Files/old.txt");
    let link = r.next_entry().unwrap().unwrap();
    assert!(
        matches!(link.kind, strata_layer::EntryKind::HardLink { ref target } if target.as_bytes() == b"Files/hello.txt")
    );
}

#[test]
fn tv5_junction() {
    let t = FileTime(132223104000000000);
    let i = FileBasicInfo {
        creation_time: t,
        last_access_time: t,
        last_write_time: t,
        change_time: t,
        attributes: FileAttributes(1040),
    };
    let rp = reparse::encode(&ReparsePoint {
        target: r"C:\data".into(),
        mount_point: true,
    })
    .unwrap();
    assert_eq!(rp.len(), 56);
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader::new(StreamId::ReparseData, 56))
        .unwrap();
    w.write_all(&rp).unwrap();
    let stream = w.finish().unwrap();
    let tar = tar_of_stream(&stream, "Files\\data", &i);
    assert_vector(
        &tar,
        2560,
        "413e2a11cb3a6ba0abc6e38fcc9046f6802b2f1a7580117c77a3fbfcb49ae986",
    );
    let records = std::str::from_utf8(&tar[512..1024])
        .unwrap()
        .trim_end_matches('\0');
    assert_eq!(records, "38 LIBARCHIVE.creationtime=1577836800\n27 MSWINDOWS.fileattr=1040\n26 MSWINDOWS.mountpoint=1\n20 atime=1577836800\n20 ctime=1577836800\n");
    assert_eq!(&tar[1024 + 100..1024 + 108], b"0160000\0");
    // Back to the same stream.
    let mut r = TarReader::new(&tar[..]);
    let e = r.next_entry().unwrap().unwrap();
    assert_eq!(file_info_from_entry(&e).unwrap(), (0, i));
    let mut back = Vec::new();
    write_backup_stream_from_tar(&mut r, &e, &mut back).unwrap();
    assert_eq!(back, stream);
}

#[test]
fn tv6_relative_symlink_through_tar() {
    let rp = reparse::encode(&ReparsePoint {
        target: r"..\target.txt".into(),
        mount_point: false,
    })
    .unwrap();
    assert_eq!(rp.len(), 76);
    assert_eq!(
        &rp[..20],
        &[0x0c, 0, 0, 0xa0, 0x44, 0, 0, 0, 0, 0, 0x1a, 0, 0x1c, 0, 0x1a, 0, 1, 0, 0, 0]
    );
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader::new(StreamId::ReparseData, 76))
        .unwrap();
    w.write_all(&rp).unwrap();
    let stream = w.finish().unwrap();
    let tar = tar_of_stream(&stream, "Files\\l", &info(0x420));
    // The link name keeps its backslashes; mode 0120000, type 2.
    assert_eq!(&tar[1024 + 157..1024 + 157 + 13], br"..\target.txt");
    assert_eq!(&tar[1024 + 100..1024 + 108], b"0120000\0");
    assert_eq!(stream_of_tar(&tar), stream);
}

#[test]
fn tv7_ea_records_both_ways() {
    let chain = strata_wclayer::ea::encode(&[strata_wclayer::ea::ExtendedAttribute {
        name: b"TEST".to_vec(),
        value: b"hi".to_vec(),
        flags: 0,
    }])
    .unwrap();
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader::new(StreamId::EaData, chain.len() as u64))
        .unwrap();
    w.write_all(&chain).unwrap();
    w.write_header(&StreamHeader::new(StreamId::Data, 0))
        .unwrap();
    let stream = w.finish().unwrap();
    let tar = tar_of_stream(&stream, "Files\\e", &info(32));
    let recs = String::from_utf8_lossy(&tar[512..1024]).into_owned();
    assert!(recs.contains("29 MSWINDOWS.xattr.TEST=aGk=\n"), "{recs}");
    assert_eq!(stream_of_tar(&tar), stream);
}

#[test]
fn tv8_sparse_file_becomes_dense_tar_data() {
    let mut w = BackupStreamWriter::new(Vec::new());
    w.write_header(&StreamHeader {
        attributes: SPARSE_ATTRIBUTE,
        ..StreamHeader::new(StreamId::Data, 0)
    })
    .unwrap();
    for (off, d) in [(0i64, &b"abc"[..]), (4096, b"xyz"), (8192, b"")] {
        w.write_header(&StreamHeader {
            offset: off,
            ..StreamHeader::new(StreamId::SparseBlock, d.len() as u64)
        })
        .unwrap();
        w.write_all(d).unwrap();
    }
    let stream = w.finish().unwrap();
    assert_eq!(stream.len(), 110);
    let tar = tar_of_stream(&stream, "Files\\s", &info(0x220));
    assert_eq!(&tar[1024 + 124..1024 + 136], b"00000020000\0");
    let data = &tar[1536..1536 + 8192];
    let mut want = vec![0u8; 8192];
    want[..3].copy_from_slice(b"abc");
    want[4096..4099].copy_from_slice(b"xyz");
    assert_eq!(data, &want[..]);
}

#[test]
fn tv9_time_records() {
    // FILETIME 0 → year 2185 in the tar; `-1.5` and a missing atime on the way back.
    let mut tar = TarWriter::new(Vec::new());
    let zero = FileBasicInfo {
        attributes: FileAttributes(16),
        ..Default::default()
    };
    write_tar_from_backup_stream(
        &mut tar,
        &mut Cursor::new(Vec::new()),
        &wp("Files"),
        &zero,
        true,
    )
    .unwrap();
    let tar = tar.finish().unwrap();
    let recs = String::from_utf8_lossy(&tar[512..1024]).into_owned();
    assert!(recs.contains("atime=6802270473.709551616\n"), "{recs}");
    assert!(recs.contains("mtime=6802270473.709551616\n"), "{recs}");
    let mut r = TarReader::new(&tar[..]);
    let (_, back) = file_info_from_entry(&r.next_entry().unwrap().unwrap()).unwrap();
    assert_eq!(back, zero);

    let mut e = strata_layer::Entry::file("Files/x", 0).mode(0);
    e.meta.mtime = strata_layer::Timestamp::new(-2, 500_000_000); // PAX -1.5
    let (_, i) = file_info_from_entry(&e).unwrap();
    assert_eq!(i.last_write_time, FileTime(116444735985000000));
    assert_eq!(i.creation_time, FileTime(116444735985000000));
    assert_eq!(i.last_access_time, FileTime(48491090211286549));
    assert_eq!(i.change_time, FileTime::GO_ZERO_TIME);
}

#[test]
fn tv10_tombstones_file_and_whiteout_order() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let mut w = LayerFolderWriter::create(&base, &[]).unwrap();
    w.add(&wp("Files"), &info(16)).unwrap();
    w.finish().unwrap();
    let layer = tmp.path().join("diff");
    let mut w = LayerFolderWriter::create(&layer, std::slice::from_ref(&base)).unwrap();
    w.add(&wp("Files"), &info(16)).unwrap();
    w.remove(&wp("Files\\old.txt")).unwrap();
    w.add(&wp("Files\\dir"), &info(16)).unwrap();
    w.remove(&wp("Files\\dir\\gone")).unwrap();
    w.finish().unwrap();
    let t = std::fs::read(layer.join(TOMBSTONES_FILE)).unwrap();
    let want = "EF BB BF 56 65 72 73 69 6F 6E 20 31 2E 30 0A 5C 6F 6C 64 2E 74 78 74 0A 5C 64 69 72 5C 67 6F 6E 65 0A";
    assert_eq!(t, hex::decode(want.replace(' ', "")).unwrap());

    let chain = LayerChain::new(&layer, std::slice::from_ref(&base));
    let mut tar = Vec::new();
    export_layer(&chain, &mut tar).unwrap();
    let names = outline(TarReader::new(&tar[..])).unwrap();
    assert_eq!(
        names,
        ["Files", "-Files/old.txt", "Files/dir", "-Files/dir/gone"]
    );
    // And the tar imports back into the same tombstones, exporting the same bytes.
    let again = tmp.path().join("again");
    import_layer(
        &tar[..],
        &LayerChain::new(&again, std::slice::from_ref(&base)),
    )
    .unwrap();
    assert_eq!(std::fs::read(again.join(TOMBSTONES_FILE)).unwrap(), t);
    let mut tar2 = Vec::new();
    export_layer(&LayerChain::new(&again, &[base]), &mut tar2).unwrap();
    assert_eq!(tar, tar2);
}
