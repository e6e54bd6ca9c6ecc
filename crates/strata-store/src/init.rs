//! Init layers: what a container runtime needs in a root filesystem before it starts,
//! kept out of the container's own changes.
//!
//! A runtime mounts `/proc`, `/sys` and `/dev` (and `/dev/pts`, `/dev/shm` in it) over
//! directories it creates when the image lacks them, and Docker-style engines bind
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` over files. Made in the container
//! layer, those mountpoints would be its changes and end up in any image committed from
//! it. So, as Docker does, a read-write layer on a parent gets an **init layer** between
//! them, `ID-init`: an applied layer holding just the entries above that the parent's
//! view lacks (empty directories and files, `/etc/mtab` -> `/proc/mounts`, `/.dockerenv`).
//! The container's changes, diff and commits are taken against it; it is listed with
//! its container (`init_layer`), not as a layer of its own, and goes when the container
//! goes.

use std::path::Path;

use strata_layer::tar::TarWriter;
use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter, Timestamp};

use crate::error::{Error, Result};
use crate::id::LayerId;

/// What an init layer may hold, parents before children.
const ENTRIES: &[(&str, Kind)] = &[
    ("dev", Kind::Dir),
    ("dev/pts", Kind::Dir),
    ("dev/shm", Kind::Dir),
    ("proc", Kind::Dir),
    ("sys", Kind::Dir),
    ("etc", Kind::Dir),
    ("etc/hosts", Kind::File),
    ("etc/hostname", Kind::File),
    ("etc/resolv.conf", Kind::File),
    ("etc/mtab", Kind::Symlink("/proc/mounts")),
    (".dockerenv", Kind::File),
];

#[derive(Clone, Copy)]
enum Kind {
    Dir,
    File,
    Symlink(&'static str),
}

/// The ID of the init layer of read-write layer `id`.
pub(crate) fn init_id(id: &LayerId) -> Result<LayerId> {
    LayerId::new(format!("{id}-init"))
}

/// The init layer's tar: the entries of [`ENTRIES`] that `parent` (the merged view of
/// the parent chain; `None` for no parent) lacks. An entry under something that is not
/// a directory there (an `/etc` symlink, say) is left out: the parent decided. Entries
/// are dated at the epoch, so equal parents give equal init layers (and containers on
/// them equal trees).
pub(crate) fn init_tar(parent: Option<&Path>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut tar = TarWriter::new(&mut out);
    for (path, kind) in ENTRIES {
        if let Some(root) = parent {
            if present_or_blocked(root, path)? {
                continue;
            }
        }
        let layer_path = LayerPath::from_tar_name(path.as_bytes())
            .map_err(|e| Error::Corrupt(format!("init entry {path}: {e}")))?;
        let (kind, mode) = match kind {
            Kind::Dir => (EntryKind::Dir, 0o755),
            Kind::File => (
                EntryKind::File {
                    size: 0,
                    sparse: None,
                },
                0o755,
            ),
            Kind::Symlink(target) => (
                EntryKind::Symlink {
                    target: target.as_bytes().to_vec(),
                },
                0o777,
            ),
        };
        let mut entry = Entry::new(layer_path, kind);
        entry.meta.mode = mode;
        entry.meta.mtime = Timestamp { secs: 0, nanos: 0 };
        tar.add(&entry)?;
    }
    tar.finish()?;
    Ok(out)
}

/// True if `path` exists under `root`, or one of its ancestors there is not a directory.
/// Each ancestor is checked with lstat before anything below it, so no symlink is
/// followed.
fn present_or_blocked(root: &Path, path: &str) -> Result<bool> {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(_) if i + 1 == parts.len() => return Ok(true),
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(true),
            // A missing ancestor comes earlier in ENTRIES, so the layer has it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("looking at {}", at.display()), e)),
        }
    }
    Ok(false)
}
