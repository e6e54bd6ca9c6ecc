//! A bounded channel between two threads whose used buffers come back for reuse, so that
//! a steady stream allocates nothing after its first few buffers and memory stays flat.
//!
//! The words: the sending thread fills a buffer and sends it ([`Sender::send`]) as a
//! *full* one; the receiving thread uses it and gives it back ([`Receiver::give_back`])
//! as a *spare*, which the sender takes ([`Sender::spare`]) before it allocates a new one.
//! The two kinds may differ: in [`crate::pipe`] a full one is an error or a part of a
//! mapped file as well, and only the plain buffers come back.
//!
//! At most `depth` full buffers wait; a send then blocks until the receiver takes one.
//! Nothing else blocks: taking a spare when none waits returns `None` at once, and a
//! spare given back when `depth + 2` wait already (those queued, and one in each thread's
//! hands) is dropped. When either half is dropped the other sees the end: a send fails,
//! and the receiver, once it has taken what was queued, gets `None`.
//!
//! ```
//! use strata_layer::recycle;
//!
//! let (tx, rx) = recycle::channel::<Vec<u8>, Vec<u8>>(4);
//! let total = std::thread::scope(|s| {
//!     let summing = s.spawn(move || {
//!         let mut total = 0u64;
//!         for mut buf in rx.iter() {
//!             total += buf.iter().map(|&b| u64::from(b)).sum::<u64>();
//!             buf.clear();
//!             rx.give_back(buf);
//!         }
//!         total
//!     });
//!     for byte in 1..=10u8 {
//!         let mut buf = tx.spare().unwrap_or_else(|| Vec::with_capacity(1 << 10));
//!         buf.extend_from_slice(&[byte; 3]);
//!         tx.send(buf).expect("the summing thread takes every buffer");
//!     }
//!     drop(tx); // the end of the stream
//!     summing.join().unwrap()
//! });
//! assert_eq!(total, 3 * 55);
//! ```

use std::sync::mpsc::{self, sync_channel, SyncSender};

/// Makes a channel that holds up to `depth` full buffers, and up to `depth + 2` spares.
pub fn channel<Full, Spare>(depth: usize) -> (Sender<Full, Spare>, Receiver<Full, Spare>) {
    let (full_tx, full_rx) = sync_channel(depth);
    let (spare_tx, spare_rx) = sync_channel(depth + 2);
    (
        Sender {
            full: full_tx,
            spare: spare_rx,
        },
        Receiver {
            full: full_rx,
            spare: spare_tx,
        },
    )
}

/// The sending half of a [`channel`].
pub struct Sender<Full, Spare> {
    full: SyncSender<Full>,
    spare: mpsc::Receiver<Spare>,
}

impl<Full, Spare> Sender<Full, Spare> {
    /// A buffer given back, if one waits (never blocks).
    pub fn spare(&self) -> Option<Spare> {
        self.spare.try_recv().ok()
    }

    /// Queues `full` for the receiver, waiting while `depth` buffers are queued. Fails,
    /// handing `full` back, if the receiver is gone.
    pub fn send(&self, full: Full) -> Result<(), Full> {
        self.full.send(full).map_err(|mpsc::SendError(full)| full)
    }
}

/// The receiving half of a [`channel`].
pub struct Receiver<Full, Spare> {
    full: mpsc::Receiver<Full>,
    spare: SyncSender<Spare>,
}

impl<Full, Spare> Receiver<Full, Spare> {
    /// The next full buffer, waiting for it; `None` once the sender is gone and the
    /// queue is empty.
    pub fn recv(&self) -> Option<Full> {
        self.full.recv().ok()
    }

    /// The full buffers as they come, until the sender is gone ([`recv`](Self::recv) in
    /// a loop). Buffers can be given back while iterating.
    pub fn iter(&self) -> impl Iterator<Item = Full> + '_ {
        self.full.iter()
    }

    /// Gives a used buffer back for the sender to fill again. Never blocks: if enough
    /// spares wait already, or the sender is gone, the buffer is dropped.
    pub fn give_back(&self, spare: Spare) {
        let _ = self.spare.try_send(spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_the_next_spare() {
        let (tx, rx) = channel::<Vec<u8>, Vec<u8>>(2);
        assert!(tx.spare().is_none());
        let buf = Vec::with_capacity(4096);
        let at = buf.as_ptr();
        tx.send(buf).unwrap();
        let used = rx.recv().unwrap();
        rx.give_back(used);
        let again = tx.spare().expect("the buffer came back");
        assert_eq!(again.as_ptr(), at);
        assert!(tx.spare().is_none());
    }

    #[test]
    fn giving_back_beyond_depth_plus_two_drops_the_rest_without_blocking() {
        let depth = 3;
        let (tx, rx) = channel::<(), u32>(depth);
        for n in 0..10 {
            rx.give_back(n);
        }
        let kept: Vec<u32> = std::iter::from_fn(|| tx.spare()).collect();
        assert_eq!(kept, (0..depth as u32 + 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_dropped_receiver_makes_send_fail_with_the_buffer() {
        let (tx, rx) = channel::<Vec<u8>, Vec<u8>>(4);
        drop(rx);
        assert_eq!(tx.send(vec![7]), Err(vec![7]));
    }

    #[test]
    fn a_dropped_sender_ends_the_receiver_after_what_was_queued() {
        let (tx, rx) = channel::<u32, ()>(4);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rx.recv(), None);
        rx.give_back(()); // nobody to take it: dropped, no error
    }
}
