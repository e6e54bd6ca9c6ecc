//! Writing image archives as tar streams, deterministically, without staging layers.
//!
//! Every member header is the Go-style header of [`strata_layer::tar::TarWriter`]
//! (ustar, PAX only when a value does not fit), owner 0:0, no owner names, whole-second
//! mtimes, modes 0644 (files), 0755 (directories) and 0777 (symlinks). A member whose
//! size is not known before it is written (a layer decompressed on the way, a layer
//! compressed on the way) is written in place with a placeholder header that is patched
//! afterwards when the output is a regular file, and spooled to the staging directory
//! first when it is a pipe; the bytes are the same either way.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata_layer::tar::{HeaderStyle, TarWriter};
use strata_layer::{Entry, EntryKind, LayerPath, Timestamp};

use crate::ids::{blob_path, Digest};
use crate::stream::pump;
use crate::Error;

const BLOCK: u64 = 512;

/// A tar being written; see the module documentation.
pub(crate) struct TarOut {
    out: BufWriter<File>,
    /// Headers as `docker save` writes them (see [`TarOut::docker_save_headers`]).
    moby: bool,
    seekable: bool,
    pos: u64,
    staging: PathBuf,
    what: String,
}

/// Counts what passes through.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(
    name: &str,
    kind: EntryKind,
    mode: u32,
    mtime: i64,
    moby: bool,
) -> Result<Vec<u8>, Error> {
    let path = LayerPath::from_tar_name(name.as_bytes())
        .map_err(|e| Error::invalid(format!("archive member `{name}`"), e.to_string()))?;
    let mut entry = Entry::new(path, kind);
    entry.meta.mode = mode;
    entry.meta.mtime = Timestamp::new(mtime, 0);
    let style = if moby {
        // dockerd runs as root, and Go's FileInfoHeader looks the names up.
        entry.meta.uname = b"root".to_vec();
        entry.meta.gname = b"root".to_vec();
        HeaderStyle::Moby
    } else {
        HeaderStyle::Strata
    };
    let mut bytes = Vec::with_capacity(BLOCK as usize);
    // The writer puts the header blocks out first; the data would follow.
    TarWriter::new(&mut bytes).add_as(&entry, style)?;
    Ok(bytes)
}

impl TarOut {
    /// Writes to `file`; `seekable` when it is a regular file (placeholders can be
    /// patched). `what` names the output in messages.
    pub fn new(file: File, seekable: bool, staging: &Path, what: String) -> TarOut {
        TarOut {
            out: BufWriter::with_capacity(1 << 20, file),
            moby: false,
            seekable,
            pos: 0,
            staging: staging.to_owned(),
            what,
        }
    }

    /// An archive to be committed at `path` (see [`open_output`]), and the temporary
    /// file to [`persist`] once it is finished.
    pub fn create(
        path: &Path,
        staging: &Path,
        what: String,
    ) -> Result<(TarOut, Option<tempfile::TempPath>), Error> {
        let (file, seekable, temp) = open_output(path)?;
        Ok((TarOut::new(file, seekable, staging, what), temp))
    }

    /// Writes every header as Docker 20.10's `docker save` does (moby's `pkg/archive` over
    /// a directory of files dockerd wrote as root): the mode field with its file-type bits,
    /// `uname` and `gname` `root`.
    pub fn docker_save_headers(mut self) -> TarOut {
        self.moby = true;
        self
    }

    fn file_header(&self, name: &str, size: u64, mtime: i64) -> Result<Vec<u8>, Error> {
        header(
            name,
            EntryKind::File { size, sparse: None },
            0o644,
            mtime,
            self.moby,
        )
    }

    /// Runs `write` on the output, counting what it writes.
    fn data<T>(
        &mut self,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, String), Error>,
    ) -> Result<(T, String, u64), Error> {
        let mut c = Counting {
            inner: &mut self.out,
            n: 0,
        };
        let (value, name) = write(&mut c)?;
        let n = c.n;
        self.pos += n;
        Ok((value, name, n))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.what), e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), Error> {
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        self.put(&[0u8; BLOCK as usize][..pad as usize])
    }

    pub fn dir(&mut self, name: &str, mtime: i64) -> Result<(), Error> {
        let h = header(name, EntryKind::Dir, 0o755, mtime, self.moby)?;
        self.put(&h)
    }

    pub fn symlink(&mut self, name: &str, target: &str, mtime: i64) -> Result<(), Error> {
        let kind = EntryKind::Symlink {
            target: target.as_bytes().to_vec(),
        };
        let h = header(name, kind, 0o777, mtime, self.moby)?;
        self.put(&h)
    }

    pub fn file(&mut self, name: &str, mtime: i64, data: &[u8]) -> Result<(), Error> {
        self.put(&self.file_header(name, data.len() as u64, mtime)?)?;
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    /// Writes a member whose data `write` produces. With `size`, the data must be exactly
    /// that long; without, it is measured (see the module documentation). Returns what
    /// `write` returned and the size.
    pub fn stream<T>(
        &mut self,
        name: &str,
        mtime: i64,
        size: Option<u64>,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<T, Error>,
    ) -> Result<(T, u64), Error> {
        self.member(name, mtime, size, |w| Ok((write(w)?, name.to_string())))
    }

    /// Writes a blob `blobs/sha256/<digest>` whose size and digest are known only once
    /// `write` (which returns the digest) is done.
    pub fn stream_blob<T>(
        &mut self,
        mtime: i64,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, Digest), Error>,
    ) -> Result<(T, u64, Digest), Error> {
        let mut digest = None;
        let placeholder = blob_path(&Digest([0; 32]));
        let (value, size) = self.member(&placeholder, mtime, None, |w| {
            let (value, d) = write(w)?;
            digest = Some(d);
            Ok((value, blob_path(&d)))
        })?;
        let digest = digest
            .ok_or_else(|| Error::invalid(&self.what, "a blob was written without its digest"))?;
        Ok((value, size, digest))
    }

    /// Writes one member; `name` is what the header says while the data streams, and
    /// `write` returns the final name (the same, unless the size was unknown).
    fn member<T>(
        &mut self,
        name: &str,
        mtime: i64,
        size: Option<u64>,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, String), Error>,
    ) -> Result<(T, u64), Error> {
        match size {
            Some(size) => {
                self.put(&self.file_header(name, size, mtime)?)?;
                let (value, final_name, n) = self.data(write)?;
                if n != size || final_name != name {
                    return Err(Error::invalid(
                        format!("member `{name}` of {}", self.what),
                        format!("{n} bytes were written where {size} were announced"),
                    ));
                }
                self.pad(size)?;
                Ok((value, size))
            }
            None if self.seekable => self.member_patched(name, mtime, write),
            None => self.member_spooled(mtime, write),
        }
    }

    fn member_patched<T>(
        &mut self,
        name: &str,
        mtime: i64,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, String), Error>,
    ) -> Result<(T, u64), Error> {
        let at = self.pos;
        let placeholder = self.file_header(name, 0, mtime)?;
        self.put(&placeholder)?;
        let (value, final_name, n) = self.data(write)?;
        let real = self.file_header(&final_name, n, mtime)?;
        let io_err = |e| Error::io(format!("writing {}", self.what), e);
        self.out.flush().map_err(io_err)?;
        let file = self.out.get_mut();
        let data_at = at + placeholder.len() as u64;
        if real.len() != placeholder.len() {
            // A size past the ustar limit (8 GiB) needs a PAX header: move the data up.
            let by = real.len().checked_sub(placeholder.len()).ok_or_else(|| {
                Error::invalid(
                    &self.what,
                    "a member header shrank when its size became known",
                )
            })? as u64;
            shift_up(file, data_at, n, by).map_err(io_err)?;
            self.pos += by;
            file.seek(SeekFrom::Start(self.pos)).map_err(io_err)?;
        }
        file.write_all_at(&real, at).map_err(io_err)?;
        self.pad(n)?;
        Ok((value, n))
    }

    fn member_spooled<T>(
        &mut self,
        mtime: i64,
        write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(T, String), Error>,
    ) -> Result<(T, u64), Error> {
        let mut spool = tempfile::tempfile_in(&self.staging).map_err(|e| {
            Error::io(
                format!("cannot create a spool file in {}", self.staging.display()),
                e,
            )
        })?;
        let mut w = BufWriter::with_capacity(1 << 20, &mut spool);
        let (value, name) = write(&mut w)?;
        w.flush()
            .map_err(|e| Error::io("writing a spool file", e))?;
        drop(w);
        let n = spool
            .stream_position()
            .map_err(|e| Error::io("reading a spool file", e))?;
        spool
            .rewind()
            .map_err(|e| Error::io("reading a spool file", e))?;
        self.put(&self.file_header(&name, n, mtime)?)?;
        let copied = pump(&mut spool, &mut self.out)
            .map_err(|e| Error::io(format!("writing {}", self.what), e))?;
        self.pos += copied;
        self.pad(n)?;
        Ok((value, n))
    }

    /// Ends the archive (two zero blocks) and returns the file, flushed and synced.
    pub fn finish(mut self) -> Result<File, Error> {
        self.put(&[0u8; 2 * BLOCK as usize])?;
        let what = self.what.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(format!("writing {what}"), e.into_error()))?;
        if self.seekable {
            file.sync_all()
                .map_err(|e| Error::io(format!("syncing {what}"), e))?;
        }
        Ok(file)
    }
}

/// Where an archive is written: a temporary sibling of `path`, renamed over it on
/// commit, when `path` is a regular file or absent; otherwise (a pipe, a device, a
/// symlink such as `/dev/stdout`) `path` itself, opened for writing and never replaced.
/// Returns the file, whether it is seekable (a regular file), and the temporary path.
pub(crate) fn open_output(path: &Path) -> Result<(File, bool, Option<tempfile::TempPath>), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(format!("cannot open {} for writing", path.display()), e))?;
            let regular = f.metadata().is_ok_and(|m| m.is_file());
            if regular {
                f.set_len(0)
                    .map_err(|e| Error::io(format!("cannot truncate {}", path.display()), e))?;
            }
            return Ok((f, regular, None));
        }
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(
                path.display().to_string(),
                "is a directory, not an archive file",
            ));
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".strata-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))?;
    let (file, temp) = tmp.into_parts();
    Ok((file, true, Some(temp)))
}

/// Renames the finished temporary file over `target` (and syncs the directory).
pub(crate) fn persist(temp: Option<tempfile::TempPath>, target: &Path) -> Result<(), Error> {
    let Some(temp) = temp else { return Ok(()) };
    temp.persist(target)
        .map_err(|e| Error::io(format!("cannot write {}", target.display()), e.error))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Moves `len` bytes at `from` up by `by` bytes, last chunk first.
fn shift_up(file: &File, from: u64, len: u64, by: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut end = from + len;
    while end > from {
        let n = (end - from).min(buf.len() as u64);
        let start = end - n;
        file.read_exact_at(&mut buf[..n as usize], start)?;
        file.write_all_at(&buf[..n as usize], start + by)?;
        end = start;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn write_all(seekable: bool, dir: &Path) -> Vec<u8> {
        let path = dir.join(if seekable { "seek.tar" } else { "pipe.tar" });
        let f = File::create(&path).unwrap();
        let mut t = TarOut::new(f, seekable, dir, "test".into());
        t.dir("blobs/", 0).unwrap();
        t.file("a", 5, b"hello").unwrap();
        t.stream("b", 7, None, |w| {
            w.write_all(&[3u8; 1000]).map_err(|e| Error::io("x", e))
        })
        .unwrap();
        t.stream("c", 7, Some(3), |w| {
            w.write_all(b"abc").map_err(|e| Error::io("x", e))
        })
        .unwrap();
        t.symlink("d", "../a", 9).unwrap();
        t.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn patched_and_spooled_members_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_all(true, dir.path());
        let b = write_all(false, dir.path());
        assert_eq!(a, b);
        let items = strata_testkit::entries::collect(strata_layer::tar::TarReader::new(&a[..]));
        let names: Vec<_> = (items.unwrap().iter())
            .map(|i| {
                (
                    i.name(),
                    i.entry.meta.mode,
                    i.entry.meta.mtime.secs,
                    i.data.len(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("blobs".into(), 0o755, 0, 0),
                ("a".into(), 0o644, 5, 5),
                ("b".into(), 0o644, 7, 1000),
                ("c".into(), 0o644, 7, 3),
                ("d".into(), 0o777, 9, 0),
            ]
        );
    }

    #[test]
    fn a_grown_header_moves_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let f = tempfile::tempfile_in(dir.path()).unwrap();
        f.write_all_at(b"0123456789", 0).unwrap();
        shift_up(&f, 2, 6, 3).unwrap();
        let mut s = String::new();
        (&f).read_to_string(&mut s).unwrap();
        assert_eq!(&s[5..11], "234567");
    }

    #[test]
    fn announced_sizes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x")).unwrap();
        let mut t = TarOut::new(f, true, dir.path(), "test".into());
        let e = t
            .stream("c", 0, Some(4), |w| {
                w.write_all(b"abc").map_err(|e| Error::io("x", e))
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("3 bytes were written where 4"),
            "{e}"
        );
    }
}
