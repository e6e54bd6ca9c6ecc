//! The `strata` binary's end-to-end tests, in one test binary: each file beside this one
//! is a module of it. One binary links the dependency tree and compiles `common` once,
//! where a binary per file did both ~22 times (most of CI's test build).
//!
//! `autotests = false` in Cargo.toml, so a file here that is not declared below would not
//! be built at all: `every_test_file_is_a_module` fails for one.
//! Run one file's tests: `cargo test -p strata-cli --test cli edit::` or
//! `cargo nextest run -p strata-cli -E 'test(/^edit::/)'`.

mod common;

mod docs;
mod edge;
mod edit;
mod engines;
mod evil;
mod hostile_registry;
mod image_bad;
mod image_copy;
mod layout_hostile;
mod manual;
mod peers;
mod real_tars;
mod real_world;
mod registry;
mod registry_store;
mod roundtrip;
mod snapshotter;
mod store;
mod store_crash;
mod store_hostile;
mod store_images;
mod store_init;
mod umoci_agreement;
mod wclayer;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

#[test]
fn every_test_file_is_a_module() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = fs::read_to_string(dir.join("main.rs")).expect("read tests/main.rs");
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
    let undeclared: Vec<_> = files.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "crates/strata-cli/tests/{{{}}}: not modules of the test binary, so their tests \
         never run: declare each (`mod NAME;`) in tests/main.rs",
        undeclared
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(
        files.contains("edit") && files.contains("common"),
        "{files:?}"
    );
}
