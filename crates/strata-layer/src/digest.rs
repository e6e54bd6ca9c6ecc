//! Digests computed while bytes stream past: no second pass over a layer.
//!
//! A [`Hasher`] is a shared sha256 state plus a byte count. Wrap a stream with
//! [`Hasher::reader`] or [`Hasher::writer`], let the bytes flow, then ask the hasher
//! for the [`Digest`]. One hasher over the uncompressed tar gives the diffID; another
//! over the compressed blob gives the blob digest and size, in the same pass.
//!
//! ```
//! use std::io::Write;
//! use strata_layer::digest::Hasher;
//! let h = Hasher::default();
//! h.writer(Vec::new()).write_all(&[0u8; 1024]).unwrap();
//! assert_eq!(h.digest().to_string(),
//!     "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
//! assert_eq!(h.bytes(), 1024);
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// A sha256 digest, shown as `sha256:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let h = s.strip_prefix("sha256:")?;
        if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Default)]
struct State {
    sha: Sha256,
    bytes: u64,
}

/// A shared running sha256 and byte count; clones observe the same state.
#[derive(Clone, Default)]
pub struct Hasher(Arc<Mutex<State>>);

impl Hasher {
    fn update(&self, data: &[u8]) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.sha.update(data);
        s.bytes += data.len() as u64;
    }

    /// A reader that hashes every byte read through it.
    pub fn reader<R: Read>(&self, inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: self.clone(),
        }
    }

    /// A writer that hashes every byte written through it.
    pub fn writer<W: Write>(&self, inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: self.clone(),
        }
    }

    /// The digest of everything seen so far.
    pub fn digest(&self) -> Digest {
        let s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Digest(s.sha.clone().finalize().into())
    }

    /// How many bytes were seen.
    pub fn bytes(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }
}

/// A reader that feeds every byte it reads to its [`Hasher`] ([`Hasher::reader`]).
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that feeds every byte it writes to its [`Hasher`] ([`Hasher::writer`]).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// The output, for the caller to finish (the hasher keeps what it saw).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The digests of a layer blob, as [`digest_layer`] computes them.
#[derive(Debug, Clone)]
pub struct LayerDigests {
    /// The compression detected from the blob's first bytes.
    pub compression: crate::compress::Compression,
    /// sha256 of the uncompressed tar: the diffID.
    pub diff_id: Digest,
    /// The size of the uncompressed tar.
    pub tar_bytes: u64,
    /// sha256 and size of the blob as given.
    pub blob_digest: Digest,
    /// The size of the blob as given.
    pub blob_bytes: u64,
}

/// Reads a layer blob (plain, gzip or zstd) to its end and returns its diffID and blob
/// digest, both from one pass.
pub fn digest_layer<R: Read + Send>(input: R) -> Result<LayerDigests, crate::Error> {
    let tar = Hasher::default();
    let (mut decompressor, blob) =
        crate::compress::open_blob(input).map_err(|e| crate::Error::io("reading the layer", e))?;
    let compression = decompressor.compression();
    io::copy(&mut decompressor, &mut tar.writer(io::sink()))
        .map_err(|e| crate::Error::io("decompressing the layer", e))?;
    let blob = blob.unwrap_or_else(|| tar.clone());
    Ok(LayerDigests {
        compression,
        diff_id: tar.digest(),
        tar_bytes: tar.bytes(),
        blob_digest: blob.digest(),
        blob_bytes: blob.bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_and_writer_agree_and_parse_round_trips() {
        let (a, b) = (Hasher::default(), Hasher::default());
        let mut sink = Vec::new();
        std::io::copy(&mut a.reader(&b"hello"[..]), &mut b.writer(&mut sink)).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(sink, b"hello");
        let d = a.digest();
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("sha256:ABC"), None);
    }
}
