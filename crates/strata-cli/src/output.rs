//! How results reach a person or a program: text or JSON on stdout, warnings and
//! progress bars on stderr (bars only on a terminal).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use strata_layer::sandbox::SandboxStatus;

/// Standard output's reader went away (`strata history IMG | head`): the program ends
/// quietly, as a Unix tool killed by SIGPIPE does (status 141).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Streams a JSON array to standard output one element at a time (a listing as long as
/// a layer), written as every JSON result is: `fill` gets the function that writes one
/// element.
pub fn json_list<T: Serialize + ?Sized>(
    fill: impl FnOnce(&mut dyn FnMut(&T) -> std::io::Result<()>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use serde::ser::{SerializeSeq, Serializer};
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut ser = serde_json::Serializer::pretty(stdout);
    let mut seq = ser
        .serialize_seq(None)
        .map_err(std::io::Error::from)
        .map_err(stdout_error)?;
    fill(&mut |item| seq.serialize_element(item).map_err(std::io::Error::from))?;
    seq.end()
        .map_err(std::io::Error::from)
        .map_err(stdout_error)?;
    let mut stdout = ser.into_inner();
    writeln!(stdout)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// The error of a write to standard output: [`StdoutClosed`] for a closed pipe.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

pub struct Output {
    pub json: bool,
    quiet: bool,
    verbose: bool,
    bar: ProgressBar,
}

impl Output {
    pub fn new(json: bool, quiet: bool, verbose: bool) -> Self {
        let bar = ProgressBar::hidden();
        Output {
            json,
            quiet,
            verbose,
            bar,
        }
    }

    /// Whether progress bars are drawn: on a terminal, without `--json` or `-q`.
    pub fn bars_visible(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// Whether progress is reported as JSON lines on stderr: with `--json`, without `-q`.
    pub fn events_visible(&self) -> bool {
        self.json && !self.quiet
    }

    /// Shows a byte progress bar (total known or not) when stderr is a terminal.
    pub fn progress(&self, what: &str, total: Option<u64>) -> ProgressBar {
        let bar = self.bar.clone();
        if !self.bars_visible() {
            return bar;
        }
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let style = match total {
            Some(t) => {
                bar.set_length(t);
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
            }
            None => ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}"),
        };
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        bar
    }

    pub fn clear_progress(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints a result: `value` as JSON with `--json`, else the text from `text`.
    pub fn result<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        self.clear_progress();
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut stdout, value)
                .map_err(std::io::Error::from)
                .map_err(stdout_error)?;
            writeln!(stdout).map_err(stdout_error)?;
        } else if !self.quiet {
            let t = text();
            if !t.is_empty() {
                writeln!(stdout, "{t}").map_err(stdout_error)?;
            }
        }
        stdout.flush().map_err(stdout_error)
    }

    /// Prints warnings to stderr (all with `-v`, else a count past the first few).
    pub fn warnings(&self, warnings: &[String]) {
        if self.quiet {
            return;
        }
        let shown = if self.verbose {
            warnings.len()
        } else {
            warnings.len().min(5)
        };
        for w in &warnings[..shown] {
            eprintln!("strata: warning: {w}");
        }
        if shown < warnings.len() {
            eprintln!(
                "strata: warning: {} more warnings (see them all with -v)",
                warnings.len() - shown
            );
        }
    }

    /// A warning shown only with `-v` (something accepted that a careful reader may want
    /// to know).
    pub fn detail(&self, text: &str) {
        if self.verbose && !self.quiet {
            eprintln!("strata: warning: {text}");
        }
    }

    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("strata: note: {text}");
        }
    }

    /// How the writer was confined, for a report; a note on stderr when not fully.
    pub fn sandbox(&self, status: Option<&SandboxStatus>) -> String {
        match status {
            None => "off".to_string(),
            Some(SandboxStatus::Enforced { abi }) => format!("landlock (ABI {abi})"),
            Some(SandboxStatus::Partial { reason }) => {
                self.note(&format!("the Landlock sandbox is partial: {reason}"));
                format!("partial: {reason}")
            }
            Some(SandboxStatus::Unavailable { reason }) => {
                self.note(&format!(
                    "no Landlock sandbox ({reason}); the writer still resolves every path inside the root"
                ));
                format!("unavailable: {reason}")
            }
        }
    }
}
