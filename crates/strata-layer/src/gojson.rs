//! Go-compatible JSON escaping: the one escaper every Strata crate uses to write JSON
//! byte for byte as Go's `encoding/json` does.
//!
//! Go's `json.Marshal` is serde_json's compact output with one difference: strings are
//! HTML-safe, so `<`, `>`, `&`, U+2028 and U+2029 are written as `\u003c`, `\u003e`,
//! `\u0026`, `\u2028`, `\u2029`. [`GoFormatter`] is a serde_json formatter that does
//! exactly that; [`to_vec`] serializes with it. Field order and map-key order are the
//! caller's (Go writes struct fields in declaration order and sorts map keys).
//!
//! ```
//! let v = ["x<y", "a&b"];
//! assert_eq!(strata_layer::gojson::to_vec(&v).unwrap(), br#"["x\u003cy","a\u0026b"]"#);
//! ```

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json's compact formatter with Go's HTML-safe string escaping.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_html_safe(writer, fragment.as_bytes())
    }

    /// Raw JSON text: the characters concerned can only occur inside its strings
    /// (structure, numbers and literals never hold them), so a byte scan is exact.
    fn write_raw_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_html_safe(writer, fragment.as_bytes())
    }
}

/// Writes `text` with `<`, `>`, `&`, U+2028 and U+2029 as Go's `\u` escapes.
fn write_html_safe<W: ?Sized + Write>(writer: &mut W, text: &[u8]) -> io::Result<()> {
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let (escape, len): (&[u8], usize) = match text[i] {
            b'<' => (br"\u003c", 1),
            b'>' => (br"\u003e", 1),
            b'&' => (br"\u0026", 1),
            0xe2 if text.get(i + 1) == Some(&0x80) && text.get(i + 2) == Some(&0xa8) => {
                (br"\u2028", 3)
            }
            0xe2 if text.get(i + 1) == Some(&0x80) && text.get(i + 2) == Some(&0xa9) => {
                (br"\u2029", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        writer.write_all(&text[start..i])?;
        writer.write_all(escape)?;
        i += len;
        start = i;
    }
    writer.write_all(&text[start..])
}

/// `json.Marshal(value)`: compact JSON with Go's escaping.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        GoFormatter,
    ))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_characters_in_keys_values_and_raw_text_like_go() {
        let v = std::collections::BTreeMap::from([("<k>", "<a href=\"x\">&\u{2028}\u{2029}é\n")]);
        assert_eq!(
            String::from_utf8(to_vec(&v).unwrap()).unwrap(),
            r#"{"\u003ck\u003e":"\u003ca href=\"x\"\u003e\u0026\u2028\u2029é\n"}"#
        );
        let raw = serde_json::value::RawValue::from_string(r#"["<&>"]"#.into()).unwrap();
        assert_eq!(to_vec(&raw).unwrap(), br#"["\u003c\u0026\u003e"]"#);
        assert_eq!(to_vec(&Option::<Vec<String>>::None).unwrap(), b"null");
    }
}
