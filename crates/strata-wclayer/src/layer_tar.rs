//! OCI tar ⇄ layer folder: hcsshim's `ImportLayerFromTar` and `ExportLayerToTar` (§5.1, §5.2).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::compress::Decompressor;
use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{LayerReader, LayerWriter};

use crate::folder::{LayerChain, LayerFolderReader, LayerFolderWriter};
use crate::Error;

/// What [`import_layer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// hcsshim's return value: the sum of the sizes of the type-`0` main entries.
    pub size: u64,
    /// Objects added (files, directories, hives), alternate streams not counted.
    pub entries: u64,
    /// Hard links added.
    pub links: u64,
    /// Deletions recorded in `tombstones.txt`.
    pub tombstones: u64,
    /// Alternate data streams added.
    pub alternate_streams: u64,
    /// Windows-only steps not run on Linux.
    pub not_applicable: Vec<String>,
}

/// What [`export_layer`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Objects of the folder written (whiteouts and hard links included, alternate
    /// streams not).
    pub entries: u64,
    /// The sum of the main entries' data sizes.
    pub data_bytes: u64,
    /// Second names of files written as hard-link entries.
    pub hard_links: u64,
    /// Tombstones written as whiteouts.
    pub whiteouts: u64,
    /// Alternate data streams written as entries of their own.
    pub alternate_streams: u64,
    /// Alternate streams dropped as go-winio drops them (on directories, before the data).
    pub dropped_alternate_streams: u64,
}

/// Imports a Windows layer tar (plain, gzip or zstd) into the empty or missing folder
/// `chain.layer` on top of `chain.parents` (nearest first; none makes a base layer).
/// The folder is built beside the target and renamed into place only when the whole
/// tar went in, so a failed import leaves nothing behind.
pub fn import_layer<R: Read + Send>(input: R, chain: &LayerChain) -> Result<ImportSummary, Error> {
    let target = &chain.layer;
    if let Ok(mut it) = fs::read_dir(target) {
        if it.next().is_some() {
            return Err(Error::Folder {
                folder: target.clone(),
                path: ".".into(),
                reason:
                    "the layer folder is not empty (a layer is imported into an empty folder only)"
                        .into(),
                source: None,
            });
        }
    }
    let staging = staging_path(target);
    let result = import_into(input, &staging, &chain.parents).and_then(|s| {
        fs::rename(&staging, target).map_err(|e| {
            Error::io(
                format!("moving the imported layer to {}", target.display()),
                e,
            )
        })?;
        Ok(s)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn staging_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.importing-{}", std::process::id()))
}

fn import_into<R: Read + Send>(
    input: R,
    folder: &Path,
    parents: &[PathBuf],
) -> Result<ImportSummary, Error> {
    let input = Decompressor::new(input).map_err(|e| Error::io("reading the layer", e))?;
    // Reading and decompressing on a thread of its own, overlapping with the writes.
    std::thread::scope(|s| {
        let piped = strata_layer::pipe::spawn(s, input);
        import_entries(TarReader::new(piped), folder, parents)
    })
}

/// Streams the tar's entries into the folder writer through [`LayerWriter`]. An error
/// names the main entry it belongs to (its alternate streams included) and where that
/// entry starts in the tar.
fn import_entries<R: std::io::BufRead>(
    mut tar: TarReader<R>,
    folder: &Path,
    parents: &[PathBuf],
) -> Result<ImportSummary, Error> {
    let mut w = LayerFolderWriter::create(folder, parents)?;
    let mut main: Option<(String, u64)> = None;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(e) = tar.next_entry()? {
        if main.is_none() || !w.continues_current(&e) {
            main = Some((e.path.to_string(), tar.entry_offset()));
        }
        let wrap = |err: strata_layer::Error| match Error::from(err) {
            Error::Layer(l) => Error::Layer(l),
            other => {
                let (path, at) = main.clone().unwrap_or_default();
                Error::entry(
                    format!("{path} (the entry at byte {at})"),
                    other.to_string(),
                )
            }
        };
        LayerWriter::add(&mut w, &e).map_err(wrap)?;
        if e.kind.data_len() > 0 {
            loop {
                let n = tar.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                w.write_data(&buf[..n]).map_err(wrap)?;
            }
        }
        // The data's end (and its check) belongs to this entry, not the next one.
        w.end_entry_data()
            .map_err(|err| wrap(strata_layer::Error::from(err)))?;
    }
    let ws = LayerWriter::finish(w)?;
    Ok(ImportSummary {
        size: ws.size,
        entries: ws.entries,
        links: ws.links,
        tombstones: ws.tombstones,
        alternate_streams: ws.alternate_streams,
        not_applicable: ws.not_applicable,
    })
}

/// Exports the layer folder `chain.layer` as a Windows layer tar (§5.1): entries in
/// reader order, tombstones as whiteouts, a second name of a file (same inode) as a hard
/// link to the first. A tar that [`import_layer`] took in comes out byte-identical when
/// it was in this order and go-winio's form (as Windows and hcsshim write tars); any
/// other comes out with the same entries in this order and form.
pub fn export_layer<W: Write>(chain: &LayerChain, out: W) -> Result<ExportSummary, Error> {
    let mut r = LayerFolderReader::open(chain)?;
    strata_layer::copy(&mut r, TarWriter::new(out))?;
    Ok(r.entry_summary().clone())
}
