//! # strata-registry: the OCI distribution protocol, spoken to one registry
//!
//! A blocking client for a Distribution (registry v2) registry: Docker Hub, quay.io,
//! GHCR, a cloud registry, or Debian's `docker-registry` on `127.0.0.1:5000`. It does
//! one thing: move manifests and blobs, verified by digest, with the registry's
//! authentication, over TLS (or plain HTTP for loopback and `tls_verify: false`), and
//! through the faults real networks have.
//!
//! The words:
//! - a [`Client`] speaks to one registry ([`RegistryHost`]); its first request pings
//!   `GET /v2/` to learn the scheme and the auth challenge (none, Basic, or Bearer
//!   with a token server), then tokens are fetched per scope (`repository:NAME:pull`
//!   or `pull,push`) and cached until they expire;
//! - a [`Repository`] is one repository of it; it holds manifests (by [`Reference`]: a
//!   [`Tag`] or a [`Digest`]) and blobs (by [`Digest`]);
//! - a [`Manifest`] is the exact bytes the registry holds, with their
//!   [`ManifestKind`] and digest; a blob is read through a [`BlobReader`], which checks
//!   its size and digest at the end, and written with [`Repository::push_blob`].
//!
//! The life of a push: for each blob, `push_blob` (it asks `HEAD` first and skips what
//! the repository has, mounts from `PushOptions::mount_from` when it can, else uploads
//! in one `PUT` or in resumable `PATCH` chunks), then `put_manifest` under a tag. The
//! life of a pull: `get_manifest` by tag, then `get_blob` for each descriptor, read to
//! the end. Transient faults (refused or dropped connections, timeouts, 429, 5xx) are
//! retried with backoff ([`RetryPolicy`]), downloads resume with `Range`, uploads from
//! the offset the registry reports; 401, 403 and 404 are never retried, and every
//! [`Error`] says which of the two it is ([`Error::is_retryable`]).
//!
//! ```no_run
//! use std::io::{Cursor, Read};
//! use strata_registry::*;
//!
//! let host: RegistryHost = "127.0.0.1:5000".parse()?;
//! let options = Options {
//!     credentials: Credentials::lookup(&host, None)?, // or Credentials::from_user_pass("me:secret")?
//!     ..Options::default()
//! };
//! let repo = Client::new(host, options)?.repository(RepositoryName::parse("strata/demo")?);
//!
//! // Push: the config blob, then the manifest that names it.
//! let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let config_digest = sha256(config);
//! repo.push_blob(&config_digest, config.len() as u64, Cursor::new(&config[..]), PushOptions::default())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
//!     ManifestKind::OciManifest.media_type(),
//!     config.len()
//! );
//! let tag = Reference::parse("v1")?;
//! repo.put_manifest(&tag, ManifestKind::OciManifest, manifest.as_bytes())?;
//!
//! // Pull: the manifest by tag, then its blobs, verified while they stream.
//! let got = repo.get_manifest(&tag)?;
//! assert_eq!(got.bytes, manifest.as_bytes());
//! let mut bytes = Vec::new();
//! repo.get_blob(&config_digest, Some(config.len() as u64))?.read_to_end(&mut bytes)?;
//! assert_eq!(bytes, config);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod auth;
mod blob;
mod client;
mod error;
mod listing;
mod manifest;
mod name;
mod policy;
mod repository;

pub use auth::{AuthFileFormat, AuthFiles, Credentials};
pub use blob::{BlobReader, PushOptions, Pushed};
pub use client::{Client, Exchange, Options, RequestHook};
pub use error::{Error, RegistryError, RegistryErrors, TransportError};
pub use manifest::{Manifest, ManifestKind, MANIFEST_LIMIT};
pub use name::{Reference, RegistryHost, RepositoryName, Tag};
pub use policy::{RetryPolicy, UploadPolicy};
pub use repository::Repository;
pub use strata_layer::digest::{sha256, BadDigest, Digest};
