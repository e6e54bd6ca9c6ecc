//! Hashing and decompressing through `sha256sum`, `gzip` and `zstd` (outside the test
//! process, so that an unoptimized test build does not spend its time hashing).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// `sha256:<hex>` of everything `r` yields, and the byte count (piped to `sha256sum`).
pub fn sha256_reader(mut r: impl Read) -> (String, u64) {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let n = io::copy(&mut r, &mut stdin).expect("feed sha256sum");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let text = String::from_utf8(out.stdout).expect("sha256sum output");
    let hex = text.split_whitespace().next().expect("a digest");
    assert_eq!(hex.len(), 64, "unexpected sha256sum output {text:?}");
    (format!("sha256:{hex}"), n)
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256_reader(f).0
}

/// The decompressing command for a layer file, chosen by magic (None: plain tar).
fn decompressor(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Some("gzip")
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Some("zstd")
    } else {
        None
    }
}

/// Runs `f` on a layer's uncompressed tar stream (gzip, zstd or plain by magic).
fn with_tar_stream<T>(path: &Path, f: impl FnOnce(&mut dyn Read) -> T) -> T {
    match decompressor(path) {
        None => f(&mut File::open(path).expect("open layer")),
        Some(tool) => {
            let mut child = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run {tool}: {e}"));
            let mut out = child.stdout.take().expect("piped stdout");
            let v = f(&mut out);
            drop(out);
            let st = child.wait().expect("wait for the decompressor");
            assert!(st.success(), "{tool} -dc {} failed", path.display());
            v
        }
    }
}

/// `sha256:<hex>` and size of a layer's uncompressed tar.
pub fn uncompressed_sha256(path: &Path) -> (String, u64) {
    with_tar_stream(path, |r| sha256_reader(r))
}

/// Writes a layer's uncompressed tar to `out`.
pub fn decompress_to(path: &Path, out: &Path) {
    let mut w = File::create(out).expect("create output");
    with_tar_stream(path, |r| io::copy(r, &mut w).expect("decompress"));
}
