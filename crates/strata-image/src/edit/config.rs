//! Config edits: the fields `docker build` sets with `ENTRYPOINT`, `CMD`, `ENV`, `LABEL`,
//! `USER`, `WORKDIR`, `EXPOSE`, `VOLUME` and `STOPSIGNAL`, each recorded in `history` as
//! an empty-layer entry the way BuildKit records the instruction.
//!
//! The config is rewritten from its parsed JSON: fields Strata does not know are kept,
//! keys come out sorted (as Go writes a map), and the result is parsed again as any
//! config is before it goes anywhere.

use serde_json::{json, Map, Value};

use crate::config::ImageConfig;
use crate::gojson::{self, GoTime};
use crate::ids::DiffId;
use crate::Error;

/// The config fields to change, in the order given; each non-empty change also adds one
/// history entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments (`CMD`); `Some(vec![])` clears them.
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE`: replaces `KEY` if set, else appended.
    pub env: Vec<(String, String)>,
    /// Labels to set, `KEY=VALUE` replacing any earlier value of `KEY`.
    pub labels: Vec<(String, String)>,
    /// The user (`NAME`, `UID`, `UID:GID`) the process runs as.
    pub user: Option<String>,
    /// The process's working directory.
    pub workdir: Option<String>,
    /// `80`, `80/tcp`, `53/udp`.
    pub expose: Vec<String>,
    /// Paths to declare as volumes.
    pub volumes: Vec<String>,
    /// The signal that stops the container (`SIGTERM`, `SIGINT`, ...).
    pub stop_signal: Option<String>,
    /// The config's `os`, `architecture` and `variant` (not recorded in history, as
    /// docker records none for a platform).
    pub platform: Option<crate::manifest::Platform>,
}

impl ConfigChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == ConfigChanges::default()
    }
}

/// Splits `KEY=VALUE` (for `--env`, `--label`, `--annotation`); `flag` names it in errors.
pub fn key_value(flag: &str, s: &str) -> Result<(String, String), Error> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(Error::invalid(
            format!("{flag} `{}`", s.escape_debug()),
            "must be KEY=VALUE with a non-empty KEY",
        )),
    }
}

/// `--entrypoint`/`--cmd`: a JSON array of strings (`["/bin/sh","-c"]`), else one word
/// (`/app`); the empty string clears it.
pub fn command_line(flag: &str, s: &str) -> Result<Vec<String>, Error> {
    if s.trim_start().starts_with('[') {
        return serde_json::from_str(s).map_err(|e| {
            Error::invalid(
                format!("{flag} `{}`", s.escape_debug()),
                format!("is not a JSON array of strings ({e})"),
            )
        });
    }
    Ok(if s.is_empty() {
        Vec::new()
    } else {
        vec![s.to_string()]
    })
}

/// `80` is `80/tcp`; a protocol other than tcp, udp or sctp, or a port that is not a
/// number from 1 to 65535 (or a range of them), is refused.
fn port(s: &str) -> Result<String, Error> {
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let bad = |why: &str| Error::invalid(format!("--expose `{}`", s.escape_debug()), why);
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    let num = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0);
    match (num(lo), num(hi)) {
        (Some(a), Some(b)) if a <= b => Ok(format!("{ports}/{proto}")),
        _ => Err(bad(
            "the port must be a number from 1 to 65535 (or a range A-B)",
        )),
    }
}

/// A config being rewritten: the parsed document and the history entries added so far.
pub(crate) struct Draft {
    doc: Map<String, Value>,
    created: GoTime,
    what: String,
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

impl Draft {
    pub(crate) fn new(base: &ImageConfig, created: GoTime) -> Result<Draft, Error> {
        let what = format!("the config of image {}", base.id());
        let doc: Value = serde_json::from_slice(base.raw()).map_err(|e| Error::json(&what, e))?;
        match doc {
            Value::Object(doc) => Ok(Draft { doc, created, what }),
            _ => Err(Error::invalid(what, "is not a JSON object")),
        }
    }

    /// The `config` object (the container defaults), made if absent or null.
    fn container(&mut self) -> &mut Map<String, Value> {
        let c = self
            .doc
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !c.is_object() {
            *c = Value::Object(Map::new());
        }
        match c {
            Value::Object(m) => m,
            _ => unreachable!("made an object above"),
        }
    }

    /// The object at `config.<key>` (Labels, ExposedPorts, Volumes), made if absent.
    fn container_map(&mut self, key: &str) -> &mut Map<String, Value> {
        let v = self
            .container()
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!("made an object above"),
        }
    }

    fn history(&mut self, entry: Value) -> Result<(), Error> {
        let h = self
            .doc
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if h.is_null() {
            *h = Value::Array(Vec::new());
        }
        h.as_array_mut()
            .ok_or_else(|| Error::invalid(&self.what, "its history is not a list"))?
            .push(entry);
        Ok(())
    }

    /// One empty-layer history entry for an instruction, as BuildKit writes it.
    fn record(&mut self, instruction: String) -> Result<(), Error> {
        let entry = json!({
            "created": self.created.to_string(),
            "created_by": instruction,
            "comment": "strata mutate",
            "empty_layer": true,
        });
        self.history(entry)
    }

    pub(crate) fn apply(&mut self, c: &ConfigChanges) -> Result<(), Error> {
        if let Some(e) = &c.entrypoint {
            let v = if e.is_empty() { Value::Null } else { json!(e) };
            self.container().insert("Entrypoint".into(), v);
            self.record(format!("ENTRYPOINT {}", json_list(e)))?;
        }
        if let Some(cmd) = &c.cmd {
            let v = if cmd.is_empty() {
                Value::Null
            } else {
                json!(cmd)
            };
            self.container().insert("Cmd".into(), v);
            self.record(format!("CMD {}", json_list(cmd)))?;
        }
        if !c.env.is_empty() {
            let mut env: Vec<String> = match self.container().get("Env") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            for (k, v) in &c.env {
                let line = format!("{k}={v}");
                let prefix = format!("{k}=");
                match env.iter_mut().find(|e| e.starts_with(&prefix) || *e == k) {
                    Some(e) => *e = line,
                    None => env.push(line),
                }
            }
            self.container().insert("Env".into(), json!(env));
            let shown: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.record(format!("ENV {}", shown.join(" ")))?;
        }
        if !c.labels.is_empty() {
            for (k, v) in &c.labels {
                self.container_map("Labels")
                    .insert(k.clone(), Value::String(v.clone()));
            }
            let shown: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.record(format!("LABEL {}", shown.join(" ")))?;
        }
        if let Some(u) = &c.user {
            self.container().insert("User".into(), json!(u));
            self.record(format!("USER {u}"))?;
        }
        if let Some(w) = &c.workdir {
            if !w.starts_with('/') {
                return Err(Error::invalid(
                    format!("--workdir `{}`", w.escape_debug()),
                    "must be an absolute path",
                ));
            }
            self.container().insert("WorkingDir".into(), json!(w));
            self.record(format!("WORKDIR {w}"))?;
        }
        if !c.expose.is_empty() {
            let ports = c
                .expose
                .iter()
                .map(|p| port(p))
                .collect::<Result<Vec<_>, _>>()?;
            for p in &ports {
                self.container_map("ExposedPorts")
                    .insert(p.clone(), json!({}));
            }
            let shown: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
            self.record(format!("EXPOSE map[{}]", shown.join(" ")))?;
        }
        if !c.volumes.is_empty() {
            for v in &c.volumes {
                if !v.starts_with('/') {
                    return Err(Error::invalid(
                        format!("--volume `{}`", v.escape_debug()),
                        "must be an absolute path",
                    ));
                }
                self.container_map("Volumes").insert(v.clone(), json!({}));
            }
            self.record(format!("VOLUME [{}]", c.volumes.join(" ")))?;
        }
        if let Some(s) = &c.stop_signal {
            self.container().insert("StopSignal".into(), json!(s));
            self.record(format!("STOPSIGNAL {s}"))?;
        }
        if let Some(p) = &c.platform {
            self.doc.insert("os".into(), json!(p.os));
            self.doc
                .insert("architecture".into(), json!(p.architecture));
            match &p.variant {
                Some(v) => self.doc.insert("variant".into(), json!(v)),
                None => self.doc.remove("variant"),
            };
        }
        Ok(())
    }

    /// Drops every layer (for a flatten): no diffIDs, and each history entry kept as an
    /// empty one.
    pub(crate) fn drop_layers(&mut self) -> Result<(), Error> {
        let what = self.what.clone();
        match self
            .doc
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
        {
            Some(d) => *d = Value::Array(Vec::new()),
            None => return Err(Error::invalid(&what, "it has no rootfs.diff_ids")),
        }
        if let Some(Value::Array(h)) = self.doc.get_mut("history") {
            for entry in h.iter_mut().filter_map(Value::as_object_mut) {
                entry.insert("empty_layer".into(), Value::Bool(true));
            }
        }
        Ok(())
    }

    /// Adds a layer on top: its diffID, and a history entry `created_by`.
    pub(crate) fn add_layer(&mut self, diff_id: DiffId, created_by: &str) -> Result<(), Error> {
        let what = self.what.clone();
        let diff_ids = self
            .doc
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .ok_or_else(|| Error::invalid(&what, "it has no rootfs.diff_ids"))?;
        if diff_ids.is_null() {
            *diff_ids = Value::Array(Vec::new());
        }
        diff_ids
            .as_array_mut()
            .ok_or_else(|| Error::invalid(&what, "rootfs.diff_ids is not a list"))?
            .push(Value::String(diff_id.to_string()));
        let entry = json!({
            "created": self.created.to_string(),
            "created_by": created_by,
            "comment": created_by.split(' ').take(2).collect::<Vec<_>>().join(" "),
        });
        self.history(entry)
    }

    /// The finished config: `created` set, written as Go writes a map, parsed again.
    pub(crate) fn finish(mut self) -> Result<ImageConfig, Error> {
        self.doc
            .insert("created".into(), Value::String(self.created.to_string()));
        let bytes = gojson::marshal(&Value::Object(self.doc))?;
        ImageConfig::parse(bytes, "made by the edit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","A=1"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"base","empty_layer":true}],"x-unknown":{"kept":true}}"#;

    fn edited(c: &ConfigChanges) -> Value {
        let base = ImageConfig::parse(BASE.as_bytes().to_vec(), "test").unwrap();
        let mut d = Draft::new(&base, GoTime::utc(1_700_000_000, 0)).unwrap();
        d.apply(c).unwrap();
        serde_json::from_slice(d.finish().unwrap().raw()).unwrap()
    }

    #[test]
    fn every_field_lands_where_docker_puts_it_with_one_history_entry_each() {
        let c = ConfigChanges {
            entrypoint: Some(vec!["/app".into(), "-v".into()]),
            cmd: Some(vec![]),
            env: vec![("A".into(), "2".into()), ("B".into(), "x=y".into())],
            labels: vec![("org.example".into(), "1".into())],
            user: Some("1000:1000".into()),
            workdir: Some("/srv".into()),
            expose: vec!["80".into(), "53/udp".into()],
            volumes: vec!["/data".into()],
            stop_signal: Some("SIGINT".into()),
            platform: Some(crate::manifest::Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into()),
                ..Default::default()
            }),
        };
        let v = edited(&c);
        let cfg = &v["config"];
        assert_eq!(cfg["Entrypoint"], json!(["/app", "-v"]));
        assert_eq!(cfg["Cmd"], Value::Null);
        assert_eq!(cfg["Env"], json!(["PATH=/bin", "A=2", "B=x=y"]));
        assert_eq!(cfg["Labels"], json!({"org.example": "1"}));
        assert_eq!(cfg["User"], "1000:1000");
        assert_eq!(cfg["WorkingDir"], "/srv");
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Volumes"], json!({"/data": {}}));
        assert_eq!(cfg["StopSignal"], "SIGINT");
        assert_eq!(
            (&v["architecture"], &v["variant"]),
            (&json!("arm64"), &json!("v8"))
        );
        assert_eq!(v["x-unknown"], json!({"kept": true}));
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        let by: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].as_str().unwrap())
            .collect();
        assert_eq!(
            by,
            [
                "base",
                r#"ENTRYPOINT ["/app","-v"]"#,
                "CMD []",
                "ENV A=2 B=x=y",
                "LABEL org.example=1",
                "USER 1000:1000",
                "WORKDIR /srv",
                "EXPOSE map[80/tcp:{} 53/udp:{}]",
                "VOLUME [/data]",
                "STOPSIGNAL SIGINT",
            ]
        );
        assert!(v["history"][1]["empty_layer"].as_bool().unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (c, why) in [
            (
                ConfigChanges {
                    workdir: Some("rel".into()),
                    ..Default::default()
                },
                "--workdir `rel`: must be an absolute path",
            ),
            (
                ConfigChanges {
                    expose: vec!["99999".into()],
                    ..Default::default()
                },
                "--expose `99999`",
            ),
            (
                ConfigChanges {
                    expose: vec!["80/icmp".into()],
                    ..Default::default()
                },
                "tcp, udp or sctp",
            ),
        ] {
            let base = ImageConfig::parse(BASE.as_bytes().to_vec(), "test").unwrap();
            let mut d = Draft::new(&base, GoTime::EPOCH).unwrap();
            let e = d.apply(&c).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        assert!(key_value("--env", "=x").is_err());
        assert_eq!(
            key_value("--env", "K=").unwrap(),
            ("K".into(), String::new())
        );
        assert_eq!(command_line("--cmd", "").unwrap(), Vec::<String>::new());
        assert_eq!(
            command_line("--cmd", r#"["a","b c"]"#).unwrap(),
            ["a", "b c"]
        );
        let e = command_line("--cmd", "[1]").unwrap_err().to_string();
        assert!(e.contains("not a JSON array of strings"), "{e}");
    }
}
