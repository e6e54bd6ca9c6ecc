//! FILE_BASIC_INFO: the four FILETIMEs and the attribute bits, and how they convert to
//! and from Unix times exactly as Go does (`../shared/specs/windows-layer.md` §2).

use std::fmt;

use strata_layer::Timestamp;

/// FILETIME ticks (100 ns) between 1601-01-01 and 1970-01-01.
const EPOCH_DIFF: i64 = 116_444_736_000_000_000;

/// A FILETIME: 100 ns ticks since 1601-01-01 UTC, signed as in FILE_BASIC_INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileTime(pub i64);

impl FileTime {
    /// What a tar entry without `atime`/`ctime` imports as: Go's zero time, whose
    /// `UnixNano` wraps, gives 1754-08-30T22:43:41.1286549Z.
    pub const GO_ZERO_TIME: FileTime = FileTime(48_491_090_211_286_549);

    /// Unix nanoseconds, computed in wrapping i64 like Go's `Filetime.Nanoseconds`
    /// (FILETIME 0 wraps to the year 2185).
    pub fn to_unix_nanos(self) -> i64 {
        self.0.wrapping_sub(EPOCH_DIFF).wrapping_mul(100)
    }

    /// Go's `NsecToFiletime`: nanoseconds / 100 (toward zero) + the epoch difference.
    pub fn from_unix_nanos(ns: i64) -> Self {
        FileTime((ns / 100).wrapping_add(EPOCH_DIFF))
    }

    /// The Unix time Go writes into a tar for this FILETIME.
    pub fn to_timestamp(self) -> Timestamp {
        let ns = self.to_unix_nanos();
        Timestamp::new(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        )
    }

    /// The FILETIME Go reads from a tar time (its `UnixNano` wraps outside 1678..2262).
    ///
    /// Strata: a time that only a wrapped FILETIME can give (FILETIME 0 is written as
    /// `6802270473.709551616`) maps back to that FILETIME, where Go would truncate it to
    /// another one; so every time Go writes reads back to the FILETIME it came from.
    pub fn from_timestamp(t: Timestamp) -> Self {
        let ns = t
            .secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.nanos as i64);
        if ns % 100 != 0 {
            for k in [-1i128, 1] {
                let unwrapped = ns as i128 + k * (1i128 << 64);
                if unwrapped % 100 == 0 {
                    if let Ok(ft) = i64::try_from(unwrapped / 100 + EPOCH_DIFF as i128) {
                        if FileTime(ft).to_unix_nanos() == ns {
                            return FileTime(ft);
                        }
                    }
                }
            }
        }
        Self::from_unix_nanos(ns)
    }

    /// RFC 3339 in UTC with 100 ns precision (`2020-01-01T00:00:00.1234567Z`), for display.
    pub fn to_rfc3339(self) -> String {
        let ticks = self.0 as i128;
        let secs = ticks.div_euclid(10_000_000);
        let frac = ticks.rem_euclid(10_000_000);
        let days = secs.div_euclid(86_400) - 134_774; // 1601-01-01 → 1970-01-01
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days as i64);
        let mut s = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        );
        if frac != 0 {
            let f = format!("{frac:07}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// FILE_ATTRIBUTE_* bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileAttributes(pub u32);

impl FileAttributes {
    /// Writes to the file are refused.
    pub const READONLY: u32 = 0x1;
    /// Left out of ordinary directory listings.
    pub const HIDDEN: u32 = 0x2;
    /// Used by the operating system itself.
    pub const SYSTEM: u32 = 0x4;
    /// The object is a directory.
    pub const DIRECTORY: u32 = 0x10;
    /// Marked for backup (set by Windows when a file changes).
    pub const ARCHIVE: u32 = 0x20;
    /// No other attribute is set.
    pub const NORMAL: u32 = 0x80;
    /// Kept in memory if possible: the file is short-lived.
    pub const TEMPORARY: u32 = 0x100;
    /// The file has holes (its data comes as sparse blocks).
    pub const SPARSE_FILE: u32 = 0x200;
    /// The object carries reparse data (a symlink or junction in a layer).
    pub const REPARSE_POINT: u32 = 0x400;
    /// NTFS compresses the data on disk.
    pub const COMPRESSED: u32 = 0x800;
    /// The data is held elsewhere (offline storage).
    pub const OFFLINE: u32 = 0x1000;
    /// The content indexing service skips the file.
    pub const NOT_CONTENT_INDEXED: u32 = 0x2000;
    /// NTFS encrypts the data on disk.
    pub const ENCRYPTED: u32 = 0x4000;

    const NAMES: [(u32, &'static str); 13] = [
        (Self::READONLY, "READONLY"),
        (Self::HIDDEN, "HIDDEN"),
        (Self::SYSTEM, "SYSTEM"),
        (Self::DIRECTORY, "DIRECTORY"),
        (Self::ARCHIVE, "ARCHIVE"),
        (Self::NORMAL, "NORMAL"),
        (Self::TEMPORARY, "TEMPORARY"),
        (Self::SPARSE_FILE, "SPARSE_FILE"),
        (Self::REPARSE_POINT, "REPARSE_POINT"),
        (Self::COMPRESSED, "COMPRESSED"),
        (Self::OFFLINE, "OFFLINE"),
        (Self::NOT_CONTENT_INDEXED, "NOT_CONTENT_INDEXED"),
        (Self::ENCRYPTED, "ENCRYPTED"),
    ];

    /// Whether [`DIRECTORY`](Self::DIRECTORY) is set.
    pub fn is_dir(self) -> bool {
        self.0 & Self::DIRECTORY != 0
    }
}

impl fmt::Display for FileAttributes {
    /// `READONLY|HIDDEN|DIRECTORY`, unnamed bits as hex, `0` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if rest & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                rest &= !bit;
                first = false;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        } else if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

/// FILE_BASIC_INFO: what a layer keeps of an object besides its streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileBasicInfo {
    /// When the object was created.
    pub creation_time: FileTime,
    /// When it was last read.
    pub last_access_time: FileTime,
    /// When its data was last written (a tar's mtime).
    pub last_write_time: FileTime,
    /// When its data or metadata last changed (a tar's ctime).
    pub change_time: FileTime,
    /// Its FILE_ATTRIBUTE_* bits.
    pub attributes: FileAttributes,
}

impl FileBasicInfo {
    /// The four times as 32 bytes (i64 LE each, FILE_BASIC_INFO order): how a layer folder
    /// on Linux keeps them (see [`crate::folder`]).
    pub fn times_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, t) in [
            self.creation_time,
            self.last_access_time,
            self.last_write_time,
            self.change_time,
        ]
        .iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&t.0.to_le_bytes());
        }
        b
    }

    /// The inverse of [`times_bytes`](Self::times_bytes); `None` unless exactly 32 bytes.
    pub fn with_times_bytes(attributes: FileAttributes, b: &[u8]) -> Option<Self> {
        if b.len() != 32 {
            return None;
        }
        let t = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            FileTime(i64::from_le_bytes(x))
        };
        Some(FileBasicInfo {
            creation_time: t(0),
            last_access_time: t(1),
            last_write_time: t(2),
            change_time: t(3),
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv9_filetime_conversions() {
        let t = FileTime(132223104001234567).to_timestamp();
        assert_eq!(t, Timestamp::new(1577836800, 123456700));
        assert_eq!(FileTime::from_timestamp(t), FileTime(132223104001234567));
        assert_eq!(
            FileTime(0).to_timestamp(),
            Timestamp::new(6802270473, 709551616)
        );
        // Go reads that back as 184467440737095516; Strata as the FILETIME it came from.
        assert_eq!(
            FileTime::from_timestamp(Timestamp::new(6802270473, 709551616)),
            FileTime(0)
        );
        assert_eq!(
            FileTime::from_unix_nanos(6802270473709551616),
            FileTime(184467440737095516)
        );
        assert_eq!(
            FileTime::from_timestamp(Timestamp::new(-2, 500_000_000)),
            FileTime(116444735985000000)
        );
        // Go's zero time: year 1, whose UnixNano wraps.
        assert_eq!(
            FileTime::from_timestamp(Timestamp::new(-62135596800, 0)),
            FileTime::GO_ZERO_TIME
        );
    }

    #[test]
    fn attributes_and_times_display() {
        assert_eq!(
            FileAttributes(0x411).to_string(),
            "READONLY|DIRECTORY|REPARSE_POINT"
        );
        assert_eq!(FileAttributes(0x10000).to_string(), "0x10000");
        assert_eq!(FileAttributes(0).to_string(), "0");
        assert_eq!(
            FileTime(132223104001234567).to_rfc3339(),
            "2020-01-01T00:00:00.1234567Z"
        );
        assert_eq!(FileTime(0).to_rfc3339(), "1601-01-01T00:00:00Z");
        assert_eq!(
            FileTime::GO_ZERO_TIME.to_rfc3339(),
            "1754-08-30T22:43:41.1286549Z"
        );
    }
}
