//! Who we are to a registry: [`Credentials`] from `--creds` or the auth files podman
//! and docker write ([`AuthFiles`]), and the `WWW-Authenticate` challenges the registry
//! answers with (Basic, or Bearer with a token server).

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use base64::Engine;
use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::{Error, RegistryHost, RepositoryName};

/// What we authenticate with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: anonymous pulls, or a registry without auth.
    #[default]
    Anonymous,
    /// A user name and password (or access token used as a password).
    Basic {
        /// The user name.
        username: String,
        /// The password or access token (never shown by `Debug`).
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config.json), exchanged at the
    /// token server for access tokens.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}:***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// `USER:PASSWORD`, as the CLI's `--creds` takes it (the password may hold `:`).
    ///
    /// ```
    /// use strata_registry::Credentials;
    /// let c = Credentials::from_user_pass("me:se:cret").unwrap();
    /// assert_eq!(c, Credentials::Basic { username: "me".into(), password: "se:cret".into() });
    /// assert!(Credentials::from_user_pass("me").is_err());
    /// ```
    pub fn from_user_pass(s: &str) -> Result<Credentials, Error> {
        let (username, password) = s.split_once(':').ok_or(Error::InvalidCredentials {
            reason: "expected USER:PASSWORD",
        })?;
        if username.is_empty() {
            return Err(Error::InvalidCredentials {
                reason: "the user name before `:` is empty",
            });
        }
        Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// The credentials the user's auth files hold for this registry (and repository:
    /// containers auth.json may key entries by `host/namespace`), searched in
    /// [`AuthFiles::from_env`] order; [`Credentials::Anonymous`] when none has any.
    pub fn lookup(
        host: &RegistryHost,
        repository: Option<&RepositoryName>,
    ) -> Result<Credentials, Error> {
        AuthFiles::from_env().lookup(host, repository)
    }

    pub(crate) fn basic_header(username: &str, password: &str) -> String {
        let raw = format!("{username}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The format of an auth file: where Docker Hub's key and namespaced keys differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFileFormat {
    /// containers-auth.json(5): keys `host` or `host/namespace/...`; Docker Hub is `docker.io`.
    Containers,
    /// docker's config.json: keys are hosts; Docker Hub is `https://index.docker.io/v1/`.
    Docker,
}

/// The auth files to search, in order; the first one with a credential for the
/// registry wins. Each may name credential helpers (`credHelpers`, `credsStore`), which
/// are run as `docker-credential-NAME get`.
#[derive(Clone, Debug, Default)]
pub struct AuthFiles {
    files: Vec<(PathBuf, AuthFileFormat)>,
}

impl AuthFiles {
    /// The files podman searches (containers-auth.json(5)), then docker's:
    /// 1. `$REGISTRY_AUTH_FILE` if set, else `$XDG_RUNTIME_DIR/containers/auth.json`
    ///    (`/run/containers/UID/auth.json` without `XDG_RUNTIME_DIR`);
    /// 2. `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config`);
    /// 3. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn from_env() -> AuthFiles {
        Self::from_vars(|k| std::env::var_os(k), rustix::process::getuid().as_raw())
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> AuthFiles {
        let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = set("HOME");
        let mut files = Vec::new();
        let primary = set("REGISTRY_AUTH_FILE").unwrap_or_else(|| match set("XDG_RUNTIME_DIR") {
            Some(runtime) => runtime.join("containers/auth.json"),
            None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
        });
        files.push((primary, AuthFileFormat::Containers));
        if let Some(config) =
            set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            files.push((
                config.join("containers/auth.json"),
                AuthFileFormat::Containers,
            ));
        }
        if let Some(docker) =
            set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")))
        {
            files.push((docker.join("config.json"), AuthFileFormat::Docker));
        }
        AuthFiles { files }
    }

    /// Exactly these files, in this order.
    pub fn new(files: impl IntoIterator<Item = (PathBuf, AuthFileFormat)>) -> AuthFiles {
        AuthFiles {
            files: files.into_iter().collect(),
        }
    }

    /// The files searched, in order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, AuthFileFormat)> {
        self.files.iter().map(|(p, f)| (p.as_path(), *f))
    }

    /// The first credential for `host` (most specific namespace first in containers
    /// files); missing files are skipped, unreadable or malformed ones are errors.
    pub fn lookup(
        &self,
        host: &RegistryHost,
        repository: Option<&RepositoryName>,
    ) -> Result<Credentials, Error> {
        for (path, format) in &self.files {
            let keys = lookup_keys(host, repository, *format);
            for key in &keys {
                let file = match File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => {
                        return Err(Error::AuthFile {
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                    }
                };
                match docker_credential::get_credential_from_reader(BufReader::new(file), key) {
                    Ok(DockerCredential::UsernamePassword(username, password)) => {
                        return Ok(Credentials::Basic { username, password })
                    }
                    Ok(DockerCredential::IdentityToken(t)) => {
                        return Ok(Credentials::IdentityToken(t))
                    }
                    Err(CredentialRetrievalError::NoCredentialConfigured) => {}
                    // A credential store that has nothing for this registry says so on
                    // its output and exits 1; docker treats that as "no credentials".
                    Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
                        if stdout.contains("credentials not found")
                            || stderr.contains("credentials not found") => {}
                    Err(e) => {
                        return Err(Error::AuthFile {
                            path: path.clone(),
                            reason: format!("credentials for `{key}`: {e}"),
                        })
                    }
                }
            }
        }
        Ok(Credentials::Anonymous)
    }
}

/// The keys an auth file may hold the registry's credentials under, most specific first.
fn lookup_keys(
    host: &RegistryHost,
    repository: Option<&RepositoryName>,
    format: AuthFileFormat,
) -> Vec<String> {
    match format {
        AuthFileFormat::Docker if host.is_docker_hub() => {
            vec!["https://index.docker.io/v1/".to_string()]
        }
        AuthFileFormat::Docker => vec![host.as_str().to_string()],
        AuthFileFormat::Containers => {
            let mut keys = Vec::new();
            if let Some(repo) = repository {
                let mut ns = format!("{host}/{repo}");
                loop {
                    keys.push(ns.clone());
                    match ns.rfind('/') {
                        Some(i) if i > host.as_str().len() => ns.truncate(i),
                        _ => break,
                    }
                }
            }
            keys.push(host.as_str().to_string());
            keys
        }
    }
}

/// How a registry wants to be authenticated to, from its `WWW-Authenticate` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The challenge we answer among those offered: Bearer before Basic.
pub(crate) fn parse_challenge(headers: &[&str]) -> Result<Option<Challenge>, String> {
    let mut basic = false;
    for h in headers {
        let challenges = http_auth::parse_challenges(h).map_err(|e| format!("`{h}`: {e}"))?;
        for c in challenges {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if c.scheme.eq_ignore_ascii_case("bearer") {
                let realm =
                    param("realm").ok_or_else(|| format!("`{h}`: Bearer without a realm"))?;
                if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                    return Err(format!(
                        "`{h}`: the token realm `{realm}` is not an http(s) URL"
                    ));
                }
                return Ok(Some(Challenge::Bearer {
                    realm,
                    service: param("service"),
                }));
            }
            basic |= c.scheme.eq_ignore_ascii_case("basic");
        }
    }
    if basic {
        Ok(Some(Challenge::Basic))
    } else if headers.is_empty() {
        Ok(None)
    } else {
        Err(format!(
            "no Basic or Bearer challenge in `{}`",
            headers.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_prefer_bearer_and_unescape() {
        let h = r#"Basic realm="r", Bearer realm="https://auth.example/token",service="reg \"x\"",scope="repository:a:pull""#;
        assert_eq!(
            parse_challenge(&[h]).unwrap(),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some(r#"reg "x""#.into()),
            })
        );
        assert_eq!(
            parse_challenge(&[r#"Basic realm="registry""#]).unwrap(),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge(&[]).unwrap(), None);
        assert!(parse_challenge(&["Bearer service=x"]).is_err());
        assert!(parse_challenge(&[r#"Bearer realm="file:///etc/passwd""#]).is_err());
        assert!(parse_challenge(&["Negotiate abc=="]).is_err());
    }

    #[test]
    fn auth_file_search_order_follows_containers_auth_json() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let paths = |a: AuthFiles| {
            a.files()
                .map(|(p, f)| (p.display().to_string(), f))
                .collect::<Vec<_>>()
        };
        use AuthFileFormat::*;
        assert_eq!(
            paths(AuthFiles::from_vars(
                env(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/7")]),
                7
            )),
            [
                ("/run/user/7/containers/auth.json".into(), Containers),
                ("/h/.config/containers/auth.json".into(), Containers),
                ("/h/.docker/config.json".into(), Docker),
            ]
        );
        assert_eq!(
            paths(AuthFiles::from_vars(
                env(&[
                    ("HOME", "/h"),
                    ("REGISTRY_AUTH_FILE", "/a.json"),
                    ("XDG_CONFIG_HOME", "/c"),
                    ("DOCKER_CONFIG", "/d")
                ]),
                0
            )),
            [
                ("/a.json".into(), Containers),
                ("/c/containers/auth.json".into(), Containers),
                ("/d/config.json".into(), Docker)
            ]
        );
        assert_eq!(
            paths(AuthFiles::from_vars(env(&[]), 0)),
            [("/run/containers/0/auth.json".into(), Containers)]
        );
    }

    #[test]
    fn auth_files_resolve_namespaces_hub_keys_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let containers = dir.path().join("auth.json");
        std::fs::write(
            &containers,
            format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/team":{{"auth":"{}"}},"docker.io":{{"auth":"{}"}}}}}}"#,
                b64("host:1"),
                b64("team:2"),
                b64("hub:3")
            ),
        )
        .unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"identitytoken":"tok"}}}}}}"#,
                b64("dhub:4")
            ),
        )
        .unwrap();
        let files = AuthFiles::new([
            (dir.path().join("missing.json"), AuthFileFormat::Containers),
            (containers.clone(), AuthFileFormat::Containers),
            (docker.clone(), AuthFileFormat::Docker),
        ]);
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        let host = |h: &str| RegistryHost::parse(h).unwrap();
        let repo = |r: &str| RepositoryName::parse(r).unwrap();
        assert_eq!(
            files
                .lookup(&host("quay.io"), Some(&repo("team/app")))
                .unwrap(),
            basic("team", "2")
        );
        assert_eq!(
            files
                .lookup(&host("quay.io"), Some(&repo("other/app")))
                .unwrap(),
            basic("host", "1")
        );
        assert_eq!(
            files.lookup(&host("index.docker.io"), None).unwrap(),
            basic("hub", "3")
        );
        assert_eq!(
            files.lookup(&host("127.0.0.1:5000"), None).unwrap(),
            Credentials::IdentityToken("tok".into())
        );
        assert_eq!(
            files.lookup(&host("ghcr.io"), None).unwrap(),
            Credentials::Anonymous
        );
        let only_docker = AuthFiles::new([(docker, AuthFileFormat::Docker)]);
        assert_eq!(
            only_docker.lookup(&host("docker.io"), None).unwrap(),
            basic("dhub", "4")
        );

        std::fs::write(&containers, "{not json").unwrap();
        let err = files.lookup(&host("quay.io"), None).unwrap_err();
        assert!(err.to_string().contains("auth.json"), "{err}");
    }
}
