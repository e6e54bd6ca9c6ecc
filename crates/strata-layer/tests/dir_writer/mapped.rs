//! Layers read through memory maps ([`strata_layer::mapped`]) unpack to the tree, digests
//! and recipe that reading them as a stream gives.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use strata_layer::compress::Compression;
use strata_layer::mapped::MappedFile;
use strata_layer::unpack::{unpack, Input, UnpackOptions, UnpackSummary};
use strata_testkit::entries::{tar, Item as TarItem};
use strata_testkit::tree::{assert_listing_eq, map_columns, tree_listing, without_root_mtime};
use strata_testkit::{decompress_to, oci_layers, sha256_file};

/// Unpacks `layer` into a new directory under `into`, mapped or streamed; returns the
/// summary, the tree's listing and the recipe's bytes.
fn unpack_file(layer: &Path, into: &Path, mapped: bool) -> (UnpackSummary, String, Vec<u8>) {
    let name = if mapped { "mapped" } else { "streamed" };
    let root = into.join(name);
    let recipe = into.join(format!("{name}.recipe"));
    std::fs::create_dir_all(&root).unwrap();
    let file = File::open(layer).unwrap();
    let input = if mapped {
        let Ok(file) = MappedFile::lease(file) else {
            panic!("{} cannot be leased", layer.display());
        };
        Input::Mapped(file)
    } else {
        Input::Stream(file)
    };
    let options = UnpackOptions {
        recipe: Some(recipe.clone()),
        ..UnpackOptions::default()
    };
    let summary = unpack(input, &root, options).unwrap();
    let tree = without_implied_mtimes(&tree_listing(&root, &[]));
    (summary, tree, std::fs::read(recipe).unwrap())
}

/// Directories the layer does not list get the time of the unpack: blanked (and the root's).
fn without_implied_mtimes(listing: &str) -> String {
    let recent = (SystemTime::now() - Duration::from_secs(3600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let listing = map_columns(listing, |cols| {
        if cols[1] == "d" && cols[6].parse::<u128>().is_ok_and(|t| t > recent) {
            cols[6] = "now".into();
        }
    });
    without_root_mtime(&listing)
}

fn assert_same(layer: &Path, into: &Path) -> UnpackSummary {
    let (m, m_tree, m_recipe) = unpack_file(layer, into, true);
    let (s, s_tree, s_recipe) = unpack_file(layer, into, false);
    let what = layer.display();
    assert_eq!(
        (
            m.diff_id,
            m.blob_digest,
            m.tar_bytes,
            m.entries,
            m.data_bytes
        ),
        (
            s.diff_id,
            s.blob_digest,
            s.tar_bytes,
            s.entries,
            s.data_bytes
        ),
        "{what}"
    );
    assert_eq!(m.warnings, s.warnings, "{what}");
    assert_listing_eq(&s_tree, &m_tree, &format!("{what}, mapped"));
    assert_eq!(m_recipe, s_recipe, "{what}: the recipes differ");
    m
}

#[test]
fn every_corpus_layer_mapped_gives_the_tree_digests_and_recipe_of_its_stream() {
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    for (i, layer) in oci_layers("corpus").iter().enumerate() {
        let work = tmp.path().join(format!("L{i}"));
        std::fs::create_dir(&work).unwrap();
        // The gzip blob: mapped input falls back to the stream.
        let gz = assert_same(&layer.path, &work.join("gz"));
        assert_eq!(gz.compression, Compression::Gzip);
        let plain = work.join("layer.tar");
        decompress_to(&layer.path, &plain);
        let m = assert_same(&plain, &work.join("tar"));
        assert_eq!(m.compression, Compression::None);
        assert_eq!(m.diff_id, gz.diff_id);
        assert_eq!(m.diff_id.to_string(), sha256_file(&plain));
    }
}

#[test]
fn a_tar_ending_on_a_chunk_and_a_window_boundary_is_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    for total in [256 << 10, 8 << 20, (8 << 20) + (256 << 10)] {
        // One file, its header and the two zero blocks of the end: `total` bytes.
        let body: Vec<u8> = (0..total - 1536).map(|i| (i % 253) as u8).collect();
        let bytes = tar(&[TarItem::file("big", &body)]);
        assert_eq!(bytes.len(), total, "the tar is not the size aimed at");
        let work = tmp.path().join(total.to_string());
        std::fs::create_dir(&work).unwrap();
        let layer = work.join("layer.tar");
        std::fs::write(&layer, &bytes).unwrap();
        let m = assert_same(&layer, &work);
        assert_eq!(m.tar_bytes, total as u64);
        assert_eq!(std::fs::read(work.join("mapped/big")).unwrap(), body);
    }
}
