//! Legacy v1 layer IDs (image-formats §1.5): the directory names of a legacy
//! `docker save` archive, and the `json` file in each.
//!
//! Docker derives them from a "V1Image" view of the config, re-marshalled with the Go
//! struct order of Docker 25–28 (`container.Config` with `MacAddress` and an always
//! present `OnBuild`). Strata computes them in UTC: the intermediate layers' `created`
//! is the epoch, which Docker writes in the daemon's local time zone, so a daemon outside
//! UTC gets other IDs. Nothing checks them on load; they are only names.
//!
//! ```
//! use strata_image::{ids::DiffId, v1};
//! let a: DiffId = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef".parse().unwrap();
//! let first = v1::intermediate_id(&[a], None).unwrap();
//! assert_eq!(first.to_string(),
//!     "sha256:3bf9dc6ca1042e8f1e9ce7b6a62bbe1ea0c224323b6fbc34e5e5e35905cd4206");
//! ```

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::config::{null_default, ImageConfig};
use crate::gojson::{self, GoTime};
use crate::ids::{chain_ids, sha256, DiffId, Digest};
use crate::Error;

/// The value type of Go's `map[string]struct{}`: written `{}`, any value accepted.
#[derive(Clone, Debug, Default, PartialEq)]
struct Unit;

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Unit)
    }
}

/// Docker's `strslice.StrSlice`: a JSON string or array of strings; `null` stays nil.
fn str_slice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn none_or_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

fn no_ports(v: &Option<BTreeMap<String, Unit>>) -> bool {
    v.as_ref().is_none_or(BTreeMap::is_empty)
}

/// Docker 25–28's `container.HealthConfig`, fields in Go order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct HealthConfig {
    #[serde(rename = "Test", default, skip_serializing_if = "none_or_empty")]
    test: Option<Vec<String>>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    interval: i64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    timeout: i64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    start_period: i64,
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    start_interval: i64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero")]
    retries: i64,
}

/// Docker 25–28's `container.Config`, fields in Go order, `omitempty` where Go has it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default, deserialize_with = "null_default")]
    hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    domainname: String,
    #[serde(default, deserialize_with = "null_default")]
    user: String,
    #[serde(default, deserialize_with = "null_default")]
    attach_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    attach_stdout: bool,
    #[serde(default, deserialize_with = "null_default")]
    attach_stderr: bool,
    #[serde(default, skip_serializing_if = "no_ports")]
    exposed_ports: Option<BTreeMap<String, Unit>>,
    #[serde(default, deserialize_with = "null_default")]
    tty: bool,
    #[serde(default, deserialize_with = "null_default")]
    open_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    stdin_once: bool,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default, deserialize_with = "str_slice")]
    cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthConfig>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    args_escaped: bool,
    #[serde(default, deserialize_with = "null_default")]
    image: String,
    #[serde(default)]
    volumes: Option<BTreeMap<String, Unit>>,
    #[serde(default, deserialize_with = "null_default")]
    working_dir: String,
    #[serde(default, deserialize_with = "str_slice")]
    entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    network_disabled: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    mac_address: String,
    #[serde(default)]
    on_build: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<i64>,
    #[serde(
        default,
        deserialize_with = "str_slice",
        skip_serializing_if = "none_or_empty"
    )]
    shell: Option<Vec<String>>,
}

/// moby's `image.V1Image`, fields in Go order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct V1Image {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    id: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    parent: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    comment: String,
    #[serde(default)]
    created: Option<GoTime>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    container: String,
    #[serde(default, deserialize_with = "null_default")]
    container_config: ContainerConfig,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    docker_version: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    author: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ContainerConfig>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    architecture: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    variant: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    os: String,
    #[serde(
        rename = "Size",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    size: i64,
}

impl V1Image {
    /// The placeholder of intermediate layers: `created` at the epoch, in UTC.
    fn intermediate() -> V1Image {
        V1Image {
            created: Some(GoTime::EPOCH),
            ..V1Image::default()
        }
    }
}

/// moby's `v1.CreateID`: sha256 of the Go JSON of `img` (without `id`) with `layer_id`
/// and, for all but the first layer, `parent` (full `sha256:` form) merged in.
fn create_id(img: &V1Image, chain: &Digest, parent: Option<&Digest>) -> Result<Digest, Error> {
    let mut img = img.clone();
    img.id.clear();
    let json = gojson::marshal(&img)?;
    let mut map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(&json).map_err(|e| Error::json("the v1 image JSON", e))?;
    let raw = |d: &Digest| {
        RawValue::from_string(format!("\"{d}\"")).map_err(|e| Error::json("a v1 ID", e))
    };
    map.insert("layer_id".into(), raw(chain)?);
    if let Some(p) = parent {
        map.insert("parent".into(), raw(p)?);
    }
    Ok(sha256(&gojson::marshal(&map)?))
}

/// The v1 ID of an intermediate layer: `diffs` are the diffIDs up to and including it,
/// `parent` the previous layer's v1 ID.
pub fn intermediate_id(diffs: &[DiffId], parent: Option<&Digest>) -> Result<Digest, Error> {
    let chain = chain_ids(diffs)
        .last()
        .map(|c| c.0)
        .ok_or_else(|| Error::invalid("a v1 layer ID", "no layers"))?;
    create_id(&V1Image::intermediate(), &chain, parent)
}

/// One layer directory of a legacy archive.
#[derive(Clone, Debug)]
pub struct V1Layer {
    /// The v1 ID; the directory is named by its hex.
    pub id: Digest,
    /// The `json` file written in the directory.
    pub json: Vec<u8>,
}

/// The v1 layer directories of an image, bottom first (one per diffID).
pub fn layers(config: &ImageConfig) -> Result<Vec<V1Layer>, Error> {
    let top: V1Image = serde_json::from_slice(config.raw()).map_err(|e| {
        Error::json(
            format!("the config of image {} (as a v1 image)", config.id()),
            e,
        )
    })?;
    let chains = config.chain_ids();
    let mut out: Vec<V1Layer> = Vec::with_capacity(chains.len());
    for (i, chain) in chains.iter().enumerate() {
        let mut img = if i + 1 == chains.len() {
            top.clone()
        } else {
            V1Image::intermediate()
        };
        let parent = out.last().map(|l| l.id);
        let id = create_id(&img, &chain.0, parent.as_ref())?;
        img.id = id.hex();
        if let Some(p) = parent {
            img.parent = p.hex();
        }
        img.os = config.os().to_string();
        out.push(V1Layer {
            id,
            json: gojson::marshal(&img)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    const B: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn intermediate_ids_match_the_spec_vectors() {
        let (a, b): (DiffId, DiffId) = (A.parse().unwrap(), B.parse().unwrap());
        let img = gojson::marshal(&V1Image::intermediate()).unwrap();
        assert_eq!(
            String::from_utf8(img).unwrap(),
            r#"{"created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}}"#
        );
        let first = intermediate_id(&[a], None).unwrap();
        assert_eq!(
            first.to_string(),
            "sha256:3bf9dc6ca1042e8f1e9ce7b6a62bbe1ea0c224323b6fbc34e5e5e35905cd4206"
        );
        let second = intermediate_id(&[a, b], Some(&first)).unwrap();
        assert_eq!(
            second.to_string(),
            "sha256:bb979014d872265b13ccb97a845251d90f04a35f4376d6de3c414d456f688092"
        );
    }

    #[test]
    fn layer_json_files_carry_ids_parents_and_os() {
        let raw = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05.5+01:00","config":{{"Env":["A=<b>"],"Cmd":"sh","ExposedPorts":{{"80/tcp":{{}}}},"Healthcheck":{{"Test":["CMD","true"],"Interval":1000000000}},"Volumes":{{"/data":{{}}}}}},"rootfs":{{"type":"layers","diff_ids":["{A}","{B}"]}},"unknown":1}}"#
        );
        let config = ImageConfig::parse(raw.into_bytes(), "test").unwrap();
        let layers = layers(&config).unwrap();
        assert_eq!(layers.len(), 2);
        let first = String::from_utf8(layers[0].json.clone()).unwrap();
        assert_eq!(
            first,
            format!(
                r#"{{"id":"{}","created":"1970-01-01T00:00:00Z","container_config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}},"os":"linux"}}"#,
                layers[0].id.hex()
            )
        );
        let top = String::from_utf8(layers[1].json.clone()).unwrap();
        assert_eq!(
            top,
            format!(
                r#"{{"id":"{}","parent":"{}","created":"2026-01-02T03:04:05.5+01:00","container_config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}},"config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{{"80/tcp":{{}}}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=\u003cb\u003e"],"Cmd":["sh"],"Healthcheck":{{"Test":["CMD","true"],"Interval":1000000000}},"Image":"","Volumes":{{"/data":{{}}}},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}},"architecture":"amd64","os":"linux"}}"#,
                layers[1].id.hex(),
                layers[0].id.hex()
            )
        );
        assert_eq!(
            layers[0].id,
            intermediate_id(&config.diff_ids()[..1], None).unwrap()
        );
    }
}
