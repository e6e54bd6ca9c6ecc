//! `strata wclayer`: from-rootfs output read by independent readers (Python's tarfile,
//! GNU tar, bsdtar), and import / export / inspect / extract end to end.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{strata, strata_json, tempdir, StrataError};

/// A small Linux tree as a tar, made with GNU tar: files, a directory without its own
/// entry before its child, a symlink and a hard link.
fn linux_tar(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("app/bin")).unwrap();
    std::fs::write(src.join("app/bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(src.join("app/README"), "readme\n").unwrap();
    std::fs::hard_link(src.join("app/README"), src.join("app/README.link")).unwrap();
    std::os::unix::fs::symlink("bin/run.sh", src.join("app/run")).unwrap();
    let tar = dir.join("linux.tar");
    let st = Command::new("tar")
        .args(["-C"])
        .arg(&src)
        .args(["-cf"])
        .arg(&tar)
        .args([
            "--format=gnu",
            "--mtime=@1577836800",
            "app/bin/run.sh",
            "app/README",
            "app/README.link",
            "app/run",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    tar
}

const PY_CHECK: &str = r##"
import base64, struct, sys, tarfile
t = tarfile.open(sys.argv[1])
seen = {}
for m in t.getmembers():
    h = m.pax_headers
    seen[m.name] = m
    assert "MSWINDOWS.fileattr" in h, m.name
    attr = int(h["MSWINDOWS.fileattr"])
    assert float(h["LIBARCHIVE.creationtime"]) == m.mtime, (m.name, h)
    if m.name in ("Files", "Hives"):
        assert attr == 16 and "MSWINDOWS.rawsd" not in h
        continue
    if m.islnk():
        assert m.linkname == "Files/app/README" and "MSWINDOWS.rawsd" not in h
        continue
    sd = base64.b64decode(h["MSWINDOWS.rawsd"])
    rev, _, control, owner, group, sacl, dacl = struct.unpack_from("<BBHIIII", sd)
    assert rev == 1 and control & 0x8000 and control & 0x4, control
    def sid(off):
        r, n = sd[off], sd[off + 1]
        auth = int.from_bytes(sd[off + 2:off + 8], "big")
        subs = struct.unpack_from("<%dI" % n, sd, off + 8)
        return "S-%d-%d" % (r, auth) + "".join("-%d" % s for s in subs)
    assert sid(owner) == "S-1-5-32-544" and sid(group) == "S-1-5-18", (sid(owner), sid(group))
    acl_rev, _, acl_size, aces = struct.unpack_from("<BBHH", sd, dacl)
    assert dacl + acl_size == len(sd), (dacl, acl_size, len(sd))
    if m.isdir():
        assert attr == 16 and len(sd) == 216 and aces == 7
    elif m.issym():
        assert attr == 1056 and m.linkname == "bin/run.sh"
    else:
        assert attr == 32 and len(sd) == 124 and aces == 3
order = list(seen)
assert order[:2] == ["Files", "Hives"], order
assert order.index("Files/app") < order.index("Files/app/bin") < order.index("Files/app/bin/run.sh"), order
assert t.extractfile("Files/app/bin/run.sh").read() == b"#!/bin/sh\necho hi\n"
print("ok", len(order))
"##;

#[test]
fn from_rootfs_output_is_read_by_python_gnu_tar_and_bsdtar() {
    let tmp = tempdir();
    let linux = linux_tar(tmp.path());
    let win = tmp.path().join("win.tar");
    strata([
        "wclayer".as_ref(),
        "from-rootfs".as_ref(),
        "-i".as_ref(),
        linux.as_os_str(),
        "-o".as_ref(),
        win.as_os_str(),
    ])
    .assert_success();

    let py = Command::new("python3")
        .arg("-c")
        .arg(PY_CHECK)
        .arg(&win)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "python tarfile: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "ok 8");

    // GNU tar lists it; its only remarks are the Windows PAX keys it does not know,
    // which `--warning=no-unknown-keyword` (what Windows tooling docs suggest) silences.
    let gnu = Command::new("tar").arg("-tvf").arg(&win).output().unwrap();
    assert!(gnu.status.success());
    let stderr = String::from_utf8_lossy(&gnu.stderr);
    for line in stderr.lines() {
        assert!(
            line.contains("Ignoring unknown extended header keyword")
                && (line.contains("'MSWINDOWS.") || line.contains("'LIBARCHIVE.creationtime'")),
            "GNU tar: {line}"
        );
    }
    let gnu = Command::new("tar")
        .args(["--warning=no-unknown-keyword", "-tvf"])
        .arg(&win)
        .output()
        .unwrap();
    assert!(
        gnu.status.success() && gnu.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&gnu.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&gnu.stdout).lines().count(), 8);
    let bsd = Command::new("bsdtar")
        .arg("-tvf")
        .arg(&win)
        .output()
        .unwrap();
    assert!(
        bsd.status.success() && bsd.stderr.is_empty(),
        "bsdtar: {}",
        String::from_utf8_lossy(&bsd.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&bsd.stdout).lines().count(), 8);
}

#[test]
fn import_export_inspect_extract_end_to_end() {
    let tmp = tempdir();
    let t = tmp.path();
    let s = |args: &[&str]| strata(args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    let p = |x: &str| t.join(x).to_string_lossy().into_owned();
    // An empty base (Files only), then the converted layer on it.
    std::fs::write(t.join("empty.tar"), [0u8; 1024]).unwrap();
    s(&[
        "wclayer",
        "from-rootfs",
        "-i",
        &p("empty.tar"),
        "-o",
        &p("base.tar"),
    ])
    .assert_success();
    s(&["wclayer", "import", "-i", &p("base.tar"), &p("base")]).assert_success();
    let linux = linux_tar(t);
    s(&[
        "wclayer",
        "from-rootfs",
        "-i",
        &linux.to_string_lossy(),
        "-o",
        &p("win.tar"),
        "--sd",
        "ko",
    ])
    .assert_success();
    let v = strata_json([
        "wclayer",
        "import",
        "-i",
        &p("win.tar"),
        &p("l1"),
        "--parent",
        &p("base"),
    ]);
    assert_eq!(v["size"], 25); // run.sh + README, the link counts nothing
    assert_eq!(v["links"], 1);
    s(&[
        "wclayer",
        "export",
        &p("l1"),
        "-o",
        &p("out1.tar"),
        "--parent",
        &p("base"),
    ])
    .assert_success();
    s(&[
        "wclayer",
        "import",
        "-i",
        &p("out1.tar"),
        &p("l2"),
        "--parent",
        &p("base"),
    ])
    .assert_success();
    s(&[
        "wclayer",
        "export",
        &p("l2"),
        "-o",
        &p("out2.tar"),
        "--parent",
        &p("base"),
    ])
    .assert_success();
    assert_eq!(
        std::fs::read(t.join("out1.tar")).unwrap(),
        std::fs::read(t.join("out2.tar")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(t.join("l1/layerchain.json")).unwrap(),
        format!(
            "[\"{}\"]",
            std::fs::canonicalize(t.join("base")).unwrap().display()
        )
    );

    // Inspect, text and JSON, tar and folder.
    let text = s(&["wclayer", "inspect", &p("out1.tar")]);
    text.assert_success();
    let out = text.stdout_text();
    assert!(
        out.contains("sd O:BUG:BU") && out.contains("h ARCHIVE") && out.contains("-> bin\\run.sh"),
        "{out}"
    );
    let v = strata_json(["wclayer", "inspect", &p("l1"), "--parent", &p("base")]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Files",
            "Files\\app",
            "Files\\app\\README",
            "Files\\app\\README.link",
            "Files\\app\\bin",
            "Files\\app\\bin\\run.sh",
            "Files\\app\\run",
            "Hives"
        ]
    );
    assert_eq!(v[2]["attribute_names"], "ARCHIVE");
    assert_eq!(v[6]["kind"], "symlink");

    // Extract: the merged Linux view.
    s(&["wclayer", "extract", &p("l1"), &p("base"), &p("view")]).assert_success();
    assert_eq!(
        std::fs::read_to_string(t.join("view/app/bin/run.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read_link(t.join("view/app/run")).unwrap(),
        Path::new("bin/run.sh")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(t.join("view/app/README.link"))
            .unwrap()
            .ino(),
        std::fs::metadata(t.join("view/app/README")).unwrap().ino()
    );

    // Bad input: a clear error, a non-zero exit, nothing left behind.
    std::fs::write(t.join("bad.tar"), b"not a tar at all").unwrap();
    let r = s(&[
        "wclayer",
        "import",
        "-i",
        &p("bad.tar"),
        &p("l3"),
        "--parent",
        &p("base"),
    ]);
    r.assert_strata_error();
    assert!(!t.join("l3").exists());
}

/// Issue 10 item 14: `export --help` says what is true: the export is in the folder's
/// walk order, so a tar in another order (bsdtar's, here) comes back reordered, not as
/// the same bytes, while an export imported again comes back byte for byte.
#[test]
fn export_help_says_the_order_and_when_the_bytes_come_back() {
    let help = strata(["wclayer", "export", "--help"]);
    help.assert_success();
    let text = help
        .stdout_text()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !text.contains("(byte-identical to the tar imported)"),
        "the help still promises byte identity for every tar:\n{text}"
    );
    assert!(
        text.contains("siblings sorted by name")
            && text.contains("comes back byte-identical")
            && text.contains("not as the same bytes"),
        "{text}"
    );

    let tmp = tempdir();
    let t = tmp.path();
    let p = |x: &str| t.join(x).to_string_lossy().into_owned();
    let original =
        common::shared().join("testdata/real/artifacts/lifecycle__some-windows-layer.tar");
    let names = |tar: &str| -> Vec<String> {
        strata_json(["layer", "ls", tar])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| common::jstr(e, "path").to_owned())
            .collect()
    };
    strata([
        "wclayer",
        "import",
        "-i",
        &original.to_string_lossy(),
        &p("a"),
    ])
    .assert_success();
    strata(["wclayer", "export", &p("a"), "-o", &p("a.tar")]).assert_success();
    let (mut before, after) = (names(&original.to_string_lossy()), names(&p("a.tar")));
    assert_ne!(before, after, "bsdtar's order is not the walk order");
    let mut sorted = after.clone();
    sorted.sort();
    assert_eq!(sorted, after, "the export is not in walk order");
    before.sort();
    assert_eq!(before, after, "the export lost or added entries");
    strata(["wclayer", "import", "-i", &p("a.tar"), &p("b")]).assert_success();
    strata(["wclayer", "export", &p("b"), "-o", &p("b.tar")]).assert_success();
    assert!(
        std::fs::read(p("a.tar")).unwrap() == std::fs::read(p("b.tar")).unwrap(),
        "a tar in walk order did not come back byte-identical"
    );
}
