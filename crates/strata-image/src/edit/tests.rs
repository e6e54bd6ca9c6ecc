use std::path::Path;

use super::*;
use crate::{copy, CopyOptions, OpenOptions, Transport};

fn layout(dir: &Path) -> Transport {
    crate::testing::write_tiny_layout(&dir.join("layout")).unwrap();
    format!("oci:{}/layout:tiny", dir.display())
        .parse()
        .unwrap()
}

fn options(dir: &Path) -> EditOptions {
    let mut o = EditOptions::new(dir.to_path_buf());
    o.created = GoTime::utc(1_700_000_000, 0);
    o.clamp_mtime = Some(1_700_000_000);
    o
}

/// Edits `from` into `oci:DIR/layout:TAG`; the copy report.
fn run(from: &Transport, tag: &str, o: &EditOptions) -> Result<crate::CopyReport, Error> {
    let open = OpenOptions::default();
    let Transport::Oci { path, .. } = from else {
        unreachable!()
    };
    let to: Transport = format!("oci:{}:{tag}", path.display()).parse()?;
    let mut edited = EditedSource::new(from.open_source(&open)?, &from.selector(), o)?;
    let mut dest = to.open_destination(&open)?;
    copy(
        &mut edited,
        dest.as_mut(),
        &CopyOptions::new(ImageSelector::Only),
    )
}

fn tree(dir: &Path, stamp: i64) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/motd"), b"hello\n").unwrap();
    std::fs::write(dir.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    for p in ["etc/motd", "run.sh", "etc", ""] {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(stamp as u64);
        let f = std::fs::File::open(dir.join(p)).unwrap();
        f.set_modified(t).unwrap();
    }
}

#[test]
fn append_is_reproducible_and_reuses_the_base_layer() {
    let dir = tempfile::tempdir().unwrap();
    let from = layout(dir.path());
    // The same content, touched at different times after the epoch it is clamped to.
    let (a, b) = (dir.path().join("a/tree"), dir.path().join("b/tree"));
    tree(&a, 1_800_000_000);
    tree(&b, 1_900_000_000);
    let mut o = options(dir.path());
    o.layers = vec![a];
    let first = run(&from, "one", &o).unwrap();
    o.layers = vec![b];
    let second = run(&from, "two", &o).unwrap();
    let (i1, i2) = (&first.images[0], &second.images[0]);
    assert_eq!(i1.id, i2.id, "same inputs, same config");
    assert_eq!(i1.layers.len(), 2);
    assert!(
        i1.layers[0].reused && i2.layers[0].reused,
        "base layer not rewritten"
    );
    assert_eq!(i1.layers[1].stored, i2.layers[1].stored);
    assert_eq!(i1.layers[1].stored.media_type, media_type::OCI_LAYER_GZIP);
    // The layout's two tags name the same manifest.
    let index = std::fs::read_to_string(dir.path().join("layout/index.json")).unwrap();
    let idx: crate::manifest::Index = serde_json::from_str(&index).unwrap();
    let tagged = |t: &str| {
        idx.manifests
            .iter()
            .find(|d| {
                d.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(String::as_str)
                    == Some(t)
            })
            .unwrap()
            .digest
    };
    assert_eq!(tagged("one"), tagged("two"));
    assert_ne!(tagged("one"), tagged("tiny"));
    // The config records the layer where docker would, created as asked.
    let (image, _) = format!("oci:{}/layout:one", dir.path().display())
        .parse::<Transport>()
        .unwrap()
        .open_image(&OpenOptions::default())
        .unwrap();
    assert_eq!(image.config.diff_ids().len(), 2);
    let h = image.config.history().last().unwrap().clone();
    assert_eq!(h.created_by, "strata append tree");
    assert!(!h.empty_layer);
    assert_eq!(
        image.config.created().unwrap().to_string(),
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn a_tar_in_the_asked_compression_is_taken_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let from = layout(dir.path());
    let src = dir.path().join("src");
    tree(&src, 1_000);
    let tgz = dir.path().join("layer.tar.gz");
    let packed = strata_layer::pack::pack(
        &src,
        std::fs::File::create(&tgz).unwrap(),
        Compression::Gzip,
    )
    .unwrap();
    let mut o = options(dir.path());
    o.layers = vec![tgz.clone()];
    let report = run(&from, "gz", &o).unwrap();
    let stored = &report.images[0].layers[1].stored;
    assert_eq!(stored.digest, packed.blob_digest);
    assert_eq!(stored.size, std::fs::metadata(&tgz).unwrap().len());
    // Asked for zstd, the same tar is recompressed: same diffID, other blob.
    o.compression = Compression::Zstd;
    let report = run(&from, "zst", &o).unwrap();
    let l = &report.images[0].layers[1];
    assert_eq!(l.source.diff_id.0, packed.diff_id);
    assert_eq!(l.stored.media_type, media_type::OCI_LAYER_ZSTD);
    assert_ne!(l.stored.digest, packed.blob_digest);
}

#[test]
fn bad_input_leaves_the_destination_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let from = layout(dir.path());
    let index = dir.path().join("layout/index.json");
    let before = std::fs::read(&index).unwrap();
    let blobs = || {
        std::fs::read_dir(dir.path().join("layout/blobs/sha256"))
            .unwrap()
            .count()
    };
    let count = blobs();
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 2000]).unwrap();
    let mut o = options(dir.path());
    o.layers = vec![junk];
    let e = run(&from, "bad", &o).unwrap_err().to_string();
    assert!(e.contains("junk.tar: it is not a valid tar"), "{e}");
    let mut o = options(dir.path());
    o.changes.workdir = Some("relative".into());
    let e = run(&from, "bad", &o).unwrap_err().to_string();
    assert!(e.contains("--workdir `relative`"), "{e}");
    o.changes.workdir = None;
    o.layers = vec![dir.path().join("missing")];
    let e = run(&from, "bad", &o).unwrap_err().to_string();
    assert!(
        e.contains("cannot read layer") && e.contains("missing"),
        "{e}"
    );
    assert_eq!(std::fs::read(&index).unwrap(), before);
    assert_eq!(blobs(), count);
}

#[test]
fn annotations_make_an_oci_manifest_that_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let from = layout(dir.path());
    let mut o = options(dir.path());
    o.annotations = vec![("org.example.a".into(), "1".into())];
    o.changes.env = vec![("X".into(), "y".into())];
    run(&from, "ann", &o).unwrap();
    let (image, _) = format!("oci:{}/layout:ann", dir.path().display())
        .parse::<Transport>()
        .unwrap()
        .open_image(&OpenOptions::default())
        .unwrap();
    let m = image.manifest.unwrap();
    let m = Manifest::parse(&m.bytes, &m.media_type, "m").unwrap();
    assert_eq!(
        m.annotations.get("org.example.a").map(String::as_str),
        Some("1")
    );
    let raw: serde_json::Value = serde_json::from_slice(image.config.raw()).unwrap();
    assert_eq!(raw["config"]["Env"], serde_json::json!(["X=y"]));
}

#[test]
fn on_a_windows_image_added_content_becomes_a_windows_layer_and_flatten_is_refused() {
    use crate::manifest::{annotation, Index};
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("win");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8], mt: &str| {
        let d = crate::ids::sha256(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        Descriptor::new(mt, d, bytes.len() as u64)
    };
    // A foreign base layer (its blob at its URL only, not in the layout) and one of its own.
    let mut foreign = Descriptor::new(
        strata_layer::media_type::OCI_FOREIGN_GZIP,
        crate::ids::sha256(b"elsewhere"),
        5000,
    );
    foreign.urls = vec!["https://mcr.microsoft.com/v2/x/blobs/sha256:elsewhere".into()];
    let layer = put(&[0u8; 1024], media_type::OCI_LAYER);
    let config = format!(
        r#"{{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        crate::ids::sha256(b"its tar"),
        layer.digest
    );
    let config = put(config.as_bytes(), media_type::OCI_CONFIG);
    let manifest = gojson::marshal(&Manifest::oci(config, vec![foreign.clone(), layer])).unwrap();
    let mut desc = put(&manifest, media_type::OCI_MANIFEST);
    desc.annotations
        .insert(annotation::REF_NAME.into(), "w".into());
    std::fs::write(
        layout.join("index.json"),
        gojson::marshal(&Index::oci(vec![desc])).unwrap(),
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), crate::oci::LAYOUT_FILE).unwrap();
    let from: Transport = format!("oci:{}:w", layout.display()).parse().unwrap();
    let mut o = options(dir.path());
    let tree_dir = dir.path().join("t");
    tree(&tree_dir, 1);
    o.layers = vec![tree_dir];
    let open = OpenOptions::default();
    let edited = EditedSource::new(from.open_source(&open).unwrap(), &from.selector(), &o).unwrap();
    let added = &edited.added()[0];
    let blob = std::fs::File::open(&added.path).unwrap();
    let mut tar =
        strata_layer::tar::TarReader::new(strata_layer::compress::Decompressor::new(blob).unwrap());
    let mut names = Vec::new();
    while let Some(e) = strata_layer::LayerReader::next_entry(&mut tar).unwrap() {
        let attr = e.pax.iter().find(|r| r.key == "MSWINDOWS.fileattr");
        let sd = e.pax.iter().any(|r| r.key == "MSWINDOWS.rawsd");
        let name = e.path.to_string();
        names.push(format!(
            "{name} {} sd={sd}",
            String::from_utf8_lossy(&attr.unwrap().value)
        ));
    }
    assert_eq!(
        names,
        [
            "Files 16 sd=false",
            "Hives 16 sd=false",
            "Files/etc 16 sd=true",
            "Files/etc/motd 32 sd=true",
            "Files/run.sh 32 sd=true",
        ]
    );
    assert_eq!(edited.image().layers.len(), 3);
    assert_eq!(edited.image().config.os(), "windows");
    // A Linux tar of the same tree becomes the same Windows layer.
    let linux = dir.path().join("linux.tar");
    strata_layer::pack::pack_entries(
        strata_layer::dir_reader::DirReader::open(&dir.path().join("t")).unwrap(),
        std::fs::File::create(&linux).unwrap(),
        strata_layer::compress::Compression::None,
    )
    .unwrap();
    let mut from_tar = options(dir.path());
    from_tar.layers = vec![linux];
    let made = EditedSource::new(
        from.open_source(&open).unwrap(),
        &from.selector(),
        &from_tar,
    )
    .unwrap();
    assert_eq!(made.added()[0].diff_id, added.diff_id);
    // A tar that is a Windows layer already is taken as it is, not wrapped again.
    let given = dir.path().join("windows-layer.tar.gz");
    std::fs::copy(&added.path, &given).unwrap();
    let mut again = options(dir.path());
    again.layers = vec![given.clone()];
    let taken =
        EditedSource::new(from.open_source(&open).unwrap(), &from.selector(), &again).unwrap();
    assert_eq!(taken.added()[0].path, given);
    assert_eq!(
        (taken.added()[0].digest, taken.added()[0].diff_id),
        (added.digest, added.diff_id)
    );
    // Into the layout: the foreign layer stays a reference, its blob never asked for.
    let report = run(&from, "x", &o).unwrap();
    let reused: Vec<bool> = report.images[0].layers.iter().map(|l| l.reused).collect();
    assert_eq!(reused, [true, true, false]);
    let x: Transport = format!("oci:{}:x", layout.display()).parse().unwrap();
    let mut source = x.open_source(&open).unwrap();
    let listed = source.list().unwrap();
    let image = source.open_image(&listed[0]).unwrap();
    let raw = image.manifest.unwrap();
    let written = Manifest::parse(&raw.bytes, &raw.media_type, "x").unwrap();
    assert_eq!(written.layers[0], foreign);
    assert!(!blobs.join(foreign.digest.hex()).exists());
    assert_eq!(image.config.os(), "windows");
    let mut o = options(dir.path());
    o.flatten = true;
    let e = run(&from, "x", &o).unwrap_err().to_string();
    assert!(e.contains("flattening a Windows image is refused"), "{e}");
    // A config change alone is fine.
    let mut o = options(dir.path());
    o.changes.user = Some("ContainerUser".into());
    let report = run(&from, "x", &o).unwrap();
    assert!(report.images[0].layers[0].reused);
}
