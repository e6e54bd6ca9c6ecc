use super::header::{self, field, BLOCK};
use super::pax;
use super::{TarReader, TarSink, TarWriter};
use crate::{
    Entry, EntryKind, Error, LayerPath, LayerReader, LayerWriter, Metadata, PaxRecord,
    SparseExtent, Timestamp, Xattr,
};

fn p(s: &[u8]) -> LayerPath {
    LayerPath::from_tar_name(s).unwrap()
}

fn write(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for (e, data) in entries {
        w.add(e).unwrap();
        if !data.is_empty() {
            w.write_data(data).unwrap();
        }
    }
    w.finish().unwrap()
}

fn read_all(tar: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, Error> {
    crate::testing::read_entries(TarReader::new(tar))
}

/// A raw header block with the given name, type and size (ustar, mode 0644).
fn block(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    header::put_octal(&mut b[field::MODE], 0o644);
    header::put_octal(&mut b[field::UID], 0);
    header::put_octal(&mut b[field::GID], 0);
    header::put_octal(&mut b[field::SIZE], size);
    header::put_octal(&mut b[field::MTIME], 0);
    b[field::TYPEFLAG] = typeflag;
    b[field::MAGIC].copy_from_slice(b"ustar\0");
    b[field::VERSION].copy_from_slice(b"00");
    header::set_checksum(&mut b);
    b
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(v.len() + header::padding(data.len() as u64) as usize, 0);
    v
}

fn pax_block(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in records {
        pax::push_record(&mut data, k, v);
    }
    let mut out = block(b"PaxHeaders.0/x", b'x', data.len() as u64).to_vec();
    out.extend(padded(&data));
    out
}

fn file(path: &[u8], data: &[u8]) -> (Entry, Vec<u8>) {
    let mut e = Entry::new(
        p(path),
        EntryKind::File {
            size: data.len() as u64,
            sparse: None,
        },
    );
    e.meta.mode = 0o644;
    (e, data.to_vec())
}

#[test]
fn every_kind_round_trips_through_writer_and_reader() {
    let long = [b'n'; 150];
    let long_path = [&b"dir/"[..], &long].concat();
    let mut rich = file(b"rich", b"content");
    rich.0.meta = Metadata {
        mode: 0o4755,
        uid: 3_000_000,
        gid: 65534,
        uname: b"someone".to_vec(),
        gname: b"grp".to_vec(),
        mtime: Timestamp::new(1_700_000_000, 123_456_789),
        atime: None,
        ctime: None,
        xattrs: vec![
            Xattr {
                name: b"security.capability".to_vec(),
                value: vec![1, 0, 0, 2, 0xff],
            },
            Xattr {
                name: b"user.big".to_vec(),
                value: vec![b'v'; 4000],
            },
        ],
    };
    rich.0.pax.push(PaxRecord {
        key: "MSWINDOWS.fileattr".into(),
        value: b"32".to_vec(),
    });
    let entries = vec![
        (Entry::new(p(b"dir"), EntryKind::Dir), vec![]),
        rich,
        file(&long_path, b"long name"),
        file("caf\u{e9}/\u{1f600}".as_bytes(), b""),
        file(b"raw\xff\xfe", b"x"),
        (
            Entry::new(p(b"hl"), EntryKind::HardLink { target: p(b"rich") }),
            vec![],
        ),
        (
            Entry::new(
                p(b"sl"),
                EntryKind::Symlink {
                    target: b"/etc/os-release".to_vec(),
                },
            ),
            vec![],
        ),
        (
            Entry::new(
                p(b"longlink"),
                EntryKind::Symlink {
                    target: vec![b't'; 300],
                },
            ),
            vec![],
        ),
        (
            Entry::new(p(b"null"), EntryKind::CharDevice { major: 1, minor: 3 }),
            vec![],
        ),
        (
            Entry::new(
                p(b"big"),
                EntryKind::BlockDevice {
                    major: 4095,
                    minor: 1_048_575,
                },
            ),
            vec![],
        ),
        (Entry::new(p(b"fifo"), EntryKind::Fifo), vec![]),
        (Entry::new(p(b"dir/gone"), EntryKind::Whiteout), vec![]),
        (Entry::new(p(b"dir"), EntryKind::Opaque), vec![]),
        (Entry::new(LayerPath::root(), EntryKind::Opaque), vec![]),
        file(b"old", b""),
    ];
    let mut entries = entries;
    entries.last_mut().unwrap().0.meta.mtime = Timestamp::new(-315_619_200, 0);
    let tar = write(&entries);
    let back = read_all(&tar).unwrap();
    assert_eq!(back.len(), entries.len());
    for ((want, wdata), (got, gdata)) in entries.iter().zip(&back) {
        assert_eq!(got.path, want.path);
        assert_eq!(got.kind, want.kind);
        assert_eq!(gdata, wdata);
        if !matches!(want.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            assert_eq!(got.meta, want.meta, "metadata of {}", want.path);
            assert_eq!(got.pax, want.pax);
        }
    }
}

#[test]
fn writer_is_deterministic_and_ustar_when_everything_fits() {
    let entries = vec![file(b"etc/motd", b"hello\n")];
    let a = write(&entries);
    assert_eq!(a, write(&entries));
    // One header, one data block, two zero blocks: no PAX header was needed.
    assert_eq!(a.len(), 4 * BLOCK);
    assert_eq!(&a[field::MODE], b"0000644\0");
    assert_eq!(&a[field::SIZE], b"00000000006\0");
    assert_eq!(&a[field::DEVMAJOR], b"0000000\0");
    assert_eq!(&a[field::MAGIC.start..field::VERSION.end], b"ustar\x0000");
    assert_eq!(a[field::CHKSUM.end - 1], b' ');
}

#[test]
fn writer_names_pax_headers_like_go() {
    let mut e = file(b"dir/sub/file", b"");
    e.0.meta.mtime = Timestamp::new(5, 500_000_000);
    let tar = write(&[e]);
    assert_eq!(
        header::cstr(&tar[field::NAME]),
        b"dir/sub/PaxHeaders.0/file"
    );
    assert_eq!(tar[field::TYPEFLAG], b'x');
    assert_eq!(&tar[BLOCK..BLOCK + 13], b"13 mtime=5.5\n");
}

#[test]
fn pax_size_wins_over_the_header_size() {
    let mut tar = pax_block(&[("size", b"5")]);
    tar.extend(block(b"f", b'0', 0)); // header says 0; PAX says 5
    tar.extend(padded(b"hello"));
    tar.extend([0u8; 1024]);
    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"hello");
}

#[test]
fn pax_records_skip_gnu_long_name_headers_and_apply_to_the_file() {
    let mut tar = pax_block(&[("path", b"from-pax"), ("uid", b"7")]);
    tar.extend(block(b"././@LongLink", b'L', 8));
    tar.extend(padded(b"from-gnu"));
    tar.extend(block(b"short", b'0', 0));
    tar.extend([0u8; 1024]);
    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.path.as_bytes(), b"from-pax");
    assert_eq!(got[0].0.meta.uid, 7);
}

#[test]
fn refuses_bad_checksums_huge_extensions_and_dotdot() {
    let mut bad = block(b"f", b'0', 0);
    bad[0] = b'g';
    assert!(matches!(read_all(&bad), Err(Error::BadHeader { .. })));

    let mut huge = block(b"PaxHeaders/x", b'x', 0);
    header::put_base256(&mut huge[field::SIZE], 8 << 30);
    header::set_checksum(&mut huge);
    let err = read_all(&huge).unwrap_err().to_string();
    assert!(err.contains("limit"), "{err}");

    let mut tar = block(b"../escape", b'0', 0).to_vec();
    tar.extend([0u8; 1024]);
    assert!(matches!(read_all(&tar), Err(Error::BadPath { .. })));

    let mut tar = pax_block(&[("size", b"99999999999999999999999")]);
    tar.extend(block(b"f", b'0', 0));
    assert!(read_all(&tar).unwrap_err().to_string().contains("64 bits"));
}

#[test]
fn refuses_data_on_header_only_types_and_a_header_after_one_zero_block() {
    let mut tar = block(b"d/", b'5', 512).to_vec();
    tar.extend([0u8; 512 + 1024]);
    assert!(read_all(&tar)
        .unwrap_err()
        .to_string()
        .contains("cannot carry data"));

    let mut tar = vec![0u8; 512];
    tar.extend(block(b"smuggled", b'0', 0));
    assert!(read_all(&tar)
        .unwrap_err()
        .to_string()
        .contains("single zero block"));
}

#[test]
fn accepts_archives_without_end_blocks_or_last_padding() {
    let mut tar = block(b"f", b'0', 3).to_vec();
    tar.extend(b"abc"); // no padding, no end-of-archive (umoci 0.4.7 insert)
    let got = read_all(&tar).unwrap();
    assert_eq!(got[0].1, b"abc");

    let mut tar = block(b"f", b'0', 3).to_vec();
    tar.extend(padded(b"abc"));
    tar.extend([0u8; 512]); // one zero block only
    assert_eq!(read_all(&tar).unwrap().len(), 1);
}

#[test]
fn truncated_data_and_headers_are_errors() {
    let mut tar = block(b"f", b'0', 1000).to_vec();
    tar.extend([b'x'; 10]);
    assert!(matches!(read_all(&tar), Err(Error::Truncated { .. })));
    let mut tar = block(b"f", b'0', 0).to_vec();
    tar.extend([b'x'; 100]);
    assert!(matches!(read_all(&tar), Err(Error::Truncated { .. })));
}

#[test]
fn whiteout_names_become_whiteout_and_opaque_entries() {
    let mut tar = Vec::new();
    for name in [
        &b"./etc/.wh.motd"[..],
        b"etc/apt/.wh..wh..opq",
        b".wh..wh.plnk/123.45",
    ] {
        tar.extend(block(name, b'0', 0));
    }
    tar.extend([0u8; 1024]);
    let got = read_all(&tar).unwrap();
    assert_eq!(got.len(), 2, "AUFS bookkeeping is skipped");
    assert_eq!(
        (got[0].0.path.as_bytes(), &got[0].0.kind),
        (&b"etc/motd"[..], &EntryKind::Whiteout)
    );
    assert_eq!(
        (got[1].0.path.as_bytes(), &got[1].0.kind),
        (&b"etc/apt"[..], &EntryKind::Opaque)
    );

    for bad in [
        &b".wh.."[..],
        b"a/.wh...",
        b".wh.",
        b"a/.wh..wh.foo",
        b".wh.x/child",
    ] {
        let mut tar = block(bad, b'0', 0).to_vec();
        tar.extend([0u8; 1024]);
        assert!(read_all(&tar).is_err(), "{}", bad.escape_ascii());
    }
}

#[test]
fn root_entry_must_be_a_directory() {
    let mut tar = block(b"./", b'2', 0).to_vec();
    tar.extend([0u8; 1024]);
    assert!(read_all(&tar)
        .unwrap_err()
        .to_string()
        .contains("root entry"));
}

#[test]
fn gnu_sparse_1_0_map_is_read_from_the_data() {
    let map = padded(b"2\n0\n3\n10\n2\n");
    let mut tar = pax_block(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"sparse"),
        ("GNU.sparse.realsize", b"20"),
    ]);
    let size = map.len() as u64 + 5;
    tar.extend(block(b"GNUSparseFile.0/sparse", b'0', size));
    tar.extend(&map);
    tar.extend(padded(b"abcde"));
    tar.extend([0u8; 1024]);
    let got = read_all(&tar).unwrap();
    assert_eq!(got[0].0.path.as_bytes(), b"sparse");
    assert_eq!(
        got[0].0.kind,
        EntryKind::File {
            size: 20,
            sparse: Some(vec![
                SparseExtent { offset: 0, len: 3 },
                SparseExtent { offset: 10, len: 2 }
            ])
        }
    );
    assert_eq!(got[0].1, b"abcde");
    // Written back, the holes become zeros.
    let plain = write(&got);
    let back = read_all(&plain).unwrap();
    assert_eq!(back[0].1, b"abc\0\0\0\0\0\0\0de\0\0\0\0\0\0\0\0");
}

#[test]
fn gnu_sparse_1_0_map_longer_than_a_short_entry_is_refused() {
    // The map fits in one block, but the entry claims only 10 bytes of data.
    let mut tar = pax_block(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"sparse"),
        ("GNU.sparse.realsize", b"20"),
    ]);
    tar.extend(block(b"GNUSparseFile.0/sparse", b'0', 10));
    tar.extend(padded(b"1\n0\n3\n"));
    tar.extend([0u8; 1024]);
    let err = read_all(&tar).unwrap_err().to_string();
    assert!(
        err.contains("map takes 512 bytes but the entry holds only 10"),
        "{err}"
    );
}

/// A sink that keeps everything, to prove no byte is lost or reordered.
#[derive(Default)]
struct Everything(Vec<u8>);

impl TarSink for Everything {
    fn raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn file_begin(&mut self, _: &Entry) -> Result<(), Error> {
        Ok(())
    }
    fn file_data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn file_end(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn sink_sees_every_byte_including_trailing_data_and_skipped_payloads() {
    let mut tar = write(&[file(b"a", b"0123456789"), file(b"b", &[7u8; 3000])]);
    tar.extend([0xabu8; 4096]);
    let mut r = TarReader::with_sink(&tar[..], Everything::default());
    while r.next_entry().unwrap().is_some() {} // payloads skipped, not read
    let (_, sink) = r.into_parts();
    assert_eq!(sink.0, tar);
}

#[test]
fn skip_data_seeks_past_bodies_and_keeps_offsets() {
    let big = vec![7u8; 5000];
    let tar = write(&[file(b"a", b"hello"), file(b"dir/b", &big), file(b"c", b"")]);
    let mut r = TarReader::new(std::io::Cursor::new(&tar));
    let mut seen = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        let at = r.offset() as usize;
        let len = e.kind.data_len() as usize;
        seen.push((e.path.to_string(), tar[at..at + len].to_vec()));
        r.skip_data().unwrap();
    }
    assert_eq!(
        seen,
        vec![
            ("a".to_string(), b"hello".to_vec()),
            ("dir/b".to_string(), big),
            ("c".to_string(), Vec::new()),
        ]
    );
    assert_eq!(r.offset(), tar.len() as u64);
}

#[test]
fn moby_headers_are_the_bytes_of_docker_save() {
    // The first header of a Docker 20.10 `docker save` (a legacy layer directory).
    let name = b"107e288e399cff84014a9e3d58f22eb55828ee1b33332b3e8566e1de87ad9b61";
    let mut dir = Entry::new(p(name), EntryKind::Dir);
    dir.meta.mode = 0o755;
    dir.meta.mtime = Timestamp::new(0o15303645623, 0);
    dir.meta.uname = b"root".to_vec();
    dir.meta.gname = b"root".to_vec();
    let mut w = TarWriter::new(Vec::new());
    w.add_as(&dir, super::HeaderStyle::Moby).unwrap();
    let tar = w.finish().unwrap();
    let mut want = [0u8; BLOCK];
    for (at, bytes) in [
        (0, &[&name[..], b"/"].concat()[..]),
        (100, b"0040755\0"),
        (108, b"0000000\0"),
        (116, b"0000000\0"),
        (124, b"00000000000\0"),
        (136, b"15303645623\0"),
        (148, b"021642\0 "),
        (156, b"5"),
        (257, b"ustar\x0000"),
        (265, b"root"),
        (297, b"root"),
        (329, b"0000000\0"),
        (337, b"0000000\0"),
    ] {
        want[at..at + bytes.len()].copy_from_slice(bytes);
    }
    assert_eq!(&tar[..BLOCK], &want[..]);
    // A regular file and a symlink carry their type bits too.
    let mut file = Entry::new(
        p(b"a/VERSION"),
        EntryKind::File {
            size: 3,
            sparse: None,
        },
    );
    file.meta.mode = 0o644;
    let link = Entry::new(
        p(b"b/layer.tar"),
        EntryKind::Symlink {
            target: b"../a/layer.tar".to_vec(),
        },
    );
    let mut w = TarWriter::new(Vec::new());
    w.add_as(&file, super::HeaderStyle::Moby).unwrap();
    w.write_data(b"1.0").unwrap();
    w.add_as(&link, super::HeaderStyle::Moby).unwrap();
    let tar = w.finish().unwrap();
    assert_eq!(&tar[100..108], b"0100644\0");
    assert_eq!(&tar[2 * BLOCK + 100..2 * BLOCK + 108], b"0120000\0");
}

#[test]
fn write_data_with_delivers_into_the_output_and_refuses_more_than_expected() {
    let path = LayerPath::from_tar_name(b"f").unwrap();
    let file = Entry::new(
        path,
        EntryKind::File {
            size: 5,
            sparse: None,
        },
    );
    let mut w = TarWriter::new(Vec::new());
    w.add(&file).unwrap();
    let first = w
        .write_data_with(|out, left| {
            assert_eq!(left, 5);
            out.extend_from_slice(b"ab");
            Ok(2)
        })
        .unwrap();
    assert_eq!(first, 2);
    let err = w.write_data_with(|_, left| Ok(left + 1)).unwrap_err();
    assert!(matches!(err, Error::Misuse(_)), "{err}");
    assert!(
        err.to_string().contains("4 data bytes written where 3"),
        "{err}"
    );
}
