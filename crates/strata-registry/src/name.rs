//! The names a registry request is made of: the registry host, the repository in it, and a
//! tag or digest in that repository. Each is validated once, when it is parsed, so the
//! rest of the crate can put them into URLs as they are.

use std::fmt;
use std::str::FromStr;

use strata_layer::digest::Digest;

use crate::Error;

/// Docker Hub's name as users write it.
const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A registry as a user names it: `docker.io`, `quay.io`, `127.0.0.1:5000`,
/// `localhost:5000`, `[::1]:5000`.
///
/// `docker.io`, `index.docker.io` and `registry-1.docker.io` are one registry, shown as
/// `docker.io`; its API is served by `registry-1.docker.io` ([`RegistryHost::api_authority`]).
///
/// ```
/// use strata_registry::RegistryHost;
/// let hub: RegistryHost = "index.docker.io".parse().unwrap();
/// assert_eq!(hub.as_str(), "docker.io");
/// assert_eq!(hub.api_authority(), "registry-1.docker.io");
/// assert!("127.0.0.1:5000".parse::<RegistryHost>().unwrap().is_loopback());
/// assert!("quay.io/x".parse::<RegistryHost>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistryHost {
    /// Lowercase `host[:port]`, with Docker Hub's aliases folded into `docker.io`.
    name: String,
}

impl RegistryHost {
    /// Parses `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in brackets.
    pub fn parse(s: &str) -> Result<RegistryHost, Error> {
        let bad = |reason: &'static str| Error::InvalidHost {
            host: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or(bad("an IPv6 address needs a closing `]`"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the text in brackets is not an IPv6 address"));
            }
            match after {
                "" => (&s[..v6.len() + 2], None),
                _ => (
                    &s[..v6.len() + 2],
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or(bad("only `:PORT` may follow `]`"))?,
                    ),
                ),
            }
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if let Some(p) = port {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the port must be a number"));
            }
            match p.parse::<u32>() {
                Ok(1..=65535) => {}
                _ => return Err(bad("the port must be between 1 and 65535")),
            }
        }
        if !host.starts_with('[') {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if host.len() > 253 || !host.split('.').all(label_ok) {
                return Err(bad(
                    "a host is DNS labels (letters, digits, `-`) joined by `.`, then `:PORT` at most",
                ));
            }
        }
        let mut name = s.to_ascii_lowercase();
        if matches!(name.as_str(), "index.docker.io" | DOCKER_HUB_API) {
            name = DOCKER_HUB.to_string();
        }
        Ok(RegistryHost { name })
    }

    /// The registry's name: `host[:port]`, `docker.io` for Docker Hub.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The `host[:port]` that serves the registry API (differs only for Docker Hub).
    pub fn api_authority(&self) -> &str {
        if self.name == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.name
        }
    }

    /// Whether this is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.name == DOCKER_HUB
    }

    /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `::1`): such a
    /// registry may be spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = match self.name.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => self.name.split(':').next().unwrap_or(&self.name),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for RegistryHost {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RegistryHost::parse(s)
    }
}

/// A repository in a registry: `strata/corpus`, `library/debian`.
///
/// Path components of lowercase letters and digits, joined inside by `.`, `_`, `__` or
/// runs of `-`, separated by `/`; at most 255 bytes (the distribution grammar). Docker
/// Hub's short names (`debian` for `library/debian`) are the reference parser's business,
/// not this type's.
///
/// ```
/// use strata_registry::RepositoryName;
/// assert!(RepositoryName::parse("strata/corpus").is_ok());
/// assert!(RepositoryName::parse("Strata/corpus").is_err());
/// assert!(RepositoryName::parse("a/../b").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<RepositoryName, Error> {
        let bad = |reason: &'static str| Error::InvalidRepository {
            name: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > 255 {
            return Err(bad("it is longer than 255 bytes"));
        }
        for component in s.split('/') {
            if !valid_path_component(component) {
                return Err(bad(
                    "each `/`-separated part must be lowercase letters and digits, joined by `.`, `_`, `__` or `-`",
                ));
            }
        }
        Ok(RepositoryName(s.to_string()))
    }

    /// The name, as it goes into URLs and token scopes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &c[start..i] {
            "." | "_" | "__" => {}
            sep if sep.bytes().all(|x| x == b'-') => {}
            _ => return false,
        }
    }
    true
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepositoryName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RepositoryName::parse(s)
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Tag, Error> {
        let b = s.as_bytes();
        let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        if b.is_empty()
            || b.len() > 128
            || !word(b[0])
            || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
        {
            return Err(Error::InvalidReference {
                reference: s.to_string(),
                reason: "a tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -",
            });
        }
        Ok(Tag(s.to_string()))
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest is fetched or pushed by: a tag, or a digest.
///
/// ```
/// use strata_registry::Reference;
/// assert!(matches!("latest".parse::<Reference>().unwrap(), Reference::Tag(_)));
/// let d = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
/// assert!(matches!(d.parse::<Reference>().unwrap(), Reference::Digest(_)));
/// assert!("sha512:abc".parse::<Reference>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A name that may move to other content (`latest`, `v1.2`).
    Tag(Tag),
    /// The content itself; what comes back is checked against it.
    Digest(Digest),
}

impl Reference {
    /// A digest (`ALGORITHM:HEX`, sha256 only) if the text holds a `:`, else a tag.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Reference::Tag(t)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Reference::Digest(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_and_fold_docker_hub() {
        for ok in [
            "quay.io",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
            "[::1]",
            "A.b-c.d:1",
        ] {
            RegistryHost::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "a/b", "a:", "a:0", "a:65536", "a:x", "-a.b", "a..b", "[::1", "[zz]:1", "u@h",
            "[::1]x",
        ] {
            assert!(RegistryHost::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            RegistryHost::parse("Registry-1.Docker.IO")
                .unwrap()
                .as_str(),
            "docker.io"
        );
        assert_eq!(RegistryHost::parse("A.b:1").unwrap().as_str(), "a.b:1");
        let lo = ["localhost:5000", "127.0.0.1", "127.3.4.5:1", "[::1]:5000"];
        assert!(lo
            .iter()
            .all(|h| RegistryHost::parse(h).unwrap().is_loopback()));
        assert!(!RegistryHost::parse("10.0.0.1:5000").unwrap().is_loopback());
        assert!(!RegistryHost::parse("localhost.example")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in [
            "a",
            "a/b",
            "library/debian",
            "a.b/c_d/e__f/g-h/i---j",
            "0/9",
        ] {
            RepositoryName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a/../b", "a/./b", "a___b", "a._b", ".a", "a-", "a b",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_and_references() {
        assert!(Tag::parse("v1.0_rc-2").is_ok());
        assert!(Tag::parse(&"x".repeat(128)).is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad} accepted");
        }
        let e = Reference::parse("sha256:XYZ").unwrap_err();
        assert!(e.to_string().contains("sha256:XYZ"), "{e}");
    }
}
