//! The folder at the entry level: [`LayerWriter`] for [`LayerFolderWriter`] and
//! [`LayerReader`] for [`LayerFolderReader`].
//!
//! A layer folder speaks Windows: a [`WinPath`], a [`FileBasicInfo`](crate::FileBasicInfo)
//! and a backup stream. The crate-wide [`Entry`] carries a Windows entry the way a
//! Windows layer tar does (go-winio's `backuptar`, spec §3): the path with `/`, the
//! attributes, times and security descriptor as `MSWINDOWS.*` PAX records, the file's
//! content as the entry's data, each alternate data stream as an entry of its own named
//! `<file>:<stream>` right after its file.
//!
//! Writing: [`LayerWriter::add`] maps such an entry onto the folder, as hcsshim's
//! `ImportLayerFromTar` does: a whiteout is a tombstone (`remove`), a hard link
//! `add_link`, anything else `add` with the stream's head (SECURITY, EA, REPARSE or the
//! DATA header); [`LayerWriter::write_data`] then delivers the data, sparse holes
//! filled with zeros.
//!
//! Reading: [`LayerReader::next_entry`] turns each folder entry into the entries
//! hcsshim's `ExportLayerToTar` writes for it: a tombstone is a whiteout, a second name
//! of a file a hard link to the first, anything else its main entry (a sparse file with
//! its extents) followed by its alternate streams. Each entry carries go-winio's
//! [`HeaderStyle`](strata_layer::tar::HeaderStyle) in [`Entry::header`], so that
//! [`copy`](strata_layer::copy) into a [`TarWriter`](strata_layer::tar::TarWriter)
//! writes the tar Windows writes, byte for byte ([`crate::export_layer`]).
//!
//! Errors travel as [`strata_layer::Error::Format`] holding this crate's [`Error`],
//! which `From` takes back whole.

use std::collections::{HashMap, VecDeque};
use std::io::{Seek, Write};

use strata_layer::{Entry, EntryKind, LayerReader, LayerWriter, SparseExtent};

use super::{EntryStream, LayerFolderReader, LayerFolderWriter, WriteSummary};
use crate::backup::BackupStreamWriter;
use crate::backuptar::{
    alternate_stream_header, backup_stream_entries, file_info_from_entry, hard_link_entry,
    whiteout_entry, write_backup_stream_head, zeros, RangeReader, StreamRange,
};
use crate::{Error, ExportSummary, WinPath};

/// The data of the current entry-level file (or alternate stream) still to come, as
/// the dense bytes of its DATA stream.
#[derive(Debug)]
pub(super) struct DenseData {
    /// The tar path, for errors.
    path: String,
    size: u64,
    extents: Vec<SparseExtent>,
    /// The extent being filled.
    current: usize,
    /// Dense bytes written so far.
    pos: u64,
}

impl DenseData {
    fn new(e: &Entry) -> Option<DenseData> {
        let EntryKind::File { size, sparse } = &e.kind else {
            return None;
        };
        Some(DenseData {
            path: e.path.to_string(),
            size: *size,
            extents: sparse.clone().unwrap_or_else(|| {
                vec![SparseExtent {
                    offset: 0,
                    len: *size,
                }]
            }),
            current: 0,
            pos: 0,
        })
    }

    /// Moves to the next extent with bytes to come, writing the hole before it.
    fn settle<W: Write>(&mut self, out: &mut W) -> Result<(), Error> {
        while let Some(ext) = self.extents.get(self.current) {
            if self.pos < ext.offset {
                zeros(out, ext.offset - self.pos).map_err(|e| self.io(e))?;
                self.pos = ext.offset;
            }
            if self.pos < ext.offset + ext.len {
                return Ok(());
            }
            self.current += 1;
        }
        Ok(())
    }

    fn write<W: Write>(&mut self, out: &mut W, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            self.settle(out)?;
            let Some(ext) = self.extents.get(self.current) else {
                return Err(Error::entry(
                    &self.path,
                    format!("more data than its {} bytes", self.size),
                ));
            };
            let n = (ext.offset + ext.len - self.pos).min(data.len() as u64) as usize;
            out.write_all(&data[..n]).map_err(|e| self.io(e))?;
            self.pos += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Checks all data came and writes the trailing hole.
    fn end<W: Write>(mut self, out: &mut W) -> Result<(), Error> {
        self.settle(out)?;
        if self.current < self.extents.len() {
            return Err(Error::entry(&self.path, "the data ends early"));
        }
        zeros(out, self.size.saturating_sub(self.pos)).map_err(|e| self.io(e))
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing the data of `{}`", self.path), e)
    }
}

impl LayerFolderWriter {
    /// Is `e` an alternate data stream of the entry-level entry being written?
    pub(crate) fn continues_current(&self, e: &Entry) -> bool {
        matches!(e.kind, EntryKind::File { .. })
            && self
                .ads_prefix
                .as_ref()
                .is_some_and(|p| e.path.as_bytes().starts_with(p))
    }

    /// Completes the data of the entry-level file or stream being written, if any.
    pub(crate) fn end_entry_data(&mut self) -> Result<(), Error> {
        match self.entry_data.take() {
            Some(d) => d.end(self),
            None => Ok(()),
        }
    }

    fn add_entry(&mut self, e: &Entry) -> Result<(), Error> {
        if self.continues_current(e) {
            let prefix_len = self.ads_prefix.as_ref().map_or(0, Vec::len);
            let header = alternate_stream_header(e, prefix_len)?;
            self.end_entry_data()?;
            BackupStreamWriter::new(&mut *self).write_header(&header)?;
            self.entry_data = DenseData::new(e);
            self.summary.alternate_streams += 1;
            return Ok(());
        }
        self.end_entry()?;
        // hcsshim's base-layer writer creates any relative path; a diff layer's names
        // start with Files, Hives or UtilityVM.
        let win_path = if self.parents.is_empty() {
            WinPath::from_layer_path_in_base_layer
        } else {
            WinPath::from_layer_path
        };
        match &e.kind {
            EntryKind::Whiteout => self.remove(&win_path(&e.path)?),
            // `.wh..wh..opq` is not special for Windows: it tombstones `.wh..opq`.
            EntryKind::Opaque => self.remove(&win_path(&e.path)?.join(".wh..opq")?),
            EntryKind::HardLink { target } => {
                self.add_link(&win_path(&e.path)?, &win_path(target)?)
            }
            _ => {
                let name = win_path(&e.path)?;
                let (size, info) = file_info_from_entry(e)?;
                if matches!(e.kind, EntryKind::File { .. }) {
                    if info.attributes.is_dir() {
                        // Go would write a data stream into a directory, which Windows
                        // cannot hold (and which exports as a different entry).
                        return Err(Error::entry(e.path.to_string(), "MSWINDOWS.fileattr marks a directory, but the entry is a regular file (a directory cannot hold file data)"));
                    }
                    self.summary.size += size;
                }
                self.add(&name, &info)?;
                write_backup_stream_head(e, &mut BackupStreamWriter::new(&mut *self))?;
                self.entry_data = DenseData::new(e);
                self.ads_prefix = Some([e.path.as_bytes(), b":"].concat());
                Ok(())
            }
        }
    }

    fn write_entry_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut d = self.entry_data.take().ok_or_else(|| {
            Error::Misuse("data written with no regular file or stream entry started".into())
        })?;
        let r = d.write(self, data);
        self.entry_data = Some(d);
        r
    }
}

/// Entry-level writing; see the [module documentation](self). `finish` is
/// [`LayerFolderWriter::finish`].
impl LayerWriter for LayerFolderWriter {
    type Summary = WriteSummary;

    fn add(&mut self, entry: &Entry) -> Result<(), strata_layer::Error> {
        Ok(self.add_entry(entry)?)
    }

    fn write_data(&mut self, data: &[u8]) -> Result<(), strata_layer::Error> {
        Ok(self.write_entry_data(data)?)
    }

    fn finish(self) -> Result<WriteSummary, strata_layer::Error> {
        Ok(LayerFolderWriter::finish(self)?)
    }
}

/// The entry level of a [`LayerFolderReader`]: what is left of the folder entry last
/// read, and what was handed out so far.
#[derive(Debug, Default)]
pub(super) struct EntryLevel {
    /// The first name read of each file with several, by (device, inode).
    seen: HashMap<(u64, u64), WinPath>,
    /// The alternate streams of the current file still to come, with their data.
    alternates: VecDeque<(Entry, StreamRange)>,
    /// The backup stream of the current file and the runs of it that are the current
    /// entry's data.
    data: Option<EntryData>,
    summary: ExportSummary,
}

#[derive(Debug)]
struct EntryData {
    name: WinPath,
    stream: EntryStream,
    /// Where the backup stream starts in `stream`.
    base: u64,
    runs: RangeReader,
}

impl LayerFolderReader {
    /// What the entries read through [`LayerReader`] so far add up to: folder entries,
    /// whiteouts, hard links, data bytes, alternate streams (what
    /// [`export_layer`](crate::export_layer) reports).
    pub fn entry_summary(&self) -> &ExportSummary {
        &self.entry_level.summary
    }

    fn next_tar_entry(&mut self) -> Result<Option<Entry>, Error> {
        let level = &mut self.entry_level;
        if let Some((e, run)) = level.alternates.pop_front() {
            if let Some(d) = level.data.as_mut() {
                d.runs = RangeReader::new(d.base, vec![run]);
            }
            return Ok(Some(e));
        }
        level.data = None;
        let Some(e) = self.next()? else {
            return Ok(None);
        };
        let level = &mut self.entry_level;
        level.summary.entries += 1;
        let Some(info) = e.info else {
            level.summary.whiteouts += 1;
            return whiteout_entry(&e.name).map(Some);
        };
        if let (Some(id), true) = (e.file_id, e.links > 1) {
            if let Some(first) = level.seen.get(&id) {
                level.summary.hard_links += 1;
                return hard_link_entry(&e.name, first, &info).map(Some);
            }
            level.seen.insert(id, e.name.clone());
        }
        let mut stream = e.open_stream()?;
        let base = stream
            .stream_position()
            .map_err(|err| Error::io(format!("seeking the backup stream of `{}`", e.name), err))?;
        let entries = backup_stream_entries(&mut stream, &e.name, &info, e.with_security)?;
        if let EntryKind::File { size, .. } = entries.main.kind {
            level.summary.data_bytes += size;
        }
        level.summary.alternate_streams += entries.alternates.len() as u64;
        level.summary.dropped_alternate_streams += entries.dropped_alternates as u64;
        level.alternates = entries.alternates.into();
        level.data = Some(EntryData {
            name: e.name,
            stream,
            base,
            runs: RangeReader::new(base, entries.main_data),
        });
        Ok(Some(entries.main))
    }
}

/// Entry-level reading; see the [module documentation](self). Read a folder either
/// through this trait or through [`LayerFolderReader::next`], not both.
impl LayerReader for LayerFolderReader {
    fn next_entry(&mut self) -> Result<Option<Entry>, strata_layer::Error> {
        Ok(self.next_tar_entry()?)
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, strata_layer::Error> {
        match self.entry_level.data.as_mut() {
            Some(d) => Ok(d.runs.read(&mut d.stream, buf, &d.name)?),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use strata_layer::{Entry, EntryKind, LayerWriter, SparseExtent};
    use strata_testkit::entries::{collect, EntryExt};

    use crate::folder::{LayerFolderWriter, WriteSummary};
    use crate::Error;

    /// A folder of `Files`, `Files/a.txt` (8 bytes, only `extents` stored, their data
    /// written in `chunks`) and its alternate stream `Files/a.txt:s` holding `hi`.
    fn sparse_file_with_a_stream(
        layer: &Path,
        extents: &[(u64, u64)],
        chunks: &[&[u8]],
    ) -> WriteSummary {
        let mut w = LayerFolderWriter::create(layer, &[]).unwrap();
        LayerWriter::add(&mut w, &Entry::dir("Files")).unwrap();
        let mut a = Entry::file("Files/a.txt", 8);
        a.kind = EntryKind::File {
            size: 8,
            sparse: Some(
                (extents.iter())
                    .map(|&(offset, len)| SparseExtent { offset, len })
                    .collect(),
            ),
        };
        LayerWriter::add(&mut w, &a).unwrap();
        for chunk in chunks {
            w.write_data(chunk).unwrap();
        }
        LayerWriter::add(&mut w, &Entry::file("Files/a.txt:s", 2)).unwrap();
        w.write_data(b"hi").unwrap();
        LayerWriter::finish(w).unwrap()
    }

    #[test]
    fn entries_become_backup_streams_with_sparse_holes_and_alternate_streams() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        let summary = sparse_file_with_a_stream(&layer, &[(2, 2), (5, 1)], &[b"x", b"yz"]);
        assert_eq!(
            (summary.entries, summary.size, summary.alternate_streams),
            (2, 8, 1)
        );
        let mut want = vec![0, 0, 0, 0]; // attributes 0
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // DATA, 8 bytes
        want.extend(b"\0\0xy\0z\0\0");
        want.extend([4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0]); // ADS, 2 bytes, 16-byte name
        want.extend(":s:$DATA".encode_utf16().flat_map(u16::to_le_bytes));
        want.extend(b"hi");
        assert_eq!(std::fs::read(layer.join("Files/a.txt")).unwrap(), want);
    }

    #[test]
    fn the_reader_gives_back_entries_in_gowinio_form_with_their_data() {
        use strata_layer::tar::HeaderStyle;

        use crate::folder::{LayerChain, LayerFolderReader};

        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        sparse_file_with_a_stream(&layer, &[(2, 3)], &[b"xyz"]);

        let mut r = LayerFolderReader::open(&LayerChain::new(&layer, &[])).unwrap();
        let got: Vec<_> = (collect(&mut r).unwrap().into_iter())
            .map(|i| (i.name(), i.entry.kind, i.entry.header, i.data))
            .collect();
        let file = |size| EntryKind::File { size, sparse: None };
        let go = |mode| HeaderStyle::GoPax { mode };
        assert_eq!(
            got,
            [
                ("Files".into(), EntryKind::Dir, go(0o40000), vec![]),
                // The holes were written into the folder as zeros: the data is dense.
                (
                    "Files/a.txt".into(),
                    file(8),
                    go(0o100000),
                    b"\0\0xyz\0\0\0".to_vec()
                ),
                (
                    "Files/a.txt:s".into(),
                    file(2),
                    go(0o100000),
                    b"hi".to_vec()
                ),
            ]
        );
        let s = r.entry_summary();
        assert_eq!((s.entries, s.data_bytes, s.alternate_streams), (2, 8, 1));
    }

    #[test]
    fn a_refused_entry_keeps_its_windows_error_through_the_trait() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LayerFolderWriter::create(&tmp.path().join("layer"), &[]).unwrap();
        LayerWriter::add(&mut w, &Entry::dir("Files")).unwrap();
        let err = LayerWriter::add(&mut w, &Entry::dir("Files/a.$wcidirs$")).unwrap_err();
        assert!(matches!(err, strata_layer::Error::Format(_)), "{err:?}");
        match Error::from(err) {
            Error::BadName { name, reason } => {
                assert_eq!(name, "Files\\a.$wcidirs$");
                assert!(
                    reason.contains("reserved by the layer folder format"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        LayerWriter::add(&mut w, &Entry::file("Files/b", 3)).unwrap();
        w.write_data(b"ab").unwrap();
        let err = Error::from(LayerWriter::finish(w).unwrap_err());
        assert_eq!(err.to_string(), "tar entry `Files/b`: the data ends early");
    }
}
