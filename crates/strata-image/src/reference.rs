//! Image references, normalized the way Docker users write them.
//!
//! `busybox` means `docker.io/library/busybox:latest`, `myreg:5000/app` means
//! `myreg:5000/app:latest`; the *familiar* form goes the other way (what `docker images`
//! and a docker-archive's `RepoTags` show). The grammar is distribution's
//! (`reference/regexp.go`), the normalization Docker's `ParseNormalizedNamed`:
//!
//! - the first component is a registry only if it holds `.` or `:`, is `localhost`, or has
//!   upper-case letters; otherwise the registry is `docker.io` (`index.docker.io` is an
//!   alias of it), and a one-component Docker Hub name gets `library/`;
//! - repository paths are lower case; a bare 64-hex string is refused (it would be an ID);
//! - with neither tag nor digest, [`Reference::parse`] adds `latest`.
//!
//! Why not `oci_spec::distribution::Reference`: checked against Docker on 0.10, it has no
//! familiar form, files `Upper/x` under Docker Hub (Docker takes `Upper` as a registry),
//! and accepts 64-hex repository names that Docker refuses.
//!
//! ```
//! use strata_image::Reference;
//! let r = Reference::parse("busybox").unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.familiar(), "busybox:latest");
//! let r = Reference::parse("docker.io/strata/corpus:1").unwrap();
//! assert_eq!(r.familiar(), "strata/corpus:1");
//! assert_eq!(Reference::parse("localhost:5000/app:v1").unwrap().familiar(), "localhost:5000/app:v1");
//! ```

use std::fmt;

use crate::ids::Digest;
use crate::Error;

/// Docker Hub, the registry of names that do not say one.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
/// distribution's `NameTotalLengthMax`.
const MAX_NAME: usize = 255;

/// A normalized image reference: registry, repository path, and a tag, a digest or both.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference, adding the tag `latest` when it has neither a
    /// tag nor a digest (what `docker pull busybox` means).
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let mut r = Reference::parse_name(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(r)
    }

    /// Parses and normalizes a reference without adding a default tag.
    pub fn parse_name(s: &str) -> Result<Reference, Error> {
        let bad = |reason: &str| Error::BadReference {
            value: s.escape_debug().to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad(
                "a 64-digit hexadecimal string is an image ID, not a repository name",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(c) if last_slash.is_none_or(|sl| c > sl) => (&rest[..c], Some(&rest[c + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("the tag must be 1 to 128 characters of [A-Za-z0-9_.-], not starting with `.` or `-`"));
            }
        }
        if name.len() > MAX_NAME {
            return Err(bad("the repository name is longer than 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == LEGACY_DOMAIN {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(bad(
                "the registry must be a host name or [IPv6] with an optional :port",
            ));
        }
        if path.to_lowercase() != path {
            return Err(bad("the repository path must be lower case"));
        }
        // Components of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes: the registry's
        // own rule for repository names.
        if strata_registry::RepositoryName::parse(&path).is_err() {
            return Err(bad(
                "each repository path component must be [a-z0-9]+ joined by `.`, `_`, `__` or dashes",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag (`latest` for a name given without tag or digest), if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest of `name@sha256:…`, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name, `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it: `busybox`, `strata/corpus`,
    /// `myreg:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it: `busybox:latest`, `myreg:5000/app:v1`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// This reference with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        if !valid_tag(tag) {
            return Err(Error::BadReference {
                value: tag.escape_debug().to_string(),
                reason: "not a valid tag".into(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The fully normalized form, `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`, the registry's own rule.
fn valid_tag(t: &str) -> bool {
    strata_registry::Tag::parse(t).is_ok()
}

/// A host name (components of `[A-Za-z0-9]` with inner dashes, joined by dots) or an
/// `[IPv6]` literal, with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if d.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789012345678901234567890123456789012345678901234567890123";

    #[test]
    fn normalizes_like_docker() {
        for (input, full, familiar) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox:1",
                "docker.io/library/busybox:1",
                "busybox:1",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "strata/corpus:1",
                "docker.io/strata/corpus:1",
                "strata/corpus:1",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "localhost/foo",
                "localhost/foo:latest",
                "localhost/foo:latest",
            ),
            (
                "localhost:5000/foo:bar",
                "localhost:5000/foo:bar",
                "localhost:5000/foo:bar",
            ),
            (
                "myreg:5000/app:v1",
                "myreg:5000/app:v1",
                "myreg:5000/app:v1",
            ),
            ("Upper/x", "Upper/x:latest", "Upper/x:latest"),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
            (
                "a--b__c/e-f.g",
                "docker.io/a--b__c/e-f.g:latest",
                "a--b__c/e-f.g:latest",
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
        ] {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.familiar(), format!("busybox:1.36@{D}"));
        assert_eq!(
            r.with_tag("2").unwrap().to_string(),
            "docker.io/library/busybox:2"
        );
        assert_eq!(Reference::parse_name("busybox").unwrap().tag(), None);
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for (bad, why) in [
            ("", "empty"),
            (
                "0123456789012345678901234567890123456789012345678901234567890123",
                "image ID",
            ),
            ("foo/Bar", "lower case"),
            ("a..b", "path component"),
            ("-a", "path component"),
            ("a/", "path component"),
            ("busybox:", "tag"),
            ("busybox:.x", "tag"),
            ("busybox@sha256:abc", "64 lowercase"),
            ("my_reg.io:5000/x", "registry"),
            ("host:port/x", "registry"),
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(Reference::parse(&"a".repeat(256)).is_err());
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
    }
}
