//! The folder writer at the entry level: [`LayerWriter`] for [`LayerFolderWriter`].
//!
//! A layer folder speaks Windows: a [`WinPath`], a [`FileBasicInfo`] and a backup
//! stream. The crate-wide [`Entry`] carries a Windows entry the way a Windows layer tar
//! does (go-winio's `backuptar`, spec §3): the path with `/`, the attributes, times and
//! security descriptor as `MSWINDOWS.*` PAX records, the file's content as the entry's
//! data, each alternate data stream as an entry of its own named `<file>:<stream>` right
//! after its file. [`LayerWriter::add`] maps such an entry onto the folder, as hcsshim's
//! `ImportLayerFromTar` does: a whiteout is a tombstone (`remove`), a hard link
//! `add_link`, anything else `add` with the stream's head (SECURITY, EA, REPARSE or the
//! DATA header); [`LayerWriter::write_data`] then delivers the data, sparse holes
//! filled with zeros. Errors travel as [`strata_layer::Error::Format`] holding this
//! crate's [`Error`], which `From` takes back whole.

use std::io::Write;

use strata_layer::{Entry, EntryKind, LayerWriter, SparseExtent};

use super::{LayerFolderWriter, WriteSummary};
use crate::backup::BackupStreamWriter;
use crate::backuptar::{
    alternate_stream_header, file_info_from_entry, write_backup_stream_head, zeros,
};
use crate::{Error, WinPath};

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

#[cfg(test)]
mod tests {
    use strata_layer::{Entry, EntryKind, LayerPath, LayerWriter, SparseExtent};

    use crate::folder::LayerFolderWriter;
    use crate::Error;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry::new(LayerPath::from_tar_name(path.as_bytes()).unwrap(), kind)
    }

    #[test]
    fn entries_become_backup_streams_with_sparse_holes_and_alternate_streams() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        let mut w = LayerFolderWriter::create(&layer, &[]).unwrap();
        LayerWriter::add(&mut w, &entry("Files", EntryKind::Dir)).unwrap();
        let sparse = EntryKind::File {
            size: 8,
            sparse: Some(vec![
                SparseExtent { offset: 2, len: 2 },
                SparseExtent { offset: 5, len: 1 },
            ]),
        };
        LayerWriter::add(&mut w, &entry("Files/a.txt", sparse)).unwrap();
        w.write_data(b"x").unwrap();
        w.write_data(b"yz").unwrap();
        let ads = EntryKind::File {
            size: 2,
            sparse: None,
        };
        LayerWriter::add(&mut w, &entry("Files/a.txt:s", ads)).unwrap();
        w.write_data(b"hi").unwrap();
        let summary = LayerWriter::finish(w).unwrap();
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
    fn a_refused_entry_keeps_its_windows_error_through_the_trait() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LayerFolderWriter::create(&tmp.path().join("layer"), &[]).unwrap();
        LayerWriter::add(&mut w, &entry("Files", EntryKind::Dir)).unwrap();
        let err =
            LayerWriter::add(&mut w, &entry("Files/a.$wcidirs$", EntryKind::Dir)).unwrap_err();
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
        let short = EntryKind::File {
            size: 3,
            sparse: None,
        };
        LayerWriter::add(&mut w, &entry("Files/b", short)).unwrap();
        w.write_data(b"ab").unwrap();
        let err = Error::from(LayerWriter::finish(w).unwrap_err());
        assert_eq!(err.to_string(), "tar entry `Files/b`: the data ends early");
    }
}
