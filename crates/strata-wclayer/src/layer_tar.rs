//! OCI tar ⇄ layer folder: hcsshim's `ImportLayerFromTar` and `ExportLayerToTar` (§5.1, §5.2).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata_layer::compress::Decompressor;
use strata_layer::tar::{TarReader, TarWriter};
use strata_layer::{EntryKind, LayerReader, LayerWriter};

use crate::backuptar::{
    file_info_from_entry, write_backup_stream_from_tar, write_tar_from_backup_stream,
    write_tar_hard_link, write_tar_whiteout,
};
use crate::folder::{LayerChain, LayerFolderReader, LayerFolderWriter};
use crate::{Error, WinPath};

/// What [`import_layer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// hcsshim's return value: the sum of the sizes of the type-`0` main entries.
    pub size: u64,
    pub entries: u64,
    pub links: u64,
    pub tombstones: u64,
    pub alternate_streams: u64,
    /// Windows-only steps not run on Linux.
    pub not_applicable: Vec<String>,
}

/// What [`export_layer`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    pub entries: u64,
    pub data_bytes: u64,
    pub hard_links: u64,
    pub whiteouts: u64,
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

fn import_entries<R: Read>(
    mut tar: TarReader<R>,
    folder: &Path,
    parents: &[PathBuf],
) -> Result<ImportSummary, Error> {
    let mut w = LayerFolderWriter::create(folder, parents)?;
    // hcsshim's base-layer writer creates any relative path; a diff layer's names start
    // with Files, Hives or UtilityVM.
    let win_path = if parents.is_empty() {
        WinPath::from_layer_path_in_base_layer
    } else {
        WinPath::from_layer_path
    };
    let mut summary = ImportSummary::default();
    let mut next = tar.next_entry()?;
    while let Some(e) = next {
        let at = tar.entry_offset();
        let wrap = |err: Error| match err {
            Error::Layer(l) => Error::Layer(l),
            other => Error::entry(
                format!("{} (the entry at byte {at})", e.path),
                other.to_string(),
            ),
        };
        match &e.kind {
            EntryKind::Whiteout => {
                w.remove(&win_path(&e.path)?).map_err(wrap)?;
                next = tar.next_entry()?;
            }
            // `.wh..wh..opq` is not special for Windows: it tombstones `.wh..opq`.
            EntryKind::Opaque => {
                w.remove(&win_path(&e.path)?.join(".wh..opq")?)
                    .map_err(wrap)?;
                next = tar.next_entry()?;
            }
            EntryKind::HardLink { target } => {
                w.add_link(&win_path(&e.path)?, &win_path(target)?)
                    .map_err(wrap)?;
                next = tar.next_entry()?;
            }
            _ => {
                let name = win_path(&e.path)?;
                let (size, info) = file_info_from_entry(&e)?;
                if matches!(e.kind, EntryKind::File { .. }) {
                    if info.attributes.is_dir() {
                        // Go would write a data stream into a directory, which Windows
                        // cannot hold (and which exports as a different entry).
                        return Err(wrap(Error::entry(e.path.to_string(), "MSWINDOWS.fileattr marks a directory, but the entry is a regular file (a directory cannot hold file data)")));
                    }
                    summary.size += size;
                }
                w.add(&name, &info).map_err(wrap)?;
                let mut counted = CountAds::default();
                next = write_backup_stream_from_tar(
                    &mut CountingReader {
                        inner: &mut tar,
                        ads: &mut counted,
                        main: e.path.as_bytes().len(),
                    },
                    &e,
                    &mut w,
                )
                .map_err(wrap)?;
                summary.alternate_streams += counted.0;
            }
        }
    }
    let ws = w.finish()?;
    summary.entries = ws.entries;
    summary.links = ws.links;
    summary.tombstones = ws.tombstones;
    summary.not_applicable = ws.not_applicable;
    Ok(summary)
}

#[derive(Default)]
struct CountAds(u64);

/// Counts the ADS entries `write_backup_stream_from_tar` consumes.
struct CountingReader<'a, R: LayerReader> {
    inner: &'a mut R,
    ads: &'a mut CountAds,
    main: usize,
}

impl<R: LayerReader> LayerReader for CountingReader<'_, R> {
    fn next_entry(&mut self) -> Result<Option<strata_layer::Entry>, strata_layer::Error> {
        let e = self.inner.next_entry()?;
        if let Some(e) = &e {
            if e.path.as_bytes().len() > self.main
                && e.path.as_bytes().get(self.main) == Some(&b':')
            {
                self.ads.0 += 1;
            }
        }
        Ok(e)
    }
    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, strata_layer::Error> {
        self.inner.read_data(buf)
    }
}

/// Exports the layer folder `chain.layer` as a Windows layer tar (§5.1): entries in
/// reader order, tombstones as whiteouts, a second name of a file (same inode) as a hard
/// link to the first. A tar that [`import_layer`] took in comes out byte-identical when
/// it was in this order and go-winio's form (as Windows and hcsshim write tars); any
/// other comes out with the same entries in this order and form.
pub fn export_layer<W: Write>(chain: &LayerChain, out: W) -> Result<ExportSummary, Error> {
    let mut r = LayerFolderReader::open(chain)?;
    let mut tar = TarWriter::new(out);
    let mut seen: HashMap<(u64, u64), WinPath> = HashMap::new();
    let mut s = ExportSummary::default();
    while let Some(e) = r.next()? {
        s.entries += 1;
        let Some(info) = e.info else {
            write_tar_whiteout(&mut tar, &e.name)?;
            s.whiteouts += 1;
            continue;
        };
        if let (Some(id), true) = (e.file_id, e.links > 1) {
            if let Some(first) = seen.get(&id) {
                write_tar_hard_link(&mut tar, &e.name, first, &info)?;
                s.hard_links += 1;
                continue;
            }
            seen.insert(id, e.name.clone());
        }
        let mut stream = e.open_stream()?;
        let w =
            write_tar_from_backup_stream(&mut tar, &mut stream, &e.name, &info, e.with_security)?;
        s.data_bytes += w.size;
        s.alternate_streams += w.alternates as u64;
        s.dropped_alternate_streams += w.dropped_alternates as u64;
    }
    tar.finish()?;
    Ok(s)
}
