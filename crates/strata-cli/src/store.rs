//! The store commands: `strata layer create|apply|mount|umount|diff|changes|diff-size|
//! inspect|ls|exists|rm`, `strata cleanup`, `strata fsck`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use strata_store::{
    ApplyOptions, ChangeKind, CreateOptions, DriverKind, Layer, LayerId, LockHolder, LockWait, Os,
    StorageOptions, Store, StoreOptions,
};

use crate::args::Compress;
use crate::io::{open_input, write_output};
use crate::output::Output;

/// Where the store is (global options).
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The store's root directory [default: /var/lib/strata as root, else
    /// $XDG_DATA_HOME/strata].
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// The storage driver of a new store (an existing store keeps its own and refuses
    /// another) [default: overlay where a probe mount works, else vfs].
    #[arg(long, global = true, env = "STRATA_DRIVER", value_parser = driver_kind())]
    driver: Option<DriverKind>,
    /// Give up when another process holds the store lock this long (seconds, e.g. 10 or
    /// 0.5) [default: wait as long as it takes, saying for whom after a second].
    #[arg(long, global = true, env = "STRATA_LOCK_TIMEOUT", value_name = "SECONDS", value_parser = seconds)]
    lock_timeout: Option<Duration>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayerOs {
    Linux,
    Windows,
}

/// `--driver`: the names of [`DriverKind`], listed in the help.
fn driver_kind() -> impl clap::builder::TypedValueParser<Value = DriverKind> {
    use clap::builder::TypedValueParser;
    let names = [DriverKind::Overlay.name(), DriverKind::Vfs.name()];
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|name| DriverKind::parse(&name).ok_or(format!("unknown driver `{name}`")))
}

impl StoreArgs {
    pub fn open(&self) -> Result<Store> {
        let root = self.root.clone().unwrap_or_else(StoreOptions::default_root);
        let driver = self.driver;
        let lock_wait = LockWait {
            timeout: self.lock_timeout,
            notice: Some(Arc::new(|holder: &LockHolder| {
                eprintln!("strata: waiting for {holder}");
            })),
        };
        Store::open_with(
            &StoreOptions {
                root: root.clone(),
                driver,
            },
            lock_wait,
        )
        .with_context(|| format!("cannot open the store at {}", root.display()))
    }
}

/// A quiet non-zero exit (`layer exists` of a missing layer).
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

fn layer_id(s: &str) -> Result<LayerId, String> {
    LayerId::new(s).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
pub enum StoreLayerCommand {
    /// Create a layer in the store: read-only and empty (to be filled by `apply`), or
    /// read-write with --rw (a container layer).
    Create {
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The layer to build on (an applied read-only layer).
        #[arg(long, value_parser = layer_id, value_name = "ID")]
        parent: Option<LayerId>,
        /// A read-write layer.
        #[arg(long)]
        rw: bool,
        /// The most a read-write layer may hold (20G, 1.5GB, 512m; needs project quotas).
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// A storage option KEY=VALUE (known: size).
        #[arg(long = "storage-opt", value_name = "KEY=VALUE")]
        storage_opt: Vec<String>,
    },
    /// Apply a diff (a layer tar, plain, gzip or zstd) to an empty read-only layer;
    /// prints its diffID and size. A failed apply leaves the layer empty.
    Apply {
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The diff, or - for standard input.
        #[arg(short, long, value_name = "DIFF")]
        input: PathBuf,
        /// Do not confine the writer with Landlock.
        #[arg(long)]
        no_sandbox: bool,
        /// Apply trusted.* and security.* xattrs (other than security.capability) too.
        #[arg(long)]
        privileged_xattrs: bool,
        /// What the diff is: a Linux layer, or a Windows layer tar (kept as a layer
        /// folder; its parents must be Windows layers; never mounted).
        #[arg(long, value_enum, default_value_t = LayerOs::Linux)]
        os: LayerOs,
    },
    /// Mount a layer and print the path of its merged view (counted: every mount needs
    /// an umount, from any process).
    Mount {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Match one mount; the last one unmounts.
    Umount {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Write a layer's diff as a tar: an applied layer's original tar, bit-exact; a
    /// read-write layer's changes.
    Diff {
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The output file, or - for standard output.
        #[arg(short, long, value_name = "FILE", default_value = "-")]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = Compress::None)]
        compress: Compress,
    },
    /// List what a layer adds (A), changes (C) and deletes (D), like `docker diff`.
    Changes {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Print the bytes of file data a layer adds or rewrites.
    DiffSize {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Show a layer: status, parents, diffID, sizes, mounts, driver paths.
    Inspect {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Exit 0 if the layer exists, 1 if not (prints nothing).
    Exists {
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Remove layers (refused while mounted or with children).
    Rm {
        #[arg(value_parser = layer_id, required = true)]
        ids: Vec<LayerId>,
    },
}

pub fn run_layer(cmd: StoreLayerCommand, args: &StoreArgs, out: &Output) -> Result<()> {
    let store = args.open()?;
    match cmd {
        StoreLayerCommand::Create {
            id,
            parent,
            rw,
            size,
            storage_opt,
        } => {
            let mut pairs: Vec<String> = storage_opt;
            if let Some(size) = size {
                pairs.push(format!("size={size}"));
            }
            let storage = StorageOptions::parse(pairs.iter().map(String::as_str))?;
            let layer = store
                .create(
                    &id,
                    parent.as_ref(),
                    &CreateOptions {
                        writable: rw,
                        storage,
                    },
                )
                .with_context(|| format!("cannot create layer {id}"))?;
            out.result(&LayerView::from(&layer), || layer.id.to_string())
        }
        StoreLayerCommand::Apply {
            id,
            input,
            no_sandbox,
            privileged_xattrs,
            os,
        } => {
            let (reader, len) = open_input(&input)?;
            let bar = out.progress("applying", len);
            let applied = store
                .apply(
                    &id,
                    bar.wrap_read(reader),
                    &ApplyOptions {
                        sandbox: !no_sandbox,
                        privileged_xattrs,
                        os: match os {
                            LayerOs::Linux => Os::Linux,
                            LayerOs::Windows => Os::Windows,
                        },
                    },
                )
                .with_context(|| format!("cannot apply {} to layer {id}", input.display()))?;
            let sandbox = out.sandbox(applied.sandbox.as_ref());
            out.warnings(&applied.warnings);
            #[derive(Serialize)]
            struct Report {
                id: String,
                diff_id: String,
                size: u64,
                tar_size: u64,
                blob_digest: String,
                blob_size: u64,
                compression: String,
                entries: u64,
                sandbox: String,
                warnings: Vec<String>,
            }
            let d = &applied.diff;
            let report = Report {
                id: id.to_string(),
                diff_id: d.diff_id.to_string(),
                size: d.diff_size,
                tar_size: d.tar_size,
                blob_digest: d.blob_digest.to_string(),
                blob_size: d.blob_size,
                compression: d.compression.clone(),
                entries: applied.entries,
                sandbox,
                warnings: applied.warnings.clone(),
            };
            out.result(&report, || {
                format!(
                    "applied {} entries to layer {id}\ndiffID {}\nsize   {} bytes",
                    applied.entries, d.diff_id, d.diff_size
                )
            })
        }
        StoreLayerCommand::Mount { id } => {
            let path = store
                .mount(&id)
                .with_context(|| format!("cannot mount layer {id}"))?;
            out.result(
                &MountView {
                    id: id.to_string(),
                    path: path.clone(),
                },
                || path.display().to_string(),
            )
        }
        StoreLayerCommand::Umount { id } => {
            let left = store
                .unmount(&id)
                .with_context(|| format!("cannot unmount layer {id}"))?;
            out.result(
                &UnmountView {
                    id: id.to_string(),
                    mounts: left,
                },
                || {
                    if left == 0 {
                        format!("{id} unmounted")
                    } else {
                        format!("{id} still mounted {left} more times")
                    }
                },
            )
        }
        StoreLayerCommand::Diff {
            id,
            output,
            compress,
        } => {
            if output == Path::new("-") && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("refusing to write a layer tar to a terminal: use -o FILE or a pipe");
            }
            let bar = out.progress("writing the diff", None);
            let d = write_output(&output, |w| {
                store
                    .diff(&id, bar.wrap_write(w), compress.into())
                    .with_context(|| format!("cannot write the diff of layer {id}"))
            })?;
            if output == Path::new("-") && !out.json {
                return Ok(());
            }
            out.result(
                &DiffView {
                    blob_digest: d.blob_digest.to_string(),
                    blob_size: d.blob_size,
                    compression: d.compression.to_string(),
                    diff_id: d.diff_id.to_string(),
                    id: id.to_string(),
                    tar_size: d.tar_size,
                },
                || {
                    format!(
                        "diffID {} ({} bytes)\nblob   {} ({}, {} bytes)",
                        d.diff_id, d.tar_size, d.blob_digest, d.compression, d.blob_size
                    )
                },
            )
        }
        StoreLayerCommand::Changes { id } => {
            let changes = store
                .changes(&id)
                .with_context(|| format!("cannot list the changes of layer {id}"))?;
            #[derive(Serialize)]
            struct ChangeView {
                kind: &'static str,
                path: String,
            }
            let views: Vec<ChangeView> = changes
                .iter()
                .map(|c| ChangeView {
                    kind: match c.kind {
                        ChangeKind::Added => "added",
                        ChangeKind::Modified => "modified",
                        ChangeKind::Deleted => "deleted",
                    },
                    path: format!("/{}", c.path),
                })
                .collect();
            out.result(&views, || {
                changes
                    .iter()
                    .map(|c| format!("{} /{}", c.kind.letter(), c.path))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        StoreLayerCommand::DiffSize { id } => {
            let size = store
                .diff_size(&id)
                .with_context(|| format!("cannot measure layer {id}"))?;
            out.result(
                &DiffSizeView {
                    id: id.to_string(),
                    size,
                },
                || size.to_string(),
            )
        }
        StoreLayerCommand::Inspect { id } => {
            // A frozen layer's diffID is made on first need: this is one.
            if store.layer(&id).is_ok_and(|l| l.diff_pending()) {
                store
                    .settle(&id)
                    .with_context(|| format!("cannot make the diffID of layer {id}"))?;
            }
            let d = store
                .inspect(&id)
                .with_context(|| format!("cannot inspect layer {id}"))?;
            #[derive(Serialize)]
            struct Details {
                #[serde(flatten)]
                layer: LayerView,
                parents: Vec<String>,
                children: Vec<String>,
                driver: &'static str,
                content: PathBuf,
                #[serde(skip_serializing_if = "Option::is_none")]
                work: Option<PathBuf>,
                #[serde(skip_serializing_if = "Option::is_none")]
                merged: Option<PathBuf>,
                #[serde(skip_serializing_if = "Option::is_none")]
                recipe: Option<PathBuf>,
            }
            let view = Details {
                layer: LayerView::from(&d.layer),
                parents: d.parents.iter().map(|p| p.to_string()).collect(),
                children: d.children.iter().map(|p| p.to_string()).collect(),
                driver: d.driver.name(),
                content: d.content.clone(),
                work: d.work.clone(),
                merged: d.merged.clone(),
                recipe: d.recipe.clone(),
            };
            out.result(&view, || {
                serde_json::to_string_pretty(&view).unwrap_or_default()
            })
        }
        StoreLayerCommand::Exists { id } => {
            if store.exists(&id)? {
                Ok(())
            } else {
                Err(ExitStatus(1).into())
            }
        }
        StoreLayerCommand::Rm { ids } => {
            for id in &ids {
                store
                    .remove(id)
                    .with_context(|| format!("cannot remove layer {id}"))?;
                let removed = RemovedView {
                    removed: id.to_string(),
                };
                out.result(&removed, || id.to_string())?;
            }
            Ok(())
        }
    }
}

// The JSON views below list their fields in alphabetical order: the order these
// reports have always had (they were maps), kept so that the output does not change.

/// `layer mount`: where the layer's tree is.
#[derive(Serialize)]
struct MountView {
    id: String,
    path: PathBuf,
}

/// `layer umount`: how many mounts are left.
#[derive(Serialize)]
struct UnmountView {
    id: String,
    mounts: u32,
}

/// `layer diff`: the layer tar written.
#[derive(Serialize)]
struct DiffView {
    blob_digest: String,
    blob_size: u64,
    compression: String,
    diff_id: String,
    id: String,
    tar_size: u64,
}

/// `layer diff-size`.
#[derive(Serialize)]
struct DiffSizeView {
    id: String,
    size: u64,
}

/// `layer rm`: one line per layer removed.
#[derive(Serialize)]
struct RemovedView {
    removed: String,
}

/// A layer as listings show it.
#[derive(Serialize)]
struct LayerView {
    id: String,
    parent: Option<String>,
    status: &'static str,
    os: &'static str,
    created: i64,
    depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tar_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blob_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_limit: Option<u64>,
    mounts: u32,
    /// A read-write layer's init layer (the runtime's mountpoints, kept out of its changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    init_layer: Option<String>,
    /// For an init layer: the read-write layer it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    init_for: Option<String>,
}

impl From<&Layer> for LayerView {
    fn from(l: &Layer) -> Self {
        LayerView {
            id: l.id.to_string(),
            parent: l.parent.as_ref().map(|p| p.to_string()),
            status: l.status.name(),
            os: l.os.name(),
            created: l.created,
            depth: l.depth,
            diff_id: l.diff.as_ref().map(|d| d.diff_id.to_string()),
            size: l.diff.as_ref().map(|d| d.diff_size),
            tar_size: l.diff.as_ref().map(|d| d.tar_size),
            blob_digest: l.diff.as_ref().map(|d| d.blob_digest.to_string()),
            compression: l.diff.as_ref().map(|d| d.compression.clone()),
            size_limit: l.size_limit,
            mounts: l.mounts,
            init_layer: l.init_layer.as_ref().map(|p| p.to_string()),
            init_for: l.init_for.as_ref().map(|p| p.to_string()),
        }
    }
}

/// `strata layer ls`: the store's layers as a table.
pub fn ls_layers(args: &StoreArgs, all: bool, out: &Output) -> Result<()> {
    let store = args.open()?;
    // Layers containerd committed get their diffIDs on first need: listing them is one.
    store
        .settle_pending()
        .context("cannot make the diffIDs of the layers containerd committed")?;
    let layers = store.layers()?;
    let views: Vec<LayerView> = layers
        .iter()
        .filter(|l| all || l.init_for.is_none())
        .map(LayerView::from)
        .collect();
    out.result(&views, || {
        let mut t = format!(
            "{:<24} {:<24} {:<10} {:<7} {:<19} {:>12} {:>6}",
            "ID", "PARENT", "STATUS", "OS", "DIFF ID", "SIZE", "MOUNTS"
        );
        for v in &views {
            let short = |s: &str| s.chars().take(24).collect::<String>();
            t.push('\n');
            t.push_str(&format!(
                "{:<24} {:<24} {:<10} {:<7} {:<19} {:>12} {:>6}",
                short(&v.id),
                short(v.parent.as_deref().unwrap_or("-")),
                v.status,
                v.os,
                v.diff_id
                    .as_deref()
                    .map(|d| d.chars().take(19).collect::<String>())
                    .unwrap_or_else(|| "-".into()),
                v.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                v.mounts
            ));
        }
        t
    })
}

pub fn snapshotter(args: &StoreArgs, address: &std::path::Path, quiet: bool) -> Result<()> {
    let store = args.open()?;
    let root = store.root().to_path_buf();
    strata_snapshotter::serve(store, address, || {
        if !quiet {
            eprintln!(
                "strata: serving the snapshots of {} on {}",
                root.display(),
                address.display()
            );
        }
    })
    .with_context(|| format!("snapshotter on {}", address.display()))
}

pub fn cleanup(args: &StoreArgs, out: &Output) -> Result<()> {
    let store = args.open()?;
    let done = store.cleanup().context("cleanup failed")?;
    #[derive(Serialize)]
    struct CleanupView<'a> {
        actions: &'a [String],
    }
    out.result(
        &CleanupView {
            actions: &done.actions,
        },
        || {
            if done.actions.is_empty() {
                "nothing to clean up".to_string()
            } else {
                done.actions.join("\n")
            }
        },
    )
}

pub fn fsck(args: &StoreArgs, repair: bool, out: &Output) -> Result<()> {
    let store = args.open()?;
    let report = store.fsck(repair).context("fsck failed")?;
    #[derive(Serialize)]
    struct ProblemView {
        layer: Option<String>,
        problem: String,
    }
    #[derive(Serialize)]
    struct FsckView<'a> {
        blobs_checked: usize,
        clean: bool,
        layers_checked: usize,
        problems: &'a [ProblemView],
        repairs: &'a [String],
    }
    let problems: Vec<ProblemView> = report
        .problems
        .iter()
        .map(|p| ProblemView {
            layer: p.layer.as_ref().map(|l| l.to_string()),
            problem: p.what.clone(),
        })
        .collect();
    out.result(
        &FsckView {
            blobs_checked: report.blobs_checked,
            clean: report.clean(),
            layers_checked: report.layers_checked,
            problems: &problems,
            repairs: &report.repairs,
        },
        || {
            let mut t = format!(
                "checked {} layers and {} blobs: {}",
                report.layers_checked,
                report.blobs_checked,
                if report.clean() {
                    "no problems".to_string()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            for p in &problems {
                t.push_str(&format!(
                    "\n  {}{}",
                    p.layer
                        .as_deref()
                        .map(|l| format!("layer {l}: "))
                        .unwrap_or_default(),
                    p.problem
                ));
            }
            for r in &report.repairs {
                t.push_str(&format!("\n  repaired: {r}"));
            }
            t
        },
    )?;
    if !report.clean() && !repair {
        return Err(ExitStatus(1).into());
    }
    Ok(())
}
