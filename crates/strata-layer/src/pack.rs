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

mod stream;

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::compress::{Compression, Compressor};
use crate::digest::{Digest, Hasher};
use crate::dir_reader::{DirReader, OpenFile};
use crate::tar::TarWriter;
use crate::{EntryKind, Error, LayerReader, LayerWriter};
use stream::StreamWriter;

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
///
/// The walk (listing, stat, xattrs, headers) runs on this thread, hashing and writing on
/// another; file data is read by whichever of the two is free (see `stream.rs`).
pub fn pack<W: Write + Send>(
    root: &Path,
    out: W,
    compression: Compression,
) -> Result<PackSummary, Error> {
    let mut reader = DirReader::open(root)?;
    let root = reader.root().to_path_buf();
    let (mut summary, late) =
        pack_stream(&mut reader, &root, out, compression, DirReader::take_file)?;
    summary.warnings = reader.warnings().to_vec();
    summary.warnings.extend(late);
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
    let mut reader = reader;
    let (summary, _) = pack_stream(&mut reader, Path::new(""), out, compression, |_| None)?;
    Ok(summary)
}

/// The pipeline of [`pack`] and [`pack_entries`]. `hand_over` may take a small regular
/// file's open fd from the reader (right after its entry, before any data was read) for
/// the output thread to read; it is asked only while that thread has little to do.
/// Warnings about such files come back with the summary.
fn pack_stream<R: LayerReader, W: Write + Send>(
    reader: &mut R,
    root: &Path,
    out: W,
    compression: Compression,
    mut hand_over: impl FnMut(&mut R) -> Option<OpenFile>,
) -> Result<(PackSummary, Vec<String>), Error> {
    let tar = Hasher::default();
    // Uncompressed, the blob is the tar: hash it once.
    let blob = if compression == Compression::None {
        tar.clone()
    } else {
        Hasher::default()
    };
    // Uncompressed, the output gets the stream's chunks as they are: no copy into a buffer.
    let sink: Box<dyn Write + Send> = if compression == Compression::None {
        Box::new(out)
    } else {
        Box::new(blob.writer(BufWriter::with_capacity(1 << 20, out)))
    };
    let compressor =
        Compressor::new(sink, compression).map_err(|e| Error::io("starting compression", e))?;
    let warnings = std::thread::scope(|s| {
        let mut stream = stream::spawn(s, root, tar.writer(compressor));
        let written = write_entries(reader, &mut stream, &mut hand_over);
        // An error of the output thread explains a failed write better than the broken
        // pipe the walk saw.
        let (hashing, warnings) = match (written, stream.finish()) {
            (Ok(()), Ok(done)) => done,
            (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
        };
        let mut out = hashing
            .into_inner()
            .finish()
            .map_err(|e| Error::io("finishing compression", e))?;
        out.flush().map_err(|e| Error::io("writing the layer", e))?;
        Ok(warnings)
    })?;
    let summary = PackSummary {
        diff_id: tar.digest(),
        tar_bytes: tar.bytes(),
        blob_digest: blob.digest(),
        blob_bytes: blob.bytes(),
        warnings: Vec::new(),
    };
    Ok((summary, warnings))
}

/// Moves every entry of `reader` into the tar stream, file data straight into its chunks.
fn write_entries<R: LayerReader, W>(
    reader: &mut R,
    stream: &mut StreamWriter<'_, W>,
    hand_over: &mut impl FnMut(&mut R) -> Option<OpenFile>,
) -> Result<(), Error> {
    let mut tar = TarWriter::new(&mut *stream);
    let mut buf = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        tar.add(&entry)?;
        match entry.kind {
            EntryKind::File { size, sparse: None } if size > 0 => {
                if size <= stream::HOLE_MAX && tar.get_ref().output_idle() {
                    if let Some(file) = hand_over(reader) {
                        tar.write_data_with(|out, _| out.leave_hole(file))?;
                        continue;
                    }
                }
                while tar.write_data_with(|out, left| {
                    out.read_in(left, |chunk| reader.read_data(chunk))
                })? > 0
                {}
            }
            ref kind if kind.data_len() > 0 => {
                // Sparse: the tar writer fills the holes between extents.
                buf.resize(256 * 1024, 0);
                loop {
                    let n = reader.read_data(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    tar.write_data(&buf[..n])?;
                }
            }
            _ => {}
        }
    }
    tar.finish()?;
    Ok(())
}
