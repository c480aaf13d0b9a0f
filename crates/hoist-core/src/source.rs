//! What is uploaded: a regular file, read by position when a part starts (a retry re-reads it),
//! or a stream such as stdin, read part by part in order.

use std::fs::File;
use std::future::Future as _;
use std::io::Read;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::checksum::{Checksum, ChecksumAlgorithm, Checksummer};
use crate::error::{Error, Result};

/// Read size of the checksum pass over a file range.
const READ_CHUNK: usize = 256 * 1024;

/// The input of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A regular file.
    File(PathBuf),
    /// Standard input (size unknown); resumable only with a resume key, by feeding the same
    /// stream again.
    Stdin {
        /// Names the stream across runs (`--resume-key`).
        resume_key: Option<String>,
    },
}

fn source_err(path: &Path, source: std::io::Error) -> Error {
    Error::Source { path: path.display().to_string(), source }
}

/// Checks that `path` is a readable regular file and returns its size.
pub fn file_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| source_err(path, e))?;
    if !meta.is_file() {
        return Err(Error::NotAFile(path.display().to_string()));
    }
    File::open(path).map_err(|e| source_err(path, e))?;
    Ok(meta.len())
}

/// Checksum of `len` bytes of `path` from `offset`, read in small chunks (blocking).
pub fn checksum_range(path: &Path, offset: u64, len: u64, algorithm: ChecksumAlgorithm) -> Result<Checksum> {
    let file = File::open(path).map_err(|e| source_err(path, e))?;
    let mut hasher = Checksummer::new(algorithm);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
        let n = file.read_at(&mut buf[..want], offset + done).map_err(|e| source_err(path, e))?;
        if n == 0 {
            return Err(source_err(
                path,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank during the upload"),
            ));
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hasher.finish())
}

/// Reads up to `len` bytes from a stream; fewer only at its end (blocking).
pub fn read_stream_part(reader: &mut impl Read, len: u64) -> std::io::Result<Bytes> {
    let cap = usize::try_from(len).unwrap_or(usize::MAX);
    let mut buf = BytesMut::zeroed(cap);
    let mut filled = 0;
    while filled < cap {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_range_matches_slice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let c = checksum_range(&p, 1000, 600_000, ChecksumAlgorithm::Crc32c).unwrap();
        assert_eq!(c, Checksum::of(ChecksumAlgorithm::Crc32c, &data[1000..601_000]));
        assert!(checksum_range(&p, 600_000, 200_000, ChecksumAlgorithm::Crc32c).is_err());
    }

    #[test]
    fn bad_sources_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(file_size(dir.path()), Err(Error::NotAFile(_))));
        let e = file_size(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn stream_parts_fill_until_eof() {
        let data = [7u8; 10];
        let mut r = &data[..];
        assert_eq!(read_stream_part(&mut r, 4).unwrap().len(), 4);
        assert_eq!(read_stream_part(&mut r, 8).unwrap().len(), 6);
        assert_eq!(read_stream_part(&mut r, 8).unwrap().len(), 0);
    }
}

/// Size of each read of a [`FileRangeBody`]; two are in memory per part in flight (one being
/// sent, one read ahead). Measured: 256 KiB keeps peak RSS low with CPU close to 1 MiB reads.
pub const BODY_CHUNK: usize = 256 * 1024;

/// An HTTP body streaming `len` bytes of a file from `offset` with positional reads on the
/// blocking pool, reading one chunk ahead. Replaces the SDK's file body, which goes through
/// `tokio::fs::File` (its own growing buffer plus a copy per read).
#[derive(Debug)]
pub struct FileRangeBody {
    file: std::sync::Arc<File>,
    path: PathBuf,
    offset: u64,
    remaining: u64,
    next: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
}

impl FileRangeBody {
    /// Opens `path` for the range `offset..offset + len`.
    pub fn open(path: &Path, offset: u64, len: u64) -> Result<Self> {
        let file = File::open(path).map_err(|e| source_err(path, e))?;
        let mut body = Self { file: std::sync::Arc::new(file), path: path.to_path_buf(), offset, remaining: len, next: None };
        body.read_ahead();
        Ok(body)
    }

    fn read_ahead(&mut self) {
        if self.remaining == 0 {
            return;
        }
        let want = usize::try_from(self.remaining.min(BODY_CHUNK as u64)).unwrap_or(BODY_CHUNK);
        let (file, offset) = (self.file.clone(), self.offset);
        self.offset += want as u64;
        self.remaining -= want as u64;
        self.next = Some(tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(want);
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf.freeze())
        }));
    }
}

impl http_body::Body for FileRangeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let Some(next) = self.next.as_mut() else { return Poll::Ready(None) };
        let joined = std::task::ready!(std::pin::Pin::new(next).poll(cx));
        self.next = None;
        let chunk = match joined {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                let msg = format!("reading {}: {e}", self.path.display());
                return Poll::Ready(Some(Err(std::io::Error::new(e.kind(), msg))));
            }
            Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
        };
        self.read_ahead();
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.next.is_none()
    }

}

impl Drop for FileRangeBody {
    fn drop(&mut self) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
    }
}
