//! `strata copy SRC DST`: images between transports (strata-image does the work).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::sync::Arc;
use strata_image::docker_archive::ArchiveFormat;
use strata_image::{
    copy, CopyOptions, ImageDestination, ImageSelector, ImageSource, LayerInfo, OpenOptions,
    Progress, RegistryOptions, SourceImage, Transport,
};
use strata_registry::Credentials;

use crate::args::{parse_platform, Compress};
use crate::output::Output;
use crate::store::StoreArgs;

/// Copy images between transports, skopeo-style.
///
/// Transports: docker-archive:PATH[:REF] (what docker save writes and docker load reads),
/// oci:DIR[:REF] (an OCI image layout), oci-archive:PATH[:REF] (a tar of one),
/// docker://HOST/REPO[:TAG|@DIGEST] (a registry). REF names an image (a name, or @N for
/// the N-th image of a source); without it a source must hold exactly one image (or use
/// --all). Blob digests are verified while layers stream, and diffIDs whenever layers
/// are unpacked or recompressed (with --verify-diff-ids, always); compressed layers are
/// kept as they are when the destination can hold them.
#[derive(Args)]
pub struct CopyArgs {
    /// Where the images come from.
    source: String,
    /// Where they go.
    destination: String,
    /// Layout of a docker-archive destination.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    format: Format,
    /// Compress layers that arrive uncompressed (default: none for oci: and
    /// oci-archive:, gzip for docker://).
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// Copy every image of the source (a multi-image archive, every tag of a layout).
    #[arg(long)]
    all: bool,
    /// Pick this platform (OS/ARCH[/VARIANT]) from multi-platform images (default: this machine's).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Layers copied at once (default: one per core; archives take one at a time).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Also check the diffID of every compressed layer passed through as it is (to a
    /// registry or a layout), by decompressing it on the side. Blob digests are always
    /// checked, and diffIDs always when layers are unpacked or recompressed.
    #[arg(long)]
    verify_diff_ids: bool,
    /// Spool pipes, compressed archives and layers pushed to registries here (default:
    /// $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR", env = "STRATA_TMPDIR")]
    tmpdir: Option<PathBuf>,
    #[command(flatten)]
    access: Access,
}

/// How a command with a source and a destination reaches their registries.
#[derive(Args)]
pub struct Access {
    /// Credentials for a docker:// source (default: the auth files of podman and docker).
    #[arg(long, value_name = "USER:PASSWORD")]
    src_creds: Option<String>,
    /// Credentials for a docker:// destination (default: the auth files).
    #[arg(long, value_name = "USER:PASSWORD")]
    dest_creds: Option<String>,
    /// Require HTTPS and a verified certificate from a docker:// source (loopback
    /// registries may speak plain HTTP either way).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    src_tls_verify: bool,
    /// Require HTTPS and a verified certificate from a docker:// destination.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    dest_tls_verify: bool,
    #[command(flatten)]
    timeout: RegistryTimeout,
}

impl Access {
    /// `source` and `destination` (the options each end opens with) with this end's
    /// credentials, TLS and timeout.
    pub fn apply(
        &self,
        source: OpenOptions,
        destination: OpenOptions,
    ) -> Result<(OpenOptions, OpenOptions)> {
        let src = registry_options(
            &source.registry,
            self.src_creds.as_deref(),
            self.src_tls_verify,
            self.timeout,
        )?;
        let dest = registry_options(
            &destination.registry,
            self.dest_creds.as_deref(),
            self.dest_tls_verify,
            self.timeout,
        )?;
        Ok((
            OpenOptions {
                registry: src,
                ..source
            },
            OpenOptions {
                registry: dest,
                ..destination
            },
        ))
    }
}

/// `--registry-timeout`, shared by every command that talks to registries.
#[derive(Args, Clone, Copy)]
pub struct RegistryTimeout {
    /// How long a registry may keep us waiting, in seconds (or with an `s`, `m` or `h`
    /// suffix): to connect, for response headers, for any one read or write, and for a
    /// request retried without progress. Raise it for slow links.
    #[arg(long = "registry-timeout", value_name = "DURATION", default_value = "30",
          env = "STRATA_REGISTRY_TIMEOUT", value_parser = parse_duration)]
    pub seconds: std::time::Duration,
}

/// `30`, `30s`, `2m` or `1h`: a positive duration.
fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let (number, unit) = match s.trim().find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.trim().split_at(i),
        None => (s.trim(), "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30, 30s, 2m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{s}`: the unit must be s, m or h")),
    };
    if secs == 0 {
        return Err("the timeout must be at least one second".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Docker 25+ layout: OCI layout plus manifest.json (loads in any Docker >= 1.10).
    Docker,
    /// Docker 1.10-24 layout: one <v1 id>/ directory per layer.
    DockerLegacy,
}

#[derive(Serialize)]
struct LayerReport {
    diff_id: String,
    source_digest: String,
    digest: String,
    media_type: String,
    size: u64,
    reused: bool,
}

#[derive(Serialize)]
struct ImageReport {
    id: String,
    names: Vec<String>,
    layers: Vec<LayerReport>,
}

#[derive(Serialize)]
struct SkippedReport {
    index: usize,
    digest: String,
    ref_name: Option<String>,
    reason: String,
}

#[derive(Serialize)]
struct CopyReport {
    source: String,
    destination: String,
    images: Vec<ImageReport>,
    /// With --all: the source's entries that are not images, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<SkippedReport>,
}

fn transport(s: &str, role: &str) -> Result<Transport> {
    let t: Transport = s.parse().with_context(|| format!("bad {role}"))?;
    Ok(t)
}

/// `--creds USER:PASSWORD` (else the auth files), `--tls-verify` and
/// `--registry-timeout` for one registry.
pub fn registry_options(
    base: &RegistryOptions,
    creds: Option<&str>,
    tls_verify: bool,
    timeout: RegistryTimeout,
) -> Result<RegistryOptions> {
    let mut options = base.clone();
    options.client.timeout = timeout.seconds;
    options.client.connect_timeout = timeout.seconds;
    options.client.io_timeout = timeout.seconds;
    if let Some(c) = creds {
        options.credentials = Some(Credentials::from_user_pass(c).context("bad credentials")?);
    }
    options.client.tls_verify = tls_verify;
    Ok(options)
}

pub fn copy_cmd(args: CopyArgs, store: &StoreArgs, out: &Output) -> Result<()> {
    let source = transport(&args.source, "source")?;
    let destination = transport(&args.destination, "destination")?;
    let mut options = OpenOptions {
        format: match args.format {
            Format::Docker => ArchiveFormat::Docker,
            Format::DockerLegacy => ArchiveFormat::DockerLegacy,
        },
        ..OpenOptions::default()
    };
    if let Some(c) = args.compress {
        options.compress = c.into();
        options.registry.compress = c.into();
    }
    if let Some(p) = &args.platform {
        options.platform = parse_platform(p)?;
    }
    if let Some(t) = args.tmpdir {
        options.staging = t;
    }
    if [&source, &destination]
        .iter()
        .any(|t| matches!(t, Transport::Strata { .. }))
    {
        options.store = Some(Arc::new(store.open()?));
    }
    let selector = if args.all {
        if source.selector() != ImageSelector::Only {
            bail!("--all copies every image; the source {source} names one");
        }
        ImageSelector::All
    } else {
        source.selector()
    };
    let (source_options, dest_options) = args
        .access
        .apply(options.clone().copying_to(&destination), options)?;
    let mut from = source
        .open_source(&source_options)
        .with_context(|| format!("cannot read {source}"))?;
    let mut options = copy_options(selector, args.jobs);
    options.verify_diff_ids = args.verify_diff_ids;
    copy_to(
        from.as_mut(),
        &destination,
        &dest_options,
        options,
        (&source.to_string(), &destination.to_string()),
        writes_to_stdout(&destination),
        out,
    )
    .map(drop)
}

/// Opens `destination` and copies `from` to it: the end of `copy`, `save` and `load`.
/// `names` are the source and destination as a person wrote them.
pub fn copy_to(
    from: &mut dyn ImageSource,
    destination: &Transport,
    options: &OpenOptions,
    copy: CopyOptions<'_>,
    names: (&str, &str),
    to_stdout: bool,
    out: &Output,
) -> Result<strata_image::CopyReport> {
    let mut to = destination
        .open_destination(options)
        .with_context(|| format!("cannot write {}", names.1))?;
    run_copy(from, to.as_mut(), copy, names, to_stdout, out)
}

/// The options of a copy of the `images` chosen, `jobs` layers at once (default: one
/// per core).
pub fn copy_options(images: ImageSelector, jobs: Option<usize>) -> CopyOptions<'static> {
    let mut options = CopyOptions::new(images);
    if let Some(jobs) = jobs {
        options.jobs = jobs.max(1);
    }
    options
}

/// Runs a copy with progress bars and prints what it did: the report of `strata copy`,
/// and of `save`, `load`, `pull` and `push`, which are copies too. `names` are the
/// source and destination as a person wrote them; the progress of `options` is the bars.
pub fn run_copy(
    from: &mut dyn ImageSource,
    to: &mut dyn ImageDestination,
    options: CopyOptions<'_>,
    names: (&str, &str),
    to_stdout: bool,
    out: &Output,
) -> Result<strata_image::CopyReport> {
    let (source, destination) = names;
    let bars = Bars::new(out);
    let copy_options = options.with_progress(&bars);
    let report = copy(from, to, &copy_options)
        .with_context(|| format!("cannot copy {source} to {destination}"))?;
    bars.clear();
    let json = CopyReport {
        source: source.to_string(),
        destination: destination.to_string(),
        images: report
            .images
            .iter()
            .map(|i| ImageReport {
                id: i.id.to_string(),
                names: i.names.iter().map(|n| n.to_string()).collect(),
                layers: i
                    .layers
                    .iter()
                    .map(|l| LayerReport {
                        diff_id: l.source.diff_id.to_string(),
                        source_digest: l.source.blob.digest.to_string(),
                        digest: l.stored.digest.to_string(),
                        media_type: l.stored.media_type.clone(),
                        size: l.stored.size,
                        reused: l.reused,
                    })
                    .collect(),
            })
            .collect(),
        skipped: report
            .skipped
            .iter()
            .map(|s| SkippedReport {
                index: s.index,
                digest: s.digest.to_string(),
                ref_name: s.ref_name.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
    };
    for w in &report.warnings {
        out.detail(w);
    }
    if !out.json {
        for s in &report.skipped {
            out.note(&format!("skipped {s}"));
        }
    }
    // `strata:` alone is the store of load and pull.
    let shown = if destination == "strata:" {
        "the store"
    } else {
        destination
    };
    let summary = || {
        json.images
            .iter()
            .map(|i| {
                let reused = i.layers.iter().filter(|l| l.reused).count();
                let names = if i.names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", i.names.join(", "))
                };
                let n = i.layers.len();
                format!(
                    "copied {}{names} to {shown}: {n} layer{} ({reused} already there)",
                    i.id,
                    if n == 1 { "" } else { "s" },
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if to_stdout {
        // Standard output carries the archive: the report goes to standard error.
        if out.json {
            eprintln!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            out.note(&summary());
        }
        return Ok(report);
    }
    out.result(&json, summary)?;
    Ok(report)
}

/// Whether the destination's file is this process's standard output (`/dev/stdout`).
pub fn writes_to_stdout(t: &Transport) -> bool {
    match t {
        Transport::DockerArchive { path, .. } | Transport::OciArchive { path, .. } => {
            crate::io::is_stdout(path)
        }
        _ => false,
    }
}

/// One progress bar per layer (several at once when layers are copied in parallel), on
/// a terminal only; with `--json`, the same as JSON lines on standard error for programs
/// (`image`, `layer_start`, `layer_progress` at most every 200 ms per layer, `layer_done`).
struct Bars {
    multi: Option<MultiProgress>,
    layers: Mutex<HashMap<usize, ProgressBar>>,
    /// With `--json`: per layer, bytes so far and when the last event went out.
    events: Option<Mutex<HashMap<usize, (u64, Instant)>>>,
}

/// How often a layer's byte count is reported as an event, at most.
const EVENT_INTERVAL: Duration = Duration::from_millis(200);

/// A progress event on standard error, one JSON line each. Fields are in alphabetical
/// order, as they have always been printed.
#[derive(Serialize)]
#[serde(untagged)]
enum Event<'a> {
    Image {
        count: usize,
        event: &'static str,
        id: String,
        layers: usize,
        name: &'a str,
        position: usize,
    },
    LayerStart {
        digest: String,
        event: &'static str,
        layer: usize,
        size: u64,
    },
    LayerProgress {
        bytes: u64,
        event: &'static str,
        layer: usize,
        size: u64,
    },
    LayerDone {
        bytes: u64,
        digest: String,
        event: &'static str,
        layer: usize,
        reused: bool,
    },
}

fn event(value: Event<'_>) {
    let mut err = std::io::stderr().lock();
    // Progress is advisory: a closed stderr must not fail the copy.
    let _ = serde_json::to_writer(&mut err, &value).map(|()| writeln!(err));
}

impl Bars {
    fn new(out: &Output) -> Bars {
        let multi = out
            .bars_visible()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars {
            multi,
            layers: Mutex::new(HashMap::new()),
            events: out.events_visible().then(|| Mutex::new(HashMap::new())),
        }
    }

    fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    fn with_bar(&self, layer: &LayerInfo, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.layers.lock() {
            if let Some(bar) = bars.get(&layer.index) {
                f(bar);
            }
        }
    }
}

impl Progress for Bars {
    fn image(&self, position: usize, count: usize, image: &SourceImage) {
        let name = image
            .summary
            .names
            .first()
            .map_or_else(|| image.summary.id.to_string(), |n| n.familiar());
        if let Some(m) = &self.multi {
            let _ = m.println(format!("image {}/{count}: {name}", position + 1));
        }
        if let Ok(mut bars) = self.layers.lock() {
            bars.clear();
        }
        if let Some(events) = &self.events {
            if let Ok(mut e) = events.lock() {
                e.clear();
            }
            event(Event::Image {
                count,
                event: "image",
                id: image.summary.id.to_string(),
                layers: image.layers.len(),
                name: &name,
                position: position + 1,
            });
        }
    }

    fn layer_start(&self, layer: &LayerInfo) {
        if let Some(events) = &self.events {
            if let Ok(mut e) = events.lock() {
                e.insert(layer.index, (0, Instant::now()));
            }
            event(Event::LayerStart {
                digest: layer.blob.digest.to_string(),
                event: "layer_start",
                layer: layer.index,
                size: layer.blob.size,
            });
        }
        let Some(m) = &self.multi else { return };
        let bar = m.add(ProgressBar::new(layer.blob.size));
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!(
            "layer {} {}",
            layer.index + 1,
            &layer.blob.digest.hex()[..12]
        ));
        if let Ok(mut bars) = self.layers.lock() {
            bars.insert(layer.index, bar);
        }
    }

    fn layer_bytes(&self, layer: &LayerInfo, bytes: u64) {
        self.with_bar(layer, |b| b.inc(bytes));
        let Some(events) = &self.events else { return };
        let due = events.lock().ok().and_then(|mut e| {
            let (done, last) = e.entry(layer.index).or_insert((0, Instant::now()));
            *done += bytes;
            (last.elapsed() >= EVENT_INTERVAL).then(|| {
                *last = Instant::now();
                *done
            })
        });
        if let Some(done) = due {
            event(Event::LayerProgress {
                bytes: done,
                event: "layer_progress",
                layer: layer.index,
                size: layer.blob.size,
            });
        }
    }

    fn layer_done(&self, layer: &LayerInfo, reused: bool) {
        self.with_bar(layer, |b| {
            if reused {
                b.finish_with_message(format!("{} (already there)", b.message()));
            } else {
                b.finish();
            }
        });
        if let Some(events) = &self.events {
            let done = events
                .lock()
                .ok()
                .and_then(|e| e.get(&layer.index).map(|(d, _)| *d))
                .unwrap_or(0);
            event(Event::LayerDone {
                bytes: done,
                digest: layer.blob.digest.to_string(),
                event: "layer_done",
                layer: layer.index,
                reused,
            });
        }
    }
}
