//! The driver trait used directly, on bare layer directories, and the store's database
//! errors as callers see them.

use std::path::{Path, PathBuf};

use strata_layer::compress::Compression;
use strata_layer::unpack::Input;
use strata_layer::EntryKind;
use strata_store::driver::{Chain, Driver, Vfs, WindowsFolder};
use strata_store::{ApplyOptions, DriverKind, Error, LayerId, Store, StoreOptions};
use strata_testkit::entries::collect;

/// A prepared and applied base layer `base` holding `keep` and `gone`, under `root`.
fn base_layer(root: &Path) -> Chain {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("keep"), "k").unwrap();
    std::fs::write(tree.path().join("gone"), "g").unwrap();
    let mut tar = Vec::new();
    strata_layer::pack::pack(tree.path(), &mut tar, Compression::None).unwrap();
    let dir = root.join("base");
    std::fs::create_dir(&dir).unwrap();
    let chain = Chain {
        id: LayerId::new("base").unwrap(),
        dirs: vec![dir],
        writable: false,
    };
    Vfs.prepare(&chain).unwrap();
    Vfs.apply(
        &chain,
        Input::Stream(&mut &tar[..]),
        &ApplyOptions::default(),
        &root.join("base.recipe"),
    )
    .unwrap();
    chain
}

fn read_write_on(root: &Path, base: &Chain) -> Chain {
    let dir = root.join("ctr");
    std::fs::create_dir(&dir).unwrap();
    let mut dirs: Vec<PathBuf> = vec![dir];
    dirs.extend(base.dirs.iter().cloned());
    let chain = Chain {
        id: LayerId::new("ctr").unwrap(),
        dirs,
        writable: true,
    };
    Vfs.prepare(&chain).unwrap();
    chain
}

#[test]
fn vfs_diff_entries_give_deletions_first_then_what_was_added() {
    let root = tempfile::tempdir().unwrap();
    let base = base_layer(root.path());
    let ctr = read_write_on(root.path(), &base);
    let rootfs = Vfs.view_path(ctr.dir());
    std::fs::remove_file(rootfs.join("gone")).unwrap();
    std::fs::write(rootfs.join("new"), "new!").unwrap();
    let mut entries = Vfs.diff_entries(&ctr).unwrap();
    let seen: Vec<_> = (collect(&mut *entries).unwrap().into_iter())
        .map(|i| (i.name(), i.entry.kind, i.data))
        .collect();
    let new = EntryKind::File {
        size: 4,
        sparse: None,
    };
    assert_eq!(
        seen,
        [
            ("gone".to_string(), EntryKind::Whiteout, Vec::new()),
            ("new".to_string(), new, b"new!".to_vec()),
        ]
    );
}

#[test]
fn a_windows_folder_refuses_to_mount_naming_the_layer() {
    let root = tempfile::tempdir().unwrap();
    let base = base_layer(root.path());
    let windows = WindowsFolder::new(Box::new(Vfs));
    assert_eq!(windows.content(base.dir()), base.dir().join("dir"));
    let err = windows.mount(&base).unwrap_err();
    assert!(matches!(err, Error::Refused { ref id, .. } if id.as_str() == "base"));
    assert_eq!(
        err.to_string(),
        "layer `base` is a Windows layer, which Linux cannot mount: `strata wclayer extract` writes its files into a directory"
    );
}

#[test]
fn a_broken_database_is_a_db_error_that_keeps_sqlites_words() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("strata.db"), vec![b'x'; 4096]).unwrap();
    let err = Store::open(&StoreOptions {
        root: root.path().into(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap_err();
    let Error::Db { context, source } = &err else {
        panic!("not a database error: {err}");
    };
    assert!(!source.is_busy() && !source.is_disk_full());
    assert_eq!(
        err.to_string(),
        format!("store database: {context}: file is not a database")
    );
}
