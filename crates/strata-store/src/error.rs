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
    BadId {
        /// The string given, escaped for printing.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// The layer exists but cannot do this now: wrong kind or state, mounted, has
    /// children, in use by another process.
    #[error("layer `{id}` {reason}")]
    Refused {
        /// The layer asked for.
        id: LayerId,
        /// Why not, and what to do first, as the rest of a sentence about the layer.
        reason: String,
    },

    /// A layer imported while its parent was still coming
    /// ([`Store::import_after`](crate::Store::import_after)) was not kept: the parent
    /// did not make it.
    #[error("layer `{id}` was not brought in: its parent `{parent}` failed: {reason}")]
    ParentFailed {
        /// The layer imported.
        id: LayerId,
        /// Its parent.
        parent: LayerId,
        /// Why the parent failed, as its importer said.
        reason: String,
    },

    /// A diff is not what the caller said it must be (its diffID, or its blob's digest).
    #[error("the layer's {what} is wrong: expected {expected}, got {got}")]
    Mismatch {
        /// Which digest.
        what: Expected,
        /// What the caller said it must be.
        expected: strata_layer::digest::Digest,
        /// What the diff has.
        got: strata_layer::digest::Digest,
    },

    /// A storage option is unknown, malformed or cannot be honoured here.
    #[error("storage option `{name}`: {reason}")]
    BadOption {
        /// The option's name (`size`).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store was made with another driver.
    #[error(
        "the store at {root} was created with the {store} driver; it cannot be used with {asked}"
    )]
    DriverMismatch {
        /// The store's root.
        root: PathBuf,
        /// The driver the store was made with.
        store: &'static str,
        /// The driver asked for.
        asked: &'static str,
    },

    /// A driver cannot work here (no overlayfs, a mount failed).
    #[error("{driver} driver: {reason}")]
    Driver {
        /// The driver's name (`overlay`, `windows layer`).
        driver: &'static str,
        /// What failed, with the kernel's explanation when it gave one.
        reason: String,
        /// The system error, when there is one.
        #[source]
        source: Option<io::Error>,
    },

    /// Another process held the store lock longer than the caller would wait.
    #[error("gave up after {} s waiting for {holder}", waited.as_secs_f32().round())]
    LockTimeout {
        /// Who held it, as far as the kernel tells.
        holder: crate::lock::LockHolder,
        /// How long the caller waited.
        waited: std::time::Duration,
    },

    /// Another process kept using a layer (reading its files, or changing them) for as
    /// long as the caller would wait: nothing was changed, and trying again later works.
    #[error("layer `{id}` is in use by another strata process (reading or changing it): gave up after {} s waiting to {what} it; try again", waited.as_secs_f32())]
    Busy {
        /// The layer.
        id: LayerId,
        /// What the caller wanted to do (`freeze`).
        what: &'static str,
        /// How long it waited.
        waited: std::time::Duration,
    },

    /// The metadata database failed: `context` says what the store was doing.
    #[error("store database: {context}: {source}")]
    Db {
        /// What the store was doing ("recording the apply").
        context: String,
        /// What the database said.
        #[source]
        source: DbError,
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
    DiskFull {
        /// The store's root.
        root: PathBuf,
        /// The error met, with its causes.
        detail: String,
    },

    /// A file system operation on the store failed. The OS error is the last word of the
    /// message, so it is not a `source`.
    #[error("{context}: {error}")]
    Io {
        /// What the store was doing, naming the path.
        context: String,
        /// The OS error.
        error: io::Error,
    },
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
        move |source| Error::Db {
            context,
            source: DbError(source),
        }
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
            Error::Db { source, .. } => source.is_disk_full(),
            _ => false,
        }
    }

    /// True for the errors a caller may retry unchanged (the database or a lock was busy).
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Db { source, .. } => source.is_busy(),
            _ => false,
        }
    }
}

/// A failure of the SQLite database under the store, with SQLite's own message (and
/// its cause, as the error's source). The database library stays the store's business:
/// callers learn what they can act on, [`is_busy`](DbError::is_busy) and
/// [`is_disk_full`](DbError::is_disk_full).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(rusqlite::Error);

impl DbError {
    fn code(&self) -> Option<rusqlite::ErrorCode> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
            _ => None,
        }
    }

    /// True if another connection held the database too long (`SQLITE_BUSY`,
    /// `SQLITE_LOCKED`): the operation may be retried unchanged.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// True if the database could not grow because its file system is full.
    pub fn is_disk_full(&self) -> bool {
        self.code() == Some(rusqlite::ErrorCode::DiskFull)
    }
}

/// Which digest of a diff [`Error::Mismatch`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The digest of the uncompressed tar.
    DiffId,
    /// The digest of the blob as it came (compressed).
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

/// A result whose error is the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
