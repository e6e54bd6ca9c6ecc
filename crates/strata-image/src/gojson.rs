//! Go-compatible JSON: what Go's `encoding/json` writes, byte for byte.
//!
//! Docker's and containerd's image files are Go JSON: struct fields in declaration order
//! (our structs declare them in Go's order), map keys sorted bytewise (our maps are
//! `BTreeMap<String, _>`), no whitespace, and `<`, `>`, `&`, U+2028 and U+2029 escaped as
//! `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`. `json.Encoder.Encode` adds a `\n`.
//! Times are RFC 3339 with nanoseconds, trailing zeros trimmed, the offset kept
//! ([`GoTime`]).
//!
//! ```
//! use strata_image::gojson::{encode, marshal};
//! let labels = std::collections::BTreeMap::from([("b", "x<y"), ("a", "&")]);
//! assert_eq!(marshal(&labels).unwrap(), br#"{"a":"\u0026","b":"x\u003cy"}"#);
//! assert_eq!(encode(&[1, 2]).unwrap(), b"[1,2]\n");
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strata_layer::Timestamp;

use crate::Error;

/// `json.Marshal(value)`, with the escaper every Strata crate shares
/// ([`strata_layer::gojson`]).
pub fn marshal<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    strata_layer::gojson::to_vec(value).map_err(|e| Error::json("generated JSON", e))
}

/// `json.NewEncoder(w).Encode(value)`: [`marshal`] and a newline.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = marshal(value)?;
    out.push(b'\n');
    Ok(out)
}

/// A point in time as Go's `time.Time` holds one parsed from RFC 3339: the instant plus
/// the offset it was written with, which Go keeps when it writes the time back.
#[derive(Clone, Copy, Debug)]
pub struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    pub nanos: u32,
    /// Offset from UTC in seconds, as written (0 for `Z`).
    pub offset: i32,
}

impl GoTime {
    pub const EPOCH: GoTime = GoTime {
        secs: 0,
        nanos: 0,
        offset: 0,
    };

    /// Parses RFC 3339 (`2026-12-01T08:29:09.591738302Z`, `…+01:00`), as Go's
    /// `time.Time.UnmarshalJSON` accepts it.
    pub fn parse(s: &str) -> Option<GoTime> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 59
        {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &b[start..i];
            if digits.is_empty() {
                return None;
            }
            for (k, d) in digits.iter().take(9).enumerate() {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - k as u32);
            }
        }
        let offset = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let (h, m) = (
                    i32::from(h1 - b'0') * 10 + i32::from(h2 - b'0'),
                    i32::from(m1 - b'0') * 10 + i32::from(m2 - b'0'),
                );
                if h > 23 || m > 59 {
                    return None;
                }
                let v = h * 3600 + m * 60;
                if *sign == b'-' {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
        Some(GoTime {
            secs: local - i64::from(offset),
            nanos,
            offset,
        })
    }

    /// The same instant written in UTC.
    pub fn utc(secs: i64, nanos: u32) -> GoTime {
        GoTime {
            secs,
            nanos,
            offset: 0,
        }
    }
}

impl fmt::Display for GoTime {
    /// RFC 3339 with nanoseconds, trailing zeros (and the dot) trimmed, `Z` for UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = Timestamp::new(self.secs + i64::from(self.offset), 0);
        let (y, m, d, hh, mm, ss) = local.utc_civil();
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        if self.offset == 0 {
            f.write_str("Z")
        } else {
            let a = self.offset.unsigned_abs();
            let sign = if self.offset < 0 { '-' } else { '+' };
            write!(f, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
        }
    }
}

/// Equal as instants, whatever the offsets (how Go's `Time.Equal` compares).
impl PartialEq for GoTime {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GoTime {}

impl PartialOrd for GoTime {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GoTime {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.secs, self.nanos).cmp(&(other.secs, other.nanos))
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time")))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"k": "<a href=\"x\">&\u{2028}\u{2029}é\n"});
        assert_eq!(
            String::from_utf8(marshal(&v).unwrap()).unwrap(),
            r#"{"k":"\u003ca href=\"x\"\u003e\u0026\u2028\u2029é\n"}"#
        );
    }

    #[test]
    fn times_round_trip_as_go_writes_them() {
        for (input, output, secs) in [
            (
                "2026-12-01T08:29:09.591738302Z",
                "2026-12-01T08:29:09.591738302Z",
                1_796_113_749,
            ),
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", 0),
            ("1970-01-01T01:00:00+01:00", "1970-01-01T01:00:00+01:00", 0),
            (
                "2023-11-14T22:13:20.500000000Z",
                "2023-11-14T22:13:20.5Z",
                1_700_000_000,
            ),
            (
                "2000-02-29T12:00:00-05:30",
                "2000-02-29T12:00:00-05:30",
                951_845_400,
            ),
            (
                "2023-11-14T22:13:20+00:00",
                "2023-11-14T22:13:20Z",
                1_700_000_000,
            ),
            ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z", -1),
        ] {
            let t = GoTime::parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(t.to_string(), output);
            assert_eq!(t.secs, secs, "{input}");
        }
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "x",
        ] {
            assert!(GoTime::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            GoTime::parse("1970-01-01T01:00:00+01:00"),
            Some(GoTime::EPOCH)
        );
    }
}
