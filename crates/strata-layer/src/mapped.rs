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
//! use strata_layer::unpack::{unpack_input, Input, UnpackOptions};
//! # fn main() -> Result<(), strata_layer::Error> {
//! let file = std::fs::File::open("layer.tar").unwrap();
//! let input = match MappedFile::lease(file) {
//!     Ok(mapped) => Input::Mapped(mapped),
//!     Err(file) => Input::Stream(file),
//! };
//! let summary = unpack_input(input, "/tmp/rootfs".as_ref(), UnpackOptions::default())?;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

/// Bytes mapped at a time: a multiple of the page size and of the pipe's chunk, small
/// enough that the mapped part of a big layer stays a few windows (memory stays flat).
pub(crate) const WINDOW: usize = 8 << 20;

/// A regular file held under a read lease, to be read through windows mapped in turn.
pub struct MappedFile {
    lease: Lease,
    progress: Option<Progress>,
}

/// What is called with the number of bytes each time a part of the file has been read.
pub(crate) type Progress = Box<dyn FnMut(u64) + Send>;

/// The leased file, which the windows mapped from it share.
pub(crate) struct Lease {
    file: File,
    len: u64,
}

impl MappedFile {
    /// Takes a read lease on `file` (opened read-only), or gives the file back when it
    /// cannot be read through maps (see the module docs); the caller then streams it.
    pub fn lease(file: File) -> Result<MappedFile, File> {
        let len = match file.metadata() {
            Ok(m) if m.is_file() && m.len() > 0 => m.len(),
            _ => return Err(file),
        };
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this holds open, with integer arguments only.
        let leased = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0;
        // No owner: a lease break then signals nobody (its default, SIGIO, would kill).
        // SAFETY: as above.
        if !leased || unsafe { libc::fcntl(fd, libc::F_SETOWN, 0) } != 0 {
            return Err(file);
        }
        Ok(MappedFile {
            lease: Lease { file, len },
            progress: None,
        })
    }

    /// The file's length when it was leased (it cannot change while leased).
    pub fn len(&self) -> u64 {
        self.lease.len
    }

    /// Never true: an empty file is not leased.
    pub fn is_empty(&self) -> bool {
        self.lease.len == 0
    }

    /// Calls `f` with the number of bytes each time a part of the file has been read.
    pub fn on_progress(&mut self, f: impl FnMut(u64) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Reads bytes at `offset` without mapping (to detect compression, say).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.lease.file.read_at(buf, offset)
    }

    /// Gives up the lease and returns the file, to be streamed from its start.
    pub fn into_file(self) -> File {
        let file = self.lease.file;
        // SAFETY: fcntl on a descriptor this holds open, with integer arguments only.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        file
    }

    /// The lease, for the thread that maps the windows, and the progress callback.
    pub(crate) fn into_parts(self) -> (Arc<Lease>, Option<Progress>) {
        (Arc::new(self.lease), self.progress)
    }
}

impl Lease {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn lease_held(&self) -> bool {
        // SAFETY: as in `lease`. While a break is pending, F_GETLEASE answers F_UNLCK.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) == libc::F_RDLCK }
    }

    /// Maps the window that starts at `offset` (below [`len`](Self::len)), its pages
    /// faulted in; fails if the lease was broken.
    pub(crate) fn window(self: &Arc<Self>, offset: u64) -> io::Result<Window> {
        if !self.lease_held() {
            return Err(io::Error::other(
                "the file was opened for writing while being read",
            ));
        }
        let len = (self.len - offset).min(WINDOW as u64) as usize;
        // SAFETY: a new read-only shared mapping, placed by the kernel; the file cannot
        // shrink or change while leased, and the lease outlives the mapping (it goes with
        // the last reference to the open file, which the mapping holds).
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                &self.file,
                offset,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        let window = Window {
            ptr,
            len,
            _lease: self.clone(),
        };
        // SAFETY: the range is the mapping just made.
        unsafe { mm::madvise(ptr.as_ptr().cast(), len, Advice::LinuxPopulateRead) }?;
        Ok(window)
    }
}

/// A mapped part of a [`MappedFile`], unmapped when dropped.
pub(crate) struct Window {
    ptr: NonNull<u8>,
    len: usize,
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
        // SAFETY: `len` bytes mapped readable at `ptr`, all faulted in, until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `window`, unmapped once; no slice of it outlives
        // `self` (they borrow it).
        let _ = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
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
