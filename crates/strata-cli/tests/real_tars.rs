//! Every single-layer tar other tools made (`../shared/testdata/real/artifacts`) and every
//! Go `archive/tar` reader vector (`../shared/testdata/real/gotar`) goes through
//! `strata layer ls` and `strata layer unpack`, and is compared with what GNU tar does
//! with it (`tar -tvf`, `tar -xf`) and with what Go's reader does (Go's `reader_test.go`
//! says which vectors are errors; docker, containerd, skopeo and umoci read with Go).
//!
//! Accepted files list the same names, types and sizes as GNU tar and unpack to the same
//! tree. Refused files fail with a `strata: error:` naming the byte offset and the fault,
//! and leave nothing half-unpacked behind a clear error. Where the peers disagree with
//! each other, the case says whom Strata follows and why.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// What Strata must do with one file.
enum Expect {
    /// Accepted; lists and unpacks as GNU tar does.
    SameAsGnu,
    /// Accepted; GNU tar reads it differently, so the listing is Go's (name, type, size).
    SameAsGo(&'static [(&'static str, char, u64)]),
    /// Refused with an error holding this text; `gnu_ok` records whether GNU tar reads it.
    Refused { error: &'static str, gnu_ok: bool },
}

use Expect::*;

/// How an accepted file's unpacked tree is checked.
enum Tree {
    /// The same tree as `tar -xf` makes.
    Gnu,
    /// GNU tar cannot extract it: the files' sha256 as Go's reader yields their content.
    Go(&'static [(&'static str, &'static str)]),
    /// Not compared here (the 60 GB sparse files: see `sixty_gigabyte_sparse_vectors_unpack_sparse`).
    Elsewhere,
}

struct Case {
    file: &'static str,
    expect: Expect,
    tree: Tree,
}

const fn case(file: &'static str, expect: Expect) -> Case {
    Case {
        file,
        expect,
        tree: Tree::Gnu,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Layer tars made by other tools.
        case("artifacts/ggcr__content.tar", SameAsGnu),
        case("artifacts/ggcr__content.tar.zst", SameAsGnu),
        case("artifacts/jib__compressed.tar.gz", SameAsGnu),
        case("artifacts/jib__extract-missing-dirs.tar", SameAsGnu),
        case("artifacts/jib__extract.tar", SameAsGnu),
        case("artifacts/jib__not-compressed.tar", SameAsGnu),
        case("artifacts/jib__symlinks.tar", SameAsGnu),
        case("artifacts/jib__tarfile-only-file-packaged.tar", SameAsGnu),
        // `/some-dir/…`: confined, the leading `/` stripped (as docker and GNU tar do).
        case("artifacts/lifecycle__some-uncompressed-layer.tar", SameAsGnu),
        case("artifacts/lifecycle__some-windows-layer.tar", SameAsGnu),
        case("artifacts/moby__tarsum_46af0962ab5a_layer.tar", SameAsGnu),
        case("artifacts/moby__tarsum_511136ea3c5a_layer.tar", SameAsGnu),
        case("artifacts/moby__tarsum_xattr_layer.tar", SameAsGnu),
        case("artifacts/regclient__layer-wh.tar", SameAsGnu),
        case("artifacts/regclient__layer.tar", SameAsGnu),
        // Go's reader vectors, and tar-split's.
        case("gotar/asm-extranils.tar.gz", SameAsGnu),
        case("gotar/asm-fatlonglink.tar.gz", SameAsGnu),
        case("gotar/asm-iso-8859.tar.gz", SameAsGnu),
        case("gotar/asm-longlink.tar.gz", SameAsGnu),
        case("gotar/asm-notenoughnils.tar.gz", SameAsGnu),
        case("gotar/asm-t.tar.gz", SameAsGnu),
        case("gotar/file-and-dir.tar", SameAsGnu),
        // GNU dumpdir `D`: Go lists it, docker's apply refuses it ("unhandled tar header type").
        case(
            "gotar/gnu-incremental.tar",
            Refused {
                error: "bad tar header at byte 0: unsupported entry type 'D' for `test2`",
                gnu_ok: true,
            },
        ),
        case("gotar/gnu-long-nul.tar", SameAsGnu),
        // Two long-name headers for one entry: GNU, Go and bsdtar take the last, Python
        // the first. A name that depends on the reader is refused.
        case(
            "gotar/gnu-multi-hdrs.tar",
            Refused {
                error: "bad tar header at byte 1024: two GNU long-name headers for one entry",
                gnu_ok: true,
            },
        ),
        case("gotar/gnu-nil-sparse-data.tar", SameAsGnu),
        case("gotar/gnu-nil-sparse-hole.tar", SameAsGnu),
        case("gotar/gnu-not-utf8.tar", SameAsGnu),
        Case {
            file: "gotar/gnu-sparse-big.tar",
            expect: SameAsGnu,
            tree: Tree::Elsewhere,
        },
        case("gotar/gnu-utf8.tar", SameAsGnu),
        case("gotar/gnu.tar", SameAsGnu),
        case("gotar/hardlink.tar", SameAsGnu),
        // Header-only types with a size: Go and bsdtar read no data, GNU tar skips the
        // size and fails; a reader-dependent stream is refused.
        case(
            "gotar/hdr-only.tar",
            Refused {
                error: "bad tar header at byte 4608: entry type '5' cannot carry data, but its size is 5",
                gnu_ok: false,
            },
        ),
        case("gotar/invalid-go17.tar", SameAsGnu),
        case(
            "gotar/issue10968.tar",
            Refused {
                error: "bad tar header at byte 0: malformed size field",
                gnu_ok: false,
            },
        ),
        case(
            "gotar/issue11169.tar",
            Refused {
                error: "the layer is truncated: it ends at byte 602 inside padding",
                gnu_ok: false,
            },
        ),
        case(
            "gotar/issue12435.tar",
            Refused {
                error: "bad tar header at byte 0: malformed size field",
                gnu_ok: false,
            },
        ),
        case(
            "gotar/neg-size.tar",
            Refused {
                error: "bad tar header at byte 0: malformed size field",
                gnu_ok: false,
            },
        ),
        case("gotar/nil-uid.tar", SameAsGnu),
        case(
            "gotar/pax-bad-hdr-file.tar",
            Refused {
                error: "bad tar header at byte 0: PAX record does not end with a newline",
                gnu_ok: false,
            },
        ),
        // Go refuses it (ErrHeader); GNU tar ignores the bad record.
        case(
            "gotar/pax-bad-mtime-file.tar",
            Refused {
                error: "bad tar header at byte 1024: PAX record mtime=999xxx9324.432432444444 is not a time",
                gnu_ok: true,
            },
        ),
        // GNU tar applies global `path` records to the entries after them; Go (and so
        // docker) does not, and lists the global headers as entries of their own.
        case(
            "gotar/pax-global-records.tar",
            SameAsGo(&[
                ("file1", '-', 0),
                ("file2", '-', 0),
                ("file3", '-', 0),
                ("file4", '-', 0),
            ]),
        ),
        // Four PAX headers for one entry: GNU and Go take the last (`bar`), Python the
        // first, bsdtar complains: refused.
        case(
            "gotar/pax-multi-hdrs.tar",
            Refused {
                error: "bad tar header at byte 1024: two PAX extended headers for one entry",
                gnu_ok: true,
            },
        ),
        case("gotar/pax-nil-sparse-data.tar", SameAsGnu),
        case("gotar/pax-nil-sparse-hole.tar", SameAsGnu),
        // Go refuses a NUL in a PAX path; GNU tar cuts the name at it.
        case(
            "gotar/pax-nul-path.tar",
            Refused {
                error: "bad tar header at byte 0: PAX record path=0123456789",
                gnu_ok: true,
            },
        ),
        // Go, GNU tar and bsdtar all refuse a PAX key holding a NUL.
        case(
            "gotar/pax-nul-xattrs.tar",
            Refused {
                error: "bad tar header at byte 0: PAX record key `SCHILY.xattr.null\\x00` holds a NUL byte",
                gnu_ok: false,
            },
        ),
        // A PAX header and nothing after it (Go's writer test stops there): GNU and Go
        // see an empty archive, bsdtar a damaged one.
        case(
            "gotar/pax-path-hdr.tar",
            Refused {
                error: "it ends at byte 1024 inside an extension header with no entry after it",
                gnu_ok: true,
            },
        ),
        case("gotar/pax-pos-size-file.tar", SameAsGnu),
        case("gotar/pax-records.tar", SameAsGnu),
        Case {
            file: "gotar/pax-sparse-big.tar",
            expect: SameAsGnu,
            tree: Tree::Elsewhere,
        },
        case("gotar/pax.tar", SameAsGnu),
        // GNU tar 1.34 lists it but fails to extract it ("Unexpected EOF in archive").
        Case {
            file: "gotar/sparse-formats.tar",
            expect: SameAsGnu,
            tree: Tree::Go(&[
                ("sparse-gnu", SPARSE_200),
                ("sparse-posix-0.0", SPARSE_200),
                ("sparse-posix-0.1", SPARSE_200),
                ("sparse-posix-1.0", SPARSE_200),
                ("end", "48332fe667bc51ac4a51ba0efe734441c90def55c60a26d7db275ecbbcf42f15"),
            ]),
        },
        case("gotar/star.tar", SameAsGnu),
        case("gotar/trailing-slash.tar", SameAsGnu),
        case("gotar/ustar-file-devs.tar", SameAsGnu),
        case("gotar/ustar-file-reg.tar", SameAsGnu),
        case("gotar/ustar.tar", SameAsGnu),
        case("gotar/v7.tar", SameAsGnu),
        // Go's writer tests: a 16 GiB entry with only its header (Go: unexpected EOF).
        case(
            "gotar/writer-big-long.tar",
            Refused {
                error: "the layer is truncated: it ends at byte 1536 inside an entry's data",
                gnu_ok: false,
            },
        ),
        case(
            "gotar/writer-big.tar",
            Refused {
                error: "the layer is truncated: it ends at byte 512 inside an entry's data",
                gnu_ok: false,
            },
        ),
        case("gotar/writer.tar", SameAsGnu),
        case("gotar/xattrs.tar", SameAsGnu),
    ]
}

/// The 200-byte content of each sparse file of `sparse-formats.tar`, as Go reads it.
const SPARSE_200: &str = "ed7c086b492e5f08afd6f20f81d445bcc007c24c5f6aad6d30f9d7e5a9ae34d9";

fn real() -> PathBuf {
    shared().join("testdata/real")
}

/// One listed entry: raw name bytes (no `./`, no trailing or leading `/`), type letter
/// as `tar -tv` prints it, size.
type Listed = (Vec<u8>, char, u64);

fn normalize(mut name: Vec<u8>) -> Vec<u8> {
    while name.starts_with(b"./") {
        name.drain(..2);
    }
    while name.first() == Some(&b'/') {
        name.remove(0);
    }
    while name.len() > 1 && name.last() == Some(&b'/') {
        name.pop();
    }
    if name.is_empty() || name == b"." {
        return b".".to_vec();
    }
    name
}

/// Undoes GNU tar's `--quoting-style=escape` (octal `\ooo`, `\\`, `\n`, ...).
fn unescape_gnu(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = b[i + 1];
            if (b'0'..=b'7').contains(&c) && i + 3 < b.len() + 1 {
                let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
                out.push(u8::from_str_radix(oct, 8).unwrap());
                i += 4;
                continue;
            }
            out.push(match c {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                other => other,
            });
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Undoes Strata's name escaping in JSON (`\xHH` for bytes that are not UTF-8, `\\`).
fn unescape_strata(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap(), 16).unwrap(),
            );
            i += 4;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn gnu_tar(args: &[&str], file: &Path) -> Run {
    let mut cmd = Command::new("tar");
    cmd.env("LC_ALL", "C").args(args).arg("-f").arg(file);
    run_with_timeout(cmd, Duration::from_secs(120))
}

/// `tar --numeric-owner --quoting-style=escape -tvf`, parsed.
fn gnu_listing(file: &Path) -> Vec<Listed> {
    let run = gnu_tar(&["--numeric-owner", "--quoting-style=escape", "-tv"], file);
    run.assert_success();
    run.stdout_text()
        .lines()
        .map(|line| {
            // mode owner size date time name[ -> target | link to target]
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..5 {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let name = rest.strip_prefix(' ').unwrap_or(rest);
            let name = name
                .split_once(" -> ")
                .or_else(|| name.split_once(" link to "))
                .map_or(name, |(n, _)| n);
            let letter = fields[0].chars().next().unwrap();
            let size = fields[2].parse().unwrap_or(0); // devices print `major,minor`
            (normalize(unescape_gnu(name)), letter, size)
        })
        .collect()
}

/// `strata --json layer ls`, with whiteouts and opaque markers written back as the
/// `.wh.` files a plain tar lister shows.
fn strata_listing(file: &Path) -> Vec<Listed> {
    let v = strata_json(
        ["layer", "ls"]
            .iter()
            .copied()
            .chain([file.to_str().unwrap()]),
    );
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| {
            let path = unescape_strata(jstr(e, "path"));
            let size = ju64(e, "size");
            let with = |base: &[u8]| {
                let mut p = match path.iter().rposition(|&c| c == b'/') {
                    Some(i) => path[..=i].to_vec(),
                    None => Vec::new(),
                };
                p.extend_from_slice(base);
                p
            };
            let (name, letter) = match jstr(e, "type") {
                "file" => (path.clone(), '-'),
                "dir" => (path.clone(), 'd'),
                "symlink" => (path.clone(), 'l'),
                "hardlink" => (path.clone(), 'h'),
                "char" => (path.clone(), 'c'),
                "block" => (path.clone(), 'b'),
                "fifo" => (path.clone(), 'p'),
                "whiteout" => {
                    let base = path.rsplit(|&c| c == b'/').next().unwrap().to_vec();
                    (with(&[b".wh.", &base[..]].concat()), '-')
                }
                "opaque" => {
                    let mut p = if path == b"." {
                        Vec::new()
                    } else {
                        path.clone()
                    };
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(b".wh..wh..opq");
                    (p, '-')
                }
                other => panic!("unknown entry type {other}"),
            };
            (normalize(name), letter, size)
        })
        .collect()
}

fn show(l: &[Listed]) -> String {
    l.iter()
        .map(|(n, t, s)| format!("{t} {s:>12} {}\n", n.escape_ascii()))
        .collect()
}

/// Unpacks with both and compares the trees; whiteout files GNU tar writes are left out
/// (Strata applies them as deletions, and nothing lies below them here). Directory times
/// are compared with the tar instead: Strata sets every listed directory's time once all
/// entries are in, as docker does, where GNU tar leaves some at the time of extraction
/// (a directory listed before its parent, a read-only one).
fn compare_unpacked(file: &Path, what: &str) -> Result<(), String> {
    let tmp = tempdir();
    let (ours, gnus) = (tmp.path().join("strata"), tmp.path().join("gnu"));
    unpack(file, &ours, &[]);
    std::fs::create_dir(&gnus).unwrap();
    let mut cmd = Command::new("tar");
    cmd.env("LC_ALL", "C")
        .args(["--numeric-owner", "--same-permissions", "-x", "-f"])
        .arg(file)
        .arg("-C")
        .arg(&gnus);
    run_with_timeout(cmd, Duration::from_secs(120)).assert_success();
    let no_wh = |l: &str| {
        filter_paths(l, |p| {
            !p.rsplit('/').next().unwrap_or(p).starts_with(".wh.")
        })
    };
    let flags = ["--no-xattrs", "--no-dir-mtime"];
    let expected = no_wh(&tree_listing(&gnus, &flags));
    let actual = tree_listing(&ours, &flags);
    std::panic::catch_unwind(|| assert_listing_eq(&expected, &actual, what)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| format!("{what}: unpacked trees differ"))
    })?;
    let listed = strata_json(["layer", "ls", file.to_str().unwrap()]);
    for e in listed.as_array().unwrap() {
        let path = jstr(e, "path");
        if jstr(e, "type") != "dir" || path == "." {
            continue;
        }
        let (secs, nanos) = jstr(e, "mtime").split_once('.').unwrap();
        let want = (secs.parse::<i64>().unwrap(), nanos.parse::<i64>().unwrap());
        let got = mtime(&ours.join(path));
        if got != want {
            return Err(format!(
                "{what}: directory {path} has mtime {got:?}, the tar says {want:?}"
            ));
        }
    }
    Ok(())
}

fn check(c: &Case) -> Result<(), String> {
    let file = real().join(c.file);
    assert!(file.is_file(), "{} is missing", file.display());
    match &c.expect {
        Refused { error, gnu_ok } => {
            let ls = strata(["layer", "ls", file.to_str().unwrap()]);
            ls.assert_strata_error();
            let tmp = tempdir();
            let dir = tmp.path().join("out");
            let up = try_unpack(&file, &dir, &[]);
            up.assert_strata_error();
            for (what, run) in [("ls", &ls), ("unpack", &up)] {
                if !run.stderr.contains(error) {
                    return Err(format!(
                        "{}: `strata layer {what}` error lacks {error:?}:\n{}",
                        c.file, run.stderr
                    ));
                }
            }
            let gnu = gnu_tar(&["-tv"], &file);
            if gnu.success() != *gnu_ok {
                return Err(format!(
                    "{}: GNU tar {} it, the table says otherwise",
                    c.file,
                    if gnu.success() { "reads" } else { "refuses" }
                ));
            }
        }
        SameAsGnu | SameAsGo(_) => {
            let ours = strata_listing(&file);
            let theirs = match &c.expect {
                SameAsGo(go) => go
                    .iter()
                    .map(|(n, t, s)| (n.as_bytes().to_vec(), *t, *s))
                    .collect(),
                _ => gnu_listing(&file),
            };
            if ours != theirs {
                return Err(format!(
                    "{}: listings differ\nstrata:\n{}peer:\n{}",
                    c.file,
                    show(&ours),
                    show(&theirs)
                ));
            }
            match (&c.tree, &c.expect) {
                (Tree::Gnu, SameAsGnu) => compare_unpacked(&file, c.file)?,
                (Tree::Go(files), _) => {
                    let tmp = tempdir();
                    let out = tmp.path().join("out");
                    unpack(&file, &out, &[]);
                    for (name, sha) in *files {
                        let got = sha256_file(&out.join(name));
                        if got != *sha && got != format!("sha256:{sha}") {
                            return Err(format!(
                                "{}: {name} unpacked as {got}, Go reads {sha}",
                                c.file
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[test]
fn every_real_layer_tar_lists_and_unpacks_like_gnu_tar_and_go_or_is_refused_clearly() {
    let failures: Vec<String> = cases().iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} files disagree:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

#[test]
fn every_layer_tar_and_go_vector_in_the_real_folder_has_a_case() {
    let listed: std::collections::BTreeSet<String> =
        cases().iter().map(|c| c.file.to_owned()).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(real().join("gotar")).unwrap() {
        let name = format!("gotar/{}", entry.unwrap().file_name().to_string_lossy());
        if !listed.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "vectors without a case: {missing:?}");
}

/// The 60 GB sparse vectors unpack as sparse files of their logical size, the data
/// where the map puts it.
#[test]
fn sixty_gigabyte_sparse_vectors_unpack_sparse() {
    for (file, name) in [
        ("gotar/gnu-sparse-big.tar", "gnu-sparse"),
        ("gotar/pax-sparse-big.tar", "pax-sparse"),
    ] {
        let tmp = tempdir();
        let out = tmp.path().join("out");
        unpack(&real().join(file), &out, &[]);
        let md = lstat(&out.join(name));
        assert_eq!(md.len(), 60_000_000_000, "{file}");
        use std::os::unix::fs::MetadataExt;
        assert!(
            md.blocks() * 512 < 1 << 20,
            "{file}: {} blocks allocated",
            md.blocks()
        );
        let mut f = std::fs::File::open(out.join(name)).unwrap();
        use std::io::{Read, Seek, SeekFrom};
        let mut tail = [0u8; 10];
        f.seek(SeekFrom::Start(60_000_000_000 - 10)).unwrap();
        f.read_exact(&mut tail).unwrap();
        assert_eq!(&tail, b"0123456789", "{file}: the last extent's data");
    }
}
