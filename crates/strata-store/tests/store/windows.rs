//! Windows layers as a layer kind of the store: applied and given back bit-exact, their
//! changes, a canonical tar rebuilt from the folder, and what they cannot do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_store::{ApplyOptions, Os};
use strata_testkit::*;
use strata_wclayer::folder::LayerChain;
use strata_wclayer::windowsify::{windowsify, SecurityChoice};
use strata_wclayer::{export_layer, import_layer};

use super::*;

/// A GNU tar of the tree `files` (path, content; an empty content and a name starting
/// `.wh.` make a whiteout).
fn gnu_tar(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = dir.join(format!("{name}.src"));
    for (path, body) in files {
        let p = src.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }
    let tar = dir.join(format!("{name}.tar"));
    let mut cmd = Command::new("tar");
    cmd.arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .args(["--sort=name", "--mtime=@1577836800", "."]);
    run_with_timeout(cmd, TIMEOUT).assert_success();
    tar
}

/// What `strata wclayer from-rootfs` writes: the Linux tar as a Windows layer.
fn from_rootfs(linux: &Path, out: &Path) -> PathBuf {
    let sd = SecurityChoice::parse("buildkit").unwrap();
    let mut tar = Vec::new();
    windowsify(fs::File::open(linux).unwrap(), &mut tar, &sd).unwrap();
    fs::write(out, tar).unwrap();
    out.to_owned()
}

fn windows() -> ApplyOptions {
    ApplyOptions {
        os: Os::Windows,
        ..Default::default()
    }
}

fn blob_count(store: &TestStore) -> usize {
    fs::read_dir(store.root.join("blobs/sha256"))
        .unwrap()
        .count()
}

fn windows_layers(driver: &'static str) {
    let store = TestStore::new(driver);
    let st = &store.store;
    let tmp = tempdir();
    let t = tmp.path();
    let linux1 = gnu_tar(t, "l1", &[("app/a", "a\n"), ("app/b", "bee\n")]);
    let linux2 = gnu_tar(t, "l2", &[("app/.wh.a", ""), ("app/c", "sea\n")]);
    let w1 = from_rootfs(&linux1, &t.join("w1.tar"));
    let w2 = from_rootfs(&linux2, &t.join("w2.tar"));
    for (name, parent, tar) in [("w1", None, &w1), ("w2", Some("w1"), &w2)] {
        store.create(name, parent);
        let applied = store.apply_file(name, tar, &windows()).unwrap();
        assert_eq!(
            applied.diff.diff_id.to_string(),
            sha256_file(tar),
            "{driver} {name}: diffID of the tar"
        );
        // from-rootfs output is not in the form Windows exports: kept, and given back.
        assert_eq!(
            store.diff_digest(name),
            sha256_file(tar),
            "{driver} {name}: diff gives the original tar"
        );
        assert_eq!(st.layer(&id(name)).unwrap().os, Os::Windows);
    }
    assert_eq!(
        store.changes("w2"),
        [
            "A /Files",
            "A /Files/app",
            "D /Files/app/a",
            "A /Files/app/c",
            "A /Hives"
        ]
    );
    // A tar in Windows' own form (exported from a folder) is reproduced from the folder.
    let folder = t.join("folder");
    import_layer(fs::File::open(&w1).unwrap(), &LayerChain::new(&folder, &[])).unwrap();
    let canon = t.join("canon.tar");
    let mut exported = Vec::new();
    export_layer(&LayerChain::new(&folder, &[]), &mut exported).unwrap();
    fs::write(&canon, exported).unwrap();
    let blobs_before = blob_count(&store);
    store.create("c1", None);
    store.apply_file("c1", &canon, &windows()).unwrap();
    assert_eq!(
        blob_count(&store),
        blobs_before,
        "{driver}: a canonical tar needs no kept copy"
    );
    assert_eq!(
        store.diff_digest("c1"),
        sha256_file(&canon),
        "{driver}: exported from the folder"
    );
    // What a Windows layer cannot do, said clearly.
    refused(
        st.mount(&id("w2")),
        "is a Windows layer, which Linux cannot mount",
    );
    refused(
        st.create(
            &id("c"),
            Some(&id("w2")),
            &strata_store::CreateOptions {
                writable: true,
                ..Default::default()
            },
        ),
        "cannot be a read-write layer on `w2`",
    );
    store.create("lx", Some("w2"));
    refused(
        store.apply_file("lx", &linux1, &Default::default()),
        "a chain is all Linux or all Windows",
    );
    store.fsck_clean();
    for name in ["lx", "w2", "w1", "c1"] {
        store.remove(name);
    }
    assert_eq!(blob_count(&store), 0, "kept copies go with their layers");
    store.fsck_clean();
}

#[test]
fn windows_layers_in_the_store_on_overlay() {
    windows_layers("overlay");
}

#[test]
fn windows_layers_in_the_store_on_vfs() {
    windows_layers("vfs");
}
