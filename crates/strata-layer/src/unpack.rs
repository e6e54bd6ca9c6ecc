//! Unpacking a layer tar (plain, gzip or zstd) into a directory, in one streaming pass
//! that also computes the diffID and the blob digest and, optionally, records a recipe.
//!
//! The writing runs on a thread of its own that first confines itself with Landlock
//! ([`crate::sandbox`]) to the target root: even a bug in path resolution could then not
//! write outside it. The calling thread stays unconfined.
//!
//! ```no_run
//! use strata_layer::unpack::{unpack, UnpackOptions};
//! # fn main() -> Result<(), strata_layer::Error> {
//! let input = std::fs::File::open("layer.tar.gz").unwrap();
//! let summary = unpack(input, "/tmp/rootfs".as_ref(), UnpackOptions::default())?;
//! println!("diffID {} from a {} blob", summary.diff_id, summary.compression);
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::compress::{open_blob, BlobDecompressor, Compression};
use crate::digest::{Digest, Hasher};
use crate::dir_writer::{DirWriter, DirWriterOptions, LowersLater};
use crate::mapped::MappedFile;
use crate::pipe::{self, PipeReader};
use crate::recipe::RecipeRecorder;
use crate::sandbox::{self, SandboxStatus};
use crate::tar::{TarReader, TarSink};
use crate::{Entry, Error, LayerReader, LayerWriter};

/// How to unpack.
pub struct UnpackOptions {
    /// How the directory is written (owners, devices, limits).
    pub writer: DirWriterOptions,
    /// Record a recipe at this path, to rebuild the tar later ([`crate::recipe`]).
    pub recipe: Option<PathBuf>,
    /// Confine the writing thread with Landlock (on by default).
    pub sandbox: bool,
    /// When not empty, the target is the upper directory of an overlay over these lower
    /// directories, nearest first, and the layer is applied as if onto their merged view
    /// ([`DirWriter::open_upper`]).
    pub lowers: Vec<PathBuf>,
    /// Instead of `lowers`: the lower directories are still being written (by another
    /// apply, in parallel), and this waits for them and names them, the first time the
    /// writer needs to see below ([`DirWriter::open_upper_later`]).
    pub lowers_later: Option<LowersLater>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            writer: DirWriterOptions::default(),
            recipe: None,
            sandbox: true,
            lowers: Vec::new(),
            lowers_later: None,
        }
    }
}

/// What an unpack did.
#[derive(Debug)]
pub struct UnpackSummary {
    /// The compression detected from the input's first bytes.
    pub compression: Compression,
    /// sha256 of the uncompressed tar stream, trailing bytes included.
    pub diff_id: Digest,
    /// The size of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// sha256 and size of the input as given (equal to the above when uncompressed).
    pub blob_digest: Digest,
    /// The size of the input as given.
    pub blob_bytes: u64,
    /// Entries applied.
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub data_bytes: u64,
    /// Things dropped or skipped while applying (xattrs, devices), one sentence each.
    pub warnings: Vec<String>,
    /// `None` when the sandbox was turned off.
    pub sandbox: Option<SandboxStatus>,
}

/// What [`unpack`] reads the layer from: any stream (`R` converts into this), or a file
/// read through memory maps.
pub enum Input<'a, R> {
    /// Any stream (plain, gzip or zstd).
    Stream(R),
    /// A file (or a part of one) read through memory maps ([`crate::mapped`]) when it is
    /// a plain tar; a compressed one is streamed.
    Mapped(MappedFile<'a>),
}

impl<R: Read> From<R> for Input<'_, R> {
    fn from(stream: R) -> Self {
        Input::Stream(stream)
    }
}

impl<'a, R: Read + Send + 'a> Input<'a, R> {
    /// The bytes as a stream, whichever the input.
    pub fn into_stream(self) -> Box<dyn Read + Send + 'a> {
        match self {
            Input::Stream(stream) => Box::new(stream),
            Input::Mapped(file) => file.into_stream(),
        }
    }
}

/// Unpacks the layer read from `input` (a stream, or an [`Input`]) onto the existing
/// directory `root`.
///
/// On error the directory may hold part of the layer (callers that need all-or-nothing
/// unpack into a staging directory); no recipe is left behind.
pub fn unpack<'a, R: Read + Send + 'a>(
    input: impl Into<Input<'a, R>>,
    root: &Path,
    options: UnpackOptions,
) -> Result<UnpackSummary, Error> {
    let recorder = options
        .recipe
        .as_deref()
        .map(RecipeRecorder::create)
        .transpose()?;
    let tar = Hasher::default();
    let start_error = |e| Error::io("reading the start of the layer", e);
    let (source, blob, compression) = match input.into() {
        Input::Mapped(file) => {
            let mut magic = [0u8; 8];
            let n = file.read_head(&mut magic).map_err(start_error)?;
            match Compression::detect(&magic[..n]) {
                Compression::None => (Source::Mapped(file), tar.clone(), Compression::None),
                _ => Source::stream(file.into_stream(), &tar).map_err(start_error)?,
            }
        }
        Input::Stream(input) => Source::stream(Box::new(input), &tar).map_err(start_error)?,
    };
    let writer_options = options.writer;
    let confine = options.sandbox;
    let lowers = options.lowers;
    let lowers_later = options.lowers_later;
    // Three threads: this one waits; a reader decompresses and hashes; a writer, confined
    // to the root, parses and applies.
    let (applied, recorder, sandbox) = std::thread::scope(|s| {
        let stream = match source {
            Source::Mapped(file) => pipe::spawn_mapped(s, file, tar.clone()),
            Source::Stream(decompressor) => pipe::spawn(s, tar.reader(decompressor)),
        };
        let writer_thread = s.spawn(move || -> Result<_, Error> {
            let sandbox = confine
                .then(|| sandbox::confine_writes_to(root))
                .transpose()?;
            // A umask of this thread's own, 0, so the writer creates files with their
            // final permissions and saves a chmod per file; the process keeps its umask.
            // SAFETY: CLONE_FS gives this thread a copy of the process's cwd, root and
            // umask; no memory is shared or changed.
            if unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.is_ok() {
                rustix::process::umask(rustix::fs::Mode::empty());
            }
            let mut writer = match lowers_later {
                Some(later) => DirWriter::open_upper_later(root, later, writer_options)?,
                None if lowers.is_empty() => DirWriter::open(root, writer_options)?,
                None => DirWriter::open_upper(root, &lowers, writer_options)?,
            };
            match recorder {
                None => Ok((
                    apply(TarReader::buffered(stream, ()), writer)?,
                    None,
                    sandbox,
                )),
                Some(rec) => {
                    let shared = Rc::new(RefCell::new(rec));
                    let hook = shared.clone();
                    writer.on_replace(Box::new(move |path, file| {
                        hook.borrow_mut().stash(path, file)
                    }));
                    let summary =
                        apply(TarReader::buffered(stream, Shared(shared.clone())), writer)?;
                    let rec = Rc::try_unwrap(shared)
                        .map_err(|_| {
                            Error::Misuse("recipe recorder still shared after unpack".into())
                        })?
                        .into_inner();
                    Ok((summary, Some(rec), sandbox))
                }
            }
        });
        writer_thread
            .join()
            .unwrap_or_else(|_| Err(Error::Misuse("the unpack thread panicked".into())))
    })?;
    if let Some(rec) = recorder {
        rec.finish(tar.digest(), tar.bytes())?;
    }
    Ok(UnpackSummary {
        compression,
        diff_id: tar.digest(),
        tar_bytes: tar.bytes(),
        blob_digest: blob.digest(),
        blob_bytes: blob.bytes(),
        entries: applied.entries,
        data_bytes: applied.data_bytes,
        warnings: applied.warnings,
        sandbox,
    })
}

/// Where the tar's bytes come from.
enum Source<'a> {
    Mapped(MappedFile<'a>),
    Stream(BlobDecompressor<'a>),
}

impl<'a> Source<'a> {
    /// A stream, decompressed; the hasher of the blob as given; its compression.
    fn stream(
        input: Box<dyn Read + Send + 'a>,
        tar: &Hasher,
    ) -> std::io::Result<(Source<'a>, Hasher, Compression)> {
        let (decompressor, blob) = open_blob(input)?;
        let compression = decompressor.compression();
        let blob = blob.unwrap_or_else(|| tar.clone());
        Ok((Source::Stream(decompressor), blob, compression))
    }
}

/// Like [`crate::copy`], but errors name the byte offset of the entry concerned.
fn apply<S: TarSink>(
    mut reader: TarReader<PipeReader, S>,
    mut writer: DirWriter,
) -> Result<crate::dir_writer::ApplySummary, Error> {
    // Errors of files finished in the background come located already.
    let locate = |e: Error, at: u64| match e {
        Error::At { .. } => e,
        e => e.at(at),
    };
    while let Some(entry) = reader.next_entry()? {
        let at = reader.entry_offset();
        writer.locate(at);
        writer.add(&entry).map_err(|e| locate(e, at))?;
        if entry.kind.data_len() > 0 {
            // Written straight from the pipe's chunk: no copy on this thread (nor on the
            // background's, when the chunk is mapped).
            while reader.read_data_sharing(
                |input, n| input.share(n),
                |data, shared| writer.write_shared(data, shared).map_err(|e| locate(e, at)),
            )? > 0
            {}
        }
    }
    writer.finish()
}

/// The recipe recorder shared by the tar reader (as its sink) and the directory
/// writer (which stashes bodies it is about to remove).
struct Shared(Rc<RefCell<RecipeRecorder>>);

impl TarSink for Shared {
    fn raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.borrow_mut().raw(bytes)
    }
    fn file_begin(&mut self, entry: &Entry) -> Result<(), Error> {
        self.0.borrow_mut().file_begin(entry)
    }
    fn file_data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.0.borrow_mut().file_data(bytes)
    }
    fn file_end(&mut self) -> Result<(), Error> {
        self.0.borrow_mut().file_end()
    }
}
