//! Debian's `docker-registry` (distribution 2.8), started by the test on a free
//! loopback port with a generated config in its own temporary directory, and stopped
//! (by the pid we started) when dropped.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_registry::{Client, Options, RegistryHost};

/// How the registry authenticates.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// htpasswd (bcrypt) with these users and passwords.
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from the token server at `realm`, signed by the cert in `bundle`.
    Token {
        /// The token server's URL.
        realm: String,
        /// The service name tokens are issued for (their `aud`).
        service: String,
        /// The tokens' `iss`.
        issuer: String,
        /// The PEM certificate that signs the tokens.
        bundle: PathBuf,
    },
}

/// How to start a [`Registry`].
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// How it authenticates.
    pub auth: Auth,
    /// Serve HTTPS with this PEM certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running `docker-registry`, stopped (by its pid) and its directory removed when
/// dropped.
///
/// ```no_run
/// use strata_registry_testkit::{Registry, Wire};
/// let registry = Registry::start();
/// let wire = Wire::default();
/// let client = registry.client(wire.options());
/// // ... push and pull through `client`, then assert on what went over the wire ...
/// assert_eq!(wire.count("DELETE", "/v2/"), 0, "{}", wire.dump());
/// assert!(registry.data().exists());
/// ```
pub struct Registry {
    /// Its config, log and storage.
    pub dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    child: Child,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(RegistryConfig::default())
    }

    /// Starts a registry with `config`; panics with its log if it does not come up.
    pub fn start_with(config: RegistryConfig) -> Registry {
        let binary = which("docker-registry").unwrap_or_else(|| {
            panic!(
                "docker-registry is not installed: `apt-get install docker-registry` \
                 (scripts/test.sh does it)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("strata-registry-")
            .tempdir()
            .expect("temporary directory for the registry");
        let mut last_log = String::new();
        // A port picked by the kernel may be taken again before the registry binds it.
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("config.yml");
            fs::write(&conf, config_yaml(dir.path(), port, &config)).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("run docker-registry");
            if wait_ready(&mut child, port) {
                return Registry { dir, port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// It as a registry host.
    pub fn host(&self) -> RegistryHost {
        RegistryHost::parse(&format!("127.0.0.1:{}", self.port)).unwrap()
    }

    /// A client of it with `options`.
    pub fn client(&self, options: Options) -> Client {
        Client::new(self.host(), options).unwrap()
    }

    /// The registry's log (access log and application log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Its storage directory (`docker/registry/v2/...` below it).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the registry stores a blob's bytes.
    pub fn blob_file(&self, digest: &strata_registry::Digest) -> PathBuf {
        let hex = digest.hex();
        self.data()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }

    /// Access-log lines of requests whose request line contains `part`.
    pub fn access_lines(&self, part: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("HTTP/1.1\"") && l.contains(part))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry's config. Manifests may list foreign (non-distributable) layers by URL,
/// their blobs not in the registry, as Docker Hub and other public registries allow
/// (docker-registry refuses them unless `validation.manifests.urls.allow` is set).
fn config_yaml(dir: &Path, port: u16, config: &RegistryConfig) -> String {
    let mut y = format!(
        "version: 0.1\n\
         validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: strata-test-registry\n",
        data = dir.join("data").display()
    );
    if let Some((cert, key)) = &config.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    match &config.auth {
        Auth::None => {}
        Auth::Htpasswd(users) => {
            let path = dir.join("htpasswd");
            let mut file = String::new();
            for (user, pass) in users {
                let out = Command::new("htpasswd")
                    .args(["-nbB", user, pass])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd failed");
                file.push_str(String::from_utf8(out.stdout).unwrap().trim());
                file.push('\n');
            }
            fs::write(&path, file).unwrap();
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                path.display()
            ));
        }
        Auth::Token {
            realm,
            service,
            issuer,
            bundle,
        } => {
            y.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
    }
    y
}

/// Whether the registry listens within 20 s (false if it exited).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A raw HTTP/1.1 GET to a loopback port (for checks outside the crate under test).
pub fn raw_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
