//! Storage options (`--storage-opt KEY=VALUE`), as Docker and the seed's graph driver take
//! them. The one option today is `size`, the most a read-write layer may hold.

use crate::error::{Error, Result};

/// Options for a new layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// The most bytes a read-write layer may hold (`size=20G`).
    pub size: Option<u64>,
}

impl StorageOptions {
    /// Parses `KEY=VALUE` pairs; an unknown key is an error naming it.
    ///
    /// ```
    /// use strata_store::StorageOptions;
    /// let o = StorageOptions::parse(["size=1.5G"]).unwrap();
    /// assert_eq!(o.size, Some(1_610_612_736));
    /// assert!(StorageOptions::parse(["colour=blue"]).unwrap_err().to_string().contains("colour"));
    /// ```
    pub fn parse<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<StorageOptions> {
        let mut out = StorageOptions::default();
        for pair in pairs {
            let (key, value) = pair.split_once('=').ok_or_else(|| Error::BadOption {
                name: pair.to_string(),
                reason: "expected KEY=VALUE".into(),
            })?;
            match key.trim().to_ascii_lowercase().as_str() {
                "size" => out.size = Some(parse_size(value)?),
                other => {
                    return Err(Error::BadOption {
                        name: other.to_string(),
                        reason: "unknown option (the options are: size)".into(),
                    })
                }
            }
        }
        Ok(out)
    }
}

/// A size the way Docker users write it (go-units `RAMInBytes`): a number, optionally with
/// a fraction, then an optional unit `k`, `m`, `g`, `t` or `p` in either case, optionally
/// followed by `b` or `ib`; every unit is a power of 1024 (`20G`, `1.5GB`, `512m`, `10GiB`,
/// `4096`).
///
/// ```
/// use strata_store::options::parse_size;
/// assert_eq!(parse_size("20G").unwrap(), 20 << 30);
/// assert_eq!(parse_size("512m").unwrap(), 512 << 20);
/// assert_eq!(parse_size("1.5GB").unwrap(), 3 << 29);
/// assert!(parse_size("1.5x").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = |reason: &str| Error::BadOption {
        name: "size".into(),
        reason: format!("`{text}` {reason}"),
    };
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.trim_start();
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(bad("is not a size (examples: 20G, 1.5GB, 512m)"));
    }
    let lower = unit.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let shift = match rest.chars().next() {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        _ => 0,
    };
    if shift > 0 {
        rest = &rest[1..];
        rest = rest.strip_prefix('i').unwrap_or(rest);
    }
    if !(rest.is_empty() || rest == "b") {
        return Err(bad(
            "has an unknown unit (use k, m, g, t or p, optionally with b or ib)",
        ));
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().map_err(|_| bad("is too large"))?;
    let mut bytes = whole
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("is too large"))?;
    if !frac.is_empty() {
        // The fraction of the unit, rounded down to whole bytes.
        let digits = frac.len().min(18) as u32;
        let frac: u128 = frac[..digits as usize]
            .parse()
            .map_err(|_| bad("is not a size"))?;
        let part = (frac << shift) / 10u128.pow(digits);
        bytes = bytes
            .checked_add(part as u64)
            .ok_or_else(|| bad("is too large"))?;
    }
    if bytes == 0 {
        return Err(bad("is zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        for (text, want) in [
            ("20G", 20u64 << 30),
            ("20g", 20 << 30),
            ("1.5GB", 1_610_612_736),
            ("1.5gib", 1_610_612_736),
            ("512m", 512 << 20),
            ("512 MB", 512 << 20),
            ("100k", 102_400),
            ("4096", 4096),
            ("4096b", 4096),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
        ] {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "G",
            "1.5.1G",
            "-1G",
            "10x",
            "10gibb",
            "0",
            "99999999999999999999G",
            ".5g",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unknown_and_malformed_options_name_themselves() {
        let e = StorageOptions::parse(["sizee=1G"]).unwrap_err().to_string();
        assert!(e.contains("`sizee`") && e.contains("unknown option"), "{e}");
        let e = StorageOptions::parse(["size"]).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
        assert_eq!(
            StorageOptions::parse(["SIZE=1m"]).unwrap().size,
            Some(1 << 20)
        );
    }
}
