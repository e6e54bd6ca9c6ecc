//! Names and manifests without moving layers: the manifest and config of an image on any
//! transport and their digests, the tags of a repository or a layout, a registry's
//! catalog, and adding or deleting a tag (a registry's manifest, a layout's
//! `index.json` entry); no blob is copied.
//!
//! On a registry, the manifest is the one the reference names as the registry serves it
//! (an index stays an index, as `crane manifest` shows it); elsewhere it is the manifest
//! of the image the transport selects (the Docker schema 2 manifest of its config and
//! layers for an archive that stores none).

use std::collections::BTreeSet;
use std::path::Path;

use strata_registry::RegistryHost;

use crate::ids::Digest;
use crate::manifest::{annotation, Descriptor, Index};
use crate::reference::Reference;
use crate::registry::{manifest_reference, repository};
use crate::transport::RawManifest;
use crate::{Error, OpenOptions, Transport};

fn registry_error(what: String) -> impl FnOnce(strata_registry::Error) -> Error {
    move |e| Error::Registry {
        what,
        error: Box::new(e),
    }
}

/// The manifest `t` names, as stored (see the [module documentation](self)).
pub fn manifest(t: &Transport, options: &OpenOptions) -> Result<RawManifest, Error> {
    if let Transport::Docker { reference } = t {
        let repo = repository(reference, &options.registry)?;
        let m = repo
            .get_manifest(&manifest_reference(reference)?)
            .map_err(registry_error(format!("fetching the manifest of {t}")))?;
        return Ok(RawManifest {
            media_type: m.kind.media_type().to_string(),
            digest: m.digest,
            bytes: m.bytes,
        });
    }
    let (image, _) = t.open_image(options)?;
    image.manifest_or_schema2()
}

/// The raw config of the image `t` names (for a registry index, the platform of
/// `options`).
pub fn config(t: &Transport, options: &OpenOptions) -> Result<Vec<u8>, Error> {
    let (image, _) = t.open_image(options)?;
    Ok(image.config.raw().to_vec())
}

/// The tags of the repository `t` names (`docker://HOST/REPO`, its tag ignored), or the
/// names in a layout or an archive, sorted, each once.
pub fn tags(t: &Transport, options: &OpenOptions) -> Result<Vec<String>, Error> {
    if let Transport::Docker { reference } = t {
        let repo = repository(reference, &options.registry)?;
        return repo
            .tags()
            .map_err(registry_error(format!("listing the tags of {t}")));
    }
    let mut source = t.open_source(options)?;
    let names: BTreeSet<String> = source
        .list()?
        .into_iter()
        .flat_map(|i| i.ref_names)
        .collect();
    Ok(names.into_iter().collect())
}

/// Every repository of the registry at `host` (`localhost:5000`, `docker.io`).
pub fn catalog(host: &str, options: &OpenOptions) -> Result<Vec<String>, Error> {
    let what = format!("listing the repositories of {host}");
    let host = RegistryHost::parse(host).map_err(registry_error(what.clone()))?;
    // A reference to some repository of the host, for its client and credentials.
    let probe = Reference::parse(&format!("{host}/catalog"))?;
    let repo = repository(&probe, &options.registry)?;
    repo.client().catalog().map_err(registry_error(what))
}

/// Gives the image `t` names the tag `tag` in the same place: a registry gets the same
/// manifest bytes pushed under `tag` (no blob moves); a layout gets an `index.json`
/// entry. Returns the manifest's digest.
pub fn tag(t: &Transport, tag: &str, options: &OpenOptions) -> Result<Digest, Error> {
    match t {
        Transport::Docker { reference } => {
            let new = Reference::parse(&format!("{}:{tag}", reference.name()))?;
            let repo = repository(reference, &options.registry)?;
            let m = repo
                .get_manifest(&manifest_reference(reference)?)
                .map_err(registry_error(format!("fetching the manifest of {t}")))?;
            repo.put_manifest(&manifest_reference(&new)?, m.kind, &m.bytes)
                .map_err(registry_error(format!("tagging {t} as {tag}")))
        }
        Transport::Oci { path, reference } => {
            check_ref_name(tag)?;
            let (mut index, found) = layout_entry(path, reference.as_deref())?;
            let mut entry = found.clone();
            entry
                .annotations
                .insert(annotation::REF_NAME.into(), tag.to_string());
            entry.annotations.remove(annotation::IMAGE_NAME);
            index.manifests.retain(|d| {
                d.annotations.get(annotation::REF_NAME).map(String::as_str) != Some(tag)
            });
            index.manifests.push(entry);
            write_index(path, &index)?;
            Ok(found.digest)
        }
        _ => Err(Error::Unsupported(format!(
            "{t}: tag works on registries (docker://) and layouts (oci:); for an archive, \
             `strata copy` it under the new name"
        ))),
    }
}

/// Deletes what `t` names: on a registry its manifest (and so every tag of it; deletes
/// must be enabled there), in a layout the `index.json` entries of its ref name (blobs
/// stay until a garbage collection). Returns the manifest's digest.
pub fn delete(t: &Transport, options: &OpenOptions) -> Result<Digest, Error> {
    match t {
        Transport::Docker { reference } => {
            let repo = repository(reference, &options.registry)?;
            let digest = match reference.digest() {
                Some(d) => *d,
                None => {
                    repo.get_manifest(&manifest_reference(reference)?)
                        .map_err(registry_error(format!("fetching the manifest of {t}")))?
                        .digest
                }
            };
            repo.delete_manifest(&digest)
                .map_err(registry_error(format!("deleting {t}")))?;
            Ok(digest)
        }
        Transport::Oci {
            path,
            reference: Some(name),
        } if !name.starts_with('@') => {
            let (mut index, found) = layout_entry(path, Some(name))?;
            index
                .manifests
                .retain(|d| d.annotations.get(annotation::REF_NAME) != Some(name));
            write_index(path, &index)?;
            Ok(found.digest)
        }
        _ => Err(Error::Unsupported(format!(
            "{t}: delete takes docker://REF or oci:DIR:NAME"
        ))),
    }
}

fn check_ref_name(tag: &str) -> Result<(), Error> {
    if tag.is_empty()
        || tag.starts_with('@')
        || tag.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(
            format!("the tag `{}`", tag.escape_debug()),
            "must be a non-empty name without spaces, control characters or a leading @",
        ));
    }
    Ok(())
}

/// The layout's index and the entry `name` picks (the only one when `None`).
fn layout_entry(dir: &Path, name: Option<&str>) -> Result<(Index, Descriptor), Error> {
    let what = format!("index.json of oci:{}", dir.display());
    let bytes = std::fs::read(dir.join("index.json"))
        .map_err(|e| Error::io(format!("cannot read {what}"), e))?;
    let index = Index::parse(&bytes, &what)?;
    let found: Vec<&Descriptor> = match name {
        Some(n) => index
            .manifests
            .iter()
            .filter(|d| d.annotations.get(annotation::REF_NAME).map(String::as_str) == Some(n))
            .collect(),
        None => index.manifests.iter().collect(),
    };
    let found = match found.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(Error::Selection {
                source_name: format!("oci:{}", dir.display()),
                reason: format!("no entry is named `{}`", name.unwrap_or_default()),
            })
        }
        more => {
            return Err(Error::Selection {
                source_name: format!("oci:{}", dir.display()),
                reason: format!("{} entries match; name one (`oci:DIR:NAME`)", more.len()),
            })
        }
    };
    Ok((index, found))
}

fn write_index(dir: &Path, index: &Index) -> Result<(), Error> {
    crate::oci_dest::write_atomic(dir, "index.json", &crate::gojson::marshal(index)?)
}
