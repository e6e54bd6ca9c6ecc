//! [`WinPath`]: a path inside a Windows layer (`Files\Windows\System32`), the only kind
//! of name the layer folder writer and reader accept.

use std::fmt;

use strata_layer::LayerPath;

use crate::Error;

/// The top-level directories a Windows layer may hold.
pub const TOP_LEVEL: [&str; 3] = ["Files", "Hives", "UtilityVM"];

/// A relative path inside a layer: components joined by `\`, none empty, `.` or `..`,
/// none holding a character NTFS cannot store (`\ / : * ? " < > |`, NUL, control
/// characters), and the first one `Files`, `Hives` or `UtilityVM` (case-sensitive, as
/// hcsshim's prefix tests are).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WinPath(String);

/// Why a component is not a valid NTFS name, if it is not.
pub fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() || c == "." || c == ".." {
        return Err(format!("`{c}` is not a file name"));
    }
    if let Some(bad) = c.chars().find(|&ch| {
        matches!(ch, '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || (ch as u32) < 0x20
    }) {
        return Err(format!(
            "`{}` holds {:?}, which NTFS cannot store in a name",
            c.escape_default(),
            bad
        ));
    }
    Ok(())
}

impl WinPath {
    /// From components (validated), the first one `Files`, `Hives` or `UtilityVM`.
    pub fn from_components<'a>(comps: impl IntoIterator<Item = &'a str>) -> Result<WinPath, Error> {
        let p = WinPath::from_any_components(comps)?;
        if !p.is_in_top_level() {
            return Err(Error::name(
                p.0,
                "a Windows layer holds only Files\\, Hives\\ and UtilityVM\\ (only a base layer may hold other paths)",
            ));
        }
        Ok(p)
    }

    /// From components (validated), starting anywhere: hcsshim's base-layer writer
    /// creates any relative path under the layer root.
    pub fn from_any_components<'a>(
        comps: impl IntoIterator<Item = &'a str>,
    ) -> Result<WinPath, Error> {
        let mut s = String::new();
        for c in comps {
            check_component(c).map_err(|r| Error::name(format!("{s}\\{c}"), r))?;
            if !s.is_empty() {
                s.push('\\');
            }
            s.push_str(c);
        }
        if s.is_empty() {
            return Err(Error::name(s, "an empty name"));
        }
        Ok(WinPath(s))
    }

    /// From a Windows name (`Files\a\b`) or a tar name (`Files/a/b`).
    pub fn parse(name: &str) -> Result<WinPath, Error> {
        let trimmed = name.trim_end_matches(['/', '\\']);
        WinPath::from_components(trimmed.split(['/', '\\']))
    }

    /// Like [`parse`](Self::parse), but any relative path (a base layer's entries).
    pub fn parse_in_base_layer(name: &str) -> Result<WinPath, Error> {
        let trimmed = name.trim_end_matches(['/', '\\']);
        WinPath::from_any_components(trimmed.split(['/', '\\']))
    }

    /// From a tar entry's path, which must be UTF-8.
    pub fn from_layer_path(p: &LayerPath) -> Result<WinPath, Error> {
        WinPath::parse(layer_path_str(p)?)
    }

    /// From a tar entry's path of a base layer, which may lie outside the three
    /// top-level directories.
    pub fn from_layer_path_in_base_layer(p: &LayerPath) -> Result<WinPath, Error> {
        WinPath::parse_in_base_layer(layer_path_str(p)?)
    }

    /// True if the first component is `Files`, `Hives` or `UtilityVM`.
    pub fn is_in_top_level(&self) -> bool {
        TOP_LEVEL.contains(&self.components().next().unwrap_or_default())
    }

    /// `Files\a\b`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Files/a/b`, the tar and Linux form.
    pub fn to_slash(&self) -> String {
        self.0.replace('\\', "/")
    }

    /// The names between the `\`s, from the top.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('\\')
    }

    /// How many components the path has (`Files` is 1).
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('\\').next().unwrap_or_default()
    }

    /// The parent, `None` for a top-level directory.
    pub fn parent(&self) -> Option<WinPath> {
        self.0.rfind('\\').map(|i| WinPath(self.0[..i].to_owned()))
    }

    /// One more component.
    pub fn join(&self, c: &str) -> Result<WinPath, Error> {
        check_component(c).map_err(|r| Error::name(format!("{}\\{c}", self.0), r))?;
        Ok(WinPath(format!("{}\\{c}", self.0)))
    }

    /// True for `prefix` itself or anything below it (exact case).
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0 == prefix || (self.0.starts_with(prefix) && self.0.as_bytes()[prefix.len()] == b'\\')
    }

    /// Strictly below `prefix` (`Files\x` is under `Files`, `Files` is not).
    pub fn is_under(&self, prefix: &str) -> bool {
        self.0.len() > prefix.len() && self.starts_with(prefix)
    }

    /// The key under which NTFS would see two names as one (upper-cased).
    pub fn case_key(&self) -> String {
        self.0.to_uppercase()
    }

    /// The path relative to `Files\`, with a leading `\` (tombstone form), for paths under `Files`.
    pub fn tombstone_line(&self) -> Option<&str> {
        self.is_under("Files").then(|| &self.0["Files".len()..])
    }
}

fn layer_path_str(p: &LayerPath) -> Result<&str, Error> {
    std::str::from_utf8(p.as_bytes())
        .map_err(|_| Error::name(p.to_string(), "the name is not UTF-8"))
}

impl fmt::Display for WinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_layer_or_unstorable_are_refused() {
        assert_eq!(WinPath::parse("Files/a/b").unwrap().as_str(), "Files\\a\\b");
        assert_eq!(WinPath::parse("Files\\a\\").unwrap().to_slash(), "Files/a");
        for bad in [
            "Files/../x",
            "Files/./x",
            "Other/x",
            "files/x",
            "Files//x",
            "Files/a:b",
            "Files/a*",
            "Files/a\u{1}",
            "",
        ] {
            assert!(WinPath::parse(bad).is_err(), "{bad}");
        }
        let p = WinPath::parse("Files\\Dir\\x").unwrap();
        assert!(p.is_under("Files") && p.starts_with("Files\\Dir") && !p.starts_with("Files\\Di"));
        assert_eq!(p.tombstone_line(), Some("\\Dir\\x"));
        assert_eq!(p.case_key(), "FILES\\DIR\\X");
        assert_eq!(p.parent().unwrap().as_str(), "Files\\Dir");
        // A base layer may hold other relative paths, still checked component by component.
        let other = WinPath::parse_in_base_layer("other-dir/other-file").unwrap();
        assert_eq!(other.as_str(), "other-dir\\other-file");
        assert!(!other.is_in_top_level());
        for bad in ["other/../x", "other/a:b", "", "/"] {
            assert!(WinPath::parse_in_base_layer(bad).is_err(), "{bad}");
        }
    }
}
