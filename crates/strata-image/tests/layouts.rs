//! The docker-archive layouts Strata writes, member by member and byte by byte, on the
//! vectors of image-formats §1.5 (diffIDs A = empty tar, B = empty input); and reading
//! what other producers write: containerd-store archives (§3.2) and `Parent` links (§1.6).
//!
//! The image comes from an in-memory [`ImageSource`], which is also the smallest example
//! of implementing one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use strata_image::docker_archive::{ArchiveFormat, DockerArchiveDestination, DockerArchiveSource};
use strata_image::ids::{sha256, ChainId, DiffId, ImageId};
use strata_image::manifest::{media_type, Descriptor, Platform};
use strata_image::oci::OciSource;
use strata_image::oci_dest::{OciDestination, OciOptions};
use strata_image::{
    copy, CopyOptions, Error, ImageConfig, ImageSelector, ImageSource, ImageSummary, LayerInfo,
    LayerStream, Reference, SourceImage,
};
use strata_layer::tar::TarReader;
use strata_layer::{Entry, EntryKind, LayerReader};
use strata_testkit::entries::{tar, EntryExt, Item};

const A: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
const B: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// §1.5's worked vector: the v1 IDs of layers A and A|B below a top layer.
const V1_FIRST: &str = "3bf9dc6ca1042e8f1e9ce7b6a62bbe1ea0c224323b6fbc34e5e5e35905cd4206";
const V1_SECOND: &str = "bb979014d872265b13ccb97a845251d90f04a35f4376d6de3c414d456f688092";
const CREATED: i64 = 1_704_164_645; // 2024-01-02T03:04:05Z
const CONTAINER_CONFIG: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;

/// An image held in memory: uncompressed layers.
struct MemorySource {
    config: ImageConfig,
    layers: Vec<Vec<u8>>,
    names: Vec<Reference>,
}

impl MemorySource {
    /// Layers A, B, A (so A repeats under another v1 ID).
    fn spec_vectors() -> MemorySource {
        let layers = vec![vec![0u8; 1024], Vec::new(), vec![0u8; 1024]];
        let raw = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{A}","{B}","{A}"]}}}}"#
        );
        MemorySource {
            config: ImageConfig::parse(raw.into_bytes(), "test").unwrap(),
            layers,
            names: vec![Reference::parse("busybox").unwrap()],
        }
    }
}

impl ImageSource for MemorySource {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn list(&mut self) -> Result<Vec<ImageSummary>, Error> {
        Ok(vec![ImageSummary {
            index: 0,
            id: self.config.id(),
            names: self.names.clone(),
            ref_names: self.names.iter().map(Reference::to_string).collect(),
        }])
    }

    fn open_image(&mut self, summary: &ImageSummary) -> Result<SourceImage, Error> {
        let chains = self.config.chain_ids();
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerInfo {
                index: i,
                blob: Descriptor::new(media_type::OCI_LAYER, sha256(l), l.len() as u64),
                diff_id: self.config.diff_ids()[i],
                chain_id: chains[i],
                foreign: None,
            })
            .collect();
        Ok(SourceImage {
            summary: summary.clone(),
            config: self.config.clone(),
            manifest: None,
            layers,
            parent: None,
        })
    }

    fn layer(&self, image: &SourceImage, index: usize) -> Result<LayerStream<'_>, Error> {
        Ok(LayerStream::new(
            image.layers[index].clone(),
            image.summary.id,
            &self.layers[index][..],
        ))
    }
}

/// A member as read back: raw header name, type, mode, mtime, uid/gid, uname, data or target.
#[derive(Debug, PartialEq)]
struct Member {
    raw_name: String,
    kind: char,
    mode: u32,
    mtime: i64,
    owner: (u64, u64, String),
    data: Vec<u8>,
}

fn members(archive: &Path) -> Vec<Member> {
    let bytes = fs::read(archive).unwrap();
    let mut r = TarReader::new(&bytes[..]);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        let header = &bytes[r.entry_offset() as usize..];
        let raw_name = String::from_utf8(
            header[..100]
                .iter()
                .take_while(|b| **b != 0)
                .copied()
                .collect(),
        )
        .unwrap();
        let mut data = strata_testkit::entries::data(&mut r).unwrap();
        if let EntryKind::Symlink { target } = &e.kind {
            data = target.clone();
        }
        out.push(Member {
            raw_name,
            kind: e.kind.letter(),
            mode: e.meta.mode,
            mtime: e.meta.mtime.secs,
            owner: (
                e.meta.uid,
                e.meta.gid,
                String::from_utf8_lossy(&e.meta.uname).into_owned(),
            ),
            data,
        });
    }
    out
}

fn write(format: ArchiveFormat, dir: &Path, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut dest = DockerArchiveDestination::create(&out, format, None, dir).unwrap();
    copy(
        &mut MemorySource::spec_vectors(),
        &mut dest,
        &CopyOptions::new(ImageSelector::Only),
    )
    .unwrap();
    out
}

fn text(m: &Member) -> &str {
    std::str::from_utf8(&m.data).unwrap()
}

#[test]
fn an_image_with_two_names_is_one_image_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for format in [ArchiveFormat::Docker, ArchiveFormat::DockerLegacy] {
        let out = dir.path().join(format!("{format:?}.tar"));
        let mut dest = DockerArchiveDestination::create(&out, format, None, dir.path()).unwrap();
        let mut src = MemorySource::spec_vectors();
        src.names
            .push(Reference::parse("myreg:5000/app:v1").unwrap());
        copy(&mut src, &mut dest, &CopyOptions::new(ImageSelector::Only)).unwrap();
        let mut back = DockerArchiveSource::open(&out, dir.path(), &Platform::host()).unwrap();
        let listed = back.list().unwrap();
        assert_eq!(listed.len(), 1, "{format:?}: {listed:?}");
        assert_eq!(listed[0].names, src.names, "{format:?}");
        assert_eq!(listed[0].id, src.config.id());
    }
}

#[test]
fn legacy_layout_matches_docker_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = write(ArchiveFormat::DockerLegacy, dir.path(), "legacy.tar");
    let m = members(&out);
    let config = MemorySource::spec_vectors().config;
    let id = config.id().hex();
    let top = strata_image::v1::layers(&config).unwrap()[2].id.hex();
    let names: Vec<&str> = m.iter().map(|m| m.raw_name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            // Docker's order: a walk of its directory, names sorted.
            format!("{V1_FIRST}/").as_str(),
            &format!("{V1_FIRST}/VERSION"),
            &format!("{V1_FIRST}/json"),
            &format!("{V1_FIRST}/layer.tar"),
            &format!("{id}.json"),
            &format!("{V1_SECOND}/"),
            &format!("{V1_SECOND}/VERSION"),
            &format!("{V1_SECOND}/json"),
            &format!("{V1_SECOND}/layer.tar"),
            &format!("{top}/"),
            &format!("{top}/VERSION"),
            &format!("{top}/json"),
            &format!("{top}/layer.tar"),
            "manifest.json",
            "repositories",
        ]
    );
    // The config, as given; directories, VERSION, json and layer.tar at `created`, owned
    // by root as dockerd writes them.
    assert_eq!(m[4].data, config.raw());
    for member in &m[..13] {
        assert_eq!(member.mtime, CREATED, "{}", member.raw_name);
        assert_eq!(member.owner, (0, 0, "root".into()), "{}", member.raw_name);
        let mode = match member.kind {
            'd' => 0o755,
            'l' => 0o777,
            _ => 0o644,
        };
        assert_eq!(member.mode, mode, "{}", member.raw_name);
    }
    assert_eq!(text(&m[1]), "1.0");
    assert_eq!(
        text(&m[2]),
        format!(
            r#"{{"id":"{V1_FIRST}","created":"1970-01-01T00:00:00Z","container_config":{CONTAINER_CONFIG},"os":"linux"}}"#
        )
    );
    assert_eq!(m[3].data, vec![0u8; 1024]);
    assert_eq!(
        text(&m[7]),
        format!(
            r#"{{"id":"{V1_SECOND}","parent":"{V1_FIRST}","created":"1970-01-01T00:00:00Z","container_config":{CONTAINER_CONFIG},"os":"linux"}}"#
        )
    );
    assert_eq!(m[8].data, b"");
    assert_eq!(
        text(&m[11]),
        format!(
            r#"{{"id":"{top}","parent":"{V1_SECOND}","created":"2024-01-02T03:04:05Z","container_config":{CONTAINER_CONFIG},"config":{},"architecture":"amd64","os":"linux"}}"#,
            CONTAINER_CONFIG.replace(r#""Cmd":null"#, r#""Cmd":["sh"]"#)
        )
    );
    // The repeated diffID: a relative symlink to the first copy.
    assert_eq!(
        (m[12].kind, text(&m[12])),
        ('l', format!("../{V1_FIRST}/layer.tar").as_str())
    );
    assert_eq!(
        text(&m[13]),
        format!(
            "[{{\"Config\":\"{id}.json\",\"RepoTags\":[\"busybox:latest\"],\"Layers\":[\"{V1_FIRST}/layer.tar\",\"{V1_SECOND}/layer.tar\",\"{top}/layer.tar\"]}}]\n"
        )
    );
    assert_eq!(
        text(&m[14]),
        format!("{{\"busybox\":{{\"latest\":\"{top}\"}}}}\n")
    );
    assert_eq!((m[13].mtime, m[14].mtime), (0, 0));
}

#[test]
fn docker_25_layout_matches_section_3_1_apart_from_the_documented_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = write(ArchiveFormat::Docker, dir.path(), "docker.tar");
    let m = members(&out);
    let config = MemorySource::spec_vectors().config;
    let id = config.id().hex();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{id}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{A}","size":1024}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{B}","size":0}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{A}","size":1024}}]}}"#,
        config.raw().len()
    );
    let mdigest = sha256(manifest.as_bytes());
    let names: Vec<&str> = m.iter().map(|m| m.raw_name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "blobs/",
            "blobs/sha256/",
            &format!("blobs/sha256/{id}"),
            &format!("blobs/sha256/{}", &A[7..]),
            &format!("blobs/sha256/{}", &B[7..]),
            &format!("blobs/sha256/{}", mdigest.hex()),
            "index.json",
            "manifest.json",
            "oci-layout",
            "repositories",
        ]
    );
    assert_eq!(text(&m[5]), manifest);
    let mtimes: Vec<i64> = m.iter().map(|m| m.mtime).collect();
    assert_eq!(mtimes, vec![0, 0, CREATED, CREATED, CREATED, 0, 0, 0, 0, 0]);
    assert_eq!(
        text(&m[6]),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{mdigest}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
            manifest.len()
        )
    );
    assert_eq!(
        text(&m[7]),
        format!(
            "[{{\"Config\":\"blobs/sha256/{id}\",\"RepoTags\":[\"busybox:latest\"],\"Layers\":[\"blobs/sha256/{a}\",\"blobs/sha256/{b}\",\"blobs/sha256/{a}\"]}}]\n",
            a = &A[7..],
            b = &B[7..]
        )
    );
    assert_eq!(text(&m[8]), r#"{"imageLayoutVersion": "1.0.0"}"#);
    assert_eq!(
        text(&m[9]),
        format!("{{\"busybox\":{{\"latest\":\"{}\"}}}}\n", &A[7..])
    );
}

/// A tar of `files` (sorted, mode 0444 like containerd's export).
fn tar_of(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let items: Vec<Item> = (files.iter())
        .map(|(name, data)| Item {
            entry: Entry::file(name, data.len() as u64).mode(0o444),
            data: data.clone(),
        })
        .collect();
    tar(&items)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut c = strata_layer::compress::Compressor::new(
        Vec::new(),
        strata_layer::compress::Compression::Gzip,
    )
    .unwrap();
    c.write_all(data).unwrap();
    c.finish().unwrap()
}

/// An archive as Docker 29's containerd store exports it: original gzip blobs, a
/// two-platform index of which only linux/amd64 is present, `manifest.json` naming the
/// compressed blobs, no `repositories`.
fn containerd_archive() -> (Vec<u8>, ImageId, Vec<u8>) {
    let layer_tar = tar(&[Item::file("hello", "hi\n")]);
    let blob = gzip(&layer_tar);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha256(&layer_tar)
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        sha256(config.as_bytes()),
        config.len(),
        sha256(&blob),
        blob.len()
    );
    let absent = sha256(b"the arm64 manifest, not exported");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{absent}","size":99,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        sha256(manifest.as_bytes()),
        manifest.len()
    );
    let top = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{},"annotations":{{"containerd.io/distribution.source.docker.io":"library/hello","io.containerd.image.name":"docker.io/library/hello:latest","org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        sha256(index.as_bytes()),
        index.len()
    );
    let manifest_json = format!(
        r#"[{{"Config":"blobs/sha256/{}","RepoTags":["hello:latest"],"Layers":["blobs/sha256/{}"]}}]"#,
        sha256(config.as_bytes()).hex(),
        sha256(&blob).hex()
    );
    let mut files = BTreeMap::new();
    for bytes in [
        config.as_bytes(),
        manifest.as_bytes(),
        index.as_bytes(),
        &blob[..],
    ] {
        files.insert(
            format!("blobs/sha256/{}", sha256(bytes).hex()),
            bytes.to_vec(),
        );
    }
    files.insert("index.json".into(), top.into_bytes());
    files.insert("manifest.json".into(), manifest_json.into_bytes());
    files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    (tar_of(&files), ImageId::of_config(config.as_bytes()), blob)
}

#[test]
fn containerd_store_archives_keep_their_compressed_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, id, blob) = containerd_archive();
    let path = dir.path().join("containerd.tar");
    fs::write(&path, archive).unwrap();
    let amd64 = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        ..Platform::default()
    };
    let mut src = DockerArchiveSource::open(&path, dir.path(), &amd64).unwrap();
    let listed = src.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].names, vec![Reference::parse("hello").unwrap()]);
    let layout = dir.path().join("oci");
    let options = OciOptions {
        compress: strata_layer::compress::Compression::None,
        reference: Some("hello".into()),
    };
    let mut dest = OciDestination::dir(&layout, options).unwrap();
    let report = copy(
        &mut src,
        &mut dest,
        &CopyOptions::new(ImageSelector::Named("hello:latest".into())),
    )
    .unwrap();
    assert_eq!(report.images[0].layers[0].stored.digest, sha256(&blob));
    assert_eq!(
        fs::read(layout.join("blobs/sha256").join(sha256(&blob).hex())).unwrap(),
        blob
    );
    // The same layout read back gives the same image.
    let mut back = OciSource::dir(&layout, amd64.clone());
    assert_eq!(back.list().unwrap()[0].id, id);

    // Another platform: its manifest is not in the archive, so there is no image for it.
    let arm = Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        ..Platform::default()
    };
    let err = DockerArchiveSource::open(&path, dir.path(), &arm)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is missing"), "{err}");
}

/// A two-image legacy archive in which the second names the first as `Parent`.
fn parent_archive(dir: &Path, child_history: &str) -> std::path::PathBuf {
    let diff = DiffId(sha256(&[0u8; 1024]));
    let parent = format!(
        r#"{{"os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}},"history":[{{"created":"2024-01-01T00:00:00Z","created_by":"base"}}]}}"#
    );
    let child = format!(
        r#"{{"os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}},"history":[{child_history}]}}"#
    );
    let (pid, cid) = (
        ImageId::of_config(parent.as_bytes()),
        ImageId::of_config(child.as_bytes()),
    );
    let mut files = BTreeMap::new();
    files.insert("layer.tar".to_string(), vec![0u8; 1024]);
    files.insert(format!("{}.json", pid.hex()), parent.into_bytes());
    files.insert(format!("{}.json", cid.hex()), child.into_bytes());
    files.insert(
        "manifest.json".into(),
        format!(
            r#"[{{"Config":"{}.json","RepoTags":["p:1"],"Layers":["layer.tar"]}},{{"Config":"{}.json","RepoTags":["c:1"],"Layers":["layer.tar","layer.tar"],"Parent":"{pid}"}}]"#,
            pid.hex(),
            cid.hex()
        )
        .into_bytes(),
    );
    let path = dir.join(format!("parents-{}.tar", child_history.len()));
    fs::write(&path, tar_of(&files)).unwrap();
    path
}

#[test]
fn parent_links_are_kept_only_when_valid() {
    let dir = tempfile::tempdir().unwrap();
    let good = parent_archive(
        dir.path(),
        r#"{"created":"2024-01-01T01:00:00+01:00","created_by":"base"},{"created_by":"child"}"#,
    );
    let mut src = DockerArchiveSource::open(&good, dir.path(), &Platform::host()).unwrap();
    let listed = src.list().unwrap();
    let child = src.open_image(&listed[1]).unwrap();
    assert_eq!(child.parent, Some(listed[0].id));
    assert_eq!(
        child.layers[1].chain_id,
        ChainId::next(Some(&child.layers[0].chain_id), &child.layers[1].diff_id)
    );
    // Both images copied together: the link survives in the new manifest.json.
    let out = dir.path().join("out.tar");
    let mut dest =
        DockerArchiveDestination::create(&out, ArchiveFormat::Docker, None, dir.path()).unwrap();
    copy(&mut src, &mut dest, &CopyOptions::new(ImageSelector::All)).unwrap();
    let m = members(&out);
    let manifest = m.iter().find(|m| m.raw_name == "manifest.json").unwrap();
    assert!(
        text(manifest).contains(&format!(r#""Parent":"{}""#, listed[0].id)),
        "{}",
        text(manifest)
    );

    let bad = parent_archive(
        dir.path(),
        r#"{"created_by":"something else"},{"created_by":"child"}"#,
    );
    let err = DockerArchiveSource::open(&bad, dir.path(), &Platform::host())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("image {} is not a valid parent for", listed[0].id)),
        "{err}"
    );
}

#[test]
fn gzipped_layer_files_in_a_legacy_archive_are_read_and_kept_compressed() {
    // `docker load` accepts a compressed layer.tar; its digest is learnt by hashing it.
    let dir = tempfile::tempdir().unwrap();
    let tar = vec![0u8; 1024];
    let blob = gzip(&tar);
    let config = format!(r#"{{"os":"linux","rootfs":{{"type":"layers","diff_ids":["{A}"]}}}}"#);
    let id = ImageId::of_config(config.as_bytes());
    let mut files = BTreeMap::new();
    files.insert("abc/layer.tar".to_string(), blob.clone());
    files.insert(format!("{}.json", id.hex()), config.into_bytes());
    files.insert(
        "manifest.json".into(),
        format!(
            r#"[{{"Config":"{}.json","RepoTags":["z:1"],"Layers":["abc/layer.tar"]}}]"#,
            id.hex()
        )
        .into_bytes(),
    );
    let path = dir.path().join("gz-layer.tar");
    fs::write(&path, tar_of(&files)).unwrap();
    let mut src = DockerArchiveSource::open(&path, dir.path(), &Platform::host()).unwrap();
    let listed = src.list().unwrap();
    let image = src.open_image(&listed[0]).unwrap();
    assert_eq!(image.layers[0].blob.media_type, media_type::OCI_LAYER_GZIP);
    assert_eq!(image.layers[0].blob.digest, sha256(&blob));
    let options = OciOptions {
        compress: strata_layer::compress::Compression::None,
        reference: None,
    };
    let mut dest = OciDestination::dir(&dir.path().join("oci"), options).unwrap();
    copy(&mut src, &mut dest, &CopyOptions::new(ImageSelector::Only)).unwrap();
    let kept = dir
        .path()
        .join("oci/blobs/sha256")
        .join(sha256(&blob).hex());
    assert_eq!(fs::read(kept).unwrap(), blob);
}

/// An image of `layers` (plain tars) in memory, its config naming their diffIDs, or
/// `wrong` diffID for layer `wrong.0`.
fn memory_image(layers: Vec<Vec<u8>>, wrong: Option<usize>) -> MemorySource {
    let diff_ids: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| match wrong {
            Some(w) if w == i => format!("\"{B}\""),
            _ => format!("\"{}\"", sha256(l)),
        })
        .collect();
    let raw = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    MemorySource {
        config: ImageConfig::parse(raw.into_bytes(), "test").unwrap(),
        layers,
        names: vec![Reference::parse("parallel").unwrap()],
    }
}

/// Loads `source` into a new overlay store applying `jobs` layers at once, telling
/// `progress`; returns the store (with its directory) and the outcome.
fn load_into_store(
    source: &mut dyn ImageSource,
    jobs: usize,
    progress: Option<&dyn strata_image::Progress>,
) -> (
    tempfile::TempDir,
    std::sync::Arc<strata_store::Store>,
    Result<(), Error>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        strata_store::Store::open(&strata_store::StoreOptions {
            root: dir.path().join("store"),
            driver: Some(strata_store::DriverKind::Overlay),
        })
        .unwrap(),
    );
    let mut dest = strata_image::store::StoreDestination::new(
        store.clone(),
        None,
        strata_store::ApplyOptions::default(),
        jobs,
    );
    let mut options = CopyOptions::new(ImageSelector::All);
    options.jobs = jobs;
    options.progress = progress;
    let copied = copy(source, &mut dest, &options).map(drop);
    drop(dest);
    (dir, store, copied)
}

/// The store destination applies up to `jobs` layers at once (a layer written while its
/// parent comes, made visible after it): the store ends the same, layer for layer and
/// byte for byte, as when they go in one by one; a bad layer leaves nothing at all.
#[test]
fn a_store_load_of_layers_at_once_ends_as_one_by_one() {
    let layers = || {
        vec![
            tar(&[
                Item::dir("etc"),
                Item::file("etc/a", "a\n"),
                Item::file("etc/keep", "k\n"),
            ]),
            tar(&[
                Item::dir("etc"),
                Item::of(Entry::whiteout("etc/a")),
                Item::file("etc/b", "b\n"),
            ]),
            tar(&[Item::dir("opt"), Item::file("opt/run", "#!\n")]),
            tar(&[Item::of(Entry::opaque("etc"))]),
        ]
    };
    let held = |store: &strata_store::Store| {
        let mut all: Vec<_> = store
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| {
                let mut tar = Vec::new();
                store
                    .diff(&l.id, &mut tar, strata_layer::compress::Compression::None)
                    .unwrap();
                (l.id, l.parent, l.depth, tar)
            })
            .collect();
        all.sort();
        all
    };
    let (_a, one, done) = load_into_store(&mut memory_image(layers(), None), 1, None);
    done.unwrap();
    let want = held(&one);
    assert_eq!(want.len(), 4);
    let tars: Vec<_> = want.iter().map(|l| l.3.clone()).collect();
    for layer in layers() {
        assert!(tars.contains(&layer), "every layer rebuilt bit for bit");
    }

    // Two at once (four in hand, those waiting for their parents give their slots up)
    // and four.
    for jobs in [2, 4] {
        let (_b, store, done) = load_into_store(&mut memory_image(layers(), None), jobs, None);
        done.unwrap();
        assert_eq!(held(&store), want, "--jobs {jobs}");
        assert!(store.fsck(false).unwrap().clean());
    }

    // Layer 1 is not what the config says: nothing of the image stays.
    let (_c, store, done) = load_into_store(&mut memory_image(layers(), Some(1)), 4, None);
    let err = done.unwrap_err().to_string();
    assert!(err.contains("diffID"), "{err}");
    assert!(store.layers().unwrap().is_empty(), "layers kept");
    assert_eq!(
        fs::read_dir(store.root().join("staging")).unwrap().count(),
        0,
        "left in staging"
    );
    assert!(store.fsck(false).unwrap().clean());
}

/// Counts the bytes reported per layer, and whether a lease was held on the file with
/// inode `inode` (in `/proc/locks`) while they were read.
#[derive(Default)]
struct BytesSeen {
    bytes: std::sync::Mutex<BTreeMap<usize, u64>>,
    inode: u64,
    leased: std::sync::atomic::AtomicBool,
}

impl strata_image::Progress for BytesSeen {
    fn layer_bytes(&self, layer: &LayerInfo, bytes: u64) {
        *self.bytes.lock().unwrap().entry(layer.index).or_default() += bytes;
        let locks = fs::read_to_string("/proc/locks").unwrap();
        // `1: LEASE  ACTIVE    READ 1234 fd:00:INODE 0 EOF`
        let leased = locks.lines().any(|l| {
            l.contains("LEASE")
                && l.split_whitespace()
                    .any(|w| w.rsplit(':').next() == Some(&self.inode.to_string()))
        });
        if leased {
            self.leased
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A docker-archive's plain layers go into the store read through memory maps; with the
/// archive open for writing elsewhere (no lease) they are streamed. Both end the same,
/// and both report every byte of every layer as progress.
#[test]
fn a_store_load_reads_archive_layers_through_maps_or_streams_them_alike() {
    // A copy of its own: the lease of a load elsewhere would make the writer below wait.
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("corpus.docker-archive.tar");
    fs::copy(
        strata_testkit::corpus().join("corpus.docker-archive.tar"),
        &archive,
    )
    .unwrap();
    let load = |jobs: usize| {
        let scratch = tempfile::tempdir().unwrap();
        let mut src =
            DockerArchiveSource::open(&archive, scratch.path(), &Platform::host()).unwrap();
        let seen = BytesSeen {
            inode: std::os::unix::fs::MetadataExt::ino(&fs::metadata(&archive).unwrap()),
            ..BytesSeen::default()
        };
        let (_dir, store, copied) = load_into_store(&mut src, jobs, Some(&seen));
        copied.unwrap();
        let mut layers: Vec<_> = store
            .layers()
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.diff.map(|d| d.diff_id)))
            .collect();
        layers.sort();
        assert!(store.fsck(false).unwrap().clean());
        let leased = seen.leased.into_inner();
        (layers, seen.bytes.into_inner().unwrap(), leased)
    };
    let (mapped, mapped_seen, leased) = load(2);
    assert!(leased, "the layers were read under a lease, through maps");
    let layers = strata_testkit::layers_tsv().len();
    assert_eq!(mapped_seen.len(), layers, "progress for every layer");
    let writer = fs::OpenOptions::new().append(true).open(&archive).unwrap();
    let (streamed, streamed_seen, leased) = load(2);
    assert!(!leased, "no lease with a writer about");
    drop(writer);
    assert_eq!(mapped, streamed);
    assert_eq!(
        mapped_seen, streamed_seen,
        "the same bytes reported, mapped or not"
    );
    assert!(mapped_seen.values().all(|&n| n > 0));
}
