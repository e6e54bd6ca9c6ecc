//! Copying a directory tree with everything a layer can hold: hard links, xattrs (all
//! namespaces), owners, devices, fifos and nanosecond times, file data copied inside the
//! kernel (`copy_file_range`, so reflinks where the file system has them). The vfs store
//! driver builds a child layer this way from a copy of its parent.
//!
//! It is the pack reader feeding the unpack writer ([`DirReader`] into [`DirWriter`]),
//! so the copy obeys the same rules as applying a layer: every path is created inside
//! `dst`, nothing below `src` is followed.
//!
//! ```
//! let src = tempfile::tempdir().unwrap();
//! std::fs::write(src.path().join("a"), "hi\n").unwrap();
//! std::fs::hard_link(src.path().join("a"), src.path().join("b")).unwrap();
//! let dst = tempfile::tempdir().unwrap();
//! strata_layer::copy_tree::copy_tree(src.path(), dst.path()).unwrap();
//! use std::os::unix::fs::MetadataExt;
//! assert_eq!(std::fs::metadata(dst.path().join("b")).unwrap().nlink(), 2);
//! ```

use std::path::Path;

use crate::dir_reader::DirReader;
use crate::dir_writer::{ApplySummary, DirWriter, DirWriterOptions};
use crate::{Error, LayerReader, LayerWriter};

/// Copies the tree below `src` into the existing directory `dst` (the roots themselves
/// are not copied). Everything is kept when running as root; otherwise owners and devices
/// are skipped as in [`DirWriterOptions::default`].
pub fn copy_tree(src: &Path, dst: &Path) -> Result<ApplySummary, Error> {
    let mut reader = DirReader::open(src)?;
    let options = DirWriterOptions {
        privileged_xattrs: true,
        ..DirWriterOptions::default()
    };
    let mut writer = DirWriter::open(dst, options)?;
    while let Some(entry) = reader.next_entry()? {
        writer.add(&entry)?;
        let len = entry.kind.data_len();
        if len > 0 {
            let fd = reader
                .data_fd()
                .ok_or_else(|| Error::Misuse(format!("no open file for `{}`", entry.path)))?;
            writer.copy_data_from(fd, len)?;
        }
    }
    let mut summary = writer.finish()?;
    summary.warnings.extend(reader.warnings().iter().cloned());
    Ok(summary)
}
