//! The entry model: what one item of a layer is, independent of how it is encoded.
//!
//! A layer is a sequence of [`Entry`] values. An entry is a [`LayerPath`], an
//! [`EntryKind`] (which carries what only that kind has: a file's size, a link's target,
//! a device's numbers) and [`Metadata`]. Whiteouts and opaque-directory markers are kinds
//! of their own, so a writer never has to recognise `.wh.` names: the tar reader decodes
//! them and the tar writer encodes them.
//!
//! Readers and writers move entries: see [`LayerReader`], [`LayerWriter`] and [`copy`].

use crate::path::LayerPath;
use crate::tar::HeaderStyle;
use crate::Error;

/// A point in time with nanoseconds, seconds since the Unix epoch (may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
    pub secs: i64,
    /// Always below 1_000_000_000.
    pub nanos: u32,
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z: the mtime of whiteouts and of entries without one.
    pub const EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// `secs` seconds and `nanos` nanoseconds after the epoch (`nanos` below 10⁹).
    pub fn new(secs: i64, nanos: u32) -> Self {
        debug_assert!(nanos < 1_000_000_000);
        Timestamp { secs, nanos }
    }

    /// The UTC calendar date and time of the seconds, proleptic Gregorian, valid for any
    /// `i64`: `(year, month, day, hour, minute, second)`.
    ///
    /// ```
    /// use strata_layer::Timestamp;
    /// assert_eq!(Timestamp::new(1_700_000_000, 0).utc_civil(), (2023, 11, 14, 22, 13, 20));
    /// assert_eq!(Timestamp::new(-1, 0).utc_civil(), (1969, 12, 31, 23, 59, 59));
    /// ```
    pub fn utc_civil(&self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400) as u32;
        // Days-from-civil inverse (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// One extended attribute: name and value are raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xattr {
    /// The full name with its namespace (`user.foo`, `security.capability`).
    pub name: Vec<u8>,
    /// The value, byte for byte.
    pub value: Vec<u8>,
}

/// A PAX record the entry model does not interpret (vendor keys, `MSWINDOWS.*`, `comment`).
/// Kept in stream order so that later layers of Strata (Windows layers) can read them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PaxRecord {
    /// The record's keyword (`MSWINDOWS.fileattr`).
    pub key: String,
    /// The record's value, byte for byte.
    pub value: Vec<u8>,
}

/// A run of data inside a sparse file; everything between extents is a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SparseExtent {
    /// Where the run starts in the file.
    pub offset: u64,
    /// How many data bytes it holds.
    pub len: u64,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file of `size` bytes. For a sparse file `sparse` lists where the data
    /// lies; the reader then delivers only the bytes of the extents, in order.
    File {
        /// The file's length, holes included.
        size: u64,
        /// The data runs of a sparse file, in order; `None` for a dense one.
        sparse: Option<Vec<SparseExtent>>,
    },
    /// A directory (its entries come as entries of their own).
    Dir,
    /// The target is stored verbatim, never resolved: absolute targets are normal.
    Symlink {
        /// The link's content, byte for byte.
        target: Vec<u8>,
    },
    /// A second name for an entry earlier in this layer (or a lower one).
    HardLink {
        /// The path of the entry this name links to.
        target: LayerPath,
    },
    /// A character device node.
    CharDevice {
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// The path is deleted from the layers below (a `.wh.NAME` entry in a tar).
    Whiteout,
    /// The directory at the path hides everything the layers below hold in it
    /// (a `.wh..wh..opq` entry in a tar).
    Opaque,
}

impl EntryKind {
    /// The number of data bytes the reader delivers for this entry.
    pub fn data_len(&self) -> u64 {
        match self {
            EntryKind::File {
                sparse: Some(extents),
                ..
            } => extents.iter().map(|e| e.len).sum(),
            EntryKind::File { size, .. } => *size,
            _ => 0,
        }
    }

    /// A one-letter type, as `ls -l` shows it.
    pub fn letter(&self) -> char {
        match self {
            EntryKind::File { .. } => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink { .. } => 'l',
            EntryKind::HardLink { .. } => 'h',
            EntryKind::CharDevice { .. } => 'c',
            EntryKind::BlockDevice { .. } => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Whiteout => 'D',
            EntryKind::Opaque => 'O',
        }
    }
}

/// Owner, permissions, times and extended attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Permission bits plus setuid, setgid and sticky (`0o7777`); never type bits.
    pub mode: u32,
    /// The owning user's numeric id.
    pub uid: u64,
    /// The owning group's numeric id.
    pub gid: u64,
    /// Owner names as recorded in a tar; informative only, never used to map owners.
    pub uname: Vec<u8>,
    /// The group name as recorded in a tar; informative only, like `uname`.
    pub gname: Vec<u8>,
    /// When the content last changed.
    pub mtime: Timestamp,
    /// When the content was last read, where the source records it.
    pub atime: Option<Timestamp>,
    /// When the inode last changed, where the source records it.
    pub ctime: Option<Timestamp>,
    /// Sorted by name.
    pub xattrs: Vec<Xattr>,
}

/// One item of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Where the entry lies in the layer.
    pub path: LayerPath,
    /// What it is, with what only that kind carries.
    pub kind: EntryKind,
    /// Owner, mode, times, xattrs (all zero for whiteouts and opaque markers).
    pub meta: Metadata,
    /// PAX records not mapped into the fields above, in stream order.
    pub pax: Vec<PaxRecord>,
    /// How a [`TarWriter`](crate::tar::TarWriter) encodes this entry's headers.
    /// [`HeaderStyle::Strata`] unless the reader knows the encoding the entry had: a
    /// Windows layer folder gives go-winio's, with the raw mode field Windows derived,
    /// so that copying it into a tar gives the original bytes back.
    pub header: HeaderStyle,
}

impl Entry {
    /// An entry with default metadata (mode 0, root owner, epoch mtime, no xattrs) and
    /// the default header style.
    pub fn new(path: LayerPath, kind: EntryKind) -> Self {
        Entry {
            path,
            kind,
            meta: Metadata::default(),
            pax: Vec::new(),
            header: HeaderStyle::Strata,
        }
    }
}

/// A pull-based source of entries: a tar stream, a directory, a Windows layer folder.
///
/// Lifecycle: call [`next_entry`](LayerReader::next_entry) until it returns `None`. While
/// an entry is current, [`read_data`](LayerReader::read_data) returns its data (for a
/// regular file, [`EntryKind::data_len`] bytes, then 0). Data not read is skipped by the
/// next call to `next_entry`. Once `next_entry` has returned `None` or an error, the
/// reader is finished.
pub trait LayerReader {
    /// The next entry, or `None` at the end of the layer.
    fn next_entry(&mut self) -> Result<Option<Entry>, Error>;
    /// Reads data of the current entry into `buf`; 0 means its data is exhausted (or
    /// `buf` is empty).
    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
}

impl<R: LayerReader + ?Sized> LayerReader for &mut R {
    fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        (**self).next_entry()
    }
    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        (**self).read_data(buf)
    }
}

/// A push-based sink of entries: a tar stream, a directory, a Windows layer folder.
///
/// Lifecycle: for each entry call [`add`](LayerWriter::add); for a regular file follow it
/// with [`write_data`](LayerWriter::write_data) calls that together deliver exactly
/// [`EntryKind::data_len`] bytes. Hard links ([`EntryKind::HardLink`]), deletions
/// ([`EntryKind::Whiteout`]) and opaque directories ([`EntryKind::Opaque`]) are entries
/// too, so `add` plays the parts of hcsshim's `Add`, `AddLink` and `Remove`. Finally
/// [`finish`](LayerWriter::finish) completes the output (end-of-archive blocks, deferred
/// directory times); a writer dropped without `finish` leaves its output incomplete.
///
/// ```
/// use strata_layer::tar::{TarReader, TarWriter};
/// use strata_layer::{Entry, EntryKind, LayerPath, LayerReader, LayerWriter};
/// let path = |p: &str| LayerPath::from_tar_name(p.as_bytes()).unwrap();
/// let mut w = TarWriter::new(Vec::new());
/// w.add(&Entry::new(path("etc"), EntryKind::Dir)).unwrap();
/// w.add(&Entry::new(path("etc/motd"), EntryKind::File { size: 3, sparse: None })).unwrap();
/// w.write_data(b"hi").unwrap();
/// w.write_data(b"\n").unwrap();
/// w.add(&Entry::new(path("etc/old"), EntryKind::Whiteout)).unwrap(); // a deletion
/// let tar = w.finish().unwrap();
///
/// // Reading it back: entries in order, each one's data while it is current.
/// let mut r = TarReader::new(&tar[..]);
/// let mut seen = Vec::new();
/// while let Some(e) = r.next_entry().unwrap() {
///     let mut data = vec![0; e.kind.data_len() as usize];
///     let n = r.read_data(&mut data).unwrap();
///     seen.push((e.path.to_string(), e.kind.letter(), data[..n].to_vec()));
/// }
/// assert_eq!(seen, [
///     ("etc".to_string(), 'd', vec![]),
///     ("etc/motd".to_string(), '-', b"hi\n".to_vec()),
///     ("etc/old".to_string(), 'D', vec![]),
/// ]);
/// ```
pub trait LayerWriter {
    /// What `finish` reports (sizes, digests, warnings).
    type Summary;
    /// Starts the next entry. An error names the entry and why it was refused; what
    /// was written before it stays as it was.
    fn add(&mut self, entry: &Entry) -> Result<(), Error>;
    /// Delivers the next bytes of the current regular file's data (more than its
    /// [`EntryKind::data_len`] in all is an error).
    fn write_data(&mut self, data: &[u8]) -> Result<(), Error>;
    /// Completes the output after the last entry, checking the last file's data is
    /// complete, and returns the summary.
    fn finish(self) -> Result<Self::Summary, Error>;
}

/// Moves every entry of `reader` into `writer`, data included, and finishes the writer.
///
/// ```
/// use strata_layer::{copy, tar::TarReader, tar::TarWriter};
/// // An empty tar (two zero blocks) copied into a new tar stays an empty tar.
/// let input = vec![0u8; 1024];
/// let mut out = Vec::new();
/// let reader = TarReader::new(&input[..]);
/// copy(reader, TarWriter::new(&mut out)).unwrap();
/// assert_eq!(out, input);
/// ```
pub fn copy<R: LayerReader, W: LayerWriter>(
    mut reader: R,
    mut writer: W,
) -> Result<W::Summary, Error> {
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(entry) = reader.next_entry()? {
        writer.add(&entry)?;
        if entry.kind.data_len() > 0 {
            loop {
                let n = reader.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                writer.write_data(&buf[..n])?;
            }
        }
    }
    writer.finish()
}
