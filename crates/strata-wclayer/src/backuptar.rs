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
use strata_layer::{Entry, EntryKind, LayerPath, LayerReader, LayerWriter, PaxRecord, Timestamp};

use crate::backup::{self, BackupStreamWriter, StreamHeader, StreamId, StreamScan};
use crate::ea::{self, ExtendedAttribute};
use crate::reparse::{self, ReparsePoint};
use crate::sd::SecurityDescriptor;
use crate::{Error, FileAttributes, FileBasicInfo, FileTime, WinPath};

pub const PAX_FILEATTR: &str = "MSWINDOWS.fileattr";
pub const PAX_RAWSD: &str = "MSWINDOWS.rawsd";
pub const PAX_SDDL: &str = "MSWINDOWS.sd";
pub const PAX_MOUNTPOINT: &str = "MSWINDOWS.mountpoint";
pub const PAX_XATTR_PREFIX: &str = "MSWINDOWS.xattr.";
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
    offset: u64,
    len: u64,
    buf: &mut [u8],
    name: &WinPath,
) -> Result<(), Error> {
    let rd = |err: io::Error| Error::io(format!("reading the backup stream of `{name}`"), err);
    stream.seek(SeekFrom::Start(base + offset)).map_err(rd)?;
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = stream.read(&mut buf[..want]).map_err(rd)?;
        if n == 0 {
            return Err(Error::BadStream {
                name: name.to_string(),
                offset: offset + len - left,
                reason: "unexpected end of the stream".into(),
            });
        }
        tar.write_data(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
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

/// §3.4 WriteTarFileFromBackupStream, two-pass (the source can seek): the main entry,
/// its data (sparse blocks expanded) and one entry per ADS after the data stream.
/// `with_security: false` leaves the SD out (the legacy reader's BackupRead without
/// security). The stream starts at the current position of `stream`.
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
        size = 0;
        EntryKind::Dir
    } else {
        EntryKind::File { size, sparse: None }
    };
    for alt in &scan.alternates[scan.alternates_before_data..] {
        let sname = alt.name.strip_suffix(":$DATA").unwrap_or(&alt.name);
        check_stream_name(sname).map_err(|r| Error::entry(&tar_name, r))?;
    }
    tar.add_as(&e, HeaderStyle::GoPax { mode })?;
    let mut written = WrittenEntry {
        size: if matches!(e.kind, EntryKind::File { .. }) {
            size
        } else {
            0
        },
        alternates: 0,
        dropped_alternates: scan.alternates.len(),
    };
    let Some(d) = scan.data.as_ref().filter(|_| !is_dir) else {
        return Ok(written);
    };
    if !matches!(e.kind, EntryKind::File { .. }) {
        return Ok(written);
    }
    let mut buf = vec![0u8; 256 * 1024];
    if d.sparse && d.size == 0 && size > 0 {
        let mut pos = 0;
        for &(off, payload, len) in &d.blocks {
            tar_zeros(tar, off - pos)?;
            copy_range(tar, stream, base, payload, len, &mut buf, name)?;
            pos = off + len;
        }
        tar_zeros(tar, size - pos)?;
    } else {
        copy_range(tar, stream, base, d.payload_offset, d.size, &mut buf, name)?;
    }
    for alt in &scan.alternates[scan.alternates_before_data..] {
        let sname = alt.name.strip_suffix(":$DATA").unwrap_or(&alt.name);
        let mut a = Entry::new(
            tar_path(&format!("{tar_name}{sname}"))?,
            EntryKind::File {
                size: alt.size,
                sparse: None,
            },
        );
        set_times(&mut a, info);
        tar.add_as(&a, HeaderStyle::GoPax { mode })?;
        copy_range(
            tar,
            stream,
            base,
            alt.payload_offset,
            alt.size,
            &mut buf,
            name,
        )?;
        written.alternates += 1;
    }
    written.dropped_alternates = scan.alternates_before_data;
    Ok(written)
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

fn tar_zeros<W: Write>(tar: &mut TarWriter<W>, n: u64) -> Result<(), Error> {
    zeros(&mut TarData(tar), n).map_err(|e| Error::io("writing the tar stream", e))
}

/// A hard-link entry as ociwclayer writes it: type `1`, mode `0644`, the link's basic
/// info records, no SD.
pub fn write_tar_hard_link<W: Write>(
    tar: &mut TarWriter<W>,
    name: &WinPath,
    target: &WinPath,
    info: &FileBasicInfo,
) -> Result<(), Error> {
    let mut e = Entry::new(
        tar_path(&name.to_slash())?,
        EntryKind::HardLink {
            target: tar_path(&target.to_slash())?,
        },
    );
    set_times(&mut e, info);
    basic_records(&mut e, info);
    tar.add_as(&e, HeaderStyle::GoPax { mode: 0o644 })?;
    Ok(())
}

/// A whiteout `dir/.wh.<base>` written with no format: plain ustar, zero metadata.
pub fn write_tar_whiteout<W: Write>(tar: &mut TarWriter<W>, name: &WinPath) -> Result<(), Error> {
    let e = Entry::new(tar_path(&name.to_slash())?, EntryKind::Whiteout);
    tar.add(&e)?;
    Ok(())
}
