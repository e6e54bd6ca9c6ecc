//! The metadata database: SQLite in WAL mode, one row per layer.
//!
//! A layer becomes visible, changes state and disappears in single transactions; the
//! files of a layer are made or removed around those transactions in an order that a
//! crash at any point leaves recoverable (see [`crate::recover`]). Several processes use
//! one database at once: SQLite serializes writers, and `busy_timeout` makes them wait
//! for each other instead of failing.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use strata_layer::digest::Digest;

use crate::error::{Error, Result};
use crate::id::LayerId;

/// How long a connection waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema, one step per version; a database is brought up to the last step on open.
const MIGRATIONS: &[&str] = &[
    // 1: layers.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE layers (
        id TEXT PRIMARY KEY,
        parent TEXT REFERENCES layers(id),
        state TEXT NOT NULL,
        created INTEGER NOT NULL,
        depth INTEGER NOT NULL,
        diff_id TEXT,
        tar_size INTEGER,
        diff_size INTEGER,
        blob_digest TEXT,
        blob_size INTEGER,
        compression TEXT,
        size_limit INTEGER,
        mounts INTEGER NOT NULL DEFAULT 0,
        mount_boot TEXT,
        quota_project INTEGER
     );
     CREATE INDEX layers_parent ON layers(parent);
     CREATE INDEX layers_diff_id ON layers(diff_id);
     CREATE INDEX layers_transient ON layers(state)
        WHERE state IN ('creating', 'importing', 'applying', 'removing');",
    // 2: images, their names, and the compressed blobs kept for layers.
    "CREATE TABLE images (
        id TEXT PRIMARY KEY,
        top_layer TEXT REFERENCES layers(id),
        manifest TEXT,
        manifest_type TEXT,
        parent TEXT,
        created INTEGER NOT NULL
     );
     CREATE INDEX images_top ON images(top_layer);
     CREATE TABLE names (
        name TEXT PRIMARY KEY,
        image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
     );
     CREATE INDEX names_image ON names(image);
     CREATE TABLE layer_blobs (
        layer TEXT NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (layer, digest)
     );
     CREATE INDEX layer_blobs_digest ON layer_blobs(digest);",
    // 3: Windows layers, kept in folder form.
    "ALTER TABLE layers ADD COLUMN os TEXT NOT NULL DEFAULT 'linux';",
    // 4: where blobs are known to be in registries (pulled from, pushed to), so a push
    // to another repository of the registry can have them mounted instead of sent.
    "CREATE TABLE blob_locations (
        digest TEXT NOT NULL,
        registry TEXT NOT NULL,
        repository TEXT NOT NULL,
        seen INTEGER NOT NULL,
        PRIMARY KEY (digest, registry, repository)
     );",
    // 5: init layers: the runtime's mountpoints and files between a read-write layer and
    // its parent. The init layer names its container (`init_for`), the container its init
    // layer (`init_layer`, its real parent in the chain; `parent` stays the image layer).
    "ALTER TABLE layers ADD COLUMN init_for TEXT;
     ALTER TABLE layers ADD COLUMN init_layer TEXT;",
    // 6: containerd snapshots (snapshots.rs): each names one layer (`layer`), a read-write
    // one while active or a view, a read-only one once committed; times in nanoseconds.
    "CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        parent TEXT,
        layer TEXT NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
     );
     CREATE INDEX snapshots_parent ON snapshots(parent);
     CREATE INDEX snapshots_layer ON snapshots(layer);
     CREATE TABLE snapshot_labels (
        snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (snapshot, name)
     );",
];

/// What a layer's content is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Os {
    /// A Linux layer: a tree in the driver's form.
    #[default]
    Linux,
    /// A Windows layer: a layer folder (`Files/`, `Hives/`, tombstones; strata-wclayer).
    Windows,
}

impl Os {
    /// The name the database records and `--os` takes: `linux` or `windows`.
    pub fn name(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        }
    }

    /// The OS a recorded or given name stands for; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Os> {
        match s {
            "linux" => Some(Os::Linux),
            "windows" => Some(Os::Windows),
            _ => None,
        }
    }
}

/// Where a layer is in its life. Only [`State::Empty`], [`State::Applied`] and
/// [`State::Writable`] are at rest; the others mark work in progress that a crash may
/// have cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Its directory is being made; never visible.
    Creating,
    /// Created and applied in one go (an image layer); never visible until applied.
    Importing,
    /// A read-only layer waiting for its diff.
    Empty,
    /// A diff is being applied to an `Empty` layer.
    Applying,
    /// A read-only layer holding its diff; it can be a parent.
    Applied,
    /// A read-write (container) layer.
    Writable,
    /// Being removed; invisible.
    Removing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Importing => "importing",
            State::Empty => "empty",
            State::Applying => "applying",
            State::Applied => "applied",
            State::Writable => "writable",
            State::Removing => "removing",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "creating" => State::Creating,
            "importing" => State::Importing,
            "empty" => State::Empty,
            "applying" => State::Applying,
            "applied" => State::Applied,
            "writable" => State::Writable,
            "removing" => State::Removing,
            _ => return None,
        })
    }

    /// Visible to users: listed, inspected, usable.
    pub fn visible(self) -> bool {
        matches!(
            self,
            State::Empty | State::Applying | State::Applied | State::Writable
        )
    }
}

/// What an applied layer's diff was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffInfo {
    /// The digest of the uncompressed tar: the diffID an image config lists.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Bytes of file data it holds.
    pub diff_size: u64,
    /// The blob it came in as: digest, size and compression (`none`, `gzip`, `zstd`).
    pub blob_digest: Digest,
    /// Bytes of the blob as it came in.
    pub blob_size: u64,
    /// How the blob was compressed: `none`, `gzip` or `zstd`.
    pub compression: String,
}

/// One row of the `layers` table.
#[derive(Clone, Debug)]
pub struct LayerRow {
    pub id: LayerId,
    pub parent: Option<LayerId>,
    pub state: State,
    pub created: i64,
    /// 1 for a layer without parent.
    pub depth: u32,
    pub diff: Option<DiffInfo>,
    pub size_limit: Option<u64>,
    pub mounts: u32,
    pub mount_boot: Option<String>,
    /// The project quota enforcing `size_limit`.
    pub quota_project: Option<u32>,
    pub os: Os,
    /// For an init layer: the read-write layer it serves.
    pub init_for: Option<LayerId>,
    /// For a read-write layer: its init layer, between it and `parent`.
    pub init_layer: Option<LayerId>,
}

const COLUMNS: &str = "id, parent, state, created, depth, diff_id, tar_size, diff_size, \
                       blob_digest, blob_size, compression, size_limit, mounts, mount_boot, \
                       quota_project, os, init_for, init_layer";

pub(crate) fn digest_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Digest>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| Digest::parse(&s).map_err(|_| bad_column(i, format!("not a sha256 digest: {s}"))))
        .transpose()
}

fn bad_column(i: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
}

fn layer_row(row: &Row<'_>) -> rusqlite::Result<LayerRow> {
    let id: String = row.get(0)?;
    let parent: Option<String> = row.get(1)?;
    let state: String = row.get(2)?;
    let diff_id = digest_col(row, 5)?;
    let blob_digest = digest_col(row, 8)?;
    let id_of = |i, s: String| LayerId::new(s).map_err(|e| bad_column(i, e.to_string()));
    let diff = match (diff_id, blob_digest) {
        (Some(diff_id), Some(blob_digest)) => Some(DiffInfo {
            diff_id,
            tar_size: row.get::<_, i64>(6)? as u64,
            diff_size: row.get::<_, i64>(7)? as u64,
            blob_digest,
            blob_size: row.get::<_, i64>(9)? as u64,
            compression: row.get(10)?,
        }),
        _ => None,
    };
    Ok(LayerRow {
        id: id_of(0, id)?,
        parent: parent.map(|p| id_of(1, p)).transpose()?,
        state: State::parse(&state)
            .ok_or_else(|| bad_column(2, format!("unknown state {state}")))?,
        created: row.get(3)?,
        depth: row.get(4)?,
        diff,
        size_limit: row.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        mounts: row.get(12)?,
        mount_boot: row.get(13)?,
        quota_project: row.get(14)?,
        os: {
            let os: String = row.get(15)?;
            Os::parse(&os).ok_or_else(|| bad_column(15, format!("unknown os {os}")))?
        },
        init_for: row
            .get::<_, Option<String>>(16)?
            .map(|p| id_of(16, p))
            .transpose()?,
        init_layer: row
            .get::<_, Option<String>>(17)?
            .map(|p| id_of(17, p))
            .transpose()?,
    })
}

/// The database of one store.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let ctx = || format!("opening {}", path.display());
        let conn = Connection::open(path).map_err(Error::db(ctx()))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(Error::db(ctx()))?;
        // WAL: readers never block the writer; FULL: a commit survives power loss too.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::db(ctx()))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(Error::db(ctx()))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(Error::db(ctx()))?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db("starting the schema migration"))?;
        let version: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Error::db("reading the schema version"))?;
        if version as usize > MIGRATIONS.len() {
            return Err(Error::Corrupt(format!(
                "the database has schema version {version}, newer than this strata knows ({}); use a newer strata",
                MIGRATIONS.len()
            )));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(step).map_err(Error::db(format!(
                "migrating the schema to version {}",
                i + 1
            )))?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as u32)
            .map_err(Error::db("setting the schema version"))?;
        tx.commit().map_err(Error::db("committing the schema"))
    }

    /// Runs `f` in one immediate (write-locking) transaction.
    pub fn write<T>(&mut self, what: &str, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::db(format!("{what}: starting a transaction")))?;
        let out = f(&Tx(&tx))?;
        tx.commit()
            .map_err(Error::db(format!("{what}: committing")))?;
        Ok(out)
    }

    /// [`Db::write`] without waiting for the disk: the transaction is kept if the process
    /// dies (it is in the WAL, in the page cache), and made durable by the next synced
    /// transaction of any connection (the WAL is synced and replayed in order); only a
    /// power loss before that can lose it. For a step a synced one always follows (a
    /// layer's `creating` row, made visible by the next transaction).
    pub fn write_unsynced<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::db(format!("{what}: setting the sync mode")))?;
        let out = self.write(what, f);
        let synced = self
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(Error::db(format!("{what}: setting the sync mode")));
        let out = out?;
        synced?;
        Ok(out)
    }

    /// Read-only queries outside a write transaction (one consistent snapshot each).
    pub fn read(&self) -> Tx<'_> {
        Tx(&self.conn)
    }
}

/// Queries and updates, inside a transaction or on a plain connection.
pub struct Tx<'c>(&'c Connection);

impl Tx<'_> {
    /// The connection, for the queries of other modules (images).
    pub(crate) fn conn(&self) -> &Connection {
        self.0
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.0
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(Error::db(format!("reading {key}")))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.0
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(Error::db(format!("writing {key}")))
    }

    /// The row of `id`, whatever its state.
    pub fn layer(&self, id: &LayerId) -> Result<Option<LayerRow>> {
        self.0
            .query_row(
                &format!("SELECT {COLUMNS} FROM layers WHERE id = ?1"),
                [id.as_str()],
                layer_row,
            )
            .optional()
            .map_err(Error::db(format!("reading layer {id}")))
    }

    /// The row of `id` if it is visible, else [`Error::NotFound`].
    pub fn visible_layer(&self, id: &LayerId) -> Result<LayerRow> {
        match self.layer(id)? {
            Some(row) if row.state.visible() => Ok(row),
            _ => Err(Error::NotFound(id.clone())),
        }
    }

    fn query_layers(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<LayerRow>> {
        let mut stmt = self
            .0
            .prepare_cached(sql)
            .map_err(Error::db("listing layers"))?;
        let rows = stmt
            .query_map(args, layer_row)
            .map_err(Error::db("listing layers"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("listing layers"))
    }

    /// Every row, ordered by ID.
    pub fn layers(&self) -> Result<Vec<LayerRow>> {
        self.query_layers(&format!("SELECT {COLUMNS} FROM layers ORDER BY id"), [])
    }

    /// Rows in the states that mark interrupted work.
    pub fn transient_layers(&self) -> Result<Vec<LayerRow>> {
        self.query_layers(
            &format!(
                "SELECT {COLUMNS} FROM layers
                 WHERE state IN ('creating', 'importing', 'applying', 'removing') ORDER BY id"
            ),
            [],
        )
    }

    /// Rows with a non-zero mount count.
    pub fn mounted_layers(&self) -> Result<Vec<LayerRow>> {
        self.query_layers(
            &format!("SELECT {COLUMNS} FROM layers WHERE mounts > 0 ORDER BY id"),
            [],
        )
    }

    /// `id` and its ancestors, nearest first; a read-write layer's init layer comes
    /// right after it.
    pub fn chain(&self, id: &LayerId) -> Result<Vec<LayerRow>> {
        let mut rows = self.query_layers(
            &format!(
                "WITH RECURSIVE chain(cid, n) AS (
                    SELECT ?1, 0
                    UNION ALL
                    SELECT layers.parent, chain.n + 1 FROM layers JOIN chain ON layers.id = chain.cid
                    WHERE layers.parent IS NOT NULL AND chain.n < 100000)
                 SELECT {COLUMNS} FROM chain JOIN layers ON layers.id = chain.cid ORDER BY chain.n"
            ),
            [id.as_str()],
        )?;
        if let Some(init) = rows.first().and_then(|r| r.init_layer.clone()) {
            let row = self.layer(&init)?.ok_or_else(|| {
                Error::Corrupt(format!("layer {id}: its init layer {init} does not exist"))
            })?;
            rows.insert(1, row);
        }
        Ok(rows)
    }

    /// A project ID for a quota no other layer of this store uses.
    pub fn next_quota_project(&self) -> Result<u32> {
        // Well above the IDs people hand out by hand in /etc/projid.
        const FIRST: u32 = 0x5354_0000;
        let next = match self.meta("next_quota_project")? {
            Some(v) => v
                .parse()
                .map_err(|_| Error::Corrupt(format!("next_quota_project is `{v}`")))?,
            None => FIRST,
        };
        self.set_meta("next_quota_project", &(next + 1).to_string())?;
        Ok(next)
    }

    /// The IDs of the layers whose parent is `id`.
    pub fn children(&self, id: &LayerId) -> Result<Vec<LayerId>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT id FROM layers WHERE parent = ?1 ORDER BY id")
            .map_err(Error::db("listing children"))?;
        let ids = stmt
            .query_map([id.as_str()], |r| r.get::<_, String>(0))
            .map_err(Error::db("listing children"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::db("listing children"))?;
        ids.into_iter().map(LayerId::new).collect()
    }

    /// Visible applied layers with this diffID.
    pub fn layers_with_diff_id(&self, diff_id: &Digest) -> Result<Vec<LayerRow>> {
        self.query_layers(
            &format!("SELECT {COLUMNS} FROM layers WHERE diff_id = ?1 ORDER BY id"),
            [diff_id.to_string()],
        )
    }

    pub fn insert_layer(&self, row: &LayerRow) -> Result<()> {
        let res = self.0.execute(
            "INSERT INTO layers (id, parent, state, created, depth, size_limit, quota_project,
                init_for, init_layer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.id.as_str(),
                row.parent.as_ref().map(|p| p.as_str()),
                row.state.as_str(),
                row.created,
                row.depth,
                row.size_limit.map(|v| v as i64),
                row.quota_project,
                row.init_for.as_ref().map(|p| p.as_str()),
                row.init_layer.as_ref().map(|p| p.as_str()),
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Err(Error::Exists(row.id.clone()))
            }
            Err(e) => Err(Error::db(format!("recording layer {}", row.id))(e)),
        }
    }

    pub fn set_state(&self, id: &LayerId, state: State) -> Result<()> {
        self.0
            .execute(
                "UPDATE layers SET state = ?2 WHERE id = ?1",
                params![id.as_str(), state.as_str()],
            )
            .map(drop)
            .map_err(Error::db(format!("marking layer {id} {}", state.as_str())))
    }

    /// Records the diff of a layer and makes it `Applied`.
    pub fn set_applied(&self, id: &LayerId, diff: &DiffInfo, os: Os) -> Result<()> {
        self.set_frozen(id, os)?;
        self.set_diff(id, diff)
    }

    /// Makes read-write layer `id` applied with its diff pending (`store/freeze.rs`).
    pub fn set_frozen(&self, id: &LayerId, os: Os) -> Result<()> {
        self.0
            .execute(
                "UPDATE layers SET state = 'applied', diff_id = NULL, tar_size = NULL,
                    diff_size = NULL, blob_digest = NULL, blob_size = NULL, compression = NULL,
                    os = ?2 WHERE id = ?1",
                params![id.as_str(), os.name()],
            )
            .map(drop)
            .map_err(Error::db(format!("freezing layer {id}")))
    }

    /// Records the diff of applied layer `id`, whose diff was pending.
    pub fn set_diff(&self, id: &LayerId, diff: &DiffInfo) -> Result<()> {
        self.0
            .execute(
                "UPDATE layers SET diff_id = ?2, tar_size = ?3, diff_size = ?4,
                    blob_digest = ?5, blob_size = ?6, compression = ?7
                 WHERE id = ?1 AND state = 'applied' AND diff_id IS NULL",
                params![
                    id.as_str(),
                    diff.diff_id.to_string(),
                    diff.tar_size as i64,
                    diff.diff_size as i64,
                    diff.blob_digest.to_string(),
                    diff.blob_size as i64,
                    diff.compression,
                ],
            )
            .map(drop)
            .map_err(Error::db(format!("recording the diff of layer {id}")))
    }

    pub fn set_mounts(&self, id: &LayerId, mounts: u32, boot: Option<&str>) -> Result<()> {
        self.0
            .execute(
                "UPDATE layers SET mounts = ?2, mount_boot = ?3 WHERE id = ?1",
                params![id.as_str(), mounts, boot],
            )
            .map(drop)
            .map_err(Error::db(format!("updating the mount count of layer {id}")))
    }

    /// Records that blob `digest` (of `media_type`, `size` bytes) holds layer `id`'s diff.
    pub fn add_layer_blob(
        &self,
        id: &LayerId,
        digest: &Digest,
        media_type: &str,
        size: u64,
    ) -> Result<()> {
        self.0
            .execute(
                "INSERT OR REPLACE INTO layer_blobs (layer, digest, media_type, size)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.as_str(), digest.to_string(), media_type, size as i64],
            )
            .map(drop)
            .map_err(Error::db(format!("recording a blob of layer {id}")))
    }

    /// The blobs kept for layer `id`: (digest, media type, size).
    pub fn layer_blobs(&self, id: &LayerId) -> Result<Vec<(Digest, String, u64)>> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT digest, media_type, size FROM layer_blobs WHERE layer = ?1 ORDER BY digest",
            )
            .map_err(Error::db("listing layer blobs"))?;
        let rows = stmt
            .query_map([id.as_str()], |r| {
                Ok((
                    digest_col(r, 0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(Error::db("listing layer blobs"))?;
        rows.map(|r| {
            r.map_err(Error::db("listing layer blobs"))
                .and_then(|(d, m, s)| {
                    Ok((
                        d.ok_or_else(|| Error::Corrupt("a blob without digest".into()))?,
                        m,
                        s,
                    ))
                })
        })
        .collect()
    }

    /// Whether anything still refers to blob `digest` (a layer, an image config or
    /// manifest).
    pub fn blob_referenced(&self, digest: &Digest) -> Result<bool> {
        let d = digest.to_string();
        self.0
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM layer_blobs WHERE digest = ?1)
                     OR EXISTS (SELECT 1 FROM images WHERE id = ?1 OR manifest = ?1)",
                [d],
                |r| r.get(0),
            )
            .map_err(Error::db("looking up a blob"))
    }

    /// Every blob a layer or an image refers to.
    pub fn referenced_blobs(&self) -> Result<std::collections::HashSet<Digest>> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT digest FROM layer_blobs UNION SELECT id FROM images
                 UNION SELECT manifest FROM images WHERE manifest IS NOT NULL",
            )
            .map_err(Error::db("listing referenced blobs"))?;
        let rows = stmt
            .query_map([], |r| digest_col(r, 0))
            .map_err(Error::db("listing referenced blobs"))?;
        let mut out = std::collections::HashSet::new();
        for r in rows {
            if let Some(d) = r.map_err(Error::db("listing referenced blobs"))? {
                out.insert(d);
            }
        }
        Ok(out)
    }

    /// Deletes the row of `id` if it is (still) marked `removing`.
    pub fn delete_removing(&self, id: &LayerId) -> Result<()> {
        self.0
            .execute(
                "DELETE FROM layers WHERE id = ?1 AND state = 'removing'",
                [id.as_str()],
            )
            .map(drop)
            .map_err(Error::db(format!("deleting layer {id}")))
    }

    pub fn delete_layer(&self, id: &LayerId) -> Result<()> {
        self.0
            .execute("DELETE FROM layers WHERE id = ?1", [id.as_str()])
            .map(drop)
            .map_err(Error::db(format!("deleting layer {id}")))
    }
}
