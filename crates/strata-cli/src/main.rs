//! `strata`: the command line over the Strata libraries. Argument parsing and output
//! only; every operation lives in a library crate.

mod image;
mod layer;
mod output;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with single layers: unpack, pack, repack, digest, list.
    #[command(subcommand)]
    Layer(layer::LayerCommand),
    /// Copy images between transports (docker-archive:, oci:, oci-archive:).
    Copy(image::CopyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json, cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Layer(cmd) => layer::run(cmd, &out),
        Command::Copy(args) => image::copy_cmd(args, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.clear_progress();
            eprintln!("strata: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
