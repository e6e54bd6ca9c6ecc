//! Windows layers as a layer kind of the store (`layer apply --os windows`).
//!
//! A Windows layer is kept as a layer folder (strata-wclayer: `Files/`, `Hives/`,
//! tombstones, UtilityVM) in the layer's content directory, on top of its parents'
//! folders; it is never mounted. Its diff is its tar as it came in:
//!
//! * applying streams the tar once into the folder (the diffID and blob digest computed
//!   on the way) while a copy of the input goes to the staging area; then the folder is
//!   exported into a hasher, and when that reproduces the diffID (tars in the form
//!   Windows and hcsshim write them) the copy is dropped, otherwise it is kept as the
//!   layer's blob, so that `diff` always gives the original bytes;
//! * `diff` streams the kept blob (decompressed, checked against the diffID) or exports
//!   the folder (checked the same way);
//! * `changes` lists what the folder adds (`A`) and what its tombstones delete (`D`).

use std::io::{Read, Write};
use std::path::PathBuf;

use strata_layer::compress::{open_blob, Decompressor};
use strata_layer::digest::{Digest, Hasher};
use strata_layer::media_type::LayerType;
use strata_layer::LayerPath;
use strata_wclayer::folder::LayerChain;

use crate::changes::{Change, ChangeKind};
use crate::db::{DiffInfo, LayerRow};
use crate::error::{Error, Result};
use crate::store::{Filled, ImportOptions, KeptBlob, Store};

fn wclayer(e: strata_wclayer::Error) -> Error {
    Error::Driver {
        driver: "windows layer",
        reason: e.to_string(),
        source: None,
    }
}

impl Store {
    /// The layer chain of `chain[0]` as strata-wclayer names it: folders, nearest first.
    pub(crate) fn windows_chain(&self, chain: &[LayerRow]) -> LayerChain {
        let dirs: Vec<PathBuf> = self.content_dirs(chain);
        LayerChain::new(&dirs[0], &dirs[1..])
    }

    /// Fills `chain[0]` from a Windows layer tar (see the module docs).
    pub(crate) fn fill_windows<R: Read + Send>(
        &self,
        chain: &[LayerRow],
        input: R,
        options: &ImportOptions,
    ) -> Result<(DiffInfo, Filled, Option<KeptBlob>)> {
        let mut kept = KeptBlob::new(&self.paths().staging())?;
        let copy = kept.file()?;
        let tee = crate::blobs::Tee {
            inner: input,
            copy: std::io::BufWriter::with_capacity(
                1 << 20,
                copy.try_clone()
                    .map_err(|e| Error::io("keeping the layer's tar", e))?,
            ),
        };
        let (decompressed, blob) = open_blob(tee).map_err(|e| Error::io("reading the layer", e))?;
        let compression = decompressed.compression();
        kept.media_type = LayerType::plain(compression).oci_media_type();
        let tar = Hasher::default();
        let blob = blob.unwrap_or_else(|| tar.clone());
        let mut reader = tar.reader(decompressed);
        let folders = self.windows_chain(chain);
        let summary = strata_wclayer::import_layer(&mut reader, &folders).map_err(wclayer)?;
        // The diffID covers every byte, anything after the end-of-archive included.
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| Error::io("reading the end of the layer", e))?;
        drop(reader);
        copy.sync_all()
            .map_err(|e| Error::io("syncing the layer's copy", e))?;
        let diff = DiffInfo {
            diff_id: tar.digest(),
            tar_size: tar.bytes(),
            diff_size: summary.size,
            blob_digest: blob.digest(),
            blob_size: blob.bytes(),
            compression: compression.to_string(),
        };
        options.check(diff.diff_id, diff.blob_digest)?;
        let exported = Hasher::default();
        strata_wclayer::export_layer(&folders, exported.writer(std::io::sink()))
            .map_err(wclayer)?;
        let exact = exported.digest() == diff.diff_id;
        let keep = options.keep_blob.is_some() || !exact;
        let mut warnings = Vec::new();
        if !exact {
            warnings.push(format!(
                "the folder does not export to this tar byte for byte (it was not in the form Windows writes); its {} bytes are kept so `diff` gives them back",
                diff.blob_size
            ));
        }
        warnings.extend(
            summary
                .not_applicable
                .iter()
                .map(|s| format!("not applicable on Linux: {s}")),
        );
        let filled = Filled {
            entries: summary.entries,
            warnings,
            sandbox: None,
        };
        let kept = if keep {
            Some(kept)
        } else {
            kept.done()?;
            None
        };
        Ok((diff, filled, kept))
    }

    /// Writes the original tar of Windows layer `chain[0]` to `out` and checks it against
    /// the diffID; returns the bytes written.
    pub(crate) fn windows_diff<W: Write>(
        &self,
        chain: &[LayerRow],
        out: W,
    ) -> Result<(Digest, u64)> {
        let row = &chain[0];
        let want = row
            .diff
            .as_ref()
            .map(|d| d.diff_id)
            .ok_or_else(|| Error::Corrupt(format!("layer {} has no diffID", row.id)))?;
        let hasher = Hasher::default();
        let mut out = hasher.writer(out);
        let kept = self
            .read(|tx| tx.layer_blobs(&row.id))?
            .into_iter()
            .find(|(d, _, _)| Some(*d) == row.diff.as_ref().map(|x| x.blob_digest));
        match kept.and_then(|(d, _, _)| self.blob_path(&d)) {
            Some(path) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                let mut tar = Decompressor::new(file)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                std::io::copy(&mut tar, &mut out).map_err(|e| Error::io("writing the diff", e))?;
            }
            None => {
                strata_wclayer::export_layer(&self.windows_chain(chain), &mut out)
                    .map_err(wclayer)?;
            }
        }
        out.flush().map_err(|e| Error::io("writing the diff", e))?;
        if hasher.digest() != want {
            return Err(Error::Corrupt(format!(
                "Windows layer {} gives {} instead of its diffID {want}",
                row.id,
                hasher.digest()
            )));
        }
        Ok((want, hasher.bytes()))
    }

    /// What Windows layer `chain[0]` adds and deletes.
    pub(crate) fn windows_changes(&self, chain: &[LayerRow]) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        strata_wclayer::inspect::inspect_folder(&self.windows_chain(chain), |e| {
            let name = e.name.replace('\\', "/");
            let path = LayerPath::from_tar_name(name.as_bytes()).map_err(|err| {
                strata_wclayer::Error::BadName {
                    name: e.name.clone(),
                    reason: err.to_string(),
                }
            })?;
            let kind = if e.kind == "tombstone" {
                ChangeKind::Deleted
            } else {
                ChangeKind::Added
            };
            changes.push(Change { path, kind });
            Ok(())
        })
        .map_err(wclayer)?;
        changes.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Ok(changes)
    }
}
