//! The pack pipeline between two threads. The walking thread builds the tar stream in
//! 1 MiB chunks: headers are copied in, file data is read from the file straight into
//! the chunk (no buffer in between). A small file can instead be left as a hole of its
//! size for the output thread to read in, which fills the holes of a chunk, then hashes
//! (compresses) and writes it. Which thread reads a small file is decided when it comes,
//! by whether the output thread has work queued: walking, opening and stat-ing are
//! one thread's job, hashing the other's, and reading goes to whichever is free. The
//! bytes are the same either way: a hole sits where its data belongs.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use crate::dir_reader::OpenFile;
use crate::{recycle, Error};

/// The size of a chunk.
const CHUNK: usize = 1 << 20;
/// Chunks queued for the output thread, at most.
const DEPTH: usize = 4;
/// A chunk goes out once it holds this many holes: each is an open file.
const MAX_HOLES: usize = 32;
/// Files up to this size may be left to the output thread.
pub(super) const HOLE_MAX: u64 = 128 * 1024;
/// The output thread is given holes while it has at most this many chunks in hand.
const IDLE_IN_FLIGHT: usize = 1;
/// A read into the chunk gets at least this much room (unless the data left is less):
/// a chunk with less room left goes out first.
const MIN_READ: usize = 64 * 1024;

/// Part of the tar stream, on its way to the output thread.
struct Chunk {
    /// Always `CHUNK` long (zeroed once); the stream is `buf[..filled]`.
    buf: Vec<u8>,
    filled: usize,
    holes: Vec<Hole>,
}

/// File data the output thread reads into `buf[at..at + file.size()]`.
pub(super) struct Hole {
    pub(super) at: usize,
    pub(super) file: OpenFile,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            buf: vec![0; CHUNK],
            filled: 0,
            holes: Vec::new(),
        }
    }
}

/// The walking thread's end: a `Write` for headers, plus [`read_in`](Self::read_in) and
/// [`leave_hole`](Self::leave_hole) for file data.
pub(super) struct StreamWriter<'scope, W> {
    chunks: recycle::Sender<Chunk, Chunk>,
    current: Chunk,
    /// Chunks sent and not yet written by the output thread.
    in_flight: Arc<AtomicUsize>,
    thread: ScopedJoinHandle<'scope, Result<(W, Vec<String>), Error>>,
}

/// Starts the output thread in `scope`: it fills holes (`root` names the tree in the
/// messages of files that changed), then writes each chunk to `sink`.
pub(super) fn spawn<'scope, W: Write + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    root: &'scope Path,
    mut sink: W,
) -> StreamWriter<'scope, W> {
    let (tx, rx) = recycle::channel::<Chunk, Chunk>(DEPTH);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&in_flight);
    let thread = scope.spawn(move || {
        let mut warnings = Vec::new();
        for mut chunk in rx.iter() {
            for hole in chunk.holes.drain(..) {
                fill_hole(&mut chunk.buf, hole, root, &mut warnings)?;
            }
            sink.write_all(&chunk.buf[..chunk.filled])
                .map_err(|e| Error::io("writing the layer", e))?;
            done.fetch_sub(1, Ordering::Relaxed);
            chunk.filled = 0;
            rx.give_back(chunk);
        }
        sink.flush()
            .map_err(|e| Error::io("writing the layer", e))?;
        Ok((sink, warnings))
    });
    StreamWriter {
        chunks: tx,
        current: Chunk::new(),
        in_flight,
        thread,
    }
}

/// Reads the whole data of a hole's file into its place in `buf`. The byte after the
/// hole (asked for to notice a file that grew) is put back.
pub(super) fn fill_hole(
    buf: &mut [u8],
    hole: Hole,
    root: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let Hole { at, mut file } = hole;
    // The hole fits the chunk: `leave_hole` made sure.
    let end = at + file.size() as usize;
    let probe_end = (end + 1).min(buf.len());
    let after = buf.get(end).copied();
    let mut at = at;
    while at < end {
        let n = file.read(root, &mut buf[at..probe_end], warnings)?;
        if n == 0 {
            break;
        }
        at += n;
    }
    if let Some(byte) = after {
        buf[end] = byte;
    }
    Ok(())
}

impl<W> StreamWriter<'_, W> {
    /// Whether the output thread has little queued, so that reading a file there costs
    /// the walk nothing.
    pub(super) fn output_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) <= IDLE_IN_FLIGHT
    }

    fn send(&mut self) -> io::Result<()> {
        if self.current.filled == 0 && self.current.holes.is_empty() {
            return Ok(());
        }
        let next = self.chunks.spare().unwrap_or_else(Chunk::new);
        let full = std::mem::replace(&mut self.current, next);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        match self.chunks.send(full) {
            Ok(()) => Ok(()),
            // The output thread stopped: its error is reported by `finish`.
            Err(_) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the output writer stopped",
            )),
        }
    }

    /// Lets `read` put up to `max` bytes (and one to spare, see [`OpenFile::read`])
    /// straight into the chunk; returns how many it put there.
    pub(super) fn read_in(
        &mut self,
        max: u64,
        read: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    ) -> Result<u64, Error> {
        let want = usize::try_from(max).unwrap_or(usize::MAX).min(CHUNK);
        if CHUNK - self.current.filled < want.clamp(1, MIN_READ) {
            self.send()
                .map_err(|e| Error::io("writing the tar stream", e))?;
        }
        let start = self.current.filled;
        let end = start.saturating_add(want).saturating_add(1).min(CHUNK);
        let n = read(&mut self.current.buf[start..end])?;
        // More than `max` is refused by the tar writer; never step past the chunk.
        self.current.filled += n.min(end - start);
        Ok(n as u64)
    }

    /// Leaves room for the whole data of `file` (at most [`HOLE_MAX`] bytes) for the
    /// output thread to read in; returns its size.
    pub(super) fn leave_hole(&mut self, file: OpenFile) -> Result<u64, Error> {
        let size = file.size();
        let len = usize::try_from(size)
            .ok()
            .filter(|&n| n <= CHUNK)
            .ok_or_else(|| Error::Misuse(format!("a hole of {size} bytes")))?;
        if CHUNK - self.current.filled < len || self.current.holes.len() >= MAX_HOLES {
            self.send()
                .map_err(|e| Error::io("writing the tar stream", e))?;
        }
        let at = self.current.filled;
        self.current.holes.push(Hole { at, file });
        self.current.filled += len;
        Ok(size)
    }

    /// Sends what is buffered, waits for the output thread, and returns the sink and
    /// the warnings about files read there (or the error that stopped it).
    pub(super) fn finish(mut self) -> Result<(W, Vec<String>), Error> {
        let sent = self.send();
        drop(self.chunks);
        let written = self.thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                "writing the layer",
                io::Error::other("the output thread panicked"),
            ))
        });
        let done = written?;
        sent.map_err(|e| Error::io("writing the tar stream", e))?;
        Ok(done)
    }
}

impl<W> Write for StreamWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.current.filled;
        if room == 0 {
            self.send()?;
            return self.write(data);
        }
        let n = data.len().min(room);
        let at = self.current.filled;
        self.current.buf[at..at + n].copy_from_slice(&data[..n]);
        self.current.filled += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
