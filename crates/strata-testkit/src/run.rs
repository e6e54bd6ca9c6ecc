//! Running a command to completion with a timeout, its output kept.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one command of ours may take before a test calls it a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The result of one command run.
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics (showing everything) unless the command succeeded.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstderr:\n{}\nstdout:\n{}",
            self.cmdline,
            self.status,
            self.stderr,
            self.stdout_text()
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no valid JSON ({e}):\n{}",
                self.cmdline,
                self.stdout_text()
            )
        })
    }
}

/// The command line as a person would type it (for messages).
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    let cmdline = show(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for a child") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
            panic!("`{cmdline}` did not finish within {timeout:?} (hang?); killed it.\nstderr so far:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Run {
        cmdline,
        status,
        stdout,
        stderr,
    }
}

/// Runs `sh -c SCRIPT` and returns stdout, requiring success.
pub fn sh(script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    let run = run_with_timeout(cmd, Duration::from_secs(300));
    run.assert_success();
    run.stdout_text()
}

/// An error with its sources, as the CLI shows it (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
