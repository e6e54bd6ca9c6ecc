//! Backup stream + FILE_BASIC_INFO ⇄ tar entries, byte for byte as go-winio's
//! `backuptar` and hcsshim's `ociwclayer` write them (`../shared/specs/windows-layer.md` §3).
//!
//! Reading (tar → stream): [`file_info_from_entry`] gives an entry's name, size and
//! [`FileBasicInfo`]; [`write_backup_stream_from_tar`] writes its backup stream and consumes
//! the alternate-data-stream entries that follow it. Writing (stream → tar):
//! [`write_tar_from_backup_stream`] scans a seekable stream and writes the main entry and
//! its ADS entries; [`write_tar_hard_link`] and [`write_tar_whiteout`] write the other shapes.
//!
//! ```
//! use std::io::Cursor;
//! use strata_layer::tar::TarWriter;
//! use strata_wclayer::backuptar::write_tar_from_backup_stream;
//! use strata_wclayer::{FileAttributes, FileBasicInfo, FileTime, WinPath};
//! let info = FileBasicInfo { attributes: FileAttributes(0x10), last_write_time: FileTime(132223104000000000), ..Default::default() };
//! let mut tar = TarWriter::new(Vec::new());
//! // A directory with an empty backup stream.
//! write_tar_from_backup_stream(&mut tar, &mut Cursor::new(Vec::new()), &WinPath::parse("Files").unwrap(), &info, true).unwrap();
//! let bytes = strata_layer::LayerWriter::finish(tar).unwrap();
//! assert_eq!(&bytes[..18], b"PaxHeaders.0/Files");
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};

use base64::Engine;
use strata_layer::tar::{format_pax_time, parse_pax_time, HeaderStyle, TarWriter};
use strata_layer::{
    Entry, EntryKind, LayerPath, LayerReader, LayerWriter, PaxRecord, SparseExtent, Timestamp,
};

use crate::backup::{self, BackupStreamWriter, StreamHeader, StreamId, StreamScan};
use crate::ea::{self, ExtendedAttribute};
use crate::reparse::{self, ReparsePoint};
use crate::sd::SecurityDescriptor;
use crate::{Error, FileAttributes, FileBasicInfo, FileTime, WinPath};

/// PAX key: the file attributes, a decimal `u32`.
pub const PAX_FILEATTR: &str = "MSWINDOWS.fileattr";
/// PAX key: the security descriptor, self-relative binary in base64.
pub const PAX_RAWSD: &str = "MSWINDOWS.rawsd";
/// PAX key: the security descriptor as SDDL (older tars).
pub const PAX_SDDL: &str = "MSWINDOWS.sd";
/// PAX key: present on a symlink that is a junction (mount point).
pub const PAX_MOUNTPOINT: &str = "MSWINDOWS.mountpoint";
/// PAX key prefix of an extended attribute (the EA's name follows; base64 value).
pub const PAX_XATTR_PREFIX: &str = "MSWINDOWS.xattr.";
/// PAX key: the creation time (a PAX time).
pub const PAX_CREATIONTIME: &str = "LIBARCHIVE.creationtime";

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const MODE_DIR: u32 = 0o40000;
const MODE_FILE: u32 = 0o100000;
const MODE_SYMLINK: u32 = 0o120000;

/// The last value of PAX record `key` on `e`.
pub fn pax<'a>(e: &'a Entry, key: &str) -> Option<&'a [u8]> {
    e.pax
        .iter()
        .rev()
        .find(|r| r.key == key)
        .map(|r| &r.value[..])
}

pub(crate) fn record(key: &str, value: impl Into<Vec<u8>>) -> PaxRecord {
    PaxRecord {
        key: key.to_owned(),
        value: value.into(),
    }
}

pub(crate) fn tar_path(name: &str) -> Result<LayerPath, Error> {
    LayerPath::from_tar_name(name.as_bytes()).map_err(|e| Error::name(name, e.to_string()))
}

/// Sets an entry's times from FILETIMEs, as Go's `BasicInfoHeader` does.
pub(crate) fn set_times(e: &mut Entry, info: &FileBasicInfo) {
    e.meta.mtime = info.last_write_time.to_timestamp();
    e.meta.atime = Some(info.last_access_time.to_timestamp());
    e.meta.ctime = Some(info.change_time.to_timestamp());
}

pub(crate) fn basic_records(e: &mut Entry, info: &FileBasicInfo) {
    e.pax
        .push(record(PAX_FILEATTR, info.attributes.0.to_string()));
    e.pax.push(record(
        PAX_CREATIONTIME,
        format_pax_time(info.creation_time.to_timestamp()),
    ));
}

/// §3.5 FileInfoFromHeader: the size (data bytes of a regular file, else 0) and basic
/// info of a tar entry. Absent `atime`/`ctime` give the 1754 FILETIME Go gives; an
/// absent creation time is the mtime; `MSWINDOWS.fileattr` wins over the entry type.
pub fn file_info_from_entry(e: &Entry) -> Result<(u64, FileBasicInfo), Error> {
    let name = e.path.to_string();
    let size = match e.kind {
        EntryKind::File { size, .. } => size,
        _ => 0,
    };
    let ft = |t: Option<Timestamp>| t.map_or(FileTime::GO_ZERO_TIME, FileTime::from_timestamp);
    let last_write_time = FileTime::from_timestamp(e.meta.mtime);
    let creation_time = match pax(e, PAX_CREATIONTIME) {
        Some(v) => FileTime::from_timestamp(
            parse_pax_time(PAX_CREATIONTIME, v).map_err(|r| Error::entry(&name, r))?,
        ),
        None => last_write_time,
    };
    let attributes = match pax(e, PAX_FILEATTR) {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| {
                Error::entry(
                    &name,
                    format!("{PAX_FILEATTR}={} is not a decimal u32", v.escape_ascii()),
                )
            })?,
        None if e.kind == EntryKind::Dir => FileAttributes::DIRECTORY,
        None => 0,
    };
    Ok((
        size,
        FileBasicInfo {
            creation_time,
            last_access_time: ft(e.meta.atime),
            last_write_time,
            change_time: ft(e.meta.ctime),
            attributes: FileAttributes(attributes),
        },
    ))
}

/// The security descriptor of a tar entry: `MSWINDOWS.rawsd` (base64), else the legacy
/// SDDL `MSWINDOWS.sd` built into binary.
pub fn security_descriptor_of(e: &Entry) -> Result<Option<Vec<u8>>, Error> {
    let name = e.path.to_string();
    if let Some(v) = pax(e, PAX_RAWSD) {
        return B64
            .decode(v)
            .map(Some)
            .map_err(|err| Error::entry(&name, format!("{PAX_RAWSD} is not base64: {err}")));
    }
    if let Some(v) = pax(e, PAX_SDDL) {
        let sddl = std::str::from_utf8(v)
            .map_err(|_| Error::entry(&name, format!("{PAX_SDDL} is not UTF-8")))?;
        return Ok(Some(SecurityDescriptor::from_sddl(sddl)?.to_bytes()));
    }
    Ok(None)
}

/// The EAs of a tar entry (`MSWINDOWS.xattr.*`), sorted by name (Go's order is random).
pub fn extended_attributes_of(e: &Entry) -> Result<Vec<ExtendedAttribute>, Error> {
    let mut eas: Vec<ExtendedAttribute> = Vec::new();
    for r in &e.pax {
        if let Some(n) = r.key.strip_prefix(PAX_XATTR_PREFIX) {
            let value = B64.decode(&r.value).map_err(|err| {
                Error::entry(
                    e.path.to_string(),
                    format!("{} is not base64: {err}", r.key),
                )
            })?;
            eas.retain(|x| x.name != n.as_bytes());
            eas.push(ExtendedAttribute {
                name: n.as_bytes().to_vec(),
                value,
                flags: 0,
            });
        }
    }
    eas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(eas)
}

/// Copies the current entry's data from `reader` into `out` as `size` dense bytes
/// (the holes of a sparse tar entry become zeros). `buf` grows as needed, up to
/// [`COPY_BUF`]: a small file costs no large buffer.
pub(crate) fn copy_dense<R: LayerReader + ?Sized, W: Write>(
    reader: &mut R,
    e: &Entry,
    out: &mut W,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    let io_err = |err: io::Error| Error::io(format!("writing the data of `{}`", e.path), err);
    let EntryKind::File { size, sparse } = &e.kind else {
        return Ok(());
    };
    let want = e.kind.data_len().clamp(1, COPY_BUF as u64) as usize;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let extents = sparse.clone().unwrap_or_else(|| {
        vec![strata_layer::SparseExtent {
            offset: 0,
            len: *size,
        }]
    });
    let mut pos = 0u64;
    for ext in extents {
        zeros(out, ext.offset - pos).map_err(io_err)?;
        let mut left = ext.len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = reader.read_data(&mut buf[..want])?;
            if n == 0 {
                return Err(Error::entry(e.path.to_string(), "the data ends early"));
            }
            out.write_all(&buf[..n]).map_err(io_err)?;
            left -= n as u64;
        }
        pos = ext.offset + ext.len;
    }
    zeros(out, size - pos).map_err(io_err)
}

/// The largest read of file data at once.
const COPY_BUF: usize = 256 * 1024;

pub(crate) fn zeros<W: Write + ?Sized>(out: &mut W, mut n: u64) -> io::Result<()> {
    const Z: [u8; 8192] = [0; 8192];
    while n > 0 {
        let k = n.min(Z.len() as u64) as usize;
        out.write_all(&Z[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// §3.6 WriteBackupStreamFromTarFile: writes the backup stream of `e` (SECURITY, EA,
/// REPARSE, DATA), then the ADS entries that follow it in `reader` (type `0`, named
/// `<name>:<stream>`, a trailing `:$DATA` accepted); returns the entry after them.
pub fn write_backup_stream_from_tar<R: LayerReader + ?Sized, W: Write>(
    reader: &mut R,
    e: &Entry,
    out: W,
) -> Result<Option<Entry>, Error> {
    let mut w = BackupStreamWriter::new(out);
    write_backup_stream_head(e, &mut w)?;
    let mut buf = Vec::new();
    if matches!(e.kind, EntryKind::File { .. }) {
        copy_dense(reader, e, &mut w, &mut buf)?;
    }
    let prefix = [e.path.as_bytes(), b":"].concat();
    loop {
        let Some(next) = reader.next_entry()? else {
            w.finish()?;
            return Ok(None);
        };
        let is_ads = matches!(next.kind, EntryKind::File { .. })
            && next.path.as_bytes().starts_with(&prefix);
        if !is_ads {
            w.finish()?;
            return Ok(Some(next));
        }
        w.write_header(&alternate_stream_header(&next, prefix.len())?)?;
        copy_dense(reader, &next, &mut w, &mut buf)?;
    }
}

/// The backup stream of `e` up to its data: SECURITY, EA, then REPARSE (a symlink) or
/// the DATA header (a file; its `size` dense bytes follow).
pub(crate) fn write_backup_stream_head<W: Write>(
    e: &Entry,
    w: &mut BackupStreamWriter<W>,
) -> Result<(), Error> {
    let name = e.path.to_string();
    let io_err = |err: io::Error| Error::io(format!("writing the backup stream of `{name}`"), err);
    if let Some(sd) = security_descriptor_of(e)?.filter(|sd| !sd.is_empty()) {
        w.write_header(&StreamHeader::new(StreamId::SecurityData, sd.len() as u64))?;
        w.write_all(&sd).map_err(io_err)?;
    }
    let eas = extended_attributes_of(e)?;
    if !eas.is_empty() {
        let chain = ea::encode(&eas)?;
        w.write_header(&StreamHeader::new(StreamId::EaData, chain.len() as u64))?;
        w.write_all(&chain).map_err(io_err)?;
    }
    match &e.kind {
        EntryKind::Symlink { target } => {
            let target = std::str::from_utf8(target)
                .map_err(|_| Error::entry(&name, "the link target is not UTF-8"))?;
            let rp = reparse::encode(&ReparsePoint {
                target: target.replace('/', "\\"),
                mount_point: pax(e, PAX_MOUNTPOINT).is_some(),
            })?;
            w.write_header(&StreamHeader::new(StreamId::ReparseData, rp.len() as u64))?;
            w.write_all(&rp).map_err(io_err)?;
        }
        EntryKind::File { size, .. } => {
            w.write_header(&StreamHeader::new(StreamId::Data, *size))?;
        }
        _ => {}
    }
    Ok(())
}

/// The header of the alternate data stream entry `ads`, whose path is its main entry's
/// path (`prefix_len` bytes with the `:`) and `:<stream>` (a trailing `:$DATA` accepted).
pub(crate) fn alternate_stream_header(
    ads: &Entry,
    prefix_len: usize,
) -> Result<StreamHeader, Error> {
    let suffix = std::str::from_utf8(&ads.path.as_bytes()[prefix_len - 1..])
        .map_err(|_| Error::entry(ads.path.to_string(), "the stream name is not UTF-8"))?;
    let stream = suffix.strip_suffix(":$DATA").unwrap_or(suffix);
    check_stream_name(stream).map_err(|r| Error::entry(ads.path.to_string(), r))?;
    Ok(StreamHeader::alternate(
        &format!("{stream}:$DATA"),
        ads.kind.data_len(),
    ))
}

/// An alternate stream's name as a tar name suffix (`:Zone.Identifier`): a `:` and a
/// name NTFS can hold.
pub fn check_stream_name(stream: &str) -> Result<(), String> {
    let Some(n) = stream.strip_prefix(':') else {
        return Err(format!(
            "`{stream}` is not an alternate data stream name (no leading `:`)"
        ));
    };
    crate::check_component(n).map_err(|r| format!("alternate data stream `{stream}`: {r}"))
}

/// Copies `len` bytes at `offset` of `stream` (relative to `base`) into the tar.
fn copy_range<S: Read + Seek, W: Write>(
    tar: &mut TarWriter<W>,
    stream: &mut S,
    base: u64,
    range: StreamRange,
    buf: &mut [u8],
    name: &WinPath,
) -> Result<(), Error> {
    let mut r = RangeReader::new(base, vec![range]);
    loop {
        let n = r.read(stream, buf, name)?;
        if n == 0 {
            return Ok(());
        }
        tar.write_data(&buf[..n])?;
    }
}

/// A run of bytes of a backup stream: `offset` from the stream's start, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRange {
    /// Where the run starts, in bytes from the start of the backup stream.
    pub offset: u64,
    /// How many bytes it holds.
    pub len: u64,
}

/// Reads runs of a backup stream in order, as one entry's data.
#[derive(Debug)]
pub(crate) struct RangeReader {
    /// Where the backup stream starts in the seekable source.
    base: u64,
    ranges: std::vec::IntoIter<StreamRange>,
    current: Option<StreamRange>,
    /// Whether the source is positioned at `current.offset` already.
    positioned: bool,
}

impl RangeReader {
    pub(crate) fn new(base: u64, ranges: Vec<StreamRange>) -> Self {
        let mut ranges = ranges.into_iter();
        RangeReader {
            base,
            current: ranges.next(),
            ranges,
            positioned: false,
        }
    }

    /// Reads the next bytes of the runs into `buf` from `stream`; 0 at their end.
    pub(crate) fn read<S: Read + Seek>(
        &mut self,
        stream: &mut S,
        buf: &mut [u8],
        name: &WinPath,
    ) -> Result<usize, Error> {
        let rd = |err: io::Error| Error::io(format!("reading the backup stream of `{name}`"), err);
        loop {
            let Some(cur) = self.current.as_mut() else {
                return Ok(0);
            };
            if cur.len == 0 {
                self.current = self.ranges.next();
                self.positioned = false;
                continue;
            }
            if buf.is_empty() {
                return Ok(0);
            }
            if !self.positioned {
                stream
                    .seek(SeekFrom::Start(self.base + cur.offset))
                    .map_err(rd)?;
                self.positioned = true;
            }
            let want = cur.len.min(buf.len() as u64) as usize;
            let n = stream.read(&mut buf[..want]).map_err(rd)?;
            if n == 0 {
                return Err(Error::BadStream {
                    name: name.to_string(),
                    offset: cur.offset,
                    reason: "unexpected end of the stream".into(),
                });
            }
            cur.offset += n as u64;
            cur.len -= n as u64;
            return Ok(n);
        }
    }
}

/// What [`write_tar_from_backup_stream`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenEntry {
    /// The main entry's data size.
    pub size: u64,
    /// Alternate data streams written as their own entries.
    pub alternates: usize,
    /// Alternate streams dropped as go-winio drops them (on directories, before the data stream).
    pub dropped_alternates: usize,
}

/// The tar entries of one backup stream (§3.4), each with the runs of the stream that
/// are its data: what [`write_tar_from_backup_stream`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntries {
    /// The main entry, in go-winio's header style. A sparse file is a
    /// [`EntryKind::File`] with extents: its holes are zeros in the tar.
    pub main: Entry,
    /// Where the main entry's data lies in the stream (one run per extent).
    pub main_data: Vec<StreamRange>,
    /// One entry per alternate data stream after the data stream, with its run.
    pub alternates: Vec<(Entry, StreamRange)>,
    /// Alternate streams go-winio drops (on directories, before the data stream).
    pub dropped_alternates: usize,
}

/// Scans a backup stream (from the current position of `stream`) into its tar entries
/// (§3.4), as [`write_tar_from_backup_stream`] writes them. `with_security: false`
/// leaves the SD out (the legacy reader's BackupRead without security).
pub fn backup_stream_entries<S: Read + Seek>(
    stream: &mut S,
    name: &WinPath,
    info: &FileBasicInfo,
    with_security: bool,
) -> Result<StreamEntries, Error> {
    let scan: StreamScan = backup::scan(io::BufReader::new(&mut *stream), name.as_str())?;
    let tar_name = name.to_slash();
    let is_dir = info.attributes.is_dir();
    let mut mode = if is_dir { MODE_DIR } else { 0 };
    let mut e = Entry::new(tar_path(&tar_name)?, EntryKind::Dir);
    set_times(&mut e, info);
    basic_records(&mut e, info);
    let mut size = 0;
    if let Some(d) = &scan.data {
        mode |= MODE_FILE;
        size = if d.sparse && d.size == 0 {
            d.logical_size
        } else {
            d.size
        };
    }
    if let (Some(sd), true) = (&scan.security, with_security) {
        e.pax.push(record(PAX_RAWSD, B64.encode(sd)));
    }
    if let Some(chain) = &scan.ea {
        let mut eas = ea::decode(chain)?;
        eas.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = eas.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::entry(
                &tar_name,
                format!("two EAs named `{}`", w[0].name.escape_ascii()),
            ));
        }
        for x in eas {
            let n = String::from_utf8(x.name)
                .ok()
                .filter(|n| !n.contains('='))
                .ok_or_else(|| {
                    Error::entry(
                        &tar_name,
                        "an EA name that is not UTF-8 or holds `=` cannot be a PAX key",
                    )
                })?;
            e.pax.push(record(
                &format!("{PAX_XATTR_PREFIX}{n}"),
                B64.encode(&x.value),
            ));
        }
    }
    let mut main_data = Vec::new();
    e.kind = if let Some(rp) = &scan.reparse {
        let point = reparse::decode(rp)?;
        if point.target.is_empty() || point.target.contains('\0') {
            return Err(Error::entry(
                &tar_name,
                "a symlink target that is empty or holds NUL cannot be a tar link name",
            ));
        }
        mode |= MODE_SYMLINK;
        if point.mount_point {
            e.pax.push(record(PAX_MOUNTPOINT, "1"));
        }
        if size != 0 {
            return Err(Error::entry(
                &tar_name,
                "a reparse point with file data cannot be a tar symlink",
            ));
        }
        EntryKind::Symlink {
            target: point.target.into_bytes(),
        }
    } else if is_dir {
        EntryKind::Dir
    } else {
        let mut sparse = None;
        if let Some(d) = &scan.data {
            if d.sparse && d.size == 0 && size > 0 {
                let mut extents = Vec::with_capacity(d.blocks.len());
                for &(offset, payload, len) in &d.blocks {
                    extents.push(SparseExtent { offset, len });
                    main_data.push(StreamRange {
                        offset: payload,
                        len,
                    });
                }
                sparse = Some(extents);
            } else {
                main_data.push(StreamRange {
                    offset: d.payload_offset,
                    len: d.size,
                });
            }
        }
        EntryKind::File { size, sparse }
    };
    e.header = HeaderStyle::GoPax { mode };
    // Go writes the alternate streams after a file's data stream, and only there.
    let with_alternates = scan.data.is_some() && matches!(e.kind, EntryKind::File { .. });
    let mut alternates = Vec::new();
    let mut dropped_alternates = scan.alternates.len();
    for alt in &scan.alternates[scan.alternates_before_data..] {
        let sname = alt.name.strip_suffix(":$DATA").unwrap_or(&alt.name);
        check_stream_name(sname).map_err(|r| Error::entry(&tar_name, r))?;
        if with_alternates {
            let mut a = Entry::new(
                tar_path(&format!("{tar_name}{sname}"))?,
                EntryKind::File {
                    size: alt.size,
                    sparse: None,
                },
            );
            set_times(&mut a, info);
            a.header = HeaderStyle::GoPax { mode };
            let range = StreamRange {
                offset: alt.payload_offset,
                len: alt.size,
            };
            alternates.push((a, range));
        }
    }
    if with_alternates {
        dropped_alternates = scan.alternates_before_data;
    }
    Ok(StreamEntries {
        main: e,
        main_data,
        alternates,
        dropped_alternates,
    })
}

/// §3.4 WriteTarFileFromBackupStream, two-pass (the source can seek): the main entry,
/// its data (sparse blocks expanded) and one entry per ADS after the data stream
/// ([`backup_stream_entries`]). `with_security: false` leaves the SD out (the legacy
/// reader's BackupRead without security). The stream starts at the current position
/// of `stream`.
pub fn write_tar_from_backup_stream<S: Read + Seek, W: Write>(
    tar: &mut TarWriter<W>,
    stream: &mut S,
    name: &WinPath,
    info: &FileBasicInfo,
    with_security: bool,
) -> Result<WrittenEntry, Error> {
    let base = stream
        .stream_position()
        .map_err(|e| Error::io(format!("seeking the backup stream of `{name}`"), e))?;
    let entries = backup_stream_entries(stream, name, info, with_security)?;
    tar.add(&entries.main)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut r = RangeReader::new(base, entries.main_data);
    loop {
        let n = r.read(stream, &mut buf, name)?;
        if n == 0 {
            break;
        }
        tar.write_data(&buf[..n])?;
    }
    for (a, range) in &entries.alternates {
        tar.add(a)?;
        copy_range(tar, stream, base, *range, &mut buf, name)?;
    }
    Ok(WrittenEntry {
        size: match entries.main.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        },
        alternates: entries.alternates.len(),
        dropped_alternates: entries.dropped_alternates,
    })
}

/// A tar entry's data as a `Write`.
pub(crate) struct TarData<'a, W: Write>(pub &'a mut TarWriter<W>);

impl<W: Write> Write for TarData<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_data(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A hard-link entry as ociwclayer writes it: type `1`, mode `0644`, the link's basic
/// info records, no SD.
pub fn hard_link_entry(
    name: &WinPath,
    target: &WinPath,
    info: &FileBasicInfo,
) -> Result<Entry, Error> {
    let mut e = Entry::new(
        tar_path(&name.to_slash())?,
        EntryKind::HardLink {
            target: tar_path(&target.to_slash())?,
        },
    );
    set_times(&mut e, info);
    basic_records(&mut e, info);
    e.header = HeaderStyle::GoPax { mode: 0o644 };
    Ok(e)
}

/// Writes the [`hard_link_entry`] of `name` to `target`.
pub fn write_tar_hard_link<W: Write>(
    tar: &mut TarWriter<W>,
    name: &WinPath,
    target: &WinPath,
    info: &FileBasicInfo,
) -> Result<(), Error> {
    tar.add(&hard_link_entry(name, target, info)?)?;
    Ok(())
}

/// The whiteout of `name`, written with no format: plain ustar `dir/.wh.<base>`, zero
/// metadata.
pub fn whiteout_entry(name: &WinPath) -> Result<Entry, Error> {
    Ok(Entry::new(tar_path(&name.to_slash())?, EntryKind::Whiteout))
}

/// Writes the [`whiteout_entry`] of `name`.
pub fn write_tar_whiteout<W: Write>(tar: &mut TarWriter<W>, name: &WinPath) -> Result<(), Error> {
    tar.add(&whiteout_entry(name)?)?;
    Ok(())
}
