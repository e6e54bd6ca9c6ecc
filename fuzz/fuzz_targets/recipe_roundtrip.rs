//! Whenever `unpack --recipe` accepts a layer, `rebuild` from the recipe and the tree
//! must give back the layer's tar bytes exactly (the input itself when uncompressed,
//! else its decompressed stream), with the diffID unpack reported; unpacks run in the
//! jail of `strata_fuzz`, so escapes are caught here too.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};
use strata_layer::compress::{Compression, Decompressor};
use strata_layer::recipe::rebuild;
use strata_layer::unpack::{unpack, UnpackOptions};

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    strata_fuzz::run_jailed(move |cell| {
        let recipe = cell.scratch.join("layer.recipe");
        let options = UnpackOptions {
            sandbox: cell.sandbox,
            recipe: Some(recipe.clone()),
            ..Default::default()
        };
        let Ok(summary) = unpack(&data[..], &cell.root, options) else {
            assert!(!recipe.exists(), "a failed unpack left its recipe behind");
            return;
        };
        let mut out = Vec::new();
        let rebuilt = rebuild(&recipe, &cell.root, &mut out)
            .unwrap_or_else(|e| panic!("unpack accepted the layer but rebuild failed: {e}"));
        std::fs::remove_file(&recipe).expect("removing the recipe");
        assert_eq!(
            rebuilt.diff_id, summary.diff_id,
            "rebuild reports another diffID"
        );
        assert_eq!(
            rebuilt.bytes, summary.tar_bytes,
            "rebuild reports another size"
        );
        assert_eq!(
            out.len() as u64,
            summary.tar_bytes,
            "rebuild wrote another size"
        );
        assert_eq!(
            Sha256::digest(&out).as_slice(),
            &summary.diff_id.0[..],
            "rebuilt bytes do not hash to the diffID"
        );
        let expected = if summary.compression == Compression::None {
            data
        } else {
            let mut plain = Vec::new();
            Decompressor::new(&data[..])
                .and_then(|mut d| d.read_to_end(&mut plain))
                .expect("unpack decompressed this layer, so must a second reader");
            plain
        };
        assert!(
            out == expected,
            "rebuilt tar differs from the layer ({} vs {} bytes)",
            out.len(),
            expected.len()
        );
    });
});
