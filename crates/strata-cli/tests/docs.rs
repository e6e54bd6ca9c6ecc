//! The manual's examples run: every ```sh block of each page in docs/ and of README.md,
//! in order, in one bash (`set -euo pipefail`) per page, in a fresh temporary directory
//! with `strata` (this build) first on PATH and a temporary store (STRATA_ROOT), so the
//! pages cannot rot. ```text blocks are shown, not run (installing, long benchmarks).
//!
//! Each page starts with what the README assumes: `app.tar`, a docker-archive of the image
//! `example/app:1` (one layer: `etc/motd`), and `layer.tar.gz`, that layer, made by this
//! build in a store of their own. A page that names `localhost:5000` gets a docker-registry of its own on a loopback
//! port, substituted for it. Each page has its test here, and `every_page_has_a_test`
//! fails for a page without one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_registry_testkit::registry::Registry;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in <workspace>/crates/strata-cli")
        .to_path_buf()
}

/// The ```sh blocks of a markdown text, with the line each starts on; other fenced
/// blocks are skipped whole.
fn runnable_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim();
        if !t.starts_with("```") {
            continue;
        }
        let run = t == "```sh";
        let mut body = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim().starts_with("```") {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        assert!(closed, "the block at line {} is not closed", i + 1);
        if run {
            out.push((i + 1, body));
        }
    }
    out
}

/// `app.tar` and `layer.tar.gz` in the page's directory (a store of their own, removed).
const FIXTURES: &str = r#"set -euo pipefail
(
  fixtures=$(mktemp -d)
  mkdir -p "$fixtures/src/etc" && echo hello > "$fixtures/src/etc/motd"
  export STRATA_ROOT=$fixtures/store
  strata -q import-dir "$fixtures/src" example/app:1
  strata -q save example/app:1 -o app.tar
  strata -q layer pack "$fixtures/src" -o layer.tar.gz --compress gzip
  rm -rf "$fixtures"
)
"#;

/// Runs the page's blocks; panics with the script's output when one fails.
fn run_page(page: &str) {
    let path = workspace().join(page);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let blocks = runnable_blocks(&text);
    if blocks.is_empty() {
        return;
    }
    let _registry;
    let mut script = String::from(FIXTURES);
    for (line, body) in &blocks {
        script.push_str(&format!("echo '--- {page}:{line}' >&2\n{body}"));
    }
    if script.contains("localhost:5000") {
        let registry = Registry::start();
        script = script.replace("localhost:5000", &format!("127.0.0.1:{}", registry.port));
        _registry = Some(registry);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = Path::new(env!("CARGO_BIN_EXE_strata"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-xc")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_var)
        .env("STRATA_ROOT", dir.path().join("store"))
        .env("HOME", dir.path())
        .env_remove("STRATA_DRIVER")
        .env_remove("STRATA_TMPDIR")
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{page}: an example failed ({}):\n--- stdout\n{}\n--- stderr (last 60 lines)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every block ran (a stray `exit 0` would end the page early).
    let ran = stderr.lines().filter(|l| l.starts_with("--- ")).count();
    assert_eq!(ran, blocks.len(), "{page}: not every block ran:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{page} took {:?}: examples must stay quick",
        started.elapsed()
    );
}

/// The pages with a test below.
const PAGES: &[&str] = &[
    "README.md",
    "docs/README.md",
    "docs/install.md",
    "docs/convert-images.md",
    "docs/change-images.md",
    "docs/layer-files.md",
    "docs/store.md",
    "docs/windows-layers.md",
    "docs/registries.md",
    "docs/containerd.md",
    "docs/limits-and-security.md",
    "docs/benchmarks.md",
    "docs/design.md",
];

#[test]
fn every_page_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(workspace().join("docs"))
        .expect("docs/ exists")
        .map(|e| format!("docs/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".md"))
        .collect();
    found.push("README.md".into());
    found.sort();
    let mut listed: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "add a test (and a PAGES entry) for each page"
    );
    let with_examples = PAGES
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(workspace().join(p)).unwrap();
            !runnable_blocks(&text).is_empty()
        })
        .count();
    assert!(
        with_examples >= 6,
        "only {with_examples} pages have examples"
    );
}

#[test]
fn a_failing_example_fails_its_page() {
    let blocks = runnable_blocks("text\n```sh\nfalse\n```\n```text\nnot run\n```\n");
    assert_eq!(blocks, vec![(2, "false\n".to_owned())]);
}

#[test]
fn docs_readme() {
    run_page("README.md");
}

#[test]
fn docs_index() {
    run_page("docs/README.md");
}

#[test]
fn docs_install() {
    run_page("docs/install.md");
}

#[test]
fn docs_convert_images() {
    run_page("docs/convert-images.md");
}

#[test]
fn docs_change_images() {
    run_page("docs/change-images.md");
}

#[test]
fn docs_layer_files() {
    run_page("docs/layer-files.md");
}

#[test]
fn docs_store() {
    run_page("docs/store.md");
}

#[test]
fn docs_windows_layers() {
    run_page("docs/windows-layers.md");
}

#[test]
fn docs_registries() {
    run_page("docs/registries.md");
}

#[test]
fn docs_containerd() {
    run_page("docs/containerd.md");
}

#[test]
fn docs_limits_and_security() {
    run_page("docs/limits-and-security.md");
}

#[test]
fn docs_benchmarks() {
    run_page("docs/benchmarks.md");
}

#[test]
fn docs_design() {
    run_page("docs/design.md");
}
