//! `unpack` on arbitrary bytes (plain, gzip or zstd: detected by magic) into a fresh
//! directory inside the jail of `strata_fuzz`: it must never panic (errors are fine)
//! and never create, change or remove anything outside the directory; the jail checks
//! that after every input. Sandbox off on purpose (see the crate docs): the directory
//! writer's own in-root resolution is what is under test.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::unpack::{unpack, UnpackOptions};

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    strata_fuzz::run_jailed(move |cell| {
        let options = UnpackOptions {
            sandbox: cell.sandbox,
            ..Default::default()
        };
        let _ = unpack(&data[..], &cell.root, options);
    });
});
