//! The Windows layer tests, in one test binary: each file beside this one is a module of it (one
//! link of the dependency tree instead of one per file).
//!
//! `autotests = false` in Cargo.toml, so a file here that is not declared would not be
//! built at all: `every_test_file_is_a_module` fails for one.

mod fidelity;
mod hostile;
mod roundtrip;
mod vectors;

use std::path::Path;

#[test]
fn every_test_file_is_a_module() {
    let files = strata_testkit::test_binary::assert_every_test_file_is_a_module(Path::new(env!(
        "CARGO_MANIFEST_DIR"
    )));
    assert!(files.contains("fidelity"), "{files:?}");
}
