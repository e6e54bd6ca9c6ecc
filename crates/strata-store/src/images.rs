//! Images in the store: records that tie a config blob to the layer chain it describes,
//! plus the names (tags) that point at them.
//!
//! * An image is named by its ID, the digest of its config blob (kept byte for byte in
//!   the blob store); it refers to the store layer holding its top layer (image layers
//!   are stored under their chain IDs, so equal stacks are shared by construction), and
//!   optionally to a manifest blob kept as it came and to a parent image.
//! * A name (a normalized reference such as `docker.io/library/busybox:latest`) points
//!   at one image; giving it to another image moves it.
//! * Removing an image removes its names, its record, the blobs only it used, and then,
//!   from the top down, every layer of its chain that no other image or layer still needs.
//!
//! The store keeps records; what a config or a name means is the image crate's business.

use rusqlite::{params, OptionalExtension, Row};
use strata_layer::digest::Digest;

use crate::db::{digest_col, State, Tx};
use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::store::{now, Store};

/// A manifest blob kept with an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRef {
    /// The manifest's digest (its blob is in the blob store).
    pub digest: Digest,
    /// The manifest's media type (OCI or Docker schema 2), as a push must send it.
    pub media_type: String,
}

/// An image of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The digest of its config blob.
    pub id: Digest,
    /// The store layer of its top layer (`None` for an image without layers).
    pub top_layer: Option<LayerId>,
    /// The manifest it came with, if it was pulled or loaded with one.
    pub manifest: Option<ManifestRef>,
    /// The image recorded as its parent (from a `docker load`), if any.
    pub parent: Option<Digest>,
    /// When it entered the store (seconds since the epoch).
    pub created: i64,
    /// Its names, sorted.
    pub names: Vec<String>,
}

/// What to record for a new image. Its config blob (`id`) must be in the blob store and
/// its top layer applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewImage {
    /// The digest of its config blob, which must be in the blob store.
    pub id: Digest,
    /// Its top layer, an applied layer of the store (`None` for an image without layers).
    pub top_layer: Option<LayerId>,
    /// The manifest it came with, to keep for a later push.
    pub manifest: Option<ManifestRef>,
    /// The image to record as its parent (a `docker load` says so), if any.
    pub parent: Option<Digest>,
    /// Names to give it (moved from other images that have them).
    pub names: Vec<String>,
}

/// What removing an image did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovedImage {
    /// The names taken off the image.
    pub untagged: Vec<String>,
    /// False when only names were removed (`--force` with a container on it keeps the
    /// layers it needs, and the image stays while other names remain).
    pub deleted: bool,
    /// The layers removed with it (none while another image or a container uses them).
    pub layers: Vec<LayerId>,
}

const COLUMNS: &str = "id, top_layer, manifest, manifest_type, parent, created";

fn image_row(row: &Row<'_>) -> rusqlite::Result<Image> {
    let top: Option<String> = row.get(1)?;
    let manifest = digest_col(row, 2)?;
    let manifest_type: Option<String> = row.get(3)?;
    Ok(Image {
        id: digest_col(row, 0)?.ok_or(rusqlite::Error::InvalidColumnType(
            0,
            "id".into(),
            rusqlite::types::Type::Null,
        ))?,
        top_layer: top.and_then(|t| LayerId::new(t).ok()),
        manifest: match (manifest, manifest_type) {
            (Some(digest), Some(media_type)) => Some(ManifestRef { digest, media_type }),
            _ => None,
        },
        parent: digest_col(row, 4)?,
        created: row.get(5)?,
        names: Vec::new(),
    })
}

impl Tx<'_> {
    fn names_of(&self, id: &Digest) -> Result<Vec<String>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT name FROM names WHERE image = ?1 ORDER BY name")
            .map_err(Error::db("listing names"))?;
        let names = stmt
            .query_map([id.to_string()], |r| r.get(0))
            .map_err(Error::db("listing names"))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(Error::db("listing names"));
        names
    }

    fn with_names(&self, mut image: Image) -> Result<Image> {
        image.names = self.names_of(&image.id)?;
        Ok(image)
    }

    pub(crate) fn image(&self, id: &Digest) -> Result<Option<Image>> {
        let found = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM images WHERE id = ?1"),
                [id.to_string()],
                image_row,
            )
            .optional()
            .map_err(Error::db(format!("reading image {id}")))?;
        found.map(|i| self.with_names(i)).transpose()
    }

    fn images_where(&self, clause: &str, arg: &str) -> Result<Vec<Image>> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM images {clause} ORDER BY id"
            ))
            .map_err(Error::db("listing images"))?;
        let rows = if clause.is_empty() {
            stmt.query_map([], image_row)
        } else {
            stmt.query_map([arg], image_row)
        }
        .map_err(Error::db("listing images"))?
        .collect::<rusqlite::Result<Vec<Image>>>()
        .map_err(Error::db("listing images"))?;
        rows.into_iter().map(|i| self.with_names(i)).collect()
    }

    /// Images whose top layer is `layer`.
    pub(crate) fn images_on(&self, layer: &LayerId) -> Result<Vec<Image>> {
        self.images_where("WHERE top_layer = ?1", layer.as_str())
    }
}

impl Store {
    /// Records images (and moves their names to them) in one transaction. Each image's
    /// config blob must be stored and its top layer applied; an image already recorded
    /// keeps its record and gains the names.
    pub fn put_images(&self, images: &[NewImage]) -> Result<()> {
        // Checked under the lock: blobs are deleted under it too.
        let _lock = self.lock()?;
        for image in images {
            if self.blob_path(&image.id).is_none() {
                return Err(Error::Corrupt(format!(
                    "image {}: its config blob is not in the store (removed by a failed load meanwhile? try again)",
                    image.id
                )));
            }
        }
        self.db().write("recording images", |tx| {
            for image in images {
                if let Some(top) = &image.top_layer {
                    let row = tx.visible_layer(top)?;
                    if row.state != State::Applied {
                        return Err(Error::refused(
                            top,
                            "is not an applied layer: it cannot be the top of an image",
                        ));
                    }
                }
                let c = tx.conn();
                c.execute(
                    "INSERT INTO images (id, top_layer, manifest, manifest_type, parent, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO UPDATE SET
                        manifest = COALESCE(images.manifest, excluded.manifest),
                        manifest_type = COALESCE(images.manifest_type, excluded.manifest_type),
                        parent = COALESCE(images.parent, excluded.parent)",
                    params![
                        image.id.to_string(),
                        image.top_layer.as_ref().map(|l| l.as_str()),
                        image.manifest.as_ref().map(|m| m.digest.to_string()),
                        image.manifest.as_ref().map(|m| m.media_type.as_str()),
                        image.parent.map(|p| p.to_string()),
                        now(),
                    ],
                )
                .map_err(Error::db(format!("recording image {}", image.id)))?;
                for name in &image.names {
                    set_name(tx, name, &image.id)?;
                }
            }
            Ok(())
        })
    }

    /// Every image, by ID.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.read(|tx| tx.images_where("", ""))
    }

    /// The image with this ID.
    pub fn image(&self, id: &Digest) -> Result<Option<Image>> {
        self.read(|tx| tx.image(id))
    }

    /// The image this name points at.
    pub fn image_named(&self, name: &str) -> Result<Option<Image>> {
        self.read(|tx| {
            let id: Option<Option<Digest>> = tx
                .conn()
                .query_row("SELECT image FROM names WHERE name = ?1", [name], |r| {
                    digest_col(r, 0)
                })
                .optional()
                .map_err(Error::db("looking up a name"))?;
            match id.flatten() {
                Some(id) => tx.image(&id),
                None => Ok(None),
            }
        })
    }

    /// Images whose ID (hex) starts with `prefix`.
    pub fn images_with_prefix(&self, prefix: &str) -> Result<Vec<Image>> {
        if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        self.read(|tx| {
            tx.images_where(
                "WHERE id LIKE ?1",
                &format!("sha256:{}%", prefix.to_ascii_lowercase()),
            )
        })
    }

    /// Gives image `id` the name `name` (moving it from another image).
    pub fn tag(&self, id: &Digest, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.db().write("tagging", |tx| {
            if tx.image(id)?.is_none() {
                return Err(Error::Corrupt(format!("no image {id}")));
            }
            set_name(tx, name, id)
        })
    }

    /// Takes the name `name` away from its image (the image stays, even unnamed).
    pub fn untag(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.db().write("untagging", |tx| {
            let n = tx
                .conn()
                .execute("DELETE FROM names WHERE name = ?1", [name])
                .map_err(Error::db(format!("untagging {name}")))?;
            if n == 0 {
                return Err(Error::Corrupt(format!("no image is named {name}")));
            }
            Ok(())
        })
    }

    /// Removes image `id`: see the [module docs](self). Refused while a read-write layer
    /// sits on a layer that would go, unless `force`, which then keeps those layers.
    pub fn remove_image(&self, id: &Digest, force: bool) -> Result<RemovedImage> {
        let (image, chain) = self.read(|tx| {
            let image = tx
                .image(id)?
                .ok_or_else(|| Error::Corrupt(format!("no image {id}")))?;
            let chain = match &image.top_layer {
                Some(top) => tx.chain(top)?,
                None => Vec::new(),
            };
            // A container made from this image sits on its top layer.
            if let (false, Some(top)) = (force, chain.first()) {
                let writable: Vec<LayerId> = tx
                    .children(&top.id)?
                    .into_iter()
                    .filter(|c| {
                        tx.layer(c)
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.state == State::Writable)
                    })
                    .collect();
                if !writable.is_empty() {
                    let names: Vec<&str> = writable.iter().map(LayerId::as_str).collect();
                    return Err(Error::refused(
                        &top.id,
                        format!(
                            "of image {id} has read-write layers on it ({}): remove them first, or force",
                            names.join(", ")
                        ),
                    ));
                }
            }
            Ok((image, chain))
        })?;
        self.forget_image(&image)?;
        let mut removed = Vec::new();
        for layer in &chain {
            // Stop at the first layer something else still needs.
            let needed = self.read(|tx| {
                Ok(!tx.children(&layer.id)?.is_empty() || !tx.images_on(&layer.id)?.is_empty())
            })?;
            if needed {
                break;
            }
            match self.remove(&layer.id) {
                Ok(()) => removed.push(layer.id.clone()),
                // Mounted, or in use by another process: it stays, and so do its parents.
                Err(Error::Refused { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(RemovedImage {
            untagged: image.names,
            deleted: true,
            layers: removed,
        })
    }

    /// Deletes an image's record, names and blobs, leaving its layers alone.
    pub(crate) fn forget_image(&self, image: &Image) -> Result<()> {
        {
            let _lock = self.lock()?;
            self.db().write("removing an image", |tx| {
                tx.conn()
                    .execute("DELETE FROM images WHERE id = ?1", [image.id.to_string()])
                    .map(drop)
                    .map_err(Error::db("removing an image"))
            })?;
        }
        self.gc_blob(&image.id)?;
        if let Some(m) = &image.manifest {
            self.gc_blob(&m.digest)?;
        }
        Ok(())
    }

    /// Deletes blob `digest` if nothing refers to it any more (a config or manifest
    /// stored for an image whose load failed; end the lease that held it first).
    pub fn discard_blob(&self, digest: &Digest) -> Result<()> {
        self.gc_blob(digest)
    }

    /// Deletes blob `digest` if nothing refers to it any more.
    pub(crate) fn gc_blob(&self, digest: &Digest) -> Result<()> {
        let _lock = self.lock()?;
        if !self.read(|tx| tx.blob_referenced(digest))?
            && !crate::blobs::held_blobs(&self.paths().staging())?.contains(&digest.hex())
        {
            self.delete_blob(digest)?;
        }
        Ok(())
    }

    /// The compressed blobs kept for layer `id`: (digest, media type, size).
    pub fn layer_blobs(&self, id: &LayerId) -> Result<Vec<(Digest, String, u64)>> {
        self.read(|tx| tx.layer_blobs(id))
    }

    /// Records that the stored blob `digest` holds layer `id`'s diff (a compression made
    /// for a push, kept so the next push needs none).
    pub fn add_layer_blob(&self, id: &LayerId, digest: &Digest, media_type: &str) -> Result<()> {
        let size = self
            .blob_path(digest)
            .and_then(|p| p.metadata().ok())
            .map(|m| m.len())
            .ok_or_else(|| Error::Corrupt(format!("blob {digest} is not in the store")))?;
        let _lock = self.lock()?;
        self.db().write("recording a layer blob", |tx| {
            tx.visible_layer(id)?;
            tx.add_layer_blob(id, digest, media_type, size)
        })
    }
}

/// Where blobs are known to be in registries: a cache of facts about other machines,
/// kept so that a push can ask a registry to mount a blob from a repository that holds
/// it instead of sending it. A stale location costs one refused mount request.
impl Store {
    /// Records that `repository` of `registry` (its host, as `host[:port]`) holds blob
    /// `digest`: it was pulled from there or pushed there.
    pub fn add_blob_location(
        &self,
        digest: &Digest,
        registry: &str,
        repository: &str,
    ) -> Result<()> {
        let seen = now();
        self.db().write("recording where a blob is", |tx| {
            tx.conn()
                .execute(
                    "INSERT OR REPLACE INTO blob_locations (digest, registry, repository, seen)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![digest.to_string(), registry, repository, seen],
                )
                .map(drop)
                .map_err(Error::db("recording where a blob is"))
        })
    }

    /// The registries and repositories known to hold blob `digest`, (registry,
    /// repository), the most recently seen first.
    pub fn blob_locations(&self, digest: &Digest) -> Result<Vec<(String, String)>> {
        self.read(|tx| {
            let mut stmt = tx
                .conn()
                .prepare_cached(
                    "SELECT registry, repository FROM blob_locations WHERE digest = ?1
                     ORDER BY seen DESC, registry, repository",
                )
                .map_err(Error::db("looking up where a blob is"))?;
            let rows = stmt
                .query_map([digest.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(Error::db("looking up where a blob is"))?;
            rows.collect::<std::result::Result<Vec<(String, String)>, _>>()
                .map_err(Error::db("looking up where a blob is"))
        })
    }
}

fn set_name(tx: &Tx<'_>, name: &str, id: &Digest) -> Result<()> {
    tx.conn()
        .execute(
            "INSERT INTO names (name, image) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET image = excluded.image",
            params![name, id.to_string()],
        )
        .map(drop)
        .map_err(Error::db(format!("naming image {id} {name}")))
}
