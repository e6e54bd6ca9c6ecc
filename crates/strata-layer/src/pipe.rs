//! Pipes between threads, so that two costs overlap instead of adding up: on unpack one
//! thread reads (decompresses, hashes) while another parses and writes files; on pack one
//! thread walks and reads files while another hashes, compresses and writes the blob.

use std::io::{self, BufRead, Read, Write};
use std::ops::{Deref, Range};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use crate::digest::Hasher;
use crate::mapped::{MappedFile, Window};
use crate::recycle;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;
/// The reading half's chunks are smaller, so that the consumer gets bytes sooner and
/// works on each chunk while it is still in the cache. Not smaller than the buffer of
/// [`crate::compress::open_blob`]: a read that size goes around that buffer (no copy).
const READ_CHUNK: usize = 256 << 10;
const READ_DEPTH: usize = 8;

/// A chunk of the stream: bytes read into a buffer, or a part of a mapped window.
enum Chunk {
    Read(Vec<u8>),
    Mapped(Shared),
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Read(buf) => buf,
            Chunk::Mapped(shared) => shared,
        }
    }
}

/// Bytes of a mapped window, which stays mapped while this lives: they can go to another
/// thread without a copy ([`PipeReader::share`]).
pub(crate) struct Shared {
    window: Arc<Window>,
    range: Range<usize>,
}

impl Deref for Shared {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.window[self.range.clone()]
    }
}

/// The consuming end: a `Read` over the chunks the producer thread sends. Every chunk but
/// the last is [`READ_CHUNK`] long; the last is shorter (maybe empty).
pub struct PipeReader {
    chunks: recycle::Receiver<io::Result<Chunk>, Vec<u8>>,
    current: Chunk,
    pos: usize,
    done: bool,
}

impl PipeReader {
    /// The next `n` bytes [`fill_buf`](BufRead::fill_buf) returned, as a handle another
    /// thread can keep, when they lie in a mapped window (`None` for bytes read into a
    /// buffer, which is reused).
    pub(crate) fn share(&self, n: usize) -> Option<Shared> {
        match &self.current {
            Chunk::Mapped(chunk) if self.pos + n <= chunk.range.len() => {
                let start = chunk.range.start + self.pos;
                Some(Shared {
                    window: chunk.window.clone(),
                    range: start..start + n,
                })
            }
            _ => None,
        }
    }

    fn new(chunks: recycle::Receiver<io::Result<Chunk>, Vec<u8>>) -> PipeReader {
        PipeReader {
            chunks,
            current: Chunk::Read(Vec::new()),
            pos: 0,
            done: false,
        }
    }
}

/// Starts a thread in `scope` that reads `input` to its end in 256 KiB chunks (at most
/// 2 MiB ahead; buffers are recycled) and returns the reader of those chunks. If the
/// reader is dropped early, the thread stops at its next chunk.
pub fn spawn<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut input: R,
) -> PipeReader {
    let (tx, rx) = recycle::channel(READ_DEPTH);
    scope.spawn(move || loop {
        let mut buf = tx.spare().unwrap_or_else(|| vec![0u8; READ_CHUNK]);
        buf.resize(READ_CHUNK, 0);
        let mut filled = 0;
        let result = loop {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let end = filled < READ_CHUNK || result.is_err();
        buf.truncate(filled);
        let msg = match result {
            Ok(()) => Ok(Chunk::Read(buf)),
            Err(e) => Err(e),
        };
        if tx.send(msg).is_err() || end {
            return;
        }
    });
    PipeReader::new(rx)
}

/// Like [`spawn`], for a file read through maps ([`crate::mapped`]): the thread maps it a
/// window at a time, feeds `hasher` every byte and sends the chunks where they lie, so
/// that no byte is copied on the way (so it takes no spare buffers). A window is unmapped
/// once its last chunk is used.
pub fn spawn_mapped<'scope>(
    scope: &'scope Scope<'scope, '_>,
    file: MappedFile<'scope>,
    hasher: Hasher,
) -> PipeReader {
    let (tx, rx) = recycle::channel(READ_DEPTH);
    scope.spawn(move || {
        let (file, mut progress) = file.into_parts();
        let mut offset = 0;
        while offset < file.len() {
            let window = match file.window(offset) {
                Ok(w) => Arc::new(w),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let len = window.len();
            for start in (0..len).step_by(READ_CHUNK) {
                let range = start..len.min(start + READ_CHUNK);
                hasher.update(&window[range.clone()]);
                if let Some(f) = &mut progress {
                    f(range.len() as u64);
                }
                let short = range.len() < READ_CHUNK;
                let chunk = Chunk::Mapped(Shared {
                    window: window.clone(),
                    range,
                });
                if tx.send(Ok(chunk)).is_err() || short {
                    return;
                }
            }
            offset += len as u64;
        }
        let _ = tx.send(Ok(Chunk::Read(Vec::new())));
    });
    PipeReader::new(rx)
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let chunk = self.fill_buf()?;
        let n = out.len().min(chunk.len());
        out[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The chunks as they came: a consumer can use the bytes where they are.
impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(&[]);
            }
            let next = match self.chunks.recv() {
                Some(chunk) => chunk?,
                None => Chunk::Read(Vec::new()),
            };
            if next.len() < READ_CHUNK {
                self.done = true;
            }
            if let Chunk::Read(old) = std::mem::replace(&mut self.current, next) {
                self.chunks.give_back(old);
            }
            self.pos = 0;
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.current.len());
    }
}

/// The producing end of a write-behind pipe: bytes written here are written to the
/// sink by another thread. [`finish`](PipeWriter::finish) returns the sink. If the sink
/// fails, the write that finds the thread stopped returns the sink's error, and so do
/// later writes and `finish`.
pub struct PipeWriter<'scope, W> {
    chunks: recycle::Sender<Vec<u8>, Vec<u8>>,
    buf: Vec<u8>,
    /// The writing thread, until a write finds it stopped and joins it.
    thread: Option<ScopedJoinHandle<'scope, io::Result<W>>>,
    /// The error the thread stopped at, once joined.
    failed: Option<io::Error>,
}

/// Starts a thread in `scope` that writes to `sink` whatever the returned writer is given.
pub fn spawn_writer<'scope, W: Write + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut sink: W,
) -> PipeWriter<'scope, W> {
    let (tx, rx) = recycle::channel::<Vec<u8>, Vec<u8>>(DEPTH);
    let thread = scope.spawn(move || {
        for chunk in rx.iter() {
            sink.write_all(&chunk)?;
            rx.give_back(chunk);
        }
        sink.flush()?;
        Ok(sink)
    });
    PipeWriter {
        chunks: tx,
        buf: Vec::with_capacity(CHUNK),
        thread: Some(thread),
        failed: None,
    }
}

impl<W> PipeWriter<'_, W> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .chunks
            .spare()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.buf.clear();
        match self.chunks.send(full) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped()),
        }
    }

    /// The error the writing thread stopped at (it stops early only at one), joining the
    /// thread the first time: every caller gets the sink's own error, not a broken pipe.
    fn stopped(&mut self) -> io::Error {
        if let Some(thread) = self.thread.take() {
            self.failed = join(thread).err();
        }
        match &self.failed {
            Some(e) => same_error(e),
            None => io::Error::other("the output writer stopped"),
        }
    }

    /// Writes out what is buffered, waits for the writing thread, and returns the sink
    /// (or the error that stopped it).
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        let Some(thread) = self.thread.take() else {
            return Err(self.stopped());
        };
        drop(self.chunks);
        join(thread)
    }
}

/// What the writing thread returned, or that it panicked.
fn join<W>(thread: ScopedJoinHandle<'_, io::Result<W>>) -> io::Result<W> {
    thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the output writer panicked")))
}

/// `error` once more, for one more caller (an `io::Error` cannot be cloned): the same OS
/// error, or the same kind and message.
fn same_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

impl<W> Write for PipeWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_every_byte_in_order_across_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let got = std::thread::scope(|s| {
            let mut r = spawn(s, &data[..]);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        assert_eq!(got, data);
    }

    #[test]
    fn writer_delivers_every_byte_and_returns_the_sink() {
        let data: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let sink = std::thread::scope(|s| {
            let mut w = spawn_writer(s, Vec::new());
            for piece in data.chunks(70_001) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap()
        });
        assert_eq!(sink, data);
    }

    /// A sink that fails at every write.
    struct OnFire;
    impl Write for OnFire {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_sinks_error_comes_out_of_the_first_failing_write_and_finish() {
        let (first, finished) = std::thread::scope(|s| {
            let mut w = spawn_writer(s, OnFire);
            let chunk = vec![0u8; CHUNK];
            // Sends succeed until the thread has taken a chunk and stopped at it.
            let first = loop {
                if let Err(e) = w.write_all(&chunk) {
                    break e;
                }
            };
            (first, w.finish().map(drop).unwrap_err())
        });
        assert_eq!(first.to_string(), "disk on fire");
        assert_eq!(finished.to_string(), "disk on fire");
    }

    #[test]
    fn the_sinks_error_comes_out_of_finish() {
        let err = std::thread::scope(|s| {
            let mut w = spawn_writer(s, OnFire);
            w.write_all(b"a little").unwrap();
            w.finish().map(drop).unwrap_err()
        });
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn passes_read_errors_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = std::thread::scope(|s| spawn(s, Failing).read(&mut [0u8; 8]).unwrap_err());
        assert_eq!(err.to_string(), "disk on fire");
    }
}
