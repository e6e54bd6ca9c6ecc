//! The store's image commands: `images`, `inspect`, `tag`, `rmi`, `history`, `save`,
//! `load`, `commit`, `import-dir`. Saving and loading are copies between the store and
//! an archive (strata-image does both ends).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use strata_image::docker_archive::ArchiveFormat;
use strata_image::manifest::Platform;
use strata_image::store::{layer_id, resolve, save_selection, StoreSource};
use strata_image::{build, ImageConfig, ImageSelector, OpenOptions, Reference, Transport};
use strata_store::{Image, LayerId, Store};

use crate::image::{copy_options, copy_to};
use crate::io::print_raw;
use crate::output::Output;
use crate::store::StoreArgs;

fn open(args: &StoreArgs) -> Result<Arc<Store>> {
    Ok(Arc::new(args.open()?))
}

fn image_of(store: &Store, spec: &str) -> Result<Image> {
    resolve(store, spec).with_context(|| format!("cannot find image `{spec}`"))
}

fn name_of(spec: &str) -> Result<Reference> {
    let r = Reference::parse(spec).with_context(|| format!("`{spec}` is not an image name"))?;
    if r.digest().is_some() {
        bail!("`{spec}`: an image name to give cannot hold a digest");
    }
    Ok(r)
}

fn config_of(store: &Store, image: &Image) -> Result<ImageConfig> {
    Ok(ImageConfig::parse(
        store.read_blob(&image.id)?,
        "in the store",
    )?)
}

/// The bytes of file data in the layers of `config` (what `images` shows as SIZE).
fn size_of(store: &Store, config: &ImageConfig) -> u64 {
    config
        .chain_ids()
        .iter()
        .filter_map(|c| store.layer(&layer_id(c)).ok())
        .filter_map(|l| l.diff.map(|d| d.diff_size))
        .sum()
}

#[derive(Serialize)]
struct ImageView {
    id: String,
    names: Vec<String>,
    created: Option<String>,
    os: String,
    architecture: String,
    layers: usize,
    size: u64,
}

fn view(store: &Store, image: &Image) -> Result<ImageView> {
    let config = config_of(store, image)?;
    Ok(ImageView {
        id: image.id.to_string(),
        names: image.names.clone(),
        created: config.created().map(|t| t.to_string()),
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        layers: config.diff_ids().len(),
        size: size_of(store, &config),
    })
}

/// `strata images`.
pub fn images(args: &StoreArgs, out: &Output) -> Result<()> {
    let store = open(args)?;
    let views: Vec<ImageView> = store
        .images()?
        .iter()
        .map(|i| view(&store, i))
        .collect::<Result<_>>()?;
    out.result(&views, || {
        let mut t = format!(
            "{:<40} {:<16} {:<14} {:<20} {:>12}",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
        );
        for v in &views {
            let id =
                v.id.strip_prefix("sha256:")
                    .unwrap_or(&v.id)
                    .get(..12)
                    .unwrap_or(&v.id);
            let created = v
                .created
                .as_deref()
                .map(|c| c.get(..19).unwrap_or(c))
                .unwrap_or("-");
            let rows: Vec<(String, String)> = if v.names.is_empty() {
                vec![("<none>".into(), "<none>".into())]
            } else {
                v.names
                    .iter()
                    .filter_map(|n| Reference::parse(n).ok())
                    .map(|r| (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()))
                    .collect()
            };
            for (repo, tag) in rows {
                t.push_str(&format!(
                    "\n{repo:<40} {tag:<16} {id:<14} {created:<20} {:>12}",
                    v.size
                ));
            }
        }
        t
    })
}

/// What `inspect` prints: a report, or the raw manifest or config.
#[derive(Clone, Copy)]
pub struct InspectWhat {
    pub raw: bool,
    pub config: bool,
}

/// Whether `spec` names a transport rather than an image of the store.
fn is_transport(spec: &str) -> bool {
    ["docker-archive:", "oci:", "oci-archive:", "docker://"]
        .iter()
        .any(|p| spec.starts_with(p))
}

// The JSON views below list their fields in alphabetical order: the order the
// reports have always had (they were maps), kept so that the output does not change.

/// `inspect TRANSPORT`: an image as a transport holds it.
#[derive(Serialize)]
struct TransportImageView {
    architecture: String,
    /// The config as stored, as JSON.
    config: Value,
    created: Option<String>,
    id: String,
    layers: Vec<TransportLayerView>,
    manifest: ManifestView,
    names: Vec<String>,
    os: String,
    ref_names: Vec<String>,
    transport: String,
}

#[derive(Serialize)]
struct TransportLayerView {
    diff_id: String,
    digest: String,
    media_type: String,
    size: u64,
}

/// An image's manifest: kept by the store, or stored by the transport (`stored`: else
/// made up from the config and layers).
#[derive(Serialize)]
struct ManifestView {
    digest: String,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<bool>,
}

/// `inspect IMAGE`: an image of the store.
#[derive(Serialize)]
struct StoreImageView {
    config: Value,
    id: String,
    layers: Vec<StoreLayerView>,
    manifest: Option<ManifestView>,
    names: Vec<String>,
    parent: Option<String>,
    size: u64,
    top_layer: Option<String>,
}

#[derive(Serialize)]
struct StoreLayerView {
    blobs: Vec<BlobView>,
    chain_id: String,
    diff_id: String,
    size: Option<u64>,
    store_layer: String,
    tar_size: Option<u64>,
}

/// A compressed blob the store kept of a layer.
#[derive(Serialize)]
struct BlobView {
    digest: String,
    media_type: String,
    size: u64,
}

/// `tag`: the image and its new name.
#[derive(Serialize)]
struct TagView {
    id: String,
    name: String,
}

/// `rmi`: one image's names removed, and the layers that went with it.
#[derive(Serialize)]
struct RmiView {
    id: String,
    layers_removed: Vec<String>,
    untagged: Vec<String>,
}

/// `history`: one entry, newest first.
#[derive(Serialize)]
struct HistoryView {
    comment: String,
    created: Option<String>,
    created_by: String,
    empty_layer: bool,
    size: u64,
}

/// `commit` and `import-dir`: the image made.
#[derive(Serialize)]
struct BuiltView {
    diff_id: String,
    id: String,
    layer: String,
    name: String,
}

impl From<&build::Built> for BuiltView {
    fn from(b: &build::Built) -> Self {
        BuiltView {
            diff_id: b.diff_id.to_string(),
            id: b.id.to_string(),
            layer: b.layer.to_string(),
            name: b.name.to_string(),
        }
    }
}

/// `strata inspect TRANSPORT`: an image of an archive, a layout or a registry.
fn inspect_transport(
    spec: &str,
    what: InspectWhat,
    platform: Option<&str>,
    out: &Output,
) -> Result<()> {
    let transport: strata_image::Transport = spec
        .parse()
        .with_context(|| format!("bad image `{spec}`"))?;
    let mut options = strata_image::OpenOptions::default();
    if let Some(p) = platform {
        options.platform = crate::args::parse_platform(p)?;
    }
    let (image, warnings) = transport
        .open_image(&options)
        .with_context(|| format!("cannot inspect {transport}"))?;
    if what.config {
        return print_raw(image.config.raw());
    }
    let manifest = image.manifest_or_schema2()?;
    if what.raw {
        return print_raw(&manifest.bytes);
    }
    let raw: Value =
        serde_json::from_slice(image.config.raw()).context("the config is not JSON")?;
    let report = TransportImageView {
        architecture: image.config.architecture().to_string(),
        config: raw,
        created: image.config.created().map(|t| t.to_string()),
        id: image.summary.id.to_string(),
        layers: image
            .layers
            .iter()
            .map(|l| TransportLayerView {
                diff_id: l.diff_id.to_string(),
                digest: l.blob.digest.to_string(),
                media_type: l.blob.media_type.clone(),
                size: l.blob.size,
            })
            .collect(),
        manifest: ManifestView {
            digest: manifest.digest.to_string(),
            media_type: manifest.media_type.clone(),
            stored: Some(image.manifest.is_some()),
        },
        names: image.summary.names.iter().map(|n| n.to_string()).collect(),
        os: image.config.os().to_string(),
        ref_names: image.summary.ref_names.clone(),
        transport: transport.to_string(),
    };
    for w in &warnings {
        out.detail(w);
    }
    out.result(&report, || {
        serde_json::to_string_pretty(&report).unwrap_or_default()
    })
}

/// `strata inspect IMAGE`.
pub fn inspect(
    args: &StoreArgs,
    spec: &str,
    what: InspectWhat,
    platform: Option<&str>,
    out: &Output,
) -> Result<()> {
    if is_transport(spec) {
        return inspect_transport(spec, what, platform, out);
    }
    let store = open(args)?;
    let image = image_of(&store, spec)?;
    let config = config_of(&store, &image)?;
    if what.config {
        return print_raw(config.raw());
    }
    if what.raw {
        let m = image
            .manifest
            .as_ref()
            .with_context(|| format!("image {} keeps no manifest", image.id))?;
        return print_raw(&store.read_blob(&m.digest)?);
    }
    let layers: Vec<StoreLayerView> = config
        .diff_ids()
        .iter()
        .zip(config.chain_ids())
        .map(|(diff, chain)| {
            let id = layer_id(&chain);
            let layer = store.layer(&id).ok();
            let blobs = store.layer_blobs(&id).unwrap_or_default();
            let diff_info = layer.as_ref().and_then(|l| l.diff.as_ref());
            StoreLayerView {
                blobs: blobs
                    .into_iter()
                    .map(|(d, media_type, size)| BlobView {
                        digest: d.to_string(),
                        media_type,
                        size,
                    })
                    .collect(),
                chain_id: chain.to_string(),
                diff_id: diff.to_string(),
                size: diff_info.map(|d| d.diff_size),
                store_layer: id.to_string(),
                tar_size: diff_info.map(|d| d.tar_size),
            }
        })
        .collect();
    let raw: Value = serde_json::from_slice(config.raw()).context("the config is not JSON")?;
    let report = StoreImageView {
        config: raw,
        id: image.id.to_string(),
        layers,
        manifest: image.manifest.as_ref().map(|m| ManifestView {
            digest: m.digest.to_string(),
            media_type: m.media_type.clone(),
            stored: None,
        }),
        names: image.names.clone(),
        parent: image.parent.map(|p| p.to_string()),
        size: size_of(&store, &config),
        top_layer: image.top_layer.as_ref().map(LayerId::to_string),
    };
    out.result(&report, || {
        serde_json::to_string_pretty(&report).unwrap_or_default()
    })
}

/// `strata tag SRC DST`.
pub fn tag(args: &StoreArgs, source: &str, target: &str, out: &Output) -> Result<()> {
    let store = open(args)?;
    let image = image_of(&store, source)?;
    let name = name_of(target)?;
    store.tag(&image.id, &name.to_string())?;
    out.result(
        &TagView {
            id: image.id.to_string(),
            name: name.to_string(),
        },
        || format!("{} tagged {}", image.id, name.familiar()),
    )
}

/// `strata rmi IMAGE...`.
pub fn rmi(args: &StoreArgs, specs: &[String], force: bool, out: &Output) -> Result<()> {
    let store = open(args)?;
    for spec in specs {
        let image = image_of(&store, spec)?;
        // By one of several names: only that name goes, as with docker rmi.
        let by_name = Reference::parse(spec)
            .ok()
            .map(|r| r.to_string())
            .filter(|n| image.names.contains(n));
        if let Some(name) = by_name.filter(|_| image.names.len() > 1) {
            store.untag(&name)?;
            out.result(
                &RmiView {
                    id: image.id.to_string(),
                    layers_removed: Vec::new(),
                    untagged: vec![name.clone()],
                },
                || format!("Untagged: {name}"),
            )?;
            continue;
        }
        if image.names.len() > 1 && !force {
            bail!(
                "image {} has several names ({}): remove them one by one, or force",
                image.id,
                image.names.join(", ")
            );
        }
        let removed = store
            .remove_image(&image.id, force)
            .with_context(|| format!("cannot remove image {spec}"))?;
        let layers: Vec<&str> = removed.layers.iter().map(LayerId::as_str).collect();
        out.result(
            &RmiView {
                id: image.id.to_string(),
                layers_removed: layers.iter().map(|l| l.to_string()).collect(),
                untagged: removed.untagged.clone(),
            },
            || {
                let mut t: Vec<String> = removed
                    .untagged
                    .iter()
                    .map(|n| format!("Untagged: {n}"))
                    .collect();
                t.push(format!("Deleted: {}", image.id));
                t.extend(layers.iter().map(|l| format!("Deleted layer: {l}")));
                t.join("\n")
            },
        )?;
    }
    Ok(())
}

/// `strata history IMAGE`.
pub fn history(args: &StoreArgs, spec: &str, out: &Output) -> Result<()> {
    let store = open(args)?;
    let image = image_of(&store, spec)?;
    let config = config_of(&store, &image)?;
    let chains = config.chain_ids();
    let mut next_layer = 0usize;
    let mut rows = Vec::new();
    for h in config.history() {
        let size = if h.empty_layer {
            0
        } else {
            let size = chains
                .get(next_layer)
                .and_then(|c| store.layer(&layer_id(c)).ok())
                .and_then(|l| l.diff.map(|d| d.diff_size))
                .unwrap_or(0);
            next_layer += 1;
            size
        };
        rows.push(HistoryView {
            comment: h.comment.clone(),
            created: h.created.map(|t| t.to_string()),
            created_by: h.created_by.clone(),
            empty_layer: h.empty_layer,
            size,
        });
    }
    // Newest first, as docker history shows it.
    rows.reverse();
    out.result(&rows, || {
        let mut t = format!(
            "{:<22} {:<60} {:>12}  {}",
            "CREATED", "CREATED BY", "SIZE", "COMMENT"
        );
        for r in &rows {
            let by: String = r.created_by.chars().take(60).collect();
            t.push_str(&format!(
                "\n{:<22} {:<60} {:>12}  {}",
                r.created.as_deref().unwrap_or("-"),
                by,
                r.size,
                r.comment
            ));
        }
        t
    })
}

/// What `save` writes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// Docker 25+ archive: an OCI layout plus manifest.json and repositories.
    DockerArchive,
    /// The legacy docker save layout (<v1 id>/layer.tar, json, VERSION).
    DockerLegacy,
    /// An OCI layout in a tar.
    OciArchive,
    /// An OCI layout directory.
    Oci,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Images (names, IDs or ID prefixes).
    #[arg(required = true)]
    images: Vec<String>,
    /// The file (or, for --format oci, the directory) to write; - for standard output.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = SaveFormat::DockerArchive)]
    format: SaveFormat,
}

/// `strata save`: a copy from the store to an archive or a layout, the images named as
/// `docker save` names them.
pub fn save(args: SaveArgs, store_args: &StoreArgs, out: &Output) -> Result<()> {
    let store = open(store_args)?;
    let stdout = args.output == Path::new("-");
    if stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("refusing to write an archive to a terminal: use -o FILE or a pipe");
    }
    let path = if stdout {
        PathBuf::from("/dev/stdout")
    } else {
        args.output.clone()
    };
    let staging = store.staging()?;
    let destination = match args.format {
        SaveFormat::DockerArchive | SaveFormat::DockerLegacy => Transport::DockerArchive {
            path: path.clone(),
            reference: None,
        },
        SaveFormat::OciArchive => Transport::OciArchive {
            path: path.clone(),
            reference: None,
        },
        SaveFormat::Oci => Transport::Oci {
            path: path.clone(),
            reference: None,
        },
    };
    let options = OpenOptions {
        staging: staging.path().to_owned(),
        format: if args.format == SaveFormat::DockerLegacy {
            ArchiveFormat::DockerLegacy
        } else {
            ArchiveFormat::Docker
        },
        store: Some(store.clone()),
        ..OpenOptions::default()
    }
    .copying_to(&destination);
    // The names written are the ones asked for, as docker save writes them: no
    // transport string says that, so the store source is made from the selection.
    let selection = save_selection(&store, &args.images)?;
    let mut source = StoreSource::named(store.clone(), selection, options.store_blobs);
    copy_to(
        &mut source,
        &destination,
        &options,
        copy_options(ImageSelector::All, None),
        ("strata:", &path.display().to_string()),
        stdout,
        out,
    )?;
    staging.done()?;
    Ok(())
}

#[derive(Args)]
pub struct LoadArgs {
    /// The archive (docker save or podman save output, Docker 25+ or legacy, an OCI
    /// archive; plain, gzip or zstd), or - for standard input.
    #[arg(short, long, value_name = "FILE")]
    input: PathBuf,
    /// Pick this platform (OS/ARCH) from multi-platform archives.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Layers applied at once (default 2): on an overlay store a layer is written while
    /// its parent comes and made visible after it.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// `strata load`: a copy from an archive (`docker-archive:FILE`) to the store
/// (`strata:`, keeping the archive's names).
pub fn load(args: LoadArgs, store_args: &StoreArgs, out: &Output) -> Result<()> {
    let store = open(store_args)?;
    let path = if args.input == Path::new("-") {
        PathBuf::from("/dev/stdin")
    } else {
        args.input.clone()
    };
    let platform = match &args.platform {
        Some(p) => crate::args::parse_platform(p)?,
        None => Platform::host(),
    };
    let staging = store.staging()?;
    let jobs = args.jobs.unwrap_or(2);
    let options = OpenOptions {
        staging: staging.path().to_owned(),
        platform,
        store: Some(store.clone()),
        store_jobs: jobs,
        ..OpenOptions::default()
    };
    let source = Transport::DockerArchive {
        path,
        reference: None,
    };
    let mut from = source
        .open_source(&options)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let store_transport = Transport::Strata {
        image: String::new(),
    };
    copy_to(
        from.as_mut(),
        &store_transport,
        &options,
        copy_options(ImageSelector::All, Some(jobs)),
        (&args.input.display().to_string(), "strata:"),
        false,
        out,
    )?;
    staging.done()?;
    Ok(())
}

/// `strata commit`.
pub fn commit(
    args: &StoreArgs,
    layer: &LayerId,
    name: &str,
    base: Option<&str>,
    message: Option<&str>,
    out: &Output,
) -> Result<()> {
    let store = open(args)?;
    let name = name_of(name)?;
    let built = build::commit(&store, layer, &name, base, message)
        .with_context(|| format!("cannot commit layer {layer}"))?;
    out.result(&BuiltView::from(&built), || {
        format!("{} ({})", built.id, built.name.familiar())
    })
}

/// `strata import-dir`.
pub fn import_dir(args: &StoreArgs, dir: &Path, name: &str, out: &Output) -> Result<()> {
    let store = open(args)?;
    let name = name_of(name)?;
    let built = build::import_dir(&store, dir, &name)
        .with_context(|| format!("cannot import {}", dir.display()))?;
    out.result(&BuiltView::from(&built), || {
        format!("{} ({})", built.id, built.name.familiar())
    })
}
