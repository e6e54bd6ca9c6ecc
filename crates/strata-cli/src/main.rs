//! `strata`: the command line over the Strata libraries. Argument parsing and output
//! only; every operation lives in a library crate.

mod args;
mod edit;
mod help;
mod hint;
mod image;
mod images;
mod io;
mod layer;
mod manual;
mod output;
mod refs;
mod registry;
mod store;
mod wclayer;

use std::process::ExitCode;

use clap::{FromArgMatches, Parser, Subcommand};

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
    /// Copy images between transports (docker-archive:, oci:, oci-archive:, strata:,
    /// docker://).
    Copy(image::CopyArgs),
    /// Pull an image from a registry into the store (layers it has are not fetched).
    Pull(registry::PullArgs),
    /// Push an image of the store to a registry (blobs the registry has are not sent).
    Push(registry::PushArgs),
    /// List the store's images.
    Images,
    /// Show an image: its config, layers (diffIDs, chain IDs, sizes, kept blobs), names.
    /// An image of the store, or of a transport as skopeo inspect takes it
    /// (docker-archive:FILE[:REF], oci:DIR[:REF], oci-archive:FILE[:REF], docker://REF).
    Inspect {
        /// A name, an image ID or a unique prefix of one; or a transport.
        image: String,
        /// Print the manifest exactly as stored (for an archive that stores none, the
        /// Docker schema 2 manifest of its config and layers).
        #[arg(long)]
        raw: bool,
        /// Print the config exactly as stored.
        #[arg(long, conflicts_with = "raw")]
        config: bool,
        /// Pick this platform (OS/ARCH[/VARIANT]) from a multi-platform image.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
    },
    /// Give an image another name (moved from another image that has it); for
    /// docker://REF or oci:DIR:REF, TARGET is a tag added in the same repository or
    /// layout (no blob moves).
    Tag {
        /// The image (name, ID or ID prefix), or docker://REF, oci:DIR:REF.
        source: String,
        /// The new name (`busybox` is docker.io/library/busybox:latest).
        target: String,
    },
    /// Remove images, and the layers no other image or layer needs.
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
        /// Remove the image even when read-write layers (containers) sit on it; the
        /// layers they need stay.
        #[arg(short, long)]
        force: bool,
    },
    /// Show an image's history (newest first).
    History { image: String },
    /// Write images to an archive (docker save), streaming, bit-exact layers.
    Save(images::SaveArgs),
    /// Read the images of an archive into the store (docker load); all or nothing.
    Load(images::LoadArgs),
    /// Make a container layer's changes a new image on top of the image it sits on.
    Commit {
        /// The read-write layer.
        #[arg(value_parser = |s: &str| strata_store::LayerId::new(s).map_err(|e| e.to_string()))]
        layer: strata_store::LayerId,
        /// The new image's name.
        image: String,
        /// The image the layer sits on, when several images end in its parent layer.
        #[arg(long, value_name = "IMAGE")]
        base: Option<String>,
        /// A comment for the new history entry.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Change an image's config (entrypoint, cmd, env, labels, user, workdir, ports,
    /// volumes, stop signal, annotations) from SRC to DEST; no layer is moved.
    Mutate(edit::MutateArgs),
    /// Add layers (directories or tars) on top of an image from SRC to DEST; only the new
    /// layers are written or uploaded.
    Append(edit::AppendArgs),
    /// Replace an image's layers with one (their merged filesystem, whiteouts applied),
    /// from SRC to DEST.
    Flatten(edit::FlattenArgs),
    /// Replace an image's old base layers with a new base's, from SRC to DEST.
    Rebase(edit::RebaseArgs),
    /// Write an image's merged filesystem as one tar (as `docker export` gives it).
    Export(edit::ExportArgs),
    /// Multi-platform indexes of images already in a repository or layout: create,
    /// append, remove.
    #[command(subcommand)]
    Index(refs::IndexCommand),
    /// Print the manifest an image reference names, as stored (on a registry: an index
    /// stays an index).
    Manifest(refs::RefArgs),
    /// Print the config of an image, as stored.
    Config(refs::RefArgs),
    /// Print the digest of the manifest an image reference names.
    Digest(refs::RefArgs),
    /// List the tags of a repository (docker://HOST/REPO, every page) or the names in a
    /// layout or archive.
    Ls(refs::RefArgs),
    /// List the repositories of a registry (HOST[:PORT]).
    Catalog {
        host: String,
        #[command(flatten)]
        reach: refs::Reach,
    },
    /// Delete a manifest from a registry (docker://REF: every tag of it goes), or a name
    /// from a layout (oci:DIR:NAME; blobs stay).
    Delete(refs::RefArgs),
    /// Make a one-layer image of a directory.
    ImportDir {
        dir: std::path::PathBuf,
        image: String,
    },
    /// Print the shell completion script for strata (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// Write the man pages (strata.1 and one per command) into a directory.
    #[command(hide = true)]
    Manual { dir: std::path::PathBuf },
    /// Serve the store to containerd as a proxy snapshotter (its snapshots gRPC API) on a
    /// unix socket, until SIGTERM or SIGINT.
    Snapshotter {
        /// The unix socket to listen on (containerd's `proxy_plugins` `address`).
        #[arg(long, value_name = "SOCK")]
        address: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // The definition with its examples and version attached (help.rs).
    let cli = Cli::from_arg_matches(&help::command().get_matches()).unwrap_or_else(|e| e.exit());
    let out = output::Output::new(cli.json, cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Layer(cmd) => layer::run(cmd, &cli.store, &out),
        Command::Cleanup => store::cleanup(&cli.store, &out),
        Command::Fsck { repair } => store::fsck(&cli.store, repair, &out),
        Command::Wclayer(cmd) => wclayer::run(cmd, &out),
        Command::Copy(args) => image::copy_cmd(args, &cli.store, &out),
        Command::Pull(args) => registry::pull(args, &cli.store, &out),
        Command::Push(args) => registry::push(args, &cli.store, &out),
        Command::Images => images::images(&cli.store, &out),
        Command::Inspect {
            image,
            raw,
            config,
            platform,
        } => images::inspect(
            &cli.store,
            &image,
            images::InspectWhat { raw, config },
            platform.as_deref(),
            &out,
        ),
        Command::Tag { source, target } if refs::is_transport(&source) => {
            refs::tag(&source, &target, &cli.store, &out)
        }
        Command::Tag { source, target } => images::tag(&cli.store, &source, &target, &out),
        Command::Rmi {
            images: list,
            force,
        } => images::rmi(&cli.store, &list, force, &out),
        Command::History { image } => images::history(&cli.store, &image, &out),
        Command::Save(args) => images::save(args, &cli.store, &out),
        Command::Load(args) => images::load(args, &cli.store, &out),
        Command::Commit {
            layer,
            image,
            base,
            message,
        } => images::commit(
            &cli.store,
            &layer,
            &image,
            base.as_deref(),
            message.as_deref(),
            &out,
        ),
        Command::Mutate(args) => edit::mutate(args, &cli.store, &out),
        Command::Append(args) => edit::append(args, &cli.store, &out),
        Command::Flatten(args) => edit::flatten(args, &cli.store, &out),
        Command::Rebase(args) => edit::rebase(args, &cli.store, &out),
        Command::Export(args) => edit::export(args, &cli.store, &out),
        Command::Index(cmd) => refs::index(cmd, &cli.store, &out),
        Command::Manifest(args) => refs::manifest(args, &cli.store),
        Command::Config(args) => refs::config(args, &cli.store),
        Command::Digest(args) => refs::digest(args, &cli.store, &out),
        Command::Ls(args) => refs::ls(args, &cli.store, &out),
        Command::Catalog { host, reach } => refs::catalog(&host, reach, &cli.store, &out),
        Command::Delete(args) => refs::delete(args, &cli.store, &out),
        Command::ImportDir { dir, image } => images::import_dir(&cli.store, &dir, &image, &out),
        Command::Completion { shell } => manual::completion(shell),
        Command::Manual { dir } => manual::manual(&dir),
        Command::Snapshotter { address } => store::snapshotter(&cli.store, &address, cli.quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.clear_progress();
            if let Some(store::ExitStatus(code)) = e.downcast_ref::<store::ExitStatus>() {
                return ExitCode::from(*code);
            }
            if e.downcast_ref::<output::StdoutClosed>().is_some() {
                return ExitCode::from(141);
            }
            eprintln!("strata: error: {e:#}");
            if let Some(next) = hint::hint(&e) {
                eprintln!("strata: hint: {next}");
            }
            ExitCode::FAILURE
        }
    }
}
