//! # strata-testkit: what Strata's tests share
//!
//! A dev-dependency of the workspace's crates, never of a library: where the test corpus
//! and the shared test data are ([`corpus`]), running a command with a timeout ([`run`]),
//! hashing through `sha256sum` ([`hash`]), tree listings and assertions on a directory
//! tree ([`tree`]), building layer entries in a line each and reading a layer back
//! ([`entries`]), the sentinel that hostile layers aim at ([`hostile`]), and the check that every
//! file of a crate's one test binary is built ([`test_binary`]).
//!
//! The corpus is built by `CORPUS_SIZE=small ../shared/testdata/make-corpus.sh
//! target/corpus`; tests find it through `STRATA_CORPUS`, else `<workspace>/target/corpus`,
//! and fail (never skip) when it is missing. The shared folder is `STRATA_SHARED`, else
//! `shared/` beside the repository.
//!
//! ```
//! use strata_testkit::entries::{collect, tar, EntryExt, Item};
//! use strata_layer::{tar::TarReader, Entry};
//!
//! // A layer of three entries, as tar bytes, read back as entries and data.
//! let layer = tar(&[
//!     Item::dir("etc"),
//!     Item::file("etc/motd", "hello\n"),
//!     Item::of(Entry::whiteout("etc/old")),
//! ]);
//! let got = collect(TarReader::new(&layer[..])).unwrap();
//! assert_eq!(got.len(), 3);
//! assert_eq!(got[1].entry, Entry::file("etc/motd", 6).mode(0o644));
//! assert_eq!(got[1].data, b"hello\n");
//! ```

pub mod corpus;
pub mod entries;
pub mod hash;
pub mod hostile;
pub mod run;
pub mod test_binary;
pub mod tree;

pub use corpus::*;
pub use hash::*;
pub use run::*;
pub use tree::*;
