//! `fsck`: checks that the store's files agree with its database, down to the bytes of
//! every applied layer, and with `repair` removes what is broken (never what is sound).
//!
//! Checked: every applied layer rebuilds from its recipe to its recorded diffID (which
//! reads and CRC-checks every file it holds; a frozen layer's pending diff is made first,
//! see `store/freeze.rs`); every layer has its directories and lock;
//! parents exist, are applied, and depths add up; mount counts match the mounts that
//! exist; every blob hashes to its name; no directory or recipe belongs to no layer.
//! Recovery (run first, and by the store's open) removes blobs nothing refers to; what it
//! repaired is listed with the repairs.
//! A broken layer is removed with the layers built on it (they cannot be used without
//! it); a wrong mount count is corrected; orphans are removed.

use std::collections::{BTreeMap, BTreeSet};

use strata_layer::digest::{Digest, Hasher};

use crate::db::{LayerRow, State};
use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::lock::LayerLock;
use crate::mounts;
use crate::store::Store;

/// One thing fsck found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The layer concerned, if any.
    pub layer: Option<LayerId>,
    /// What is wrong, one sentence.
    pub what: String,
}

/// What fsck found and, with repair, did.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    /// How many layers were checked (those in progress in another process are not).
    pub layers_checked: usize,
    /// How many files of the blob directory were hashed.
    pub blobs_checked: usize,
    /// What was found wrong, in the order found.
    pub problems: Vec<Problem>,
    /// With repair: what was done, one sentence each.
    pub repairs: Vec<String>,
}

impl FsckReport {
    /// True when nothing was found wrong.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks the whole store; with `repair`, removes broken layers (and their
    /// descendants), fixes mount counts and removes orphans.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        // What opening the store repaired is part of the answer.
        report.repairs.extend(self.recovered().iter().cloned());
        {
            let lock = self.lock()?;
            let recovered = self.recover(&lock)?;
            report.repairs.extend(recovered.actions);
        }
        let rows = self.read(|tx| tx.layers())?;
        let by_id: BTreeMap<LayerId, LayerRow> =
            rows.iter().map(|r| (r.id.clone(), r.clone())).collect();
        let mut broken: BTreeSet<LayerId> = BTreeSet::new();
        let mut bad_counts: Vec<LayerId> = Vec::new();
        let points = mounts::mount_points()?;
        for row in &rows {
            if !row.state.visible() {
                continue; // in progress in another process
            }
            report.layers_checked += 1;
            // (what, whether the layer is unusable)
            let mut found: Vec<(String, bool)> = Vec::new();
            let mut problem = |what: String, fatal: bool| found.push((what, fatal));
            let dir = self.paths().layer(&row.id);
            for sub in self.dirs_driver().subdirs().iter().chain(&["lock"]) {
                if !dir.join(sub).exists() {
                    problem(format!("{} is missing", dir.join(sub).display()), true);
                }
            }
            match &row.parent {
                Some(p) => match by_id.get(p) {
                    None => problem(format!("its parent {p} does not exist"), true),
                    Some(prow) if prow.state != State::Applied => {
                        problem(format!("its parent {p} is not an applied layer"), true)
                    }
                    Some(prow) if prow.depth + 1 != row.depth => problem(
                        format!(
                            "its depth {} does not follow its parent's {}",
                            row.depth, prow.depth
                        ),
                        true,
                    ),
                    _ => {}
                },
                None if row.depth != 1 => {
                    problem(format!("depth {} without a parent", row.depth), true)
                }
                None => {}
            }
            if let Some(point) = self.dirs_driver().mount_point(&dir) {
                let mounted = points.contains(&point);
                let counted = row.mounts > 0 && row.mount_boot.as_deref() == Some(self.boot());
                if mounted != counted {
                    problem(
                        format!(
                            "mount count {} but {} mounted",
                            row.mounts,
                            if mounted { "it is" } else { "it is not" }
                        ),
                        false,
                    );
                    bad_counts.push(row.id.clone());
                }
            }
            if row.state == State::Applied && !found.iter().any(|(_, fatal)| *fatal) {
                if let Err(e) = self.verify_layer(row) {
                    found.push((
                        format!("its content does not rebuild to its diffID: {e}"),
                        true,
                    ));
                }
            }
            // Another process may have removed or changed the layer since the rows were
            // read (an engine's garbage collection): what is gone is not broken.
            if !found.is_empty() {
                let now = self.read(|tx| tx.layer(&row.id))?;
                if now.is_none_or(|r| !r.state.visible() || r.state != row.state) {
                    continue;
                }
            }
            for (what, fatal) in found {
                if fatal {
                    broken.insert(row.id.clone());
                }
                report.problems.push(Problem {
                    layer: Some(row.id.clone()),
                    what,
                });
            }
        }
        // Descendants of a broken layer cannot be used either.
        let mut changed = true;
        while changed {
            changed = false;
            for row in &rows {
                if let Some(p) = &row.parent {
                    if broken.contains(p) && broken.insert(row.id.clone()) {
                        changed = true;
                    }
                }
            }
        }
        for image in self.images()? {
            let mut missing = Vec::new();
            if self.blob_path(&image.id).is_none() {
                missing.push(format!("its config blob {}", image.id));
            }
            if let Some(m) = &image.manifest {
                if self.blob_path(&m.digest).is_none() {
                    missing.push(format!("its manifest blob {}", m.digest));
                }
            }
            if let Some(top) = &image.top_layer {
                match by_id.get(top) {
                    Some(r) if r.state == State::Applied && !broken.contains(top) => {}
                    Some(_) => {
                        missing.push(format!("its top layer {top} is broken or not applied"))
                    }
                    None => missing.push(format!("its top layer {top}")),
                }
            }
            if !missing.is_empty() {
                report.problems.push(Problem {
                    layer: None,
                    what: format!("image {} lacks {}", image.id, missing.join(", ")),
                });
            }
        }
        for blob in self.blob_problems(&mut report)? {
            report.problems.push(Problem {
                layer: None,
                what: blob,
            });
        }
        let orphans = self.orphans()?;
        for o in &orphans {
            report.problems.push(Problem {
                layer: None,
                what: format!("{} belongs to no layer", o.display()),
            });
        }
        if repair {
            self.repair(&rows, &broken, &bad_counts, &orphans, &mut report)?;
        }
        Ok(report)
    }

    /// Rebuilds an applied layer's tar into a hasher and compares it with its diffID.
    fn verify_layer(&self, row: &LayerRow) -> Result<()> {
        let _lock = LayerLock::shared(&self.paths().lock(&row.id))?;
        if row.diff.is_none() {
            // A frozen layer: its diff is made now, then checked like any.
            self.settle(&row.id)?;
        }
        let chain = self.read(|tx| tx.chain(&row.id))?;
        let row = &chain[0];
        let Some(want) = row.diff.as_ref().map(|d| d.diff_id) else {
            return Err(Error::Corrupt("no diffID recorded".into()));
        };
        let (rebuilt, _) = self.original_tar(&chain, &mut std::io::sink())?;
        if rebuilt != want {
            return Err(Error::Corrupt(format!(
                "rebuilt {rebuilt}, recorded {want}"
            )));
        }
        Ok(())
    }

    /// Blobs whose content does not hash to their name.
    fn blob_problems(&self, report: &mut FsckReport) -> Result<Vec<String>> {
        let dir = self.paths().blobs();
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            report.blobs_checked += 1;
            let Ok(want) = Digest::parse(&format!("sha256:{name}")) else {
                out.push(format!(
                    "blob {} is not named by a sha256 digest",
                    e.path().display()
                ));
                continue;
            };
            let hasher = Hasher::default();
            let file = std::fs::File::open(e.path())
                .map_err(|err| Error::io(format!("opening {}", e.path().display()), err))?;
            let mut reader = hasher.reader(file);
            std::io::copy(&mut reader, &mut std::io::sink())
                .map_err(|err| Error::io(format!("reading {}", e.path().display()), err))?;
            if hasher.digest() != want {
                out.push(format!(
                    "blob {} holds content with digest {}",
                    e.path().display(),
                    hasher.digest()
                ));
            }
        }
        Ok(out)
    }

    fn repair(
        &self,
        rows: &[LayerRow],
        broken: &BTreeSet<LayerId>,
        bad_counts: &[LayerId],
        orphans: &[std::path::PathBuf],
        report: &mut FsckReport,
    ) -> Result<()> {
        // Images on broken layers are broken too: their records go first.
        for image in self.images()? {
            if image.top_layer.as_ref().is_some_and(|t| broken.contains(t)) {
                self.forget_image(&image)?;
                report.repairs.push(format!(
                    "removed image {} (its layers are broken)",
                    image.id
                ));
            }
        }
        // Children before parents: the deepest first.
        let mut doomed: Vec<&LayerRow> = rows.iter().filter(|r| broken.contains(&r.id)).collect();
        doomed.sort_by_key(|r| std::cmp::Reverse(r.depth));
        for row in doomed {
            if let Some(point) = self.dirs_driver().mount_point(&self.paths().layer(&row.id)) {
                mounts::unmount_path(&point, true)?;
            }
            {
                let _lock = self.lock()?;
                self.db().write("repairing", |tx| {
                    tx.set_mounts(&row.id, 0, None)?;
                    tx.set_state(&row.id, State::Removing)
                })?;
            }
            self.finish_removal(&row.id)?;
            report
                .repairs
                .push(format!("removed broken layer {}", row.id));
        }
        for id in bad_counts.iter().filter(|id| !broken.contains(*id)) {
            let point = self.dirs_driver().mount_point(&self.paths().layer(id));
            let mounted = match point {
                Some(point) => mounts::is_mounted(&point)?,
                None => false,
            };
            let _lock = self.lock()?;
            let count = u32::from(mounted);
            self.db().write("repairing", |tx| {
                tx.set_mounts(id, count, Some(self.boot()))
            })?;
            report
                .repairs
                .push(format!("set the mount count of layer {id} to {count}"));
        }
        for o in orphans {
            mounts::remove_tree(o)?;
            report.repairs.push(format!("removed {}", o.display()));
        }
        Ok(())
    }
}
