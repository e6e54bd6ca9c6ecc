//! Listings of Windows layers, from a tar or a layer folder: each entry with decoded
//! attributes, times, its security descriptor as SDDL, EAs, alternate streams with
//! sizes, link targets; tombstones as entries of their own.
//!
//! ```
//! use strata_wclayer::inspect::inspect_tar;
//! // An empty tar lists nothing.
//! let mut n = 0;
//! inspect_tar(&[0u8; 1024][..], |_| { n += 1; Ok(()) }).unwrap();
//! assert_eq!(n, 0);
//! ```

use std::io::Read;

use strata_layer::compress::Decompressor;
use strata_layer::tar::TarReader;
use strata_layer::{Entry, EntryKind, LayerReader};

use crate::backup;
use crate::backuptar::{
    extended_attributes_of, file_info_from_entry, pax, security_descriptor_of, PAX_MOUNTPOINT,
};
use crate::ea;
use crate::folder::{LayerChain, LayerFolderReader};
use crate::reparse;
use crate::sd::SecurityDescriptor;
use crate::{Error, FileBasicInfo};

/// One named thing and its size (an EA, an alternate stream).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Named {
    /// The EA's or stream's name.
    pub name: String,
    /// Its value's or data's length in bytes.
    pub size: u64,
}

/// One entry of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InspectEntry {
    /// Windows form (`Files\a.txt`).
    pub name: String,
    /// `file`, `directory`, `symlink`, `junction`, `hardlink` or `tombstone`.
    pub kind: &'static str,
    /// The data size of a file (0 for anything else).
    pub size: u64,
    /// FILE_ATTRIBUTE_* bits, `None` for a tombstone.
    pub attributes: Option<u32>,
    /// `READONLY|HIDDEN|DIRECTORY|…`.
    pub attribute_names: Option<String>,
    /// The four FILETIMEs in RFC 3339, UTC, 100 ns precision (`None` for a tombstone).
    pub creation_time: Option<String>,
    /// See `creation_time`.
    pub last_access_time: Option<String>,
    /// See `creation_time`.
    pub last_write_time: Option<String>,
    /// See `creation_time`.
    pub change_time: Option<String>,
    /// SDDL, or why the descriptor could not be decoded.
    pub security_descriptor: Option<String>,
    /// The extended attributes, by name.
    pub extended_attributes: Vec<Named>,
    /// The alternate data streams, in stream order.
    pub alternate_streams: Vec<Named>,
    /// A symlink's or junction's target, or the first name of a hard link.
    pub link_target: Option<String>,
}

fn with_info(e: &mut InspectEntry, i: &FileBasicInfo) {
    e.attributes = Some(i.attributes.0);
    e.attribute_names = Some(i.attributes.to_string());
    e.creation_time = Some(i.creation_time.to_rfc3339());
    e.last_access_time = Some(i.last_access_time.to_rfc3339());
    e.last_write_time = Some(i.last_write_time.to_rfc3339());
    e.change_time = Some(i.change_time.to_rfc3339());
}

fn sddl(bytes: &[u8]) -> String {
    match SecurityDescriptor::parse(bytes) {
        Ok(sd) => sd.to_sddl(),
        Err(e) => format!("<{e}>"),
    }
}

fn win(name: &[u8]) -> String {
    String::from_utf8_lossy(name).replace('/', "\\")
}

fn from_tar_entry(e: &Entry) -> Result<InspectEntry, Error> {
    let mut out = InspectEntry {
        name: win(e.path.as_bytes()),
        ..Default::default()
    };
    match &e.kind {
        EntryKind::Whiteout => {
            out.kind = "tombstone";
            return Ok(out);
        }
        EntryKind::Opaque => {
            out.kind = "tombstone";
            out.name.push_str("\\.wh..opq");
            return Ok(out);
        }
        _ => {}
    }
    let (size, info) = file_info_from_entry(e)?;
    with_info(&mut out, &info);
    out.size = size;
    out.kind = match &e.kind {
        EntryKind::HardLink { target } => {
            out.link_target = Some(win(target.as_bytes()));
            "hardlink"
        }
        EntryKind::Symlink { target } => {
            out.link_target = Some(String::from_utf8_lossy(target).into_owned());
            if pax(e, PAX_MOUNTPOINT).is_some() {
                "junction"
            } else {
                "symlink"
            }
        }
        _ if info.attributes.is_dir() => "directory",
        _ => "file",
    };
    out.security_descriptor = security_descriptor_of(e)?.map(|b| sddl(&b));
    out.extended_attributes = extended_attributes_of(e)?
        .into_iter()
        .map(|x| Named {
            name: String::from_utf8_lossy(&x.name).into_owned(),
            size: x.value.len() as u64,
        })
        .collect();
    Ok(out)
}

/// Lists a Windows layer tar (plain, gzip or zstd), calling `f` once per entry; ADS
/// entries are folded into the file they belong to.
pub fn inspect_tar<R: Read + Send>(
    input: R,
    mut f: impl FnMut(&InspectEntry) -> Result<(), Error>,
) -> Result<(), Error> {
    let input = Decompressor::new(input).map_err(|e| Error::io("reading the layer", e))?;
    let mut r = TarReader::new(input);
    let mut pending: Option<(Vec<u8>, InspectEntry)> = None;
    while let Some(e) = r.next_entry()? {
        if let Some((main, cur)) = pending.as_mut() {
            let p = e.path.as_bytes();
            if matches!(e.kind, EntryKind::File { .. })
                && p.len() > main.len()
                && p.starts_with(main)
                && p[main.len()] == b':'
            {
                let s = String::from_utf8_lossy(&p[main.len()..]);
                cur.alternate_streams.push(Named {
                    name: s.strip_suffix(":$DATA").unwrap_or(&s).to_owned(),
                    size: e.kind.data_len(),
                });
                continue;
            }
        }
        if let Some((_, cur)) = pending.take() {
            f(&cur)?;
        }
        pending = Some((e.path.as_bytes().to_vec(), from_tar_entry(&e)?));
    }
    if let Some((_, cur)) = pending {
        f(&cur)?;
    }
    Ok(())
}

/// Lists a layer folder in reader order (what an export would write).
pub fn inspect_folder(
    chain: &LayerChain,
    mut f: impl FnMut(&InspectEntry) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut r = LayerFolderReader::open(chain)?;
    while let Some(e) = r.next()? {
        let mut out = InspectEntry {
            name: e.name.to_string(),
            ..Default::default()
        };
        let Some(info) = e.info else {
            out.kind = "tombstone";
            f(&out)?;
            continue;
        };
        with_info(&mut out, &info);
        let scan = backup::scan(std::io::BufReader::new(e.open_stream()?), e.name.as_str())?;
        out.kind = if info.attributes.is_dir() {
            "directory"
        } else {
            "file"
        };
        if let Some(d) = &scan.data {
            out.size = if d.sparse && d.size == 0 {
                d.logical_size
            } else {
                d.size
            };
        }
        if let Some(rp) = &scan.reparse {
            let p = reparse::decode(rp)?;
            out.kind = if p.mount_point { "junction" } else { "symlink" };
            out.link_target = Some(p.target);
        }
        if e.with_security {
            out.security_descriptor = scan.security.as_deref().map(sddl);
        }
        if let Some(chain) = &scan.ea {
            out.extended_attributes = ea::decode(chain)?
                .into_iter()
                .map(|x| Named {
                    name: String::from_utf8_lossy(&x.name).into_owned(),
                    size: x.value.len() as u64,
                })
                .collect();
        }
        out.alternate_streams = scan
            .alternates
            .iter()
            .map(|a| Named {
                name: a.name.strip_suffix(":$DATA").unwrap_or(&a.name).to_owned(),
                size: a.size,
            })
            .collect();
        f(&out)?;
    }
    Ok(())
}
