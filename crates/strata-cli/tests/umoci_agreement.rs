//! Applying a tag's layers in order with `strata layer unpack` gives the same root
//! filesystem as `umoci unpack` (expected/{tag}.rootfs.tsv): types, modes, owners,
//! sizes, mtimes (directories included), symlink targets, content, hard-link groups,
//! device numbers and xattrs. Only the root directory's own mtime may differ (the root
//! entry's metadata is not applied).

use crate::common;

use std::fs;

use common::*;

fn agree_with_umoci(tag: &str) {
    let work = tempdir();
    let dir = work.path().join("rootfs");
    fs::create_dir(&dir).unwrap();
    for (i, layer) in oci_layers(tag).iter().enumerate() {
        let report = unpack(&layer.path, &dir, &[]);
        let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
        if !warnings.is_empty() {
            eprintln!("{tag} layer {}: warnings: {warnings:?}", i + 1);
        }
    }
    let expected = fs::read_to_string(corpus().join(format!("expected/{tag}.rootfs.tsv"))).unwrap();
    let actual = tree_listing(&dir, &[]);
    assert_listing_eq(
        &without_root_mtime(&expected),
        &without_root_mtime(&actual),
        &format!("oci:{tag} applied by strata vs expected/{tag}.rootfs.tsv (umoci unpack)"),
    );
}

#[test]
fn base_tag_matches_umoci_unpack() {
    agree_with_umoci("base");
}

#[test]
fn corpus_tag_matches_umoci_unpack() {
    agree_with_umoci("corpus");
}
