//! The crate's one error type. Each variant names what went wrong and where; the
//! registry's own JSON `errors` body is decoded into [`RegistryErrors`] and shown.
//! [`Error::is_retryable`] tells transient faults (dropped connections, timeouts, 429,
//! 5xx) from permanent ones (401, 403, 404, bad digests).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use strata_layer::digest::Digest;

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    /// `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DIGEST_INVALID`, `UNAUTHORIZED`, `DENIED`, ...
    pub code: String,
    pub message: String,
    /// The `detail` member as compact JSON, when there is one.
    pub detail: Option<String>,
}

/// The decoded `errors` body of a failed response (empty when the body was not one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryErrors(pub Vec<RegistryError>);

impl RegistryErrors {
    /// Decodes a response body; anything that is not the registry's JSON error shape
    /// gives an empty list.
    pub fn decode(body: &[u8]) -> RegistryErrors {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            detail: Option<serde_json::Value>,
        }
        let Ok(body) = serde_json::from_slice::<Body>(body) else {
            return RegistryErrors::default();
        };
        RegistryErrors(
            body.errors
                .into_iter()
                .map(|e| RegistryError {
                    code: e.code,
                    message: e.message,
                    detail: e.detail.filter(|d| !d.is_null()).map(|d| d.to_string()),
                })
                .collect(),
        )
    }

    /// Whether any entry has this code.
    pub fn has(&self, code: &str) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no error details from the registry");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", e.code)?;
            if !e.message.is_empty() {
                write!(f, ": {}", e.message)?;
            }
            if let Some(d) = &e.detail {
                // Details can be large (whole manifests); keep the message readable.
                let d: String = d.chars().take(300).collect();
                write!(f, " ({d})")?;
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid registry host `{host}`: {reason}")]
    InvalidHost { host: String, reason: &'static str },

    #[error("invalid repository name `{name}`: {reason}")]
    InvalidRepository { name: String, reason: &'static str },

    #[error("invalid tag or digest `{reference}`: {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },

    /// A digest that breaks the OCI grammar or names an algorithm other than sha256.
    #[error(transparent)]
    BadDigest(#[from] strata_layer::digest::BadDigest),

    /// `--creds` text that is not `USER:PASSWORD`.
    #[error("invalid credentials: {reason}")]
    InvalidCredentials { reason: &'static str },

    /// An auth file (containers auth.json, docker config.json) could not be used.
    #[error("auth file {}: {reason}", path.display())]
    AuthFile { path: PathBuf, reason: String },

    /// A CA certificate file could not be read or parsed.
    #[error("CA certificate {}: {reason}", path.display())]
    CaCertificate { path: PathBuf, reason: String },

    /// The request did not get a response: refused, reset, timed out, TLS failure.
    #[error("{method} {url}: {error}")]
    Transport {
        method: &'static str,
        url: String,
        error: ureq::Error,
    },

    /// `GET /v2/` answered something no registry answers.
    #[error("{url} does not look like a registry: GET /v2/ answered {status}")]
    NotARegistry { url: String, status: u16 },

    /// A `WWW-Authenticate` challenge that cannot be parsed or answered.
    #[error("{registry} asks for authentication we cannot give: {reason}")]
    BadChallenge { registry: String, reason: String },

    /// 401: the registry (or its token server) did not accept our credentials, or
    /// none were given.
    #[error(
        "{registry} {} for {scope}: {errors}{}",
        if *anonymous { "requires credentials" } else { "did not accept the credentials" },
        if *anonymous { " (pass --creds USER:PASSWORD, or log in with podman login or docker login)" } else { "" }
    )]
    Unauthorized {
        registry: String,
        scope: String,
        anonymous: bool,
        errors: RegistryErrors,
    },

    /// 403: authenticated, but not allowed.
    #[error("{registry} denied access to {scope}: {errors}")]
    Denied {
        registry: String,
        scope: String,
        errors: RegistryErrors,
    },

    /// A cached bearer token was refused (it expired early or was revoked); the next
    /// attempt fetches a fresh one.
    #[error("{registry} refused a cached token for {scope}")]
    TokenRefused { registry: String, scope: String },

    /// The token server's answer is unusable.
    #[error("token server {realm}: {reason}")]
    Token { realm: String, reason: String },

    #[error("repository {repository} is unknown to {registry}: {errors}")]
    RepositoryUnknown {
        registry: String,
        repository: String,
        errors: RegistryErrors,
    },

    #[error("manifest {reference} is unknown in {repository}")]
    ManifestUnknown {
        repository: String,
        reference: String,
    },

    #[error("blob {digest} is unknown in {repository}")]
    BlobUnknown { repository: String, digest: Digest },

    /// The registry refused a blob upload because the bytes do not hash to the digest.
    #[error("the registry rejected blob {digest} for {repository}: {errors}")]
    DigestInvalid {
        repository: String,
        digest: Digest,
        errors: RegistryErrors,
    },

    /// The registry refused a manifest (invalid, or naming blobs it lacks).
    #[error("the registry rejected manifest {reference} for {repository}: {errors}")]
    ManifestRejected {
        repository: String,
        reference: String,
        errors: RegistryErrors,
    },

    /// A Docker schema 1 manifest: deprecated, signed with keys nobody checks, and not
    /// something we convert.
    #[error(
        "manifest {reference} in {repository} is Docker schema 1 (`{media_type}`), which is \
         deprecated and not supported: push the image again with a current tool"
    )]
    Schema1 {
        repository: String,
        reference: String,
        media_type: String,
    },

    #[error("manifest {reference} in {repository} has the unsupported media type `{media_type}`")]
    UnsupportedManifest {
        repository: String,
        reference: String,
        media_type: String,
    },

    #[error("manifest {reference} in {repository} is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        repository: String,
        reference: String,
        limit: u64,
    },

    /// Bytes that do not hash to the digest they were fetched or pushed as.
    #[error("{what}: expected digest {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// Bytes of another length than the descriptor (or the registry) said.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// Any other unsuccessful status; 408, 429 and 5xx are retryable.
    #[error("{method} {url}: HTTP {status}: {errors}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        errors: RegistryErrors,
        /// The `Retry-After` the registry asked for, if any.
        retry_after: Option<Duration>,
    },

    /// The registry broke the protocol: a missing `Location`, a wrong `Range`, ...
    #[error("{method} {url}: {reason}")]
    Protocol {
        method: &'static str,
        url: String,
        reason: String,
    },

    /// Reading the local blob being uploaded failed, or it is shorter than its size.
    #[error("reading the local copy of blob {digest}: {error}")]
    Source { digest: Digest, error: io::Error },

    /// A retryable fault kept happening; `last` is the final one.
    #[error("gave up after {attempts} attempts")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Whether trying again may succeed: connection failures, timeouts, dropped
    /// connections, 408, 429 and 5xx answers, a refused cached token. Never 401/403/404,
    /// bad digests or bad input.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { error, .. } => transport_is_retryable(error),
            Error::Status { status, .. } => status_is_retryable(*status),
            Error::TokenRefused { .. } => true,
            _ => false,
        }
    }

    /// The registry's decoded error entries, for the variants that carry them.
    pub fn registry_errors(&self) -> Option<&RegistryErrors> {
        match self {
            Error::Unauthorized { errors, .. }
            | Error::Denied { errors, .. }
            | Error::RepositoryUnknown { errors, .. }
            | Error::DigestInvalid { errors, .. }
            | Error::ManifestRejected { errors, .. }
            | Error::Status { errors, .. } => Some(errors),
            Error::RetriesExhausted { last, .. } => last.registry_errors(),
            _ => None,
        }
    }

    /// The crate's error inside an I/O error from [`crate::BlobReader`], if it is one.
    pub fn from_io(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }

    /// This error as an I/O error (for `Read` implementations); bad bytes become
    /// `InvalidData`.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }

    /// How long the registry asked us to wait before the next try.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub(crate) fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

fn transport_is_retryable(e: &ureq::Error) -> bool {
    if let ureq::Error::Io(io) = e {
        // Bytes that make no sense (a TLS certificate refused, TLS spoken to plain
        // HTTP) will make no more sense the next time.
        return !matches!(
            io.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
        );
    }
    matches!(
        e,
        ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_decode_and_display() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},{"code":"DENIED","message":"no"}]}"#;
        let errs = RegistryErrors::decode(body);
        assert!(errs.has("MANIFEST_UNKNOWN") && errs.has("DENIED"));
        assert_eq!(
            errs.to_string(),
            r#"MANIFEST_UNKNOWN: manifest unknown ({"Tag":"x"}); DENIED: no"#
        );
        assert_eq!(RegistryErrors::decode(b"<html>"), RegistryErrors::default());
        assert_eq!(
            RegistryErrors::decode(b"").to_string(),
            "no error details from the registry"
        );
    }

    #[test]
    fn retryable_is_transient_only() {
        let status = |s| Error::Status {
            method: "GET",
            url: "u".into(),
            status: s,
            errors: RegistryErrors::default(),
            retry_after: None,
        };
        assert!(
            status(503).is_retryable() && status(429).is_retryable() && status(408).is_retryable()
        );
        assert!(!status(404).is_retryable() && !status(400).is_retryable());
        let t = |error| Error::Transport {
            method: "GET",
            url: "u".into(),
            error,
        };
        assert!(t(ureq::Error::ConnectionFailed).is_retryable());
        assert!(t(ureq::Error::Io(io::Error::from(
            io::ErrorKind::ConnectionReset
        )))
        .is_retryable());
        assert!(!t(ureq::Error::HostNotFound).is_retryable());
        assert!(!t(ureq::Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad certificate"
        )))
        .is_retryable());
        let denied = Error::Denied {
            registry: "r".into(),
            scope: "s".into(),
            errors: RegistryErrors::default(),
        };
        assert!(!denied.is_retryable());
        let io = Error::TokenRefused {
            registry: "r".into(),
            scope: "s".into(),
        }
        .into_io();
        assert!(Error::from_io(&io).is_some_and(Error::is_retryable));
    }
}
