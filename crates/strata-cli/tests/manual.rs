//! What a user learns strata from, through the binary: `--version`, an example in
//! `--help`, man pages that mandoc passes, completions bash loads, and a hint under an
//! error a user can fix.

use std::process::{Command, Output};

fn strata(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("strata runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_names_the_version_and_a_commit() {
    let out = strata(&["--version"], &[]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    let rest = v
        .strip_prefix(&format!("strata {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v}"));
    let commit = rest.trim_end().trim_end_matches(')');
    // In a git checkout (as the tests always are) the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    if head.status.success() {
        assert_eq!(commit, text(&head.stdout).trim(), "{v}");
    } else {
        assert_eq!(commit, "unknown", "{v}");
    }
}

#[test]
fn every_help_shows_one_example() {
    for args in [
        &["copy", "--help"][..],
        &["layer", "unpack", "--help"],
        &["wclayer", "extract", "-h"],
        &["--help"],
    ] {
        let out = strata(args, &[]);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        assert_eq!(help.matches("\nExample: ").count(), 1, "{args:?}:\n{help}");
        let example = help
            .split("\nExample: ")
            .nth(1)
            .and_then(|s| s.lines().nth(1))
            .unwrap_or_default();
        assert!(example.starts_with("  strata "), "{args:?}:\n{help}");
    }
}

#[test]
fn man_pages_lint_clean_with_mandoc() {
    let dir = tempfile::tempdir().unwrap();
    let out = strata(&["manual", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pages: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert!(pages.len() >= 30, "{pages:?}");
    let lint = Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(&pages)
        .output()
        .expect("mandoc is installed (scripts/test.sh installs it)");
    assert!(
        lint.stdout.is_empty() && lint.stderr.is_empty(),
        "{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );
    let copy = std::fs::read_to_string(dir.path().join("strata-copy.1")).unwrap();
    assert!(copy.contains(".SH EXAMPLES"), "{copy}");
    assert!(copy.contains(".SH TRANSPORTS"), "{copy}");
}

#[test]
fn bash_completion_completes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("strata.bash");
    let out = strata(&["completion", "bash"], &[]);
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let got = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(strata layer u); COMP_CWORD=2; COMP_LINE='strata layer u'; \
             COMP_POINT=${{#COMP_LINE}}; _strata strata u layer; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let words = text(&got.stdout);
    let mut words: Vec<&str> = words.split_whitespace().collect();
    words.sort();
    assert_eq!(words, ["umount", "unpack"], "{}", text(&got.stderr));
}

#[test]
fn an_error_a_user_can_fix_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = strata(
        &["layer", "mount", "nosuch"],
        &[("STRATA_ROOT", &dir.path().join("store"))],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "strata: error: cannot mount layer nosuch: no layer `nosuch` in the store\n\
         strata: hint: `strata layer ls --all` lists the store's layers\n"
    );
}
