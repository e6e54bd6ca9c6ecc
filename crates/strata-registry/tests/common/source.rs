//! Seekable pseudo-random blobs of any size, generated on the fly (memory stays flat).

use std::io::{self, Read, Seek, SeekFrom};

use strata_registry::{Digest, Error, PushOptions, Pushed, Repository, RepositoryName};

/// `size` incompressible bytes determined by `seed`; byte `i` depends only on
/// `(seed, i)`, so seeking is free.
#[derive(Clone)]
pub struct Pattern {
    pub size: u64,
    seed: u64,
    pos: u64,
}

impl Pattern {
    pub fn new(size: u64, seed: u64) -> Pattern {
        Pattern { size, seed, pos: 0 }
    }

    /// The digest, computed by reading the pattern once.
    pub fn digest(&self) -> Digest {
        super::digest_of(self.clone_at(0)).unwrap().0
    }

    pub fn clone_at(&self, pos: u64) -> Pattern {
        Pattern {
            size: self.size,
            seed: self.seed,
            pos,
        }
    }

    /// Pushes the pattern as a blob into `repo`.
    pub fn push(&self, repo: &Repository) -> Result<Pushed, Error> {
        self.push_with(repo, PushOptions::default())
    }

    pub fn push_with(&self, repo: &Repository, options: PushOptions<'_>) -> Result<Pushed, Error> {
        repo.push_blob(&self.digest(), self.size, self.clone_at(0), options)
    }

    /// Pushes to `repo`, telling `progress` the bytes sent so far.
    pub fn push_reporting(
        &self,
        repo: &Repository,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Pushed, Error> {
        let progress = Some(progress);
        self.push_with(
            repo,
            PushOptions {
                progress,
                ..PushOptions::default()
            },
        )
    }

    /// Pushes to `repo`, asking the registry to mount the blob from `from` first.
    pub fn push_mounting(&self, repo: &Repository, from: &RepositoryName) -> Result<Pushed, Error> {
        let mount_from = Some(from);
        self.push_with(
            repo,
            PushOptions {
                mount_from,
                ..PushOptions::default()
            },
        )
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size as usize);
        self.clone_at(0).read_to_end(&mut v).unwrap();
        v
    }

    fn word(&self, index: u64) -> u64 {
        // splitmix64 of (seed, index)
        let mut z = index
            .wrapping_add(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.size - self.pos) as usize;
        let mut i = 0;
        while i < n {
            let p = self.pos + i as u64;
            let w = self.word(p / 8).to_le_bytes();
            let off = (p % 8) as usize;
            let take = (8 - off).min(n - i);
            buf[i..i + take].copy_from_slice(&w[off..off + take]);
            i += take;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Pattern {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.size as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if p < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before 0"));
        }
        self.pos = (p as u64).min(self.size);
        Ok(self.pos)
    }
}
