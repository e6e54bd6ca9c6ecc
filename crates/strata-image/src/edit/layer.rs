//! New layers for `append`: a directory packed deterministically, or a tar file (plain,
//! gzip or zstd) taken as it is, its entries checked, compressed as asked.
//!
//! Each becomes a blob file whose digests are known before the copy starts (a layer is
//! named by its digest in the manifest and by its diffID in the config): a packed
//! directory or a recompressed tar is written to staging; a tar already in the asked
//! compression is used where it lies, not copied.
//!
//! On a Windows base a layer must be a Windows layer (`Files/`, `Hives/`, the PAX
//! `MSWINDOWS.*` records, every parent directory listed): a directory, or a Linux tar, is
//! packed first and then turned into one ([`strata_wclayer::windowsify`], BuildKit's
//! security descriptors); a tar that is a Windows layer already (its first entry `Files`
//! or `Hives`) is taken as it is.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::compress::{open_blob, Compression, Compressor, Decompressor};
use strata_layer::digest::Hasher;
use strata_layer::dir_reader::DirReader;
use strata_layer::tar::TarReader;
use strata_layer::{Entry, LayerReader, Timestamp};
use strata_store::Os;
use strata_wclayer::windowsify::{windowsify, SecurityChoice};

use crate::ids::{DiffId, Digest};
use crate::stream::pump;
use crate::Error;

/// A layer ready to be added: the blob file and its digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedLayer {
    /// The blob (in staging, or the caller's own file).
    pub path: PathBuf,
    /// How the blob is compressed.
    pub compression: Compression,
    /// The blob's digest (its descriptor's).
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar (the config's diffID).
    pub diff_id: DiffId,
    /// `strata append NAME` for the history (the file name only: the same input in
    /// another directory gives the same config).
    pub created_by: String,
    /// Things skipped while packing (sockets), one sentence each.
    pub warnings: Vec<String>,
}

/// Packs `input` (a directory or a tar file) into a blob compressed as `compression`,
/// in `staging` (as `layer-N`) where it must be written; for `os` Windows, as a Windows
/// layer. With `clamp`, file times later than it are set to it (SOURCE_DATE_EPOCH, as
/// BuildKit's rewrite-timestamp does).
pub fn prepare(
    input: &Path,
    n: usize,
    staging: &Path,
    compression: Compression,
    clamp: Option<i64>,
    os: Os,
) -> Result<PreparedLayer, Error> {
    let meta = std::fs::metadata(input)
        .map_err(|e| Error::io(format!("cannot read layer {}", input.display()), e))?;
    let name = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let created_by = format!("strata append {name}");
    let out_path = staging.join(if n == usize::MAX {
        "merged".to_string()
    } else {
        format!("layer-{n}")
    });
    let create = || {
        File::create(&out_path)
            .map_err(|e| Error::io(format!("cannot create {}", out_path.display()), e))
    };
    if os == Os::Windows && (meta.is_dir() || meta.is_file() && !is_windows_layer(input)?) {
        return prepare_windows(
            input,
            meta.is_dir(),
            &out_path,
            compression,
            clamp,
            created_by,
        );
    }
    if meta.is_dir() {
        let mut reader = Clamped {
            inner: DirReader::open(input)?,
            clamp,
        };
        let packed = strata_layer::pack::pack_entries(&mut reader, create()?, compression)?;
        return Ok(PreparedLayer {
            path: out_path,
            compression,
            digest: packed.blob_digest,
            size: packed.blob_bytes,
            diff_id: DiffId(packed.diff_id),
            created_by,
            warnings: reader.inner.warnings().to_vec(),
        });
    }
    if !meta.is_file() {
        return Err(Error::invalid(
            input.display().to_string(),
            "is neither a directory nor a tar file",
        ));
    }
    let what = format!("layer {}", input.display());
    let open = || File::open(input).map_err(|e| Error::io(format!("cannot open {what}"), e));
    let (tar, given) = open_blob(open()?).map_err(|e| Error::io(format!("reading {what}"), e))?;
    let given_compression = tar.compression();
    let keep = given_compression == compression;
    let tar_hash = Hasher::default();
    let blob_hash = Hasher::default();
    // The tar passes through the tar reader (which checks every header) on its way to
    // the hasher and, when it is recompressed, to the compressor.
    if keep {
        check_tar(tar, tar_hash.writer(io::sink()), &what)?;
        let diff_id = DiffId(tar_hash.digest());
        let (digest, size) = match given {
            Some(h) => (h.digest(), h.bytes()),
            None => (tar_hash.digest(), tar_hash.bytes()),
        };
        return Ok(PreparedLayer {
            path: input.to_path_buf(),
            compression,
            digest,
            size,
            diff_id,
            created_by,
            warnings: Vec::new(),
        });
    }
    let out = BufWriter::with_capacity(1 << 20, blob_hash.writer(create()?));
    let c = Compressor::new(out, compression).map_err(|e| Error::io("starting compression", e))?;
    let c = check_tar(tar, tar_hash.writer(c), &what)?.into_inner();
    c.finish()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io(format!("writing {}", out_path.display()), e))?;
    Ok(PreparedLayer {
        path: out_path,
        compression,
        digest: blob_hash.digest(),
        size: blob_hash.bytes(),
        diff_id: DiffId(tar_hash.digest()),
        created_by,
        warnings: Vec::new(),
    })
}

/// Whether the tar file `input` (plain, gzip or zstd) is a Windows layer already: its
/// first entry is `Files` or `Hives`, as every Windows layer writer puts them.
fn is_windows_layer(input: &Path) -> Result<bool, Error> {
    let what = format!("layer {}", input.display());
    let file = File::open(input).map_err(|e| Error::io(format!("cannot open {what}"), e))?;
    let tar = Decompressor::new(file).map_err(|e| Error::io(format!("reading {what}"), e))?;
    let first = TarReader::new(tar)
        .next_entry()
        .map_err(|e| Error::invalid(&what, format!("it is not a valid tar ({e})")))?;
    Ok(first.is_some_and(|e| matches!(e.path.as_bytes(), b"Files" | b"Hives")))
}

/// A directory or a Linux tar made a Windows layer: a directory is packed to a plain tar
/// in staging first (removed once read), then [`windowsify`] writes the Windows tar
/// through the diffID hasher, the compressor and the blob hasher.
fn prepare_windows(
    input: &Path,
    is_dir: bool,
    out_path: &Path,
    compression: Compression,
    clamp: Option<i64>,
    created_by: String,
) -> Result<PreparedLayer, Error> {
    let mut warnings = Vec::new();
    let linux_tar = out_path.with_extension("linux.tar");
    let linux = if is_dir {
        let mut reader = Clamped {
            inner: DirReader::open(input)?,
            clamp,
        };
        let file = File::create(&linux_tar)
            .map_err(|e| Error::io(format!("cannot create {}", linux_tar.display()), e))?;
        strata_layer::pack::pack_entries(&mut reader, BufWriter::new(file), Compression::None)?;
        warnings = reader.inner.warnings().to_vec();
        linux_tar.as_path()
    } else {
        input
    };
    let what = format!("layer {}", input.display());
    let tar =
        File::open(linux).map_err(|e| Error::io(format!("cannot open {}", linux.display()), e))?;
    let file = File::create(out_path)
        .map_err(|e| Error::io(format!("cannot create {}", out_path.display()), e))?;
    let tar_hash = Hasher::default();
    let blob_hash = Hasher::default();
    let out = BufWriter::with_capacity(1 << 20, blob_hash.writer(file));
    let c = Compressor::new(out, compression).map_err(|e| Error::io("starting compression", e))?;
    let mut hashed = tar_hash.writer(c);
    windowsify(tar, &mut hashed, &SecurityChoice::BuildKit)
        .map_err(|e| Error::invalid(&what, format!("cannot be made a Windows layer: {e}")))?;
    hashed
        .into_inner()
        .finish()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io(format!("writing {}", out_path.display()), e))?;
    if is_dir {
        std::fs::remove_file(&linux_tar)
            .map_err(|e| Error::io(format!("cannot remove {}", linux_tar.display()), e))?;
    }
    Ok(PreparedLayer {
        path: out_path.to_path_buf(),
        compression,
        digest: blob_hash.digest(),
        size: blob_hash.bytes(),
        diff_id: DiffId(tar_hash.digest()),
        created_by,
        warnings,
    })
}

/// Reads the tar `tar` to its end through a tar reader (every header checked), writing
/// every byte to `sink`, which it gives back.
fn check_tar<R: Read, W: Write>(tar: R, sink: W, what: &str) -> Result<W, Error> {
    let mut tee = Tee { inner: tar, sink };
    {
        let mut reader = TarReader::new(&mut tee);
        while reader
            .next_entry()
            .map_err(|e| Error::invalid(what, format!("it is not a valid tar ({e})")))?
            .is_some()
        {}
    }
    pump(&mut tee, &mut io::sink()).map_err(|e| Error::io(format!("reading {what}"), e))?;
    Ok(tee.sink)
}

/// Reads `inner` and writes what it read to `sink`.
struct Tee<R, W> {
    inner: R,
    sink: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        if n == 0 && !buf.is_empty() {
            self.sink.flush()?;
        }
        Ok(n)
    }
}

/// A directory's entries with times later than `clamp` set to it.
struct Clamped {
    inner: DirReader,
    clamp: Option<i64>,
}

impl LayerReader for Clamped {
    fn next_entry(&mut self) -> Result<Option<Entry>, strata_layer::Error> {
        let mut entry = self.inner.next_entry()?;
        if let (Some(e), Some(limit)) = (&mut entry, self.clamp) {
            let limit = Timestamp::new(limit, 0);
            let m = &mut e.meta;
            if m.mtime > limit {
                m.mtime = limit;
            }
            for t in [&mut m.atime, &mut m.ctime].into_iter().flatten() {
                if *t > limit {
                    *t = limit;
                }
            }
        }
        Ok(entry)
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, strata_layer::Error> {
        self.inner.read_data(buf)
    }
}
