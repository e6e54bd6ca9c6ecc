//! REPARSE_DATA_BUFFER for symlinks, junctions (mount points) and LX symlinks (§1.6.3).
//!
//! ```
//! use strata_wclayer::reparse::{decode, encode, ReparsePoint};
//! let buf = encode(&ReparsePoint { target: r"..\target.txt".into(), mount_point: false }).unwrap();
//! assert_eq!(buf.len(), 76); // TV6
//! assert_eq!(decode(&buf).unwrap().target, r"..\target.txt");
//! ```

use crate::Error;

/// IO_REPARSE_TAG_MOUNT_POINT: a junction.
pub const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// IO_REPARSE_TAG_SYMLINK: a Windows symbolic link.
pub const TAG_SYMLINK: u32 = 0xA000_000C;
/// IO_REPARSE_TAG_LX_SYMLINK: a symlink made by WSL (version 2, a UTF-8 target).
pub const TAG_LX_SYMLINK: u32 = 0xA000_001D;
/// Windows caps reparse data at 16 KiB.
pub const MAX_REPARSE_DATA: usize = 16 * 1024;
/// Symlink flag: the target is relative.
pub const SYMLINK_FLAG_RELATIVE: u32 = 1;

/// A decoded reparse point: what go-winio keeps (the print name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReparsePoint {
    /// The print name, with `\` separators as Windows stores it.
    pub target: String,
    /// A junction (mount point) rather than a symlink.
    pub mount_point: bool,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadReparse {
        reason: reason.into(),
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// Encodes a symlink or junction from its target the way go-winio does; targets whose
/// buffer would pass the 16 KiB limit are an error (Go silently corrupts them).
pub fn encode(rp: &ReparsePoint) -> Result<Vec<u8>, Error> {
    let t = &rp.target;
    let mut relative = false;
    let nt: String = if let Some(rest) = t.strip_prefix(r"\\?\") {
        format!(r"\??\{rest}")
    } else if let Some(rest) = t.strip_prefix(r"\\") {
        format!(r"\??\UNC\{rest}")
    } else if t.len() >= 2 && t.as_bytes()[1] == b':' && t.as_bytes()[0].is_ascii_alphabetic() {
        format!(r"\??\{t}")
    } else {
        relative = true;
        t.clone()
    };
    let (nt16, print16) = (utf16(&nt), utf16(t));
    let buffers = 2 * (nt16.len() + 1 + print16.len() + 1);
    let extra = if rp.mount_point { 0 } else { 4 };
    let data_len = 8 + extra + buffers;
    if 8 + data_len > MAX_REPARSE_DATA {
        return Err(bad(format!(
            "a reparse buffer for a target of {} UTF-16 units is {} bytes, over Windows' {MAX_REPARSE_DATA}",
            print16.len(),
            8 + data_len
        )));
    }
    let tag = if rp.mount_point {
        TAG_MOUNT_POINT
    } else {
        TAG_SYMLINK
    };
    let mut out = Vec::with_capacity(8 + data_len);
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(data_len as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for v in [0, 2 * nt16.len(), 2 * (nt16.len() + 1), 2 * print16.len()] {
        out.extend_from_slice(&(v as u16).to_le_bytes());
    }
    if !rp.mount_point {
        let flags = if relative { SYMLINK_FLAG_RELATIVE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
    }
    for u in nt16.iter().chain(&[0]).chain(&print16).chain(&[0]) {
        out.extend_from_slice(&u.to_le_bytes());
    }
    Ok(out)
}

/// Decodes a symlink, junction or LX symlink; any other tag is an error
/// ("unsupported reparse point"). Lengths that lie about the buffer are errors.
pub fn decode(b: &[u8]) -> Result<ReparsePoint, Error> {
    if b.len() < 8 {
        return Err(bad(format!(
            "{} bytes cannot hold a reparse header",
            b.len()
        )));
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let tag = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let data_len = u16_at(4);
    if 8 + data_len > b.len() {
        return Err(bad(format!(
            "ReparseDataLength {data_len} runs past the {} bytes of the buffer",
            b.len()
        )));
    }
    let data = &b[8..8 + data_len];
    match tag {
        TAG_LX_SYMLINK => {
            if data.len() < 4 {
                return Err(bad("LX symlink without its version field"));
            }
            let version = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            if version != 2 {
                return Err(bad(format!("LX symlink version {version}, expected 2")));
            }
            let target = std::str::from_utf8(&data[4..])
                .map_err(|_| bad("LX symlink target is not UTF-8"))?;
            Ok(ReparsePoint {
                target: target.to_owned(),
                mount_point: false,
            })
        }
        TAG_SYMLINK | TAG_MOUNT_POINT => {
            let mount_point = tag == TAG_MOUNT_POINT;
            let path_start = if mount_point { 8 } else { 12 };
            if data.len() < path_start {
                return Err(bad(format!(
                    "reparse data of {} bytes is too short for a {}",
                    data.len(),
                    if mount_point { "junction" } else { "symlink" }
                )));
            }
            let d16 = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as usize;
            let (poff, plen) = (d16(4), d16(6));
            let paths = &data[path_start..];
            if poff + plen > paths.len() || plen % 2 != 0 {
                return Err(bad(format!(
                    "print name at {poff}+{plen} lies outside the {}-byte path buffer",
                    paths.len()
                )));
            }
            let units: Vec<u16> = paths[poff..poff + plen]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let target =
                String::from_utf16(&units).map_err(|_| bad("print name is not valid UTF-16"))?;
            Ok(ReparsePoint {
                target,
                mount_point,
            })
        }
        other => Err(bad(format!("unsupported reparse point {other:x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn tv5_junction_and_tv6_symlink_bytes() {
        let tv5 = unhex(
            "03 00 00 a0 30 00 00 00 00 00 16 00 18 00 0e 00  5c 00 3f 00 3f 00 5c 00 43 00 3a 00 5c 00 64 00
             61 00 74 00 61 00 00 00 43 00 3a 00 5c 00 64 00  61 00 74 00 61 00 00 00",
        );
        let tv6 = unhex(
            "0c 00 00 a0 44 00 00 00 00 00 1a 00 1c 00 1a 00  01 00 00 00 2e 00 2e 00 5c 00 74 00 61 00 72 00
             67 00 65 00 74 00 2e 00 74 00 78 00 74 00 00 00  2e 00 2e 00 5c 00 74 00 61 00 72 00 67 00 65 00
             74 00 2e 00 74 00 78 00 74 00 00 00",
        );
        let j = ReparsePoint {
            target: r"C:\data".into(),
            mount_point: true,
        };
        let s = ReparsePoint {
            target: r"..\target.txt".into(),
            mount_point: false,
        };
        assert_eq!(encode(&j).unwrap(), tv5);
        assert_eq!(encode(&s).unwrap(), tv6);
        assert_eq!(decode(&tv5).unwrap(), j);
        assert_eq!(decode(&tv6).unwrap(), s);
    }

    #[test]
    fn lying_lengths_and_unknown_tags_are_errors() {
        let mut s = encode(&ReparsePoint {
            target: "x".into(),
            mount_point: false,
        })
        .unwrap();
        s[4] = 0xff;
        assert!(decode(&s).unwrap_err().to_string().contains("runs past"));
        let mut s = encode(&ReparsePoint {
            target: "x".into(),
            mount_point: false,
        })
        .unwrap();
        s[14] = 0x40; // print name length
        assert!(decode(&s).unwrap_err().to_string().contains("outside"));
        let dedup = [0x13, 0, 0, 0x80, 0, 0, 0, 0];
        assert!(decode(&dedup)
            .unwrap_err()
            .to_string()
            .contains("unsupported reparse point 80000013"));
        assert!(encode(&ReparsePoint {
            target: "a".repeat(5000),
            mount_point: false
        })
        .is_err());
        let mut lx = TAG_LX_SYMLINK.to_le_bytes().to_vec();
        lx.extend_from_slice(&[7, 0, 0, 0, 2, 0, 0, 0, b'/', b'a', b'b']);
        assert_eq!(decode(&lx).unwrap().target, "/ab");
    }

    proptest! {
        #[test]
        fn targets_round_trip(t in "[a-zA-Z0-9_.\\\\: \u{e9}\u{4e2d}]{0,200}", mp in any::<bool>()) {
            let rp = ReparsePoint { target: t, mount_point: mp };
            prop_assert_eq!(decode(&encode(&rp).unwrap()).unwrap(), rp);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode(&buf);
        }
    }
}
