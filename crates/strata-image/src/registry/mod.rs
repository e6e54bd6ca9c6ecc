//! Registries as a transport: `docker://REF`, read by [`RegistrySource`] and written by
//! [`RegistryDestination`], on the protocol client of [`strata_registry`].
//!
//! # Reading
//! The reference's digest (else its tag) names a manifest. An OCI index or a Docker
//! manifest list resolves to the image of [`OpenOptions::platform`](crate::OpenOptions)
//! (when it has none for that platform, the error lists the ones it has). OCI and Docker
//! schema 2 manifests are read; the config blob is fetched and verified; each layer
//! streams straight from the registry through a [`strata_registry::BlobReader`] (size and
//! digest checked at its end, a dropped connection resumed with `Range`), which is opened
//! only when the stream is first read. Layers may stream on several threads at once.
//!
//! # Writing
//! The config blob, then each layer with [`Repository::push_blob`]: the repository is
//! asked first (`HEAD`), so a blob it holds is never sent again, and a blob known in
//! another repository of the same registry is mounted from there (the source was
//! `docker://` on the same registry, the store knows the blob is there, or
//! [`RegistryOptions::mount_from`]). Layers that
//! arrive compressed are pushed as they are; uncompressed ones are compressed as
//! [`RegistryOptions::compress`] says (gzip by default), once per layer and copy. A layer
//! whose stream is a file ([`BlobOrigin::File`], an `oci:` layout's blobs) is uploaded
//! from that file, while its stream is read alongside (at the pace of the upload, so
//! progress follows the upload) to verify its digests; any other is spooled once into the
//! staging directory. The manifest goes last, at [`commit`](crate::ImageDestination::commit),
//! under the tag (or as the digest) of the reference: a push that failed leaves no tag.
//! It is the source's own manifest, byte for byte, when it says exactly what was pushed
//! (its digest survives the copy), else a new one: Docker schema 2 when every layer came
//! with a Docker media type, OCI otherwise (and always when a layer is zstd).
//!
//! ```no_run
//! use strata_image::{copy, CopyOptions, OpenOptions, Transport};
//! # fn main() -> Result<(), strata_image::Error> {
//! let options = OpenOptions::default(); // credentials from the auth files, TLS verified
//! let from: Transport = "oci:/var/tmp/layout:corpus".parse()?;
//! let to: Transport = "docker://127.0.0.1:5000/strata/corpus:1".parse()?;
//! let (mut src, mut dst) = (from.open_source(&options)?, to.open_destination(&options)?);
//! copy(src.as_mut(), dst.as_mut(), &CopyOptions::new(from.selector()))?;
//! // And back, into a layout.
//! let back: Transport = "oci:/var/tmp/pulled:corpus".parse()?;
//! let (mut src, mut dst) = (to.open_source(&options)?, back.open_destination(&options)?);
//! copy(src.as_mut(), dst.as_mut(), &CopyOptions::new(to.selector()))?;
//! # Ok(()) }
//! ```

mod dest;
mod source;
mod upload;

use std::fmt;

use strata_layer::compress::Compression;
use strata_registry::{Client, Credentials, Options, RegistryHost, Repository, RepositoryName};

pub use dest::RegistryDestination;
pub use source::RegistrySource;

use crate::reference::Reference;
use crate::Error;

#[cfg(doc)]
use crate::BlobOrigin;

/// How to reach a registry, and how to write to one.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Who we are; `None`: what the user's auth files hold for the registry and
    /// repository ([`Credentials::lookup`]), anonymous if nothing.
    pub credentials: Option<Credentials>,
    /// How the client connects: TLS verification, CA certificates, retries, the upload
    /// policy, timeouts, the request hook. Its `credentials` are not used (the field
    /// above is).
    pub client: Options,
    /// How layers that arrive uncompressed are compressed when pushed (default gzip, what
    /// registries and their clients expect; `Compression::None` pushes them as they are).
    pub compress: Compression,
    /// Pushing: another repository of the destination's registry to have blobs mounted
    /// from, when it holds them (tried before anything is uploaded).
    pub mount_from: Option<RepositoryName>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            credentials: None,
            client: Options::default(),
            compress: Compression::Gzip,
            mount_from: None,
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("credentials", &self.credentials)
            .field("tls_verify", &self.client.tls_verify)
            .field("compress", &self.compress)
            .field("mount_from", &self.mount_from)
            .finish_non_exhaustive()
    }
}

/// The repository a reference names, with a client for its registry (nothing is sent
/// yet).
pub(crate) fn repository(
    reference: &Reference,
    options: &RegistryOptions,
) -> Result<Repository, Error> {
    let failed = |source| Error::Registry {
        what: format!("docker://{reference}"),
        error: Box::new(source),
    };
    let host = RegistryHost::parse(reference.domain()).map_err(failed)?;
    let name = RepositoryName::parse(reference.path()).map_err(failed)?;
    let credentials = match &options.credentials {
        Some(c) => c.clone(),
        None => Credentials::lookup(&host, Some(&name)).map_err(failed)?,
    };
    let client = Client::new(
        host,
        Options {
            credentials,
            ..options.client.clone()
        },
    )
    .map_err(failed)?;
    Ok(client.repository(name))
}

/// What to ask the registry for: the digest when the reference has one (it wins over
/// the tag, as it does for docker), else the tag.
pub(crate) fn manifest_reference(
    reference: &Reference,
) -> Result<strata_registry::Reference, Error> {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => Ok(strata_registry::Reference::Digest(*d)),
        (None, Some(t)) => strata_registry::Reference::parse(t).map_err(|source| Error::Registry {
            what: format!("docker://{reference}"),
            error: Box::new(source),
        }),
        (None, None) => Err(Error::BadTransport {
            value: format!("docker://{reference}"),
            reason: "it names neither a tag nor a digest".into(),
        }),
    }
}
