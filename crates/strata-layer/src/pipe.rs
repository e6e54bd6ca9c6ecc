//! A read-ahead pipe: one thread reads (and decompresses and hashes) while another
//! parses and writes, so the two costs overlap instead of adding up.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

/// The consuming end: a `Read` over the chunks the producer thread sends.
pub struct PipeReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

/// Starts a thread in `scope` that reads `input` to its end in 1 MiB chunks (at most a
/// few ahead; buffers are recycled) and returns the reader of those chunks. If the
/// reader is dropped early, the thread stops at its next chunk.
pub fn spawn<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut input: R,
) -> PipeReader {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
    scope.spawn(move || loop {
        let mut buf = spare_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        buf.resize(CHUNK, 0);
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
        let end = filled < CHUNK || result.is_err();
        buf.truncate(filled);
        let msg = match result {
            Ok(()) => Ok(buf),
            Err(e) => Err(e),
        };
        if tx.send(msg).is_err() || end {
            return;
        }
    });
    PipeReader {
        chunks: rx,
        spare: spare_tx,
        current: Vec::new(),
        pos: 0,
        done: false,
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            let next = match self.chunks.recv() {
                Ok(chunk) => chunk?,
                Err(_) => Vec::new(),
            };
            if next.len() < CHUNK {
                self.done = true;
            }
            let old = std::mem::replace(&mut self.current, next);
            let _ = self.spare.try_send(old);
            self.pos = 0;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
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
