//! Windows layers (`layer apply --os windows`), kept by [`WindowsFolder`].
//!
//! A Windows layer is kept as a layer folder (strata-wclayer: `Files/`, `Hives/`,
//! tombstones, UtilityVM) in the content directory of the store's driver, on top of its
//! parents' folders; it is never mounted. Its diff is its tar as it came in:
//!
//! * applying streams the tar once into the folder (the diffID and blob digest computed
//!   on the way) while the store keeps a copy of the input in its staging area; then the
//!   folder is exported into a hasher, and when that reproduces the diffID (tars in the
//!   form Windows and hcsshim write them) the store drops the copy, otherwise it keeps it
//!   as the layer's blob, so that `diff` always gives the original bytes;
//! * the original tar is the kept blob (decompressed, checked against the diffID) or the
//!   folder exported (checked the same way);
//! * `changes` lists what the folder adds (`A`) and what its tombstones delete (`D`).

use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use strata_layer::unpack::Input;

use strata_layer::compress::{open_blob, Decompressor};
use strata_layer::digest::{Digest, Hasher};
use strata_layer::{LayerPath, LayerReader};
use strata_wclayer::folder::LayerChain;

use super::{Chain, Driver, Fill, Original, View};
use crate::changes::{Change, ChangeKind};
use crate::db::DiffInfo;
use crate::error::{Error, Result};
use crate::store::ApplyOptions;

const NAME: &str = "windows layer";

fn wclayer(e: strata_wclayer::Error) -> Error {
    Error::Driver {
        driver: NAME,
        reason: e.to_string(),
        source: None,
    }
}

/// Windows layer folders, in the directories of the store's own driver (`base`), which
/// they share with the store's Linux layers.
#[derive(Debug)]
pub struct WindowsFolder {
    base: Box<dyn Driver>,
}

impl WindowsFolder {
    /// Windows layers kept in the content directories of driver `base`.
    pub fn new(base: Box<dyn Driver>) -> WindowsFolder {
        WindowsFolder { base }
    }

    /// The layer chain as strata-wclayer names it: folders, nearest first.
    fn folders(&self, chain: &Chain) -> LayerChain {
        let dirs: Vec<PathBuf> = chain.dirs.iter().map(|d| self.content(d)).collect();
        LayerChain::new(&dirs[0], &dirs[1..])
    }

    fn cannot(&self, chain: &Chain, what: &str) -> Error {
        Error::refused(
            &chain.id,
            format!("is a Windows layer, which Linux cannot {what}: `strata wclayer extract` writes its files into a directory"),
        )
    }
}

impl Driver for WindowsFolder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn subdirs(&self) -> &'static [&'static str] {
        self.base.subdirs()
    }

    fn content(&self, dir: &Path) -> PathBuf {
        self.base.content(dir)
    }

    fn work(&self, dir: &Path) -> Option<PathBuf> {
        self.base.work(dir)
    }

    fn check_depth(&self, depth: usize) -> std::result::Result<(), String> {
        self.base.check_depth(depth)
    }

    fn prepare(&self, chain: &Chain) -> Result<()> {
        self.base.prepare(chain)
    }

    fn rebuilds_exactly(&self) -> bool {
        false
    }

    fn apply(
        &self,
        chain: &Chain,
        input: Input<'_, &mut (dyn Read + Send)>,
        _options: &ApplyOptions,
        _recipe: &Path,
    ) -> Result<Fill> {
        let (decompressed, blob) =
            open_blob(input.into_stream()).map_err(|e| Error::io("reading the layer", e))?;
        let compression = decompressed.compression();
        let tar = Hasher::default();
        let blob = blob.unwrap_or_else(|| tar.clone());
        let mut reader = tar.reader(decompressed);
        let folders = self.folders(chain);
        let summary = strata_wclayer::import_layer(&mut reader, &folders).map_err(wclayer)?;
        // The diffID covers every byte, anything after the end-of-archive included.
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| Error::io("reading the end of the layer", e))?;
        drop(reader);
        let diff = DiffInfo {
            diff_id: tar.digest(),
            tar_size: tar.bytes(),
            diff_size: summary.size,
            blob_digest: blob.digest(),
            blob_size: blob.bytes(),
            compression: compression.to_string(),
        };
        let exported = Hasher::default();
        strata_wclayer::export_layer(&folders, exported.writer(std::io::sink()))
            .map_err(wclayer)?;
        let exact = exported.digest() == diff.diff_id;
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
        Ok(Fill {
            diff,
            compression,
            entries: summary.entries,
            warnings,
            sandbox: None,
            exact,
        })
    }

    fn reset(&self, dir: &Path) -> Result<()> {
        self.base.reset(dir)
    }

    fn view_path(&self, dir: &Path) -> PathBuf {
        self.content(dir)
    }

    fn mount(&self, chain: &Chain) -> Result<()> {
        Err(self.cannot(chain, "mount"))
    }

    fn view(&self, _dirs: &[PathBuf]) -> Result<View> {
        Err(Error::Driver {
            driver: NAME,
            reason: "a Windows layer folder has no merged view on Linux".into(),
            source: None,
        })
    }

    fn changes(&self, chain: &Chain) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        strata_wclayer::inspect::inspect_folder(&self.folders(chain), |e| {
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

    fn diff_entries(&self, chain: &Chain) -> Result<Box<dyn LayerReader + Send>> {
        Err(self.cannot(chain, "run as a read-write layer"))
    }

    /// The kept blob, or the folder exported; checked against the diffID either way.
    fn original_tar(
        &self,
        chain: &Chain,
        original: &Original<'_>,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64)> {
        let want = original.diff_id;
        let hasher = Hasher::default();
        let mut out = hasher.writer(out);
        match original.blob {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                let mut tar = Decompressor::new(file)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                std::io::copy(&mut tar, &mut out).map_err(|e| Error::io("writing the diff", e))?;
            }
            None => {
                strata_wclayer::export_layer(&self.folders(chain), &mut out).map_err(wclayer)?;
            }
        }
        out.flush().map_err(|e| Error::io("writing the diff", e))?;
        if hasher.digest() != want {
            return Err(Error::Corrupt(format!(
                "Windows layer {} gives {} instead of its diffID {want}",
                chain.id,
                hasher.digest()
            )));
        }
        Ok((want, hasher.bytes()))
    }
}
