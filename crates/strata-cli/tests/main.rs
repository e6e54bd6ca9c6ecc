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

use std::path::Path;

#[test]
fn every_test_file_is_a_module() {
    let files = strata_testkit::test_binary::assert_every_test_file_is_a_module(Path::new(env!(
        "CARGO_MANIFEST_DIR"
    )));
    assert!(
        files.contains("edit") && files.contains("common"),
        "{files:?}"
    );
}
