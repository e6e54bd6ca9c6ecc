//! `tombstones.txt`: the deletions of a diff layer, in the historic hcsshim format (§4.4).

use std::path::Path;

use crate::{Error, WinPath};

/// First line of `tombstones.txt`: UTF-8 BOM + `Version 1.0`.
pub const TOMBSTONES_HEADER: &str = "\u{feff}Version 1.0";

/// Parses `tombstones.txt`: the deleted paths, as `Files\…`, in file order.
pub fn parse_tombstones(file: &Path, text: &[u8]) -> Result<Vec<WinPath>, Error> {
    let bad = |line: usize, r: &str| Error::BadTombstones {
        file: file.to_owned(),
        line,
        reason: r.to_owned(),
    };
    let text = std::str::from_utf8(text).map_err(|_| bad(0, "not UTF-8"))?;
    let mut lines = text.split('\n').collect::<Vec<_>>();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut it = lines
        .into_iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate();
    match it.next() {
        Some((_, h)) if h == TOMBSTONES_HEADER => {}
        _ => {
            return Err(bad(
                1,
                "the first line must be a UTF-8 BOM and `Version 1.0`",
            ))
        }
    }
    let mut out = Vec::new();
    for (i, l) in it {
        let rest = l.strip_prefix('\\').ok_or_else(|| {
            bad(
                i + 1,
                if l.is_empty() {
                    "an empty line"
                } else {
                    "a path must start with `\\`"
                },
            )
        })?;
        let p =
            WinPath::parse(&format!("Files\\{rest}")).map_err(|e| bad(i + 1, &e.to_string()))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad(i + 1, "not a path below Files"));
        }
        out.push(p);
    }
    Ok(out)
}

/// The text of `tombstones.txt` for `names` (each under `Files\`), in the given order.
pub fn tombstones_text(names: &[WinPath]) -> String {
    let mut t = String::from(TOMBSTONES_HEADER);
    t.push('\n');
    for name in names {
        t.push_str(name.tombstone_line().unwrap_or_default());
        t.push('\n');
    }
    t
}
