//! [`TarWriter`]: writes entries as a deterministic tar stream.

use std::io::Write;

use super::header::{self, field, BLOCK};
use super::pax;
use crate::{Entry, EntryKind, Error, LayerPath, LayerWriter, Timestamp};

const OCTAL7: u64 = 0o7777777;
const OCTAL11: u64 = 0o77777777777;

/// Writes a layer tar the way Go's `archive/tar` does (the encoding of Docker-built
/// layers): ustar headers, octal fields zero-padded and NUL-terminated, and a PAX
/// extended header named `<dir>/PaxHeaders.0/<name>` only when a value does not fit
/// ustar (long or non-ASCII names, big ids or sizes, sub-second or out-of-range times,
/// xattrs, extra PAX records). Whiteouts and opaque markers are empty regular files with
/// mode 0, owner 0:0 and mtime 0. No uname/gname lookups, no atime/ctime: the same
/// entries always give the same bytes. The archive ends with two zero blocks.
///
/// A sparse entry is written as a plain file: its holes become zeros.
pub struct TarWriter<W: Write> {
    out: W,
    /// Data bytes the current entry still expects.
    data_left: u64,
    /// For a sparse entry: the extents still to come and the file offset reached.
    sparse: Option<SparseFill>,
    pad: u64,
    /// Entries written so far.
    written: u64,
}

struct SparseFill {
    extents: std::vec::IntoIter<crate::SparseExtent>,
    current: Option<crate::SparseExtent>,
    pos: u64,
    size: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer of a new tar stream into `out` (buffer it: headers are written in
    /// small pieces).
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            data_left: 0,
            sparse: None,
            pad: 0,
            written: 0,
        }
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("writing the tar stream", e))
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), Error> {
        const Z: [u8; 8192] = [0; 8192];
        while n > 0 {
            let k = n.min(Z.len() as u64) as usize;
            self.put(&Z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), Error> {
        if let Some(mut fill) = self.sparse.take() {
            if self.data_left == 0 {
                let tail = fill.size - fill.pos;
                self.zeros(tail)?;
                fill.pos = fill.size;
            }
        }
        if self.data_left > 0 {
            return Err(Error::Misuse(format!(
                "{} data bytes missing before the next entry",
                self.data_left
            )));
        }
        let pad = std::mem::take(&mut self.pad);
        self.zeros(pad)
    }
}

/// How [`TarWriter::add_as`] encodes the headers of one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HeaderStyle {
    /// What [`LayerWriter::add`] writes unless the entry asks otherwise
    /// ([`Entry::header`]): see [`TarWriter`].
    #[default]
    Strata,
    /// Go `archive/tar` given `Header.Format = FormatPAX`, which is how go-winio's
    /// `backuptar` writes Windows layers (`../shared/specs/windows-layer.md` §3.1):
    /// `mode` is the whole mode field, file-type bits included (`0o100000`, `0o40000`,
    /// `0o120000`, `0o160000`); a directory's name gets no trailing `/`; `atime` and
    /// `ctime` are recorded when set; a PAX entry never uses the ustar prefix (a long or
    /// non-ASCII name goes in a `path` record, the name field keeps its ASCII bytes cut to
    /// 100). An entry that needs no record at all is written as plain ustar, as Go does.
    GoPax {
        /// The tar header's whole mode field.
        mode: u32,
    },
    /// What moby's `pkg/archive` writes for a file on disk (the members of `docker save`):
    /// as [`Strata`](HeaderStyle::Strata), but the mode field carries the file-type bits
    /// too (`0100644`, `040755`, `0120777`), as Go's `FileInfoHeader` sets them.
    Moby,
}

/// The `S_IF*` bits of `kind`, as Go's `FileInfoHeader` puts them in the mode field.
fn type_bits(kind: &EntryKind) -> u32 {
    match kind {
        EntryKind::File { .. } | EntryKind::HardLink { .. } => 0o100000,
        EntryKind::Dir => 0o40000,
        EntryKind::Symlink { .. } => 0o120000,
        EntryKind::CharDevice { .. } => 0o20000,
        EntryKind::BlockDevice { .. } => 0o60000,
        EntryKind::Fifo => 0o10000,
        EntryKind::Whiteout | EntryKind::Opaque => 0,
    }
}

impl<W: Write> TarWriter<W> {
    /// Starts an entry like [`LayerWriter::add`], with its headers encoded in `style`.
    ///
    /// ```
    /// use strata_layer::tar::{HeaderStyle, TarWriter};
    /// use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter, Timestamp};
    /// let mut w = TarWriter::new(Vec::new());
    /// let mut dir = Entry::new(LayerPath::from_tar_name(b"Files").unwrap(), EntryKind::Dir);
    /// dir.meta.atime = Some(Timestamp::new(1577836800, 0));
    /// w.add_as(&dir, HeaderStyle::GoPax { mode: 0o40000 }).unwrap();
    /// let tar = w.finish().unwrap();
    /// assert_eq!(&tar[..18], b"PaxHeaders.0/Files");
    /// assert_eq!(&tar[1024..1030], b"Files\0");
    /// assert_eq!(&tar[1024 + 100..1024 + 108], b"0040000\0");
    /// ```
    pub fn add_as(&mut self, entry: &Entry, style: HeaderStyle) -> Result<(), Error> {
        self.end_entry()?;
        let headers = encode(entry, style)?;
        self.put(&headers)?;
        let size = match &entry.kind {
            EntryKind::File { size, sparse } => {
                if let Some(extents) = sparse {
                    let mut it = extents.clone().into_iter();
                    self.sparse = Some(SparseFill {
                        current: it.next(),
                        extents: it,
                        pos: 0,
                        size: *size,
                    });
                }
                *size
            }
            _ => 0,
        };
        self.data_left = entry.kind.data_len();
        self.pad = header::padding(size);
        self.written += 1;
        if self.data_left == 0 {
            self.end_entry()?;
        }
        Ok(())
    }

    /// Delivers the next data bytes of the current regular file like
    /// [`write_data`](LayerWriter::write_data), but lets `fill` put them straight into the
    /// output, so that they need not pass through a buffer of the caller first: `fill` is
    /// given the output and how many data bytes the entry still expects, writes at most
    /// that many, and returns how many it wrote. Not for a sparse entry (its holes are
    /// written by `write_data`).
    ///
    /// ```
    /// use std::io::Write;
    /// use strata_layer::tar::TarWriter;
    /// use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter};
    /// let mut w = TarWriter::new(Vec::new());
    /// let file = Entry::new(LayerPath::from_tar_name(b"f").unwrap(), EntryKind::File { size: 3, sparse: None });
    /// w.add(&file).unwrap();
    /// let n = w.write_data_with(|out, left| {
    ///     out.write_all(&b"abc"[..left as usize]).unwrap();
    ///     Ok(left)
    /// }).unwrap();
    /// assert_eq!(n, 3);
    /// let tar = w.finish().unwrap();
    /// assert_eq!(&tar[512..516], b"abc\0");
    /// assert_eq!(tar.len(), 512 * 4);
    /// ```
    pub fn write_data_with(
        &mut self,
        fill: impl FnOnce(&mut W, u64) -> Result<u64, Error>,
    ) -> Result<u64, Error> {
        if self.sparse.is_some() {
            return Err(Error::Misuse(
                "the data of a sparse entry goes through write_data".into(),
            ));
        }
        let n = fill(&mut self.out, self.data_left)?;
        if n > self.data_left {
            return Err(Error::Misuse(format!(
                "{n} data bytes written where {} were expected",
                self.data_left
            )));
        }
        self.data_left -= n;
        if self.data_left == 0 {
            self.end_entry()?;
        }
        Ok(n)
    }
}

impl<W: Write> LayerWriter for TarWriter<W> {
    /// The output, flushed, for the caller to finish (compression, digests).
    type Summary = W;

    /// Encodes the headers in the entry's own [`Entry::header`] style.
    fn add(&mut self, entry: &Entry) -> Result<(), Error> {
        self.add_as(entry, entry.header)
    }

    fn write_data(&mut self, mut data: &[u8]) -> Result<(), Error> {
        if data.len() as u64 > self.data_left {
            return Err(Error::Misuse(format!(
                "{} data bytes written where {} were expected",
                data.len(),
                self.data_left
            )));
        }
        self.data_left -= data.len() as u64;
        if self.sparse.is_none() {
            self.put(data)?;
        } else {
            while !data.is_empty() {
                let Some(fill) = self.sparse.as_mut() else {
                    break;
                };
                let Some(ext) = fill.current.as_mut() else {
                    break;
                };
                let hole = ext.offset - fill.pos;
                let take = (ext.len as usize).min(data.len());
                ext.offset += take as u64;
                ext.len -= take as u64;
                fill.pos = ext.offset;
                if ext.len == 0 {
                    fill.current = fill.extents.next();
                }
                self.zeros(hole)?;
                self.put(&data[..take])?;
                data = &data[take..];
            }
        }
        if self.data_left == 0 {
            self.end_entry()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<W, Error> {
        self.end_entry()?;
        self.zeros(2 * BLOCK as u64)?;
        self.out
            .flush()
            .map_err(|e| Error::io("flushing the tar stream", e))?;
        Ok(self.out)
    }
}

/// The header blocks of one entry (a PAX header first when needed).
fn encode(entry: &Entry, style: HeaderStyle) -> Result<Vec<u8>, Error> {
    let meta = &entry.meta;
    let go = matches!(style, HeaderStyle::GoPax { .. });
    let (name, typeflag, mode, uid, gid, mtime, size, linkname): (
        Vec<u8>,
        u8,
        u32,
        u64,
        u64,
        Timestamp,
        u64,
        &[u8],
    ) = match &entry.kind {
        EntryKind::Whiteout | EntryKind::Opaque => {
            let marker = whiteout_name(entry)?;
            (marker, b'0', 0, 0, 0, Timestamp::EPOCH, 0, &[])
        }
        kind => {
            let mut name = if entry.path.is_root() {
                b".".to_vec()
            } else {
                entry.path.as_bytes().to_vec()
            };
            let (flag, size, link): (u8, u64, &[u8]) = match kind {
                EntryKind::File { size, .. } => (b'0', *size, &[]),
                EntryKind::Dir => {
                    if !go {
                        name.push(b'/');
                    }
                    (b'5', 0, &[])
                }
                EntryKind::Symlink { target } => (b'2', 0, target),
                EntryKind::HardLink { target } => (b'1', 0, target.as_bytes()),
                EntryKind::CharDevice { .. } => (b'3', 0, &[]),
                EntryKind::BlockDevice { .. } => (b'4', 0, &[]),
                EntryKind::Fifo => (b'6', 0, &[]),
                EntryKind::Whiteout | EntryKind::Opaque => unreachable!("handled above"),
            };
            (
                name,
                flag,
                match style {
                    HeaderStyle::GoPax { mode } => mode,
                    HeaderStyle::Strata => meta.mode & 0o7777,
                    HeaderStyle::Moby => meta.mode & 0o7777 | type_bits(kind),
                },
                meta.uid,
                meta.gid,
                meta.mtime,
                size,
                link,
            )
        }
    };

    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut block = [0u8; BLOCK];
    // Go PAX: the name is decided once we know whether any record forces PAX (below).
    let split = ustar_split(&name);
    if !go {
        match split {
            Some((prefix, base)) => {
                block[field::NAME][..base.len()].copy_from_slice(base);
                block[field::PREFIX][..prefix.len()].copy_from_slice(prefix);
            }
            None => {
                records.push(("path".into(), name.clone()));
                put_ascii(&mut block[field::NAME], &name);
            }
        }
    }
    if linkname.len() > 100 || !linkname.is_ascii() {
        records.push(("linkpath".into(), linkname.to_vec()));
    }
    if go {
        go_format_string(&mut block[field::LINKNAME], linkname);
    } else {
        put_ascii(&mut block[field::LINKNAME], linkname);
    }
    header::put_octal(&mut block[field::MODE], mode as u64);
    for (range, value, key) in [(field::UID, uid, "uid"), (field::GID, gid, "gid")] {
        if !header::put_octal(&mut block[range.clone()], value) {
            header::put_octal(&mut block[range], 0);
            records.push((key.into(), value.to_string().into_bytes()));
        }
    }
    if !header::put_octal(&mut block[field::SIZE], size) {
        header::put_octal(&mut block[field::SIZE], 0);
        records.push(("size".into(), size.to_string().into_bytes()));
    }
    let secs_fit = (0..=OCTAL11 as i64).contains(&mtime.secs);
    header::put_octal(
        &mut block[field::MTIME],
        if secs_fit { mtime.secs as u64 } else { 0 },
    );
    if !secs_fit || mtime.nanos != 0 {
        records.push(("mtime".into(), pax::format_time(mtime).into_bytes()));
    }
    if go {
        for (key, t) in [("atime", meta.atime), ("ctime", meta.ctime)] {
            if let Some(t) = t {
                records.push((key.into(), pax::format_time(t).into_bytes()));
            }
        }
    }
    if !matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque) {
        for (range, value, key) in [
            (field::UNAME, &meta.uname, "uname"),
            (field::GNAME, &meta.gname, "gname"),
        ] {
            if value.len() > 32 || !value.is_ascii() {
                records.push((key.into(), value.clone()));
            }
            put_ascii(&mut block[range], value);
        }
        for x in &meta.xattrs {
            let key = std::str::from_utf8(&x.name).map_err(|_| {
                Error::apply(
                    &entry.path,
                    format!(
                        "xattr name `{}` is not UTF-8 and cannot be a PAX key",
                        x.name.escape_ascii()
                    ),
                )
            })?;
            records.push((format!("SCHILY.xattr.{key}"), x.value.clone()));
        }
        for r in &entry.pax {
            records.push((r.key.clone(), r.value.clone()));
        }
    }
    if go {
        let long = name.len() > 100 || !name.is_ascii();
        match split {
            // Nothing but a splittable long name: Go falls back to ustar with a prefix.
            Some((prefix, base)) if records.is_empty() => {
                block[field::NAME][..base.len()].copy_from_slice(base);
                block[field::PREFIX][..prefix.len()].copy_from_slice(prefix);
            }
            _ => {
                if long {
                    records.push(("path".into(), name.clone()));
                }
                go_format_string(&mut block[field::NAME], &name);
            }
        }
    }
    block[field::TYPEFLAG] = typeflag;
    block[field::MAGIC].copy_from_slice(b"ustar\0");
    block[field::VERSION].copy_from_slice(b"00");
    let (major, minor) = match entry.kind {
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            (major as u64, minor as u64)
        }
        _ => (0, 0),
    };
    for (range, value) in [(field::DEVMAJOR, major), (field::DEVMINOR, minor)] {
        if value > OCTAL7 {
            header::put_base256(&mut block[range], value as i64);
        } else {
            header::put_octal(&mut block[range], value);
        }
    }
    header::set_checksum(&mut block);

    let mut out = Vec::with_capacity(BLOCK * 3);
    if !records.is_empty() {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut data = Vec::new();
        for (k, v) in &records {
            pax::push_record(&mut data, k, v);
        }
        out.extend_from_slice(&pax_header(&name, data.len() as u64));
        out.extend_from_slice(&data);
        out.resize(out.len() + header::padding(data.len() as u64) as usize, 0);
    }
    out.extend_from_slice(&block);
    Ok(out)
}

/// `dir/.wh.name` for a whiteout, `dir/.wh..wh..opq` for an opaque directory.
fn whiteout_name(entry: &Entry) -> Result<Vec<u8>, Error> {
    let (dir, marker): (LayerPath, Vec<u8>) = match entry.kind {
        EntryKind::Whiteout => {
            let name = entry
                .path
                .file_name()
                .ok_or_else(|| Error::apply(&entry.path, "a whiteout cannot delete the root"))?;
            (
                entry.path.parent().unwrap_or_default(),
                [b".wh.", name].concat(),
            )
        }
        _ => (entry.path.clone(), b".wh..wh..opq".to_vec()),
    };
    let mut name = dir.as_bytes().to_vec();
    if !name.is_empty() {
        name.push(b'/');
    }
    name.extend_from_slice(&marker);
    Ok(name)
}

/// Splits a name into ustar (prefix, name) fields, or `None` if it needs a PAX path.
fn ustar_split(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // The prefix ends at a slash; the rest (without that slash) must fit 100 bytes.
    let limit = name.len().min(156);
    let slash = name[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..slash], &name[slash + 1..]);
    (!rest.is_empty() && rest.len() <= 100 && prefix.len() <= 155).then_some((prefix, rest))
}

/// Copies the ASCII bytes of `value` into a header field, truncated (Go's `toASCII`).
fn put_ascii(field: &mut [u8], value: &[u8]) {
    for (dst, src) in field.iter_mut().zip(value.iter().filter(|b| b.is_ascii())) {
        *dst = *src;
    }
}

/// Go's PAX name fields: the ASCII bytes of `value`, cut to the field; when the cut ends in
/// `/`, the NUL goes where the run of trailing slashes starts (bytes after it stay).
fn go_format_string(field: &mut [u8], value: &[u8]) {
    let ascii: Vec<u8> = value.iter().copied().filter(u8::is_ascii).collect();
    let n = ascii.len().min(field.len());
    field[..n].copy_from_slice(&ascii[..n]);
    if ascii.len() > field.len() && field[field.len() - 1] == b'/' {
        let kept = field.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

/// The `x` header that precedes an entry's PAX records.
fn pax_header(name: &[u8], size: u64) -> [u8; BLOCK] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let full = [dir, b"PaxHeaders.0/", base].concat();
    let ascii: Vec<u8> = full
        .into_iter()
        .filter(|b| b.is_ascii())
        .take(100)
        .collect();
    let ascii = ascii.strip_suffix(b"/").unwrap_or(&ascii);
    let mut block = [0u8; BLOCK];
    block[..ascii.len()].copy_from_slice(ascii);
    header::put_octal(&mut block[field::MODE], 0);
    header::put_octal(&mut block[field::UID], 0);
    header::put_octal(&mut block[field::GID], 0);
    header::put_octal(&mut block[field::SIZE], size);
    header::put_octal(&mut block[field::MTIME], 0);
    block[field::TYPEFLAG] = b'x';
    block[field::MAGIC].copy_from_slice(b"ustar\0");
    block[field::VERSION].copy_from_slice(b"00");
    header::set_checksum(&mut block);
    block
}
