//! Hostile layers through the store (applied on a parent: overlay writes into the upper
//! directory, resolving through the parent's tree), overlay's upper-directory writer
//! against vfs's plain one on every edge and hostile tar, fsck and cleanup.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use strata_testkit::hostile::*;
use strata_testkit::*;

use super::*;

fn hostile_layers(driver: &'static str) {
    let store = TestStore::new(driver);
    load_tag(&store, "base");
    let tars = corpus_tars("evil");
    assert!(tars.len() >= 40, "the evil corpus is there");
    for (i, tar) in tars.iter().enumerate() {
        let name = tar.file_name().unwrap().to_string_lossy();
        let _lock = lock_tmp();
        clean_tmp();
        fs::write(SENTINEL, "sentinel\n").unwrap();
        let layer = format!("evil{i}");
        store.create(&layer, Some("base1"));
        let applied = store.apply_file(&layer, tar, &Default::default());
        let outside = Outside::observe();
        clean_tmp();
        match applied {
            Err(_) => assert_eq!(
                store.store.layer(&id(&layer)).unwrap().status.name(),
                "empty",
                "{driver} {name}: a refused apply leaves the layer empty"
            ),
            // Whatever was accepted re-exports bit-exact.
            Ok(_) => assert_eq!(
                store.diff_digest(&layer),
                sha256_file(tar),
                "{driver} {name}: re-export"
            ),
        }
        outside.assert_untouched(&format!("{driver} {name}"));
        store.remove(&layer);
    }
    store.fsck_clean();
    // The base layer is untouched by all of it.
    assert_eq!(store.diff_digest("base1"), store.diff_id("base1"));
}

#[test]
fn hostile_layers_are_refused_or_confined_on_overlay() {
    hostile_layers("overlay");
}

#[test]
fn hostile_layers_are_refused_or_confined_on_vfs() {
    hostile_layers("vfs");
}

/// `f` on each store, at once.
fn both<T: Send>(stores: &mut [TestStore], f: impl Fn(&mut TestStore) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let running: Vec<_> = stores.iter_mut().map(|st| s.spawn(move || f(st))).collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The lines of a listing whose columns satisfy `keep`.
fn filter_lines(listing: &str, keep: impl Fn(&[&str]) -> bool) -> String {
    listing
        .lines()
        .filter(|l| keep(&l.split('\t').collect::<Vec<_>>()))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A listing with the times of the last hours (implied directories, directories changed
/// but not listed: the moment of the apply, different in each store) masked.
/// `None` for a tree the oracle cannot list (paths beyond PATH_MAX).
fn listing_masking_now(dir: &std::path::Path) -> Option<String> {
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 4 * 3600 * 1_000_000_000;
    let mut cmd = Command::new("python3");
    cmd.arg(tree_listing_script()).arg(dir);
    let run = run_with_timeout(cmd, std::time::Duration::from_secs(300));
    if !run.success() {
        assert!(run.stderr.contains("File name too long"), "{}", run.stderr);
        return None;
    }
    let listing = without_root_mtime(&String::from_utf8(run.stdout).unwrap());
    Some(map_columns(&listing, |cols| {
        if cols
            .get(6)
            .and_then(|t| t.parse::<u128>().ok())
            .is_some_and(|t| t > recent)
        {
            cols[6] = "now".into();
        }
    }))
}

/// The edge and evil tars are compared in [`PARTS`] tests (every PARTS-th tar, from
/// `part`), which nextest runs in parallel: listing every merged tree twice is minutes.
const PARTS: usize = 3;

#[test]
fn overlay_and_vfs_give_the_same_tree_for_every_edge_and_hostile_layer_on_a_parent_1_of_3() {
    overlay_and_vfs_give_the_same_tree(0);
}

#[test]
fn overlay_and_vfs_give_the_same_tree_for_every_edge_and_hostile_layer_on_a_parent_2_of_3() {
    overlay_and_vfs_give_the_same_tree(1);
}

#[test]
fn overlay_and_vfs_give_the_same_tree_for_every_edge_and_hostile_layer_on_a_parent_3_of_3() {
    overlay_and_vfs_give_the_same_tree(2);
}

/// Every edge and evil tar whose index is `part` modulo [`PARTS`], applied on a parent
/// in an overlay store and a vfs store: both accept or both refuse it, and both merged
/// views list the same.
fn overlay_and_vfs_give_the_same_tree(part: usize) {
    let mut stores = [TestStore::new("overlay"), TestStore::new("vfs")];
    for s in &stores {
        load_tag(s, "base");
    }
    let mut tars = corpus_tars("edge");
    tars.extend(corpus_tars("evil"));
    assert!(tars.len() >= 70, "the edge and evil corpus is there");
    let (mut compared, mut deep) = (0, 0);
    for (i, tar) in tars.iter().enumerate().skip(part).step_by(PARTS) {
        let lock = lock_tmp();
        let layer = format!("x{i}");
        let applied: Vec<Result<(), String>> = both(&mut stores, |s| {
            s.create(&layer, Some("base1"));
            s.apply_file(&layer, tar, &Default::default())
                .map(drop)
                .map_err(|e| chain(&e))
        });
        clean_tmp();
        // Only the applies write (and may escape to) /tmp; listing the trees does not.
        drop(lock);
        assert_eq!(
            applied[0].is_ok(),
            applied[1].is_ok(),
            "{}: overlay {:?} / vfs {:?}",
            tar.display(),
            applied[0],
            applied[1]
        );
        if applied[0].is_ok() {
            let trees: Vec<Option<String>> = both(&mut stores, |s| {
                let m = s.mount(&layer);
                let tree = listing_masking_now(&m);
                s.unmount(&layer);
                tree
            });
            // A 0/0 character device is a whiteout to overlayfs: it cannot show in a
            // merged view, whoever wrote it (the kernel through a mount hides it too).
            let [Some(overlay), Some(vfs)] = &trees[..] else {
                assert!(
                    trees[0].is_none() && trees[1].is_none(),
                    "{}",
                    tar.display()
                );
                deep += 1;
                for s in &stores {
                    s.remove(&layer);
                }
                continue;
            };
            let vfs = filter_lines(vfs, |cols| !(cols[1] == "c" && cols[10] == "0:0"));
            let only = |a: &str, b: &str| -> Vec<String> {
                let other: BTreeSet<&str> = b.lines().collect();
                a.lines()
                    .filter(|l| !other.contains(l))
                    .map(str::to_owned)
                    .collect()
            };
            assert!(
                *overlay == vfs,
                "{}: overlay and vfs differ\nonly overlay: {:#?}\nonly vfs: {:#?}",
                tar.display(),
                only(overlay, &vfs),
                only(&vfs, overlay)
            );
            compared += 1;
        }
        for s in &stores {
            s.remove(&layer);
        }
    }
    // Over the PARTS parts: at least 40 compared and at most 3 too deep to list (the
    // two long-name tars, adjacent, fall in different parts).
    assert!(
        compared * PARTS >= 40 && deep <= 1,
        "part {}/{PARTS}: only {compared} layers were compared ({deep} too deep to list)",
        part + 1
    );
    for s in &stores {
        s.fsck_clean();
    }
}

#[test]
fn cleanup_removes_debris_and_orphans() {
    let store = TestStore::new("overlay");
    load_tag(&store, "base");
    // Debris a crash could leave: a staging dir without its lock, a -removing dir, an orphan.
    fs::create_dir_all(store.root.join("staging/deadbeef/x")).unwrap();
    fs::create_dir_all(store.root.join("layers/ghost/diff")).unwrap();
    fs::write(store.root.join("recipes/ghost"), "x").unwrap();
    let actions = store.store.cleanup().unwrap().actions;
    assert!(actions.iter().any(|a| a.contains("staging")), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.contains("layers/ghost")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a.contains("recipes/ghost")),
        "{actions:?}"
    );
    assert!(!store.root.join("staging/deadbeef").exists());
    assert!(!store.root.join("layers/ghost").exists());
    store.fsck_clean();
    assert_eq!(store.store.cleanup().unwrap().actions.len(), 0);
}

#[test]
fn fsck_finds_and_repair_removes_a_damaged_layer_and_its_children() {
    let store = TestStore::new("vfs");
    load_tag(&store, "corpus");
    store.create_rw("ctr", Some("corpus5"));
    // Damage layer 3: rewrite one of its files.
    let victim = store
        .content("corpus3")
        .join("opt/corpus/small/d0000/f00001.txt");
    let len = fs::metadata(&victim).unwrap().len() as usize;
    fs::write(&victim, "X".repeat(len)).unwrap();
    let report = store.store.fsck(false).unwrap();
    assert!(!report.clean());
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].layer, Some(id("corpus3")));
    assert!(report.problems[0].what.contains("f00001.txt"), "{report:?}");
    let report = store.store.fsck(true).unwrap();
    assert_eq!(
        report.repairs.len(),
        5,
        "corpus3, corpus4, corpus5, ctr and its init layer go: {report:?}"
    );
    assert_eq!(
        store.listing(),
        vec![
            ("corpus1".into(), "applied".into()),
            ("corpus2".into(), "applied".into())
        ]
    );
    store.fsck_clean();
}
