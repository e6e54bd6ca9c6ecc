//! [`Background`]: regular files finished on a second thread.
//!
//! A layer of small files costs a few system calls per file: create it, write its data,
//! set its times (and owner, mode, xattrs where needed), close it. The writer's thread
//! resolves and creates; a second thread writes the data, applies the metadata and
//! closes, so the two halves run on two cores (GNU tar does all of them on one).
//!
//! Why the order of the layer still holds: a file handed over is a new inode that only
//! the writer's thread can name, by creating it. Until that thread links, removes or
//! replaces something (a hard link, a whiteout, an opaque directory, an entry written
//! twice, the replace hook reading a body), nothing it does can see or change such a
//! file, so only those steps wait for the background to catch up ([`Background::sync`]).
//! Directory times are set in `finish`, after it too (writing and closing a file leaves
//! its directory alone anyway).
//!
//! Work goes over in batches (up to [`BATCH_FILES`] files, [`BATCH_BYTES`] of data) so
//! that the threads rarely wake each other, and at most [`DEPTH`] batches wait: memory
//! stays flat. The first error stops the background (later files are closed as they
//! are); the writer's thread reports it at its next step, before any error of its own
//! (it happened first), located at the entry's offset when the caller gave it
//! ([`DirWriter::locate`](super::DirWriter::locate)). The background thread is started
//! by the writer's thread, so it shares its Landlock confinement.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::meta::{MetaPolicy, MetaWriter, Warnings};
use super::tree::Owner;
use crate::pipe::Shared;
use crate::{recycle, Error, LayerPath, Metadata};

/// Files per batch.
const BATCH_FILES: usize = 64;
/// Data bytes per batch (a file's data may span batches).
const BATCH_BYTES: usize = 1 << 20;
/// Batches sent and not yet taken.
const DEPTH: usize = 2;
/// Files with more data than this are written by the writer's thread itself: handing
/// them over would copy their data once more, for no gain in parallel.
pub(super) const MAX_HANDED: u64 = 1 << 20;

/// A regular file handed over, created and not yet written.
pub(super) struct Handed {
    pub(super) file: File,
    pub(super) path: LayerPath,
    /// The entry's number, for the order of warnings.
    pub(super) seq: u64,
}

/// What is left to do to a file once its data is written.
pub(super) struct Finish {
    pub(super) meta: Metadata,
    /// The mode to set, if the creation did not set it.
    pub(super) mode: Option<u32>,
    pub(super) owner: Owner,
}

enum Op {
    /// The next file: the data ops up to its `End` are written to it.
    Begin(Handed, Option<u64>),
    /// Bytes of the batch's buffer, appended to the current file.
    Data(Range<usize>),
    /// Bytes of a mapped input, appended to the current file (no copy on the way).
    Shared(Shared),
    /// The current file's data is complete: its metadata, then close.
    End(Finish),
}

#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    buf: Vec<u8>,
    /// Data bytes in `buf` and in `Shared` ops: what bounds a batch.
    bytes: usize,
    /// Answer on the ack channel once done.
    sync: bool,
}

/// What the background thread reports.
#[derive(Default)]
struct Outcome {
    error: Option<Error>,
    warnings: Warnings,
}

struct Worker {
    batches: Option<recycle::Sender<Batch, Batch>>,
    acks: Receiver<()>,
    failed: Arc<AtomicBool>,
    outcome: Arc<Mutex<Outcome>>,
    thread: Option<JoinHandle<()>>,
    /// Batches sent since the last sync.
    unsynced: bool,
}

/// The writer's end of the background thread (started at the first file handed over).
#[derive(Default)]
pub(super) struct Background {
    worker: Option<Worker>,
    batch: Batch,
    files: usize,
    /// The offset in the layer of the entry being added, to locate errors found later.
    pub(super) at: Option<u64>,
    /// The background's error was returned.
    reported: bool,
    /// The thread could not be started.
    unavailable: bool,
}

impl Background {
    /// Whether files can be handed over: starts the thread the first time. False if it
    /// cannot be started; the writer then finishes its files itself.
    pub(super) fn ready(&mut self, policy: MetaPolicy) -> bool {
        if self.worker.is_none() && !self.unavailable {
            match Worker::start(policy) {
                Ok(w) => self.worker = Some(w),
                Err(_) => self.unavailable = true,
            }
        }
        self.worker.is_some()
    }

    /// Starts a file (after [`ready`](Self::ready) said yes): `data` calls follow, then
    /// `end`.
    pub(super) fn begin(&mut self, file: Handed) {
        self.batch.ops.push(Op::Begin(file, self.at));
        self.files += 1;
    }

    /// The next bytes of the current file's data: `shared` if the input can hand them
    /// over as they are, else copied from `data`.
    pub(super) fn data(&mut self, data: &[u8], shared: Option<Shared>) -> Result<(), Error> {
        match shared {
            Some(shared) => self.batch.ops.push(Op::Shared(shared)),
            None => {
                let start = self.batch.buf.len();
                self.batch.buf.extend_from_slice(data);
                self.batch.ops.push(Op::Data(start..self.batch.buf.len()));
            }
        }
        self.batch.bytes += data.len();
        if self.batch.bytes >= BATCH_BYTES {
            self.send(false)?;
        }
        Ok(())
    }

    /// The current file is complete.
    pub(super) fn end(&mut self, finish: Finish) -> Result<(), Error> {
        self.batch.ops.push(Op::End(finish));
        if self.files >= BATCH_FILES || self.batch.bytes >= BATCH_BYTES {
            self.send(false)?;
        }
        Ok(())
    }

    /// The error the background stopped at, if it did (without waiting otherwise).
    pub(super) fn check(&mut self) -> Result<(), Error> {
        match &self.worker {
            Some(w) if w.failed.load(Ordering::Acquire) => self.sync(),
            _ => Ok(()),
        }
    }

    /// Waits until every file handed over is written and closed; returns the first
    /// error of the background, if any (once; after it, that the background stopped).
    pub(super) fn sync(&mut self) -> Result<(), Error> {
        match self.first_error()? {
            Some(e) => Err(e),
            None if self.reported => Err(Error::Misuse(
                "the files of an earlier entry failed (reported then)".into(),
            )),
            None => Ok(()),
        }
    }

    /// Waits for the background, and takes its error not yet reported, if any.
    pub(super) fn first_error(&mut self) -> Result<Option<Error>, Error> {
        let Some(w) = &self.worker else {
            return Ok(None);
        };
        if !self.batch.ops.is_empty() || w.unsynced {
            self.send(true)?;
        }
        let Some(w) = &mut self.worker else {
            return Ok(None);
        };
        w.unsynced = false;
        let error = w.lock().error.take();
        self.reported |= error.is_some();
        Ok(error)
    }

    /// Waits for the background, stops it and returns its warnings.
    pub(super) fn finish(&mut self) -> Result<Warnings, Error> {
        self.sync()?;
        let Some(mut w) = self.worker.take() else {
            return Ok(Warnings::default());
        };
        w.stop();
        let warnings = std::mem::take(&mut w.lock().warnings);
        Ok(warnings)
    }

    fn send(&mut self, sync: bool) -> Result<(), Error> {
        let Some(w) = &mut self.worker else {
            return Ok(());
        };
        let stopped = || Error::Misuse("the background file writer stopped".into());
        let tx = w.batches.as_ref().ok_or_else(stopped)?;
        let next = tx.spare().unwrap_or_default();
        let mut batch = std::mem::replace(&mut self.batch, next);
        batch.sync = sync;
        self.files = 0;
        tx.send(batch).map_err(|_| stopped())?;
        w.unsynced = !sync;
        if sync {
            w.acks.recv().map_err(|_| stopped())?;
        }
        Ok(())
    }
}

impl Worker {
    fn start(policy: MetaPolicy) -> std::io::Result<Worker> {
        let (tx, rx) = recycle::channel::<Batch, Batch>(DEPTH);
        let (ack_tx, ack_rx) = sync_channel::<()>(1);
        let failed = Arc::new(AtomicBool::new(false));
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let (f, o) = (failed.clone(), outcome.clone());
        let thread = std::thread::Builder::new()
            .name("strata-files".into())
            .spawn(move || run(policy, rx, ack_tx, f, o))?;
        Ok(Worker {
            batches: Some(tx),
            acks: ack_rx,
            failed,
            outcome,
            thread: Some(thread),
            unsynced: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&mut self) {
        drop(self.batches.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The background thread: takes batches until the writer hangs up.
fn run(
    policy: MetaPolicy,
    batches: recycle::Receiver<Batch, Batch>,
    acks: SyncSender<()>,
    failed: Arc<AtomicBool>,
    outcome: Arc<Mutex<Outcome>>,
) {
    let mut meta = MetaWriter {
        policy,
        warnings: Warnings::default(),
    };
    let mut current: Option<(Handed, Option<u64>)> = None;
    let mut stopped = false;
    for mut batch in batches.iter() {
        for op in batch.ops.drain(..) {
            if stopped {
                continue; // dropped: closed untouched
            }
            let result = match op {
                Op::Begin(file, at) => {
                    current = Some((file, at));
                    Ok(())
                }
                Op::Data(range) => write(&mut current, &batch.buf[range]),
                Op::Shared(shared) => write(&mut current, &shared),
                Op::End(fin) => match current.take() {
                    Some((f, at)) => {
                        meta.warnings.seq = f.seq;
                        meta.apply_meta_fd(
                            f.file.as_fd(),
                            &f.path,
                            &fin.meta,
                            fin.mode,
                            true,
                            fin.owner,
                        )
                        .map_err(|e| locate(e, at))
                    }
                    None => Err(Error::Misuse("file ended with no file begun".into())),
                },
            };
            if let Err(e) = result {
                stopped = true;
                current = None;
                outcome.lock().unwrap_or_else(PoisonError::into_inner).error = Some(e);
                failed.store(true, Ordering::Release);
            }
        }
        batch.buf.clear();
        batch.bytes = 0;
        let sync = std::mem::take(&mut batch.sync);
        batches.give_back(batch);
        if sync && acks.send(()).is_err() {
            break;
        }
    }
    outcome
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .warnings = meta.warnings;
}

/// Appends `data` to the file begun.
fn write(current: &mut Option<(Handed, Option<u64>)>, data: &[u8]) -> Result<(), Error> {
    match current {
        Some((f, at)) => f
            .file
            .write_all(data)
            .map_err(|e| locate(Error::apply_io(&f.path, "cannot write file data", e), *at)),
        None => Err(Error::Misuse("file data with no file begun".into())),
    }
}

fn locate(e: Error, at: Option<u64>) -> Error {
    match at {
        Some(offset) => e.at(offset),
        None => e,
    }
}
