//! Transport strings, skopeo-style: `docker-archive:PATH[:REF]`, `oci:DIR[:REF]`,
//! `oci-archive:PATH[:REF]`, `strata:[IMAGE]` and `docker://REF`.
//!
//! `strata:IMAGE` is an image of the store (as a source, offered under all its names; as
//! a destination, the name it gets); `strata:` alone, a destination only, is the store
//! keeping the names the images have in the source (what `strata load` and `strata
//! pull` copy to).
//!
//! The path ends at the first `:` after the transport name (so it cannot hold one);
//! the rest is the reference: a name (`busybox`, `myreg:5000/app:v1`) or `@N`, the N-th
//! image of a source. For `oci:` and `oci-archive:` the reference is the ref name
//! (usually a tag) as stored in `index.json`.
//!
//! ```
//! use strata_image::{ImageSelector, Transport};
//! let t: Transport = "docker-archive:/tmp/x.tar:myreg:5000/app:v1".parse().unwrap();
//! assert_eq!(t.selector(), ImageSelector::Named("myreg:5000/app:v1".into()));
//! assert_eq!(t.to_string(), "docker-archive:/tmp/x.tar:myreg:5000/app:v1");
//! let t: Transport = "oci:/tmp/layout".parse().unwrap();
//! assert_eq!(t.selector(), ImageSelector::Only);
//! assert!("docker://Busybox".parse::<Transport>().is_err());
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use strata_layer::compress::Compression;

use crate::docker_archive::{ArchiveFormat, DockerArchiveDestination, DockerArchiveSource};
use crate::manifest::Platform;
use crate::oci::OciSource;
use crate::oci_dest::{OciDestination, OciOptions};
use crate::reference::Reference;
use crate::registry::{RegistryDestination, RegistryOptions, RegistrySource};
use crate::store::{StoreDestination, StoreSource};
use crate::transport::{ImageDestination, ImageSelector, ImageSource, SourceImage};
use crate::Error;
use std::sync::Arc;
use strata_store::{ApplyOptions, Store};

/// A parsed transport string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `docker-archive:PATH[:REF]`: what `docker save` writes and `docker load` reads (both layouts).
    DockerArchive {
        /// The archive (`/dev/stdin`, `/dev/stdout` for pipes).
        path: PathBuf,
        /// A name (`busybox:1.36`) or `@N`; none: the only image (or, written, the source's names).
        reference: Option<String>,
    },
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    Oci {
        /// The layout directory.
        path: PathBuf,
        /// The ref name in `index.json` (usually a tag) or `@N`.
        reference: Option<String>,
    },
    /// `oci-archive:PATH[:REF]`: an OCI image layout in a tar.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// The ref name in its `index.json` or `@N`.
        reference: Option<String>,
    },
    /// An image of the Strata store, by name or ID; empty (`strata:`) for the store as a
    /// destination that keeps the source's names.
    Strata {
        /// A name (`busybox`), an image ID or a unique prefix of one; empty for the store.
        image: String,
    },
    /// `docker://REF`: an image of a registry.
    Docker {
        /// The repository and tag or digest (`docker.io/library/busybox:latest`).
        reference: Reference,
    },
}

/// How to open a transport.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Where pipes and compressed archives are spooled (default: the temp directory).
    pub staging: PathBuf,
    /// The platform picked from multi-platform indexes (default: the host's).
    pub platform: Platform,
    /// The layout of docker-archives written.
    pub format: ArchiveFormat,
    /// Compress uncompressed layers written to `oci:`/`oci-archive:` (registries have
    /// their own, [`RegistryOptions::compress`]).
    pub compress: Compression,
    /// The store, for `strata:` (opened by the caller, who knows its root and driver).
    pub store: Option<Arc<Store>>,
    /// A `strata:` source offers the compressed blobs it kept of this compression instead
    /// of original tars (for destinations that keep compressed blobs: layouts, registries).
    pub store_blobs: Compression,
    /// Layers a `strata:` destination takes at once (downloads run in parallel; applies
    /// follow layer order).
    pub store_jobs: usize,
    /// How to reach registries (`docker://`) and push to them.
    pub registry: RegistryOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            staging: std::env::temp_dir(),
            platform: Platform::host(),
            format: ArchiveFormat::default(),
            compress: Compression::None,
            store: None,
            store_blobs: Compression::None,
            store_jobs: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            registry: RegistryOptions::default(),
        }
    }
}

impl OpenOptions {
    /// These options for the source of a copy to `destination`: what a `strata:` source
    /// offers ([`store_blobs`](Self::store_blobs)) is decided here, by the destination.
    /// Archives and the store take tars, so none of the compressed blobs the store kept;
    /// layouts and registries keep compressed layers, so the kept blobs of
    /// [`compress`](Self::compress), gzip when that is none (what their readers expect).
    ///
    /// ```
    /// use strata_image::{OpenOptions, Transport};
    /// use strata_layer::compress::Compression;
    /// let options = OpenOptions::default();
    /// let layout: Transport = "oci:/tmp/layout".parse().unwrap();
    /// assert_eq!(options.clone().copying_to(&layout).store_blobs, Compression::Gzip);
    /// let archive: Transport = "docker-archive:/tmp/x.tar".parse().unwrap();
    /// assert_eq!(options.copying_to(&archive).store_blobs, Compression::None);
    /// ```
    pub fn copying_to(mut self, destination: &Transport) -> OpenOptions {
        self.store_blobs = destination.store_blobs_wanted(self.compress);
        self
    }
}

impl Transport {
    /// The store's kept blobs this destination takes when its layers are compressed as
    /// `compress`: none for archives and the store (they take tars), else `compress`,
    /// gzip when that is none (what layout and registry readers expect).
    pub fn store_blobs_wanted(&self, compress: Compression) -> Compression {
        match self {
            Transport::DockerArchive { .. } | Transport::Strata { .. } => Compression::None,
            _ if compress != Compression::None => compress,
            _ => Compression::Gzip,
        }
    }
}

const NAMES: &str = "docker-archive:, oci:, oci-archive:, strata: or docker://";

impl FromStr for Transport {
    type Err = Error;

    fn from_str(s: &str) -> Result<Transport, Error> {
        let bad = |reason: String| Error::BadTransport {
            value: s.escape_debug().to_string(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Transport::Docker {
                reference: Reference::parse(rest)?,
            });
        }
        let (name, rest) = s
            .split_once(':')
            .ok_or_else(|| bad(format!("it names no transport (use {NAMES})")))?;
        if name == "strata" {
            return Ok(Transport::Strata {
                image: rest.to_string(),
            });
        }
        let (path, reference) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r.to_string())),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(bad(format!("{name}: needs a path")));
        }
        if let Some(r) = &reference {
            check_reference(name, r).map_err(bad)?;
        }
        let path = PathBuf::from(path);
        match name {
            "docker-archive" => Ok(Transport::DockerArchive { path, reference }),
            "oci" => Ok(Transport::Oci { path, reference }),
            "oci-archive" => Ok(Transport::OciArchive { path, reference }),
            "docker" => Err(bad("write docker://REF (with two slashes)".into())),
            other => Err(bad(format!("unknown transport `{other}:` (use {NAMES})"))),
        }
    }
}

fn check_reference(transport: &str, r: &str) -> Result<(), String> {
    if let Some(n) = r.strip_prefix('@') {
        return n
            .parse::<usize>()
            .map(|_| ())
            .map_err(|_| format!("`@{n}` must be @ and a number"));
    }
    if r.is_empty() {
        return Err("the reference after `:` is empty".into());
    }
    if transport == "docker-archive" {
        Reference::parse(r).map(|_| ()).map_err(|e| e.to_string())
    } else if r.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err(format!(
            "the ref name `{}` holds spaces or control characters",
            r.escape_debug()
        ))
    } else {
        Ok(())
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, path, reference) = match self {
            Transport::Strata { image } => return write!(f, "strata:{image}"),
            Transport::Docker { reference } => return write!(f, "docker://{reference}"),
            Transport::DockerArchive { path, reference } => ("docker-archive", path, reference),
            Transport::Oci { path, reference } => ("oci", path, reference),
            Transport::OciArchive { path, reference } => ("oci-archive", path, reference),
        };
        write!(f, "{name}:{}", path.display())?;
        if let Some(r) = reference {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

impl Transport {
    /// The images this transport string names when read: its reference, else the only one.
    pub fn selector(&self) -> ImageSelector {
        let reference = match self {
            Transport::DockerArchive { reference, .. }
            | Transport::Oci { reference, .. }
            | Transport::OciArchive { reference, .. } => reference.as_deref(),
            // The store source lists just the image it resolved.
            Transport::Strata { .. } | Transport::Docker { .. } => None,
        };
        match reference {
            None => ImageSelector::Only,
            Some(r) => match r.strip_prefix('@').and_then(|n| n.parse().ok()) {
                Some(i) => ImageSelector::Index(i),
                None => ImageSelector::Named(r.to_string()),
            },
        }
    }

    fn file_reference(&self) -> Result<Option<&str>, Error> {
        match self {
            Transport::DockerArchive { reference, .. }
            | Transport::Oci { reference, .. }
            | Transport::OciArchive { reference, .. } => {
                if reference.as_deref().is_some_and(|r| r.starts_with('@')) {
                    return Err(Error::BadTransport {
                        value: self.to_string(),
                        reason: "`@N` selects an image to read; a destination needs a name".into(),
                    });
                }
                Ok(reference.as_deref())
            }
            _ => Ok(None),
        }
    }

    /// Opens the one image this transport string names for reading (its reference, else
    /// the only image), as `inspect` shows it, with the source's warnings.
    pub fn open_image(&self, options: &OpenOptions) -> Result<(SourceImage, Vec<String>), Error> {
        let mut source = self.open_source(options)?;
        let listed = source.list()?;
        let skipped = source.skipped()?;
        let chosen =
            crate::transport::select(&source.describe(), listed, &skipped, &self.selector())?;
        match chosen.as_slice() {
            [one] => {
                let image = source.open_image(one)?;
                Ok((image, source.warnings()))
            }
            _ => Err(Error::Selection {
                source_name: source.describe(),
                reason: format!("{} images match; name one", chosen.len()),
            }),
        }
    }

    /// Opens a transport for reading. `strata:` is implemented by the store, which is not
    /// part of this crate.
    pub fn open_source(&self, options: &OpenOptions) -> Result<Box<dyn ImageSource>, Error> {
        match self {
            Transport::DockerArchive { path, .. } => Ok(Box::new(DockerArchiveSource::open(
                path,
                &options.staging,
                &options.platform,
            )?)),
            Transport::Oci { path, .. } => {
                require_dir(path)?;
                Ok(Box::new(OciSource::dir(path, options.platform.clone())))
            }
            Transport::OciArchive { path, .. } => Ok(Box::new(OciSource::archive(
                path,
                &options.staging,
                options.platform.clone(),
            )?)),
            Transport::Strata { image } if image.is_empty() => Err(Error::BadTransport {
                value: self.to_string(),
                reason: "strata: as a source needs an image name or ID".into(),
            }),
            Transport::Strata { image } => Ok(Box::new(StoreSource::new(
                self.store(options)?,
                std::slice::from_ref(image),
                options.store_blobs,
            )?)),
            Transport::Docker { reference } => Ok(Box::new(RegistrySource::open(
                reference,
                options.platform.clone(),
                &options.registry,
            )?)),
        }
    }

    /// The store `options` carry, for `strata:`.
    fn store(&self, options: &OpenOptions) -> Result<Arc<Store>, Error> {
        options.store.clone().ok_or_else(|| {
            Error::Unsupported(format!(
                "{self}: no store was opened for the strata: transport"
            ))
        })
    }

    /// Opens a transport for writing (see [`open_source`](Self::open_source)).
    pub fn open_destination(
        &self,
        options: &OpenOptions,
    ) -> Result<Box<dyn ImageDestination>, Error> {
        let reference = self.file_reference()?.map(str::to_string);
        match self {
            Transport::DockerArchive { path, .. } => {
                let reference = reference.as_deref().map(Reference::parse).transpose()?;
                if reference.as_ref().is_some_and(|r| r.digest().is_some()) {
                    return Err(Error::BadTransport {
                        value: self.to_string(),
                        reason: "a docker-archive tag cannot hold a digest".into(),
                    });
                }
                Ok(Box::new(DockerArchiveDestination::create(
                    path,
                    options.format,
                    reference,
                    &options.staging,
                )?))
            }
            Transport::Oci { path, .. } => Ok(Box::new(OciDestination::dir(
                path,
                OciOptions {
                    compress: options.compress,
                    reference,
                },
            )?)),
            Transport::OciArchive { path, .. } => Ok(Box::new(OciDestination::archive(
                path,
                &options.staging,
                OciOptions {
                    compress: options.compress,
                    reference,
                },
            )?)),
            Transport::Strata { image } => {
                let name = match image.as_str() {
                    "" => None,
                    image => Some(Reference::parse(image)?),
                };
                if name.as_ref().is_some_and(|n| n.digest().is_some()) {
                    return Err(Error::BadTransport {
                        value: self.to_string(),
                        reason: "a name in the store cannot hold a digest".into(),
                    });
                }
                Ok(Box::new(StoreDestination::new(
                    self.store(options)?,
                    name,
                    ApplyOptions::default(),
                    options.store_jobs,
                )))
            }
            Transport::Docker { reference } => Ok(Box::new(RegistryDestination::open(
                reference,
                &options.staging,
                &options.registry,
            )?)),
        }
    }
}

fn require_dir(path: &Path) -> Result<(), Error> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("oci:{}", path.display()),
            "is not a directory",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        for (s, selector) in [
            ("docker-archive:x.tar", ImageSelector::Only),
            (
                "docker-archive:x.tar:busybox",
                ImageSelector::Named("busybox".into()),
            ),
            ("docker-archive:x.tar:@1", ImageSelector::Index(1)),
            ("oci:dir:corpus", ImageSelector::Named("corpus".into())),
            ("oci-archive:a.tar", ImageSelector::Only),
            // The store source lists only the image it resolved.
            ("strata:busybox", ImageSelector::Only),
            ("docker://localhost:5000/x:1", ImageSelector::Only),
        ] {
            let t: Transport = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(t.selector(), selector, "{s}");
        }
        assert_eq!(
            "docker://busybox".parse::<Transport>().unwrap().to_string(),
            "docker://docker.io/library/busybox:latest"
        );
        for (bad, why) in [
            ("x.tar", "names no transport"),
            ("tar:x", "unknown transport `tar:`"),
            ("docker:busybox", "two slashes"),
            ("oci:", "needs a path"),
            ("docker-archive:x:@one", "a number"),
            ("docker-archive:x:Bad/Name", "lower case"),
            ("oci:d:a b", "spaces"),
        ] {
            let e = bad.parse::<Transport>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // `strata:` alone is the store as a destination only.
        let store: Transport = "strata:".parse().unwrap();
        assert_eq!(store.to_string(), "strata:");
        let e = store.open_source(&OpenOptions::default()).err().unwrap();
        assert!(e.to_string().contains("needs an image name"), "{e}");
    }

    #[test]
    fn the_store_offers_kept_blobs_to_layouts_and_registries_only() {
        let o = OpenOptions::default();
        for (to, want) in [
            ("docker-archive:x.tar", Compression::None),
            ("strata:", Compression::None),
            ("oci:dir", Compression::Gzip),
            ("oci-archive:x.tar", Compression::Gzip),
            ("docker://localhost:5000/x", Compression::Gzip),
        ] {
            let to: Transport = to.parse().unwrap();
            assert_eq!(o.clone().copying_to(&to).store_blobs, want, "{to}");
        }
        let zstd = OpenOptions {
            compress: Compression::Zstd,
            ..OpenOptions::default()
        };
        let to: Transport = "oci:dir".parse().unwrap();
        assert_eq!(zstd.copying_to(&to).store_blobs, Compression::Zstd);
    }

    #[test]
    fn the_store_needs_a_store() {
        let o = OpenOptions::default();
        let e = "strata:x"
            .parse::<Transport>()
            .unwrap()
            .open_source(&o)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no store was opened"), "{e}");
        let e = "oci:/tmp:@1"
            .parse::<Transport>()
            .unwrap()
            .open_destination(&o)
            .err()
            .unwrap();
        assert!(e.to_string().contains("needs a name"));
    }
}
