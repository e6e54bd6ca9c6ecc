//! Go-compatible JSON: what Go's `encoding/json` writes, byte for byte.
//!
//! Docker's and containerd's image files are Go JSON: struct fields in declaration order
//! (our structs declare them in Go's order), map keys sorted bytewise (our maps are
//! `BTreeMap<String, _>`), no whitespace, and `<`, `>`, `&`, U+2028 and U+2029 escaped as
//! `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`. `json.Encoder.Encode` adds a `\n`.
//! Times are RFC 3339 with nanoseconds, trailing zeros trimmed, the offset kept
//! ([`GoTime`]).
//!
//! Reading, [`from_slice`] fills structs as `json.Unmarshal` does: a key names a field
//! exactly or else case-insensitively (jib writes `config`, `repoTags`, `layers` where
//! Docker writes `Config`, `RepoTags`, `Layers`, and Docker, containerd and skopeo all
//! read it), the last of several keys for one field wins, unknown keys are ignored.
//!
//! ```
//! use strata_image::gojson::{encode, marshal};
//! let labels = std::collections::BTreeMap::from([("b", "x<y"), ("a", "&")]);
//! assert_eq!(marshal(&labels).unwrap(), br#"{"a":"\u0026","b":"x\u003cy"}"#);
//! assert_eq!(encode(&[1, 2]).unwrap(), b"[1,2]\n");
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, IntoDeserializer, MapAccess, SeqAccess, Visitor};
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

/// `json.Unmarshal(bytes, &value)`: struct fields matched by Go's rules (see the module
/// documentation). Syntax errors carry their line and column; type errors do not.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Entry {
///     #[serde(rename = "Config")]
///     config: String,
///     #[serde(rename = "RepoTags", default)]
///     repo_tags: Vec<String>,
/// }
/// let e: Entry = strata_image::gojson::from_slice(br#"{"config":"a","repoTags":["x:1"],"CONFIG":"b"}"#).unwrap();
/// assert_eq!((e.config.as_str(), e.repo_tags.len()), ("b", 1));
/// ```
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let doc: Doc = serde_json::from_slice(bytes)?;
    T::deserialize(doc)
}

/// A JSON document with its objects' keys in order, duplicates kept: what Go's decoder
/// walks. As a [`Deserializer`] it matches struct fields as Go does.
#[derive(Clone, Debug)]
enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

/// Go's case folding of a field name (Go 1.21+: ASCII upper-cased, other characters by
/// their simple upper-case mapping), so `ſ` matches `s` and `K` (Kelvin) nothing.
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_none<E>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
                Doc::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
                Ok(Doc::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
                Ok(Doc::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
                Ok(Doc::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Doc, E> {
                serde_json::Number::from_f64(v)
                    .map(Doc::Number)
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
                Ok(Doc::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Doc, E> {
                Ok(Doc::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Doc::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Doc>()? {
                    entries.push(entry);
                }
                Ok(Doc::Object(entries))
            }
        }
        d.deserialize_any(DocVisitor)
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Doc {
    type Deserializer = Doc;
    fn into_deserializer(self) -> Doc {
        self
    }
}

impl<'de> Deserializer<'de> for Doc {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Doc::Null => visitor.visit_unit(),
            Doc::Bool(b) => visitor.visit_bool(b),
            Doc::Number(n) => n.deserialize_any(visitor),
            Doc::String(s) => visitor.visit_string(s),
            Doc::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Doc::Object(entries) => {
                let mut map = MapDeserializer::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Doc::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    /// Go's field matching: the exact name, else the first field that folds the same;
    /// keys that name no field are dropped, and a later key for a field replaces an
    /// earlier one.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let Doc::Object(entries) = self else {
            return self.deserialize_any(visitor);
        };
        let folded: Vec<String> = fields.iter().map(|f| fold(f)).collect();
        let mut matched: Vec<(&'static str, Doc)> = Vec::new();
        for (key, value) in entries {
            let field = fields.iter().find(|f| **f == key).or_else(|| {
                let k = fold(&key);
                folded.iter().position(|f| *f == k).map(|i| &fields[i])
            });
            let Some(field) = field else { continue };
            match matched.iter_mut().find(|(f, _)| f == field) {
                Some(slot) => slot.1 = value,
                None => matched.push((field, value)),
            }
        }
        let mut map = MapDeserializer::new(matched.into_iter());
        let value = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        serde_json::Value::from(self).deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

impl From<Doc> for serde_json::Value {
    fn from(doc: Doc) -> serde_json::Value {
        match doc {
            Doc::Null => serde_json::Value::Null,
            Doc::Bool(b) => serde_json::Value::Bool(b),
            Doc::Number(n) => serde_json::Value::Number(n),
            Doc::String(s) => serde_json::Value::String(s),
            Doc::Array(items) => items.into_iter().map(serde_json::Value::from).collect(),
            Doc::Object(entries) => serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect(),
            ),
        }
    }
}

/// A point in time as Go's `time.Time` holds one parsed from RFC 3339: the instant plus
/// the offset it was written with, which Go keeps when it writes the time back.
#[derive(Clone, Copy, Debug)]
pub struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    /// Nanoseconds past `secs`.
    pub nanos: u32,
    /// Offset from UTC in seconds, as written (0 for `Z`).
    pub offset: i32,
}

impl GoTime {
    /// The Unix epoch, `1970-01-01T00:00:00Z`.
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

    #[derive(Debug, Deserialize, PartialEq)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
        #[serde(rename = "Inner", default)]
        inner: Option<Inner>,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[serde(rename = "mediaType", default)]
        media_type: String,
    }

    #[test]
    fn struct_fields_match_as_go_matches_them() {
        let e: Entry = from_slice(
            r#"{"config":"a","REPOTAGS":["x:1"],"inner":{"MEDIATYPE":"t"},"Unknown":1,"labels":{"Key":"v"}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.config, "a");
        assert_eq!(e.repo_tags, Some(vec!["x:1".to_string()]));
        assert_eq!(e.inner.unwrap().media_type, "t");
        // Map keys are data, never folded.
        assert_eq!(e.labels.keys().collect::<Vec<_>>(), ["Key"]);
        // The last key for a field wins, exact or folded; `ſ` folds to `S`.
        let e: Entry = from_slice(br#"{"Config":"a","config":"b","RepoTags":null}"#).unwrap();
        assert_eq!((e.config.as_str(), e.repo_tags), ("b", None));
        let e: Entry = from_slice(r#"{"config":"a","Config":"c"}"#.as_bytes()).unwrap();
        assert_eq!(e.config, "c");
        let e: Entry = from_slice("{\"Config\":\"a\",\"RepoTagſ\":[\"y:2\"]}".as_bytes()).unwrap();
        assert_eq!(e.repo_tags, Some(vec!["y:2".to_string()]));
        let e = from_slice::<Entry>(br#"{"Confi":"a"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `Config`"), "{e}");
        let e = from_slice::<Entry>(br#"{"Config":"a""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
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
