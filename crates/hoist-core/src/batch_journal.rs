//! The resume record of a batch: which files of a tree the store already holds, so that
//! re-running an interrupted `hoist put DIR…` skips them without reading their bytes. One file
//! per batch identity (endpoint, bucket, prefix, sources), next to the single-upload journals.
//! The multipart uploads of big files in flight are resumed by their own [`crate::journal`].
//!
//! Format: JSON lines. The first line names the batch; each further line is one file the store
//! confirmed (key, the size and modification time it had when it was read, `ETag`, checksum).
//! A file is proven done when the walk finds it with the same key, size and modification time.
//!
//! Decisions:
//! - Append-only, one `write` per file: a kill -9 loses at most the line being written, and a
//!   torn last line is ignored on load (that file is uploaded again, which is harmless). A torn
//!   line anywhere else means the file was damaged, and it is refused as corrupt.
//! - `fdatasync` every [`SYNC_EVERY`] lines and at the end, not per file: a kill -9 loses nothing
//!   written (the page cache survives the process); a power cut loses at most the last lines, and
//!   their files are uploaded again. Per-file syncs would cost a disk flush per 16 KiB file.
//! - Only the previous run's lines are kept in memory (to answer "done?"); lines written by this
//!   run are not, so a first run's memory does not grow with the tree.
//! - Removed when a batch ends with every file done (kept after a failure or an interrupt, and by
//!   `sync`, whose next run it speeds up: see [`crate::batch`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Format version written into the header line.
const VERSION: u32 = 1;
/// Lines between two `fdatasync` calls.
pub const SYNC_EVERY: usize = 512;

/// What a batch is: the same identity on a re-run finds the same journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    /// Format version.
    pub version: u32,
    /// Endpoint URL (empty for AWS's default).
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Absolute source paths, in the order given.
    pub sources: Vec<PathBuf>,
}

impl BatchId {
    /// The identity of uploading `sources` (made absolute here) to `bucket`/`prefix` at `endpoint`.
    pub fn new(endpoint: &str, bucket: &str, prefix: &str, sources: &[PathBuf]) -> Result<Self> {
        let sources = sources
            .iter()
            .map(|s| s.canonicalize().map_err(|e| Error::Source { path: s.display().to_string(), source: e }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { version: VERSION, endpoint: endpoint.into(), bucket: bucket.into(), prefix: prefix.into(), sources })
    }

    fn file_name(&self) -> String {
        let mut h = Sha256::new();
        let mut add = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        add(self.endpoint.as_bytes());
        add(self.bucket.as_bytes());
        add(self.prefix.as_bytes());
        for s in &self.sources {
            add(s.as_os_str().as_encoded_bytes());
        }
        format!("batch-{}.jsonl", &hex::encode(h.finalize())[..32])
    }
}

/// One file the store confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneFile {
    /// Object key.
    pub key: String,
    /// Size of the file when it was read.
    pub size: u64,
    /// Its modification time then, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// The object's `ETag`.
    pub etag: String,
    /// The object's checksum (`alg:BASE64`), when one was sent.
    pub checksum: Option<String>,
}

/// An open batch journal.
#[derive(Debug)]
pub struct BatchJournal {
    path: PathBuf,
    file: File,
    previous: HashMap<String, DoneFile>,
    unsynced: usize,
}

impl BatchJournal {
    /// Opens the journal of `id` in `dir`, loading what a previous run recorded, or starts one.
    pub fn open(dir: &Path, id: &BatchId) -> Result<Self> {
        let path = dir.join(id.file_name());
        let err = |problem: String| Error::Journal { path: path.clone(), problem };
        fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its directory: {e}")))?;
        let previous = match fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, id).map_err(err)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut header = serde_json::to_vec(id).map_err(|e| err(e.to_string()))?;
                header.push(b'\n');
                // The header goes in whole or not at all: temp file, fsync, rename.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let write = || -> std::io::Result<()> {
                    let mut f = File::create(&tmp)?;
                    f.write_all(&header)?;
                    f.sync_all()?;
                    fs::rename(&tmp, &path)?;
                    File::open(dir)?.sync_all()
                };
                write().map_err(|e| err(format!("cannot write it: {e}")))?;
                HashMap::new()
            }
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
        };
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| err(format!("cannot open it: {e}")))?;
        Ok(Self { path, file, previous, unsynced: 0 })
    }

    fn parse(bytes: &[u8], id: &BatchId) -> std::result::Result<HashMap<String, DoneFile>, String> {
        let mut lines = bytes.split(|b| *b == b'\n').peekable();
        let header: BatchId = lines
            .next()
            .and_then(|l| serde_json::from_slice(l).ok())
            .ok_or_else(|| "it is corrupt (no header line)".to_owned())?;
        if header != *id {
            return Err(format!("it belongs to another batch (s3://{}/{})", header.bucket, header.prefix));
        }
        let mut done = HashMap::new();
        let mut number = 1;
        while let Some(line) = lines.next() {
            number += 1;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<DoneFile>(line) {
                Ok(d) => {
                    done.insert(d.key.clone(), d);
                }
                // The last line may be torn by a kill during its write: that file is redone.
                Err(_) if lines.peek().is_none() && !bytes.ends_with(b"\n") => {}
                Err(e) => return Err(format!("it is corrupt (line {number}: {e})")),
            }
        }
        Ok(done)
    }

    /// Files the previous run recorded.
    #[must_use]
    pub fn previous(&self) -> usize {
        self.previous.len()
    }

    /// The previous run's record of `key`, if it proves the file unchanged since (same size and
    /// modification time).
    #[must_use]
    pub fn proves(&self, key: &str, size: u64, mtime_ns: i128) -> Option<&DoneFile> {
        self.previous.get(key).filter(|d| d.size == size && d.mtime_ns == mtime_ns)
    }

    /// Records a confirmed file (one append; synced every [`SYNC_EVERY`] lines).
    pub fn record(&mut self, done: &DoneFile) -> Result<()> {
        let mut line = serde_json::to_vec(done).map_err(|e| self.err(e.to_string()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| self.err(format!("cannot write it: {e}")))?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes recorded lines to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.unsynced = 0;
        self.file.sync_data().map_err(|e| self.err(format!("cannot sync it: {e}")))
    }

    /// Removes the journal: the batch is done.
    pub fn remove(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(format!("cannot remove it: {e}"))),
        }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, problem: String) -> Error {
        Error::Journal { path: self.path.clone(), problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(dir: &Path) -> BatchId {
        BatchId::new("http://127.0.0.1:1", "bkt", "p/", &[dir.to_path_buf()]).unwrap()
    }

    fn done(key: &str) -> DoneFile {
        DoneFile { key: key.into(), size: 3, mtime_ns: 7, etag: "e".into(), checksum: Some("crc32c:AAAAAA==".into()) }
    }

    #[test]
    fn records_survive_and_prove_only_unchanged_files() {
        let d = tempfile::tempdir().unwrap();
        let id = id(d.path());
        let mut j = BatchJournal::open(&d.path().join("j"), &id).unwrap();
        assert_eq!(j.previous(), 0);
        j.record(&done("a")).unwrap();
        j.record(&done("b")).unwrap();
        drop(j);
        let j = BatchJournal::open(&d.path().join("j"), &id).unwrap();
        assert_eq!(j.previous(), 2);
        assert!(j.proves("a", 3, 7).is_some());
        assert!(j.proves("a", 4, 7).is_none(), "another size");
        assert!(j.proves("a", 3, 8).is_none(), "another mtime");
        assert!(j.proves("c", 3, 7).is_none());
        j.remove().unwrap();
        assert_eq!(BatchJournal::open(&d.path().join("j"), &id).unwrap().previous(), 0);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_torn_middle_is_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let id = id(d.path());
        let mut j = BatchJournal::open(&d.path().join("j"), &id).unwrap();
        j.record(&done("a")).unwrap();
        j.record(&done("b")).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 10]).unwrap();
        let j = BatchJournal::open(&d.path().join("j"), &id).unwrap();
        assert_eq!(j.previous(), 1, "the torn line for b is dropped");
        drop(j);
        let mut torn_middle = full[..full.len() - 10].to_vec();
        torn_middle.push(b'\n');
        torn_middle.extend_from_slice(&serde_json::to_vec(&done("c")).unwrap());
        torn_middle.push(b'\n');
        fs::write(&path, torn_middle).unwrap();
        let e = BatchJournal::open(&d.path().join("j"), &id).unwrap_err();
        assert!(e.to_string().contains("corrupt (line 3"), "{e}");
    }

    #[test]
    fn another_batch_under_the_same_name_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let id = id(d.path());
        let j = BatchJournal::open(&d.path().join("j"), &id).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        let other = BatchId { prefix: "q/".into(), ..id.clone() };
        fs::write(&path, [serde_json::to_vec(&other).unwrap(), b"\n".to_vec()].concat()).unwrap();
        let e = BatchJournal::open(&d.path().join("j"), &id).unwrap_err();
        assert!(e.to_string().contains("another batch"), "{e}");
    }
}
