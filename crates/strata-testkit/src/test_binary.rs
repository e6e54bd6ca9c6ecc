//! One test binary per crate: the files of `tests/` as modules of `tests/main.rs`.
//!
//! A crate with `autotests = false` and one `[[test]]` builds only the files its
//! `tests/main.rs` declares (`mod NAME;`); a file added beside them and not declared would
//! never be built or run. [`assert_every_test_file_is_a_module`] fails for such a file.
//!
//! ```no_run
//! // In tests/main.rs:
//! #[test]
//! fn every_test_file_is_a_module() {
//!     strata_testkit::test_binary::assert_every_test_file_is_a_module(
//!         std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
//!     );
//! }
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Panics, naming them, if `crate_dir/tests` holds a `.rs` file or a module folder (with a
/// `mod.rs`) that `tests/main.rs` does not declare and `Cargo.toml` does not build as a
/// `[[test]]` of its own (`path = "tests/NAME.rs"`). Returns the modules found.
pub fn assert_every_test_file_is_a_module(crate_dir: &Path) -> BTreeSet<String> {
    let dir = crate_dir.join("tests");
    let main = fs::read_to_string(dir.join("main.rs")).expect("read tests/main.rs");
    let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).expect("read Cargo.toml");
    let declared: BTreeSet<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(&dir).expect("read tests/") {
        let entry = entry.expect("read tests/");
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "main") {
            files.insert(module.to_owned());
        } else if entry.path().join("mod.rs").is_file() {
            files.insert(name);
        }
    }
    let undeclared: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|m| {
            !declared.contains(m) && !manifest.contains(&format!("path = \"tests/{m}.rs\""))
        })
        .collect();
    assert!(
        undeclared.is_empty(),
        "{}/tests/{{{}}}: neither modules of the test binary nor [[test]] targets, so \
         their tests never run: declare each (`mod NAME;`) in tests/main.rs",
        crate_dir.display(),
        undeclared.join(",")
    );
    files
}
