//! Layer entries in a line each, and a layer read back in one call.
//!
//! [`EntryExt`] gives [`Entry`] constructors for every kind (`Entry::file("a/b", 3)`,
//! `Entry::dir("a")`, `Entry::whiteout("a/old")`, ...) and setters for the metadata a test
//! cares about (`.mode(0o600).owner(1000, 1000).mtime(1_700_000_000, 0)`). An [`Item`] is
//! an entry with its data; [`tar`] writes items as tar bytes and [`write_items`] into any
//! [`LayerWriter`]; [`collect`] reads every entry of a [`LayerReader`] with its data, [`data`]
//! the rest of the current entry's.

use strata_layer::tar::TarWriter;
use strata_layer::{
    Entry, EntryKind, Error, LayerPath, LayerReader, LayerWriter, Timestamp, Xattr,
};

/// A layer path from a tar-style name; panics on a name the type refuses.
pub fn path(name: &str) -> LayerPath {
    LayerPath::from_tar_name(name.as_bytes())
        .unwrap_or_else(|e| panic!("{name:?} is not a layer path: {e}"))
}

/// Constructors and metadata setters for [`Entry`], for tests. Modes default to what a
/// tar of a plain tree holds: files and hard links `0o644`, directories `0o755`,
/// symlinks `0o777`, the rest 0; owner root, mtime the epoch.
pub trait EntryExt: Sized {
    /// A regular file of `len` bytes (its data comes separately: see [`Item::file`]).
    fn file(path: &str, len: u64) -> Entry;
    fn dir(path: &str) -> Entry;
    fn symlink(path: &str, target: &str) -> Entry;
    /// A second name for `target`.
    fn hardlink(path: &str, target: &str) -> Entry;
    fn whiteout(path: &str) -> Entry;
    fn opaque(path: &str) -> Entry;
    fn fifo(path: &str) -> Entry;
    fn char_device(path: &str, major: u32, minor: u32) -> Entry;
    fn block_device(path: &str, major: u32, minor: u32) -> Entry;
    /// Permission bits (with setuid, setgid, sticky).
    fn mode(self, mode: u32) -> Entry;
    fn owner(self, uid: u64, gid: u64) -> Entry;
    fn mtime(self, secs: i64, nanos: u32) -> Entry;
    /// Adds an extended attribute, keeping them sorted by name.
    fn xattr(self, name: &str, value: &[u8]) -> Entry;
}

fn with_mode(path_name: &str, kind: EntryKind, mode: u32) -> Entry {
    let mut e = Entry::new(path(path_name), kind);
    e.meta.mode = mode;
    e
}

impl EntryExt for Entry {
    fn file(p: &str, len: u64) -> Entry {
        with_mode(
            p,
            EntryKind::File {
                size: len,
                sparse: None,
            },
            0o644,
        )
    }
    fn dir(p: &str) -> Entry {
        with_mode(p, EntryKind::Dir, 0o755)
    }
    fn symlink(p: &str, target: &str) -> Entry {
        let target = target.as_bytes().to_vec();
        with_mode(p, EntryKind::Symlink { target }, 0o777)
    }
    fn hardlink(p: &str, target: &str) -> Entry {
        let target = path(target);
        with_mode(p, EntryKind::HardLink { target }, 0o644)
    }
    fn whiteout(p: &str) -> Entry {
        Entry::new(path(p), EntryKind::Whiteout)
    }
    fn opaque(p: &str) -> Entry {
        Entry::new(path(p), EntryKind::Opaque)
    }
    fn fifo(p: &str) -> Entry {
        with_mode(p, EntryKind::Fifo, 0o644)
    }
    fn char_device(p: &str, major: u32, minor: u32) -> Entry {
        with_mode(p, EntryKind::CharDevice { major, minor }, 0o666)
    }
    fn block_device(p: &str, major: u32, minor: u32) -> Entry {
        with_mode(p, EntryKind::BlockDevice { major, minor }, 0o660)
    }
    fn mode(mut self, mode: u32) -> Entry {
        self.meta.mode = mode;
        self
    }
    fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.meta.uid = uid;
        self.meta.gid = gid;
        self
    }
    fn mtime(mut self, secs: i64, nanos: u32) -> Entry {
        self.meta.mtime = Timestamp::new(secs, nanos);
        self
    }
    fn xattr(mut self, name: &str, value: &[u8]) -> Entry {
        self.meta.xattrs.push(Xattr {
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
        });
        self.meta.xattrs.sort();
        self
    }
}

/// An entry and the data that follows it (empty but for regular files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub entry: Entry,
    pub data: Vec<u8>,
}

impl Item {
    /// An entry without data.
    pub fn of(entry: Entry) -> Item {
        Item {
            entry,
            data: Vec::new(),
        }
    }

    /// A regular file holding `data` (mode `0o644`).
    pub fn file(path: &str, data: impl AsRef<[u8]>) -> Item {
        let data = data.as_ref().to_vec();
        Item {
            entry: Entry::file(path, data.len() as u64),
            data,
        }
    }

    /// A directory (mode `0o755`).
    pub fn dir(path: &str) -> Item {
        Item::of(Entry::dir(path))
    }

    /// The entry's path as text.
    pub fn name(&self) -> String {
        self.entry.path.to_string()
    }
}

impl From<Entry> for Item {
    fn from(entry: Entry) -> Item {
        Item::of(entry)
    }
}

/// Adds every item to `writer` (data after each file) and finishes it.
pub fn write_items<W: LayerWriter>(mut writer: W, items: &[Item]) -> Result<W::Summary, Error> {
    for item in items {
        writer.add(&item.entry)?;
        if !item.data.is_empty() {
            writer.write_data(&item.data)?;
        }
    }
    writer.finish()
}

/// The items as an uncompressed tar, as Strata's own writer writes it.
pub fn tar(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    write_items(TarWriter::new(&mut out), items).expect("write a tar in memory");
    out
}

/// Every entry of `reader`, with its data, in stream order.
pub fn collect<R: LayerReader>(mut reader: R) -> Result<Vec<Item>, Error> {
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let data = data(&mut reader)?;
        out.push(Item { entry, data });
    }
    Ok(out)
}

/// The rest of the current entry's data (for a test that looks at the reader between
/// entries, where [`collect`] would not let it).
pub fn data<R: LayerReader + ?Sized>(reader: &mut R) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    // Small reads on purpose: they cross block and chunk boundaries inside an entry.
    let mut buf = [0u8; 4093];
    loop {
        let n = reader.read_data(&mut buf)?;
        if n == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// The paths of a reader's entries in stream order, whiteouts and opaque markers shown as
/// `-PATH` and `+PATH` (a compact way to assert a layer's shape).
pub fn outline<R: LayerReader>(reader: R) -> Result<Vec<String>, Error> {
    Ok(collect(reader)?
        .iter()
        .map(|i| match i.entry.kind {
            EntryKind::Whiteout => format!("-{}", i.entry.path),
            EntryKind::Opaque => format!("+{}", i.entry.path),
            _ => i.entry.path.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_layer::tar::TarReader;

    #[test]
    fn items_round_trip_through_a_tar() {
        let items = vec![
            Item::dir("a"),
            Item::file("a/f", "data\n"),
            Item::of(Entry::symlink("a/s", "f").owner(1, 2)),
            Item::of(Entry::hardlink("a/h", "a/f")),
            Item::of(
                Entry::dir("a/d")
                    .xattr("user.b", b"2")
                    .xattr("user.a", b"1"),
            ),
            Item::of(Entry::opaque("a/d")),
            Item::of(Entry::whiteout("a/gone")),
            Item::of(Entry::fifo("p").mtime(5, 0)),
        ];
        let got = collect(TarReader::new(&tar(&items)[..])).unwrap();
        assert_eq!(got, items);
        assert_eq!(
            got[4].entry.meta.xattrs[0].name, b"user.a",
            "xattrs are kept sorted"
        );
        assert_eq!(
            outline(TarReader::new(&tar(&items)[..])).unwrap(),
            ["a", "a/f", "a/s", "a/h", "a/d", "+a/d", "-a/gone", "p"]
        );
    }

    #[test]
    fn collect_reports_a_truncated_layer() {
        let bytes = tar(&[Item::file("f", vec![7u8; 4096])]);
        let err = collect(TarReader::new(&bytes[..1024])).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}
