//! Bad input leaves the store as it was: a corrupt layer, unknown IDs, wrong kinds and
//! states, bad storage options, a full disk.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use strata_store::{CreateOptions, StorageOptions};
use strata_testkit::entries::Item;
use strata_testkit::*;

use super::*;

fn bad_input_leaves_the_store_as_it_was(driver: &'static str) {
    let store = TestStore::new(driver);
    let st = &store.store;
    load_tag(&store, "base");
    let before = store.listing();
    let tmp = tempdir();
    // A corrupt layer: the corpus's base layer cut in half.
    let layer = &oci_layers("base")[0].path;
    let bytes = read(layer);
    let cut = tmp.path().join("cut.tar.gz");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    store.create("x", Some("base1"));
    refused(
        store.apply_file("x", &cut, &Default::default()),
        "incomplete deflate stream",
    );
    let x = st.inspect(&id("x")).unwrap();
    assert_eq!(
        x.layer.status.name(),
        "empty",
        "a failed apply leaves the layer empty"
    );
    assert!(
        names(&x.content).is_empty(),
        "{driver}: content left behind: {:?}",
        show_names(&names(&x.content))
    );
    // The layer can still be applied afterwards.
    store
        .apply_file("x", &edge("hardlinks.tar"), &Default::default())
        .unwrap();
    refused(
        store.apply_file("x", &edge("hardlinks.tar"), &Default::default()),
        "already holds its diff",
    );
    store.remove("x");

    refused(
        st.create(&id("y"), Some(&id("nope")), &CreateOptions::default()),
        "its parent `nope` does not exist",
    );
    refused(
        store.apply_file("nope", layer, &Default::default()),
        "no layer `nope`",
    );
    refused(st.mount(&id("nope")), "no layer `nope`");
    refused(st.remove(&id("nope")), "no layer `nope`");
    refused(
        st.create(&id("base1"), None, &CreateOptions::default()),
        "already exists",
    );
    let bad = LayerId::new("../etc").unwrap_err();
    assert!(
        bad.to_string().contains("invalid layer ID `../etc`"),
        "{bad}"
    );
    store.create_rw("rw", Some("base1"));
    refused(
        st.create(&id("z"), Some(&id("rw")), &CreateOptions::default()),
        "only read-only layers can be parents",
    );
    refused(
        store.apply_file("rw", layer, &Default::default()),
        "is a read-write layer",
    );
    store.create("e", None);
    refused(
        st.create(&id("z"), Some(&id("e")), &CreateOptions::default()),
        "has not been applied yet",
    );
    refused(st.mount(&id("e")), "has no content yet");
    let sized = |size: &str| StorageOptions::parse([format!("size={size}").as_str()]);
    refused(
        st.create(
            &id("ro"),
            None,
            &CreateOptions {
                writable: false,
                storage: sized("1G").unwrap(),
            },
        ),
        "applies to read-write layers only",
    );
    refused(
        StorageOptions::parse(["colour=blue"]),
        "storage option `colour`: unknown option",
    );
    refused(sized("12parsecs"), "storage option `size`");
    // No project quotas here (tmpfs, or a kernel without quota support): said so.
    let quota = st.create(
        &id("q"),
        Some(&id("base1")),
        &CreateOptions {
            writable: true,
            storage: sized("20G").unwrap(),
        },
    );
    match quota {
        Ok(_) => store.remove("q"),
        Err(e) => {
            assert!(chain(&e).contains("cannot be enforced on"), "{}", chain(&e));
            assert!(!st.exists(&id("q")).unwrap());
        }
    }
    store.remove("rw");
    store.remove("e");
    assert_eq!(
        store.listing(),
        before,
        "{driver}: the store holds what it held"
    );
    assert!(!st.exists(&id("nope")).unwrap());
    assert!(st.exists(&id("base1")).unwrap());
    store.fsck_clean();
}

#[test]
fn bad_input_leaves_the_store_as_it_was_on_overlay() {
    bad_input_leaves_the_store_as_it_was("overlay");
}

#[test]
fn bad_input_leaves_the_store_as_it_was_on_vfs() {
    bad_input_leaves_the_store_as_it_was("vfs");
}

struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn full_disk(driver: &'static str) {
    let dir = tempdir();
    let root = dir.path().join("store");
    fs::create_dir(&root).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "mount a tmpfs for the store");
    let mount = TmpfsMount(root.clone());
    let store = TestStore::at(dir, root, driver);
    // Unmounted first, then the store and its directory go.
    let _mount = mount;
    let small = [Item::file("f", "ok\n")];
    store.add_items("base", None, &small);
    // Layer 4 of the corpus holds 8 MiB: it cannot fit.
    let big = &oci_layers("corpus")[3].path;
    store.create("big", Some("base"));
    let err = store
        .apply_file("big", big, &Default::default())
        .unwrap_err();
    assert!(err.is_disk_full(), "{driver}: {}", chain(&err));
    assert!(
        chain(&err).contains("No space left on device"),
        "{}",
        chain(&err)
    );
    assert_eq!(
        store.listing(),
        vec![
            ("base".to_string(), "applied".to_string()),
            ("big".to_string(), "empty".to_string())
        ]
    );
    store.fsck_clean();
    store.remove("big");
    // There is room again for small work.
    store.add_items("next", Some("base"), &small);
    assert_eq!(store.diff_digest("base"), store.diff_digest("next"));
}

#[test]
fn a_full_disk_fails_the_apply_cleanly_on_overlay() {
    full_disk("overlay");
}

#[test]
fn a_full_disk_fails_the_apply_cleanly_on_vfs() {
    full_disk("vfs");
}
