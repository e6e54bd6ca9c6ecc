//! `unpack --recipe` then `repack` rebuilds every layer byte for byte: the corpus
//! image's layers (each unpacked into its own empty directory, since a later layer's
//! whiteouts may delete what an earlier layer's recipe reads) and every edge-case tar.
//! Also: a changed file makes `repack` fail naming it, and `digest` agrees with
//! `layers.tsv`.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;

/// `strata layer repack DIR --recipe RECIPE -o OUT`, whatever the outcome.
fn repack(dir: &Path, recipe: &Path, out: &Path) -> Run {
    strata([
        "layer".as_ref(),
        "repack".as_ref(),
        dir.as_os_str(),
        "--recipe".as_ref(),
        recipe.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
}

/// Unpacks `layer` into `dir` with a recipe, repacks, and checks every digest agrees:
/// sha256(repack output) == sha256(uncompressed layer) == diffID printed by unpack.
/// Returns the diffID.
fn roundtrip_into(layer: &Path, dir: &Path, work: &Path) -> String {
    let recipe = work.join("layer.recipe");
    let rebuilt = work.join("rebuilt.tar");
    let (want, want_bytes) = uncompressed_sha256(layer);
    let (blob, blob_bytes) = sha256_reader(fs::File::open(layer).unwrap());

    let rec = recipe.to_str().unwrap();
    let report = unpack(layer, dir, &["--recipe", rec]);
    let printed = |key| format!("{}: {key} printed by unpack", layer.display());
    for (key, digest) in [("diff_id", &want), ("blob_digest", &blob)] {
        assert_eq!(jstr(&report, key), digest, "{}", printed(key));
    }
    for (key, bytes) in [("tar_bytes", want_bytes), ("blob_bytes", blob_bytes)] {
        assert_eq!(ju64(&report, key), bytes, "{}", printed(key));
    }
    assert!(
        recipe.is_file(),
        "{}: unpack --recipe wrote no recipe",
        layer.display()
    );

    let run = repack(dir, &recipe, &rebuilt);
    run.assert_success();
    let (got, got_bytes) = sha256_reader(fs::File::open(&rebuilt).unwrap());
    if got != want {
        // Say where the bytes first differ, to make the failure actionable.
        let orig = work.join("original.tar");
        decompress_to(layer, &orig);
        let a = fs::read(&orig).unwrap();
        let b = fs::read(&rebuilt).unwrap();
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{}: repack is not byte-identical: sha256 {got} ({got_bytes} bytes), original {want} \
             ({want_bytes} bytes); first difference at byte {first} (block {}, offset {} in it)",
            layer.display(),
            first / 512,
            first % 512
        );
    }
    assert_eq!(got_bytes, want_bytes);
    want
}

/// Round trip of one layer into a fresh empty directory.
fn roundtrip(layer: &Path) -> String {
    let work = tempdir();
    let dir = work.path().join("root");
    roundtrip_into(layer, &dir, work.path())
}

// ---------------------------------------------------------------------------------
// The corpus image
// ---------------------------------------------------------------------------------

/// The corpus tag's layer N (1-based), checked against layers.tsv.
fn corpus_layer_roundtrip(n: usize) {
    let layers = oci_layers("corpus");
    let rows = layers_tsv();
    assert_eq!(
        layers.len(),
        rows.len(),
        "oci:corpus and layers.tsv disagree on the layer count"
    );
    let layer = &layers[n - 1];
    let row = &rows[n - 1];
    assert_eq!(row.index, n);
    assert_eq!(
        layer.digest, row.blob_digest,
        "layers.tsv row {n} is not the manifest's layer {n}"
    );
    assert_eq!(
        layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip",
        "corpus layers are gzip"
    );
    let diff_id = roundtrip(&layer.path);
    assert_eq!(
        diff_id, row.diff_id,
        "layer {n}: diffID differs from layers.tsv"
    );
}

#[test]
fn corpus_layer_1_base_rootfs_repacks_byte_identical() {
    corpus_layer_roundtrip(1);
}

#[test]
fn corpus_layer_2_whiteouts_repacks_byte_identical() {
    corpus_layer_roundtrip(2);
}

#[test]
fn corpus_layer_3_content_repacks_byte_identical() {
    corpus_layer_roundtrip(3);
}

#[test]
fn corpus_layer_4_large_file_repacks_byte_identical() {
    corpus_layer_roundtrip(4);
}

#[test]
fn corpus_layer_5_gnu_tar_opaque_repacks_byte_identical() {
    corpus_layer_roundtrip(5);
}

#[test]
fn base_tag_layers_repack_byte_identical() {
    let base = oci_layers("base");
    assert_eq!(base.len(), 1, "oci:base has one layer");
    let rows = layers_tsv();
    assert_eq!(
        base[0].digest, rows[0].blob_digest,
        "base's layer is the corpus's layer 1"
    );
    for layer in &base {
        assert_eq!(roundtrip(&layer.path), rows[0].diff_id);
    }
}

#[test]
fn top_layer_repacks_from_the_merged_rootfs() {
    // Layers applied in order into one directory, each with its own recipe: the top
    // layer (nothing above it deletes anything) rebuilds from the merged tree.
    let work = tempdir();
    let dir = work.path().join("root");
    let layers = oci_layers("corpus");
    let (last, lower) = layers.split_last().unwrap();
    for layer in lower {
        unpack(&layer.path, &dir, &[]);
    }
    let diff_id = roundtrip_into(&last.path, &dir, work.path());
    assert_eq!(diff_id, layers_tsv().last().unwrap().diff_id);
}

// ---------------------------------------------------------------------------------
// Edge-case tars
// ---------------------------------------------------------------------------------

macro_rules! edge_roundtrip {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                edge_roundtrip($file);
            }
        )*
        const EDGE_TARS: &[&str] = &[$($file),*];
    };
}

fn edge_roundtrip(file: &str) {
    let path = edge(file);
    let work = tempdir();
    let dir = work.path().join("root");
    if file == "hardlink-to-lower-layer.tar" {
        // Its link names a file of a lower layer: give it the base image underneath.
        apply_tag("base", &dir);
    }
    let diff_id = roundtrip_into(&path, &dir, work.path());
    assert_eq!(
        diff_id,
        sha256_file(&path),
        "{file}: an uncompressed layer's diffID is its sha256"
    );
}

edge_roundtrip! {
    edge_whiteout_files_repacks => "whiteout-files.tar",
    edge_whiteout_opaque_dir_repacks => "whiteout-opaque-dir.tar",
    edge_whiteout_opaque_before_dir_repacks => "whiteout-opaque-before-dir.tar",
    edge_whiteout_opaque_after_siblings_repacks => "whiteout-opaque-after-siblings.tar",
    edge_whiteout_and_entry_same_layer_repacks => "whiteout-and-entry-same-layer.tar",
    edge_whiteout_dir_then_recreate_repacks => "whiteout-dir-then-recreate.tar",
    edge_whiteout_with_dot_slash_repacks => "whiteout-with-dot-slash.tar",
    edge_hardlinks_repacks => "hardlinks.tar",
    edge_hardlink_to_lower_layer_repacks => "hardlink-to-lower-layer.tar",
    edge_symlinks_repacks => "symlinks.tar",
    edge_symlink_replaced_by_file_repacks => "symlink-replaced-by-file.tar",
    edge_longnames_pax_repacks => "longnames-pax.tar",
    edge_longnames_gnu_repacks => "longnames-gnu.tar",
    edge_longnames_ustar_prefix_repacks => "longnames-ustar-prefix.tar",
    edge_unicode_names_repacks => "unicode-names.tar",
    edge_unicode_names_gnu_repacks => "unicode-names-gnu.tar",
    edge_non_normalized_paths_repacks => "non-normalized-paths.tar",
    edge_pax_headers_repacks => "pax-headers.tar",
    edge_mtimes_repacks => "mtimes.tar",
    edge_mtimes_gnu_base256_repacks => "mtimes-gnu-base256.tar",
    edge_modes_and_owners_repacks => "modes-and-owners.tar",
    edge_devices_and_fifo_repacks => "devices-and-fifo.tar",
    edge_xattrs_pax_repacks => "xattrs-pax.tar",
    edge_empty_dirs_and_implicit_parents_repacks => "empty-dirs-and-implicit-parents.tar",
    edge_duplicate_entries_repacks => "duplicate-entries.tar",
    edge_unterminated_umoci_insert_repacks => "unterminated-umoci-insert.tar",
    edge_no_end_of_archive_repacks => "no-end-of-archive.tar",
    edge_one_zero_block_repacks => "one-zero-block.tar",
    edge_trailing_data_after_end_repacks => "trailing-data-after-end.tar",
    edge_formats_v7_repacks => "formats-v7.tar",
    edge_tree_gnutar_pax_repacks => "tree-gnutar-pax.tar",
    edge_tree_gnutar_gnu_repacks => "tree-gnutar-gnu.tar",
    edge_tree_bsdtar_pax_repacks => "tree-bsdtar-pax.tar",
    edge_sparse_pax_0_0_repacks => "sparse-pax-0.0.tar",
    edge_sparse_pax_0_1_repacks => "sparse-pax-0.1.tar",
    edge_sparse_pax_1_0_repacks => "sparse-pax-1.0.tar",
    edge_sparse_gnu_oldgnu_repacks => "sparse-gnu-oldgnu.tar",
    edge_peer_umoci_insert_opaque_repacks => "peer-umoci-insert-opaque.tar",
}

#[test]
fn every_edge_tar_has_a_roundtrip_test() {
    let on_disk: BTreeSet<String> = fs::read_dir(corpus().join("edge"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    let tested: BTreeSet<String> = EDGE_TARS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        on_disk, tested,
        "edge/*.tar and the round-trip tests disagree"
    );
}

// ---------------------------------------------------------------------------------
// Repack refuses a changed tree
// ---------------------------------------------------------------------------------

#[test]
fn repack_fails_naming_a_file_changed_by_one_byte() {
    let work = tempdir();
    let dir = work.path().join("root");
    let recipe = work.path().join("layer.recipe");
    let out = work.path().join("rebuilt.tar");
    let layer = &oci_layers("corpus")[2]; // layer 3: /opt/corpus
    unpack(&layer.path, &dir, &["--recipe", recipe.to_str().unwrap()]);

    let victim = "opt/corpus/small/d0003/f00301.txt";
    let path = dir.join(victim);
    let mut data = read(&path);
    assert!(data.len() > 10, "{victim} should hold some text");
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    fs::write(&path, &data).unwrap();

    let run = repack(&dir, &recipe, &out);
    run.assert_strata_error();
    assert!(
        run.stderr.contains(victim),
        "the error must name the changed file {victim}:\n{}",
        run.stderr
    );
    assert!(
        !out.exists(),
        "a failed repack must not leave {}",
        out.display()
    );
}

// ---------------------------------------------------------------------------------
// digest
// ---------------------------------------------------------------------------------

#[test]
fn digest_agrees_with_layers_tsv() {
    let layers = oci_layers("corpus");
    let rows = layers_tsv();
    assert_eq!(layers.len(), 5);
    assert_eq!(rows.len(), 5);
    for (layer, row) in layers.iter().zip(&rows) {
        assert_eq!(
            layer.digest, row.blob_digest,
            "manifest and layers.tsv order"
        );
        assert_eq!(
            layer.size, row.blob_bytes,
            "manifest size and layers.tsv blob_bytes"
        );
        let d = strata_json(["layer".as_ref(), "digest".as_ref(), layer.path.as_os_str()]);
        let what = format!("layer {} ({})", row.index, row.created_by);
        assert_eq!(jstr(&d, "diff_id"), row.diff_id, "{what}: diff_id");
        assert_eq!(
            jstr(&d, "blob_digest"),
            row.blob_digest,
            "{what}: blob_digest"
        );
        assert_eq!(ju64(&d, "blob_bytes"), row.blob_bytes, "{what}: blob_bytes");
        assert_eq!(jstr(&d, "compression"), "gzip", "{what}: compression");
        let (_, tar_bytes) = uncompressed_sha256(&layer.path);
        assert_eq!(ju64(&d, "tar_bytes"), tar_bytes, "{what}: tar_bytes");
    }
}
