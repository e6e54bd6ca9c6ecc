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

use std::path::Path;

#[test]
fn every_test_file_is_a_module() {
    let files = strata_testkit::test_binary::assert_every_test_file_is_a_module(Path::new(env!(
        "CARGO_MANIFEST_DIR"
    )));
    assert!(
        files.contains("auth") && files.contains("common"),
        "{files:?}"
    );
}
