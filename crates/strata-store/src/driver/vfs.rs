//! The vfs driver: each layer directory holds `dir/`, a full copy of the layer's merged
//! view (its parent's copied, then its diff applied). Works on any file system, at the
//! cost of a copy per layer; nothing is ever mounted.

use std::io::{Read, Write};

use std::path::{Path, PathBuf};
use strata_layer::unpack::Input;

use strata_layer::copy_tree::copy_tree;
use strata_layer::digest::Digest;
use strata_layer::dir_reader::{DirReader, PathFilter, Visit};
use strata_layer::{Entry, EntryKind, LayerPath, LayerReader};

use super::{rebuild_tar, remake, unpack_into, Chain, Driver, Fill, Lowers, Original, View};
use crate::changes::{tree_changes, Change, ChangeKind};
use crate::error::Result;
use crate::layout::mkdir;
use crate::store::ApplyOptions;

const DIR: &str = "dir";

/// Plain copies: every layer a full tree, compared with its parent's for changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Vfs;

impl Vfs {
    /// The content of the nearest layer of `dirs`, copied into `content` (a new layer's).
    fn copy_below(&self, dirs: &[PathBuf], content: &Path) -> Result<()> {
        if let Some(below) = dirs.first() {
            copy_tree(&self.content(below), content)?;
        }
        Ok(())
    }
}

impl Driver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    fn subdirs(&self) -> &'static [&'static str] {
        &[DIR]
    }

    fn content(&self, dir: &Path) -> PathBuf {
        dir.join(DIR)
    }

    fn prepare(&self, chain: &Chain) -> Result<()> {
        let content = self.content(chain.dir());
        mkdir(&content, 0o755)?;
        if chain.writable {
            self.copy_below(chain.parents(), &content)?;
        }
        Ok(())
    }

    fn apply(
        &self,
        chain: &Chain,
        input: Input<'_, &mut (dyn Read + Send)>,
        options: &ApplyOptions,
        recipe: &Path,
    ) -> Result<Fill> {
        let content = self.content(chain.dir());
        self.copy_below(chain.parents(), &content)?;
        unpack_into(&content, Lowers::Now(Vec::new()), input, options, recipe)
    }

    fn reset(&self, dir: &Path) -> Result<()> {
        remake(&[(self.content(dir), 0o755)])
    }

    fn view_path(&self, dir: &Path) -> PathBuf {
        self.content(dir)
    }

    fn mount(&self, _chain: &Chain) -> Result<()> {
        Ok(())
    }

    fn view(&self, dirs: &[PathBuf]) -> Result<View> {
        Ok(match dirs.first() {
            Some(dir) => View::Dir(self.content(dir)),
            None => View::None,
        })
    }

    fn changes(&self, chain: &Chain) -> Result<Vec<Change>> {
        let parents = self.view(chain.parents())?;
        tree_changes(&self.content(chain.dir()), parents.path())
    }

    /// The changes against the parent: deletions first (as whiteouts), then the added and
    /// modified entries in the directory reader's order.
    fn diff_entries(&self, chain: &Chain) -> Result<Box<dyn LayerReader + Send>> {
        let content = self.content(chain.dir());
        let changes = self.changes(chain)?;
        let whiteouts: Vec<LayerPath> = changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Deleted)
            .map(|c| c.path.clone())
            .collect();
        Ok(Box::new(WithWhiteouts {
            whiteouts: whiteouts.into_iter(),
            rest: DirReader::open(&content)?.with_filter(changed_paths(&changes)),
        }))
    }

    fn original_tar(
        &self,
        chain: &Chain,
        original: &Original<'_>,
        out: &mut dyn Write,
    ) -> Result<(Digest, u64)> {
        rebuild_tar(self, chain, original, out)
    }
}

/// Deletions first, then another reader's entries.
struct WithWhiteouts<R> {
    whiteouts: std::vec::IntoIter<LayerPath>,
    rest: R,
}

impl<R: LayerReader> LayerReader for WithWhiteouts<R> {
    fn next_entry(&mut self) -> std::result::Result<Option<Entry>, strata_layer::Error> {
        match self.whiteouts.next() {
            Some(path) => Ok(Some(Entry::new(path, EntryKind::Whiteout))),
            None => self.rest.next_entry(),
        }
    }
    fn read_data(&mut self, buf: &mut [u8]) -> std::result::Result<usize, strata_layer::Error> {
        self.rest.read_data(buf)
    }
}

/// A filter that returns exactly the added and modified paths of `changes`.
fn changed_paths(changes: &[Change]) -> PathFilter {
    let wanted: std::collections::BTreeSet<Vec<u8>> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted)
        .map(|c| c.path.as_bytes().to_vec())
        .collect();
    Box::new(move |path: &LayerPath| {
        let p = path.as_bytes();
        if wanted.contains(p) {
            return Visit::Entry;
        }
        let mut below = p.to_vec();
        below.push(b'/');
        match wanted.range(below.clone()..).next() {
            Some(w) if w.starts_with(&below) => Visit::Descend,
            _ => Visit::Skip,
        }
    })
}
