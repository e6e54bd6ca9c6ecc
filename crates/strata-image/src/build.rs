//! Images made in the store rather than brought in: [`import_dir`] (a directory becomes a
//! one-layer image) and [`commit`] (the changes of a container layer become a new image
//! on top of the image it runs on, its config history extended by one entry).
//!
//! The new layer is packed (or taken as the container's diff) into the store's staging
//! area first, because the layer is named by its chain ID and that needs its diffID;
//! then imported (unless the store has it already) and checked against that diffID. The
//! config is generated (a new image, so its bytes are ours), as Go's encoding/json
//! writes a map: keys sorted, HTML characters escaped.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use strata_layer::compress::Compression;
use strata_store::{ImportOptions, LayerId, LayerStatus, NewImage, Store};

use crate::config::ImageConfig;
use crate::gojson::{self, GoTime};
use crate::ids::{ChainId, DiffId, ImageId};
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::store::layer_id;
use crate::Error;

/// What a build made.
#[derive(Clone, Debug)]
pub struct Built {
    /// The new image's ID.
    pub id: ImageId,
    /// The name it was given.
    pub name: Reference,
    /// The store layer of its top layer.
    pub layer: LayerId,
    /// The diffID of that layer.
    pub diff_id: DiffId,
    /// Bytes of file data the new layer holds.
    pub size: u64,
}

/// Imports the staged layer tar `path` as layer `id` on `parent`, checked against
/// `diff_id`, unless the store has that layer already.
fn import_staged(
    store: &Store,
    id: &LayerId,
    parent: Option<&LayerId>,
    path: &Path,
    diff_id: DiffId,
) -> Result<(), Error> {
    if store.exists(id)? {
        return Ok(());
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    store.import(
        id,
        parent,
        file,
        &ImportOptions {
            diff_id: Some(diff_id.0),
            ..ImportOptions::default()
        },
    )?;
    Ok(())
}

fn now() -> GoTime {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    GoTime::utc(d.as_secs() as i64, 0)
}

/// Makes a one-layer image of the directory `dir` (packed as `strata layer pack` packs
/// it) named `name`.
pub fn import_dir(store: &Arc<Store>, dir: &Path, name: &Reference) -> Result<Built, Error> {
    if !dir.is_dir() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "is not a directory",
        ));
    }
    let staging = store.staging()?;
    let path = staging.path().join("layer.tar");
    let file = std::fs::File::create(&path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    let packed = strata_layer::pack::pack(dir, file, Compression::None)?;
    let diff_id = DiffId(packed.diff_id);
    let chain = ChainId(diff_id.0);
    let id = layer_id(&chain);
    import_staged(store, &id, None, &path, diff_id)?;
    staging.done()?;
    let created = now();
    let platform = Platform::host();
    let config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created.to_string(),
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created.to_string(), "created_by": format!("strata import-dir {}", dir.display())}],
    });
    record(
        store,
        &config,
        Some(id.clone()),
        None,
        name,
        diff_id,
        packed.tar_bytes,
        id,
    )
}

/// Makes the changes of read-write layer `container` a new image named `name`, on top of
/// the image whose top layer the container sits on (`base` names it when several do).
pub fn commit(
    store: &Arc<Store>,
    container: &LayerId,
    name: &Reference,
    base: Option<&str>,
    message: Option<&str>,
) -> Result<Built, Error> {
    let layer = store.layer(container)?;
    if layer.status != LayerStatus::Writable {
        return Err(Error::invalid(
            format!("layer {container}"),
            "is not a read-write layer: commit takes a container's layer",
        ));
    }
    let parent = layer.parent.clone().ok_or_else(|| {
        Error::invalid(
            format!("layer {container}"),
            "has no parent image to commit on",
        )
    })?;
    let base_image = match base {
        Some(spec) => crate::store::resolve(store, spec)?,
        None => {
            let on: Vec<_> = store
                .images()?
                .into_iter()
                .filter(|i| i.top_layer.as_ref() == Some(&parent))
                .collect();
            match on.len() {
                1 => on.into_iter().next().unwrap_or_else(|| unreachable!()),
                0 => {
                    return Err(Error::invalid(
                        format!("layer {container}"),
                        format!("sits on layer {parent}, which is the top of no image"),
                    ))
                }
                n => {
                    return Err(Error::invalid(
                        format!("layer {container}"),
                        format!("sits on the top layer of {n} images: name the one with --base"),
                    ))
                }
            }
        }
    };
    if base_image.top_layer.as_ref() != Some(&parent) {
        return Err(Error::invalid(
            format!("image {}", base_image.id),
            format!("does not end in layer {parent}, which {container} sits on"),
        ));
    }
    let base_config = ImageConfig::parse(store.read_blob(&base_image.id)?, "of the base image")?;
    let parent_chain = base_config
        .chain_ids()
        .last()
        .copied()
        .ok_or_else(|| Error::invalid("the base image", "has no layers"))?;
    // The container's diff, once to a staged file (its diffID names the new layer).
    let staging = store.staging()?;
    let path = staging.path().join("diff.tar");
    let file = std::fs::File::create(&path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    let diff = store.diff(container, io::BufWriter::new(file), Compression::None)?;
    let diff_id = DiffId(diff.diff_id);
    let chain = ChainId::next(Some(&parent_chain), &diff_id);
    let id = layer_id(&chain);
    import_staged(store, &id, Some(&parent), &path, diff_id)?;
    staging.done()?;
    let mut config: Value = serde_json::from_slice(base_config.raw())
        .map_err(|e| Error::json("the base image's config", e))?;
    let created = now().to_string();
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid("the base image's config", "is not an object"))?;
    obj.insert("created".into(), Value::String(created.clone()));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    rootfs
        .as_object_mut()
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::invalid("the base image's config", "has no rootfs.diff_ids"))?
        .push(Value::String(diff_id.to_string()));
    let mut entry = Map::new();
    entry.insert("created".into(), Value::String(created));
    entry.insert(
        "created_by".into(),
        Value::String(format!("strata commit {container}")),
    );
    if let Some(m) = message {
        entry.insert("comment".into(), Value::String(m.to_string()));
    }
    match obj.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(Value::Object(entry)),
        None => {
            obj.insert("history".into(), Value::Array(vec![Value::Object(entry)]));
        }
    }
    record(
        store,
        &config,
        Some(id.clone()),
        Some(base_image.id),
        name,
        diff_id,
        diff.tar_size,
        id,
    )
}

/// Stores a generated config and records the image.
#[allow(clippy::too_many_arguments)]
fn record(
    store: &Arc<Store>,
    config: &Value,
    top: Option<LayerId>,
    parent: Option<crate::ids::Digest>,
    name: &Reference,
    diff_id: DiffId,
    size: u64,
    layer: LayerId,
) -> Result<Built, Error> {
    let bytes = gojson::marshal(config)?;
    // Checked as any config is, before it is kept.
    let parsed = ImageConfig::parse(bytes, "generated")?;
    let lease = store.blob_lease()?;
    let id = store.put_blob(parsed.raw(), &lease)?;
    store.put_images(&[NewImage {
        id,
        top_layer: top,
        manifest: None,
        parent,
        names: vec![name.to_string()],
    }])?;
    lease.release()?;
    Ok(Built {
        id: ImageId(id),
        name: name.clone(),
        layer,
        diff_id,
        size,
    })
}
