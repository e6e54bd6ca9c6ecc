//! The `docker://` transport against Debian's `docker-registry` on loopback, where the
//! library shows more than the command line: every HTTP exchange (through the request
//! hook), a mount hint for pushes, and the copy's progress callbacks.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use strata_image::ids::{sha256, Digest};
use strata_image::manifest::{annotation, media_type, Descriptor, Index, Manifest};
use strata_image::{
    copy, gojson, CopyOptions, LayerInfo, OpenOptions, Progress, RegistryOptions, Transport,
};
use strata_layer::compress::{Compression, Compressor};
use strata_registry::RepositoryName;
use strata_registry_testkit::{Registry, Wire};

/// `len` bytes that gzip to about half: words from a small generator.
fn layer_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("{:x} ", x % 4096).as_bytes());
    }
    out.truncate(len);
    out
}

/// A layout at `dir` with one image per `(tag, layers)`, each layer gzipped; returns the
/// layer blob digests of each tag.
fn write_layout(dir: &Path, images: &[(&str, Vec<Vec<u8>>)]) -> HashMap<String, Vec<Digest>> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8], mt: &str| {
        let d = sha256(bytes);
        fs::write(blobs.join(d.hex()), bytes).unwrap();
        Descriptor::new(mt, d, bytes.len() as u64)
    };
    let mut entries = Vec::new();
    let mut digests = HashMap::new();
    for (tag, layers) in images {
        let mut descs = Vec::new();
        let mut diffs = Vec::new();
        for l in layers {
            let mut c = Compressor::new(Vec::new(), Compression::Gzip).unwrap();
            c.write_all(l).unwrap();
            descs.push(put(&c.finish().unwrap(), media_type::OCI_LAYER_GZIP));
            diffs.push(format!("\"{}\"", sha256(l)));
        }
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diffs.join(",")
        );
        let config = put(config.as_bytes(), media_type::OCI_CONFIG);
        digests.insert(tag.to_string(), descs.iter().map(|d| d.digest).collect());
        let manifest = gojson::marshal(&Manifest::oci(config, descs)).unwrap();
        let mut m = put(&manifest, media_type::OCI_MANIFEST);
        m.annotations
            .insert(annotation::REF_NAME.into(), tag.to_string());
        entries.push(m);
    }
    fs::write(
        dir.join("index.json"),
        gojson::marshal(&Index::oci(entries)).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// Layers started and finished, bytes per layer, and how many were in flight at most.
#[derive(Default)]
struct Recorder {
    state: Mutex<(usize, usize, HashMap<usize, u64>)>,
}

impl Progress for Recorder {
    fn layer_start(&self, _layer: &LayerInfo) {
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        s.1 = s.1.max(s.0);
    }
    fn layer_bytes(&self, layer: &LayerInfo, bytes: u64) {
        *self.state.lock().unwrap().2.entry(layer.index).or_default() += bytes;
    }
    fn layer_done(&self, _layer: &LayerInfo, _reused: bool) {
        self.state.lock().unwrap().0 -= 1;
    }
}

impl Recorder {
    fn most_at_once(&self) -> usize {
        self.state.lock().unwrap().1
    }
    fn bytes(&self) -> HashMap<usize, u64> {
        self.state.lock().unwrap().2.clone()
    }
}

fn run_copy(from: &str, to: &str, options: &OpenOptions, jobs: usize, progress: &Recorder) {
    let (from, to): (Transport, Transport) = (from.parse().unwrap(), to.parse().unwrap());
    let mut src = from.open_source(options).unwrap();
    let mut dst = to.open_destination(options).unwrap();
    let mut o = CopyOptions::new(from.selector()).with_progress(progress);
    o.jobs = jobs;
    copy(src.as_mut(), dst.as_mut(), &o).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
}

fn options_with(wire: &Wire, mount_from: Option<&str>) -> OpenOptions {
    OpenOptions {
        registry: RegistryOptions {
            client: wire.options(),
            mount_from: mount_from.map(|r| RepositoryName::parse(r).unwrap()),
            ..RegistryOptions::default()
        },
        ..OpenOptions::default()
    }
}

/// Body bytes sent to the registry by uploads (`PUT`/`PATCH` on `/blobs/uploads/`).
fn uploaded(wire: &Wire) -> u64 {
    wire.all()
        .iter()
        .filter(|s| s.url.contains("/blobs/uploads/") && s.method != "POST")
        .map(|s| s.sent)
        .sum()
}

#[test]
fn a_mount_hint_has_the_registry_link_a_layer_another_repository_holds() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let shared = layer_bytes(3 << 20, 1);
    let digests = write_layout(
        &layout,
        &[
            ("big", vec![shared.clone(), layer_bytes(2 << 20, 2)]),
            ("small", vec![shared]),
        ],
    );
    let at = |name: &str| format!("docker://127.0.0.1:{}/{name}", reg.port);
    let from = |tag: &str| format!("oci:{}:{tag}", layout.display());
    run_copy(
        &from("big"),
        &at("strata/big:1"),
        &options_with(&Wire::default(), None),
        2,
        &Recorder::default(),
    );

    // With the hint, the shared layer is mounted: only the config's bytes are sent.
    let wire = Wire::default();
    let progress = Recorder::default();
    run_copy(
        &from("small"),
        &at("strata/small:1"),
        &options_with(&wire, Some("strata/big")),
        2,
        &progress,
    );
    let layer = digests["small"][0];
    let mounted = wire.all().into_iter().find(|s| {
        s.method == "POST"
            && s.url.contains(&format!("mount=sha256%3A{}", layer.hex()))
            && s.url.contains("from=strata%2Fbig")
    });
    assert_eq!(mounted.and_then(|s| s.status), Some(201), "{}", wire.dump());
    let config_size = wire
        .all()
        .iter()
        .filter(|s| s.method == "PUT" && s.url.contains("/blobs/uploads/"))
        .map(|s| s.sent)
        .sum::<u64>();
    assert!(config_size > 0 && config_size < 1000, "{}", wire.dump());
    assert!(progress.bytes().is_empty(), "a mounted layer is never read");

    // Without it, the layer's bytes go up again, into the other repository; the copy's
    // progress counts every byte of it.
    let wire = Wire::default();
    let progress = Recorder::default();
    run_copy(
        &from("small"),
        &at("strata/alone:1"),
        &options_with(&wire, None),
        2,
        &progress,
    );
    let size = fs::metadata(layout.join("blobs/sha256").join(layer.hex()))
        .unwrap()
        .len();
    assert!(uploaded(&wire) >= size, "{}", wire.dump());
    assert_eq!(progress.bytes().get(&0), Some(&size));
}

#[test]
fn layers_stream_from_a_registry_on_as_many_threads_as_jobs_allow() {
    let (one, two) = (Registry::start(), Registry::start());
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let layers: Vec<Vec<u8>> = (0..4).map(|i| layer_bytes(4 << 20, 10 + i)).collect();
    write_layout(&layout, &[("four", layers)]);
    let src = format!("docker://127.0.0.1:{}/strata/four:1", one.port);
    let none = Wire::default();
    run_copy(
        &format!("oci:{}:four", layout.display()),
        &src,
        &options_with(&none, None),
        4,
        &Recorder::default(),
    );
    for (jobs, repo) in [(1, "strata/serial:1"), (4, "strata/parallel:1")] {
        let progress = Recorder::default();
        let dest = format!("docker://127.0.0.1:{}/{repo}", two.port);
        run_copy(&src, &dest, &options_with(&none, None), jobs, &progress);
        let most = progress.most_at_once();
        if jobs == 1 {
            assert_eq!(most, 1);
        } else {
            assert!(most >= 2, "--jobs {jobs}: at most {most} layer at once");
        }
        // Every blob, and the manifest, arrived as they are in the layout.
        let back = work.path().join(format!("back-{jobs}"));
        run_copy(
            &dest,
            &format!("oci:{}:x", back.display()),
            &OpenOptions::default(),
            jobs,
            &Recorder::default(),
        );
        for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let copy = back.join("blobs/sha256").join(entry.file_name());
            assert_eq!(fs::read(copy).unwrap(), fs::read(entry.path()).unwrap());
        }
    }
}
