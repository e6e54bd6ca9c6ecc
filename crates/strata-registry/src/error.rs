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
    /// The registry's sentence about it.
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
    /// A registry host name (with its port) that cannot be one.
    #[error("invalid registry host `{host}`: {reason}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A repository name outside the distribution spec's grammar.
    #[error("invalid repository name `{name}`: {reason}")]
    InvalidRepository {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A tag or digest outside the distribution spec's grammar.
    #[error("invalid tag or digest `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A digest that breaks the OCI grammar or names an algorithm other than sha256.
    #[error(transparent)]
    BadDigest(#[from] strata_layer::digest::BadDigest),

    /// `--creds` text that is not `USER:PASSWORD`.
    #[error("invalid credentials: {reason}")]
    InvalidCredentials {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An auth file (containers auth.json, docker config.json) could not be used.
    #[error("auth file {}: {reason}", path.display())]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },

    /// A CA certificate file could not be read or parsed.
    #[error("CA certificate {}: {reason}", path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },

    /// The request did not get a response: refused, reset, timed out, TLS failure.
    #[error("{method} {url}: {error}")]
    Transport {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// Why there was no response.
        error: TransportError,
    },

    /// `GET /v2/` answered something no registry answers.
    #[error("{url} does not look like a registry: GET /v2/ answered {status}")]
    NotARegistry {
        /// The URL of `/v2/`.
        url: String,
        /// The HTTP status it answered.
        status: u16,
    },

    /// A `WWW-Authenticate` challenge that cannot be parsed or answered.
    #[error("{registry} asks for authentication we cannot give: {reason}")]
    BadChallenge {
        /// The registry host.
        registry: String,
        /// What we cannot parse or answer.
        reason: String,
    },

    /// 401: the registry (or its token server) did not accept our credentials, or
    /// none were given.
    #[error(
        "{registry} {} for {scope}: {errors}{}",
        if *anonymous { "requires credentials" } else { "did not accept the credentials" },
        if *anonymous { " (pass --creds USER:PASSWORD, or log in with podman login or docker login)" } else { "" }
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The access asked for (`repository:library/alpine:pull`).
        scope: String,
        /// Whether the request went without credentials.
        anonymous: bool,
        /// What the registry said.
        errors: RegistryErrors,
    },

    /// 403: authenticated, but not allowed.
    #[error("{registry} denied access to {scope}: {errors}")]
    Denied {
        /// The registry host.
        registry: String,
        /// The access asked for.
        scope: String,
        /// What the registry said.
        errors: RegistryErrors,
    },

    /// A cached bearer token was refused (it expired early or was revoked); the next
    /// attempt fetches a fresh one.
    #[error("{registry} refused a cached token for {scope}")]
    TokenRefused {
        /// The registry host.
        registry: String,
        /// The access the token was for.
        scope: String,
    },

    /// The token server's answer is unusable.
    #[error("token server {realm}: {reason}")]
    Token {
        /// The token server's URL.
        realm: String,
        /// What is wrong with its answer.
        reason: String,
    },

    /// 404 for the repository itself (`NAME_UNKNOWN`): the registry holds no such
    /// repository.
    #[error("repository {repository} is unknown to {registry}: {errors}")]
    RepositoryUnknown {
        /// The registry host.
        registry: String,
        /// The repository asked for.
        repository: String,
        /// What the registry said.
        errors: RegistryErrors,
    },

    /// 404 for a manifest: no such tag or digest in the repository.
    #[error("manifest {reference} is unknown in {repository}")]
    ManifestUnknown {
        /// The repository.
        repository: String,
        /// The tag or digest asked for.
        reference: String,
    },

    /// 404 for a blob.
    #[error("blob {digest} is unknown in {repository}")]
    BlobUnknown {
        /// The repository.
        repository: String,
        /// The blob asked for.
        digest: Digest,
    },

    /// The registry refused a blob upload because the bytes do not hash to the digest.
    #[error("the registry rejected blob {digest} for {repository}: {errors}")]
    DigestInvalid {
        /// The repository.
        repository: String,
        /// The digest the blob was pushed as.
        digest: Digest,
        /// What the registry said.
        errors: RegistryErrors,
    },

    /// The registry refused a manifest (invalid, or naming blobs it lacks).
    #[error("the registry rejected manifest {reference} for {repository}: {errors}")]
    ManifestRejected {
        /// The repository.
        repository: String,
        /// The tag or digest pushed to.
        reference: String,
        /// What the registry said.
        errors: RegistryErrors,
    },

    /// A Docker schema 1 manifest: deprecated, signed with keys nobody checks, and not
    /// something we convert.
    #[error(
        "manifest {reference} in {repository} is Docker schema 1 (`{media_type}`), which is \
         deprecated and not supported: push the image again with a current tool"
    )]
    Schema1 {
        /// The repository.
        repository: String,
        /// The tag or digest fetched.
        reference: String,
        /// The manifest's media type.
        media_type: String,
    },

    /// A manifest whose media type this crate does not read.
    #[error("manifest {reference} in {repository} has the unsupported media type `{media_type}`")]
    UnsupportedManifest {
        /// The repository.
        repository: String,
        /// The tag or digest fetched.
        reference: String,
        /// The media type it came with.
        media_type: String,
    },

    /// A manifest larger than [`MANIFEST_LIMIT`](crate::MANIFEST_LIMIT): refused
    /// before it is read whole.
    #[error("manifest {reference} in {repository} is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        /// The repository.
        repository: String,
        /// The tag or digest fetched.
        reference: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// Bytes that do not hash to the digest they were fetched or pushed as.
    #[error("{what}: expected digest {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        /// What the bytes are (`blob sha256:…`, `manifest latest`).
        what: String,
        /// The digest they were asked for as.
        expected: Digest,
        /// The digest of the bytes received or sent.
        actual: Digest,
    },

    /// Bytes of another length than the descriptor (or the registry) said.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What the bytes are.
        what: String,
        /// The length announced.
        expected: u64,
        /// The length received.
        actual: u64,
    },

    /// Any other unsuccessful status; 408, 429 and 5xx are retryable.
    #[error("{method} {url}: HTTP {status}: {errors}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        errors: RegistryErrors,
        /// The `Retry-After` the registry asked for, if any.
        retry_after: Option<Duration>,
    },

    /// The registry broke the protocol: a missing `Location`, a wrong `Range`, ...
    #[error("{method} {url}: {reason}")]
    Protocol {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },

    /// Reading the local blob being uploaded failed, or it is shorter than its size.
    #[error("reading the local copy of blob {digest}: {error}")]
    Source {
        /// The blob being uploaded.
        digest: Digest,
        /// The OS error, or what was short.
        error: io::Error,
    },

    /// A retryable fault kept happening; `last` is the final one.
    #[error("gave up after {attempts} attempts")]
    RetriesExhausted {
        /// How many tries were made.
        attempts: u32,
        /// The last fault.
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
            Error::Transport { error, .. } => error.is_retryable(),
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

/// Why a request got no response: refused, reset or dropped connections, timeouts, TLS
/// failures, names that do not resolve. The HTTP client's own error stays inside, so
/// this crate's API does not change with the client's version.
#[derive(Debug)]
pub struct TransportError(ureq::Error);

impl TransportError {
    pub(crate) fn new(error: ureq::Error) -> Self {
        TransportError(error)
    }

    /// Whether the request timed out (connecting, or waiting for the answer).
    pub fn is_timeout(&self) -> bool {
        matches!(self.0, ureq::Error::Timeout(_))
    }

    /// Whether TLS failed: a certificate we cannot verify, a handshake refused, a PEM
    /// file we cannot read.
    pub fn is_tls(&self) -> bool {
        matches!(
            self.0,
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_)
        )
    }

    /// Whether trying again may succeed: a failed or dropped connection, a timeout.
    /// Never a certificate refused or a name that does not resolve.
    pub fn is_retryable(&self) -> bool {
        transport_is_retryable(&self.0)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
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
            error: TransportError::new(error),
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
