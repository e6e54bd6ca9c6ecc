//! Where the test data is: the workspace, the shared folder, the built corpus and its
//! OCI layout, and temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace root (two levels above this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in <workspace>/crates/strata-testkit")
        .to_path_buf()
}

/// The shared folder (specs and test data): `STRATA_SHARED`, else `shared/` beside the
/// repository.
pub fn shared() -> PathBuf {
    match std::env::var_os("STRATA_SHARED") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace()
            .parent()
            .map(|p| p.join("shared"))
            .expect("the workspace has a parent directory"),
    }
}

/// The corpus directory; panics with instructions when it is absent or incomplete.
pub fn corpus() -> &'static Path {
    static CORPUS: OnceLock<PathBuf> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let (dir, from) = match std::env::var_os("STRATA_CORPUS") {
            Some(v) if !v.is_empty() => (PathBuf::from(v), "STRATA_CORPUS"),
            _ => (
                workspace().join("target/corpus"),
                "the default <workspace>/target/corpus",
            ),
        };
        let needed = [
            "oci/index.json",
            "layers.tsv",
            "expected/base.rootfs.tsv",
            "expected/corpus.rootfs.tsv",
            "edge/expect-synthetic.tsv",
            "edge/expect-tree.tsv",
            "edge/tree.expected.tsv",
            "evil/expect.tsv",
        ];
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|p| !dir.join(p).exists())
            .collect();
        if !missing.is_empty() {
            panic!(
                "the test corpus is missing or incomplete at {} (from {from}; missing: {}).\n\
                 Build it with `CORPUS_SIZE=small ../shared/testdata/make-corpus.sh target/corpus` \
                 from the workspace root, or point STRATA_CORPUS at a built corpus.",
                dir.display(),
                missing.join(", ")
            );
        }
        dir
    })
}

/// A layer of the corpus's edge cases (`edge/NAME`).
pub fn edge(name: &str) -> PathBuf {
    corpus().join("edge").join(name)
}

/// A hostile layer of the corpus (`evil/NAME`).
pub fn evil(name: &str) -> PathBuf {
    corpus().join("evil").join(name)
}

/// The `.tar` files of a corpus folder (`edge`, `evil`), sorted by path.
pub fn corpus_tars(folder: &str) -> Vec<PathBuf> {
    let dir = corpus().join(folder);
    let mut tars: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    tars
}

/// A fresh temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A string field of a JSON object, or a panic naming it.
pub fn jstr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("JSON has no string `{key}`: {v}"))
}

/// A number field of a JSON object, or a panic naming it.
pub fn ju64(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("JSON has no number `{key}`: {v}"))
}

/// One row of `layers.tsv`.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub index: usize,
    pub blob_digest: String,
    pub blob_bytes: u64,
    pub diff_id: String,
    pub docker_archive_member: String,
    pub created_by: String,
}

/// `layers.tsv`: the corpus tag's layers, in order.
pub fn layers_tsv() -> Vec<LayerRow> {
    let text = fs::read_to_string(corpus().join("layers.tsv")).expect("read layers.tsv");
    let mut lines = text.lines();
    let header = lines.next().expect("layers.tsv has a header");
    assert_eq!(
        header, "index\tblob_digest\tblob_bytes\tdiff_id\tdocker_archive_member\tcreated_by",
        "layers.tsv header changed"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(6, '\t').collect();
            assert_eq!(c.len(), 6, "bad layers.tsv row: {l}");
            LayerRow {
                index: c[0].parse().expect("index"),
                blob_digest: c[1].to_owned(),
                blob_bytes: c[2].parse().expect("blob_bytes"),
                diff_id: c[3].to_owned(),
                docker_archive_member: c[4].to_owned(),
                created_by: c[5].to_owned(),
            }
        })
        .collect()
}

/// One layer of an OCI manifest.
#[derive(Debug, Clone)]
pub struct OciLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The layers of `tag` in the OCI layout at `layout`, bottom first.
pub fn oci_layers_in(layout: &Path, tag: &str) -> Vec<OciLayer> {
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"]
        .as_array()
        .expect("index.json has manifests");
    let desc = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.join("index.json").display()));
    let manifest = read_json(&blob_path(layout, jstr(desc, "digest")));
    manifest["layers"]
        .as_array()
        .expect("manifest has layers")
        .iter()
        .map(|l| {
            let digest = jstr(l, "digest").to_owned();
            OciLayer {
                path: blob_path(layout, &digest),
                size: ju64(l, "size"),
                media_type: jstr(l, "mediaType").to_owned(),
                digest,
            }
        })
        .collect()
}

/// The layers of `tag` in the corpus's `oci/` layout, bottom first.
pub fn oci_layers(tag: &str) -> Vec<OciLayer> {
    oci_layers_in(&corpus().join("oci"), tag)
}
