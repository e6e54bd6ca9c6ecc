//! Test rigs for code that talks to a registry (strata-registry's own tests, the
//! `docker://` transport of strata-image, `strata copy`), all on loopback:
//!
//! - [`Registry`]: Debian's `docker-registry` (distribution 2.8) started on a free port
//!   with a generated config (no auth, htpasswd, or bearer tokens; optional TLS) in its
//!   own temporary directory, stopped when dropped; its access log tells what was asked;
//! - [`proxy::Proxy`]: a TCP proxy in front of one that cuts, stalls or corrupts
//!   requests and responses matching a rule, part-way through their bodies;
//! - [`token::TokenServer`]: the token server of distribution's `auth: token:` mode;
//! - [`Wire`]: a recorder of every HTTP exchange a client makes
//!   ([`strata_registry::Options::on_request`]).
//!
//! The registry must be installed (`scripts/test.sh` does it): a test that needs it
//! fails with instructions, never skips.

#![warn(missing_docs)]

pub mod http;
pub mod proxy;
pub mod registry;
pub mod token;

use std::sync::{Arc, Mutex};

use strata_registry::{Exchange, Options, RequestHook};

pub use registry::{Auth, Registry, RegistryConfig};

/// Every exchange a client made, in order: `METHOD URL -> STATUS`.
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<Vec<Seen>>>);

/// One exchange recorded by a [`Wire`].
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP method.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// The response status, `None` when no response came.
    pub status: Option<u16>,
    /// Request body bytes sent.
    pub sent: u64,
}

impl Wire {
    /// The hook to put in [`Options::on_request`] (or use [`options`](Wire::options)).
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

    /// The exchanges recorded so far, forgetting them.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The exchanges recorded so far.
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
