//! The graph-driver lifecycle on both drivers: the corpus image's merged view against
//! umoci's, bit-exact re-export, a container layer's changes and diff, removal order,
//! mount counts, a 130-layer chain, the driver a store keeps.

use std::fs;
use std::path::Path;
use std::process::Command;

use strata_store::{Error, Store, StoreOptions};
use strata_testkit::entries::Item;
use strata_testkit::*;

use super::*;

fn corpus_image_matches_umoci(driver: &'static str) {
    let store = TestStore::new(driver);
    for tag in ["base", "corpus"] {
        let diff_ids = load_tag(&store, tag);
        // Every applied layer re-exports with its original diffID.
        let from_corpus: Vec<String> = if tag == "corpus" {
            layers_tsv().into_iter().map(|r| r.diff_id).collect()
        } else {
            diff_ids.clone()
        };
        assert_eq!(diff_ids, from_corpus, "{tag}: diffIDs of the applies");
        for (i, want) in diff_ids.iter().enumerate() {
            assert_eq!(
                &store.diff_digest(&format!("{tag}{}", i + 1)),
                want,
                "{driver}: {tag} layer {} re-exported with another diffID",
                i + 1
            );
        }
        let top = format!("{tag}{}", diff_ids.len());
        let merged = store.mount(&top);
        let expected =
            fs::read_to_string(corpus().join(format!("expected/{tag}.rootfs.tsv"))).unwrap();
        assert_listing_eq(
            &without_root_mtime(&expected),
            &listing_of(&merged),
            &format!("{driver}: merged view of {tag} vs umoci unpack"),
        );
        store.unmount(&top);
    }
    store.fsck_clean();
}

#[test]
fn corpus_image_merged_view_matches_umoci_on_overlay() {
    corpus_image_matches_umoci("overlay");
}

#[test]
fn corpus_image_merged_view_matches_umoci_on_vfs() {
    corpus_image_matches_umoci("vfs");
}

fn lifecycle(driver: &'static str) {
    let store = TestStore::new(driver);
    load_tag(&store, "corpus");
    store.create_rw("ctr", Some("corpus5"));
    let m = store.mount("ctr");

    // Add, modify, delete, replace a directory by a file and a file by a directory.
    fs::write(m.join("etc/added"), "new\n").unwrap();
    fs::write(m.join("etc/corpus/replaced.conf"), "rewritten\n").unwrap();
    fs::remove_file(m.join("opt/corpus/small/d0000/f00000.txt")).unwrap();
    fs::remove_dir_all(m.join("opt/corpus/small/d0004")).unwrap();
    fs::write(m.join("opt/corpus/small/d0004"), "now a file\n").unwrap();
    fs::remove_file(m.join("opt/big/blob.bin")).unwrap();
    fs::create_dir(m.join("opt/big/blob.bin")).unwrap();
    fs::write(m.join("opt/big/blob.bin/inside"), "x").unwrap();
    let want = [
        "C /etc",
        "A /etc/added",
        "C /etc/corpus",
        "C /etc/corpus/replaced.conf",
        "C /opt",
        "C /opt/big",
        "C /opt/big/blob.bin",
        "A /opt/big/blob.bin/inside",
        "C /opt/corpus",
        "C /opt/corpus/small",
        "C /opt/corpus/small/d0000",
        "D /opt/corpus/small/d0000/f00000.txt",
        "C /opt/corpus/small/d0004",
    ];
    assert_eq!(
        store.changes("ctr"),
        want,
        "{driver}: changes of the container layer"
    );

    // Its diff, applied as a new layer on the same parent, gives the same merged tree.
    let tmp = tempdir();
    let diff = tmp.path().join("ctr.tar");
    fs::write(&diff, store.diff_bytes("ctr")).unwrap();
    assert_eq!(
        read(&diff),
        store.diff_bytes("ctr"),
        "{driver}: the diff is deterministic"
    );
    let mut bsdtar = Command::new("bsdtar");
    bsdtar.arg("-tvf").arg(&diff);
    let bsdtar = run_with_timeout(bsdtar, TIMEOUT);
    bsdtar.assert_success();
    assert!(bsdtar.stderr.is_empty(), "bsdtar warned: {}", bsdtar.stderr);
    store.add("committed", Some("corpus5"), &diff);
    store.create_rw("ctr2", Some("committed"));
    let m2 = store.mount("ctr2");
    assert_listing_eq(
        &listing_of(&m),
        &listing_of(&m2),
        &format!("{driver}: the diff re-applied vs the container layer"),
    );
    assert_eq!(
        store.changes("committed"),
        want,
        "{driver}: the committed layer has the same changes"
    );
    assert_eq!(
        store.store.diff_size(&id("ctr")).unwrap(),
        4 + 10 + 11 + 1,
        "{driver}: diff-size counts the data written"
    );

    // Removal in the wrong order is refused, in the right order works.
    refused(store.store.remove(&id("ctr")), "is mounted");
    refused(
        store.store.remove(&id("corpus5")),
        "has child layers (committed, ctr)",
    );
    store.unmount("ctr");
    store.unmount("ctr2");
    for name in ["ctr", "ctr2", "committed"] {
        store.remove(name);
    }
    store.fsck_clean();
    for i in (1..=5).rev() {
        store.remove(&format!("corpus{i}"));
    }
    assert!(store.listing().is_empty());
    let leftovers: Vec<_> = fs::read_dir(store.root.join("layers")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "{driver}: layers/ not empty after rm: {leftovers:?}"
    );
    store.fsck_clean();
}

#[test]
fn lifecycle_on_overlay() {
    lifecycle("overlay");
}

#[test]
fn lifecycle_on_vfs() {
    lifecycle("vfs");
}

/// Two handles on one store stand for two processes: the counts live in the database.
#[test]
fn mount_counts_are_shared_by_store_handles() {
    let store = TestStore::new("overlay");
    load_tag(&store, "base");
    store.create_rw("c", Some("base1"));
    let other = store.reopen();
    let path = store.mount("c");
    assert_eq!(other.mount(&id("c")).unwrap(), path);
    let mounted = |p: &Path| {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", p.display()))
    };
    assert!(mounted(&path));
    assert_eq!(other.unmount(&id("c")).unwrap(), 1);
    assert!(mounted(&path), "still mounted after one of two unmounts");
    assert_eq!(store.unmount("c"), 0);
    assert!(!mounted(&path), "unmounted by the last unmount");
    refused(other.unmount(&id("c")), "is not mounted");
    // A read-only mount of an applied layer.
    let ro = store.mount("base1");
    let err = fs::write(ro.join("etc/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
    store.unmount("base1");
    store.fsck_clean();
}

#[test]
fn a_chain_of_130_layers_mounts() {
    let store = TestStore::new("overlay");
    let mut parent: Option<String> = None;
    for i in 0..130 {
        let name = format!("c{i:03}");
        let layer = [
            Item::dir("layers"),
            Item::file(&format!("layers/{i}"), format!("{i}\n")),
        ];
        store.add_items(&name, parent.as_deref(), &layer);
        parent = Some(name);
    }
    store.create_rw("top", Some("c129"));
    let m = store.mount("top");
    assert_eq!(
        names(&m.join("layers")).len(),
        130,
        "every layer of the chain is visible"
    );
    assert_file(&m.join("layers/0"), b"0\n");
    assert_file(&m.join("layers/129"), b"129\n");
    store.unmount("top");
    let inspect = store.store.inspect(&id("top")).unwrap();
    assert_eq!(inspect.parents.len(), 130);
    assert_eq!(inspect.layer.depth, 131);
}

#[test]
fn a_store_keeps_its_driver() {
    let store = TestStore::new("vfs");
    let err = Store::open(&StoreOptions {
        root: store.root.clone(),
        driver: Some(DriverKind::Overlay),
    })
    .unwrap_err();
    assert!(matches!(err, Error::DriverMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("was created with the vfs driver; it cannot be used with overlay"),
        "{err}"
    );
    // Without a driver, the recorded one is used.
    assert_eq!(store.reopen().driver(), DriverKind::Vfs);
}
