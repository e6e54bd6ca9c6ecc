//! `strata completion SHELL` and the hidden `strata manual DIR`: shell completions and
//! man pages, both made from the clap definition ([`help::command`]), so every command
//! gets its page (`strata-copy(1)`, `strata-layer-unpack(1)`, ...) and its completions.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

use crate::help;

/// Prints the completion script of `shell` for `strata`.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = help::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "strata", &mut out);
    out.flush().context("cannot write the completion script")?;
    Ok(())
}

/// Writes `strata.1` and one page per command into `dir` (created if missing); prints
/// the paths written.
pub fn manual(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    for path in write_man_pages(dir)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Renders every page into `dir`; returns the files written, `strata.1` first.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = help::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, "", None, dir, &mut written)?;
    Ok(written)
}

/// The page name of a built command: `strata`, `strata-layer-unpack`.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn page(
    cmd: &clap::Command,
    path: &str,
    parent: Option<&str>,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let name = page_name(cmd);
    let file = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    render(cmd, &name, path, parent, &mut buf).context("cannot render a man page")?;
    std::fs::write(&file, buf).with_context(|| format!("cannot write {}", file.display()))?;
    written.push(file);
    for sub in visible_subcommands(cmd) {
        let sub_path = if path.is_empty() {
            sub.get_name().to_owned()
        } else {
            format!("{path} {}", sub.get_name())
        };
        page(sub, &sub_path, Some(&name), dir, written)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections from the definition, then ours.
fn render(
    cmd: &clap::Command,
    name: &str,
    path: &str,
    parent: Option<&str>,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    // The examples are our section; --help's one-example epilogue is not repeated.
    let plain = cmd.clone().after_help("").after_long_help("");
    let man = Man::new(plain)
        .title(name.to_uppercase())
        .date(env!("STRATA_GIT_DATE"))
        .source(format!("strata {}", help::VERSION))
        .manual("Strata Manual");
    // Each render_* call writes roff's preamble: keep the first only.
    let preamble = Roff::new().render();
    let mut sections = Vec::new();
    man.render_title(&mut sections)?;
    man.render_name_section(&mut sections)?;
    man.render_synopsis_section(&mut sections)?;
    man.render_description_section(&mut sections)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut sections)?;
    }
    if visible_subcommands(cmd).next().is_some() {
        man.render_subcommands_section(&mut sections)?;
    }
    // clap_mangen separates possible values by `.br`, an empty line, `.br`: one `.sp`
    // says the same without mandoc's warnings.
    let sections = String::from_utf8_lossy(&sections)
        .replace(&preamble, "")
        .replace("\n.br\n\n.br\n", "\n.sp\n")
        .replace("\n\n.br\n", "\n.br\n");
    let sections: String = sections
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    w.write_all(preamble.as_bytes())?;
    w.write_all(sections.as_bytes())?;

    let mut roff = Roff::new();
    if path.is_empty() || path == "copy" || path == "inspect" {
        roff.control("SH", ["TRANSPORTS"]);
        for (t, what) in help::TRANSPORTS {
            roff.control("TP", [])
                .text([roman(*t)])
                .text([roman(*what)]);
        }
    }
    let examples = help::examples(path);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (i, e) in examples.iter().enumerate() {
            if i > 0 {
                roff.control("PP", []);
            }
            roff.text([roman(format!("{}:", e.what))]);
            roff.control("IP", []);
            roff.control("EX", []);
            roff.text([roman(e.line)]);
            roff.control("EE", []);
        }
    }
    roff.control("SH", ["ENVIRONMENT"]);
    if path.is_empty() {
        for (var, what) in help::ENVIRONMENT {
            roff.control("TP", [])
                .text([roman(*var)])
                .text([roman(*what)]);
        }
    } else {
        roff.text([roman(
            "The options that take an environment variable name it above ([env: ...]); \
             strata(1) lists every variable strata reads.",
        )]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in help::EXIT_STATUS {
        roff.control("TP", [])
            .text([roman(*code)])
            .text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<String> = parent.map(str::to_owned).into_iter().collect();
    refs.extend(visible_subcommands(cmd).map(page_name));
    if path == "copy" || path == "inspect" {
        refs.push(format!("skopeo-{path}"));
    }
    for (i, r) in refs.iter().enumerate() {
        let sep = if i + 1 < refs.len() { "(1)," } else { "(1)" };
        roff.control("BR", [r.as_str(), sep]);
    }
    roff.control("PP", []);
    roff.text([roman(
        "The task pages in /usr/share/doc/strata/docs/ (docs/ in the source).",
    )]);
    w.write_all(roff.render().replace(&preamble, "").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_command_with_examples_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "strata.1");
        for want in [
            "strata-copy.1",
            "strata-layer-unpack.1",
            "strata-wclayer-extract.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(!names
            .iter()
            .any(|n| n.contains("help") || n.contains("manual")));
        let copy = std::fs::read_to_string(dir.path().join("strata-copy.1")).unwrap();
        assert!(copy.contains("\n.TH STRATA-COPY 1 "), "{copy}");
        for section in [
            "SYNOPSIS",
            "OPTIONS",
            "TRANSPORTS",
            "EXAMPLES",
            "EXIT STATUS",
        ] {
            assert!(
                copy.contains(&format!(".SH {section}\n"))
                    || copy.contains(&format!(".SH \"{section}\"\n")),
                "{section}: {copy}"
            );
        }
        assert!(copy.contains("oci:app\\-oci:latest"), "{copy}");
        let top = std::fs::read_to_string(dir.path().join("strata.1")).unwrap();
        assert!(top.contains("STRATA_REGISTRY_TIMEOUT"), "{top}");
    }
}
