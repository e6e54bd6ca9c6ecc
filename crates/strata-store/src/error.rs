//! The crate's one error type: each variant names what went wrong and with what.

use std::io;
use std::path::PathBuf;

use crate::id::LayerId;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No layer of that ID exists (or it is being removed).
    #[error("no layer `{0}` in the store")]
    NotFound(LayerId),

    /// A layer of that ID already exists.
    #[error("a layer `{0}` already exists")]
    Exists(LayerId),

    /// A string cannot be a layer ID.
    #[error("invalid layer ID `{id}`: {reason}")]
    BadId { id: String, reason: &'static str },

    /// The layer exists but cannot do this now: wrong kind or state, mounted, has
    /// children, in use by another process.
    #[error("layer `{id}` {reason}")]
    Refused { id: LayerId, reason: String },

    /// A layer imported while its parent was still coming ([`crate::Store::import_after`])
    /// was not kept: the parent did not make it.
    #[error("layer `{id}` was not brought in: its parent `{parent}` failed: {reason}")]
    ParentFailed {
        id: LayerId,
        parent: LayerId,
        reason: String,
    },

    /// A diff is not what the caller said it must be (its diffID, or its blob's digest).
    #[error("the layer's {what} is wrong: expected {expected}, got {got}")]
    Mismatch {
        what: Expected,
        expected: strata_layer::digest::Digest,
        got: strata_layer::digest::Digest,
    },

    /// A storage option is unknown, malformed or cannot be honoured here.
    #[error("storage option `{name}`: {reason}")]
    BadOption { name: String, reason: String },

    /// The store was made with another driver.
    #[error(
        "the store at {root} was created with the {store} driver; it cannot be used with {asked}"
    )]
    DriverMismatch {
        root: PathBuf,
        store: &'static str,
        asked: &'static str,
    },

    /// A driver cannot work here (no overlayfs, a mount failed).
    #[error("{driver} driver: {reason}")]
    Driver {
        driver: &'static str,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },

    /// Another process held the store lock longer than the caller would wait.
    #[error("gave up after {} s waiting for {holder}", waited.as_secs_f32().round())]
    LockTimeout {
        holder: crate::lock::LockHolder,
        waited: std::time::Duration,
    },

    /// The metadata database failed.
    #[error("store database: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    /// The store's files are not what its database says (found by an operation or fsck).
    #[error("the store is inconsistent: {0}")]
    Corrupt(String),

    /// Reading, applying or writing a layer's content failed.
    #[error(transparent)]
    Layer(#[from] strata_layer::Error),

    /// The file system holding the store filled up while work was under way; what the
    /// work had written is gone again. The error met is the last word of the message.
    #[error("the file system holding the store at {} is full; nothing of this was kept: {detail}", root.display())]
    DiskFull { root: PathBuf, detail: String },

    /// A file system operation on the store failed. The OS error is the last word of the
    /// message, so it is not a `source`.
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            error: error.into(),
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Self {
        let context = context.into();
        move |source| Error::Db { context, source }
    }

    pub(crate) fn refused(id: &LayerId, reason: impl Into<String>) -> Self {
        Error::Refused {
            id: id.clone(),
            reason: reason.into(),
        }
    }

    /// The error's message followed by those of its sources, `: `-separated.
    pub(crate) fn chain_text(&self) -> String {
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            let more = e.to_string();
            if !text.ends_with(&more) {
                text = format!("{text}: {more}");
            }
            next = e.source();
        }
        text
    }

    /// True if the error comes from a full file system (`ENOSPC`, SQLite's "database or
    /// disk is full"), however deep inside.
    pub fn is_disk_full(&self) -> bool {
        fn io_full(e: &io::Error) -> bool {
            e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
                || e.kind() == io::ErrorKind::StorageFull
                || e.get_ref().is_some_and(|inner| chain_full(inner))
        }
        fn layer_full(e: &strata_layer::Error) -> bool {
            match e {
                strata_layer::Error::Io { error, .. } => io_full(error),
                strata_layer::Error::Apply {
                    source: Some(error),
                    ..
                } => io_full(error),
                strata_layer::Error::At { source, .. } => layer_full(source),
                _ => false,
            }
        }
        fn chain_full(e: &(dyn std::error::Error + 'static)) -> bool {
            let mut next = Some(e);
            while let Some(e) = next {
                if let Some(e) = e.downcast_ref::<Error>() {
                    if e.is_disk_full() {
                        return true;
                    }
                }
                if let Some(e) = e.downcast_ref::<strata_layer::Error>() {
                    if layer_full(e) {
                        return true;
                    }
                }
                if let Some(e) = e.downcast_ref::<io::Error>() {
                    if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                        return true;
                    }
                }
                next = e.source();
            }
            false
        }
        match self {
            Error::DiskFull { .. } => true,
            Error::Io { error, .. } => io_full(error),
            Error::Layer(e) => layer_full(e),
            Error::Driver {
                source: Some(e), ..
            } => io_full(e),
            Error::Db {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => e.code == rusqlite::ErrorCode::DiskFull,
            _ => false,
        }
    }

    /// True for the errors a caller may retry unchanged (the database or a lock was busy).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Db {
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error {
                        code: rusqlite::ErrorCode::DatabaseBusy
                            | rusqlite::ErrorCode::DatabaseLocked,
                        ..
                    },
                    _
                ),
                ..
            }
        )
    }
}

/// Which digest of a diff [`Error::Mismatch`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    DiffId,
    BlobDigest,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expected::DiffId => "diffID",
            Expected::BlobDigest => "blob digest",
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
