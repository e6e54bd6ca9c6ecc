//! Image configs, kept as the opaque bytes they arrived as (image-formats §1.4).
//!
//! An [`ImageConfig`] holds the raw bytes (whose sha256 is the image ID) and a parsed
//! view of the few fields Strata needs: `rootfs.diff_ids`, `history`, `created`, `os`,
//! `architecture`. It is never written back from the view: every destination stores
//! [`ImageConfig::raw`].
//!
//! ```
//! use strata_image::ImageConfig;
//! let raw = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let config = ImageConfig::parse(raw.to_vec(), "example").unwrap();
//! assert_eq!(config.os(), "linux");
//! assert_eq!(config.id(), strata_image::ids::ImageId::of_config(raw));
//! assert!(ImageConfig::parse(br#"{"os":"linux"}"#.to_vec(), "example").is_err()); // no rootfs
//! ```

use serde::{Deserialize, Deserializer};

use crate::gojson::GoTime;
use crate::ids::{chain_ids, ChainId, DiffId, ImageId};
use crate::Error;

/// Largest config (or other JSON document) read into memory; containerd caps its JSON
/// at 20 MiB, real configs are a few KiB.
pub const MAX_JSON: u64 = 32 << 20;

/// An image config: raw bytes plus the parsed fields Strata uses.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    raw: Vec<u8>,
    id: ImageId,
    view: ConfigView,
}

/// One `history` entry; `created` compares as an instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct History {
    /// When the step ran.
    #[serde(default)]
    pub created: Option<GoTime>,
    /// Who ran it.
    #[serde(default, deserialize_with = "null_default")]
    pub author: String,
    /// The command that made it (`/bin/sh -c …`).
    #[serde(default, deserialize_with = "null_default")]
    pub created_by: String,
    /// A free-text comment (`strata commit -m`).
    #[serde(default, deserialize_with = "null_default")]
    pub comment: String,
    /// The step made no layer (an `ENV`, a `CMD`): no diffID belongs to it.
    #[serde(default, deserialize_with = "null_default")]
    pub empty_layer: bool,
}

#[derive(Clone, Debug, Deserialize)]
struct ConfigView {
    #[serde(default, deserialize_with = "null_default")]
    architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    os: String,
    #[serde(default, deserialize_with = "null_default")]
    variant: String,
    #[serde(default)]
    created: Option<GoTime>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default, deserialize_with = "null_default")]
    history: Vec<History>,
}

#[derive(Clone, Debug, Deserialize)]
struct RootFs {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_default")]
    diff_ids: Vec<DiffId>,
}

/// Go leaves a field at its zero value for JSON `null`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// Parses a config, checking what Docker checks on load: a `rootfs` of type
    /// `layers`, valid diffIDs, and no more non-empty history entries than diffIDs.
    /// `what` names the config in errors (`config of image …`, a member path).
    pub fn parse(raw: Vec<u8>, what: &str) -> Result<ImageConfig, Error> {
        let id = ImageId::of_config(&raw);
        let what = format!("the config {what} ({id})");
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::invalid(&what, "it is not a JSON object"));
        }
        let view: ConfigView =
            crate::gojson::from_slice(&raw).map_err(|e| Error::json(&what, e))?;
        let rootfs = view
            .rootfs
            .as_ref()
            .ok_or_else(|| Error::invalid(&what, "it has no `rootfs`"))?;
        if rootfs.kind != "layers" {
            return Err(Error::invalid(
                &what,
                format!("rootfs.type is `{}`, not `layers`", rootfs.kind),
            ));
        }
        let non_empty = view.history.iter().filter(|h| !h.empty_layer).count();
        if non_empty > rootfs.diff_ids.len() {
            return Err(Error::invalid(
                &what,
                format!(
                    "its history has {non_empty} entries with layers but rootfs has only {} diffIDs",
                    rootfs.diff_ids.len()
                ),
            ));
        }
        Ok(ImageConfig { raw, id, view })
    }

    /// The bytes exactly as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// sha256 of [`raw`](Self::raw).
    pub fn id(&self) -> ImageId {
        self.id
    }

    /// The diffIDs of `rootfs.diff_ids`, bottom layer first (empty when there is no `rootfs`).
    pub fn diff_ids(&self) -> &[DiffId] {
        self.view.rootfs.as_ref().map_or(&[], |r| &r.diff_ids)
    }

    /// The chain ID of each layer's stack (`chain_ids()[i]` names layers `0..=i`).
    pub fn chain_ids(&self) -> Vec<ChainId> {
        chain_ids(self.diff_ids())
    }

    /// The OS the image runs on (`linux`, `windows`).
    pub fn os(&self) -> &str {
        &self.view.os
    }

    /// The form of the image's layers: Windows layers (`Files/`, `Hives/`) for `os:
    /// windows`, trees for every other OS.
    pub fn layer_os(&self) -> strata_store::Os {
        if self.os() == "windows" {
            strata_store::Os::Windows
        } else {
            strata_store::Os::Linux
        }
    }

    /// The CPU architecture, in Go's names (`amd64`, `arm64`).
    pub fn architecture(&self) -> &str {
        &self.view.architecture
    }

    /// The architecture variant (`v8` for `arm64/v8`), empty when none.
    pub fn variant(&self) -> &str {
        &self.view.variant
    }

    /// When the image was made, if the config says.
    pub fn created(&self) -> Option<GoTime> {
        self.view.created
    }

    /// The `history` entries, oldest first; one per layer plus the steps that made none.
    pub fn history(&self) -> &[History] {
        &self.view.history
    }

    /// Whether `self` may be the parent of `child` (image-formats §1.6): both histories
    /// empty, or the child's history is the parent's plus exactly one entry.
    pub fn is_valid_parent_of(&self, child: &ImageConfig) -> bool {
        let (p, c) = (self.history(), child.history());
        if p.is_empty() && c.is_empty() {
            return true;
        }
        c.len() == p.len() + 1 && p.iter().zip(c).all(|(a, b)| a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

    fn config(history: &str) -> ImageConfig {
        let raw = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{A}","{A}"]}},"history":[{history}]}}"#
        );
        ImageConfig::parse(raw.into_bytes(), "test").unwrap()
    }

    #[test]
    fn checks_rootfs_and_history_like_docker() {
        for (raw, why) in [
            (r#"{"os":"linux"}"#.to_string(), "no `rootfs`"),
            (
                r#"{"rootfs":{"type":"other","diff_ids":[]}}"#.to_string(),
                "not `layers`",
            ),
            (
                r#"{"rootfs":{"type":"layers","diff_ids":["sha256:abc"]}}"#.to_string(),
                "64 lowercase",
            ),
            (
                format!(
                    r#"{{"rootfs":{{"type":"layers","diff_ids":["{A}"]}},"history":[{{}},{{}}]}}"#
                ),
                "2 entries with layers",
            ),
            ("[]".to_string(), "not a JSON object"),
            ("{".to_string(), "is not valid"),
        ] {
            let e = ImageConfig::parse(raw.into_bytes(), "test")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
        let ok = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{A}"]}},"history":[{{}},{{"empty_layer":true}}],"os":null}}"#
        );
        let c = ImageConfig::parse(ok.clone().into_bytes(), "test").unwrap();
        assert_eq!(c.diff_ids().len(), 1);
        assert_eq!(c.raw(), ok.as_bytes());
    }

    #[test]
    fn parent_needs_the_child_history_to_extend_it_by_one() {
        let p = config(r#"{"created":"2020-01-01T00:00:00Z","created_by":"a"}"#);
        let c = config(
            r#"{"created":"2020-01-01T01:00:00+01:00","created_by":"a"},{"created_by":"b"}"#,
        );
        assert!(p.is_valid_parent_of(&c), "created compares as an instant");
        assert!(!c.is_valid_parent_of(&p));
        let other = config(r#"{"created_by":"x"},{"created_by":"b"}"#);
        assert!(!p.is_valid_parent_of(&other));
        assert!(config("").is_valid_parent_of(&config("")));
    }
}
