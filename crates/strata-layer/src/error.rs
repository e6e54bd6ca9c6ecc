//! The crate's one error type: each variant names what went wrong and where.

use std::io;

use crate::path::{LayerPath, PathError};

/// Everything that can go wrong reading, writing or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tar stream is malformed at `offset` (the start of the header concerned).
    #[error("bad tar header at byte {offset}: {reason}")]
    BadHeader {
        /// Bytes from the start of the tar stream to the header.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The stream ended inside a header or inside an entry's data.
    #[error("the layer is truncated: it ends at byte {offset} inside {inside}")]
    Truncated {
        /// Where the stream ended, in bytes.
        offset: u64,
        /// What it ended inside (`a header`, `the data of an entry`).
        inside: &'static str,
    },

    /// An entry's name cannot be a layer path (`..`, NUL).
    #[error("entry at byte {offset} has an unsafe name `{name}`: {reason}")]
    BadPath {
        /// Where the entry's headers start in the tar stream.
        offset: u64,
        /// The name as the tar holds it, escaped for display.
        name: String,
        /// Why it cannot be a layer path.
        reason: PathError,
    },

    /// An entry cannot be applied, with the reason (refused for safety, or the
    /// filesystem said no).
    #[error("cannot apply `{path}`: {reason}")]
    Apply {
        /// The entry refused or failed.
        path: LayerPath,
        /// Why, in words.
        reason: String,
        /// The OS error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },

    /// A recipe is malformed, or the tree it refers to no longer matches it.
    #[error("recipe: {reason}")]
    Recipe {
        /// What does not match, in words.
        reason: String,
    },

    /// The writer was used against its lifecycle (data without a file, too much data).
    #[error("writer misuse: {0}")]
    Misuse(String),

    /// An error while applying the entry whose headers start at byte `offset`.
    #[error("at the entry starting at byte {offset} of the layer")]
    At {
        /// Where the entry's headers start in the layer.
        offset: u64,
        /// What went wrong with the entry.
        #[source]
        source: Box<Error>,
    },

    /// A format built on the entry model (a Windows layer folder) refused or failed an
    /// entry: its own precise error, kept whole so its crate can take it back.
    #[error(transparent)]
    Format(Box<dyn std::error::Error + Send + Sync + 'static>),

    /// An I/O error outside any one entry (reading the input, writing the output). The
    /// OS error is part of the message (it is the last word, so it is not a `source`).
    #[error("{context}: {error}")]
    Io {
        /// What was being done (`reading the layer`).
        context: String,
        /// The OS error.
        error: io::Error,
    },
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error: source,
        }
    }

    /// This error, located at the entry starting at byte `offset` of the layer.
    pub fn at(self, offset: u64) -> Self {
        Error::At {
            offset,
            source: Box::new(self),
        }
    }

    /// An entry refused or failed, with no OS error behind it.
    pub fn apply(path: &LayerPath, reason: impl Into<String>) -> Self {
        Error::Apply {
            path: path.clone(),
            reason: reason.into(),
            source: None,
        }
    }

    /// An entry failed because the filesystem returned an error.
    pub fn apply_io(path: &LayerPath, reason: impl Into<String>, source: io::Error) -> Self {
        Error::Apply {
            path: path.clone(),
            reason: reason.into(),
            source: Some(source),
        }
    }
}
