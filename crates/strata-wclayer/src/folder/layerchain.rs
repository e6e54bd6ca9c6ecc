//! `layerchain.json`: a layer's parents, nearest first, as Docker writes and reads it
//! (§4.8): Go's `json.Marshal` of a `[]string`, so `null` for none.

use std::path::PathBuf;

use super::LAYERCHAIN_FILE;
use crate::Error;

/// `layerchain.json` as Go's `json.Marshal` writes it: `null` or `["p1","p2"]`, no
/// spaces, Go's escaping ([`strata_layer::gojson`]).
pub fn layerchain_json(parents: &[PathBuf]) -> Result<String, Error> {
    let parents = parents
        .iter()
        .map(|p| {
            p.to_str().ok_or_else(|| {
                Error::name(
                    p.display().to_string(),
                    "a parent path must be UTF-8 for layerchain.json",
                )
            })
        })
        .collect::<Result<Vec<&str>, Error>>()?;
    let chain = (!parents.is_empty()).then_some(parents);
    let json = strata_layer::gojson::to_vec(&chain)
        .map_err(|e| Error::name(LAYERCHAIN_FILE, format!("cannot write it: {e}")))?;
    String::from_utf8(json).map_err(|_| Error::name(LAYERCHAIN_FILE, "the JSON is not UTF-8"))
}

/// Parses `layerchain.json` (as Docker reads it): the parents, nearest first.
pub fn parse_layerchain(json: &str) -> Result<Vec<PathBuf>, Error> {
    let chain: Option<Vec<String>> = serde_json::from_str(json).map_err(|e| {
        Error::name(
            LAYERCHAIN_FILE,
            format!("expected null or an array of strings: {e}"),
        )
    })?;
    Ok(chain
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layerchain_round_trips_as_go_writes_it() {
        assert_eq!(layerchain_json(&[]).unwrap(), "null");
        let parents = [
            PathBuf::from("/l/a<b>&\"c\\"),
            PathBuf::from("/l/\u{2028}é"),
        ];
        let json = layerchain_json(&parents).unwrap();
        assert_eq!(json, r#"["/l/a\u003cb\u003e\u0026\"c\\","/l/\u2028é"]"#);
        assert_eq!(parse_layerchain(&json).unwrap(), parents);
        assert_eq!(parse_layerchain(" null\n").unwrap(), Vec::<PathBuf>::new());
        let err = parse_layerchain(r#"["a", 1]"#).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid layer path `layerchain.json`: expected null or an array of strings"
            ),
            "{err}"
        );
    }
}
