//! Reading a chunk of a file from an async task without handing it to a thread when the bytes are
//! already in memory.
//!
//! Owns the choice between reading in place and reading on tokio's blocking pool; the caller
//! (`source::FileRangeBody`) owns what is read and when.
//!
//! Why: a blocking-pool read costs two thread wake-ups per chunk (the pool thread, then the task's
//! worker). For `hoist put` of 1 GiB that was ≈ 7,000 voluntary context switches and ≈ 0.15 s of
//! the client's ≈ 0.9 s of CPU (A/B on this 2-core machine, 2026-11-25). Reading in place is
//! safe for the runtime only if the read cannot wait for a device, so:
//! - on a disk filesystem, the read is tried with `RWF_NOWAIT` (Linux ≥ 4.14), which returns the
//!   bytes that are in the page cache and `EAGAIN` instead of waiting for the device; what it could
//!   not read goes to the blocking pool;
//! - tmpfs answers `RWF_NOWAIT` with `EOPNOTSUPP` (kernel 6.18 here), but its pages are memory:
//!   it is read in place (a page swapped out would be the one wait);
//! - anything else (another error, another OS) reads on the blocking pool, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// How the chunks of one file are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// In place: the file is in memory (tmpfs).
    InPlace,
    /// In place what the page cache holds (`RWF_NOWAIT`), the rest on the blocking pool.
    CachedFirst,
    /// Always on the blocking pool.
    Pool,
}

/// `f_type` of tmpfs in `statfs`.
#[cfg(target_os = "linux")]
const TMPFS_MAGIC: rustix::fs::FsWord = 0x0102_1994;

impl ReadMode {
    /// The mode for `file`, from the filesystem it is on.
    pub(crate) fn of(file: &File) -> Self {
        #[cfg(target_os = "linux")]
        {
            match rustix::fs::fstatfs(file) {
                Ok(fs) if fs.f_type == TMPFS_MAGIC => Self::InPlace,
                Ok(_) => Self::CachedFirst,
                Err(_) => Self::Pool,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = file;
            Self::Pool
        }
    }

    /// Reads as much of `buf` (from file offset `offset`) as this mode allows in place; returns how
    /// many bytes were read, and `Err` only for a failed in-place read. The caller reads the rest
    /// on the blocking pool. `CachedFirst` becomes `Pool` if the filesystem has no `RWF_NOWAIT`.
    pub(crate) fn read_in_place(&mut self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match *self {
            Self::InPlace => file.read_exact_at(buf, offset).map(|()| buf.len()),
            Self::CachedFirst => Ok(self.read_cached(file, buf, offset)),
            Self::Pool => Ok(0),
        }
    }

    #[cfg(target_os = "linux")]
    fn read_cached(&mut self, file: &File, buf: &mut [u8], offset: u64) -> usize {
        use rustix::io::{Errno, ReadWriteFlags};
        let mut done = 0;
        while done < buf.len() {
            let mut slices = [io::IoSliceMut::new(&mut buf[done..])];
            match rustix::io::preadv2(file, &mut slices, offset + done as u64, ReadWriteFlags::NOWAIT) {
                Ok(0) => break, // end of file: the blocking read reports it
                Ok(n) => done += n,
                Err(Errno::OPNOTSUPP) => {
                    *self = Self::Pool;
                    break;
                }
                Err(_) => break, // EAGAIN (not cached), or an error the blocking read reports
            }
        }
        done
    }

    #[cfg(not(target_os = "linux"))]
    fn read_cached(&mut self, _file: &File, _buf: &mut [u8], _offset: u64) -> usize {
        *self = Self::Pool;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &std::path::Path, len: usize) -> (File, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 241).unwrap()).collect();
        let p = dir.join("f");
        std::fs::write(&p, &data).unwrap();
        (File::open(&p).unwrap(), data)
    }

    #[test]
    fn every_mode_reads_what_it_can_and_says_how_much() {
        let dir = tempfile::tempdir().unwrap();
        let (file, data) = file_with(dir.path(), 100_000);
        for mode in [ReadMode::InPlace, ReadMode::CachedFirst, ReadMode::Pool] {
            let mut m = mode;
            let mut buf = vec![0u8; 50_000];
            let n = m.read_in_place(&file, &mut buf, 7).unwrap();
            assert_eq!(&buf[..n], &data[7..7 + n], "{mode:?}");
            match mode {
                ReadMode::InPlace => assert_eq!(n, buf.len()),
                ReadMode::Pool => assert_eq!(n, 0),
                // A file just written is in the page cache, unless the filesystem lacks RWF_NOWAIT.
                ReadMode::CachedFirst => assert!(n == buf.len() || (n == 0 && m == ReadMode::Pool), "{n} {m:?}"),
            }
        }
    }

    #[test]
    fn reads_past_the_end_are_left_to_the_pool_or_fail_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (file, data) = file_with(dir.path(), 1000);
        let mut buf = vec![0u8; 4000];
        let mut cached = ReadMode::CachedFirst;
        let n = cached.read_in_place(&file, &mut buf, 0).unwrap();
        assert!(n <= data.len());
        assert_eq!(&buf[..n], &data[..n]);
        let e = ReadMode::InPlace.read_in_place(&file, &mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn memory_filesystems_are_read_in_place() {
        // /dev/shm is tmpfs on Linux machines that have it; elsewhere there is nothing to check.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else { return };
        let (file, _) = file_with(dir.path(), 10);
        assert_eq!(ReadMode::of(&file), ReadMode::InPlace);
    }
}
