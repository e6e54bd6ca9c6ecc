//! The tar codec: [`TarReader`] parses layer tars into entries, [`TarWriter`] writes them.
//!
//! # Why our own codec and not the `tar` crate
//! The layer codec is where parser differentials become exploits
//! (`../shared/specs/image-formats.md` §7, §11), so it is written to these rules:
//! - **PAX `size` always wins** over the header's size (CVE-2025-62518 "TARmageddon",
//!   CVE-2026-33055 in tar-rs ≤ 0.4.44 ignored it when the header size was non-zero).
//! - **PAX records apply to the next file entry**, never to an intervening GNU `L`/`K`
//!   header (GHSA-3cv2-h65g-fgmm, fixed in tar-rs 0.4.46 only).
//! - Extension payloads (PAX, GNU long names) are capped at 1 MiB and sparse maps at
//!   2^20 extents before anything is allocated (CVE-2025-58183); numbers that do not fit
//!   64 bits, bad checksums, non-zero sizes on header-only types, `..` and NUL in names,
//!   and headers after a single zero block are errors.
//! - Every raw byte range (headers, padding, trailer, bytes after the end-of-archive) is
//!   reported to a [`TarSink`], which is what bit-exact recipes ([`crate::recipe`]) need
//!   and what the `tar` crate's reader does not expose.
//! - The writer emits PAX (not GNU long names) with nanosecond times, xattrs and any
//!   vendor record, encoded like Go's `archive/tar`; the `tar` crate writes GNU
//!   `././@LongLink` and whole-second times.
//!
//! `../shared/specs/dependencies.md` §1 has the full comparison.

mod header;
mod pax;
mod reader;
mod writer;

pub use pax::{format_time as format_pax_time, parse_time as parse_pax_time};
pub use reader::{TarReader, TarSink, MAX_EXTENSION, MAX_SPARSE_EXTENTS};
pub use writer::{HeaderStyle, TarWriter};

#[cfg(test)]
mod tests;
