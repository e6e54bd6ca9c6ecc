//! The store's contract, tested by calling [`Store`]: the graph-driver lifecycle on both
//! drivers, the corpus image's merged view against umoci's, bit-exact re-export, mount
//! counts shared by store handles, bad input and a full disk, hostile layers, long chains,
//! fsck and cleanup, Windows layers, images and blobs, init layers.
//!
//! One test binary (CI links each binary on 2 cores): the cases are in `lifecycle`,
//! `bad_input`, `hostile`, `windows`, `images` (with init layers) and `parallel` (layers imported while their parent comes); the helpers are here. What only
//! the `strata` command adds (arguments, output, JSON, exit codes) and what needs separate
//! processes (kills, eight processes contending) stays in `crates/strata-cli/tests`.

mod bad_input;
mod hostile;
mod images;
mod lifecycle;
mod parallel;
mod windows;

use std::fs;
use std::path::{Path, PathBuf};

use strata_layer::compress::Compression;
use strata_store::{
    Applied, ApplyOptions, CreateOptions, DriverKind, LayerId, Store, StoreOptions,
};
use strata_testkit::entries::{tar, Item};
use strata_testkit::*;

/// A layer ID (panics on one the type refuses).
pub fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap_or_else(|e| panic!("{s:?} is not a layer ID: {e}"))
}

pub use strata_testkit::error_chain as chain;

/// Fails unless `r` is an error whose text (with its sources) contains `needle`; returns
/// that text.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(r: strata_store::Result<T>, needle: &str) -> String {
    match r {
        Ok(v) => panic!("succeeded ({v:?}) but must fail with {needle:?}"),
        Err(e) => {
            let text = chain(&e);
            assert!(
                text.contains(needle),
                "the error should mention {needle:?}: {text}"
            );
            text
        }
    }
}

/// A store in a temporary directory, opened with `driver`.
pub struct TestStore {
    pub store: Store,
    pub root: PathBuf,
    pub driver: &'static str,
    _dir: tempfile::TempDir,
}

pub fn driver_kind(driver: &str) -> DriverKind {
    match driver {
        "overlay" => DriverKind::Overlay,
        "vfs" => DriverKind::Vfs,
        other => panic!("no driver {other}"),
    }
}

impl TestStore {
    pub fn new(driver: &'static str) -> TestStore {
        let dir = tempdir();
        let root = dir.path().join("store");
        TestStore::at(dir, root, driver)
    }

    fn at(dir: tempfile::TempDir, root: PathBuf, driver: &'static str) -> TestStore {
        let store = Store::open(&StoreOptions {
            root: root.clone(),
            driver: Some(driver_kind(driver)),
        })
        .unwrap_or_else(|e| panic!("open a {driver} store at {}: {}", root.display(), chain(&e)));
        TestStore {
            store,
            root,
            driver,
            _dir: dir,
        }
    }

    /// Another handle on the same store (standing for another process).
    pub fn reopen(&self) -> Store {
        Store::open(&StoreOptions {
            root: self.root.clone(),
            driver: None,
        })
        .expect("open the store again")
    }

    /// Creates a read-only layer `name` on `parent`.
    pub fn create(&self, name: &str, parent: Option<&str>) {
        self.store
            .create(
                &id(name),
                parent.map(id).as_ref(),
                &CreateOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{}: create {name}: {}", self.driver, chain(&e)));
    }

    /// Creates a read-write layer `name` on `parent`.
    pub fn create_rw(&self, name: &str, parent: Option<&str>) {
        let opts = CreateOptions {
            writable: true,
            ..Default::default()
        };
        self.store
            .create(&id(name), parent.map(id).as_ref(), &opts)
            .unwrap_or_else(|e| panic!("{}: create --rw {name}: {}", self.driver, chain(&e)));
    }

    /// Applies the layer file `diff` to `name`.
    pub fn apply_file(
        &self,
        name: &str,
        diff: &Path,
        opts: &ApplyOptions,
    ) -> strata_store::Result<Applied> {
        let f = fs::File::open(diff).unwrap_or_else(|e| panic!("open {}: {e}", diff.display()));
        self.store
            .apply(&id(name), std::io::BufReader::new(f), opts)
    }

    /// Creates `name` on `parent` and applies the layer file `diff` to it.
    pub fn add(&self, name: &str, parent: Option<&str>, diff: &Path) -> Applied {
        self.create(name, parent);
        self.apply_file(name, diff, &ApplyOptions::default())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: apply {} to {name}: {}",
                    self.driver,
                    diff.display(),
                    chain(&e)
                )
            })
    }

    /// Creates `name` on `parent` and applies a tar of `items` to it.
    pub fn add_items(&self, name: &str, parent: Option<&str>, items: &[Item]) -> Applied {
        self.create(name, parent);
        self.store
            .apply(&id(name), &tar(items)[..], &ApplyOptions::default())
            .unwrap_or_else(|e| panic!("{}: apply to {name}: {}", self.driver, chain(&e)))
    }

    /// The layers as (id, status) pairs, in the store's order.
    pub fn listing(&self) -> Vec<(String, String)> {
        self.store
            .layers()
            .expect("list layers")
            .iter()
            .map(|l| (l.id.to_string(), l.status.name().to_owned()))
            .collect()
    }

    #[track_caller]
    pub fn fsck_clean(&self) {
        let report = self.store.fsck(false).expect("fsck");
        assert!(
            report.clean(),
            "{}: fsck found problems: {report:?}",
            self.driver
        );
    }

    pub fn mount(&self, name: &str) -> PathBuf {
        self.store
            .mount(&id(name))
            .unwrap_or_else(|e| panic!("{}: mount {name}: {}", self.driver, chain(&e)))
    }

    pub fn unmount(&self, name: &str) -> u32 {
        self.store
            .unmount(&id(name))
            .unwrap_or_else(|e| panic!("{}: unmount {name}: {}", self.driver, chain(&e)))
    }

    pub fn remove(&self, name: &str) {
        self.store
            .remove(&id(name))
            .unwrap_or_else(|e| panic!("{}: remove {name}: {}", self.driver, chain(&e)))
    }

    /// The uncompressed diff of `name`, as bytes.
    pub fn diff_bytes(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.store
            .diff(&id(name), &mut out, Compression::None)
            .unwrap_or_else(|e| panic!("{}: diff {name}: {}", self.driver, chain(&e)));
        out
    }

    /// The diffID of `name`'s diff, hashed by `sha256sum` (and the store's own account of
    /// it required to agree).
    pub fn diff_digest(&self, name: &str) -> String {
        let mut out = Vec::new();
        let reported = self
            .store
            .diff(&id(name), &mut out, Compression::None)
            .unwrap_or_else(|e| panic!("{}: diff {name}: {}", self.driver, chain(&e)));
        let (digest, len) = sha256_reader(&out[..]);
        assert_eq!(
            reported.diff_id.to_string(),
            digest,
            "{}: diff {name} reports its diffID",
            self.driver
        );
        assert_eq!(reported.tar_size, len);
        digest
    }

    /// `changes` as `docker diff` prints them (`A /etc/added`).
    pub fn changes(&self, name: &str) -> Vec<String> {
        self.store
            .changes(&id(name))
            .unwrap_or_else(|e| panic!("{}: changes {name}: {}", self.driver, chain(&e)))
            .iter()
            .map(|c| format!("{} /{}", c.kind.letter(), c.path))
            .collect()
    }

    /// The layer's recorded diffID.
    pub fn diff_id(&self, name: &str) -> String {
        let layer = self.store.layer(&id(name)).expect("the layer");
        layer.diff.expect("an applied layer").diff_id.to_string()
    }

    /// Where the layer's own files are.
    pub fn content(&self, name: &str) -> PathBuf {
        self.store.inspect(&id(name)).expect("inspect").content
    }
}

/// The corpus image's layers applied as a chain `TAG1`..`TAGn`; returns their diffIDs.
pub fn load_tag(store: &TestStore, tag: &str) -> Vec<String> {
    let mut diff_ids = Vec::new();
    let mut parent: Option<String> = None;
    for (i, layer) in oci_layers(tag).iter().enumerate() {
        let name = format!("{tag}{}", i + 1);
        let applied = store.add(&name, parent.as_deref(), &layer.path);
        diff_ids.push(applied.diff.diff_id.to_string());
        parent = Some(name);
    }
    diff_ids
}

/// The tree-listing of `dir` without the root's mtime (not part of any layer).
pub fn listing_of(dir: &Path) -> String {
    without_root_mtime(&tree_listing(dir, &[]))
}
