//! Images and blobs in the store, through the library: imports that keep their blob,
//! image records and names, removal that takes exactly the layers nothing else needs.

use std::io::Write;

use strata_layer::compress::Compression;
use strata_layer::digest::Digest;
use strata_store::{
    CreateOptions, DriverKind, ImportOptions, LayerId, ManifestRef, NewImage, Store, StoreOptions,
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        root: dir.path().join("store"),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap();
    (dir, store)
}

/// A gzip layer holding `name` with `body`, and its diffID.
fn layer(name: &str, body: &str) -> (Vec<u8>, Digest) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join(name), body).unwrap();
    let mut out = Vec::new();
    let s = strata_layer::pack::pack(tree.path(), &mut out, Compression::Gzip).unwrap();
    (out, s.diff_id)
}

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

fn keep_gzip() -> ImportOptions {
    ImportOptions {
        keep_blob: Some("application/vnd.oci.image.layer.v1.tar+gzip".into()),
        ..ImportOptions::default()
    }
}

#[test]
fn an_import_keeps_its_blob_and_checks_its_digests() {
    let (_d, store) = store();
    let (blob, diff_id) = layer("a", "a\n");
    let applied = store
        .import(&id("l1"), None, &blob[..], &keep_gzip())
        .unwrap();
    assert_eq!(applied.diff.diff_id, diff_id);
    let kept = store.layer_blobs(&id("l1")).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0, applied.diff.blob_digest);
    assert_eq!(kept[0].2, blob.len() as u64);
    let path = store.blob_path(&kept[0].0).unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        blob,
        "the blob is kept byte for byte"
    );

    // A wrong expected diffID fails the import and leaves nothing: no layer, no blob.
    let (blob2, _) = layer("b", "b\n");
    let wrong = ImportOptions {
        diff_id: Some(diff_id),
        ..keep_gzip()
    };
    let err = store
        .import(&id("l2"), None, &blob2[..], &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("diffID is wrong"), "{err}");
    assert!(!store.exists(&id("l2")).unwrap());
    let staged = std::fs::read_dir(store.root().join("staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "nothing left in staging");
    assert_eq!(
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        1,
        "only l1's blob"
    );
    assert!(store.fsck(false).unwrap().clean());
}

#[test]
fn images_names_and_removal() {
    let (_d, store) = store();
    let (b1, _) = layer("base", "1\n");
    let (b2, _) = layer("app", "2\n");
    let (b3, _) = layer("other", "3\n");
    store
        .import(&id("c1"), None, &b1[..], &keep_gzip())
        .unwrap();
    store
        .import(&id("c2"), Some(&id("c1")), &b2[..], &keep_gzip())
        .unwrap();
    store
        .import(&id("c3"), Some(&id("c1")), &b3[..], &keep_gzip())
        .unwrap();
    let lease = store.blob_lease().unwrap();
    let config_a = store
        .put_blob(br#"{"rootfs":{"type":"layers"},"a":1}"#, &lease)
        .unwrap();
    let config_b = store
        .put_blob(br#"{"rootfs":{"type":"layers"},"b":1}"#, &lease)
        .unwrap();
    let manifest = store.put_blob(b"{\"schemaVersion\":2}", &lease).unwrap();
    store
        .put_images(&[
            NewImage {
                id: config_a,
                top_layer: Some(id("c2")),
                manifest: Some(ManifestRef {
                    digest: manifest,
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                }),
                parent: None,
                names: vec![
                    "docker.io/library/app:1".into(),
                    "docker.io/library/app:latest".into(),
                ],
            },
            NewImage {
                id: config_b,
                top_layer: Some(id("c3")),
                manifest: None,
                parent: Some(config_a),
                names: vec!["docker.io/library/other:1".into()],
            },
        ])
        .unwrap();
    lease.release().unwrap();
    assert_eq!(store.images().unwrap().len(), 2);
    let a = store
        .image_named("docker.io/library/app:latest")
        .unwrap()
        .unwrap();
    assert_eq!(a.id, config_a);
    assert_eq!(
        a.names,
        ["docker.io/library/app:1", "docker.io/library/app:latest"]
    );
    // A name given to another image moves.
    store
        .tag(&config_b, "docker.io/library/app:latest")
        .unwrap();
    assert_eq!(
        store
            .image_named("docker.io/library/app:latest")
            .unwrap()
            .unwrap()
            .id,
        config_b
    );
    assert_eq!(
        store.image(&config_a).unwrap().unwrap().names,
        ["docker.io/library/app:1"]
    );
    let hex = config_a.hex();
    assert_eq!(store.images_with_prefix(&hex[..12]).unwrap().len(), 1);

    // The top layer of an image is not removed as a layer.
    let err = store.remove(&id("c2")).unwrap_err().to_string();
    assert!(err.contains("is the top layer of image"), "{err}");

    // A container on image a: removal refused, unless forced (then its layers stay).
    store
        .create(
            &id("ctr"),
            Some(&id("c2")),
            &CreateOptions {
                writable: true,
                ..Default::default()
            },
        )
        .unwrap();
    let err = store
        .remove_image(&config_a, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has read-write layers on it (ctr)"), "{err}");
    store.remove(&id("ctr")).unwrap();

    // Removing a: its names, config and manifest blobs, and c2 go; c1 stays (b uses it).
    let c2_blob = store.layer_blobs(&id("c2")).unwrap()[0].0;
    let removed = store.remove_image(&config_a, false).unwrap();
    assert_eq!(removed.untagged, ["docker.io/library/app:1"]);
    assert_eq!(removed.layers, [id("c2")]);
    assert!(store.blob_path(&config_a).is_none());
    assert!(store.blob_path(&manifest).is_none());
    assert!(
        store.blob_path(&c2_blob).is_none(),
        "the kept blob of c2 went with it"
    );
    assert!(store.exists(&id("c1")).unwrap());
    // Removing b takes c3 and c1.
    let removed = store.remove_image(&config_b, false).unwrap();
    assert_eq!(removed.layers, [id("c3"), id("c1")]);
    assert!(store.layers().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(store.fsck(false).unwrap().clean());
}

#[test]
fn a_blob_writer_checks_what_it_was_promised() {
    let (_d, store) = store();
    let lease = store.blob_lease().unwrap();
    let mut w = store.blob_writer(&lease).unwrap();
    w.write_all(b"hello").unwrap();
    let wrong = Digest([0u8; 32]);
    assert!(w
        .commit(Some(&wrong))
        .unwrap_err()
        .to_string()
        .contains("holds sha256:"));
    lease.release().unwrap();
    assert_eq!(
        std::fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn recovery_keeps_blobs_a_live_lease_holds_and_removes_those_nothing_refers_to() {
    let (dir, store) = store();
    let reopen = || {
        Store::open(&StoreOptions {
            root: dir.path().join("store"),
            driver: Some(DriverKind::Vfs),
        })
        .unwrap()
    };
    let lease = store.blob_lease().unwrap();
    let pending = store.put_blob(b"{\"pending\":1}", &lease).unwrap();
    // Another process opening the store meanwhile leaves the load's blob alone.
    let other = reopen();
    assert!(other.recovered().is_empty(), "{:?}", other.recovered());
    assert!(store.blob_path(&pending).is_some());
    assert!(other.fsck(false).unwrap().clean());
    // A load that dies: its lease ends without a record referring to the blob.
    drop(lease);
    let after = reopen();
    assert_eq!(
        after.recovered(),
        [format!(
            "removed blob {pending}, which no image, layer or load in progress refers to"
        )]
    );
    assert!(store.blob_path(&pending).is_none());
    assert!(after.cleanup().unwrap().actions.len() == 1, "reported once");
}

/// A read-write layer on `parent` in a new vfs or overlay store.
fn container_on(tree: &std::path::Path, driver: DriverKind) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        root: dir.path().join("store"),
        driver: Some(driver),
    })
    .unwrap();
    let mut tar = Vec::new();
    strata_layer::pack::pack(tree, &mut tar, Compression::None).unwrap();
    store
        .create(&id("base"), None, &CreateOptions::default())
        .unwrap();
    store
        .apply(&id("base"), &tar[..], &Default::default())
        .unwrap();
    store
        .create(
            &id("ctr"),
            Some(&id("base")),
            &CreateOptions {
                writable: true,
                ..Default::default()
            },
        )
        .unwrap();
    (dir, store)
}

#[test]
fn an_init_layer_holds_only_the_mountpoints_the_parent_lacks() {
    // The parent has /proc, and /etc as a symlink (so nothing goes under it).
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("proc")).unwrap();
    std::fs::create_dir(tree.path().join("real-etc")).unwrap();
    std::os::unix::fs::symlink("real-etc", tree.path().join("etc")).unwrap();
    for driver in [DriverKind::Vfs, DriverKind::Overlay] {
        let (_d, store) = container_on(tree.path(), driver);
        let ctr = store.layer(&id("ctr")).unwrap();
        assert_eq!(ctr.parent, Some(id("base")));
        assert_eq!(ctr.init_layer, Some(id("ctr-init")));
        let init = store.layer(&id("ctr-init")).unwrap();
        assert_eq!(init.init_for, Some(id("ctr")));
        let held: Vec<String> = store
            .changes(&id("ctr-init"))
            .unwrap()
            .iter()
            .map(|c| c.path.to_string())
            .collect();
        assert_eq!(
            held,
            [".dockerenv", "dev", "dev/pts", "dev/shm", "sys"],
            "{driver:?}"
        );
        assert!(store.changes(&id("ctr")).unwrap().is_empty());
        assert!(
            std::fs::read_link(tree.path().join("etc")).is_ok(),
            "the parent's /etc symlink was not followed"
        );
        assert!(!tree.path().join("real-etc/hosts").exists());
        // Nothing can be built on an init layer.
        let err = store
            .create(
                &id("other"),
                Some(&id("ctr-init")),
                &CreateOptions::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is the init layer of read-write layer ctr"),
            "{err}"
        );
        store.remove(&id("ctr")).unwrap();
        assert!(!store.exists(&id("ctr-init")).unwrap());
        assert!(store.fsck(false).unwrap().clean());
    }
}

#[test]
fn recovery_removes_an_init_layer_whose_container_is_gone() {
    let tree = tempfile::tempdir().unwrap();
    let (dir, store) = container_on(tree.path(), DriverKind::Vfs);
    drop(store);
    // A crash between the init layer's import and its container's creation leaves this.
    let root = dir.path().join("store");
    rusqlite::Connection::open(root.join("strata.db"))
        .unwrap()
        .execute("DELETE FROM layers WHERE id = 'ctr'", [])
        .unwrap();
    std::fs::remove_dir_all(root.join("layers/ctr")).unwrap();
    let store = Store::open(&StoreOptions { root, driver: None }).unwrap();
    assert_eq!(
        store.recovered(),
        ["removed init layer ctr-init, whose read-write layer ctr is gone"]
    );
    assert!(!store.exists(&id("ctr-init")).unwrap());
    assert!(store.fsck(false).unwrap().clean());
}

/// A plain layer tar: `etc/` with a whiteout of `etc/a` and the file `etc/b`.
fn child_tar() -> Vec<u8> {
    use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter};
    let p = |s: &str| LayerPath::from_tar_name(s.as_bytes()).unwrap();
    let mut w = strata_layer::tar::TarWriter::new(Vec::new());
    let mut etc = Entry::new(p("etc"), EntryKind::Dir);
    etc.meta.mode = 0o755;
    w.add(&etc).unwrap();
    w.add(&Entry::new(p("etc/a"), EntryKind::Whiteout)).unwrap();
    let mut b = Entry::new(
        p("etc/b"),
        EntryKind::File {
            size: 2,
            sparse: None,
        },
    );
    b.meta.mode = 0o644;
    w.add(&b).unwrap();
    w.write_data(b"b\n").unwrap();
    w.finish().unwrap()
}

/// The layers of an image are imported in parallel: a child whose parent is still coming
/// is written at once, waits only where it must see the parent (here: a whiteout), stays
/// invisible until the parent is in, and ends the same, bit for bit, as when imported
/// after it. A parent that fails takes the child with it, leaving nothing behind.
#[test]
fn a_layer_imported_while_its_parent_comes_ends_as_after_it() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("needs root (overlay whiteouts); skipped");
        return;
    }
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/a"), "a\n").unwrap();
    let mut parent = Vec::new();
    strata_layer::pack::pack(tree.path(), &mut parent, Compression::None).unwrap();
    let child = child_tar();
    let overlay_store = || {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions {
            root: dir.path().join("store"),
            driver: Some(DriverKind::Overlay),
        })
        .unwrap();
        (dir, store)
    };
    // The reference: one after the other.
    let (_a, one_by_one) = overlay_store();
    let opts = ImportOptions::default();
    one_by_one
        .import(&id("p"), None, &parent[..], &opts)
        .unwrap();
    let want = one_by_one
        .import(&id("c"), Some(&id("p")), &child[..], &opts)
        .unwrap();

    let (_b, store) = overlay_store();
    let (go, ready) = std::sync::mpsc::channel::<Result<(), String>>();
    let ready = std::sync::Mutex::new(ready);
    let wait = || ready.lock().unwrap().recv().unwrap();
    let got = std::thread::scope(|s| {
        let c = s.spawn(|| store.import_after(&id("c"), &id("p"), &child[..], &opts, &wait));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !store.exists(&id("c")).unwrap(),
            "visible before its parent"
        );
        store.import(&id("p"), None, &parent[..], &opts).unwrap();
        go.send(Ok(())).unwrap();
        c.join().unwrap()
    })
    .unwrap();
    assert_eq!(got.diff.diff_id, want.diff.diff_id);
    assert_eq!(store.layer(&id("c")).unwrap().parent, Some(id("p")));
    let diff = |st: &Store| {
        let mut out = Vec::new();
        st.diff(&id("c"), &mut out, Compression::None).unwrap();
        out
    };
    assert_eq!(diff(&store), child, "rebuilt bit for bit");
    let whiteout = store.root().join("layers/c/diff/etc/a");
    let md = std::fs::symlink_metadata(&whiteout).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::rdev(&md),
        0,
        "a 0/0 whiteout"
    );
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &md.file_type()
    ));
    assert!(store.fsck(false).unwrap().clean());

    // The parent fails: the child is not kept, nothing is left in staging.
    let (go, ready) = std::sync::mpsc::channel::<Result<(), String>>();
    let ready = std::sync::Mutex::new(ready);
    let wait = || ready.lock().unwrap().recv().unwrap();
    go.send(Err("its download broke".into())).unwrap();
    let err = store
        .import_after(&id("c2"), &id("p2"), &child[..], &opts, &wait)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parent `p2` failed: its download broke"),
        "{err}"
    );
    assert!(!store.exists(&id("c2")).unwrap());
    assert_eq!(
        std::fs::read_dir(store.root().join("staging"))
            .unwrap()
            .count(),
        0,
        "nothing left in staging"
    );
    assert!(store.fsck(false).unwrap().clean());
}
