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

    /// Parses a digest, the one parser of the workspace. It checks the whole OCI grammar
    /// (`algorithm ":" encoded`, algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`, encoded
    /// `[a-zA-Z0-9=_-]+`) and then the algorithm's own rule. Only `sha256` (64
    /// lowercase hex digits) can be verified by Strata; a well-formed digest of another
    /// algorithm is refused as unsupported. Every digest is checked before it is used
    /// for anything, a path above all (docker CVE-2014-9358 used crafted IDs as paths).
    ///
    /// ```
    /// use strata_layer::digest::Digest;
    /// let d = Digest::parse("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef").unwrap();
    /// assert_eq!(d.hex().len(), 64);
    /// let e = Digest::parse("sha256:../../etc/passwd").unwrap_err();
    /// assert_eq!(e.to_string(), "invalid digest `sha256:../../etc/passwd`: the encoded part must match [a-zA-Z0-9=_-]+");
    /// ```
    pub fn parse(value: &str) -> Result<Digest, BadDigest> {
        let bad = |reason| BadDigest {
            value: value.escape_debug().to_string(),
            reason,
        };
        let (alg, encoded) = value
            .split_once(':')
            .ok_or_else(|| bad("it has no `algorithm:` prefix"))?;
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !alg_ok {
            return Err(bad("the algorithm must match [a-z0-9]+([+._-][a-z0-9]+)*"));
        }
        if encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        {
            return Err(bad("the encoded part must match [a-zA-Z0-9=_-]+"));
        }
        match alg {
            "sha256" if encoded.len() == 64 && is_lower_hex(encoded) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(encoded, &mut out)
                    .map_err(|_| bad("sha256 needs exactly 64 lowercase hex digits"))?;
                Ok(Digest(out))
            }
            "sha256" => Err(bad("sha256 needs exactly 64 lowercase hex digits")),
            "sha512" if encoded.len() != 128 || !is_lower_hex(encoded) => {
                Err(bad("sha512 needs exactly 128 lowercase hex digits"))
            }
            _ => Err(bad("only sha256 digests are supported")),
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A digest string that [`Digest::parse`] refused: it breaks the OCI grammar, or names
/// an algorithm Strata cannot verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest `{value}`: {reason}")]
pub struct BadDigest {
    /// The string as given, escaped for printing.
    pub value: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl std::str::FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Digest, BadDigest> {
        Digest::parse(s)
    }
}

/// The sha256 of some bytes held in memory (a config, a manifest); streams are hashed
/// as they flow, with a [`Hasher`].
///
/// ```
/// assert_eq!(strata_layer::digest::sha256(b"").to_string(),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
/// ```
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
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
    pub(crate) fn update(&self, data: &[u8]) {
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
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        assert!(Digest::parse("sha256:ABC").is_err());
    }
}
