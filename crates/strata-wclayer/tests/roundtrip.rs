//! Round trips over generated layers with thousands of entries mixing every feature:
//! SDs, EAs, ADS, sparse files, junctions, symlinks, hard links within and across
//! layers, deep and long paths, unicode names, tombstones, hives, a UtilityVM with BCD
//! files. tar → folder → tar is byte-identical; folder → tar → folder gives the same tree.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use strata_wclayer::backup::{BackupStreamWriter, StreamHeader, StreamId, SPARSE_ATTRIBUTE};
use strata_wclayer::ea::{self, ExtendedAttribute};
use strata_wclayer::folder::{LayerChain, LayerFolderWriter, TIMES_XATTR};
use strata_wclayer::reparse::{self, ReparsePoint};
use strata_wclayer::sd::{SecurityDescriptor, BUILDKIT_FILE_SDDL, KO_SD_BASE64};
use strata_wclayer::{
    export_layer, import_layer, FileAttributes, FileBasicInfo, FileTime, WinPath,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn wp(s: &str) -> WinPath {
    WinPath::parse(s).unwrap()
}

fn info(r: &mut Rng, attrs: u32) -> FileBasicInfo {
    let t = |r: &mut Rng| FileTime(130_000_000_000_000_000 + r.below(1 << 50) as i64);
    FileBasicInfo {
        creation_time: t(r),
        last_access_time: t(r),
        last_write_time: t(r),
        change_time: t(r),
        attributes: FileAttributes(attrs),
    }
}

/// Times as the legacy reader gives them for objects outside `Files\` (C = A = W).
fn flat(mut i: FileBasicInfo) -> FileBasicInfo {
    i.creation_time = i.last_write_time;
    i.last_access_time = i.last_write_time;
    i
}

fn stream(parts: &[(StreamHeader, Vec<u8>)]) -> Vec<u8> {
    let mut w = BackupStreamWriter::new(Vec::new());
    for (h, p) in parts {
        w.write_header(h).unwrap();
        w.write_all(p).unwrap();
    }
    w.finish().unwrap()
}

/// A canonical file stream (SECURITY, EA, DATA, ADS…), optionally sparse.
fn file_stream(r: &mut Rng, sparse: bool) -> Vec<u8> {
    let mut parts = Vec::new();
    match r.below(3) {
        0 => parts.push((
            StreamHeader::new(StreamId::SecurityData, 52),
            base64::engine::general_purpose::STANDARD
                .decode(KO_SD_BASE64)
                .unwrap(),
        )),
        1 => {
            let sd = SecurityDescriptor::from_sddl(BUILDKIT_FILE_SDDL)
                .unwrap()
                .to_bytes();
            parts.push((
                StreamHeader::new(StreamId::SecurityData, sd.len() as u64),
                sd,
            ));
        }
        _ => {}
    }
    if r.below(4) == 0 {
        let mut eas: Vec<ExtendedAttribute> = (0..1 + r.below(2))
            .map(|i| ExtendedAttribute {
                name: format!("EA{i}").into_bytes(),
                value: vec![r.below(256) as u8; r.below(40) as usize],
                flags: 0,
            })
            .collect();
        eas.sort_by(|a, b| a.name.cmp(&b.name));
        let chain = ea::encode(&eas).unwrap();
        parts.push((
            StreamHeader::new(StreamId::EaData, chain.len() as u64),
            chain,
        ));
    }
    if sparse {
        parts.push((
            StreamHeader {
                attributes: SPARSE_ATTRIBUTE,
                ..StreamHeader::new(StreamId::Data, 0)
            },
            vec![],
        ));
        for (off, d) in [
            (100i64, b"first".to_vec()),
            (70_000, b"second".to_vec()),
            (200_000, vec![]),
        ] {
            parts.push((
                StreamHeader {
                    offset: off,
                    ..StreamHeader::new(StreamId::SparseBlock, d.len() as u64)
                },
                d,
            ));
        }
    } else {
        let data: Vec<u8> = (0..r.below(3000)).map(|_| r.below(256) as u8).collect();
        parts.push((StreamHeader::new(StreamId::Data, data.len() as u64), data));
        for i in 0..if r.below(5) == 0 { 1 + r.below(2) } else { 0 } {
            let d = format!("[ZoneTransfer]\r\nZoneId={i}\r\n").into_bytes();
            parts.push((
                StreamHeader::alternate(&format!(":Zone{i}.Identifier:$DATA"), d.len() as u64),
                d,
            ));
        }
    }
    stream(&parts)
}

fn reparse_stream(target: &str, mount_point: bool) -> Vec<u8> {
    let rp = reparse::encode(&ReparsePoint {
        target: target.into(),
        mount_point,
    })
    .unwrap();
    stream(&[(
        StreamHeader::new(StreamId::ReparseData, rp.len() as u64),
        rp,
    )])
}

fn add(w: &mut LayerFolderWriter, name: &str, i: &FileBasicInfo, s: &[u8]) {
    w.add(&wp(name), i).unwrap();
    w.write_all(s).unwrap();
}

const NAMES: [&str; 6] = ["plain", "café", "日本語", "emoji 🎉", "with space", "x.y.z"];

/// Writes `Files\…` of one layer: `n` entries under a few directory trees, one deep.
fn populate(w: &mut LayerFolderWriter, r: &mut Rng, tag: &str, n: usize, files: &mut Vec<String>) {
    let dir = FileAttributes::DIRECTORY;
    let sd_dir = SecurityDescriptor::from_sddl(strata_wclayer::sd::BUILDKIT_DIR_SDDL)
        .unwrap()
        .to_bytes();
    let dstream = stream(&[(
        StreamHeader::new(StreamId::SecurityData, sd_dir.len() as u64),
        sd_dir,
    )]);
    let mut dirs = Vec::new();
    for d in 0..8 {
        let name = format!("Files\\{tag}{d} {}", NAMES[d % NAMES.len()]);
        add(w, &name, &info(r, dir), &dstream);
        dirs.push(name);
    }
    // Deep and long: 40 levels of 120-byte names (over PATH_MAX).
    let mut deep = format!("Files\\{tag}deep");
    add(w, &deep, &info(r, dir), &[]);
    for level in 0..40 {
        deep = format!("{deep}\\{level:03}{}", "d".repeat(117));
        add(w, &deep, &info(r, dir), &[]);
    }
    dirs.push(deep);
    for k in 0..n {
        let parent = dirs[r.below(dirs.len() as u64) as usize].clone();
        let name = format!("{parent}\\{tag}{k} {}", NAMES[k % NAMES.len()]);
        match r.below(20) {
            0 => add(
                w,
                &name,
                &info(r, 0x420),
                &reparse_stream(r"..\target.txt", false),
            ),
            1 => add(
                w,
                &name,
                &info(r, 0x420),
                &reparse_stream(r"C:\Windows\System32\cmd.exe", false),
            ),
            2 => {
                add(w, &name, &info(r, 0x410), &reparse_stream(r"C:\data", true));
                continue;
            }
            3 if !files.is_empty() => {
                let target = files[r.below(files.len() as u64) as usize].clone();
                w.add_link(&wp(&name), &wp(&target)).unwrap();
            }
            4 => {
                add(w, &name, &info(r, dir), &dstream);
                dirs.push(name);
                continue;
            }
            5 => add(w, &name, &info(r, 0x220), &file_stream(r, true)),
            _ => {
                let attrs = 0x20 | (r.below(4) as u32 & 0x3);
                let i = info(r, attrs);
                add(w, &name, &i, &file_stream(r, false))
            }
        }
        files.push(name);
    }
}

fn uvm_file(w: &mut LayerFolderWriter, r: &mut Rng, name: &str) {
    let i = flat(info(r, 0x20));
    let data: Vec<u8> = (0..r.below(500)).map(|_| r.below(256) as u8).collect();
    add(
        w,
        name,
        &i,
        &stream(&[(StreamHeader::new(StreamId::Data, data.len() as u64), data)]),
    );
}

/// A base layer (with a UtilityVM and its boot store) and a diff layer on it.
fn generate(root: &Path) -> (PathBuf, PathBuf) {
    let mut r = Rng(0x9E3779B97F4A7C15);
    let base = root.join("base");
    let mut files = Vec::new();
    let mut w = LayerFolderWriter::create(&base, &[]).unwrap();
    let d = FileAttributes::DIRECTORY;
    add(&mut w, "Files", &info(&mut r, d), &[]);
    populate(&mut w, &mut r, "b", 1500, &mut files);
    add(&mut w, "UtilityVM", &flat(info(&mut r, d)), &[]);
    for dir in [
        "UtilityVM\\Files",
        "UtilityVM\\Files\\EFI",
        "UtilityVM\\Files\\EFI\\Microsoft",
        "UtilityVM\\Files\\EFI\\Microsoft\\Boot",
        "UtilityVM\\Files\\Windows",
    ] {
        add(&mut w, dir, &flat(info(&mut r, d)), &[]);
    }
    for f in ["BCD", "BCD.LOG", "BCD.LOG1", "BCD.LOG2"] {
        uvm_file(
            &mut w,
            &mut r,
            &format!("UtilityVM\\Files\\EFI\\Microsoft\\Boot\\{f}"),
        );
    }
    for k in 0..50 {
        uvm_file(
            &mut w,
            &mut r,
            &format!("UtilityVM\\Files\\Windows\\f{k}.dll"),
        );
    }
    w.finish().unwrap();

    let diff = root.join("diff");
    let mut w = LayerFolderWriter::create(&diff, std::slice::from_ref(&base)).unwrap();
    let delta = flat(info(&mut r, 0x20));
    add(
        &mut w,
        "Files",
        &FileBasicInfo {
            attributes: FileAttributes(d),
            ..delta
        },
        &[],
    );
    // Tombstones sit in directories the diff lists (as Windows' ExportLayer lists them).
    for k in 0..8 {
        let dname = format!("Files\\b{k} {}", NAMES[k % NAMES.len()]);
        add(&mut w, &dname, &info(&mut r, d), &[]);
        for t in files
            .iter()
            .filter(|t| WinPath::parse(t).unwrap().parent().unwrap().as_str() == dname)
            .step_by(7)
        {
            w.remove(&wp(t)).unwrap();
        }
    }
    let mut mine = Vec::new();
    populate(&mut w, &mut r, "t", 2500, &mut mine);
    // Hard links into the base layer.
    for (k, t) in files
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 101 == 5)
        .take(10)
    {
        if !t.contains("deep") {
            w.add_link(&wp(&format!("Files\\t0 plain\\xlink{k}")), &wp(t))
                .unwrap();
        }
    }
    add(
        &mut w,
        "Hives",
        &FileBasicInfo {
            attributes: FileAttributes(d),
            ..delta
        },
        &[],
    );
    for h in [
        "DefaultUser_Delta",
        "Sam_Delta",
        "Security_Delta",
        "Software_Delta",
        "System_Delta",
    ] {
        let data = format!("regf {h}").into_bytes();
        add(
            &mut w,
            &format!("Hives\\{h}"),
            &delta,
            &stream(&[(StreamHeader::new(StreamId::Data, data.len() as u64), data)]),
        );
    }
    add(&mut w, "UtilityVM", &flat(info(&mut r, d)), &[]);
    add(&mut w, "UtilityVM\\Files", &flat(info(&mut r, d)), &[]);
    uvm_file(&mut w, &mut r, "UtilityVM\\Files\\Windows\\f3.dll");
    uvm_file(&mut w, &mut r, "UtilityVM\\Files\\Windows\\new.dll");
    uvm_file(
        &mut w,
        &mut r,
        "UtilityVM\\Files\\EFI\\Microsoft\\Boot\\BCD",
    );
    w.finish().unwrap();
    (base, diff)
}

/// Every file and directory of a folder: bytes, times xattr, and hard-link groups
/// (walked with descriptors: the deep paths are longer than PATH_MAX).
fn tree(root: &Path) -> BTreeMap<String, (bool, Vec<u8>, Vec<u8>, usize)> {
    use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
    use std::io::Read;
    let mut out = BTreeMap::new();
    let mut groups: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let open = |dir: &std::os::fd::OwnedFd, name: &str, flags: OFlags| {
        rfs::openat(
            dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    };
    let top = rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let mut stack = vec![(String::new(), top)];
    while let Some((rel, dir)) = stack.pop() {
        let d = rfs::Dir::read_from(&dir).unwrap();
        for ent in d {
            let ent = ent.unwrap();
            let name = String::from_utf8(ent.file_name().to_bytes().to_vec()).unwrap();
            if name == "." || name == ".." || (rel.is_empty() && name == "layerchain.json") {
                continue;
            }
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let st = rfs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
            let fd = open(
                &dir,
                &name,
                if is_dir {
                    OFlags::RDONLY | OFlags::DIRECTORY
                } else {
                    OFlags::RDONLY
                },
            );
            let mut x = vec![0u8; 64];
            let n = rfs::fgetxattr(&fd, TIMES_XATTR, &mut x[..]).unwrap_or(0);
            x.truncate(n);
            if is_dir {
                out.insert(key.clone(), (true, Vec::new(), x, 0));
                stack.push((key, fd));
            } else {
                let next = groups.len();
                let g = *groups.entry((st.st_dev, st.st_ino)).or_insert(next);
                let mut bytes = Vec::new();
                std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
                out.insert(
                    key,
                    (false, bytes, x, if st.st_nlink > 1 { g + 1 } else { 0 }),
                );
            }
        }
    }
    out
}

#[test]
fn generated_layers_round_trip_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    // Deep paths exceed PATH_MAX: work relative to a short root.
    let (base, diff) = generate(tmp.path());

    // Base layer: folder → tar → folder → tar.
    let mut tb1 = Vec::new();
    let s = export_layer(&LayerChain::new(&base, &[]), &mut tb1).unwrap();
    assert!(s.entries > 1500 && s.alternate_streams > 0);
    let base2 = tmp.path().join("base2");
    import_layer(&tb1[..], &LayerChain::new(&base2, &[])).unwrap();
    let mut tb2 = Vec::new();
    export_layer(&LayerChain::new(&base2, &[]), &mut tb2).unwrap();
    assert!(
        tb1 == tb2,
        "base layer: tar → folder → tar changed the bytes"
    );

    // Diff layer over the base.
    let parents = vec![base.clone()];
    let mut t1 = Vec::new();
    let s = export_layer(&LayerChain::new(&diff, &parents), &mut t1).unwrap();
    assert!(s.entries > 2500, "{s:?}");
    assert!(s.whiteouts >= 15 && s.hard_links > 0, "{s:?}");
    let d2 = tmp.path().join("d2");
    let imported = import_layer(&t1[..], &LayerChain::new(&d2, &parents)).unwrap();
    assert!(
        imported.tombstones >= 15 && imported.links > 0,
        "{imported:?}"
    );
    let mut t2 = Vec::new();
    export_layer(&LayerChain::new(&d2, &parents), &mut t2).unwrap();
    assert!(t1 == t2, "diff layer: tar → folder → tar changed the bytes");

    // Folder → tar → folder: the imported folder is canonical, and stays identical.
    let d3 = tmp.path().join("d3");
    import_layer(&t2[..], &LayerChain::new(&d3, &parents)).unwrap();
    let (a, b) = (tree(&d2), tree(&d3));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "{k} differs");
    }
    assert!(
        a.keys().any(|k| k.ends_with(".$wcidirs$"))
            && a.contains_key("tombstones.txt")
            && a.contains_key("bcd.bak")
    );
    assert!(a.keys().any(|k| k.contains("日本語")) && a.keys().any(|k| k.len() > 4096));
    // The sparse files came through with their logical size and content.
    let find = |h: &[u8], n: &[u8]| h.windows(n.len()).position(|w| w == n);
    let dense = a
        .values()
        .filter(|v| v.1.len() > 200_000)
        .collect::<Vec<_>>();
    assert!(!dense.is_empty(), "no sparse file came through");
    for v in dense {
        let (f, s) = (
            find(&v.1, b"first").unwrap(),
            find(&v.1, b"second").unwrap(),
        );
        assert_eq!(s - f, 70_000 - 100, "holes not expanded to zeros");
    }
}

#[test]
fn folder_round_trip_keeps_a_canonical_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, _) = generate(tmp.path());
    let mut t = Vec::new();
    export_layer(&LayerChain::new(&base, &[]), &mut t).unwrap();
    let b2 = tmp.path().join("b2");
    import_layer(&t[..], &LayerChain::new(&b2, &[])).unwrap();
    let mut t2 = Vec::new();
    export_layer(&LayerChain::new(&b2, &[]), &mut t2).unwrap();
    let b3 = tmp.path().join("b3");
    import_layer(&t2[..], &LayerChain::new(&b3, &[])).unwrap();
    assert_eq!(tree(&b2), tree(&b3));
}
