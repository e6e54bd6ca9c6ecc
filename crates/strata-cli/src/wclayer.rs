//! `strata wclayer ...`: Windows container layers (argument parsing and output only;
//! the work is in `strata-wclayer`).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use strata_wclayer::folder::LayerChain;
use strata_wclayer::inspect::{inspect_folder, inspect_tar, InspectEntry};
use strata_wclayer::windowsify::{windowsify, SecurityChoice};
use strata_wclayer::{export_layer, extract, import_layer};

use crate::io::{open_input, write_output};
use crate::output::Output;

#[derive(Subcommand)]
pub enum WclayerCommand {
    /// Import a Windows layer tar (plain, gzip or zstd) into a new layer folder.
    ///
    /// Without --parent the layer is a base layer; with parents (nearest first, as
    /// hcsshim takes them) a diff layer: whiteouts become tombstones, hard links may
    /// point into the parents, the UtilityVM is cloned from the nearest parent.
    Import {
        /// The layer tar, or - for standard input.
        #[arg(short, long, value_name = "LAYER")]
        input: PathBuf,
        /// The layer folder to create (missing or empty).
        folder: PathBuf,
        /// A parent layer folder; repeat, nearest parent first.
        #[arg(long = "parent", value_name = "FOLDER")]
        parents: Vec<PathBuf>,
    },
    /// Export a layer folder as a Windows layer tar, in the order hcsshim walks the folder.
    ///
    /// The order: Files, then Hives and UtilityVM (a base layer's other paths last); each
    /// directory before its children, siblings sorted by name, a diff layer's tombstones
    /// right after their directory. A tar written in that order and in go-winio's form (as
    /// Windows and hcsshim write them) comes back byte-identical; any other tar comes back
    /// with the same entries and Windows metadata, but in that order and form, so not as
    /// the same bytes.
    Export {
        /// The layer folder.
        folder: PathBuf,
        /// The output file, or - for standard output.
        #[arg(short, long, value_name = "LAYER")]
        output: PathBuf,
        /// A parent layer folder; repeat, nearest parent first (none: a base layer).
        #[arg(long = "parent", value_name = "FOLDER")]
        parents: Vec<PathBuf>,
    },
    /// Turn a Linux rootfs or layer tar into a Windows layer tar that Windows accepts.
    FromRootfs {
        /// The Linux tar (plain, gzip or zstd), or - for standard input.
        #[arg(short, long, value_name = "ROOTFS")]
        input: PathBuf,
        /// The Windows layer tar to write, or - for standard output.
        #[arg(short, long, value_name = "LAYER")]
        output: PathBuf,
        /// Security descriptors: `buildkit` (default), `ko`, or an SDDL string for all entries.
        #[arg(long, value_name = "buildkit|ko|SDDL", default_value = "buildkit")]
        sd: String,
    },
    /// List a Windows layer tar or folder: attributes, times, SDDL, EAs, streams, tombstones.
    Inspect {
        /// A layer tar (plain, gzip or zstd) or a layer folder.
        layer: PathBuf,
        /// For a folder: its parents, nearest first (reads it as a diff layer).
        #[arg(long = "parent", value_name = "FOLDER")]
        parents: Vec<PathBuf>,
    },
    /// Write the merged files of a layer chain into a plain Linux directory.
    Extract {
        /// The top layer folder, then its parents nearest first; the last is the output directory.
        #[arg(required = true, num_args = 2.., value_name = "FOLDER... DIR")]
        paths: Vec<PathBuf>,
    },
}

pub fn run(cmd: WclayerCommand, out: &Output) -> Result<()> {
    match cmd {
        WclayerCommand::Import {
            input,
            folder,
            parents,
        } => {
            let (reader, _) = open_input(&input)?;
            let s =
                import_layer(reader, &LayerChain::new(&folder, &parents)).with_context(|| {
                    format!(
                        "cannot import {} into {}",
                        input.display(),
                        folder.display()
                    )
                })?;
            for n in &s.not_applicable {
                out.note(&format!("not applicable on Linux: {n}"));
            }
            out.result(&s, || {
                format!(
                    "imported {} entries ({} bytes of files, {} links, {} tombstones, {} alternate streams) into {}",
                    s.entries, s.size, s.links, s.tombstones, s.alternate_streams, folder.display()
                )
            })
        }
        WclayerCommand::Export {
            folder,
            output,
            parents,
        } => {
            let s = write_output(&output, |w| {
                export_layer(
                    &LayerChain::new(&folder, &parents),
                    BufWriter::with_capacity(256 * 1024, w),
                )
                .with_context(|| format!("cannot export {}", folder.display()))
            })?;
            if s.dropped_alternate_streams > 0 {
                out.note(&format!("{} alternate streams on directories or before a file's data were dropped, as Windows drops them", s.dropped_alternate_streams));
            }
            out.result(&s, || {
                format!(
                    "exported {} entries ({} data bytes, {} hard links, {} whiteouts, {} alternate streams)",
                    s.entries, s.data_bytes, s.hard_links, s.whiteouts, s.alternate_streams
                )
            })
        }
        WclayerCommand::FromRootfs { input, output, sd } => {
            let sd = SecurityChoice::parse(&sd).context("bad --sd")?;
            let (reader, _) = open_input(&input)?;
            let s = write_output(&output, |w| {
                windowsify(reader, BufWriter::with_capacity(256 * 1024, w), &sd)
                    .with_context(|| format!("cannot convert {}", input.display()))
            })?;
            out.result(&s, || {
                format!(
                    "wrote {} entries ({} implied directories, {} data bytes, {} whiteouts)",
                    s.entries, s.implied_dirs, s.data_bytes, s.whiteouts
                )
            })
        }
        WclayerCommand::Inspect { layer, parents } => inspect_cmd(&layer, &parents, out),
        WclayerCommand::Extract { mut paths } => {
            let Some(dir) = paths.pop() else {
                bail!("extract needs FOLDER... DIR")
            };
            let s = extract::extract(&paths, &dir)
                .with_context(|| format!("cannot extract into {}", dir.display()))?;
            out.warnings(&s.warnings);
            out.result(&s, || {
                format!(
                    "extracted {} layers, {} entries, {} data bytes into {}",
                    s.layers,
                    s.entries,
                    s.data_bytes,
                    dir.display()
                )
            })
        }
    }
}

fn inspect_line(e: &InspectEntry) -> String {
    let letter = match e.kind {
        "directory" => 'd',
        "symlink" => 'l',
        "junction" => 'j',
        "hardlink" => 'h',
        "tombstone" => 'D',
        _ => '-',
    };
    if e.kind == "tombstone" {
        return format!("{letter} {}", e.name);
    }
    let mut s = format!(
        "{letter} {:<28} {:>10} {}  {}",
        e.attribute_names.as_deref().unwrap_or("-"),
        e.size,
        e.last_write_time.as_deref().unwrap_or("-"),
        e.name
    );
    if let Some(t) = &e.link_target {
        s.push_str(&format!(" -> {t}"));
    }
    for a in &e.alternate_streams {
        s.push_str(&format!("\n    stream {} ({} bytes)", a.name, a.size));
    }
    for x in &e.extended_attributes {
        s.push_str(&format!("\n    ea {} ({} bytes)", x.name, x.size));
    }
    if let Some(sd) = &e.security_descriptor {
        s.push_str(&format!("\n    sd {sd}"));
    }
    s.push_str(&format!(
        "\n    created {} accessed {} changed {}",
        e.creation_time.as_deref().unwrap_or("-"),
        e.last_access_time.as_deref().unwrap_or("-"),
        e.change_time.as_deref().unwrap_or("-")
    ));
    s
}

/// Streams the listing: text lines, or one JSON array written entry by entry.
fn inspect_cmd(layer: &Path, parents: &[PathBuf], out: &Output) -> Result<()> {
    let walk = |emit: &mut dyn FnMut(&InspectEntry) -> io::Result<()>| -> Result<()> {
        let mut emit = |e: &InspectEntry| {
            emit(e)
                .map_err(|err| strata_wclayer::Error::Misuse(format!("writing the listing: {err}")))
        };
        if layer.is_dir() {
            inspect_folder(&LayerChain::new(layer, parents), &mut emit)
        } else {
            let (reader, _) = open_input(layer)?;
            inspect_tar(reader, &mut emit)
        }
        .with_context(|| format!("cannot inspect {}", layer.display()))
    };
    if out.json {
        return crate::output::json_list(|put| walk(put));
    }
    let mut stdout = BufWriter::new(io::stdout().lock());
    walk(&mut |e| writeln!(stdout, "{}", inspect_line(e)))?;
    stdout.flush()?;
    Ok(())
}
