//! The merged file view of a layer chain in a plain Linux directory, for scanners and
//! diff tools: `Files\` of each layer from the base up, tombstones applied, data only
//! (no SDs, EAs or alternate streams), symlinks and junctions as Linux symlinks with
//! `/` separators (`C:\data` becomes `/data`). Written through strata-layer's
//! [`DirWriter`], so nothing lands outside the target directory.
//!
//! ```no_run
//! use std::path::PathBuf;
//! // The layer first, then its parents nearest first (as `import --parent`).
//! strata_wclayer::extract::extract(&[PathBuf::from("top"), PathBuf::from("base")], "out".as_ref()).unwrap();
//! ```

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use strata_layer::dir_writer::{DirWriter, DirWriterOptions};
use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter, Timestamp};

use crate::backup;
use crate::folder::{LayerChain, LayerFolderReader};
use crate::reparse;
use crate::{Error, FileAttributes};

/// What [`extract`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractSummary {
    /// Layer folders merged.
    pub layers: u64,
    /// Entries written to the Linux tree.
    pub entries: u64,
    /// Bytes of file data written.
    pub data_bytes: u64,
    /// What could not be carried over to Linux, one sentence each.
    pub warnings: Vec<String>,
}

/// A Windows link target as a Linux one: `\` → `/`, a drive or `\??\`/`\\?\` prefix
/// dropped (absolute targets become absolute in the extracted tree).
pub fn linux_target(t: &str) -> String {
    let mut s = t;
    for p in [r"\??\", r"\\?\"] {
        if let Some(r) = s.strip_prefix(p) {
            s = r;
        }
    }
    if s.len() >= 2 && s.as_bytes()[1] == b':' && s.as_bytes()[0].is_ascii_alphabetic() {
        s = &s[2..];
    }
    s.replace('\\', "/")
}

/// Writes the merged view of `layers` (the top layer first, then its parents nearest
/// first) into `out` (created if missing).
pub fn extract(layers: &[PathBuf], out: &Path) -> Result<ExtractSummary, Error> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let mut summary = ExtractSummary::default();
    let mut buf = vec![0u8; 256 * 1024];
    for i in (0..layers.len()).rev() {
        let chain = LayerChain::new(&layers[i], &layers[i + 1..]);
        let mut r = LayerFolderReader::open(&chain)?;
        let opts = DirWriterOptions {
            chown: false,
            devices: false,
            ..Default::default()
        };
        let mut w = DirWriter::open(out, opts)?;
        let mut seen: HashMap<(u64, u64), LayerPath> = HashMap::new();
        while let Some(e) = r.next()? {
            let Some(rel) = e.name.as_str().strip_prefix("Files\\") else {
                continue;
            };
            let path = LayerPath::from_tar_name(rel.replace('\\', "/").as_bytes())
                .map_err(|err| Error::name(e.name.as_str(), err.to_string()))?;
            summary.entries += 1;
            let Some(info) = e.info else {
                w.add(&Entry::new(path, EntryKind::Whiteout))?;
                continue;
            };
            let t = info.last_write_time.to_timestamp();
            let mtime = if (0..1 << 40).contains(&t.secs) {
                t
            } else {
                Timestamp::EPOCH
            };
            if let (Some(id), true) = (e.file_id, e.links > 1) {
                if let Some(first) = seen.get(&id) {
                    w.add(&Entry::new(
                        path,
                        EntryKind::HardLink {
                            target: first.clone(),
                        },
                    ))?;
                    continue;
                }
                seen.insert(id, path.clone());
            }
            let mut stream = e.open_stream()?;
            let base = stream
                .stream_position()
                .map_err(|err| Error::io("reading a stream", err))?;
            let scan = backup::scan(BufReader::new(&mut stream), e.name.as_str())?;
            let mut entry = Entry::new(path, EntryKind::Dir);
            entry.meta.mtime = mtime;
            if let Some(rp) = &scan.reparse {
                entry.kind = EntryKind::Symlink {
                    target: linux_target(&reparse::decode(rp)?.target).into_bytes(),
                };
                entry.meta.mode = 0o777;
                w.add(&entry)?;
                continue;
            }
            if info.attributes.is_dir() {
                entry.meta.mode = 0o755;
                w.add(&entry)?;
                continue;
            }
            entry.meta.mode = if info.attributes.0 & FileAttributes::READONLY != 0 {
                0o444
            } else {
                0o644
            };
            let Some(d) = &scan.data else {
                entry.kind = EntryKind::File {
                    size: 0,
                    sparse: None,
                };
                w.add(&entry)?;
                continue;
            };
            let sparse = d.sparse && d.size == 0;
            let extents: Vec<(u64, u64, u64)> = if sparse {
                d.blocks.clone()
            } else {
                vec![(0, d.payload_offset, d.size)]
            };
            let size = if sparse { d.logical_size } else { d.size };
            entry.kind = EntryKind::File {
                size,
                sparse: sparse.then(|| {
                    extents
                        .iter()
                        .map(|&(offset, _, len)| strata_layer::SparseExtent { offset, len })
                        .collect()
                }),
            };
            w.add(&entry)?;
            for (_, payload, len) in extents {
                stream
                    .seek(SeekFrom::Start(base + payload))
                    .map_err(|err| Error::io("reading a stream", err))?;
                let mut left = len;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = stream
                        .read(&mut buf[..want])
                        .map_err(|err| Error::io("reading a stream", err))?;
                    if n == 0 {
                        return Err(Error::BadStream {
                            name: e.name.to_string(),
                            offset: payload,
                            reason: "the data ends early".into(),
                        });
                    }
                    w.write_data(&buf[..n])?;
                    left -= n as u64;
                }
            }
            summary.data_bytes += size;
        }
        let s = w.finish()?;
        summary.warnings.extend(s.warnings);
        summary.layers += 1;
    }
    Ok(summary)
}
