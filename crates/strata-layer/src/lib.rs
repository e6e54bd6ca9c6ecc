//! # strata-layer: container layers as streams of entries
//!
//! Every job Strata does is one stream of [`Entry`] values flowing from a
//! [`LayerReader`] to a [`LayerWriter`]:
//!
//! | job | reader | writer |
//! | --- | --- | --- |
//! | unpack a layer tar | [`tar::TarReader`] | [`dir_writer::DirWriter`] (safe, in-root: [`root::Root`]) |
//! | pack a directory | [`dir_reader::DirReader`] | [`tar::TarWriter`] |
//! | re-export a layer bit-exact | [`recipe`] (recorded while unpacking) | the original bytes |
//!
//! Digests are computed while the bytes stream ([`digest`]), and compression is detected by
//! magic ([`compress`]). Nothing buffers a whole layer.
//!
//! ```
//! use strata_layer::{copy, tar::{TarReader, TarWriter}, Entry, EntryKind, LayerPath, LayerWriter};
//! // Write a one-file layer, then read it back.
//! let mut tar = Vec::new();
//! let mut w = TarWriter::new(&mut tar);
//! let mut e = Entry::new(LayerPath::from_tar_name(b"etc/motd").unwrap(), EntryKind::File { size: 3, sparse: None });
//! e.meta.mode = 0o644;
//! w.add(&e).unwrap();
//! w.write_data(b"hi\n").unwrap();
//! w.finish().unwrap();
//! let mut r = TarReader::new(&tar[..]);
//! use strata_layer::LayerReader;
//! let got = r.next_entry().unwrap().unwrap();
//! assert_eq!(got.path.as_bytes(), b"etc/motd");
//! assert!(r.next_entry().unwrap().is_none());
//! ```

#![warn(missing_docs)]

pub mod compress;
pub mod copy_tree;
pub mod digest;
pub mod dir_reader;
pub mod dir_writer;
mod entry;
mod error;
pub mod gojson;
pub mod inroot;
pub mod mapped;
pub mod media_type;
pub mod pack;
mod path;
pub mod pipe;
pub mod recipe;
pub mod recycle;
pub mod root;
pub mod sandbox;
pub mod tar;
#[cfg(test)]
mod testing;
pub mod unpack;
pub mod upper;
mod xattr;

pub use entry::{
    copy, Entry, EntryKind, LayerReader, LayerWriter, Metadata, PaxRecord, SparseExtent, Timestamp,
    Xattr,
};
pub use error::Error;
pub use path::{LayerPath, PathError, MAX_DEPTH};
