//! Manifests: fetched by tag or digest as the exact bytes the registry holds (never
//! re-serialized), with their media type and verified digest; pushed as given.

use strata_layer::digest::{sha256, Digest};
use strata_layer::media_type;

use crate::client::{header, read_errors, status_error, Method, Request, Scope};
use crate::{Error, Reference, Repository, TransportError};

/// The manifest media types we speak. Docker schema 1 is refused with [`Error::Schema1`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
}

impl ManifestKind {
    /// Every kind, in the order of the `Accept` header we send.
    pub const ALL: [ManifestKind; 4] = [
        ManifestKind::OciIndex,
        ManifestKind::OciManifest,
        ManifestKind::DockerManifestList,
        ManifestKind::DockerManifest,
    ];

    /// The kind's media type, as `Content-Type` and `Accept` carry it.
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciIndex => media_type::OCI_INDEX,
            ManifestKind::OciManifest => media_type::OCI_MANIFEST,
            ManifestKind::DockerManifestList => media_type::DOCKER_LIST,
            ManifestKind::DockerManifest => media_type::DOCKER_MANIFEST,
        }
    }

    /// The kind of a media type (parameters such as `; charset=utf-8` ignored).
    pub fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        let bare = media_type.split(';').next().unwrap_or("").trim();
        ManifestKind::ALL
            .into_iter()
            .find(|k| k.media_type().eq_ignore_ascii_case(bare))
    }

    /// Whether this lists other manifests (one per platform) rather than layers.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

/// A manifest as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// From the `Content-Type`, or the document itself when that is generic.
    pub kind: ManifestKind,
    /// The sha256 of `bytes`, checked against the digest asked for (when fetched by
    /// digest) and the registry's `Docker-Content-Digest` (when it sends one).
    pub digest: Digest,
    /// Exactly what the registry sent (never re-serialized).
    pub bytes: Vec<u8>,
}

/// Manifests larger than this are refused (distribution 3 and containerd use 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;

const SCHEMA1: [&str; 2] = [
    media_type::DOCKER_SCHEMA1_UNSIGNED,
    media_type::DOCKER_SCHEMA1,
];

impl Repository {
    /// Fetches a manifest (OCI index or manifest, Docker manifest list or schema 2
    /// manifest) by tag or digest, retrying transient faults.
    pub fn get_manifest(&self, reference: &Reference) -> Result<Manifest, Error> {
        let scope = Scope::pull(self.name());
        let url = self
            .client()
            .url(&format!("{}/manifests/{reference}", self.name()))?;
        let accept = ManifestKind::ALL.map(ManifestKind::media_type).join(", ");
        self.client().retrying(|| {
            let resp = self.client().send(
                Request::new(Method::Get, url.clone(), &scope).header("accept", accept.clone()),
            )?;
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    let errors = read_errors(resp);
                    return Err(if errors.has("NAME_UNKNOWN") {
                        Error::RepositoryUnknown {
                            registry: self.client().host_name(),
                            repository: self.name().to_string(),
                            errors,
                        }
                    } else {
                        Error::ManifestUnknown {
                            repository: self.name().to_string(),
                            reference: reference.to_string(),
                        }
                    });
                }
                401 | 403 => return Err(self.client().auth_error(&scope, resp)),
                _ => return Err(status_error(Method::Get, &url, resp)),
            }
            let content_type = header(&resp, "content-type").map(str::to_string);
            let said = header(&resp, "docker-content-digest").and_then(|d| Digest::parse(d).ok());
            let mut body = resp.into_body();
            let bytes = match body.with_config().limit(MANIFEST_LIMIT).read_to_vec() {
                Ok(b) => b,
                Err(ureq::Error::BodyExceedsLimit(_)) => {
                    return Err(Error::ManifestTooLarge {
                        repository: self.name().to_string(),
                        reference: reference.to_string(),
                        limit: MANIFEST_LIMIT,
                    })
                }
                Err(error) => {
                    return Err(Error::Transport {
                        method: "GET",
                        url: url.clone(),
                        error: TransportError::new(error),
                    })
                }
            };
            let kind = self.manifest_kind(reference, content_type.as_deref(), &bytes)?;
            let digest = sha256(&bytes);
            let what = || format!("manifest {reference} from {}", self.name());
            if let Reference::Digest(asked) = reference {
                if *asked != digest {
                    return Err(Error::DigestMismatch {
                        what: what(),
                        expected: *asked,
                        actual: digest,
                    });
                }
            }
            if let Some(said) = said.filter(|d| *d != digest) {
                return Err(Error::DigestMismatch {
                    what: format!("{} (its Docker-Content-Digest)", what()),
                    expected: said,
                    actual: digest,
                });
            }
            Ok(Manifest {
                kind,
                digest,
                bytes,
            })
        })
    }

    /// The kind from the `Content-Type`, or from the document itself when the registry
    /// sent a generic type.
    fn manifest_kind(
        &self,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<ManifestKind, Error> {
        let bare = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let schema1 = |media_type: String| Error::Schema1 {
            repository: self.name().to_string(),
            reference: reference.to_string(),
            media_type,
        };
        if SCHEMA1.contains(&bare.as_str()) {
            return Err(schema1(bare));
        }
        if let Some(kind) = ManifestKind::from_media_type(&bare) {
            return Ok(kind);
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Sniff {
            schema_version: Option<u64>,
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            layers: Option<serde_json::Value>,
        }
        let unsupported = |media_type: String| Error::UnsupportedManifest {
            repository: self.name().to_string(),
            reference: reference.to_string(),
            media_type,
        };
        let Ok(doc) = serde_json::from_slice::<Sniff>(bytes) else {
            return Err(unsupported(if bare.is_empty() {
                "none (and not JSON)".into()
            } else {
                bare
            }));
        };
        if doc.schema_version == Some(1) {
            return Err(schema1(if bare.is_empty() {
                "schemaVersion 1".into()
            } else {
                bare
            }));
        }
        match doc.media_type.as_deref().map(ManifestKind::from_media_type) {
            Some(Some(kind)) => Ok(kind),
            Some(None) => Err(unsupported(doc.media_type.unwrap_or_default())),
            // OCI allows omitting mediaType; the shape tells the two apart.
            None if doc.schema_version == Some(2) && doc.manifests.is_some() => {
                Ok(ManifestKind::OciIndex)
            }
            None if doc.schema_version == Some(2) && doc.layers.is_some() => {
                Ok(ManifestKind::OciManifest)
            }
            None => Err(unsupported(if bare.is_empty() {
                "none".into()
            } else {
                bare
            })),
        }
    }

    /// Pushes a manifest under a tag or its digest; returns its digest. The blobs it
    /// names must be in the repository already.
    pub fn put_manifest(
        &self,
        reference: &Reference,
        kind: ManifestKind,
        bytes: &[u8],
    ) -> Result<Digest, Error> {
        let digest = sha256(bytes);
        if let Reference::Digest(d) = reference {
            if *d != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest to push to {} as {d}", self.name()),
                    expected: *d,
                    actual: digest,
                });
            }
        }
        let scope = Scope::push(self.name());
        let url = self
            .client()
            .url(&format!("{}/manifests/{reference}", self.name()))?;
        self.client().retrying(|| {
            let resp = self.client().send(
                Request::new(Method::Put, url.clone(), &scope)
                    .header("content-type", kind.media_type())
                    .payload(crate::client::Payload::Bytes(bytes)),
            )?;
            match resp.status().as_u16() {
                200..=202 => {
                    if let Some(said) = header(&resp, "docker-content-digest")
                        .and_then(|d| Digest::parse(d).ok())
                        .filter(|d| *d != digest)
                    {
                        return Err(Error::DigestMismatch {
                            what: format!("manifest {reference} as stored in {}", self.name()),
                            expected: digest,
                            actual: said,
                        });
                    }
                    Ok(digest)
                }
                400 | 404 => {
                    let errors = read_errors(resp);
                    Err(if errors.has("NAME_UNKNOWN") {
                        Error::RepositoryUnknown {
                            registry: self.client().host_name(),
                            repository: self.name().to_string(),
                            errors,
                        }
                    } else {
                        Error::ManifestRejected {
                            repository: self.name().to_string(),
                            reference: reference.to_string(),
                            errors,
                        }
                    })
                }
                401 | 403 => Err(self.client().auth_error(&scope, resp)),
                _ => Err(status_error(Method::Put, &url, resp)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_round_trip() {
        for k in ManifestKind::ALL {
            assert_eq!(ManifestKind::from_media_type(k.media_type()), Some(k));
        }
        assert_eq!(
            ManifestKind::from_media_type("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            Some(ManifestKind::OciIndex)
        );
        assert_eq!(ManifestKind::from_media_type(SCHEMA1[0]), None);
        assert!(
            ManifestKind::DockerManifestList.is_index() && !ManifestKind::OciManifest.is_index()
        );
    }
}
