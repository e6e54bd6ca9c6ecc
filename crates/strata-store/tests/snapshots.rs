//! containerd's snapshots on the store (`Snapshotter`), on the vfs driver so that no
//! mount (and no root) is needed: keys and kinds, parents, labels, times, commit, removal
//! rules, image layers as committed snapshots, and the target label of remote
//! snapshotters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_layer::compress::Compression;
use strata_store::{
    DriverKind, ImportOptions, LayerId, SnapshotError, SnapshotKind, SnapshotMount, Snapshotter,
    Store, StoreOptions,
};

fn snapshotter(root: &std::path::Path) -> Snapshotter {
    let store = Store::open(&StoreOptions {
        root: root.into(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap();
    Snapshotter::new(store).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn rw_dir(mounts: &[SnapshotMount]) -> PathBuf {
    match mounts {
        [SnapshotMount::Bind {
            source,
            read_only: false,
        }] => source.clone(),
        other => panic!("expected one read-write bind mount, got {other:?}"),
    }
}

/// A one-file layer tar.
fn tar_with(name: &str, body: &str) -> Vec<u8> {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join(name), body).unwrap();
    let mut tar = Vec::new();
    strata_layer::pack::pack(tree.path(), &mut tar, Compression::None).unwrap();
    tar
}

#[test]
fn prepare_commit_view_and_remove_keep_containerds_rules() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let dir = rw_dir(&s.prepare("a", None, labels(&[("l", "1")])).unwrap());
    std::fs::write(dir.join("f"), "one\n").unwrap();
    let a = s.stat("a").unwrap();
    assert_eq!(a.kind, SnapshotKind::Active);
    assert_eq!(a.created, a.updated);
    assert!(a.created >= before, "{} < {before}", a.created);
    assert_eq!(a.labels, labels(&[("l", "1")]));
    assert!(a.layer.as_str().starts_with("ctrd-"));
    // The key is taken, by any kind.
    assert!(
        matches!(s.prepare("a", None, BTreeMap::new()), Err(SnapshotError::Exists(k)) if k == "a")
    );
    assert!(matches!(
        s.view("a", None, BTreeMap::new()),
        Err(SnapshotError::Exists(_))
    ));

    // Commit: the name gets the commit's labels, the key is gone, the layer is read-only
    // and holds the file.
    s.commit("c", "a", labels(&[("m", "2")])).unwrap();
    assert!(matches!(s.stat("a"), Err(SnapshotError::NotFound(_))));
    let c = s.stat("c").unwrap();
    assert_eq!((c.kind, c.parent.clone()), (SnapshotKind::Committed, None));
    assert_eq!(c.labels, labels(&[("m", "2")]));
    let layer = s.store().layer(&c.layer).unwrap();
    assert_eq!(layer.status.name(), "applied");
    let changes = s.store().changes(&c.layer).unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| c.path.to_string())
            .collect::<Vec<_>>(),
        ["f"]
    );
    // Committing again, or a view, fails.
    assert!(matches!(
        s.commit("c2", "a", BTreeMap::new()),
        Err(SnapshotError::NotFound(_))
    ));

    // A child, and a view: the parent cannot go while they are there.
    let child = rw_dir(&s.prepare("b", Some("c"), BTreeMap::new()).unwrap());
    assert_eq!(std::fs::read_to_string(child.join("f")).unwrap(), "one\n");
    let view = s.view("v", Some("c"), BTreeMap::new()).unwrap();
    assert!(matches!(
        &view[..],
        [SnapshotMount::Bind {
            read_only: true,
            ..
        }]
    ));
    assert!(matches!(
        s.prepare("x", Some("b"), BTreeMap::new()),
        Err(SnapshotError::Refused { reason, .. }) if reason.contains("not a committed one")
    ));
    assert!(matches!(
        s.prepare("x", Some("nope"), BTreeMap::new()),
        Err(SnapshotError::Refused { reason, .. }) if reason.contains("`nope` does not exist")
    ));
    let e = s.remove("c").unwrap_err();
    assert!(e.to_string().contains("failed to remove"), "{e}");
    let names = |s: &Snapshotter| {
        let mut n: Vec<String> = s.list().unwrap().into_iter().map(|i| i.name).collect();
        n.sort();
        n
    };
    assert_eq!(names(&s), ["b", "c", "v"]);

    // Labels: replaced, `updated` moves, `created` stays.
    let b = s.stat("b").unwrap();
    let b2 = s.set_labels("b", labels(&[("k", "v")])).unwrap();
    assert_eq!(b2.labels, labels(&[("k", "v")]));
    assert_eq!(b2.created, b.created);
    assert!(b2.updated > b.updated);
    assert_eq!(s.stat("b").unwrap(), b2);

    s.remove("b").unwrap();
    s.remove("v").unwrap();
    s.remove("c").unwrap();
    assert!(names(&s).is_empty());
    // A removed key is free again, and no layer is left behind.
    s.prepare("c", None, BTreeMap::new()).unwrap();
    s.remove("c").unwrap();
    assert!(s.store().layers().unwrap().is_empty());
}

#[test]
fn usage_counts_the_snapshots_own_files() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    let dir = rw_dir(&s.prepare("a", None, BTreeMap::new()).unwrap());
    let empty = s.usage("a").unwrap();
    assert_eq!(empty.inodes, 0);
    std::fs::write(dir.join("big"), vec![7u8; 1 << 20]).unwrap();
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::hard_link(dir.join("big"), dir.join("d/link")).unwrap();
    let used = s.usage("a").unwrap();
    assert_eq!(used.inodes, 2, "a file (linked twice) and a directory");
    assert!(used.size >= 1 << 20, "{used:?}");
    assert!(used.size < 3 << 20, "the hard link counted once: {used:?}");
}

#[test]
fn image_layers_are_committed_snapshots_and_targets_of_prepare() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    // Two image layers, named by (stand-in) chainID hex as `strata pull` names them.
    let base = LayerId::new("a".repeat(64)).unwrap();
    let top = LayerId::new("b".repeat(64)).unwrap();
    let opts = ImportOptions::default();
    s.store()
        .import(&base, None, &tar_with("one", "1")[..], &opts)
        .unwrap();
    s.store()
        .import(&top, Some(&base), &tar_with("two", "2")[..], &opts)
        .unwrap();
    let (base_name, top_name) = (format!("sha256:{base}"), format!("sha256:{top}"));

    let info = s.stat(&top_name).unwrap();
    assert_eq!(info.kind, SnapshotKind::Committed);
    assert_eq!(info.parent.as_deref(), Some(base_name.as_str()));
    assert_eq!(
        info.labels,
        labels(&[("containerd.io/snapshot.ref", &top_name)])
    );
    assert_eq!(s.list().unwrap().len(), 2);

    // containerd unpacking the same image: each layer is already there.
    let ref_of = |name: &str| labels(&[("containerd.io/snapshot.ref", name)]);
    let e = s
        .prepare("extract-1", None, ref_of(&base_name))
        .unwrap_err();
    assert!(
        matches!(&e, SnapshotError::TargetExists { target, layer } if *target == base_name && *layer == base),
        "{e}"
    );
    let e = s
        .prepare("extract-2", Some(&base_name), ref_of(&top_name))
        .unwrap_err();
    assert!(matches!(e, SnapshotError::TargetExists { .. }));
    // On another parent the target is not that layer: unpacked as usual.
    s.prepare("extract-3", None, ref_of(&top_name)).unwrap();
    s.remove("extract-3").unwrap();

    // A container on the image.
    let dir = rw_dir(&s.prepare("ctr", Some(&top_name), BTreeMap::new()).unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("one")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(dir.join("two")).unwrap(), "2");
    let e = s.remove(&top_name).unwrap_err();
    assert!(e.to_string().contains("failed to remove"), "{e}");
    s.remove("ctr").unwrap();
    // Without children, and held by no image record: still the store's own, so containerd
    // (whose garbage collection asks to remove what its metadata does not name) cannot
    // remove it; the store can.
    let e = s.remove(&top_name).unwrap_err();
    assert!(e.to_string().contains("is the store's own"), "{e}");
    assert_eq!(s.list().unwrap().len(), 2);
    s.store().remove(&top).unwrap();
    s.store().remove(&base).unwrap();
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn cleanup_removes_snapshot_layers_without_a_row() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    s.prepare("kept", None, BTreeMap::new()).unwrap();
    // What a commit cut short leaves: a snapshot layer nobody names.
    let stray = LayerId::new("ctrd-999").unwrap();
    s.store().create_bare(&stray, None).unwrap();
    // And a user's layer, which is not ours to take.
    let mine = LayerId::new("mine").unwrap();
    s.store().create_bare(&mine, None).unwrap();
    assert_eq!(s.cleanup().unwrap(), 1);
    assert!(!s.store().exists(&stray).unwrap());
    assert!(s.store().exists(&mine).unwrap());
    assert!(s.stat("kept").is_ok());
}

/// The store's own diff of layer `id` (a tar) and its digest.
fn diff_of(store: &Store, id: &LayerId) -> (String, Vec<u8>) {
    let mut tar = Vec::new();
    let out = store.diff(id, &mut tar, Compression::None).unwrap();
    (out.diff_id.to_string(), tar)
}

#[test]
fn commit_freezes_the_active_layer_in_place() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    let dir = rw_dir(&s.prepare("base-x", None, BTreeMap::new()).unwrap());
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/gone"), "bye\n").unwrap();
    std::fs::write(dir.join("kept"), "k\n").unwrap();
    s.commit("base", "base-x", BTreeMap::new()).unwrap();
    let dir = rw_dir(&s.prepare("top-x", Some("base"), BTreeMap::new()).unwrap());
    std::fs::write(dir.join("big"), vec![7u8; 3 << 20]).unwrap();
    std::fs::hard_link(dir.join("big"), dir.join("big-link")).unwrap();
    std::fs::remove_file(dir.join("d/gone")).unwrap();
    let active = s.stat("top-x").unwrap();
    let (diff_id, tar) = diff_of(s.store(), &active.layer);
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(dir.join("big")).unwrap().ino();

    // A name in use: refused, the active snapshot and its layer as they were.
    assert!(matches!(
        s.commit("base", "top-x", BTreeMap::new()),
        Err(SnapshotError::Exists(k)) if k == "base"
    ));
    assert_eq!(s.stat("top-x").unwrap(), active);
    assert_eq!(
        s.store().layer(&active.layer).unwrap().status.name(),
        "read-write"
    );

    s.commit("top", "top-x", BTreeMap::new()).unwrap();
    // The same layer and the same file: nothing was copied.
    let top = s.stat("top").unwrap();
    assert_eq!(top.layer, active.layer);
    let details = s.store().inspect(&top.layer).unwrap();
    assert_eq!(
        std::fs::metadata(details.content.join("big"))
            .unwrap()
            .ino(),
        inode
    );
    // Read-only now, its diff pending: no diffID, no recipe yet.
    let layer = s.store().layer(&top.layer).unwrap();
    assert_eq!(layer.status.name(), "applied");
    assert!(layer.diff_pending(), "{layer:?}");
    assert_eq!(details.recipe, None);
    assert!(!root
        .path()
        .join("recipes")
        .join(top.layer.as_str())
        .exists());
    // The first diff makes them: what the active layer's diff was, bit for bit, and
    // recorded; the next diff is rebuilt from the recipe.
    assert_eq!(
        diff_of(s.store(), &top.layer),
        (diff_id.clone(), tar.clone())
    );
    let layer = s.store().layer(&top.layer).unwrap();
    assert!(!layer.diff_pending());
    assert_eq!(
        layer.diff.as_ref().map(|d| d.diff_id.to_string()),
        Some(diff_id.clone())
    );
    assert_eq!(layer.diff.as_ref().map(|d| d.diff_size), Some(3 << 20)); // the link is a link, not data
    assert!(root
        .path()
        .join("recipes")
        .join(top.layer.as_str())
        .exists());
    assert_eq!(diff_of(s.store(), &top.layer), (diff_id, tar));
    let names: Vec<String> = s.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["base", "top"]);
    let report = s.store().fsck(false).unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    // A read-only layer cannot be frozen again.
    let e = s.store().freeze(&top.layer).unwrap_err();
    assert!(e.to_string().contains("cannot freeze"), "{e}");
}

#[test]
fn a_commit_cut_after_the_freeze_hides_the_active_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    let dir = rw_dir(&s.prepare("a", None, BTreeMap::new()).unwrap());
    std::fs::write(dir.join("f"), "x\n").unwrap();
    let layer = s.stat("a").unwrap().layer;
    // What a kill between the freeze and the end of the commit leaves (here without the
    // committed row): the active row names a read-only layer.
    s.store().freeze(&layer).unwrap();
    assert!(matches!(s.stat("a"), Err(SnapshotError::NotFound(_))));
    assert!(s.list().unwrap().is_empty());
    // The next start drops the row; cleanup the layer nobody names.
    let s = Snapshotter::new(
        Store::open(&StoreOptions {
            root: root.path().into(),
            driver: Some(DriverKind::Vfs),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(s.cleanup().unwrap(), 1);
    assert!(s.store().layers().unwrap().is_empty());
    s.prepare("a", None, BTreeMap::new()).unwrap();
}

#[test]
fn fsck_and_settle_pending_make_the_diffs_commit_left_pending() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    let dir = rw_dir(&s.prepare("a-x", None, BTreeMap::new()).unwrap());
    std::fs::write(dir.join("f"), "one\n").unwrap();
    let (want_a, _) = diff_of(s.store(), &s.stat("a-x").unwrap().layer);
    s.commit("a", "a-x", BTreeMap::new()).unwrap();
    let dir = rw_dir(&s.prepare("b-x", Some("a"), BTreeMap::new()).unwrap());
    std::fs::write(dir.join("g"), "two\n").unwrap();
    let (want_b, _) = diff_of(s.store(), &s.stat("b-x").unwrap().layer);
    s.commit("b", "b-x", BTreeMap::new()).unwrap();
    let (a, b) = (s.stat("a").unwrap().layer, s.stat("b").unwrap().layer);
    let diff_id = |id: &LayerId| {
        let l = s.store().layer(id).unwrap();
        (l.diff_pending(), l.diff.map(|d| d.diff_id.to_string()))
    };
    assert_eq!(diff_id(&a), (true, None));

    // What a settle cut short before its record leaves: a stray recipe, still pending.
    std::fs::write(root.path().join("recipes").join(b.as_str()), "junk").unwrap();
    // fsck makes the pending diff, then checks it like any.
    let report = s.store().fsck(false).unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    assert_eq!(diff_id(&a), (false, Some(want_a)));
    assert_eq!(diff_id(&b), (false, Some(want_b.clone())));
    assert_eq!(s.store().settle_pending().unwrap(), 0);
    assert_eq!(s.store().settle(&b).unwrap().diff_id.to_string(), want_b);

    let dir = rw_dir(&s.prepare("c-x", Some("b"), BTreeMap::new()).unwrap());
    std::fs::write(dir.join("h"), "three\n").unwrap();
    s.commit("c", "c-x", BTreeMap::new()).unwrap();
    assert_eq!(s.store().settle_pending().unwrap(), 1);
    assert!(!s
        .store()
        .layer(&s.stat("c").unwrap().layer)
        .unwrap()
        .diff_pending());
    // Only applied layers have a diff to settle.
    s.prepare("d-x", Some("c"), BTreeMap::new()).unwrap();
    let e = s.store().settle(&s.stat("d-x").unwrap().layer).unwrap_err();
    assert!(e.to_string().contains("is a read-write layer"), "{e}");
}

#[test]
fn commit_waits_for_a_reader_of_the_layer_then_says_to_retry() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    let dir = rw_dir(&s.prepare("a-x", None, BTreeMap::new()).unwrap());
    std::fs::write(dir.join("f"), "x\n").unwrap();
    let layer = s.stat("a-x").unwrap().layer;
    let lock_path = root.path().join("layers").join(layer.as_str()).join("lock");
    // Another process reading the layer holds its lock shared (as `strata layer diff`).
    let reader = std::fs::File::open(&lock_path).unwrap();
    reader.lock_shared().unwrap();
    let start = std::time::Instant::now();
    let e = s.commit("a", "a-x", BTreeMap::new()).unwrap_err();
    assert!(start.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        matches!(
            &e,
            SnapshotError::Store(strata_store::Error::Busy { id, what: "freeze", .. }) if *id == layer
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("try again"), "{e}");
    // Nothing changed.
    assert_eq!(s.stat("a-x").unwrap().kind, SnapshotKind::Active);
    assert!(matches!(s.stat("a"), Err(SnapshotError::NotFound(_))));
    assert_eq!(s.store().layer(&layer).unwrap().status.name(), "read-write");

    // A reader that lets go within the wait: the commit goes through.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(reader);
    });
    s.commit("a", "a-x", BTreeMap::new()).unwrap();
    release.join().unwrap();
    assert_eq!(s.stat("a").unwrap().kind, SnapshotKind::Committed);
}

#[test]
fn a_prepare_cut_after_its_first_transaction_leaves_nothing_in_sight() {
    let root = tempfile::tempdir().unwrap();
    let s = snapshotter(root.path());
    s.prepare("a", None, BTreeMap::new()).unwrap();
    let layer = s.stat("a").unwrap().layer;
    // A prepare fails after its rows are written (here: its directory's place is taken),
    // like a kill between its two transactions: the key stays free and nothing shows.
    let next = format!("ctrd-{}", layer.as_str()[5..].parse::<u64>().unwrap() + 1);
    std::fs::create_dir_all(root.path().join("layers").join(&next).join("x")).unwrap();
    assert!(s.prepare("b", None, BTreeMap::new()).is_err());
    assert!(matches!(s.stat("b"), Err(SnapshotError::NotFound(_))));
    assert_eq!(s.list().unwrap().len(), 1);
    std::fs::remove_dir_all(root.path().join("layers").join(&next)).unwrap();
    // A layer of the store named like the one a prepare stages under is no obstacle.
    let named = LayerId::new("ctrd-new").unwrap();
    s.store().create_bare(&named, None).unwrap();
    s.prepare("b", None, BTreeMap::new()).unwrap();
    assert_eq!(s.stat("b").unwrap().kind, SnapshotKind::Active);
    let report = s.store().fsck(false).unwrap();
    assert!(report.clean(), "{:?}", report.problems);
}
