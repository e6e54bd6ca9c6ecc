//! Shared helpers for the registry tests: the rigs of strata-registry-testkit (real
//! registries on loopback ports, a fault-injecting proxy, a token server, the exchange
//! recorder), seekable pseudo-random blobs, a scripted HTTP server, and the corpus.
//!
//! Tests fail (never skip) when `docker-registry` is missing: `scripts/test.sh`
//! installs it.

#![allow(dead_code, unused_imports)]

pub mod oci;
pub mod scripted;
pub mod source;

pub use strata_registry_testkit::{http, proxy, registry, token};

use std::io::{self, Read, Write};

use strata_registry::Digest;

pub use source::Pattern;
pub use strata_registry_testkit::{Auth, Registry, RegistryConfig, Wire};

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
