//! PAX extended-header records: `"<len> <key>=<value>\n"`, where `len` counts the whole
//! record including its own digits.

use crate::Timestamp;

/// Splits a PAX extended header's data into (key, value) records, in order, keeping
/// repeated keys (GNU sparse 0.0 repeats `GNU.sparse.offset`). Returns a reason on error.
pub fn parse_records(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len_str =
            std::str::from_utf8(&data[..space]).map_err(|_| "PAX record length is not a number")?;
        if len_str.is_empty() || !len_str.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "PAX record length `{}` is not a number",
                len_str.escape_default()
            ));
        }
        let len: usize = len_str
            .parse()
            .map_err(|_| format!("PAX record length {len_str} is out of range"))?;
        if len <= space + 1 || len > data.len() {
            return Err(format!(
                "PAX record length {len} does not fit the {} bytes left in the header",
                data.len()
            ));
        }
        let record = &data[space + 1..len];
        let Some((b'\n', kv)) = record.split_last() else {
            return Err("PAX record does not end with a newline".into());
        };
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without `=`")?;
        let key = std::str::from_utf8(&kv[..eq]).map_err(|_| "PAX record key is not UTF-8")?;
        if key.is_empty() {
            return Err("PAX record with an empty key".into());
        }
        // Go, GNU tar and bsdtar refuse these: a C reader would see the key or name cut
        // at the NUL, a parser differential.
        if key.contains('\0') {
            return Err(format!(
                "PAX record key `{}` holds a NUL byte",
                key.as_bytes().escape_ascii()
            ));
        }
        let value = &kv[eq + 1..];
        if matches!(key, "path" | "linkpath" | "uname" | "gname") && value.contains(&0) {
            return Err(format!(
                "PAX record {key}={} holds a NUL byte",
                value.escape_ascii()
            ));
        }
        out.push((key.to_owned(), value.to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// Appends one record, computing its self-inclusive length.
pub fn push_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Parses a decimal PAX number (`size`, `uid`, ...), which must fit a u64.
pub fn parse_u64(key: &str, value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "PAX record {key}={} is not a number that fits 64 bits",
                value.escape_ascii()
            )
        })
}

/// Parses a PAX time (`1700000000.123456789`, `-1.5`); digits past nanoseconds are dropped.
pub fn parse_time(key: &str, value: &[u8]) -> Result<Timestamp, String> {
    let bad = || format!("PAX record {key}={} is not a time", value.escape_ascii());
    let s = std::str::from_utf8(value).map_err(|_| bad())?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let secs: i64 = int.parse().map_err(|_| bad())?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += (b - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    Ok(if !neg {
        Timestamp::new(secs, nanos)
    } else if nanos == 0 {
        Timestamp::new(-secs, 0)
    } else {
        Timestamp::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

/// Formats a time the way Go's PAX writer does: seconds, then a fraction with trailing
/// zeros trimmed, only when there is one.
pub fn format_time(t: Timestamp) -> String {
    if t.nanos == 0 {
        return t.secs.to_string();
    }
    let (sign, secs, nanos) = if t.secs < 0 {
        ("-", -(t.secs + 1), 1_000_000_000 - t.nanos)
    } else {
        ("", t.secs, t.nanos)
    };
    let frac = format!("{nanos:09}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_with_length_carry() {
        let mut buf = Vec::new();
        push_record(&mut buf, "path", &[b'a'; 91]); // 98 + 2 digits = 100, which has 3 digits: 101
        push_record(&mut buf, "mtime", b"1.5");
        let recs = parse_records(&buf).unwrap();
        assert_eq!(recs[0].1.len(), 91);
        assert_eq!(recs[1], ("mtime".to_string(), b"1.5".to_vec()));
        assert!(buf.starts_with(b"101 path="));
    }

    #[test]
    fn refuses_lengths_past_the_header() {
        assert!(parse_records(b"99999999999 path=x\n").is_err());
        assert!(parse_records(b"5 a=b").is_err());
        assert!(parse_records(b"x a=b\n").is_err());
    }

    #[test]
    fn nul_in_a_key_or_a_name_value_is_refused_like_go() {
        let mut buf = Vec::new();
        push_record(&mut buf, "SCHILY.xattr.null\0null", b"fizzbuzz");
        let e = parse_records(&buf).unwrap_err();
        assert!(e.contains("holds a NUL byte"), "{e}");
        for key in ["path", "linkpath", "uname", "gname"] {
            let mut buf = Vec::new();
            push_record(&mut buf, key, b"a\0b");
            assert!(parse_records(&buf).is_err(), "{key}");
        }
        // Other values may hold NUL (xattr values are binary).
        let mut buf = Vec::new();
        push_record(&mut buf, "SCHILY.xattr.user.bin", b"a\0b");
        assert_eq!(parse_records(&buf).unwrap()[0].1, b"a\0b");
    }

    #[test]
    fn times_parse_and_format_like_go() {
        let t = parse_time("mtime", b"1700000000.123456789").unwrap();
        assert_eq!(t, Timestamp::new(1700000000, 123456789));
        assert_eq!(format_time(t), "1700000000.123456789");
        let t = parse_time("mtime", b"-1.5").unwrap();
        assert_eq!(t, Timestamp::new(-2, 500000000));
        assert_eq!(format_time(t), "-1.5");
        assert_eq!(format_time(Timestamp::new(5, 500000000)), "5.5");
        assert!(parse_u64("size", b"99999999999999999999999").is_err());
    }
}
