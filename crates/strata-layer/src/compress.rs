//! Compression: detect gzip and zstd by magic when reading, compress when writing.
//!
//! ```
//! use std::io::{Read, Write};
//! use strata_layer::compress::{Compression, Compressor, Decompressor};
//! let mut c = Compressor::new(Vec::new(), Compression::Zstd).unwrap();
//! c.write_all(b"layer bytes").unwrap();
//! let blob = c.finish().unwrap();
//! let mut d = Decompressor::new(&blob[..]).unwrap();
//! assert_eq!(d.compression(), Compression::Zstd);
//! let mut out = String::new();
//! d.read_to_string(&mut out).unwrap();
//! assert_eq!(out, "layer bytes");
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;

use crate::digest::Hasher;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
        {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

const BUF: usize = 256 * 1024;

enum Inner<R: Read> {
    Plain(BufReader<R>),
    /// The current gzip member; `None` between members.
    Gzip(Option<Box<GzDecoder<BufReader<R>>>>, Option<BufReader<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

/// Decompresses whatever it is given: plain, gzip (every member, then any trailing bytes
/// are read and ignored, as generators append NULs) or zstd (every frame).
pub struct Decompressor<R: Read> {
    inner: Inner<R>,
    compression: Compression,
}

impl<R: Read> Decompressor<R> {
    pub fn new(input: R) -> io::Result<Self> {
        let mut buf = BufReader::with_capacity(BUF, input);
        let compression = Compression::detect(buf.fill_buf()?);
        let inner = match compression {
            Compression::None => Inner::Plain(buf),
            Compression::Gzip => Inner::Gzip(Some(Box::new(GzDecoder::new(buf))), None),
            Compression::Zstd => Inner::Zstd(zstd::stream::read::Decoder::with_buffer(buf)?),
        };
        Ok(Decompressor { inner, compression })
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(r) => r.read(out),
            Inner::Zstd(r) => r.read(out),
            Inner::Gzip(member, rest) => loop {
                if let Some(dec) = member {
                    let n = dec.read(out)?;
                    if n > 0 || out.is_empty() {
                        return Ok(n);
                    }
                    *rest = member.take().map(|m| m.into_inner());
                }
                let Some(src) = rest else { return Ok(0) };
                if src.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
                    *member = rest.take().map(|r| Box::new(GzDecoder::new(r)));
                    continue;
                }
                // Not another member: read the rest so the blob digest covers it, then end.
                io::copy(src, &mut io::sink())?;
                *rest = None;
                return Ok(0);
            },
        }
    }
}

/// The decompressor [`open_blob`] returns.
pub type BlobDecompressor<'a> = Decompressor<Box<dyn Read + Send + 'a>>;

/// Opens a layer blob: returns its decompressed (tar) stream and, when the blob is
/// compressed, a [`Hasher`] that sees the blob's own bytes. An uncompressed blob's digest
/// is its tar digest, so it is not hashed twice.
pub fn open_blob<'a, R: Read + Send + 'a>(
    input: R,
) -> io::Result<(BlobDecompressor<'a>, Option<Hasher>)> {
    let mut buf = BufReader::with_capacity(BUF, input);
    let (source, blob): (Box<dyn Read + Send + 'a>, _) = match Compression::detect(buf.fill_buf()?)
    {
        Compression::None => (Box::new(buf), None),
        _ => {
            let h = Hasher::default();
            (Box::new(h.reader(buf)), Some(h))
        }
    };
    Ok((Decompressor::new(source)?, blob))
}

/// Compresses what is written to it; [`finish`](Compressor::finish) ends the stream.
pub enum Compressor<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// gzip at level 6 (the default of gzip and Go); zstd at level 3 on two threads.
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::Plain(out),
            Compression::Gzip => Compressor::Gzip(GzEncoder::new(out, flate2::Compression::new(6))),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
                enc.multithread(2)?;
                Compressor::Zstd(enc)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_reads_every_member_and_ignores_trailing_nuls() {
        let mut blob = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut c = Compressor::new(Vec::new(), Compression::Gzip).unwrap();
            c.write_all(part).unwrap();
            blob.extend(c.finish().unwrap());
        }
        blob.extend([0u8; 100]);
        let mut out = String::new();
        Decompressor::new(&blob[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");
    }

    #[test]
    fn plain_input_passes_through() {
        let mut d = Decompressor::new(&b"plain tar bytes"[..]).unwrap();
        assert_eq!(d.compression(), Compression::None);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"plain tar bytes");
    }
}
