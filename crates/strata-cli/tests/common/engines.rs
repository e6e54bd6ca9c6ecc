//! The real container engines, as ground truth: Docker Engine 20.10 (`dockerd`, Debian's
//! `docker.io`) and containerd 1.6 (`containerd`, `ctr`), each started by a test with its
//! own data directories and socket under a temporary directory (no networking), and
//! stopped by its PID when dropped. A missing binary fails the test with what to install.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run_with_timeout, tempdir, Run};

pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// Docker's own client (`/usr/local/bin/docker` may be another program).
pub const DOCKER: &str = "/usr/bin/docker";
pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";

const TIMEOUT: Duration = Duration::from_secs(300);

/// Fails unless `binary` is installed.
pub fn need(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: the engine tests need Debian's docker.io, containerd and runc \
         (scripts/test.sh installs them)"
    );
}

/// A daemon started by a test; stopped (SIGTERM, then SIGKILL after 30 s) when dropped.
struct Daemon {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Daemon {
    fn spawn(what: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon { child, what, log }
    }

    /// Waits until `ready` holds, failing (with the daemon's log) after 60 s.
    fn wait(&mut self, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.what, self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not become ready in 60 s:\n{}",
                self.what,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dockerd` of its own: data root, exec root, socket and pid file in a temporary
/// directory; no iptables, no bridge (containers run with `--network none`), overlay2.
pub struct Dockerd {
    daemon: Option<Daemon>,
    sock: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        need(DOCKERD);
        need(DOCKER);
        need("/usr/bin/containerd");
        let dir = tempdir();
        let p = |n: &str| dir.path().join(n);
        let (sock, data) = (p("docker.sock"), p("data"));
        let mut cmd = Command::new(DOCKERD);
        cmd.args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=overlay2", "--data-root"])
            .arg(&data)
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(p("dockerd.pid"));
        let mut daemon = Daemon::spawn("dockerd", &mut cmd, p("dockerd.log"));
        let mut d = Dockerd {
            daemon: None,
            sock,
            data,
            dir,
        };
        daemon.wait(|| sock_ready(&d.sock) && d.docker(&["version"]).success());
        d.daemon = Some(daemon);
        d
    }

    /// A directory for the test's files, removed with the daemon's.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's data root (`overlay2/` under it).
    pub fn data_root(&self) -> &Path {
        &self.data
    }

    /// `docker -H unix://SOCK ARGS`.
    pub fn docker(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("client"));
        run_with_timeout(cmd, TIMEOUT)
    }

    /// `docker ARGS`, required to succeed: its standard output, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.docker(args)
            .assert_success()
            .stdout_text()
            .trim()
            .to_string()
    }

    /// `docker image inspect`'s ID and diffIDs of `image`.
    pub fn facts(&self, image: &str) -> super::images::Facts {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        let i = &v[0];
        super::images::Facts {
            id: super::jstr(i, "Id").to_string(),
            diff_ids: i["RootFS"]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect(),
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Stops dockerd (and the containerd it started) before the directory goes.
        self.daemon.take();
    }
}

/// A `containerd` of its own: root, state and sockets in a temporary directory, the CRI
/// plugin off. `ctr` talks to it in namespace `strata-test`.
pub struct Containerd {
    daemon: Option<Daemon>,
    sock: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        Containerd::start_with("")
    }

    /// [`Containerd::start`] with more lines for its config (a `proxy_plugins` section).
    pub fn start_with(extra_config: &str) -> Containerd {
        need(CONTAINERD);
        need(CTR);
        need("/usr/sbin/runc");
        let dir = tempdir();
        let p = |n: &str| dir.path().join(n);
        let sock = p("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n[debug]\n  address = \"{}\"\n",
            p("root").display(),
            p("state").display(),
            sock.display(),
            sock.display(),
            p("debug.sock").display()
        ) + extra_config;
        std::fs::write(p("config.toml"), config).unwrap();
        let mut cmd = Command::new(CONTAINERD);
        cmd.arg("--config").arg(p("config.toml"));
        let mut daemon = Daemon::spawn("containerd", &mut cmd, p("containerd.log"));
        let mut c = Containerd {
            daemon: None,
            sock,
            dir,
        };
        daemon.wait(|| sock_ready(&c.sock) && c.ctr(&["version"]).success());
        c.daemon = Some(daemon);
        c
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// containerd's gRPC socket.
    pub fn address(&self) -> &Path {
        &self.sock
    }

    /// `ctr -a SOCK -n strata-test ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(CTR);
        cmd.arg("-a")
            .arg(&self.sock)
            .args(["-n", "strata-test"])
            .args(args);
        run_with_timeout(cmd, TIMEOUT)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ctr(args)
            .assert_success()
            .stdout_text()
            .trim()
            .to_string()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.daemon.take();
    }
}

fn sock_ready(sock: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(sock).is_ok()
}

/// The engines' versions, for the test log: `docker version`'s server and `ctr version`'s.
pub fn versions(docker: Option<&Dockerd>, containerd: Option<&Containerd>) -> String {
    let mut s = String::new();
    if let Some(d) = docker {
        s.push_str(&format!(
            "docker {} ",
            d.ok(&["version", "--format", "{{.Server.Version}}"])
        ));
    }
    if let Some(c) = containerd {
        let out = c.ok(&["version"]);
        // The server's version: the last `Version:` line.
        let server = out
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Version:"));
        s.push_str(&format!("containerd {}", server.unwrap_or("?").trim()));
    }
    s
}
