//! The crate's one error type: each variant names what went wrong and where.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with images, references and transports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A digest string does not follow the grammar of image-formats §1.1, or uses an
    /// algorithm Strata cannot verify.
    #[error(transparent)]
    BadDigest(#[from] strata_layer::digest::BadDigest),

    /// An image reference (`busybox`, `myreg:5000/app:v1`, `name@sha256:…`) is malformed.
    #[error("invalid image reference `{value}`: {reason}")]
    BadReference {
        /// The reference as given, escaped for printing.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A transport string (`docker-archive:PATH[:REF]`, `oci:DIR[:REF]`, …) is malformed.
    #[error("invalid transport `{value}`: {reason}")]
    BadTransport {
        /// The transport string as given, escaped for printing.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A JSON document (config, manifest, index, `manifest.json`) does not parse. The
    /// parser's reason is part of the message, not a separate source, so that a chain of
    /// causes does not print it twice.
    #[error("{what} is not valid: {error}")]
    Json {
        /// Which document (`the config of image …`, `manifest.json of …`).
        what: String,
        /// The parser's error (line and column included).
        error: serde_json::Error,
    },

    /// A JSON document parses but breaks a rule of its format.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which document, or which part of it.
        what: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A media type Strata does not know, where it must understand it.
    #[error("{what} has the unknown media type `{media_type}`")]
    UnknownMediaType {
        /// Which descriptor or document carries it.
        what: String,
        /// The media type as written.
        media_type: String,
    },

    /// An archive lacks a file it must have (`manifest.json`, a referenced blob).
    #[error("invalid archive {archive}: {what}")]
    BadArchive {
        /// The archive file.
        archive: PathBuf,
        /// What it lacks or gets wrong.
        what: String,
    },

    /// A symlink inside an archive points outside it (or loops, or chains too far).
    #[error("invalid archive {archive}: `{member}` is a symlink to `{target}`, which {reason}")]
    SymlinkEscape {
        /// The archive file.
        archive: PathBuf,
        /// The symlink's name in the archive.
        member: String,
        /// Where it points.
        target: String,
        /// Why that is refused (`leaves the archive`, `loops`).
        reason: &'static str,
    },

    /// A member of an archive ends before its data does.
    #[error(
        "invalid archive {archive}: `{member}` is truncated (its data ends at byte {needed}, \
         the file at byte {have})"
    )]
    Truncated {
        /// The archive file.
        archive: PathBuf,
        /// The member whose data is cut short.
        member: String,
        /// The offset its data should end at.
        needed: u64,
        /// The archive's size.
        have: u64,
    },

    /// The number of layers differs from the number of diffIDs in the config.
    #[error("image {image}: {layers} layers listed but its config has {diff_ids} diffIDs")]
    LayerCountMismatch {
        /// The image (its ID or name).
        image: String,
        /// How many layers the manifest (or `manifest.json`) lists.
        layers: usize,
        /// How many diffIDs its config has.
        diff_ids: usize,
    },

    /// A layer's uncompressed bytes do not hash to the diffID its config names.
    #[error("invalid diffID for layer {index} of image {image}: expected {expected}, got {got}")]
    DiffIdMismatch {
        /// The image (its ID or name).
        image: String,
        /// The layer's position, bottom layer 0.
        index: usize,
        /// The diffID the config names.
        expected: String,
        /// The sha256 of the tar that came.
        got: String,
    },

    /// A blob's bytes do not hash to (or are not the size of) its descriptor.
    #[error("{what}: expected {expected}, got {got}")]
    BlobMismatch {
        /// Which blob (`layer 2 of image …`, `config …`).
        what: String,
        /// The digest or size the descriptor names.
        expected: String,
        /// What the bytes that came have.
        got: String,
    },

    /// No image in the source matches what was asked for, or more than one does.
    #[error("{source_name}: {reason}")]
    Selection {
        /// The source (`docker-archive:/tmp/x.tar`, `the store`).
        source_name: String,
        /// Why nothing (or too much) matches, with what the source holds.
        reason: String,
    },

    /// Something this transport or format cannot do.
    #[error("{0}")]
    Unsupported(String),

    /// A registry (`docker://`) did not do what was asked: `what` says what that was
    /// (which image, which blob), the registry client's error why.
    #[error("{what}: {}", chain(error))]
    Registry {
        /// What was asked of the registry.
        what: String,
        /// Why it failed.
        error: Box<strata_registry::Error>,
    },

    /// A layer stream failed inside strata-layer (tar or compression).
    #[error(transparent)]
    Layer(#[from] strata_layer::Error),

    /// The store refused or failed (the `strata:` transport).
    #[error(transparent)]
    Store(#[from] strata_store::Error),

    /// An I/O error, with what was being done.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        error: io::Error,
    },
}

impl Error {
    /// An I/O error with what was being done. An error that a verifying stream of this
    /// crate raised inside `read` (a digest mismatch) is given back as itself.
    pub fn io(context: impl Into<String>, error: io::Error) -> Self {
        match unwrap_io(error) {
            Ok(inner) => inner,
            Err(error) => Error::Io {
                context: context.into(),
                error,
            },
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            error: source,
        }
    }

    /// Wraps this error in an `io::Error`, for `Read` implementations; [`Error::io`]
    /// unwraps it again.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, Carried(Box::new(self)))
    }
}

/// An error and its sources, `: `-joined (the registry's "gave up after N attempts"
/// says why through its source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        next = inner.source();
    }
    s
}

/// An [`Error`] travelling inside an `io::Error`.
#[derive(Debug)]
struct Carried(Box<Error>);

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

fn unwrap_io(error: io::Error) -> Result<Error, io::Error> {
    if !error.get_ref().is_some_and(|e| e.is::<Carried>()) {
        return Err(error);
    }
    let kind = error.kind();
    match error.into_inner().map(|inner| inner.downcast::<Carried>()) {
        Some(Ok(carried)) => Ok(*carried.0),
        Some(Err(other)) => Err(io::Error::new(kind, other)),
        None => Err(io::Error::from(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carried_error_comes_back_as_itself() {
        let e = Error::Unsupported("nope".into()).into_io();
        assert!(matches!(Error::io("reading", e), Error::Unsupported(m) if m == "nope"));
        let plain = io::Error::other("disk on fire");
        assert_eq!(
            Error::io("reading x", plain).to_string(),
            "reading x: disk on fire"
        );
    }
}
