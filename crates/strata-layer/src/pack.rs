//! Packing a directory into a layer tar, optionally compressed, with both digests
//! computed on the way out.
//!
//! ```no_run
//! use strata_layer::{compress::Compression, pack::pack};
//! # fn main() -> Result<(), strata_layer::Error> {
//! let out = std::fs::File::create("layer.tar.zst").unwrap();
//! let summary = pack("/tmp/rootfs".as_ref(), out, Compression::Zstd)?;
//! println!("diffID {} blob {} ({} bytes)", summary.diff_id, summary.blob_digest, summary.blob_bytes);
//! # Ok(()) }
//! ```

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::compress::{Compression, Compressor};
use crate::digest::{Digest, Hasher};
use crate::dir_reader::DirReader;
use crate::tar::TarWriter;
use crate::{copy, pipe, Error, LayerReader};

/// What a pack produced.
#[derive(Debug, Clone)]
pub struct PackSummary {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The size of the uncompressed tar.
    pub tar_bytes: u64,
    /// sha256 and size of the bytes written (equal to the above when uncompressed).
    pub blob_digest: Digest,
    /// The size of the bytes written.
    pub blob_bytes: u64,
    /// Things skipped (sockets), one sentence each ([`pack`] only; a caller of
    /// [`pack_entries`] asks its reader).
    pub warnings: Vec<String>,
}

/// Writes the tree at `root` as a layer tar to `out`; the root itself is not an entry.
/// The same tree always gives the same bytes ([`DirReader`] order, [`TarWriter`] encoding).
pub fn pack<W: Write + Send>(
    root: &Path,
    out: W,
    compression: Compression,
) -> Result<PackSummary, Error> {
    let mut reader = DirReader::open(root)?;
    let mut summary = pack_entries(&mut reader, out, compression)?;
    summary.warnings = reader.warnings().to_vec();
    Ok(summary)
}

/// Writes the entries of any `reader` as a layer tar to `out`, compressed as asked, with
/// both digests computed on the way. The reader runs on this thread; hashing, compression
/// and writing on another.
pub fn pack_entries<R: LayerReader, W: Write + Send>(
    reader: R,
    out: W,
    compression: Compression,
) -> Result<PackSummary, Error> {
    let tar = Hasher::default();
    // Uncompressed, the blob is the tar: hash it once.
    let blob = if compression == Compression::None {
        tar.clone()
    } else {
        Hasher::default()
    };
    let sink = BufWriter::with_capacity(1 << 20, out);
    let sink: Box<dyn Write + Send> = if compression == Compression::None {
        Box::new(sink)
    } else {
        Box::new(blob.writer(sink))
    };
    let compressor =
        Compressor::new(sink, compression).map_err(|e| Error::io("starting compression", e))?;
    std::thread::scope(|s| {
        let stream = pipe::spawn_writer(s, tar.writer(compressor));
        let stream = copy(reader, TarWriter::new(stream))?;
        let compressor = stream
            .finish()
            .map_err(|e| Error::io("writing the layer", e))?
            .into_inner();
        let mut out = compressor
            .finish()
            .map_err(|e| Error::io("finishing compression", e))?;
        out.flush().map_err(|e| Error::io("writing the layer", e))
    })?;
    Ok(PackSummary {
        diff_id: tar.digest(),
        tar_bytes: tar.bytes(),
        blob_digest: blob.digest(),
        blob_bytes: blob.bytes(),
        warnings: Vec::new(),
    })
}
