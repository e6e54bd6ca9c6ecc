//! `strata`: the command line over the Strata libraries. Argument parsing and output
//! only; every operation lives in a library crate.

mod image;
mod layer;
mod output;
mod store;
mod wclayer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Daemonless container image layer store and converter.
#[derive(Parser)]
#[command(name = "strata", version, about, max_term_width = 100)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors (no progress bars, no summaries).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print warnings and details as they happen.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(flatten)]
    store: store::StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with layers: in the store (create, apply, mount, diff, changes, rm, ...) or
    /// as files (unpack, pack, repack, digest, ls FILE).
    #[command(subcommand)]
    Layer(layer::LayerCommand),
    /// Repair what crashed processes left in the store: abandoned staging, half-removed
    /// layers, leftover mounts, files that belong to no layer.
    Cleanup,
    /// Check every layer of the store against its recorded diffID, parents, mounts and
    /// blobs; with --repair remove what is broken (never what is sound).
    Fsck {
        /// Remove broken layers (with the layers built on them), fix mount counts,
        /// remove orphans.
        #[arg(long)]
        repair: bool,
    },
    /// Windows container layers: import, export, from-rootfs, inspect, extract.
    #[command(subcommand)]
    Wclayer(wclayer::WclayerCommand),
    /// Copy images between transports (docker-archive:, oci:, oci-archive:, docker://).
    Copy(image::CopyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json, cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Layer(cmd) => layer::run(cmd, &cli.store, &out),
        Command::Cleanup => store::cleanup(&cli.store, &out),
        Command::Fsck { repair } => store::fsck(&cli.store, repair, &out),
        Command::Wclayer(cmd) => wclayer::run(cmd, &out),
        Command::Copy(args) => image::copy_cmd(args, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.clear_progress();
            if let Some(store::ExitStatus(code)) = e.downcast_ref::<store::ExitStatus>() {
                return ExitCode::from(*code);
            }
            eprintln!("strata: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
