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
    let (mut summary, late) = pack_stream(
        &mut reader,
        &root,
        out,
        compression,
        DirReader::take_file,
        Holes::WhenIdle,
    )?;
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
    let (summary, _) = pack_stream(
        &mut reader,
        Path::new(""),
        out,
        compression,
        |_| None,
        Holes::Never,
    )?;
    Ok(summary)
}

/// When the walk leaves a small file for the output thread to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holes {
    Never,
    /// While the output thread has little queued.
    WhenIdle,
    /// Tests: every file that may be.
    #[cfg(test)]
    Always,
}

/// The pipeline of [`pack`] and [`pack_entries`]. `hand_over` may take a small regular
/// file's open fd from the reader (right after its entry, before any data was read) for
/// the output thread to read; it is asked when `holes` says so. Warnings about such
/// files come back with the summary.
fn pack_stream<R: LayerReader, W: Write + Send>(
    reader: &mut R,
    root: &Path,
    out: W,
    compression: Compression,
    mut hand_over: impl FnMut(&mut R) -> Option<OpenFile>,
    holes: Holes,
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
        let written = write_entries(reader, &mut stream, &mut hand_over, holes);
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
    holes: Holes,
) -> Result<(), Error> {
    let mut tar = TarWriter::new(&mut *stream);
    let mut buf = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        tar.add(&entry)?;
        match entry.kind {
            EntryKind::File { size, sparse: None } if size > 0 => {
                let leave = match holes {
                    Holes::Never => false,
                    Holes::WhenIdle => tar.get_ref().output_idle(),
                    #[cfg(test)]
                    Holes::Always => true,
                };
                if size <= stream::HOLE_MAX && leave {
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::digest::sha256;

    /// Many small files (sizes around the block size), files at the hole limit, one
    /// larger than a chunk, xattrs longer than the first xattr buffers, hard links,
    /// symlinks and nested directories.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for d in 0..7 {
            let dir = p.join(format!("d{d}"));
            fs::create_dir(&dir).unwrap();
            for i in 0..60usize {
                let size = [0, 1, 511, 512, 513, 1000 * i][i % 6];
                let byte = (d * 60 + i) as u8;
                fs::write(dir.join(format!("f{i:02}")), vec![byte; size]).unwrap();
            }
        }
        let limit = stream::HOLE_MAX as usize;
        fs::write(p.join("at-limit"), vec![b'l'; limit]).unwrap();
        fs::write(p.join("over-limit"), vec![b'o'; limit + 1]).unwrap();
        let big: Vec<u8> = (0..3 * (1 << 20) + 77).map(|i| (i % 251) as u8).collect();
        fs::write(p.join("d3/big"), big).unwrap();
        let f = fs::File::open(p.join("d2/f05")).unwrap();
        let flags = rustix::fs::XattrFlags::empty();
        for i in 0..20 {
            rustix::fs::fsetxattr(&f, format!("user.attribute-{i:02}"), b"v", flags).unwrap();
        }
        rustix::fs::fsetxattr(&f, "user.long", &[b'x'; 1500][..], flags).unwrap();
        fs::hard_link(p.join("d1/f04"), p.join("d6/link-to-f04")).unwrap();
        symlink("../d1/f04", p.join("d0/sym")).unwrap();
        t
    }

    /// The tar of `root` through the plain path: the reader's data copied into the tar
    /// writer in small buffers, on one thread.
    fn plain_tar(root: &Path) -> Vec<u8> {
        crate::copy(DirReader::open(root).unwrap(), TarWriter::new(Vec::new())).unwrap()
    }

    fn pack_with(root: &Path, compression: Compression, holes: Holes) -> (PackSummary, Vec<u8>) {
        let mut reader = DirReader::open(root).unwrap();
        let mut out = Vec::new();
        let (summary, late) = pack_stream(
            &mut reader,
            root,
            &mut out,
            compression,
            DirReader::take_file,
            holes,
        )
        .unwrap();
        assert!(late.is_empty(), "{late:?}");
        assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());
        (summary, out)
    }

    #[test]
    fn the_tar_is_the_same_whichever_thread_reads_the_files() {
        let t = tree();
        let want = plain_tar(t.path());
        for holes in [Holes::Never, Holes::WhenIdle, Holes::Always] {
            let (s, got) = pack_with(t.path(), Compression::None, holes);
            assert!(
                got == want,
                "{holes:?}: the packed tar differs from the plain one"
            );
            assert_eq!(s.diff_id, sha256(&want), "{holes:?}");
            assert_eq!(s.tar_bytes, want.len() as u64);
            assert_eq!((s.blob_digest, s.blob_bytes), (s.diff_id, s.tar_bytes));
        }
        let (s, blob) = pack_with(t.path(), Compression::Gzip, Holes::Always);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert!(tar == want, "the gzip blob does not hold the plain tar");
        assert_eq!(s.diff_id, sha256(&want));
        assert_eq!(
            (s.blob_digest, s.blob_bytes),
            (sha256(&blob), blob.len() as u64)
        );
        // The public entry points give the same bytes.
        let mut out = Vec::new();
        pack(t.path(), &mut out, Compression::None).unwrap();
        assert!(out == want, "pack differs from the plain tar");
        let mut out = Vec::new();
        pack_entries(
            DirReader::open(t.path()).unwrap(),
            &mut out,
            Compression::None,
        )
        .unwrap();
        assert!(out == want, "pack_entries differs from the plain tar");
    }

    #[test]
    fn a_file_read_by_the_output_thread_that_changed_is_an_error_or_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::write(p.join("grows"), vec![b'g'; 100]).unwrap();
        fs::write(p.join("shrinks"), vec![b's'; 100]).unwrap();
        let mut reader = DirReader::open(p).unwrap();

        reader.next_entry().unwrap().unwrap();
        let file = reader.take_file().unwrap();
        assert_eq!(
            reader.read_data(&mut [0; 8]).unwrap(),
            0,
            "the data went with the file"
        );
        fs::write(p.join("grows"), vec![b'G'; 200]).unwrap();
        let mut chunk = vec![0xAA; 300];
        let mut warnings = Vec::new();
        stream::fill_hole(&mut chunk, stream::Hole { at: 10, file }, p, &mut warnings).unwrap();
        assert_eq!(&chunk[10..110], &[b'G'; 100][..]);
        assert_eq!(chunk[110], 0xAA, "the byte after the hole is put back");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("`grows` grew"), "{warnings:?}");

        reader.next_entry().unwrap().unwrap();
        let file = reader.take_file().unwrap();
        fs::write(p.join("shrinks"), vec![b's'; 10]).unwrap();
        let err = stream::fill_hole(&mut chunk, stream::Hole { at: 0, file }, p, &mut warnings)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`shrinks`") && err.contains("changed"),
            "{err}"
        );
        assert!(err.contains("10 of the 100"), "{err}");
    }
}
