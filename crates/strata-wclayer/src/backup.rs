//! The Win32 backup stream (BackupRead/BackupWrite, MS-BKUP): a file or directory as a
//! sequence of streams, each a 20-byte header, a UTF-16LE name and `size` payload bytes,
//! back to back (`../shared/specs/windows-layer.md` §1).
//!
//! [`BackupStreamReader`] pulls one [`StreamHeader`] at a time and reads its payload
//! (unread payload is skipped by the next [`next_header`](BackupStreamReader::next_header)).
//! [`BackupStreamWriter`] pushes headers and payloads and checks each payload is complete.
//!
//! ```
//! use std::io::{Read, Write};
//! use strata_wclayer::backup::{BackupStreamReader, BackupStreamWriter, StreamHeader, StreamId};
//! let mut w = BackupStreamWriter::new(Vec::new());
//! w.write_header(&StreamHeader::new(StreamId::Data, 3)).unwrap();
//! w.write_all(b"abc").unwrap();
//! let stream = w.finish().unwrap();
//! assert_eq!(stream.len(), 20 + 3);
//! let mut r = BackupStreamReader::new(&stream[..]);
//! let h = r.next_header().unwrap().unwrap();
//! assert_eq!((h.id, h.size), (StreamId::Data, 3));
//! let mut data = Vec::new();
//! r.read_to_end(&mut data).unwrap();
//! assert_eq!(data, b"abc");
//! assert!(r.next_header().unwrap().is_none());
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::Error;

/// The kind of one stream (WIN32_STREAM_ID.dwStreamId).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StreamId {
    /// The unnamed `$DATA` stream: file contents.
    Data = 1,
    /// FILE_FULL_EA_INFORMATION chain.
    EaData = 2,
    /// Self-relative security descriptor.
    SecurityData = 3,
    /// One named stream; the name is `:<stream>:$DATA`.
    AlternateData = 4,
    /// Hard-link information (BACKUP_LINK; not written by Windows' BackupRead).
    Link = 5,
    /// Property data (BACKUP_PROPERTY_DATA).
    PropertyData = 6,
    /// The NTFS object identifiers (BACKUP_OBJECT_ID).
    ObjectId = 7,
    /// REPARSE_DATA_BUFFER.
    ReparseData = 8,
    /// One allocated range of a sparse file (payload starts with its i64 offset).
    SparseBlock = 9,
    /// Transactional NTFS data (BACKUP_TXFS_DATA).
    TxfsData = 10,
    /// Extents of a ghosted file (BACKUP_GHOSTED_FILE_EXTENTS).
    GhostedFileExtents = 11,
}

impl StreamId {
    /// The kind with the numeric id `v`, `None` for an id Windows does not define.
    pub fn from_u32(v: u32) -> Option<Self> {
        use StreamId::*;
        Some(match v {
            1 => Data,
            2 => EaData,
            3 => SecurityData,
            4 => AlternateData,
            5 => Link,
            6 => PropertyData,
            7 => ObjectId,
            8 => ReparseData,
            9 => SparseBlock,
            10 => TxfsData,
            11 => GhostedFileExtents,
            _ => return None,
        })
    }
}

/// Stream attribute: sparse blocks follow this `BACKUP_DATA` stream.
pub const SPARSE_ATTRIBUTE: u32 = 0x8;
/// Bytes of the fixed part of a stream header.
pub const HEADER_LEN: u64 = 20;
/// Longest stream name accepted, in bytes (a UTF-16 name of 32 K units).
pub const MAX_NAME_BYTES: u32 = 65_536;

/// One stream header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// What the stream holds.
    pub id: StreamId,
    /// The stream's attributes (`STREAM_SPARSE_ATTRIBUTE` and friends).
    pub attributes: u32,
    /// Payload bytes; for a sparse block, *without* its 8-byte offset.
    pub size: u64,
    /// Decoded from UTF-16LE, up to the first NUL; empty when there is none.
    pub name: String,
    /// For [`StreamId::SparseBlock`]: where the block's data lies in the file.
    pub offset: i64,
}

impl StreamHeader {
    /// An unnamed stream with attributes 0 (what the tar mapping writes).
    pub fn new(id: StreamId, size: u64) -> Self {
        StreamHeader {
            id,
            attributes: 0,
            size,
            name: String::new(),
            offset: 0,
        }
    }

    /// A `BACKUP_ALTERNATE_DATA` stream named `name` (`:Zone.Identifier:$DATA`).
    pub fn alternate(name: &str, size: u64) -> Self {
        StreamHeader {
            name: name.to_owned(),
            ..StreamHeader::new(StreamId::AlternateData, size)
        }
    }

    /// The bytes this header occupies in a stream (header, name, sparse offset).
    pub fn encoded_len(&self) -> u64 {
        let sparse = if self.id == StreamId::SparseBlock {
            8
        } else {
            0
        };
        HEADER_LEN + 2 * self.name.encode_utf16().count() as u64 + sparse
    }
}

/// Pulls streams out of a backup stream; see the [module documentation](self).
pub struct BackupStreamReader<R: Read> {
    input: R,
    /// Payload bytes of the current stream not yet read.
    left: u64,
    /// Bytes consumed so far (for error offsets).
    offset: u64,
    /// Whose stream this is, for errors.
    label: String,
}

impl<R: Read> BackupStreamReader<R> {
    /// A reader of the backup stream `input`, from its first header.
    pub fn new(input: R) -> Self {
        Self::labelled(input, "")
    }

    /// A reader whose errors name `label` (the file the stream belongs to).
    pub fn labelled(input: R, label: impl Into<String>) -> Self {
        BackupStreamReader {
            input,
            left: 0,
            offset: 0,
            label: label.into(),
        }
    }

    /// Bytes of the stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input, positioned after what was consumed.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn bad(&self, at: u64, reason: impl Into<String>) -> Error {
        Error::BadStream {
            name: self.label.clone(),
            offset: at,
            reason: reason.into(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean EOF before the first byte.
    fn fill(&mut self, buf: &mut [u8], what: &str, eof_ok: bool) -> Result<bool, Error> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) if got == 0 && eof_ok => return Ok(false),
                Ok(0) => {
                    return Err(self.bad(
                        self.offset + got as u64,
                        format!("unexpected end of the stream inside {what}"),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the backup stream of `{}`", self.label),
                        e,
                    ))
                }
            }
        }
        self.offset += got as u64;
        Ok(true)
    }

    /// Skips what is left of the current payload.
    fn skip(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; 8192];
        while self.left > 0 {
            let want = self.left.min(buf.len() as u64) as usize;
            if !self.fill(&mut buf[..want], "a stream's payload", false)? {
                unreachable!("fill never returns false when eof is not ok");
            }
            self.left -= want as u64;
        }
        Ok(())
    }

    /// The next stream's header (skipping unread payload first), or `None` at the end.
    pub fn next_header(&mut self) -> Result<Option<StreamHeader>, Error> {
        self.skip()?;
        let start = self.offset;
        let mut h = [0u8; HEADER_LEN as usize];
        if !self.fill(&mut h, "a stream header", true)? {
            return Ok(None);
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let raw_id = u32_at(0);
        let attributes = u32_at(4);
        let mut size = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let name_size = u32_at(16);
        let id = StreamId::from_u32(raw_id)
            .ok_or_else(|| self.bad(start, format!("unknown stream ID {raw_id}")))?;
        if name_size % 2 != 0 {
            return Err(self.bad(
                start,
                format!("odd name size {name_size} (names are UTF-16)"),
            ));
        }
        if name_size > MAX_NAME_BYTES {
            return Err(self.bad(
                start,
                format!("name size {name_size} is over {MAX_NAME_BYTES} bytes"),
            ));
        }
        let mut raw = vec![0u8; name_size as usize];
        self.fill(&mut raw, "a stream name", false)?;
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16(&units)
            .map_err(|_| self.bad(start, "the stream name is not valid UTF-16"))?;
        let mut offset = 0;
        if id == StreamId::SparseBlock {
            let mut o = [0u8; 8];
            self.fill(&mut o, "a sparse block's offset", false)?;
            offset = i64::from_le_bytes(o);
            size = size.checked_sub(8).ok_or_else(|| {
                self.bad(
                    start,
                    format!("sparse block of size {size} cannot hold its 8-byte offset"),
                )
            })?;
            if offset < 0 {
                return Err(self.bad(start, format!("sparse block at negative offset {offset}")));
            }
        }
        self.left = size;
        Ok(Some(StreamHeader {
            id,
            attributes,
            size,
            name,
            offset,
        }))
    }
}

impl<R: Read + Seek> BackupStreamReader<R> {
    /// Skips the rest of the current payload by seeking (a payload that claims more
    /// bytes than the source has is found by whoever reads it later).
    pub fn seek_past_payload(&mut self) -> Result<(), Error> {
        if self.left > 0 {
            let n = i64::try_from(self.left)
                .map_err(|_| self.bad(self.offset, format!("payload of {} bytes", self.left)))?;
            self.input.seek(SeekFrom::Current(n)).map_err(|e| {
                Error::io(
                    format!("seeking in the backup stream of `{}`", self.label),
                    e,
                )
            })?;
            self.offset += self.left;
            self.left = 0;
        }
        Ok(())
    }
}

impl<R: Read> Read for BackupStreamReader<R> {
    /// Reads the current stream's payload; 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.left.min(buf.len() as u64) as usize;
        let n = self.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "backup stream of `{}` ends {} bytes before the end of a stream's payload (at byte {})",
                    self.label, self.left, self.offset
                ),
            ));
        }
        self.left -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Pushes streams into a backup stream; see the [module documentation](self).
pub struct BackupStreamWriter<W: Write> {
    out: W,
    left: u64,
}

impl<W: Write> BackupStreamWriter<W> {
    /// A writer of a new backup stream into `out`.
    pub fn new(out: W) -> Self {
        BackupStreamWriter { out, left: 0 }
    }

    /// Starts a stream. The previous one must be complete.
    pub fn write_header(&mut self, h: &StreamHeader) -> Result<(), Error> {
        if self.left != 0 {
            return Err(Error::Misuse(format!(
                "backup stream: missing {} bytes of the previous stream",
                self.left
            )));
        }
        let units: Vec<u16> = h.name.encode_utf16().collect();
        let name_size = u32::try_from(units.len() * 2)
            .ok()
            .filter(|&n| n <= MAX_NAME_BYTES)
            .ok_or_else(|| {
                Error::Misuse(format!("stream name of {} units is too long", units.len()))
            })?;
        let sparse = h.id == StreamId::SparseBlock;
        let mut buf = Vec::with_capacity(h.encoded_len() as usize);
        buf.extend_from_slice(&(h.id as u32).to_le_bytes());
        buf.extend_from_slice(&h.attributes.to_le_bytes());
        let size = if sparse {
            h.size
                .checked_add(8)
                .ok_or_else(|| Error::Misuse("sparse block too large".into()))?
        } else {
            h.size
        };
        buf.extend_from_slice(&size.to_le_bytes());
        buf.extend_from_slice(&name_size.to_le_bytes());
        for u in units {
            buf.extend_from_slice(&u.to_le_bytes());
        }
        if sparse {
            buf.extend_from_slice(&h.offset.to_le_bytes());
        }
        self.out
            .write_all(&buf)
            .map_err(|e| Error::io("writing a backup stream", e))?;
        self.left = h.size;
        Ok(())
    }

    /// Checks the last payload is complete and returns the output.
    pub fn finish(self) -> Result<W, Error> {
        if self.left != 0 {
            return Err(Error::Misuse(format!(
                "backup stream: missing {} bytes of the last stream",
                self.left
            )));
        }
        Ok(self.out)
    }

    /// The output, for writing around the stream (a caller's prefix, say).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

impl<W: Write> Write for BackupStreamWriter<W> {
    /// Writes payload of the current stream; more than its size is an error.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} payload bytes written where the stream has {} left",
                    buf.len(),
                    self.left
                ),
            ));
        }
        self.out.write_all(buf)?;
        self.left -= buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What a scan of a whole backup stream found: the metadata streams decoded, the data
/// streams located (offsets from the start of the stream) for a second pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamScan {
    /// The self-relative security descriptor, raw.
    pub security: Option<Vec<u8>>,
    /// The EA chain, raw (decode with [`crate::ea::decode`]).
    pub ea: Option<Vec<u8>>,
    /// The REPARSE_DATA_BUFFER, raw (decode with [`crate::reparse::decode`]).
    pub reparse: Option<Vec<u8>>,
    /// Where the unnamed data stream lies, if there is one.
    pub data: Option<DataStream>,
    /// Alternate data streams in stream order, with where each lies.
    pub alternates: Vec<AltStream>,
    /// Alternate streams that came before the data stream (Go's export drops them).
    pub alternates_before_data: usize,
}

/// Where the unnamed data stream lies and how big the file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataStream {
    /// Offset of the payload from the start of the backup stream.
    pub payload_offset: u64,
    /// The payload's length (0 for a sparse file, whose data is in its blocks).
    pub size: u64,
    /// The stream has the sparse attribute: blocks follow it.
    pub sparse: bool,
    /// For a sparse file: (file offset, payload offset in the stream, length) of each block.
    pub blocks: Vec<(u64, u64, u64)>,
    /// The logical size: `size`, or for a sparse file the end of the last block or the
    /// terminal block's offset, whichever is larger (Strata's fix of moby #53464).
    pub logical_size: u64,
}

/// One alternate data stream found by a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AltStream {
    /// As in the stream (`:Zone.Identifier:$DATA`).
    pub name: String,
    /// Offset of the payload from the start of the backup stream.
    pub payload_offset: u64,
    /// The payload's length.
    pub size: u64,
}

/// Longest metadata payload (SD, EA chain, reparse buffer) a scan keeps in memory.
pub const MAX_METADATA_STREAM: u64 = 1 << 20;

/// Reads a whole backup stream once, decoding the small streams and locating data, ADS
/// and sparse blocks (go-winio's two-pass export, §3.4, without its sparse-file bug).
/// Repeated SECURITY/EA/REPARSE/DATA streams, sparse blocks that go backwards or
/// appear without a sparse data stream, and payloads that claim more bytes than the
/// stream holds are errors.
pub fn scan<R: Read + Seek>(mut input: R, label: &str) -> Result<StreamScan, Error> {
    let available = stream_len(&mut input, label)?;
    let mut r = BackupStreamReader::labelled(input, label);
    let mut s = StreamScan::default();
    let mut sparse_done = false;
    let mut last_end = 0u64;
    loop {
        let at = r.offset();
        let Some(h) = r.next_header()? else { break };
        let payload = r.offset();
        let small = |r: &mut BackupStreamReader<R>,
                     h: &StreamHeader,
                     what: &str|
         -> Result<Vec<u8>, Error> {
            if h.size > MAX_METADATA_STREAM {
                return Err(r.bad(
                    at,
                    format!("{what} of {} bytes is over {MAX_METADATA_STREAM}", h.size),
                ));
            }
            let mut v = vec![0u8; h.size as usize];
            r.read_exact(&mut v).map_err(|e| r.bad(at, e.to_string()))?;
            Ok(v)
        };
        let dup =
            |r: &BackupStreamReader<R>, what: &str| r.bad(at, format!("a second {what} stream"));
        match h.id {
            StreamId::SecurityData => {
                if s.security.is_some() {
                    return Err(dup(&r, "security"));
                }
                s.security = Some(small(&mut r, &h, "a security descriptor")?);
            }
            StreamId::EaData => {
                if s.ea.is_some() {
                    return Err(dup(&r, "EA"));
                }
                s.ea = Some(small(&mut r, &h, "an EA chain")?);
            }
            StreamId::ReparseData => {
                if s.reparse.is_some() {
                    return Err(dup(&r, "reparse"));
                }
                s.reparse = Some(small(&mut r, &h, "reparse data")?);
            }
            StreamId::Data => {
                if s.data.is_some() {
                    return Err(dup(&r, "data"));
                }
                s.alternates_before_data = s.alternates.len();
                s.data = Some(DataStream {
                    payload_offset: payload,
                    size: h.size,
                    sparse: h.attributes & SPARSE_ATTRIBUTE != 0,
                    blocks: Vec::new(),
                    logical_size: h.size,
                });
            }
            StreamId::SparseBlock => {
                let Some(d) = s.data.as_mut().filter(|d| d.sparse && d.size == 0) else {
                    return Err(r.bad(
                        at,
                        "a sparse block without a sparse, empty data stream before it",
                    ));
                };
                if sparse_done {
                    return Err(r.bad(at, "a sparse block after the terminal empty block"));
                }
                let off = h.offset as u64;
                if off < last_end {
                    return Err(r.bad(at, format!("sparse block at {off} goes backwards (previous block ends at {last_end})")));
                }
                let end = off
                    .checked_add(h.size)
                    .ok_or_else(|| r.bad(at, "sparse block ends past 2^64"))?;
                if h.size == 0 {
                    sparse_done = true;
                } else {
                    d.blocks.push((off, payload, h.size));
                }
                last_end = end;
                d.logical_size = d.logical_size.max(end);
            }
            StreamId::AlternateData => {
                if !h.name.starts_with(':') || h.name.len() < 2 {
                    return Err(r.bad(
                        at,
                        format!(
                            "alternate data stream name `{}` does not start with `:`",
                            h.name
                        ),
                    ));
                }
                s.alternates.push(AltStream {
                    name: h.name.clone(),
                    payload_offset: payload,
                    size: h.size,
                })
            }
            StreamId::Link | StreamId::PropertyData | StreamId::ObjectId | StreamId::TxfsData => {}
            StreamId::GhostedFileExtents => {
                return Err(r.bad(
                    at,
                    "unknown stream ID 11 (BACKUP_GHOSTED_FILE_EXTENTS is not supported)",
                ))
            }
        }
        r.seek_past_payload()?;
        if r.offset() > available {
            return Err(r.bad(
                at,
                format!(
                    "unexpected end of the stream: a payload of {} bytes at byte {payload} runs past its end at byte {available}",
                    h.size
                ),
            ));
        }
    }
    Ok(s)
}

/// The bytes from the current position to the end of a seekable stream (the position
/// is kept).
fn stream_len<R: Seek>(input: &mut R, label: &str) -> Result<u64, Error> {
    let io_err = |e| Error::io(format!("seeking in the backup stream of `{label}`"), e);
    let start = input.stream_position().map_err(io_err)?;
    let end = input.seek(SeekFrom::End(0)).map_err(io_err)?;
    input.seek(SeekFrom::Start(start)).map_err(io_err)?;
    Ok(end.saturating_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[(StreamHeader, &[u8])]) -> Vec<u8> {
        let mut w = BackupStreamWriter::new(Vec::new());
        for (h, p) in parts {
            w.write_header(h).unwrap();
            w.write_all(p).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn tv8_sparse_stream_bytes_and_scan() {
        let block = |off: i64, data: &[u8]| StreamHeader {
            offset: off,
            ..StreamHeader::new(StreamId::SparseBlock, data.len() as u64)
        };
        let data = StreamHeader {
            attributes: SPARSE_ATTRIBUTE,
            ..StreamHeader::new(StreamId::Data, 0)
        };
        let s = stream(&[
            (data, b""),
            (block(0, b"abc"), b"abc"),
            (block(4096, b"xyz"), b"xyz"),
            (block(8192, b""), b""),
        ]);
        assert_eq!(s.len(), 110);
        assert_eq!(
            &s[..20],
            &[1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&s[20..32], &[9, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0, 0, 0]);
        assert_eq!(&s[102..110], &[0, 0x20, 0, 0, 0, 0, 0, 0]);
        let scan = scan(io::Cursor::new(&s), "f").unwrap();
        let d = scan.data.unwrap();
        assert_eq!(d.logical_size, 8192);
        assert_eq!(d.blocks, vec![(0, 48, 3), (4096, 79, 3)]);
    }

    #[test]
    fn hostile_streams_are_clear_errors() {
        // Odd name size.
        let mut s = vec![
            4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'a', 0, b'b',
        ];
        let e = BackupStreamReader::new(&s[..])
            .next_header()
            .unwrap_err()
            .to_string();
        assert!(e.contains("odd name size 3"), "{e}");
        // Truncated header.
        s.truncate(10);
        let e = BackupStreamReader::new(&s[..])
            .next_header()
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside a stream header"), "{e}");
        // Payload shorter than its size.
        let mut t = stream(&[(StreamHeader::new(StreamId::Data, 4), b"abcd")]);
        t.truncate(22);
        let e = BackupStreamReader::new(&t[..]).next_header().and_then(|_| {
            let mut r = BackupStreamReader::new(&t[..]);
            r.next_header()?;
            let mut v = Vec::new();
            r.read_to_end(&mut v).map_err(|e| Error::io("x", e))
        });
        assert!(e.unwrap_err().to_string().contains("ends 2 bytes before"));
        // Unknown id.
        let u = [
            99u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(BackupStreamReader::new(&u[..])
            .next_header()
            .unwrap_err()
            .to_string()
            .contains("unknown stream ID 99"));
        // A sparse block that goes backwards.
        let data = StreamHeader {
            attributes: SPARSE_ATTRIBUTE,
            ..StreamHeader::new(StreamId::Data, 0)
        };
        let b = |off| StreamHeader {
            offset: off,
            ..StreamHeader::new(StreamId::SparseBlock, 1)
        };
        let t = stream(&[(data, b""), (b(10), b"x"), (b(5), b"y")]);
        assert!(scan(io::Cursor::new(&t), "x")
            .unwrap_err()
            .to_string()
            .contains("goes backwards"));
    }

    #[test]
    fn writer_refuses_incomplete_and_excess_payload() {
        let mut w = BackupStreamWriter::new(Vec::new());
        w.write_header(&StreamHeader::new(StreamId::Data, 2))
            .unwrap();
        assert!(w.write_all(b"abc").is_err());
        w.write_all(b"a").unwrap();
        assert!(w
            .write_header(&StreamHeader::new(StreamId::Data, 0))
            .unwrap_err()
            .to_string()
            .contains("missing 1 bytes"));
    }
}
