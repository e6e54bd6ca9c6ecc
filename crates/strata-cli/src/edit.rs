//! `strata mutate` and `strata append`: an image changed on its way from SRC to DEST
//! (strata-image's `edit` does the work; this parses flags and prints the copy).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use strata_image::edit::{config, created, flatten, EditOptions, EditedSource};
use strata_image::{ImageSelector, ImageSource, OpenOptions, Transport};
use strata_layer::compress::Compression;

use crate::args::{parse_platform, Compress};
use crate::image::{
    copy_options, registry_options, run_copy, writes_to_stdout, Access, RegistryTimeout,
};
use crate::output::Output;
use crate::store::StoreArgs;

/// Where the image comes from and goes to, and how to reach them.
#[derive(Args)]
pub struct Ends {
    /// The image to change (any transport: docker://, oci:, oci-archive:,
    /// docker-archive:, strata:).
    source: String,
    /// Where the changed image goes (may be the source's place under another tag).
    destination: String,
    /// Pick this platform (OS/ARCH[/VARIANT]) from a multi-platform source.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// The time recorded in the config and history: RFC 3339 or seconds since 1970
    /// (default: $SOURCE_DATE_EPOCH, else now). Packed files newer than it are set to it.
    #[arg(long, value_name = "TIME")]
    created: Option<String>,
    /// Set a manifest annotation (KEY=VALUE; repeatable). Makes the manifest OCI.
    #[arg(long, value_name = "KEY=VALUE")]
    annotation: Vec<String>,
    /// Spool directory (default: $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR", env = "STRATA_TMPDIR")]
    tmpdir: Option<PathBuf>,
    #[command(flatten)]
    access: Access,
}

impl Ends {
    /// The options the images are opened with: `--platform`, `--tmpdir`, and the store
    /// when one of `sources` or `destination` is `strata:` (offering the kept blobs of
    /// `compression` that `destination` takes).
    fn options(
        &self,
        sources: &[&Transport],
        destination: &Transport,
        compression: Compression,
        store: &StoreArgs,
    ) -> Result<OpenOptions> {
        let mut options = OpenOptions::default();
        if let Some(p) = &self.platform {
            options.platform = parse_platform(p)?;
        }
        if let Some(t) = &self.tmpdir {
            options.staging = t.clone();
        }
        if sources
            .iter()
            .chain([&destination])
            .any(|t| matches!(t, Transport::Strata { .. }))
        {
            options.store = Some(Arc::new(store.open()?));
            options.store_blobs = destination.store_blobs_wanted(compression);
        }
        Ok(options)
    }
}

/// Config fields to change, as a Dockerfile would; each is recorded in the history.
#[derive(Args, Default)]
pub struct ConfigFlags {
    /// ENTRYPOINT: a JSON array (`["/app","-v"]`) or one word; "" clears it.
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// CMD: a JSON array or one word; "" clears it.
    #[arg(long, value_name = "CMD")]
    cmd: Option<String>,
    /// ENV KEY=VALUE (repeatable; replaces KEY if set).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// LABEL KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// USER (name, uid, uid:gid).
    #[arg(long)]
    user: Option<String>,
    /// WORKDIR (absolute).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// EXPOSE PORT[/PROTO] (repeatable).
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    /// VOLUME (absolute path; repeatable).
    #[arg(long, value_name = "PATH")]
    volume: Vec<String>,
    /// STOPSIGNAL (SIGTERM, 9, ...).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Set the config's platform (OS/ARCH[/VARIANT]).
    #[arg(long, value_name = "OS/ARCH")]
    set_platform: Option<String>,
}

/// Change an image's config (entrypoint, env, labels, ...) without moving its layers.
#[derive(Args)]
pub struct MutateArgs {
    #[command(flatten)]
    ends: Ends,
    #[command(flatten)]
    config: ConfigFlags,
}

/// Add layers on top of an image: directories packed deterministically, tar files
/// (plain, gzip or zstd) taken as they are; only the new layers are written or uploaded.
///
/// On a Windows image (os windows) each new layer is made a Windows layer (Files/,
/// Hives/, as `strata wclayer from-rootfs` makes them; a Windows layer tar is taken as it
/// is), and the image's foreign layers (urls) are neither downloaded nor pushed.
#[derive(Args)]
pub struct AppendArgs {
    #[command(flatten)]
    ends: Ends,
    /// A directory or a tar file to add as a layer (repeatable, bottom first).
    #[arg(long, value_name = "PATH", required = true)]
    layer: Vec<PathBuf>,
    /// Compression of the new layers (a tar already in it is used as it is).
    #[arg(long, value_enum, default_value_t = Compress::Gzip)]
    compress: Compress,
    #[command(flatten)]
    config: ConfigFlags,
}

/// Replace an image's layers with one holding their merged filesystem (whiteouts
/// applied); the history is kept, as empty entries, plus one for the new layer.
#[derive(Args)]
pub struct FlattenArgs {
    #[command(flatten)]
    ends: Ends,
    /// Compression of the merged layer.
    #[arg(long, value_enum, default_value_t = Compress::Gzip)]
    compress: Compress,
    #[command(flatten)]
    config: ConfigFlags,
}

/// Replace an image's bottom layers (OLD's) with NEW's; refused unless OLD's layers
/// are exactly SRC's bottom layers. The manifest names the new base
/// (org.opencontainers.image.base.name/.digest).
#[derive(Args)]
pub struct RebaseArgs {
    #[command(flatten)]
    ends: Ends,
    /// The base SRC was built on (any transport).
    #[arg(long, value_name = "IMAGE")]
    old_base: String,
    /// The base to put under it instead (any transport).
    #[arg(long, value_name = "IMAGE")]
    new_base: String,
}

/// Write an image's merged filesystem as one tar (what `docker export` gives).
#[derive(Args)]
pub struct ExportArgs {
    /// The image (any transport).
    source: String,
    /// The tar to write (`-`: standard output).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Compress the tar.
    #[arg(long, value_enum, default_value_t = Compress::None)]
    compress: Compress,
    /// Pick this platform (OS/ARCH[/VARIANT]) from a multi-platform source.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Where the merged tree is made (default: $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR", env = "STRATA_TMPDIR")]
    tmpdir: Option<PathBuf>,
    /// Credentials for a docker:// source.
    #[arg(long, value_name = "USER:PASSWORD")]
    src_creds: Option<String>,
    #[command(flatten)]
    timeout: RegistryTimeout,
}

fn changes(f: &ConfigFlags) -> Result<config::ConfigChanges> {
    let pairs = |flag: &str, v: &[String]| -> Result<Vec<(String, String)>> {
        v.iter()
            .map(|s| config::key_value(flag, s).map_err(Into::into))
            .collect()
    };
    Ok(config::ConfigChanges {
        entrypoint: f
            .entrypoint
            .as_deref()
            .map(|s| config::command_line("--entrypoint", s))
            .transpose()?,
        cmd: f
            .cmd
            .as_deref()
            .map(|s| config::command_line("--cmd", s))
            .transpose()?,
        env: pairs("--env", &f.env)?,
        labels: pairs("--label", &f.label)?,
        user: f.user.clone(),
        workdir: f.workdir.clone(),
        expose: f.expose.clone(),
        volumes: f.volume.clone(),
        stop_signal: f.stop_signal.clone(),
        platform: f.set_platform.as_deref().map(parse_platform).transpose()?,
    })
}

pub fn mutate(args: MutateArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let changes = changes(&args.config)?;
    if changes.is_empty() && args.ends.annotation.is_empty() && args.ends.created.is_none() {
        bail!("nothing to change: give at least one of --entrypoint, --cmd, --env, --label, --user, --workdir, --expose, --volume, --stop-signal, --set-platform, --annotation, --created");
    }
    run(
        args.ends,
        changes,
        Vec::new(),
        Compression::Gzip,
        store,
        out,
    )
}

pub fn append(args: AppendArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let changes = changes(&args.config)?;
    run(
        args.ends,
        changes,
        args.layer,
        args.compress.into(),
        store,
        out,
    )
}

pub fn flatten(args: FlattenArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let changes = changes(&args.config)?;
    let what = What {
        changes,
        layers: Vec::new(),
        flatten: true,
        compression: args.compress.into(),
    };
    run_edit(args.ends, what, store, out)
}

pub fn export(args: ExportArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    use std::io::Write;
    let source: Transport = args.source.parse().context("bad source")?;
    let mut options = OpenOptions::default();
    if let Some(p) = &args.platform {
        options.platform = parse_platform(p)?;
    }
    if let Some(t) = &args.tmpdir {
        options.staging = t.clone();
    }
    options.registry = registry_options(
        &options.registry,
        args.src_creds.as_deref(),
        true,
        args.timeout,
    )?;
    if matches!(source, Transport::Strata { .. }) {
        options.store = Some(Arc::new(store.open()?));
    }
    let compression: Compression = args.compress.into();
    let packed = if args.output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let packed = flatten::export_transport(&source, &options, stdout, compression)
            .with_context(|| format!("cannot export {source}"))?;
        std::io::stdout()
            .flush()
            .map_err(crate::output::stdout_error)?;
        packed
    } else {
        // Written beside the target and renamed over it: a failed export leaves it as it was.
        let file = &args.output;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".strata-export-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let packed = flatten::export_transport(&source, &options, tmp.as_file(), compression)
            .with_context(|| format!("cannot export {source}"))?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", file.display()))?;
        tmp.persist(file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        packed
    };
    out.warnings(&packed.warnings);
    let report = serde_json::json!({
        "source": source.to_string(),
        "output": args.output.display().to_string(),
        "diff_id": packed.diff_id.to_string(),
        "tar_bytes": packed.tar_bytes,
        "digest": packed.blob_digest.to_string(),
        "size": packed.blob_bytes,
    });
    if args.output.as_os_str() == "-" {
        // Standard output carries the tar.
        if out.json {
            eprintln!("{report}");
        }
        return Ok(());
    }
    out.result(&report, || {
        format!(
            "exported {source} to {} ({} bytes, diffID {})",
            args.output.display(),
            packed.blob_bytes,
            packed.diff_id
        )
    })
}

pub fn rebase(args: RebaseArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    use strata_image::edit::rebase::{Opened, RebasedSource};
    let ends = &args.ends;
    let source: Transport = ends.source.parse().context("bad source")?;
    let destination: Transport = ends.destination.parse().context("bad destination")?;
    let old: Transport = args.old_base.parse().context("bad --old-base")?;
    let new: Transport = args.new_base.parse().context("bad --new-base")?;
    let options = ends.options(
        &[&source, &old, &new],
        &destination,
        Compression::Gzip,
        store,
    )?;
    let (source_options, dest_options) = ends.access.apply(options.clone(), options)?;
    let open = |t: &Transport| {
        Opened::open(t, &source_options).with_context(|| format!("cannot read {t}"))
    };
    let image = open(&source)?;
    let old_base = open(&old)?;
    let new_base = open(&new)?;
    let mut rebased = RebasedSource::new(image, &old_base.image, new_base, &new.to_string())
        .with_context(|| format!("cannot rebase {source}"))?;
    copy_changed(&mut rebased, &source, &destination, &dest_options, out)
}

/// Copies a changed image (`image`, made from `source`) to `destination`.
fn copy_changed(
    image: &mut dyn ImageSource,
    source: &Transport,
    destination: &Transport,
    dest_options: &OpenOptions,
    out: &Output,
) -> Result<()> {
    let mut to = destination
        .open_destination(dest_options)
        .with_context(|| format!("cannot write {destination}"))?;
    run_copy(
        image,
        to.as_mut(),
        copy_options(ImageSelector::Only, None),
        (&source.to_string(), &destination.to_string()),
        writes_to_stdout(destination),
        out,
    )
    .map(drop)
}

/// What an edit does besides the config.
struct What {
    changes: config::ConfigChanges,
    layers: Vec<PathBuf>,
    flatten: bool,
    compression: Compression,
}

fn run(
    ends: Ends,
    changes: config::ConfigChanges,
    layers: Vec<PathBuf>,
    compression: Compression,
    store: &StoreArgs,
    out: &Output,
) -> Result<()> {
    let what = What {
        changes,
        layers,
        flatten: false,
        compression,
    };
    run_edit(ends, what, store, out)
}

fn run_edit(ends: Ends, what: What, store: &StoreArgs, out: &Output) -> Result<()> {
    let What {
        changes,
        layers,
        flatten,
        compression,
    } = what;
    let source: Transport = ends.source.parse().context("bad source")?;
    let destination: Transport = ends.destination.parse().context("bad destination")?;
    let options = ends.options(&[&source], &destination, compression, store)?;
    let (created, clamp_mtime) = created(ends.created.as_deref())?;
    let annotations = ends
        .annotation
        .iter()
        .map(|s| config::key_value("--annotation", s))
        .collect::<Result<Vec<_>, _>>()?;
    let edit = EditOptions {
        changes,
        annotations,
        flatten,
        layers,
        compression,
        created,
        clamp_mtime,
        staging: options.staging.clone(),
    };
    let (source_options, dest_options) = ends.access.apply(options.clone(), options)?;
    let from = source
        .open_source(&source_options)
        .with_context(|| format!("cannot read {source}"))?;
    let mut edited = EditedSource::new(from, &source.selector(), &edit)
        .with_context(|| format!("cannot change {source}"))?;
    copy_changed(&mut edited, &source, &destination, &dest_options, out)
}
