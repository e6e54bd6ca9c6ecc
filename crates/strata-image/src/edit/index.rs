//! Multi-platform indexes made of images already in place: `index create DEST SRC...`,
//! `index append`, `index remove`.
//!
//! Every SRC is an image manifest in DEST's own repository (a registry) or layout (an
//! `oci:` directory), so nothing but the index itself is written: no layer and no
//! manifest moves. Each entry's platform comes from its config (`os`, `architecture`,
//! `variant`, Windows' `os.version` and `os.features`). The index is a Docker manifest
//! list when every entry is a Docker manifest, else an OCI index.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_registry::ManifestKind;

use crate::gojson;
use crate::ids::{sha256, Digest};
use crate::manifest::{annotation, media_type, Descriptor, Index, Manifest, Platform};
use crate::refs;
use crate::registry::{manifest_reference, repository};
use crate::{Error, OpenOptions, Transport};

/// What to do to the index at DEST.
#[derive(Clone, Debug)]
pub enum IndexChange {
    /// A new index of these images (DEST's previous one, if any, is replaced).
    Create(Vec<Transport>),
    /// These images added to DEST's index (replacing entries of the same platform).
    Append(Vec<Transport>),
    /// The entries of these platforms taken out.
    Remove(Vec<Platform>),
}

#[derive(Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
    #[serde(rename = "os.features", default)]
    os_features: Option<Vec<String>>,
}

/// Where the index lives.
enum Place {
    Registry(crate::Reference),
    Layout { dir: PathBuf, name: String },
}

fn place(t: &Transport) -> Result<Place, Error> {
    match t {
        Transport::Docker { reference } if reference.tag().is_some() => {
            Ok(Place::Registry(reference.clone()))
        }
        Transport::Oci {
            path,
            reference: Some(name),
        } if !name.starts_with('@') => Ok(Place::Layout {
            dir: path.clone(),
            name: name.clone(),
        }),
        _ => Err(Error::Unsupported(format!(
            "{t}: an index goes to docker://HOST/REPO:TAG or oci:DIR:NAME"
        ))),
    }
}

/// Whether `src` is in the same repository or layout as the index.
fn same_place(dest: &Place, src: &Transport) -> bool {
    match (dest, src) {
        (Place::Registry(d), Transport::Docker { reference }) => {
            d.domain() == reference.domain() && d.path() == reference.path()
        }
        (Place::Layout { dir, .. }, Transport::Oci { path, .. }) => {
            dir.canonicalize().ok() == path.canonicalize().ok()
        }
        _ => false,
    }
}

/// The index entry for image `src`: its manifest's descriptor and its platform.
fn entry(dest: &Place, src: &Transport, options: &OpenOptions) -> Result<Descriptor, Error> {
    if !same_place(dest, src) {
        return Err(Error::invalid(
            src.to_string(),
            "is not in the index's repository or layout: copy it there first (no blob \
             moves into an index)",
        ));
    }
    let m = refs::manifest(src, options)?;
    if ManifestKind::from_media_type(&m.media_type).is_some_and(|k| k.is_index()) {
        return Err(Error::invalid(
            src.to_string(),
            "is an index; name one platform's image",
        ));
    }
    Manifest::parse(&m.bytes, &m.media_type, &src.to_string())?;
    let config = refs::config(src, options)?;
    let p: ConfigPlatform =
        gojson::from_slice(&config).map_err(|e| Error::json(format!("the config of {src}"), e))?;
    let mut d = Descriptor::new(&m.media_type, m.digest, m.bytes.len() as u64);
    d.platform = Some(Platform {
        architecture: p.architecture,
        os: p.os,
        os_version: p.os_version.filter(|v| !v.is_empty()),
        os_features: p.os_features.filter(|f| !f.is_empty()),
        variant: p.variant.filter(|v| !v.is_empty()),
    });
    Ok(d)
}

fn same_platform(a: &Descriptor, b: &Platform) -> bool {
    a.platform.as_ref().is_some_and(|p| {
        p.os == b.os
            && p.architecture == b.architecture
            && (b.variant.is_none() || p.variant == b.variant)
            && (b.os_version.is_none() || p.os_version == b.os_version)
    })
}

/// The index at `dest` now, if any.
fn current(dest: &Place, options: &OpenOptions) -> Result<Option<Index>, Error> {
    let (bytes, what) = match dest {
        Place::Registry(r) => {
            let t = Transport::Docker {
                reference: r.clone(),
            };
            (refs::manifest(&t, options)?.bytes, t.to_string())
        }
        Place::Layout { dir, name } => {
            let what = format!("oci:{}:{name}", dir.display());
            let index = read_layout_index(dir)?;
            let Some(d) = index
                .manifests
                .iter()
                .find(|d| d.annotations.get(annotation::REF_NAME) == Some(name))
            else {
                return Ok(None);
            };
            let path = dir.join("blobs/sha256").join(d.digest.hex());
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            (bytes, what)
        }
    };
    Index::parse(&bytes, &what).map(Some)
}

fn read_layout_index(dir: &Path) -> Result<Index, Error> {
    let what = format!("index.json of oci:{}", dir.display());
    let bytes = std::fs::read(dir.join("index.json"))
        .map_err(|e| Error::io(format!("cannot read {what}"), e))?;
    Index::parse(&bytes, &what)
}

/// Applies `change` to the index at `dest`; returns the new index's digest.
pub fn edit_index(
    dest: &Transport,
    change: &IndexChange,
    options: &OpenOptions,
) -> Result<Digest, Error> {
    let place = place(dest)?;
    let mut manifests = match change {
        IndexChange::Create(_) => Vec::new(),
        _ => {
            current(&place, options)?
                .ok_or_else(|| Error::invalid(dest.to_string(), "holds no index"))?
                .manifests
        }
    };
    match change {
        IndexChange::Create(srcs) | IndexChange::Append(srcs) => {
            if srcs.is_empty() {
                return Err(Error::invalid(dest.to_string(), "no image was named"));
            }
            for src in srcs {
                let e = entry(&place, src, options)?;
                if let Some(p) = &e.platform {
                    manifests.retain(|d| !same_platform(d, p));
                }
                manifests.push(e);
            }
        }
        IndexChange::Remove(platforms) => {
            let before = manifests.len();
            manifests.retain(|d| !platforms.iter().any(|p| same_platform(d, p)));
            if manifests.len() == before {
                return Err(Error::invalid(
                    dest.to_string(),
                    "has no entry of the platforms named",
                ));
            }
        }
    }
    let docker = !manifests.is_empty()
        && manifests
            .iter()
            .all(|d| d.media_type == media_type::DOCKER_MANIFEST);
    let mut index = Index::oci(manifests);
    let kind = if docker {
        index.media_type = Some(media_type::DOCKER_LIST.into());
        ManifestKind::DockerManifestList
    } else {
        ManifestKind::OciIndex
    };
    let bytes = gojson::marshal(&index)?;
    let digest = sha256(&bytes);
    match &place {
        Place::Registry(r) => {
            let repo = repository(r, &options.registry)?;
            repo.put_manifest(&manifest_reference(r)?, kind, &bytes)
                .map_err(|e| Error::Registry {
                    what: format!("pushing the index to {dest}"),
                    error: Box::new(e),
                })?;
        }
        Place::Layout { dir, name } => {
            // The blob first, then the name: a failure leaves index.json as it was.
            let blobs = dir.join("blobs/sha256");
            crate::oci_dest::write_atomic(&blobs, &digest.hex(), &bytes)?;
            let mut top = read_layout_index(dir)?;
            top.manifests
                .retain(|d| d.annotations.get(annotation::REF_NAME) != Some(name));
            let mut d = Descriptor::new(kind.media_type(), digest, bytes.len() as u64);
            d.annotations
                .insert(annotation::REF_NAME.into(), name.clone());
            top.manifests.push(d);
            crate::oci_dest::write_atomic(dir, "index.json", &gojson::marshal(&top)?)?;
        }
    }
    Ok(digest)
}
