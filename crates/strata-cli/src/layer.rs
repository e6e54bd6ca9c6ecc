//! `strata layer ...`: single layers, no store needed.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Serialize;
use strata_layer::compress::Compression;
use strata_layer::dir_writer::DirWriterOptions;
use strata_layer::tar::TarReader;
use strata_layer::unpack::UnpackOptions;
use strata_layer::{digest, pack, recipe, unpack, Entry, EntryKind, LayerReader, Timestamp};

use crate::args::Compress;
use crate::io::{open_input, open_layer_input, write_output};
use crate::output::Output;

#[derive(Subcommand)]
pub enum LayerCommand {
    /// Apply a layer tar (plain, gzip or zstd) onto a directory, created if missing.
    ///
    /// Whiteouts delete from what the directory already holds; every path is resolved
    /// inside DIR, never outside it. Prints the diffID and blob digest.
    ///
    /// A plain layer file is read through memory maps under a read lease: a process that
    /// opens it for writing meanwhile waits, and the unpack stops with an error.
    Unpack {
        /// The layer file, or - for standard input.
        #[arg(short, long, value_name = "LAYER")]
        input: PathBuf,
        /// The directory to unpack into.
        dir: PathBuf,
        /// Also record a recipe here, to rebuild the exact tar later with `repack`.
        #[arg(long, value_name = "FILE")]
        recipe: Option<PathBuf>,
        /// Do not confine the writer with Landlock.
        #[arg(long)]
        no_sandbox: bool,
        /// Apply trusted.* and security.* xattrs (other than security.capability) too.
        #[arg(long)]
        privileged_xattrs: bool,
    },
    /// Pack a directory into a layer tar (deterministic: same tree, same bytes).
    Pack {
        /// The directory to pack (its root is not an entry).
        dir: PathBuf,
        /// The output file, or - for standard output.
        #[arg(short, long, value_name = "LAYER")]
        output: PathBuf,
        /// Compress the layer.
        #[arg(long, value_enum, default_value_t = Compress::None)]
        compress: Compress,
    },
    /// Rebuild, byte for byte, the layer tar a directory was unpacked from.
    Repack {
        /// The directory the layer was unpacked into (unchanged since).
        dir: PathBuf,
        /// The recipe recorded by `unpack --recipe`.
        #[arg(long, value_name = "FILE")]
        recipe: PathBuf,
        /// The output file, or - for standard output.
        #[arg(short, long, value_name = "LAYER")]
        output: PathBuf,
    },
    /// Print a layer's diffID (sha256 of the uncompressed tar) and blob digest.
    Digest {
        /// The layer file, or - for standard input.
        layer: PathBuf,
    },
    /// Without LAYER: list the store's layers. With LAYER: list that layer file's entries
    /// like `tar tv`, whiteouts shown as deletions.
    Ls {
        /// A layer file, or - for standard input.
        layer: Option<PathBuf>,
        /// Also list the init layers of read-write layers (`layer inspect` of a read-write
        /// layer names its own).
        #[arg(long)]
        all: bool,
    },
    #[command(flatten)]
    Store(crate::store::StoreLayerCommand),
}

pub fn run(cmd: LayerCommand, store: &crate::store::StoreArgs, out: &Output) -> Result<()> {
    match cmd {
        LayerCommand::Unpack {
            input,
            dir,
            recipe,
            no_sandbox,
            privileged_xattrs,
        } => unpack_cmd(&input, &dir, recipe, !no_sandbox, privileged_xattrs, out),
        LayerCommand::Pack {
            dir,
            output,
            compress,
        } => pack_cmd(&dir, &output, compress.into(), out),
        LayerCommand::Repack {
            dir,
            recipe,
            output,
        } => repack_cmd(&dir, &recipe, &output, out),
        LayerCommand::Digest { layer } => digest_cmd(&layer, out),
        LayerCommand::Ls {
            layer: Some(layer), ..
        } => ls_cmd(&layer, out),
        LayerCommand::Ls { layer: None, all } => crate::store::ls_layers(store, all, out),
        LayerCommand::Store(cmd) => crate::store::run_layer(cmd, store, out),
    }
}

#[derive(Serialize)]
struct UnpackReport {
    dir: PathBuf,
    compression: String,
    diff_id: String,
    tar_bytes: u64,
    blob_digest: String,
    blob_bytes: u64,
    entries: u64,
    data_bytes: u64,
    sandbox: String,
    recipe: Option<PathBuf>,
    warnings: Vec<String>,
}

fn unpack_cmd(
    input: &Path,
    dir: &Path,
    recipe: Option<PathBuf>,
    sandbox: bool,
    privileged_xattrs: bool,
    out: &Output,
) -> Result<()> {
    let len = (input != Path::new("-"))
        .then(|| std::fs::metadata(input).ok().map(|m| m.len()))
        .flatten();
    let bar = out.progress("unpacking", len);
    let reader = open_layer_input(input, &bar)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let options = UnpackOptions {
        writer: DirWriterOptions {
            privileged_xattrs,
            ..DirWriterOptions::default()
        },
        recipe: recipe.clone(),
        sandbox,
        ..UnpackOptions::default()
    };
    let s = unpack::unpack(reader, dir, options)
        .with_context(|| format!("cannot unpack {} into {}", input.display(), dir.display()))?;
    let sandbox_text = out.sandbox(s.sandbox.as_ref());
    out.warnings(&s.warnings);
    let report = UnpackReport {
        dir: dir.to_owned(),
        compression: s.compression.to_string(),
        diff_id: s.diff_id.to_string(),
        tar_bytes: s.tar_bytes,
        blob_digest: s.blob_digest.to_string(),
        blob_bytes: s.blob_bytes,
        entries: s.entries,
        data_bytes: s.data_bytes,
        sandbox: sandbox_text,
        recipe,
        warnings: s.warnings.clone(),
    };
    out.result(&report, || {
        format!(
            "unpacked {} entries ({} bytes of data) into {}\ndiffID {}\nblob   {} ({}, {} bytes)",
            s.entries,
            s.data_bytes,
            dir.display(),
            s.diff_id,
            s.blob_digest,
            s.compression,
            s.blob_bytes
        )
    })
}

#[derive(Serialize)]
struct PackReport {
    diff_id: String,
    tar_bytes: u64,
    blob_digest: String,
    blob_bytes: u64,
    compression: String,
    warnings: Vec<String>,
}

fn pack_cmd(dir: &Path, output: &Path, compression: Compression, out: &Output) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let bar = out.progress("packing", None);
    let s = write_output(output, |w| {
        // No buffer here: pack writes its output in large chunks (and buffers it itself
        // when compressing).
        let w = bar.wrap_write(w);
        pack::pack(dir, w, compression).with_context(|| format!("cannot pack {}", dir.display()))
    })?;
    out.warnings(&s.warnings);
    let report = PackReport {
        diff_id: s.diff_id.to_string(),
        tar_bytes: s.tar_bytes,
        blob_digest: s.blob_digest.to_string(),
        blob_bytes: s.blob_bytes,
        compression: compression.to_string(),
        warnings: s.warnings.clone(),
    };
    if output == Path::new("-") && !out.json {
        return Ok(()); // stdout holds the layer
    }
    out.result(&report, || {
        format!(
            "diffID {} ({} bytes)\nblob   {} ({}, {} bytes)",
            s.diff_id, s.tar_bytes, s.blob_digest, compression, s.blob_bytes
        )
    })
}

#[derive(Serialize)]
struct RepackReport {
    diff_id: String,
    tar_bytes: u64,
    files: u64,
}

fn repack_cmd(dir: &Path, recipe_path: &Path, output: &Path, out: &Output) -> Result<()> {
    let bar = out.progress("repacking", None);
    let s = write_output(output, |w| {
        recipe::rebuild(recipe_path, dir, bar.wrap_write(w))
            .with_context(|| format!("cannot rebuild the layer of {}", dir.display()))
    })?;
    if output == Path::new("-") && !out.json {
        return Ok(());
    }
    let report = RepackReport {
        diff_id: s.diff_id.to_string(),
        tar_bytes: s.bytes,
        files: s.files,
    };
    out.result(&report, || {
        format!(
            "diffID {} ({} bytes, {} files)",
            s.diff_id, s.bytes, s.files
        )
    })
}

#[derive(Serialize)]
struct DigestReport {
    compression: String,
    diff_id: String,
    tar_bytes: u64,
    blob_digest: String,
    blob_bytes: u64,
}

fn digest_cmd(layer: &Path, out: &Output) -> Result<()> {
    let (reader, len) = open_input(layer)?;
    let bar = out.progress("hashing", len);
    let d = digest::digest_layer(bar.wrap_read(reader))
        .with_context(|| format!("cannot read {}", layer.display()))?;
    let report = DigestReport {
        compression: d.compression.to_string(),
        diff_id: d.diff_id.to_string(),
        tar_bytes: d.tar_bytes,
        blob_digest: d.blob_digest.to_string(),
        blob_bytes: d.blob_bytes,
    };
    out.result(&report, || {
        format!(
            "diffID {} ({} bytes)\nblob   {} ({}, {} bytes)",
            d.diff_id, d.tar_bytes, d.blob_digest, d.compression, d.blob_bytes
        )
    })
}

#[derive(Serialize)]
struct LsEntry {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<[u32; 2]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sparse: bool,
}

fn ls_cmd(layer: &Path, out: &Output) -> Result<()> {
    let (reader, _) = open_input(layer)?;
    let decompressor =
        strata_layer::compress::Decompressor::new(reader).context("cannot read the layer")?;
    let mut tar = TarReader::new(decompressor);
    let mut next = || {
        tar.next_entry()
            .with_context(|| format!("cannot list {}", layer.display()))
    };
    if out.json {
        return crate::output::json_list(|put| {
            while let Some(e) = next()? {
                put(&ls_entry(&e)).map_err(crate::output::stdout_error)?;
            }
            Ok(())
        });
    }
    let mut stdout = BufWriter::new(io::stdout().lock());
    while let Some(e) = next()? {
        writeln!(stdout, "{}", ls_line(&e)).map_err(crate::output::stdout_error)?;
    }
    stdout.flush().map_err(crate::output::stdout_error)?;
    Ok(())
}

fn kind_name(kind: &EntryKind) -> &'static str {
    match kind {
        EntryKind::File { .. } => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink { .. } => "symlink",
        EntryKind::HardLink { .. } => "hardlink",
        EntryKind::CharDevice { .. } => "char",
        EntryKind::BlockDevice { .. } => "block",
        EntryKind::Fifo => "fifo",
        EntryKind::Whiteout => "whiteout",
        EntryKind::Opaque => "opaque",
    }
}

fn ls_entry(e: &Entry) -> LsEntry {
    let (size, sparse) = match &e.kind {
        EntryKind::File { size, sparse } => (*size, sparse.is_some()),
        _ => (0, false),
    };
    LsEntry {
        path: e.path.to_string(),
        kind: kind_name(&e.kind),
        mode: format!("{:04o}", e.meta.mode),
        uid: e.meta.uid,
        gid: e.meta.gid,
        size,
        mtime: format!("{}.{:09}", e.meta.mtime.secs, e.meta.mtime.nanos),
        link: match &e.kind {
            EntryKind::Symlink { target } => Some(String::from_utf8_lossy(target).into_owned()),
            EntryKind::HardLink { target } => Some(target.to_string()),
            _ => None,
        },
        device: match e.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                Some([major, minor])
            }
            _ => None,
        },
        xattrs: e
            .meta
            .xattrs
            .iter()
            .map(|x| String::from_utf8_lossy(&x.name).into_owned())
            .collect(),
        sparse,
    }
}

/// One line like GNU `tar tv`; whiteouts and opaque markers say what they delete.
fn ls_line(e: &Entry) -> String {
    match &e.kind {
        EntryKind::Whiteout => return format!("D {}  (deleted by whiteout)", e.path),
        EntryKind::Opaque => {
            return format!(
                "O {}/  (opaque: hides everything below from lower layers)",
                e.path
            )
        }
        _ => {}
    }
    let m = e.meta.mode;
    let mut perms = String::with_capacity(10);
    perms.push(match e.kind {
        EntryKind::HardLink { .. } => 'h',
        ref k => k.letter(),
    });
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (m >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(match (bits & 1 != 0, m & special != 0) {
            (true, true) => ch,
            (false, true) => ch.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    let size = match e.kind {
        EntryKind::File { size, .. } => size.to_string(),
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            format!("{major},{minor}")
        }
        _ => "0".to_string(),
    };
    let owner = if e.meta.uname.is_empty() {
        format!("{}/{}", e.meta.uid, e.meta.gid)
    } else {
        format!(
            "{}/{}",
            String::from_utf8_lossy(&e.meta.uname),
            String::from_utf8_lossy(&e.meta.gname)
        )
    };
    let name = match &e.kind {
        EntryKind::Dir => format!("{}/", e.path),
        EntryKind::Symlink { target } => {
            format!("{} -> {}", e.path, String::from_utf8_lossy(target))
        }
        EntryKind::HardLink { target } => format!("{} link to {target}", e.path),
        _ => e.path.to_string(),
    };
    format!(
        "{perms} {owner:<12} {size:>10} {} {name}",
        civil_time(e.meta.mtime.secs)
    )
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn civil_time(secs: i64) -> String {
    let (year, month, day, hour, minute, _) = Timestamp::new(secs, 0).utc_civil();
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_matches_known_dates() {
        assert_eq!(civil_time(0), "1970-01-01 00:00");
        assert_eq!(civil_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(civil_time(-315_619_200), "1960-01-01 00:00");
        assert_eq!(civil_time(13_569_465_600), "2400-01-01 00:00");
    }
}
