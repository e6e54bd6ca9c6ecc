//! Copies one image between an OCI layout directory and a registry with
//! strata-registry, the way `skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG` (and
//! back) does: blobs in parallel, then the manifest. It exists for the benchmark
//! (`bench/registry.sh`) and as a worked example; `strata pull`/`push` are the tools.
//!
//! ```text
//! oci-copy push LAYOUT TAG HOST/REPO:TAG [--jobs N] [--tls-verify=false] [--monolithic-max BYTES] [--chunk BYTES]
//! oci-copy pull HOST/REPO:TAG LAYOUT [--jobs N] [--tls-verify=false]
//! ```
//! Credentials come from `REGISTRY_CREDS=USER:PASS`, else the auth files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use serde_json::Value;
use strata_registry::{
    parse_digest, Client, Credentials, Digest, ManifestKind, Options, PushOptions, Reference,
    RegistryHost, Repository, RepositoryName, UploadPolicy,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    positional: Vec<String>,
    jobs: usize,
    tls_verify: bool,
    upload: UploadPolicy,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        positional: Vec::new(),
        jobs: 6,
        tls_verify: true,
        upload: UploadPolicy::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            Ok(it.next().ok_or(format!("{name} needs a value"))?.parse()?)
        };
        match arg.as_str() {
            "--jobs" => a.jobs = value("--jobs")?.max(1) as usize,
            "--monolithic-max" => a.upload.monolithic_max = value("--monolithic-max")?,
            "--chunk" => a.upload.chunk_size = value("--chunk")?,
            "--tls-verify=false" => a.tls_verify = false,
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            _ => a.positional.push(arg),
        }
    }
    Ok(a)
}

/// `HOST/REPO:TAG` into a repository handle and the tag.
fn open(target: &str, args: &Args) -> Result<(Repository, Reference)> {
    let (host, rest) = target.split_once('/').ok_or("expected HOST/REPO:TAG")?;
    let (repo, tag) = rest.rsplit_once(':').ok_or("expected HOST/REPO:TAG")?;
    let host = RegistryHost::parse(host)?;
    let repo = RepositoryName::parse(repo)?;
    let credentials = match std::env::var("REGISTRY_CREDS") {
        Ok(c) => Credentials::from_user_pass(&c)?,
        Err(_) => Credentials::lookup(&host, Some(&repo))?,
    };
    let options = Options {
        credentials,
        tls_verify: args.tls_verify,
        upload: args.upload.clone(),
        ..Options::default()
    };
    Ok((
        Client::new(host, options)?.repository(repo),
        Reference::parse(tag)?,
    ))
}

/// The descriptors (config first, then layers) a manifest names.
fn blobs_of(manifest: &[u8]) -> Result<Vec<(Digest, u64)>> {
    let m: Value = serde_json::from_slice(manifest)?;
    let layers = m["layers"]
        .as_array()
        .ok_or("the manifest has no layers array")?;
    std::iter::once(&m["config"])
        .chain(layers)
        .map(|d| {
            let digest = parse_digest(d["digest"].as_str().ok_or("a descriptor without digest")?)?;
            Ok((
                digest,
                d["size"].as_u64().ok_or("a descriptor without size")?,
            ))
        })
        .collect()
}

/// Runs `work` on every item with `jobs` threads; the first error wins.
fn parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = Mutex::new(items.iter());
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| loop {
                let Some(item) = next.lock().unwrap().next() else {
                    return;
                };
                if let Err(e) = work(item) {
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn push(args: &Args) -> Result<()> {
    let [layout, tag, target] = &args.positional[..] else {
        return Err("usage: oci-copy push LAYOUT TAG HOST/REPO:TAG".into());
    };
    let layout = Path::new(layout);
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let desc = index["manifests"]
        .as_array()
        .ok_or("index.json has no manifests")?
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .ok_or(format!("no tag {tag} in {}", layout.display()))?;
    let kind = ManifestKind::from_media_type(desc["mediaType"].as_str().unwrap_or(""))
        .ok_or("unsupported manifest media type")?;
    let digest = parse_digest(desc["digest"].as_str().ok_or("no digest")?)?;
    let blob_path = |d: &Digest| layout.join("blobs/sha256").join(d.hex());
    let manifest = fs::read(blob_path(&digest))?;
    let (repo, reference) = open(target, args)?;
    parallel(&blobs_of(&manifest)?, args.jobs, |(d, size)| {
        repo.push_blob(d, *size, File::open(blob_path(d))?, PushOptions::default())?;
        Ok(())
    })?;
    repo.put_manifest(&reference, kind, &manifest)?;
    Ok(())
}

/// Writes a verified blob to `dir/<hex>`, through a temporary file.
fn fetch(repo: &Repository, dir: &Path, digest: &Digest, size: u64) -> Result<()> {
    let tmp = dir.join(format!(".{}.tmp", digest.hex()));
    let mut reader = repo.get_blob(digest, Some(size))?;
    let mut out = File::create(&tmp)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    fs::rename(&tmp, dir.join(digest.hex()))?;
    Ok(())
}

fn pull(args: &Args) -> Result<()> {
    let [source, layout] = &args.positional[..] else {
        return Err("usage: oci-copy pull HOST/REPO:TAG LAYOUT".into());
    };
    let (repo, reference) = open(source, args)?;
    let manifest = repo.get_manifest(&reference)?;
    if manifest.kind.is_index() {
        return Err("this example copies single-platform images only".into());
    }
    let layout = PathBuf::from(layout);
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    parallel(&blobs_of(&manifest.bytes)?, args.jobs, |(d, size)| {
        fetch(&repo, &blobs, d, *size)
    })?;
    fs::write(blobs.join(manifest.digest.hex()), &manifest.bytes)?;
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let tag = match &reference {
        Reference::Tag(t) => t.to_string(),
        Reference::Digest(_) => "latest".to_string(),
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": manifest.kind.media_type(),
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(layout.join("index.json"), index.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args.positional.first().map(String::as_str) {
        Some("push") => push(&Args {
            positional: args.positional[1..].to_vec(),
            ..args
        }),
        Some("pull") => pull(&Args {
            positional: args.positional[1..].to_vec(),
            ..args
        }),
        _ => Err(
            "usage: oci-copy push LAYOUT TAG HOST/REPO:TAG | oci-copy pull HOST/REPO:TAG LAYOUT"
                .into(),
        ),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            let _ = writeln!(io::stderr(), "oci-copy: {msg}");
            ExitCode::FAILURE
        }
    }
}
