//! Shared helpers for the registry tests: real registries (Debian's `docker-registry`)
//! started on free loopback ports, each in its own temporary directory; a
//! fault-injecting TCP proxy; a token server; seekable pseudo-random blobs; and a
//! recorder of every HTTP exchange the client makes.
//!
//! Tests fail (never skip) when `docker-registry` is missing: `scripts/test.sh`
//! installs it.

#![allow(dead_code, unused_imports)]

pub mod http;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod scripted;
pub mod source;
pub mod token;

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use strata_registry::{Digest, Exchange, Options, RequestHook};

pub use registry::{Auth, Registry, RegistryConfig};
pub use source::Pattern;

/// Every exchange a client made, in order: `METHOD URL -> STATUS`.
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<Vec<Seen>>>);

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub sent: u64,
}

impl Wire {
    pub fn hook(&self) -> RequestHook {
        let log = self.0.clone();
        Arc::new(move |x: &Exchange<'_>| {
            log.lock().unwrap().push(Seen {
                method: x.method.to_string(),
                url: x.url.to_string(),
                status: x.status,
                sent: x.sent,
            })
        })
    }

    /// Options that record into this wire.
    pub fn options(&self) -> Options {
        Options {
            on_request: Some(self.hook()),
            ..Options::default()
        }
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// The exchanges with this method whose URL contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.all()
            .iter()
            .filter(|s| s.method == method && s.url.contains(part))
            .count()
    }

    /// `METHOD PATH?QUERY STATUS` lines, for assertion messages.
    pub fn dump(&self) -> String {
        self.all()
            .iter()
            .map(|s| {
                let path = s.url.splitn(4, '/').nth(3).unwrap_or(&s.url);
                format!("{} /{} -> {:?} (sent {})", s.method, path, s.status, s.sent)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The sha256 of a reader's bytes, computed here (not by the crate under test) with
/// strata-layer's hasher, and how many there were.
pub fn digest_of(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let h = strata_layer::digest::Hasher::default();
    let mut w = h.writer(io::sink());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    Ok((h.digest(), h.bytes()))
}

pub fn digest_bytes(b: &[u8]) -> Digest {
    digest_of(b).unwrap().0
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-registry-test-")
        .tempdir()
        .expect("create a temporary directory")
}

pub fn repo_name(s: &str) -> strata_registry::RepositoryName {
    strata_registry::RepositoryName::parse(s).unwrap()
}
