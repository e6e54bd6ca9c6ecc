//! Extended attributes as a FILE_FULL_EA_INFORMATION chain (§1.6.2).
//!
//! ```
//! use strata_wclayer::ea::{decode, encode, ExtendedAttribute};
//! let eas = vec![ExtendedAttribute { name: b"TEST".to_vec(), value: b"hi".to_vec(), flags: 0 }];
//! let chain = encode(&eas).unwrap();
//! assert_eq!(chain, [0, 0, 0, 0, 0, 4, 2, 0, b'T', b'E', b'S', b'T', 0, b'h', b'i', 0]);
//! assert_eq!(decode(&chain).unwrap(), eas);
//! ```

use crate::Error;

/// One extended attribute. NTFS upper-cases names; values are raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtendedAttribute {
    /// The EA's name (ASCII; NTFS upper-cases it).
    pub name: Vec<u8>,
    /// The EA's value, byte for byte.
    pub value: Vec<u8>,
    /// `FILE_NEED_EA` (0x80) and friends; the tar mapping drops them.
    pub flags: u8,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadEa {
        reason: reason.into(),
    }
}

/// Encodes a chain the way go-winio does: every entry, the last included, padded to 4.
pub fn encode(eas: &[ExtendedAttribute]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (i, ea) in eas.iter().enumerate() {
        let name_len = u8::try_from(ea.name.len())
            .map_err(|_| bad(format!("EA name of {} bytes is over 255", ea.name.len())))?;
        let value_len = u16::try_from(ea.value.len()).map_err(|_| {
            bad(format!(
                "EA value of {} bytes is over 65535",
                ea.value.len()
            ))
        })?;
        if ea.name.contains(&0) {
            return Err(bad("EA name holds a NUL byte"));
        }
        let len = 8 + ea.name.len() + 1 + ea.value.len();
        let padded = (len + 3) & !3;
        let next = if i + 1 == eas.len() { 0 } else { padded as u32 };
        out.extend_from_slice(&next.to_le_bytes());
        out.push(ea.flags);
        out.push(name_len);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(&ea.name);
        out.push(0);
        out.extend_from_slice(&ea.value);
        out.resize(out.len() + padded - len, 0);
    }
    Ok(out)
}

/// Decodes a chain. An entry whose fixed part, name and value, or `NextEntryOffset`
/// run past the buffer is an error; a missing final pad is accepted.
pub fn decode(mut buf: &[u8]) -> Result<Vec<ExtendedAttribute>, Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while !buf.is_empty() {
        if buf.len() < 8 {
            return Err(bad(format!(
                "EA entry at byte {at} has {} bytes, fewer than its 8-byte header",
                buf.len()
            )));
        }
        let next = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let flags = buf[4];
        let name_len = buf[5] as usize;
        let value_len = u16::from_le_bytes([buf[6], buf[7]]) as usize;
        let need = 8 + name_len + 1 + value_len;
        if need > buf.len() {
            return Err(bad(format!(
                "EA entry at byte {at} needs {need} bytes but {} are left",
                buf.len()
            )));
        }
        if next > buf.len() {
            return Err(bad(format!(
                "EA entry at byte {at} points {next} bytes ahead, past the end ({} left)",
                buf.len()
            )));
        }
        if buf[8 + name_len] != 0 {
            return Err(bad(format!(
                "EA entry at byte {at}: the name is not NUL-terminated"
            )));
        }
        if buf[8..8 + name_len].contains(&0) {
            return Err(bad(format!(
                "EA entry at byte {at}: the name holds a NUL byte"
            )));
        }
        out.push(ExtendedAttribute {
            name: buf[8..8 + name_len].to_vec(),
            value: buf[9 + name_len..need].to_vec(),
            flags,
        });
        if next == 0 {
            break;
        }
        if next < need {
            return Err(bad(format!(
                "EA entry at byte {at} points {next} bytes ahead, inside itself ({need} bytes)"
            )));
        }
        buf = &buf[next..];
        at += next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ea(n: &str, v: &str) -> ExtendedAttribute {
        ExtendedAttribute {
            name: n.into(),
            value: v.into(),
            flags: 0,
        }
    }

    #[test]
    fn tv7_two_eas_in_order() {
        let chain = encode(&[ea("foo", "bar"), ea("fizz", "buzz")]).unwrap();
        let want = "10 00 00 00 00 03 03 00 66 6f 6f 00 62 61 72 00 00 00 00 00 00 04 04 00 66 69 7a 7a 00 62 75 7a 7a 00 00 00";
        assert_eq!(chain, hex::decode(want.replace(' ', "")).unwrap());
        assert_eq!(
            decode(&chain).unwrap(),
            vec![ea("foo", "bar"), ea("fizz", "buzz")]
        );
    }

    #[test]
    fn hostile_chains_are_errors() {
        // Points past the end.
        let mut c = encode(&[ea("a", "b"), ea("c", "d")]).unwrap();
        c[0] = 200;
        assert!(decode(&c).unwrap_err().to_string().contains("past the end"));
        // Value length lies.
        let mut c = encode(&[ea("a", "b")]).unwrap();
        c[6] = 0xff;
        assert!(decode(&c).unwrap_err().to_string().contains("needs"));
        // A NUL inside the name (found by fuzzing: it could not be encoded again).
        assert!(
            decode(&[0, 0, 0, 0, 0, 4, 2, 0, b'T', b'E', 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .to_string()
                .contains("NUL")
        );
        // Too short for a header.
        assert!(decode(&[1, 2, 3]).is_err());
        // Missing final pad is fine.
        let c = encode(&[ea("ab", "cd")]).unwrap();
        assert_eq!(decode(&c[..c.len() - 1]).unwrap(), vec![ea("ab", "cd")]);
        assert!(encode(&[ExtendedAttribute {
            name: vec![b'x'; 256],
            value: vec![],
            flags: 0
        }])
        .is_err());
    }

    proptest! {
        #[test]
        fn chains_round_trip(eas in proptest::collection::vec(
            (proptest::collection::vec(1u8..=255, 0..40), proptest::collection::vec(any::<u8>(), 0..300), any::<u8>()), 0..8)) {
            let eas: Vec<_> = eas.into_iter().map(|(name, value, flags)| ExtendedAttribute { name, value, flags }).collect();
            let chain = encode(&eas).unwrap();
            prop_assert_eq!(chain.len() % 4, 0);
            prop_assert_eq!(decode(&chain).unwrap(), eas);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&buf);
        }
    }
}
