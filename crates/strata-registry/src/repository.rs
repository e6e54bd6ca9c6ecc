//! A handle on one repository of a registry.

use crate::{Client, RepositoryName};

/// One repository of a registry, through its [`Client`]: manifests
/// ([`Repository::get_manifest`], [`Repository::put_manifest`]) and blobs
/// ([`Repository::stat_blob`], [`Repository::get_blob`], [`Repository::push_blob`]).
/// Cheap to clone; clones share the client's connections and tokens.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    name: RepositoryName,
}

impl Repository {
    pub(crate) fn new(client: Client, name: RepositoryName) -> Repository {
        Repository { client, name }
    }

    /// The repository's name in its registry.
    pub fn name(&self) -> &RepositoryName {
        &self.name
    }

    /// The client for the registry it belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
