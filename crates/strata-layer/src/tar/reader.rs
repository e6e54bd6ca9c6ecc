//! [`TarReader`]: a strict, streaming tar parser that yields [`Entry`] values.

use std::io::{self, BufRead, BufReader, Read, Seek};

use super::header::{self, field, Format, BLOCK};
use super::pax;
use super::HeaderStyle;
use crate::{
    Entry, EntryKind, Error, LayerPath, LayerReader, Metadata, PaxRecord, SparseExtent, Timestamp,
    Xattr,
};

/// Largest PAX or GNU long-name/long-link payload accepted (Go's limit).
pub const MAX_EXTENSION: u64 = 1 << 20;
/// Most extents a sparse file may have.
pub const MAX_SPARSE_EXTENTS: u64 = 1 << 20;

/// Sees every byte the reader consumes, split into file payloads and everything else.
/// Recipes ([`crate::recipe`]) implement it to rebuild the stream bit-exact.
pub trait TarSink {
    /// Bytes that are not the payload of a regular file: headers, extension headers,
    /// padding, the end-of-archive blocks, trailing bytes, and data of entries that are
    /// not kept as files (whiteouts, AUFS metadata).
    fn raw(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// A regular file's payload begins; `entry.kind.data_len()` bytes follow through
    /// [`file_data`](TarSink::file_data), then [`file_end`](TarSink::file_end).
    fn file_begin(&mut self, entry: &Entry) -> Result<(), Error>;
    /// The next bytes of the current file's payload.
    fn file_data(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// The current file's payload is complete.
    fn file_end(&mut self) -> Result<(), Error>;
}

/// The sink that ignores everything.
impl TarSink for () {
    fn raw(&mut self, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn file_begin(&mut self, _: &Entry) -> Result<(), Error> {
        Ok(())
    }
    fn file_data(&mut self, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn file_end(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Payload {
    /// Reported to the sink as a file's data.
    File,
    /// Reported to the sink as raw bytes.
    Raw,
}

/// Pull-based tar reader; see [`LayerReader`] for the lifecycle.
///
/// Strict where parsers have disagreed in the past (see the crate's security notes in
/// [`crate::tar`]): a PAX `size` always wins over the header's, PAX records apply to the
/// next file entry only, extension payloads and sparse maps are capped, checksums are
/// verified, header-only types must have size 0, and names with `..` or NUL are refused.
/// Tolerant where real writers differ: a missing end-of-archive (or a missing last
/// padding, as umoci 0.4.7 writes) ends the archive cleanly, and bytes after the
/// end-of-archive are read (they count toward the diffID) but ignored.
///
/// The input is buffered: [`new`](TarReader::new) and [`with_sink`](TarReader::with_sink)
/// wrap a [`Read`] in a [`BufReader`]; [`buffered`](TarReader::buffered) takes a
/// [`BufRead`] as it is, whose buffer [`read_data_in_place`](TarReader::read_data_in_place)
/// then hands out without a copy.
pub struct TarReader<R: BufRead, S: TarSink = ()> {
    input: R,
    sink: S,
    /// Bytes consumed so far.
    offset: u64,
    /// Data bytes of the current entry not yet consumed.
    data_left: u64,
    /// Padding bytes after the current entry's data.
    pad_left: u64,
    payload: Payload,
    in_file: bool,
    done: bool,
    entry_start: u64,
}

impl<R: Read> TarReader<BufReader<R>, ()> {
    /// A reader over an uncompressed tar stream (see [`crate::compress`] for the rest).
    pub fn new(input: R) -> Self {
        Self::with_sink(input, ())
    }
}

impl<R: Read, S: TarSink> TarReader<BufReader<R>, S> {
    /// A reader that reports every byte it consumes to `sink`.
    pub fn with_sink(input: R, sink: S) -> Self {
        TarReader::buffered(BufReader::with_capacity(256 * 1024, input), sink)
    }
}

impl<R: BufRead, S: TarSink> TarReader<R, S> {
    /// A reader over an input that buffers already (a [`crate::pipe::PipeReader`]), that
    /// reports every byte it consumes to `sink`.
    pub fn buffered(input: R, sink: S) -> Self {
        TarReader {
            input,
            sink,
            offset: 0,
            data_left: 0,
            pad_left: 0,
            payload: Payload::Raw,
            in_file: false,
            done: false,
            entry_start: 0,
        }
    }

    /// Bytes of the stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the headers of the current entry begin (its first extension header).
    pub fn entry_offset(&self) -> u64 {
        self.entry_start
    }

    /// The sink, to look at what it recorded so far.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives back the sink (and with it, whatever it recorded) and the input.
    pub fn into_parts(self) -> (R, S) {
        (self.input, self.sink)
    }

    /// How many bytes the input buffers (filling its buffer if empty).
    fn fill_input(&mut self) -> Result<usize, Error> {
        loop {
            match self.input.fill_buf() {
                Ok(b) => return Ok(b.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the layer at byte {}", self.offset),
                        e,
                    ))
                }
            }
        }
    }

    /// Like [`read_data`](LayerReader::read_data), but hands the next bytes of the
    /// current entry's data to `f` where the input buffers them, without copying them
    /// first (as many as the input holds at once). Returns how many there were: 0 at the
    /// end of the data. An error of `f` is returned as it is.
    pub fn read_data_in_place(
        &mut self,
        f: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        self.read_data_sharing(|_, _| None::<()>, |bytes, _| f(bytes))
    }

    /// [`read_data_in_place`](Self::read_data_in_place), also handing `f` what `share`
    /// makes of the input and the number of bytes (a handle to keep them, say).
    pub(crate) fn read_data_sharing<T>(
        &mut self,
        share: impl FnOnce(&R, usize) -> Option<T>,
        f: impl FnOnce(&[u8], Option<T>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        if self.data_left == 0 {
            self.end_payload()?;
            return Ok(0);
        }
        let avail = self.fill_input()?;
        if avail == 0 {
            return Err(Error::Truncated {
                offset: self.offset,
                inside: "an entry's data",
            });
        }
        let n = avail.min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let shared = share(&self.input, n);
        // The same buffer again: filled already, so no read and no error.
        let offset = self.offset;
        let bytes = &self
            .input
            .fill_buf()
            .map_err(|e| Error::io(format!("reading the layer at byte {offset}"), e))?[..n];
        match self.payload {
            Payload::File => self.sink.file_data(bytes)?,
            Payload::Raw => self.sink.raw(bytes)?,
        }
        f(bytes, shared)?;
        self.input.consume(n);
        self.offset += n as u64;
        self.data_left -= n as u64;
        if self.data_left == 0 {
            self.end_payload()?;
        }
        Ok(n)
    }

    /// Reads up to `buf.len()` bytes; returns how many were read (0 only at EOF).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the layer at byte {}", self.offset + got as u64),
                        e,
                    ))
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    /// Consumes the rest of the current entry (data and padding).
    fn skip_rest(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; 8192];
        while self.data_left > 0 {
            let want = self.data_left.min(buf.len() as u64) as usize;
            let n = self.read_payload(&mut buf[..want])?;
            debug_assert!(n > 0);
        }
        self.end_payload()?;
        while self.pad_left > 0 {
            let want = self.pad_left.min(BLOCK as u64) as usize;
            let n = self.fill(&mut buf[..want])?;
            self.sink.raw(&buf[..n])?;
            if n < want {
                // The last entry lacks its padding (umoci 0.4.7 insert): the archive ends here.
                self.pad_left = 0;
                self.done = true;
                break;
            }
            self.pad_left -= n as u64;
        }
        Ok(())
    }

    fn end_payload(&mut self) -> Result<(), Error> {
        if self.in_file {
            self.in_file = false;
            self.sink.file_end()?;
        }
        Ok(())
    }

    fn read_payload(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let want = self.data_left.min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.input.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the layer at byte {}", self.offset),
                        e,
                    ))
                }
            }
        };
        if n == 0 {
            return Err(Error::Truncated {
                offset: self.offset,
                inside: "an entry's data",
            });
        }
        self.offset += n as u64;
        self.data_left -= n as u64;
        match self.payload {
            Payload::File => self.sink.file_data(&buf[..n])?,
            Payload::Raw => self.sink.raw(&buf[..n])?,
        }
        Ok(n)
    }

    /// Reads one header block. `None` at a clean EOF (no bytes at all).
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, Error> {
        let mut block = [0u8; BLOCK];
        let n = self.fill(&mut block)?;
        self.sink.raw(&block[..n])?;
        match n {
            0 => Ok(None),
            BLOCK => Ok(Some(block)),
            _ => Err(Error::Truncated {
                offset: self.offset,
                inside: "a header",
            }),
        }
    }

    /// Reads an extension header's payload (PAX, GNU long name) into memory, capped.
    fn read_extension(&mut self, start: u64, size: u64, what: &str) -> Result<Vec<u8>, Error> {
        if size > MAX_EXTENSION {
            return Err(Error::BadHeader {
                offset: start,
                reason: format!("{what} of {size} bytes is over the {MAX_EXTENSION}-byte limit"),
            });
        }
        let mut data = vec![0u8; size as usize];
        let n = self.fill(&mut data)?;
        self.sink.raw(&data[..n])?;
        if n < data.len() {
            return Err(Error::Truncated {
                offset: self.offset,
                inside: "an extension header",
            });
        }
        self.skip_padding(size)?;
        Ok(data)
    }

    fn skip_padding(&mut self, len: u64) -> Result<(), Error> {
        let pad = header::padding(len) as usize;
        let mut buf = [0u8; BLOCK];
        let n = self.fill(&mut buf[..pad])?;
        self.sink.raw(&buf[..n])?;
        if n < pad {
            return Err(Error::Truncated {
                offset: self.offset,
                inside: "padding",
            });
        }
        Ok(())
    }

    /// At the end-of-archive: consume (and report) every trailing byte.
    fn drain(&mut self) -> Result<(), Error> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.fill(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.sink.raw(&buf[..n])?;
        }
    }

    fn next(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            self.skip_rest()?;
            if self.done {
                return Ok(None);
            }
            if let Some(entry) = self.read_entry()? {
                return Ok(Some(entry));
            }
        }
    }

    /// Reads headers up to the next entry. `None` at the end of the archive (then `done`
    /// is set) or for an entry that is consumed but not reported (AUFS bookkeeping).
    fn read_entry(&mut self) -> Result<Option<Entry>, Error> {
        self.entry_start = self.offset;
        let mut ext = Extensions::default();
        loop {
            let start = self.offset;
            let Some(block) = self.read_block()? else {
                // No end-of-archive blocks: accepted, as Go readers do.
                return self.finish_archive(&ext, start);
            };
            if block.iter().all(|&b| b == 0) {
                match self.read_block() {
                    Ok(Some(second)) if second.iter().all(|&b| b == 0) => {}
                    Ok(Some(_)) => {
                        return Err(Error::BadHeader {
                            offset: start + BLOCK as u64,
                            reason: "a header follows a single zero block".into(),
                        })
                    }
                    Ok(None) => {}
                    Err(Error::Truncated { .. }) => {}
                    Err(e) => return Err(e),
                }
                return self.finish_archive(&ext, start);
            }
            if !header::checksum_ok(&block) {
                return Err(Error::BadHeader {
                    offset: start,
                    reason: "checksum mismatch (not a tar archive, or a corrupt header)".into(),
                });
            }
            let bad = |reason: String| Error::BadHeader {
                offset: start,
                reason,
            };
            let typeflag = block[field::TYPEFLAG];
            let hsize = header_number(&block[field::SIZE], "size").map_err(&bad)?;
            if hsize < 0 {
                return Err(bad("negative size".into()));
            }
            let hsize = hsize as u64;
            match typeflag {
                b'x' => {
                    if ext.pax.is_some() {
                        return Err(bad("two PAX extended headers for one entry".into()));
                    }
                    let data = self.read_extension(start, hsize, "PAX extended header")?;
                    ext.pax = Some(pax::parse_records(&data).map_err(&bad)?);
                }
                b'g' => {
                    // Global records describe the archive, not an entry: validated, then ignored.
                    let data = self.read_extension(start, hsize, "PAX global header")?;
                    pax::parse_records(&data).map_err(&bad)?;
                }
                b'L' | b'K' => {
                    let slot = if typeflag == b'L' {
                        &mut ext.long_name
                    } else {
                        &mut ext.long_link
                    };
                    if slot.is_some() {
                        return Err(bad(format!(
                            "two GNU long-{} headers for one entry",
                            if typeflag == b'L' { "name" } else { "link" }
                        )));
                    }
                    let data = self.read_extension(start, hsize, "GNU long name")?;
                    let value = header::cstr(&data).to_vec();
                    if typeflag == b'L' {
                        ext.long_name = Some(value);
                    } else {
                        ext.long_link = Some(value);
                    }
                }
                _ => return self.entry(start, &block, hsize, ext),
            }
        }
    }

    fn finish_archive(&mut self, ext: &Extensions, start: u64) -> Result<Option<Entry>, Error> {
        if ext.pax.is_some() || ext.long_name.is_some() || ext.long_link.is_some() {
            return Err(Error::Truncated {
                offset: start,
                inside: "an extension header with no entry after it",
            });
        }
        self.done = true;
        self.drain()?;
        Ok(None)
    }

    /// Builds the entry of a real (non-extension) header and positions at its data.
    fn entry(
        &mut self,
        start: u64,
        block: &[u8; BLOCK],
        hsize: u64,
        ext: Extensions,
    ) -> Result<Option<Entry>, Error> {
        let bad = |reason: String| Error::BadHeader {
            offset: start,
            reason,
        };
        let format = header::format(block);
        let typeflag = block[field::TYPEFLAG];

        // Name: PAX path, then GNU long name, then the header (with the ustar prefix).
        let mut name = match &ext.long_name {
            Some(n) => n.clone(),
            None => {
                let base = header::cstr(&block[field::NAME]);
                let prefix = if format == Format::Ustar {
                    header::cstr(&block[field::PREFIX])
                } else {
                    &[][..]
                };
                if prefix.is_empty() {
                    base.to_vec()
                } else {
                    [prefix, b"/", base].concat()
                }
            }
        };
        let mut linkname = match &ext.long_link {
            Some(l) => l.clone(),
            None => header::cstr(&block[field::LINKNAME]).to_vec(),
        };
        let mut meta = Metadata {
            mode: (num(block, field::MODE, "mode").map_err(&bad)? & 0o7777) as u32,
            uid: nonneg(num(block, field::UID, "uid").map_err(&bad)?, "uid").map_err(&bad)?,
            gid: nonneg(num(block, field::GID, "gid").map_err(&bad)?, "gid").map_err(&bad)?,
            uname: header::cstr(&block[field::UNAME]).to_vec(),
            gname: header::cstr(&block[field::GNAME]).to_vec(),
            mtime: Timestamp::new(num(block, field::MTIME, "mtime").map_err(&bad)? as i64, 0),
            atime: None,
            ctime: None,
            xattrs: Vec::new(),
        };
        if format == Format::V7 {
            meta.uname.clear();
            meta.gname.clear();
        }
        let mut size = hsize;
        let mut sparse = SparseInfo::default();
        let mut libarchive_xattrs = Vec::new();
        let mut raw = Vec::new();
        for (key, value) in ext.pax.into_iter().flatten() {
            match key.as_str() {
                "path" => name = value,
                "linkpath" => linkname = value,
                "size" => size = pax::parse_u64(&key, &value).map_err(&bad)?,
                "uid" => meta.uid = pax::parse_u64(&key, &value).map_err(&bad)?,
                "gid" => meta.gid = pax::parse_u64(&key, &value).map_err(&bad)?,
                "uname" => meta.uname = value,
                "gname" => meta.gname = value,
                "mtime" => meta.mtime = pax::parse_time(&key, &value).map_err(&bad)?,
                "atime" => meta.atime = Some(pax::parse_time(&key, &value).map_err(&bad)?),
                "ctime" => meta.ctime = Some(pax::parse_time(&key, &value).map_err(&bad)?),
                k if k.starts_with("SCHILY.xattr.") => {
                    let xname = k.as_bytes()["SCHILY.xattr.".len()..].to_vec();
                    meta.xattrs.retain(|x: &Xattr| x.name != xname);
                    meta.xattrs.push(Xattr { name: xname, value });
                }
                k if k.starts_with("LIBARCHIVE.xattr.") => {
                    libarchive_xattrs.push((k["LIBARCHIVE.xattr.".len()..].to_owned(), value));
                }
                k if k.starts_with("GNU.sparse.") => sparse.record(k, &value).map_err(&bad)?,
                _ => raw.push(PaxRecord { key, value }),
            }
        }
        // bsdtar writes both forms; SCHILY wins, LIBARCHIVE fills in what it lacks.
        for (encoded_name, value) in libarchive_xattrs {
            let (Some(xname), Some(xvalue)) =
                (percent_decode(&encoded_name), base64_decode(&value))
            else {
                return Err(bad(format!(
                    "malformed LIBARCHIVE.xattr record for `{encoded_name}`"
                )));
            };
            if !meta.xattrs.iter().any(|x| x.name == xname) {
                meta.xattrs.push(Xattr {
                    name: xname,
                    value: xvalue,
                });
            }
        }
        meta.xattrs.sort();
        if let Some(real) = sparse.name.take() {
            name = real;
        }

        let header_only = matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        if header_only && size != 0 {
            return Err(bad(format!(
                "entry type '{}' cannot carry data, but its size is {size}",
                typeflag as char
            )));
        }
        let path = LayerPath::from_tar_name(&name).map_err(|reason| Error::BadPath {
            offset: start,
            name: name.escape_ascii().to_string(),
            reason,
        })?;
        let name_is_dir = name.ends_with(b"/");

        let mut data_len = size;
        let mut map_bytes = 0u64;
        let kind = match typeflag {
            b'0' | b'7' => {
                self.file_kind(start, &mut sparse, size, &mut data_len, &mut map_bytes)?
            }
            0 if name_is_dir => EntryKind::Dir,
            0 => self.file_kind(start, &mut sparse, size, &mut data_len, &mut map_bytes)?,
            b'S' => {
                let realsize = nonneg(
                    num(block, field::GNU_REALSIZE, "sparse real size").map_err(&bad)?,
                    "sparse real size",
                )
                .map_err(&bad)?;
                let mut extents = Vec::new();
                gnu_sparse_entries(&block[field::GNU_SPARSE], &mut extents).map_err(&bad)?;
                let mut extended = block[field::GNU_ISEXTENDED] != 0;
                while extended {
                    let ext_start = self.offset;
                    let Some(ext_block) = self.read_block()? else {
                        return Err(Error::Truncated {
                            offset: ext_start,
                            inside: "a GNU sparse extension block",
                        });
                    };
                    gnu_sparse_entries(&ext_block[..504], &mut extents).map_err(&bad)?;
                    extended = ext_block[504] != 0;
                }
                let extents = check_extents(extents, realsize, size).map_err(&bad)?;
                EntryKind::File {
                    size: realsize,
                    sparse: Some(extents),
                }
            }
            b'1' => {
                let target =
                    LayerPath::from_tar_name(&linkname).map_err(|reason| Error::BadPath {
                        offset: start,
                        name: linkname.escape_ascii().to_string(),
                        reason,
                    })?;
                if target.is_root() {
                    return Err(bad("hard link to the root directory".into()));
                }
                if target.components().any(|c| c.starts_with(b".wh.")) {
                    return Err(bad(format!(
                        "hard link target `{target}` is a whiteout name"
                    )));
                }
                EntryKind::HardLink { target }
            }
            b'2' => EntryKind::Symlink { target: linkname },
            b'3' | b'4' => {
                let major = device_number(block, field::DEVMAJOR, "major").map_err(&bad)?;
                let minor = device_number(block, field::DEVMINOR, "minor").map_err(&bad)?;
                if typeflag == b'3' {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => {
                return Err(bad(format!(
                    "unsupported entry type '{}' for `{path}`",
                    (other as char).escape_default()
                )))
            }
        };

        let (path, kind) = whiteout_decode(path, kind).map_err(&bad)?;
        let payload_len = size - map_bytes;
        debug_assert_eq!(payload_len, data_len);
        self.data_left = payload_len;
        self.pad_left = header::padding(size);
        let Some(path) = path else {
            // AUFS bookkeeping: consumed with `skip_rest`, never created.
            self.payload = Payload::Raw;
            return Ok(None);
        };
        let entry = Entry {
            path,
            kind,
            meta,
            pax: raw,
            header: HeaderStyle::Strata,
        };
        if matches!(entry.kind, EntryKind::File { .. }) && payload_len > 0 {
            self.payload = Payload::File;
            self.in_file = true;
            self.sink.file_begin(&entry)?;
        } else {
            self.payload = Payload::Raw;
        }
        Ok(Some(entry))
    }

    /// The kind of a regular-file header, reading a GNU sparse 1.0 map from the data.
    fn file_kind(
        &mut self,
        start: u64,
        sparse: &mut SparseInfo,
        size: u64,
        data_len: &mut u64,
        map_bytes: &mut u64,
    ) -> Result<EntryKind, Error> {
        let bad = |reason: String| Error::BadHeader {
            offset: start,
            reason,
        };
        if !sparse.present() {
            return Ok(EntryKind::File { size, sparse: None });
        }
        let realsize = sparse
            .realsize
            .ok_or_else(|| bad("GNU sparse file without its real size".into()))?;
        let extents = if sparse.major == Some(1) {
            let (extents, consumed) = self.read_sparse_map(start, size)?;
            *map_bytes = consumed;
            extents
        } else {
            std::mem::take(&mut sparse.extents)
        };
        let extents = check_extents(extents, realsize, size - *map_bytes).map_err(bad)?;
        *data_len = size - *map_bytes;
        Ok(EntryKind::File {
            size: realsize,
            sparse: Some(extents),
        })
    }

    /// GNU sparse 1.0: the map is decimal text at the start of the data, padded to a block.
    fn read_sparse_map(
        &mut self,
        start: u64,
        size: u64,
    ) -> Result<(Vec<SparseExtent>, u64), Error> {
        let bad = |reason: String| Error::BadHeader {
            offset: start,
            reason,
        };
        let mut numbers: Vec<u64> = Vec::new();
        let mut wanted: Option<u64> = None;
        let mut current: Option<u64> = None;
        let mut consumed = 0u64;
        loop {
            if consumed >= size {
                return Err(bad("GNU sparse 1.0 map runs past the entry's data".into()));
            }
            let Some(block) = self.read_block()? else {
                return Err(Error::Truncated {
                    offset: self.offset,
                    inside: "a GNU sparse map",
                });
            };
            consumed += BLOCK as u64;
            for &b in block.iter() {
                if let Some(w) = wanted {
                    if numbers.len() as u64 == 1 + 2 * w {
                        break;
                    }
                }
                match b {
                    b'0'..=b'9' => {
                        let v = current
                            .unwrap_or(0)
                            .checked_mul(10)
                            .and_then(|v| v.checked_add((b - b'0') as u64));
                        current =
                            Some(v.ok_or_else(|| bad("GNU sparse map number overflows".into()))?);
                    }
                    b'\n' => {
                        let v = current
                            .take()
                            .ok_or_else(|| bad("empty number in GNU sparse map".into()))?;
                        if numbers.is_empty() {
                            if v > MAX_SPARSE_EXTENTS {
                                return Err(bad(format!("GNU sparse map claims {v} extents, over the limit of {MAX_SPARSE_EXTENTS}")));
                            }
                            wanted = Some(v);
                        }
                        numbers.push(v);
                    }
                    _ => return Err(bad("malformed GNU sparse 1.0 map".into())),
                }
            }
            if let Some(w) = wanted {
                if numbers.len() as u64 == 1 + 2 * w {
                    break;
                }
            }
        }
        // The map is padded to whole blocks inside the data; a short entry cannot hold it.
        if consumed > size {
            return Err(bad(format!(
                "GNU sparse 1.0 map takes {consumed} bytes but the entry holds only {size}"
            )));
        }
        let extents = numbers[1..]
            .chunks(2)
            .map(|p| SparseExtent {
                offset: p[0],
                len: p[1],
            })
            .collect();
        Ok((extents, consumed))
    }
}

impl<R: Read + Seek> TarReader<BufReader<R>, ()> {
    /// Skips the rest of the current entry's data and padding by seeking instead of
    /// reading, for indexing a tar held in a file: only the headers are read.
    ///
    /// A seek past the end of the file is not noticed here (the next `next_entry` sees a
    /// clean end of the archive): a caller that indexes members must check that each
    /// member's data ends within the file.
    pub fn skip_data(&mut self) -> Result<(), Error> {
        let skip = self.data_left + self.pad_left;
        if skip == 0 {
            return Ok(());
        }
        let by = i64::try_from(skip).map_err(|_| Error::BadHeader {
            offset: self.entry_start,
            reason: format!("entry size {skip} is too large to seek past"),
        })?;
        self.input.seek_relative(by).map_err(|e| {
            Error::io(
                format!("seeking past the entry at byte {}", self.entry_start),
                e,
            )
        })?;
        self.offset += skip;
        self.data_left = 0;
        self.pad_left = 0;
        self.in_file = false;
        Ok(())
    }
}

impl<R: BufRead, S: TarSink> LayerReader for TarReader<R, S> {
    fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        let r = self.next();
        if r.is_err() {
            self.done = true;
        }
        r
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.read_payload(buf)?;
        if self.data_left == 0 {
            self.end_payload()?;
        }
        Ok(n)
    }
}

/// Extension headers collected for the next entry.
#[derive(Default)]
struct Extensions {
    pax: Option<Vec<(String, Vec<u8>)>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// GNU sparse records from a PAX header (formats 0.0, 0.1 and 1.0).
#[derive(Default)]
struct SparseInfo {
    major: Option<u64>,
    realsize: Option<u64>,
    name: Option<Vec<u8>>,
    extents: Vec<SparseExtent>,
    pending_offset: Option<u64>,
    numblocks: Option<u64>,
}

impl SparseInfo {
    fn present(&self) -> bool {
        self.major.is_some() || self.numblocks.is_some() || self.realsize.is_some()
    }

    fn record(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let n = || pax::parse_u64(key, value);
        match key {
            "GNU.sparse.major" => self.major = Some(n()?),
            "GNU.sparse.minor" => {
                n()?;
            }
            "GNU.sparse.name" => self.name = Some(value.to_vec()),
            "GNU.sparse.realsize" | "GNU.sparse.size" => self.realsize = Some(n()?),
            "GNU.sparse.numblocks" => {
                let v = n()?;
                if v > MAX_SPARSE_EXTENTS {
                    return Err(format!(
                        "GNU sparse map claims {v} extents, over the limit of {MAX_SPARSE_EXTENTS}"
                    ));
                }
                self.numblocks = Some(v);
            }
            "GNU.sparse.offset" => self.pending_offset = Some(n()?),
            "GNU.sparse.numbytes" => {
                let offset = self
                    .pending_offset
                    .take()
                    .ok_or("GNU.sparse.numbytes without an offset")?;
                self.push(offset, n()?)?;
            }
            "GNU.sparse.map" => {
                let text = std::str::from_utf8(value).map_err(|_| "GNU.sparse.map is not text")?;
                let nums = text
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<u64>()
                            .map_err(|_| format!("GNU.sparse.map holds `{s}`"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if nums.len() % 2 != 0 {
                    return Err("GNU.sparse.map has an odd number of values".into());
                }
                for p in nums.chunks(2) {
                    self.push(p[0], p[1])?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, offset: u64, len: u64) -> Result<(), String> {
        if self.extents.len() as u64 >= MAX_SPARSE_EXTENTS {
            return Err("too many sparse extents".into());
        }
        self.extents.push(SparseExtent { offset, len });
        Ok(())
    }
}

/// Reads (offset, numbytes) pairs of 12-byte numbers from an old GNU sparse area.
fn gnu_sparse_entries(area: &[u8], out: &mut Vec<SparseExtent>) -> Result<(), String> {
    for pair in area.chunks_exact(24) {
        if pair.iter().all(|&b| b == 0) {
            break;
        }
        let offset = header::number(&pair[..12])
            .filter(|v| *v >= 0)
            .ok_or("bad sparse offset")? as u64;
        let len = header::number(&pair[12..])
            .filter(|v| *v >= 0)
            .ok_or("bad sparse length")? as u64;
        if out.len() as u64 >= MAX_SPARSE_EXTENTS {
            return Err("too many sparse extents".into());
        }
        out.push(SparseExtent { offset, len });
    }
    Ok(())
}

/// Extents must be ascending, disjoint, inside the file, and hold exactly the stored bytes.
fn check_extents(
    extents: Vec<SparseExtent>,
    realsize: u64,
    stored: u64,
) -> Result<Vec<SparseExtent>, String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for e in &extents {
        let e_end = e
            .offset
            .checked_add(e.len)
            .ok_or("sparse extent overflows")?;
        if e.offset < end || e_end > realsize {
            return Err(format!(
                "sparse extent {}+{} is out of order or past the file's {realsize} bytes",
                e.offset, e.len
            ));
        }
        end = e_end;
        total += e.len;
    }
    if total != stored {
        return Err(format!(
            "sparse map covers {total} bytes but the entry stores {stored}"
        ));
    }
    Ok(extents.into_iter().filter(|e| e.len > 0).collect())
}

/// Turns `.wh.` names into whiteout and opaque entries (image-formats §6.1).
/// `None` for AUFS bookkeeping entries, which are skipped.
fn whiteout_decode(
    path: LayerPath,
    kind: EntryKind,
) -> Result<(Option<LayerPath>, EntryKind), String> {
    let Some(base) = path.file_name().map(<[u8]>::to_vec) else {
        if kind != EntryKind::Dir {
            return Err("the root entry `./` must be a directory".into());
        }
        return Ok((Some(path), kind));
    };
    let first = path.components().next().unwrap_or_default();
    if [&b".wh..wh.plnk"[..], b".wh..wh.aufs", b".wh..wh.orph"].contains(&first) {
        return Ok((None, kind));
    }
    let parent = path.parent().unwrap_or_default();
    if let Some(c) = parent.components().find(|c| c.starts_with(b".wh.")) {
        return Err(format!(
            "`{path}` lies inside a whiteout name `{}`",
            c.escape_ascii()
        ));
    }
    let Some(hidden) = base.strip_prefix(b".wh.") else {
        return Ok((Some(path), kind));
    };
    if !matches!(kind, EntryKind::File { .. }) {
        return Err(format!(
            "whiteout `{path}` must be a regular file, not type '{}'",
            kind.letter()
        ));
    }
    if hidden == b".wh..opq" {
        return Ok((Some(parent), EntryKind::Opaque));
    }
    if hidden.starts_with(b".wh.") {
        return Err(format!("unknown whiteout meta entry `{path}`"));
    }
    if matches!(hidden, b"" | b"." | b"..") {
        return Err(format!(
            "whiteout `{path}` names `{}`, which is not a file name",
            hidden.escape_ascii()
        ));
    }
    let target = parent
        .join(hidden)
        .map_err(|e| format!("whiteout `{path}`: {e}"))?;
    Ok((Some(target), EntryKind::Whiteout))
}

fn header_number(f: &[u8], what: &str) -> Result<i128, String> {
    header::number(f).ok_or_else(|| format!("malformed {what} field `{}`", f.escape_ascii()))
}

fn num(block: &[u8; BLOCK], range: std::ops::Range<usize>, what: &str) -> Result<i128, String> {
    header_number(&block[range], what)
}

fn nonneg(v: i128, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("negative {what}"))
}

fn device_number(
    block: &[u8; BLOCK],
    range: std::ops::Range<usize>,
    what: &str,
) -> Result<u32, String> {
    let v = num(block, range, what)?;
    u32::try_from(v).map_err(|_| format!("device {what} number {v} does not fit 32 bits"))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(
            s.iter()
                .copied()
                .filter(|&c| c != b'=')
                .collect::<Vec<u8>>(),
        )
        .ok()
}
