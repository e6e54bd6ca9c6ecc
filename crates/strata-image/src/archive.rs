//! Reading tar archives of images (docker-archive, oci-archive) without unpacking them.
//!
//! A seekable, uncompressed archive is *indexed*: [`TarReader`] reads the headers only,
//! seeking past every body, and remembers where each member's data lies; members are
//! then read in place, by offset, as streams. Anything else (a pipe, standard input, a
//! gzip- or zstd-compressed archive) is first spooled, decompressed, to a file in the
//! staging directory, then indexed the same way: every writer puts `manifest.json` and
//! `index.json` after the blobs, so a single pass could not know what it reads.
//!
//! Names inside the archive resolve like Docker's follow-symlinks-in-scope, but
//! stricter: symlinks and hard links are followed inside the archive only, at most
//! [`MAX_HOPS`] of them, and a target that is absolute or climbs above the archive's
//! root is an error.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use strata_layer::compress::{Compression, Decompressor};
use strata_layer::mapped::{MappedFile, RangeReader};
use strata_layer::tar::TarReader;
use strata_layer::{EntryKind, LayerPath, LayerReader};

use crate::config::MAX_JSON;
use crate::stream::pump;
use crate::Error;

/// Most symlinks (or hard links) followed to resolve one name.
pub const MAX_HOPS: usize = 8;

#[derive(Clone, Debug)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    Symlink(Vec<u8>),
    HardLink(LayerPath),
    /// Directories, devices and the like: present, but not readable as a blob.
    Other(char),
}

/// An indexed archive; see the module documentation.
pub struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<LayerPath, Member>,
    /// The spooled copy, removed when the archive is dropped.
    _spool: Option<tempfile::TempPath>,
}

/// A located member's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

impl Archive {
    /// Opens and indexes the archive at `path`, spooling it to `staging` when it is not a
    /// seekable uncompressed file.
    pub fn open(path: &Path, staging: &Path) -> Result<Archive, Error> {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let head = input
            .fill_buf()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        refuse_unsupported_compression(path, head)?;
        let compressed = Compression::detect(head) != Compression::None;
        if meta.is_file() && !compressed {
            let file = input.into_inner();
            return Archive::index(path, file, None);
        }
        let spool = tempfile::Builder::new()
            .prefix(".strata-archive-")
            .tempfile_in(staging)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a spool file in {}", staging.display()),
                    e,
                )
            })?;
        let (mut spool_file, spool_path) = spool.into_parts();
        let mut source = Decompressor::new(input)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        pump(&mut source, &mut spool_file).map_err(|e| {
            Error::io(
                format!("cannot spool {} to {}", path.display(), staging.display()),
                e,
            )
        })?;
        Archive::index(path, spool_file, Some(spool_path))
    }

    fn index(
        path: &Path,
        mut file: File,
        spool: Option<tempfile::TempPath>,
    ) -> Result<Archive, Error> {
        use std::io::Seek;
        file.rewind()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
            .len();
        let mut reader = TarReader::new(
            file.try_clone()
                .map_err(|e| Error::io(format!("cannot reopen {}", path.display()), e))?,
        );
        let mut members = HashMap::new();
        let bad = |e: strata_layer::Error| Error::BadArchive {
            archive: path.to_owned(),
            what: format!("it is not a readable tar: {e}"),
        };
        while let Some(entry) = reader.next_entry().map_err(bad)? {
            let member = match entry.kind {
                EntryKind::File { size, sparse: None } => {
                    let offset = reader.offset();
                    if offset + size > len {
                        return Err(Error::Truncated {
                            archive: path.to_owned(),
                            member: entry.path.to_string(),
                            needed: offset + size,
                            have: len,
                        });
                    }
                    Member::File { offset, size }
                }
                EntryKind::Symlink { target } => Member::Symlink(target),
                EntryKind::HardLink { target } => Member::HardLink(target),
                ref other => Member::Other(other.letter()),
            };
            reader.skip_data().map_err(bad)?;
            // A later member of the same name replaces an earlier one, as extraction would.
            members.insert(entry.path, member);
        }
        Ok(Archive {
            path: path.to_owned(),
            file,
            members,
            _spool: spool,
        })
    }

    /// The archive's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a member of this name exists (without following links).
    pub fn has(&self, name: &str) -> bool {
        LayerPath::from_tar_name(name.as_bytes()).is_ok_and(|p| self.members.contains_key(&p))
    }

    /// Finds the data of `name`, following links inside the archive. `None` if no member
    /// of that name exists.
    pub fn locate(&self, name: &str) -> Result<Option<Span>, Error> {
        let mut path =
            LayerPath::from_tar_name(name.as_bytes()).map_err(|e| Error::BadArchive {
                archive: self.path.clone(),
                what: format!(
                    "it refers to `{name}`, which is not a name inside the archive ({e})"
                ),
            })?;
        for _ in 0..=MAX_HOPS {
            match self.members.get(&path) {
                Some(Member::File { offset, size }) => {
                    return Ok(Some(Span {
                        offset: *offset,
                        size: *size,
                    }))
                }
                Some(Member::Symlink(target)) => {
                    path = self.follow(&path, &path.parent().unwrap_or_default(), target, &[])?;
                }
                Some(Member::HardLink(target)) => path = target.clone(),
                Some(Member::Other(kind)) => {
                    return Err(Error::BadArchive {
                        archive: self.path.clone(),
                        what: format!("`{path}` is not a regular file (type '{kind}')"),
                    })
                }
                None => match self.symlinked_prefix(&path) {
                    Some((link, target, rest)) => {
                        path =
                            self.follow(&link, &link.parent().unwrap_or_default(), &target, &rest)?;
                    }
                    None => return Ok(None),
                },
            }
        }
        Err(Error::SymlinkEscape {
            archive: self.path.clone(),
            member: name.to_string(),
            target: path.to_string(),
            reason: "takes more than 8 links to resolve",
        })
    }

    /// The first proper prefix of `path` that is a symlink member, with the rest.
    fn symlinked_prefix(&self, path: &LayerPath) -> Option<(LayerPath, Vec<u8>, Vec<Vec<u8>>)> {
        let parts: Vec<&[u8]> = path.components().collect();
        for i in 1..parts.len() {
            let prefix = LayerPath::from_tar_name(&parts[..i].join(&b'/')).ok()?;
            if let Some(Member::Symlink(t)) = self.members.get(&prefix) {
                let rest = parts[i..].iter().map(|p| p.to_vec()).collect();
                return Some((prefix, t.clone(), rest));
            }
        }
        None
    }

    /// Resolves `target` (of the link `link`, in directory `dir`) lexically, then `rest`.
    fn follow(
        &self,
        link: &LayerPath,
        dir: &LayerPath,
        target: &[u8],
        rest: &[Vec<u8>],
    ) -> Result<LayerPath, Error> {
        let escape = |reason| Error::SymlinkEscape {
            archive: self.path.clone(),
            member: link.to_string(),
            target: String::from_utf8_lossy(target).into_owned(),
            reason,
        };
        if target.starts_with(b"/") {
            return Err(escape("is absolute, so it leaves the archive"));
        }
        let mut stack: Vec<&[u8]> = dir.components().collect();
        for c in target
            .split(|&b| b == b'/')
            .chain(rest.iter().map(Vec::as_slice))
        {
            match c {
                b"" | b"." => {}
                b".." => {
                    stack
                        .pop()
                        .ok_or_else(|| escape("climbs out of the archive"))?;
                }
                c => stack.push(c),
            }
        }
        LayerPath::from_tar_name(&stack.join(&b'/')).map_err(|_| escape("is not a valid name"))
    }

    /// A streaming reader of a located member's data, by offset (`pread`), so that
    /// several can be open at once.
    pub fn reader(&self, span: Span) -> RangeReader<&File> {
        RangeReader::new(&self.file, span.offset, span.size)
    }

    /// A located member's data leased to be read through memory maps, when it can be
    /// ([`MappedFile::lease_range`]). The archive is opened again for it (through
    /// `/proc/self/fd`, so it is the same file): a lease belongs to one opening.
    pub fn mapped(&self, span: Span) -> Option<MappedFile<'static>> {
        let again = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd())).ok()?;
        MappedFile::lease_range(again, span.offset, Some(span.size)).ok()
    }

    /// Reads a small member (JSON) entirely; `None` if absent.
    pub fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(span) = self.locate(name)? else {
            return Ok(None);
        };
        if span.size > MAX_JSON {
            return Err(Error::BadArchive {
                archive: self.path.clone(),
                what: format!(
                    "`{name}` is {} bytes, over the {MAX_JSON}-byte limit for metadata",
                    span.size
                ),
            });
        }
        let mut out = Vec::with_capacity(span.size as usize);
        self.reader(span).read_to_end(&mut out).map_err(|e| {
            Error::io(
                format!("cannot read `{name}` in {}", self.path.display()),
                e,
            )
        })?;
        Ok(Some(out))
    }
}

/// bzip2 and xz are valid `docker load` inputs that Strata does not decompress.
fn refuse_unsupported_compression(path: &Path, head: &[u8]) -> Result<(), Error> {
    let kind = if head.starts_with(b"BZh") {
        "bzip2"
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz"
    } else {
        return Ok(());
    };
    Err(Error::Unsupported(format!(
        "{} is {kind}-compressed; Strata reads plain, gzip and zstd archives (decompress it first)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use strata_layer::{Entry, LayerWriter};

    use super::*;

    /// (name, file data, symlink target); neither: a directory.
    type Spec<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

    fn tar(entries: &[Spec]) -> Vec<u8> {
        let mut w = strata_layer::tar::TarWriter::new(Vec::new());
        for (name, data, link) in entries {
            let path = LayerPath::from_tar_name(name.as_bytes()).unwrap();
            let kind = match (data, link) {
                (Some(d), _) => EntryKind::File {
                    size: d.len() as u64,
                    sparse: None,
                },
                (None, Some(t)) => EntryKind::Symlink {
                    target: t.as_bytes().to_vec(),
                },
                (None, None) => EntryKind::Dir,
            };
            w.add(&Entry::new(path, kind)).unwrap();
            if let Some(d) = data {
                if !d.is_empty() {
                    w.write_data(d).unwrap();
                }
            }
        }
        w.finish().unwrap()
    }

    fn open(bytes: &[u8]) -> (tempfile::TempDir, Result<Archive, Error>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        std::fs::write(&p, bytes).unwrap();
        let a = Archive::open(&p, dir.path());
        (dir, a)
    }

    fn read(a: &Archive, name: &str) -> Vec<u8> {
        a.read_small(name).unwrap().unwrap()
    }

    #[test]
    fn resolves_links_inside_the_archive() {
        let bytes = tar(&[
            ("blobs/", None, None),
            ("blobs/abc", Some(b"data"), None),
            ("v1/layer.tar", None, Some("../blobs/abc")),
            ("dirlink", None, Some("blobs")),
            ("chain", None, Some("v1/layer.tar")),
        ]);
        let (_d, a) = open(&bytes);
        let a = a.unwrap();
        assert_eq!(read(&a, "v1/layer.tar"), b"data");
        assert_eq!(read(&a, "./dirlink/abc"), b"data");
        assert_eq!(read(&a, "chain"), b"data");
        assert!(a.read_small("missing").unwrap().is_none());
        assert!(a
            .read_small("blobs")
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
    }

    #[test]
    fn refuses_links_that_leave_the_archive_or_loop() {
        let bytes = tar(&[
            ("up", None, Some("../../etc/passwd")),
            ("abs", None, Some("/etc/passwd")),
            ("a", None, Some("b")),
            ("b", None, Some("a")),
        ]);
        let (_d, a) = open(&bytes);
        let a = a.unwrap();
        assert!(a
            .read_small("up")
            .unwrap_err()
            .to_string()
            .contains("climbs out of the archive"));
        assert!(a
            .read_small("abs")
            .unwrap_err()
            .to_string()
            .contains("is absolute"));
        assert!(a
            .read_small("a")
            .unwrap_err()
            .to_string()
            .contains("more than 8 links"));
        assert!(a
            .read_small("../x")
            .unwrap_err()
            .to_string()
            .contains("not a name inside"));
    }

    #[test]
    fn truncated_members_are_found_when_indexing() {
        let mut bytes = tar(&[("big", Some(&[1u8; 5000]), None)]);
        bytes.truncate(3000);
        let (_d, a) = open(&bytes);
        let e = a.err().unwrap().to_string();
        assert!(e.contains("`big` is truncated"), "{e}");
    }

    #[test]
    fn compressed_and_piped_archives_are_spooled() {
        let bytes = tar(&[("m", Some(b"hello"), None)]);
        let mut c = strata_layer::compress::Compressor::new(Vec::new(), Compression::Gzip).unwrap();
        c.write_all(&bytes).unwrap();
        let (_d, a) = open(&c.finish().unwrap());
        assert_eq!(read(&a.unwrap(), "m"), b"hello");
        let (_d, a) = open(b"BZh91AY&SY");
        assert!(a.err().unwrap().to_string().contains("bzip2-compressed"));
    }
}
