//! containerd's filter language, as `List` receives it (`ctr snapshots ls`, containerd's
//! garbage collector, remote-snapshotter look-ups).
//!
//! A filter is selectors joined by `,` (all must match); a request's several filters are
//! alternatives (any may match). A selector is a field path (`kind`, `name`, `parent`,
//! `labels.KEY`, with `"quoted"` parts for keys holding dots or slashes) alone (the field
//! is present) or followed by `==`, `!=` or `~=` (a regular expression; refused here)
//! and a value, quoted or not.

use strata_store::{SnapshotInfo, SnapshotKind};

/// A parsed filter: selectors that must all match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter(Vec<Selector>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    test: Test,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    Present,
    Equal(String),
    NotEqual(String),
}

/// Why a filter could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filter `{filter}` at byte {offset}: {reason}")]
pub struct FilterError {
    /// The filter as given.
    pub filter: String,
    /// The byte where reading stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn fail<T>(&self, reason: &'static str) -> Result<T, FilterError> {
        Err(FilterError {
            filter: self.text.to_string(),
            offset: self.pos,
            reason,
        })
    }

    /// A `"quoted"` string (with `\` escapes), the scanner on its opening quote.
    fn quoted(&mut self) -> Result<String, FilterError> {
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    }),
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.pos = self.text.len();
        self.fail("unterminated quoted string")
    }

    /// One field of a path.
    fn field(&mut self) -> Result<String, FilterError> {
        self.skip_spaces();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/'))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return self.fail("expected a field name");
        }
        Ok(self.text[start..self.pos].to_string())
    }

    /// A value: quoted, or everything up to the next `,`.
    fn value(&mut self) -> Result<String, FilterError> {
        self.skip_spaces();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ',') {
            self.pos += 1;
        }
        Ok(self.text[start..self.pos].trim_end().to_string())
    }
}

impl Filter {
    /// Parses one filter string.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut s = Scanner { text, pos: 0 };
        let mut selectors = Vec::new();
        loop {
            let mut path = vec![s.field()?];
            while s.peek() == Some('.') {
                s.pos += 1;
                path.push(s.field()?);
            }
            s.skip_spaces();
            let rest = &text[s.pos..];
            let test = if rest.starts_with("==") || rest.starts_with("!=") {
                s.pos += 2;
                let v = s.value()?;
                if rest.starts_with("==") {
                    Test::Equal(v)
                } else {
                    Test::NotEqual(v)
                }
            } else if rest.starts_with("~=") {
                return s.fail("regular expressions (`~=`) are not supported");
            } else {
                Test::Present
            };
            selectors.push(Selector { path, test });
            s.skip_spaces();
            match s.peek() {
                None => return Ok(Filter(selectors)),
                Some(',') => s.pos += 1,
                Some(_) => return s.fail("expected `,`, `==`, `!=` or the end"),
            }
        }
    }

    /// True if every selector matches `info`.
    pub fn matches(&self, info: &SnapshotInfo) -> bool {
        self.0.iter().all(|sel| {
            let field = field(info, &sel.path);
            match &sel.test {
                Test::Present => field.is_some(),
                Test::Equal(v) => field.as_deref() == Some(v.as_str()),
                Test::NotEqual(v) => field.as_deref().unwrap_or("") != v,
            }
        })
    }
}

/// The value of a field path on a snapshot, `None` where it is absent (as containerd's
/// snapshot adaptor has it: `parent` is present even when empty).
fn field(info: &SnapshotInfo, path: &[String]) -> Option<String> {
    match path.first()?.as_str() {
        "kind" => Some(
            match info.kind {
                SnapshotKind::Active => "active",
                SnapshotKind::View => "view",
                SnapshotKind::Committed => "committed",
            }
            .to_string(),
        ),
        "name" => Some(info.name.clone()),
        "parent" => Some(info.parent.clone().unwrap_or_default()),
        "labels" => info.labels.get(&path[1..].join(".")).cloned(),
        _ => None,
    }
}

/// True if `info` matches any of `filters` (all of them, when there are none).
pub fn any_matches(filters: &[Filter], info: &SnapshotInfo) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use strata_store::LayerId;

    fn info(
        name: &str,
        parent: Option<&str>,
        kind: SnapshotKind,
        labels: &[(&str, &str)],
    ) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            parent: parent.map(Into::into),
            kind,
            created: 0,
            updated: 0,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            layer: LayerId::new("ctrd-1").unwrap(),
        }
    }

    fn matches(filter: &str, i: &SnapshotInfo) -> bool {
        Filter::parse(filter).unwrap().matches(i)
    }

    #[test]
    fn selectors_of_containerds_suite_and_gc() {
        let a = info(
            "a",
            Some("p"),
            SnapshotKind::Active,
            &[("containerd.io/gc.root", "check-walk"), ("l", "2")],
        );
        let p = info("p", None, SnapshotKind::Committed, &[]);
        assert!(matches(r#"labels."containerd.io/gc.root"==check-walk"#, &a));
        assert!(!matches(
            r#"labels."containerd.io/gc.root"==check-walk"#,
            &p
        ));
        assert!(matches("kind==active", &a) && !matches("kind==active", &p));
        assert!(matches("name==p", &p) && !matches("name==p", &a));
        assert!(matches("parent==p", &a) && !matches("parent==p", &p));
        assert!(matches(r#"parent!="""#, &a) && !matches(r#"parent!="""#, &p));
        assert!(matches("labels.l", &a) && !matches("labels.l", &p));
        assert!(matches("labels.l==2", &a) && !matches("labels.l==3", &a));
        assert!(matches("kind==active,labels.l==2", &a));
        assert!(!matches("kind==active,labels.l==3", &a));
        assert!(matches(
            r#"labels."containerd.io/snapshot.ref"==sha256:ab,parent=="p""#,
            &info(
                "x",
                Some("p"),
                SnapshotKind::Committed,
                &[("containerd.io/snapshot.ref", "sha256:ab")]
            )
        ));
        assert!(!matches("unknown==x", &a));
        assert!(matches("unknown!=x", &a));
    }

    #[test]
    fn bad_filters_say_where() {
        let e = Filter::parse("kind==active,").unwrap_err();
        assert_eq!(e.reason, "expected a field name");
        assert_eq!(e.offset, 13);
        let e = Filter::parse(r#"labels."open"#).unwrap_err();
        assert_eq!(e.reason, "unterminated quoted string");
        assert_eq!(
            Filter::parse("name~=x").unwrap_err().reason,
            "regular expressions (`~=`) are not supported"
        );
        assert_eq!(
            Filter::parse("name x").unwrap_err().reason,
            "expected `,`, `==`, `!=` or the end"
        );
    }
}
