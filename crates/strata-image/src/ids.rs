//! Identifiers (image-formats §1): validated digests, and the three IDs an image has.
//!
//! - [`DiffId`]: sha256 of one layer's *uncompressed* tar, as the config lists it.
//! - [`ChainId`]: names an applied stack of layers, `chain[i] = sha256(chain[i-1] + " " + diff[i])`.
//! - [`ImageId`]: sha256 of the raw config bytes, exactly as received (never re-serialized).
//!
//! Every digest is checked against the grammar of OCI `descriptor.md` before it is used
//! for anything, a path above all (docker CVE-2014-9358 used crafted IDs as paths).
//!
//! ```
//! use strata_image::ids::{chain_ids, Digest, DiffId};
//! let a: DiffId = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef".parse().unwrap();
//! let b: DiffId = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
//! let chain = chain_ids(&[a, b]);
//! assert_eq!(chain[0].to_string(), a.to_string());
//! assert_eq!(chain[1].to_string(),
//!     "sha256:33b3e894f3d840843a86495314bf58ac707860d3553f5535922e180a451dc751");
//! assert!(Digest::parse("sha256:../../etc/passwd").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use strata_layer::digest::{sha256, Digest};

use crate::Error;

/// `blobs/sha256/<hex>`: the path of a blob in an OCI layout. Built from a [`Digest`],
/// which can only hold 32 bytes, so it can never climb out of `blobs/`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Digest);

        impl $name {
            /// The hex part, without `sha256:`.
            pub fn hex(&self) -> String {
                self.0.hex()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Ok($name(Digest::parse(s)?))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// sha256 of a layer's uncompressed tar stream, trailing bytes included (§1.2).
    DiffId
);
id_type!(
    /// The ID of an applied stack of layers (§1.3); the store keys layers by it.
    ChainId
);
id_type!(
    /// sha256 of an image's raw config bytes (§1.4).
    ImageId
);

impl ImageId {
    /// The ID of the image whose config is exactly these bytes.
    pub fn of_config(config: &[u8]) -> ImageId {
        ImageId(sha256(config))
    }
}

impl ChainId {
    /// The chain ID of `parent` with `diff` applied on top (`None`: a base layer).
    pub fn next(parent: Option<&ChainId>, diff: &DiffId) -> ChainId {
        match parent {
            None => ChainId(diff.0),
            Some(p) => ChainId(sha256(format!("{p} {diff}").as_bytes())),
        }
    }
}

/// The chain ID of every prefix of `diffs`: element `i` names layers `0..=i` applied.
pub fn chain_ids(diffs: &[DiffId]) -> Vec<ChainId> {
    let mut out: Vec<ChainId> = Vec::with_capacity(diffs.len());
    for d in diffs {
        let next = ChainId::next(out.last(), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    const B: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn chain_ids_match_the_spec_vectors() {
        let (a, b): (DiffId, DiffId) = (A.parse().unwrap(), B.parse().unwrap());
        let chain = chain_ids(&[a, b, a]);
        assert_eq!(chain[0].to_string(), A);
        assert_eq!(
            chain[1].to_string(),
            "sha256:33b3e894f3d840843a86495314bf58ac707860d3553f5535922e180a451dc751"
        );
        assert_eq!(
            chain[2].to_string(),
            "sha256:9b6ebce0e1015a5542f7ab9762880a6959db098a59282f58eae5b50a7920f92c"
        );
    }

    #[test]
    fn empty_tar_and_empty_input_digests() {
        assert_eq!(sha256(&[0u8; 1024]).to_string(), A);
        assert_eq!(ImageId::of_config(b"").to_string(), B);
    }

    #[test]
    fn digest_grammar_is_checked_before_use() {
        for (bad, why) in [
            ("5f70bf18", "no `algorithm:`"),
            ("sha256:", "encoded part"),
            ("SHA256:abc", "algorithm must match"),
            ("sha256:../../etc/passwd", "encoded part"),
            (
                "sha256:5F70BF18A086007016E948B04AED3B82103A36BEA41755B6CDDFAF10ACE3C6EF",
                "64 lowercase",
            ),
            ("sha256:5f70", "64 lowercase"),
            ("sha512:abcd", "128 lowercase"),
            ("md5+x:abcd", "only sha256"),
            (
                "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef/x",
                "encoded part",
            ),
        ] {
            let e = Digest::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(Digest::parse(A).unwrap().to_string(), A);
        assert_eq!(
            blob_path(&Digest::parse(A).unwrap()),
            format!("blobs/sha256/{}", &A[7..])
        );
    }

    #[test]
    fn ids_serialize_as_strings() {
        let d: DiffId = A.parse().unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{A}\""));
        let back: DiffId = serde_json::from_str(&format!("\"{A}\"")).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<DiffId>("\"sha256:xyz\"").is_err());
    }
}
