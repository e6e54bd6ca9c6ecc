//! The crate's one error type: each variant names what went wrong and where.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing a Windows layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A backup stream is malformed at `offset` (bytes from the start of the stream).
    #[error("backup stream of `{name}`: {reason} (at byte {offset} of the stream)")]
    BadStream {
        /// The object whose stream it is.
        name: String,
        /// Bytes from the start of the stream to the fault.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// An extended-attribute chain (FILE_FULL_EA_INFORMATION) is malformed or cannot be encoded.
    #[error("extended attributes: {reason}")]
    BadEa {
        /// What is wrong.
        reason: String,
    },

    /// A security descriptor is malformed (binary) or cannot be built (SDDL).
    #[error("security descriptor: {reason}")]
    BadSecurityDescriptor {
        /// What is wrong.
        reason: String,
    },

    /// Reparse data is malformed, unsupported or cannot be encoded.
    #[error("reparse data: {reason}")]
    BadReparse {
        /// What is wrong.
        reason: String,
    },

    /// A tar entry cannot be mapped to or from a Windows layer entry.
    #[error("tar entry `{name}`: {reason}")]
    BadEntry {
        /// The entry's tar name.
        name: String,
        /// Why it cannot be mapped.
        reason: String,
    },

    /// A name cannot be a Windows layer path (escapes `Files\`, `..`, characters NTFS
    /// cannot hold, a second name differing only in case).
    #[error("invalid layer path `{name}`: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A layer folder holds something the format does not allow, or an operation on it failed.
    #[error("layer folder {}: `{path}`: {reason}", folder.display())]
    Folder {
        /// The layer folder.
        folder: PathBuf,
        /// The object concerned, as a Windows path (or a file of the folder; `.` for
        /// the folder itself).
        path: String,
        /// What went wrong, in words.
        reason: String,
        /// The OS error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },

    /// `tombstones.txt` is malformed (line numbers start at 1).
    #[error("invalid tombstones file {}: line {line}: {reason}", file.display())]
    BadTombstones {
        /// The `tombstones.txt` read.
        file: PathBuf,
        /// The line at fault (0 for the file as a whole).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// The writer or reader was used against its lifecycle.
    #[error("misuse: {0}")]
    Misuse(String),

    /// The tar codec (strata-layer) failed.
    #[error(transparent)]
    Layer(strata_layer::Error),

    /// An I/O error outside any one entry, with what was being done.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        error: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error,
        }
    }

    pub(crate) fn entry(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadEntry {
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn name(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadName {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// A strata-layer error; one that carries this crate's error (a layer folder behind the
/// [`LayerWriter`](strata_layer::LayerWriter) trait) is taken back whole.
impl From<strata_layer::Error> for Error {
    fn from(e: strata_layer::Error) -> Self {
        match e {
            strata_layer::Error::Format(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Layer(strata_layer::Error::Format(other)),
            },
            other => Error::Layer(other),
        }
    }
}

/// This crate's error behind the strata-layer traits: a codec error stays itself, ours
/// travels as [`strata_layer::Error::Format`].
impl From<Error> for strata_layer::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Layer(l) => l,
            other => strata_layer::Error::Format(Box::new(other)),
        }
    }
}
