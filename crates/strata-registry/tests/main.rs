//! The registry client's tests against real registries, in one test binary: each file
//! beside this one is a module of it (one link of the dependency tree, `common` compiled
//! once), except `credential_helper.rs`, a binary of its own because it changes `PATH`
//! for its whole process.
//!
//! `autotests = false` in Cargo.toml, so a file here that is not declared would not be
//! built at all: `every_test_file_is_a_module` fails for one.

mod common;

mod auth;
mod faults;
mod interop;
mod protocol;
mod roundtrip;
mod tls;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Test files that are binaries of their own (`[[test]]` in Cargo.toml), not modules.
const SEPARATE: &[&str] = &["credential_helper"];

#[test]
fn every_test_file_is_a_module() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = crate_dir.join("tests");
    let main = fs::read_to_string(dir.join("main.rs")).expect("read tests/main.rs");
    let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).expect("read Cargo.toml");
    let declared: BTreeSet<String> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(&dir).expect("read tests/") {
        let entry = entry.expect("read tests/");
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_module_dir = entry.path().join("mod.rs").is_file();
        if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") {
            files.insert(module.to_owned());
        } else if is_module_dir {
            files.insert(name);
        }
    }
    let undeclared: Vec<&str> = files
        .difference(&declared)
        .map(String::as_str)
        .filter(|m| {
            !(SEPARATE.contains(m) && manifest.contains(&format!("path = \"tests/{m}.rs\"")))
        })
        .collect();
    assert!(
        undeclared.is_empty(),
        "crates/strata-registry/tests/{{{}}}: neither modules of the test binary nor \
         [[test]] targets, so their tests never run: declare each (`mod NAME;`) in \
         tests/main.rs",
        undeclared.join(",")
    );
    assert!(
        files.contains("auth") && files.contains("common"),
        "{files:?}"
    );
}
