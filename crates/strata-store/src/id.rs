//! Layer IDs: the names users and images give layers, used as directory names.

use std::fmt;

use crate::error::Error;

/// The longest layer ID (a chainID hex is 64, a Docker container ID 64).
pub const MAX_ID_LEN: usize = 128;

/// The suffix a layer directory gets while it is being removed; no ID may end in it.
pub(crate) const REMOVING_SUFFIX: &str = "-removing";

/// A layer's ID: 1 to 128 ASCII letters, digits, `_`, `.` and `-`, starting with a letter
/// or digit, not ending in `-removing`. Such a string is always a safe single directory
/// name, so it can name the layer's directory without any further check.
///
/// ```
/// use strata_store::LayerId;
/// assert!(LayerId::new("base").is_ok());
/// assert!(LayerId::new("../etc").is_err());
/// assert!(LayerId::new("x-removing").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(String);

impl LayerId {
    /// Checks `id` against the rules above: a clear [`Error::BadId`] says which it breaks.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let bad = |reason| {
            Err(Error::BadId {
                id: id.escape_debug().to_string(),
                reason,
            })
        };
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > MAX_ID_LEN {
            return bad("it is longer than 128 characters");
        }
        if !id.as_bytes()[0].is_ascii_alphanumeric() {
            return bad("it must start with a letter or a digit");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return bad("only ASCII letters, digits, `_`, `.` and `-` are allowed");
        }
        if id.ends_with(REMOVING_SUFFIX) {
            return bad("`-removing` marks layers being removed");
        }
        Ok(LayerId(id))
    }

    /// The ID as given; also the name of the layer's directory.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerId({})", self.0)
    }
}

impl std::str::FromStr for LayerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        LayerId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_or_collide_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/abs",
            "-x",
            ".hidden",
            "a\0b",
            "a b",
            "é",
            "x-removing",
        ] {
            assert!(LayerId::new(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(LayerId::new(long).is_err());
        for good in ["base", "0123abcd", "my_layer.v1-2", &"f".repeat(64)] {
            assert_eq!(LayerId::new(good).unwrap().as_str(), good);
        }
    }
}
