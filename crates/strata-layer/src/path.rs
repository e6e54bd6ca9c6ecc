//! [`LayerPath`]: the only kind of path a layer entry can name.
//!
//! A layer path is relative to the layer's root, normalized (no empty, `.` or `..`
//! components, no leading or trailing `/`), and free of NUL bytes. It is raw bytes, not
//! UTF-8: file names in images are bytes (`café` in NFC and NFD are two different files).
//! Because `..` can never be represented, joining a `LayerPath` onto a root cannot climb
//! out of it lexically; the directory writer adds the second line of defence (resolution
//! inside the root) for symlinks.
//!
//! ```
//! use strata_layer::LayerPath;
//! let p = LayerPath::from_tar_name(b"./etc//apt/./sources.list").unwrap();
//! assert_eq!(p.as_bytes(), b"etc/apt/sources.list");
//! assert_eq!(p.parent().unwrap().as_bytes(), b"etc/apt");
//! assert!(LayerPath::from_tar_name(b"etc/../../x").is_err());
//! assert!(LayerPath::from_tar_name(b"./").unwrap().is_root());
//! ```

use std::fmt;

/// Why a name could not become a [`LayerPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A NUL byte, which no file system name may hold.
    #[error("the name holds a NUL byte")]
    Nul,
    /// A `..` component.
    #[error("the name has a `..` component, which could climb out of the root")]
    DotDot,
    /// More components than [`MAX_DEPTH`].
    #[error("the name is more than {MAX_DEPTH} directories deep")]
    TooDeep,
}

/// The deepest name a layer may hold. Real images stay far below it; past it, every
/// operation on the path costs more (kernel path walks, Landlock checks), so a hostile
/// layer of very deep names could make an unpack run for hours.
pub const MAX_DEPTH: usize = 1024;

/// A normalized, relative, NUL-free path inside a layer. The empty path is the root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LayerPath(Box<[u8]>);

impl LayerPath {
    /// The root of the layer (`./` in a tar).
    pub fn root() -> Self {
        LayerPath(Box::default())
    }

    /// Normalizes a name as written in a tar header or link target: leading `/` are
    /// stripped (absolute names are confined to the root), `.` and empty components
    /// dropped. A `..` component or a NUL byte is an error.
    pub fn from_tar_name(name: &[u8]) -> Result<Self, PathError> {
        if name.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut out = Vec::with_capacity(name.len());
        let mut depth = 0;
        for comp in name.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => continue,
                b".." => return Err(PathError::DotDot),
                _ => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(PathError::TooDeep);
                    }
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(comp);
                }
            }
        }
        Ok(LayerPath(out.into_boxed_slice()))
    }

    /// True for the layer's root directory.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as bytes, components joined by `/`, empty for the root.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The components from the root down.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The last component, `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        })
    }

    /// The parent directory, `None` for the root; the parent of a top-level name is the root.
    pub fn parent(&self) -> Option<LayerPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => LayerPath(self.0[..i].into()),
            None => LayerPath::root(),
        })
    }

    /// This path with one more component. `name` must be a single valid component
    /// (no `/`, not `.` or `..`, no NUL, not empty).
    pub fn join(&self, name: &[u8]) -> Result<LayerPath, PathError> {
        let child = LayerPath::from_tar_name(name)?;
        if child.is_root() {
            return Ok(self.clone());
        }
        let mut out = Vec::with_capacity(self.0.len() + 1 + name.len());
        out.extend_from_slice(&self.0);
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(child.as_bytes());
        Ok(LayerPath(out.into_boxed_slice()))
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &LayerPath) -> bool {
        other.is_root()
            || (self.0.starts_with(&other.0)
                && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }
}

impl fmt::Display for LayerPath {
    /// Shows the path as text: invalid UTF-8 bytes as `\xNN`, control characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dot_slash_double_slash_and_trailing_slash() {
        for (raw, want) in [
            (&b"./a"[..], &b"a"[..]),
            (b"a//b", b"a/b"),
            (b"a/./c", b"a/c"),
            (b"a/d/", b"a/d"),
            (b"/tmp/x", b"tmp/x"),
            (b"//tmp/x", b"tmp/x"),
            (b".", b""),
        ] {
            assert_eq!(LayerPath::from_tar_name(raw).unwrap().as_bytes(), want);
        }
    }

    #[test]
    fn refuses_dotdot_anywhere_and_nul() {
        assert_eq!(LayerPath::from_tar_name(b"../x"), Err(PathError::DotDot));
        assert_eq!(LayerPath::from_tar_name(b"a/../b"), Err(PathError::DotDot));
        assert_eq!(LayerPath::from_tar_name(b"./../x"), Err(PathError::DotDot));
        assert_eq!(LayerPath::from_tar_name(b"a\0/b"), Err(PathError::Nul));
        let deep = b"d/".repeat(MAX_DEPTH + 1);
        assert_eq!(LayerPath::from_tar_name(&deep), Err(PathError::TooDeep));
        assert!(LayerPath::from_tar_name(&deep[2..]).is_ok());
    }

    #[test]
    fn parent_file_name_and_prefix() {
        let p = LayerPath::from_tar_name(b"a/b/c").unwrap();
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(p.parent().unwrap().as_bytes(), b"a/b");
        assert!(LayerPath::from_tar_name(b"a")
            .unwrap()
            .parent()
            .unwrap()
            .is_root());
        assert!(p.starts_with(&LayerPath::from_tar_name(b"a/b").unwrap()));
        assert!(!p.starts_with(&LayerPath::from_tar_name(b"a/bc").unwrap()));
        assert!(p.starts_with(&LayerPath::root()));
        assert_eq!(p.components().count(), 3);
    }
}
