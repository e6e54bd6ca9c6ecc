//! Reading a layer file through memory maps instead of `read(2)`: its bytes are hashed and
//! written where they lie in the page cache, with no copy into a buffer first. On a layer
//! of large files that copy costs as much CPU as the diffID's SHA-256 (bench/results-*).
//!
//! A map is only sound while nobody else changes the file. A byte changed between the hash
//! and the write would leave a tree that is not the content of its diffID, and a file
//! truncated under a map turns a read into SIGBUS instead of an error. So a file is mapped
//! only under a read lease (`fcntl(F_SETLEASE, F_RDLCK)`), which the kernel grants only
//! while no one has the file open for writing. Whoever then opens it for writing or
//! truncates it waits (up to `/proc/sys/fs/lease-break-time`, 45 s by default) until the
//! lease is given up, and the lease lasts as long as a window of the file is mapped: the
//! file cannot change under a map. The lease is checked before each window is mapped; a
//! break stops the read with an error (after which the lease goes with the last window).
//! The signal a break would send is turned off (the file has no owner), so it cannot kill
//! the process. Each window's pages are faulted in with `MADV_POPULATE_READ`, which reports
//! a disk's I/O error as an error where touching the page would raise SIGBUS.
//!
//! Where any of this is refused (not a regular file, a file of another user without
//! `CAP_LEASE`, a file open for writing, a file system without leases, a kernel before
//! 5.14), the file is read as a stream instead.
//!
//! ```no_run
//! use strata_layer::mapped::MappedFile;
//! use strata_layer::unpack::{unpack, Input, UnpackOptions};
//! # fn main() -> Result<(), strata_layer::Error> {
//! let file = std::fs::File::open("layer.tar").unwrap();
//! let input = match MappedFile::lease(file) {
//!     Ok(mapped) => Input::Mapped(mapped),
//!     Err(file) => Input::Stream(file),
//! };
//! let summary = unpack(input, "/tmp/rootfs".as_ref(), UnpackOptions::default())?;
//! # Ok(()) }
//! ```

use std::borrow::Borrow;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

/// Bytes mapped at a time: a multiple of the page size and of the pipe's chunk, small
/// enough that the mapped part of a big layer stays a few windows (memory stays flat).
pub(crate) const WINDOW: usize = 8 << 20;

/// A regular file (or a part of it: an archive's member) held under a read lease, to be
/// read through windows mapped in turn.
pub struct MappedFile<'a> {
    lease: Lease,
    progress: Option<Progress<'a>>,
}

/// What is called with the number of bytes each time a part of the file has been read.
pub(crate) type Progress<'a> = Box<dyn FnMut(u64) + Send + 'a>;

/// The leased file and the part of it to read, which the windows mapped from it share.
pub(crate) struct Lease {
    file: File,
    start: u64,
    len: u64,
}

impl<'a> MappedFile<'a> {
    /// Takes a read lease on `file` (opened read-only), or gives the file back when it
    /// cannot be read through maps (see the module docs); the caller then streams it.
    pub fn lease(file: File) -> Result<MappedFile<'a>, File> {
        Self::lease_range(file, 0, None)
    }

    /// [`lease`](Self::lease), to read only the `len` bytes at `start` (to the end of the
    /// file if `None`). The file is given back as well when the range is empty or runs
    /// past the file's end.
    pub fn lease_range(file: File, start: u64, len: Option<u64>) -> Result<MappedFile<'a>, File> {
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => return Err(file),
        };
        let len = len.unwrap_or(size.saturating_sub(start));
        if len == 0 || start.checked_add(len).is_none_or(|end| end > size) {
            return Err(file);
        }
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this holds open, with integer arguments only.
        let leased = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0;
        // No owner: a lease break then signals nobody (its default, SIGIO, would kill).
        // SAFETY: as above.
        if !leased || unsafe { libc::fcntl(fd, libc::F_SETOWN, 0) } != 0 {
            return Err(file);
        }
        Ok(MappedFile {
            lease: Lease { file, start, len },
            progress: None,
        })
    }

    /// The length of what is read (it cannot change while leased).
    pub fn len(&self) -> u64 {
        self.lease.len
    }

    /// Never true: an empty range is not leased.
    pub fn is_empty(&self) -> bool {
        self.lease.len == 0
    }

    /// Calls `f` with the number of bytes each time a part of the range has been read.
    pub fn on_progress(&mut self, f: impl FnMut(u64) + Send + 'a) {
        self.progress = Some(Box::new(f));
    }

    /// Reads the first bytes of the range without mapping (to detect compression, say).
    pub fn read_head(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.lease.len).unwrap_or(usize::MAX));
        self.lease.file.read_at(&mut buf[..n], self.lease.start)
    }

    /// Gives up the lease and returns the range as a stream from its start, which
    /// reports its progress the same way.
    pub fn into_stream(self) -> Box<dyn Read + Send + 'a> {
        let Lease { file, start, len } = self.lease;
        // SAFETY: fcntl on a descriptor this holds open, with integer arguments only.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        let range = RangeReader::new(file, start, len);
        match self.progress {
            None => Box::new(range),
            Some(progress) => Box::new(Reported {
                inner: range,
                progress,
            }),
        }
    }

    /// The lease, for the thread that maps the windows, and the progress callback.
    pub(crate) fn into_parts(self) -> (Arc<Lease>, Option<Progress<'a>>) {
        (Arc::new(self.lease), self.progress)
    }
}

impl Lease {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn lease_held(&self) -> bool {
        // SAFETY: as in `lease_range`. While a break is pending, F_GETLEASE answers F_UNLCK.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) == libc::F_RDLCK }
    }

    /// Maps the window that starts `offset` bytes into the range (below
    /// [`len`](Self::len)), its pages faulted in; fails if the lease was broken.
    pub(crate) fn window(self: &Arc<Self>, offset: u64) -> io::Result<Window> {
        if !self.lease_held() {
            return Err(io::Error::other(
                "the file was opened for writing while being read",
            ));
        }
        let len = (self.len - offset).min(WINDOW as u64) as usize;
        // A map starts on a page.
        let at = self.start + offset;
        let skip = (at % rustix::param::page_size() as u64) as usize;
        let map_len = skip + len;
        // SAFETY: a new read-only shared mapping, placed by the kernel; the file cannot
        // shrink or change while leased, and the lease outlives the mapping (it goes with
        // the last reference to the open file, which the mapping holds).
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ,
                MapFlags::SHARED,
                &self.file,
                at - skip as u64,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        let window = Window {
            ptr,
            map_len,
            skip,
            _lease: self.clone(),
        };
        // SAFETY: the range is the mapping just made.
        unsafe { mm::madvise(ptr.as_ptr().cast(), map_len, Advice::LinuxPopulateRead) }?;
        Ok(window)
    }
}

/// A mapped part of a [`MappedFile`], unmapped when dropped.
pub(crate) struct Window {
    /// Where the mapping starts, `skip` bytes before the window's first byte.
    ptr: NonNull<u8>,
    map_len: usize,
    skip: usize,
    _lease: Arc<Lease>,
}

// SAFETY: the mapping is read-only and its bytes cannot change (the file is leased), so
// it may be read from any thread; it is unmapped once, in `drop`.
unsafe impl Send for Window {}
// SAFETY: as above.
unsafe impl Sync for Window {}

impl std::ops::Deref for Window {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `map_len` bytes mapped readable at `ptr`, all faulted in, until `drop`.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(self.skip), self.map_len - self.skip)
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `window`, unmapped once; no slice of it outlives
        // `self` (they borrow it).
        let _ = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

/// A stream that reports how many bytes were read from it.
struct Reported<'a, R> {
    inner: R,
    progress: Progress<'a>,
}

impl<R: Read> Read for Reported<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The `len` bytes at `start` of a file, read as a stream by offset (`pread`): the file's
/// position is left alone, so several ranges of one file can be read at once.
pub struct RangeReader<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: Borrow<File>> RangeReader<F> {
    /// Reads `file` (a `File` or a reference to one) from `start` for `len` bytes.
    pub fn new(file: F, start: u64, len: u64) -> RangeReader<F> {
        RangeReader {
            file,
            pos: start,
            end: start.saturating_add(len),
        }
    }
}

impl<F: Borrow<File>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.borrow().read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ends before the part being read",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    /// A file of `len` bytes, byte `i` being `i % 251`.
    fn file_of(dir: &tempfile::TempDir, len: usize) -> std::path::PathBuf {
        let path = dir.path().join("layer");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, data).unwrap();
        path
    }

    fn open_for_writing(path: &std::path::Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    }

    #[test]
    fn a_file_open_for_writing_an_empty_file_or_a_pipe_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(&dir, 10);
        let writer = open_for_writing(&path).unwrap();
        assert!(MappedFile::lease(File::open(&path).unwrap()).is_err());
        drop(writer);
        assert_eq!(
            MappedFile::lease(File::open(&path).unwrap())
                .ok()
                .unwrap()
                .len(),
            10
        );
        std::fs::write(&path, b"").unwrap();
        assert!(MappedFile::lease(File::open(&path).unwrap()).is_err());
        let (read, _write) = std::io::pipe().unwrap();
        assert!(MappedFile::lease(File::from(std::os::fd::OwnedFd::from(read))).is_err());
    }

    #[test]
    fn windows_hold_the_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = WINDOW + 1000;
        let path = file_of(&dir, len);
        let (mapped, _) = MappedFile::lease(File::open(&path).unwrap())
            .ok()
            .unwrap()
            .into_parts();
        let (first, second) = (
            mapped.window(0).unwrap(),
            mapped.window(WINDOW as u64).unwrap(),
        );
        assert_eq!((first.len(), second.len()), (WINDOW, 1000));
        assert_eq!(first[WINDOW - 1], ((WINDOW - 1) % 251) as u8);
        assert_eq!(second[999], ((len - 1) % 251) as u8);
    }

    #[test]
    fn a_range_off_the_page_maps_and_streams_its_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(&dir, 2 * WINDOW);
        let (start, len) = (1000, WINDOW as u64 + 5);
        let open = || File::open(&path).unwrap();
        let want: Vec<u8> = (start..start + len).map(|i| (i % 251) as u8).collect();
        let (lease, _) = MappedFile::lease_range(open(), start, Some(len))
            .ok()
            .unwrap()
            .into_parts();
        let mut got = lease.window(0).unwrap().to_vec();
        got.extend_from_slice(&lease.window(WINDOW as u64).unwrap());
        assert_eq!(got, want);
        let mut streamed = Vec::new();
        let mapped = MappedFile::lease_range(open(), start, Some(len))
            .ok()
            .unwrap();
        mapped.into_stream().read_to_end(&mut streamed).unwrap();
        assert_eq!(streamed, want);
        let past_the_end = MappedFile::lease_range(open(), start, Some(2 * WINDOW as u64));
        assert!(past_the_end.is_err());
    }

    #[test]
    fn a_writer_stops_the_next_window_and_waits_for_the_maps_to_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(&dir, WINDOW + 1000);
        let (mapped, _) = MappedFile::lease(File::open(&path).unwrap())
            .ok()
            .unwrap()
            .into_parts();
        let first = mapped.window(0).unwrap();
        // Without O_NONBLOCK this open would wait for the lease; with it, it fails at
        // once, and the lease is being broken all the same.
        let Err(refused) = open_for_writing(&path) else {
            panic!("opened for writing under a lease");
        };
        assert_eq!(refused.raw_os_error(), Some(libc::EWOULDBLOCK));
        let Err(err) = mapped.window(WINDOW as u64) else {
            panic!("a window mapped after the lease broke");
        };
        assert!(err.to_string().contains("opened for writing"), "{err}");
        // No SIGIO killed this process, and the window still mapped is intact.
        assert_eq!(first[12], 12);
        assert!(
            open_for_writing(&path).is_err(),
            "leased while a window is mapped"
        );
        drop(mapped);
        assert!(
            open_for_writing(&path).is_err(),
            "leased while a window is mapped"
        );
        drop(first);
        let mut writer = open_for_writing(&path).unwrap();
        writer.write_all(b"now").unwrap();
    }
}
