//! Resume state: one journal file per (endpoint, bucket, key, source file), holding the upload
//! id, the part size, the checksum algorithm, a fingerprint of the source and every part the
//! store confirmed. It is rewritten after each confirmed part: temp file, fsync, rename, fsync of
//! the directory, so a crash (even a kill -9 during the write) leaves the old or the new version,
//! never a torn one. A file that does not parse (edited, truncated by a disk fault) is reported as
//! corrupt, never silently trusted.
//!
//! On resume the store's ListParts is the truth: a journal part is skipped only if the store
//! lists it with the same size and `ETag` (see [`Journal::confirmed_by`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::client::PartInfo;
use crate::config::MIB;
use crate::error::{Error, Result};

/// Format version written into every journal.
const VERSION: u32 = 1;

/// How a journal names a stream's source: this prefix, then the stream's resume key.
pub const STREAM_SOURCE_PREFIX: &str = "stdin:";

/// Identity of a source file: size, modification time, and CRC32C of its first and last MiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// CRC32C (base64) of the first MiB followed by the last MiB.
    pub head_tail_crc32c: String,
}

impl Fingerprint {
    /// Fingerprints a file.
    pub fn of(path: &Path) -> Result<Self> {
        let err = |source| Error::Source { path: path.display().to_string(), source };
        let mut f = File::open(path).map_err(err)?;
        let meta = f.metadata().map_err(err)?;
        let size = meta.len();
        let mut buf = Vec::with_capacity(2 * 1024 * 1024);
        (&mut f).take(MIB).read_to_end(&mut buf).map_err(err)?;
        if size > 2 * MIB {
            f.seek(SeekFrom::Start(size - MIB)).map_err(err)?;
            f.take(MIB).read_to_end(&mut buf).map_err(err)?;
        } else {
            buf.clear();
            File::open(path).map_err(err)?.read_to_end(&mut buf).map_err(err)?;
        }
        Ok(Self {
            size,
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            head_tail_crc32c: Checksum::of(ChecksumAlgorithm::Crc32c, &buf).to_base64(),
        })
    }
}

/// A part the store confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPart {
    /// Size in bytes.
    pub size: u64,
    /// `ETag` without quotes.
    pub etag: String,
    /// Checksum (base64) of the journal's algorithm, if one was sent.
    pub checksum: Option<String>,
}

/// The resume state of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// Endpoint URL (empty for AWS's default).
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Absolute path of the source file.
    pub source: PathBuf,
    /// Multipart upload id; empty while CreateMultipartUpload is in flight.
    pub upload_id: String,
    /// Part size of the plan (every part but the last).
    pub part_size: u64,
    /// Checksum algorithm sent with parts.
    pub checksum: Option<ChecksumAlgorithm>,
    /// The upload was created with `FULL_OBJECT` checksums (its Complete must say so too);
    /// journals written before this field existed are `COMPOSITE`.
    #[serde(default)]
    pub full_object: bool,
    /// The source when the upload started.
    pub fingerprint: Fingerprint,
    /// Unix seconds when the upload started.
    pub started: i64,
    /// Confirmed parts by number.
    pub parts: BTreeMap<u32, JournalPart>,
}

impl Journal {
    /// Parts of this journal that the store still lists with the same size and `ETag` (and
    /// checksum, where both have one); everything else must be uploaded again.
    #[must_use]
    pub fn confirmed_by(&self, listed: &[PartInfo]) -> BTreeMap<u32, JournalPart> {
        let by_number: BTreeMap<u32, &PartInfo> = listed.iter().map(|p| (p.number, p)).collect();
        self.parts
            .iter()
            .filter(|(n, j)| {
                by_number.get(n).is_some_and(|l| {
                    l.size == j.size
                        && l.etag == j.etag
                        && match (&j.checksum, &l.checksum) {
                            (Some(a), Some(b)) => *a == b.to_base64(),
                            _ => true,
                        }
                })
            })
            .map(|(n, j)| (*n, j.clone()))
            .collect()
    }
}

/// The directory of journals.
#[derive(Debug, Clone)]
pub struct JournalStore {
    dir: PathBuf,
}

/// The identity a journal is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalKey<'a> {
    /// Endpoint URL (empty for AWS's default).
    pub endpoint: &'a str,
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// Absolute source path.
    pub source: &'a Path,
}

impl JournalStore {
    /// Journals in `dir` (created on first save).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes temp files that a killed writer left behind (`*.tmpPID`), when older than
    /// `older_than` (a live writer's temp file exists for milliseconds). Returns how many.
    #[must_use = "the count says whether anything was cleaned"]
    pub fn remove_stale_temp_files(&self, older_than: std::time::Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let now = std::time::SystemTime::now();
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().and_then(|x| x.to_str()).is_some_and(|x| x.starts_with("tmp")))
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= older_than)
            })
            .filter(|e| fs::remove_file(e.path()).is_ok())
            .count()
    }

    fn path(&self, k: &JournalKey<'_>) -> PathBuf {
        let mut h = Sha256::new();
        for part in
            [k.endpoint.as_bytes(), k.bucket.as_bytes(), k.key.as_bytes(), k.source.as_os_str().as_encoded_bytes()]
        {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        self.dir.join(format!("{}.json", &hex::encode(h.finalize())[..32]))
    }

    /// The journal for `k`, if one exists. A journal that does not parse, or that names another
    /// destination, is an [`Error::Journal`].
    pub fn load(&self, k: &JournalKey<'_>) -> Result<Option<Journal>> {
        let path = self.path(k);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Journal { path, problem: e.to_string() }),
        };
        let j: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Journal { path: path.clone(), problem: format!("it is corrupt ({e})") })?;
        if j.version != VERSION {
            return Err(Error::Journal {
                path,
                problem: format!("it has format version {}, expected {VERSION}", j.version),
            });
        }
        if j.endpoint != k.endpoint || j.bucket != k.bucket || j.key != k.key || j.source != k.source {
            return Err(Error::Journal {
                path,
                problem: format!(
                    "it belongs to another upload (s3://{}/{} from {})",
                    j.bucket,
                    j.key,
                    j.source.display()
                ),
            });
        }
        Ok(Some(j))
    }

    /// Writes `j` atomically and durably.
    pub fn save(&self, j: &Journal) -> Result<()> {
        let key = JournalKey { endpoint: &j.endpoint, bucket: &j.bucket, key: &j.key, source: &j.source };
        let path = self.path(&key);
        let io = |e: std::io::Error| Error::Journal { path: path.clone(), problem: format!("cannot write it: {e}") };
        fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(j).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// Removes the journal of `j`'s upload (a missing one is fine).
    pub fn remove(&self, j: &Journal) -> Result<()> {
        let key = JournalKey { endpoint: &j.endpoint, bucket: &j.bucket, key: &j.key, source: &j.source };
        let path = self.path(&key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Journal { path, problem: format!("cannot remove it: {e}") }),
        }
    }

    /// Every readable journal (corrupt ones are skipped with a warning), oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<Journal> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<Journal> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                if let Ok(Ok(j)) = fs::read(&p).map(|b| serde_json::from_slice::<Journal>(&b)) {
                    Some(j)
                } else {
                    tracing::warn!(path = %p.display(), "skipping an unreadable journal");
                    None
                }
            })
            .collect();
        out.sort_by_key(|j| j.started);
        out
    }

    /// Starts a new journal (not yet saved).
    #[must_use]
    pub fn start(
        k: &JournalKey<'_>,
        upload_id: String,
        part_size: u64,
        checksum: Option<ChecksumAlgorithm>,
        fingerprint: Fingerprint,
    ) -> Journal {
        Journal {
            version: VERSION,
            endpoint: k.endpoint.to_owned(),
            bucket: k.bucket.to_owned(),
            key: k.key.to_owned(),
            source: k.source.to_path_buf(),
            upload_id,
            part_size,
            checksum,
            full_object: false,
            fingerprint,
            started: time::OffsetDateTime::now_utc().unix_timestamp(),
            parts: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::new(dir.path());
        let old = dir.path().join("abc.tmp123");
        let fresh = dir.path().join("def.tmp456");
        let journal = dir.path().join("abc.json");
        for p in [&old, &fresh, &journal] {
            fs::write(p, b"{").unwrap();
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_hours(1);
        File::options().write(true).open(&old).unwrap().set_modified(an_hour_ago).unwrap();
        File::options().write(true).open(&journal).unwrap().set_modified(an_hour_ago).unwrap();
        assert_eq!(store.remove_stale_temp_files(std::time::Duration::from_mins(1)), 1);
        assert!(!old.exists() && fresh.exists() && journal.exists());
    }

    fn key(source: &Path) -> JournalKey<'_> {
        JournalKey { endpoint: "http://127.0.0.1:1", bucket: "bkt", key: "k", source }
    }

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![1u8; 3 * 1024 * 1024]).unwrap();
        let store = JournalStore::new(dir.path().join("j"));
        let k = key(&src);
        assert_eq!(store.load(&k).unwrap(), None);
        let mut j = JournalStore::start(
            &k,
            "id".into(),
            5 * MIB,
            Some(ChecksumAlgorithm::Crc32c),
            Fingerprint::of(&src).unwrap(),
        );
        j.parts.insert(1, JournalPart { size: 5, etag: "e".into(), checksum: None });
        store.save(&j).unwrap();
        assert_eq!(store.load(&k).unwrap(), Some(j.clone()));
        assert_eq!(store.list().len(), 1);
        store.remove(&j).unwrap();
        assert_eq!(store.load(&k).unwrap(), None);
    }

    #[test]
    fn corrupt_and_foreign_journals_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let store = JournalStore::new(dir.path().join("j"));
        let k = key(&src);
        let j = JournalStore::start(&k, "id".into(), 5 * MIB, None, Fingerprint::of(&src).unwrap());
        store.save(&j).unwrap();
        let path = store.path(&k);
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() / 2]).unwrap();
        let e = store.load(&k).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        // A journal copied under another destination's name.
        let mut other = j.clone();
        other.key = "elsewhere".into();
        fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let e = store.load(&k).unwrap_err();
        assert!(e.to_string().contains("another upload"), "{e}");
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![0u8; 4 * 1024 * 1024]).unwrap();
        let a = Fingerprint::of(&src).unwrap();
        let mut data = vec![0u8; 4 * 1024 * 1024];
        data[4 * 1024 * 1024 - 1] = 1;
        fs::write(&src, &data).unwrap();
        let b = Fingerprint::of(&src).unwrap();
        assert_ne!(a.head_tail_crc32c, b.head_tail_crc32c);
    }

    #[test]
    fn only_parts_the_store_lists_identically_count() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let mut j = JournalStore::start(&key(&src), "id".into(), 5, None, Fingerprint::of(&src).unwrap());
        for n in 1..=3 {
            j.parts.insert(n, JournalPart { size: 5, etag: format!("e{n}"), checksum: None });
        }
        let listed = vec![
            PartInfo { number: 1, size: 5, etag: "e1".into(), checksum: None },
            PartInfo { number: 2, size: 5, etag: "other".into(), checksum: None },
            PartInfo { number: 4, size: 5, etag: "e4".into(), checksum: None },
        ];
        let ok = j.confirmed_by(&listed);
        assert_eq!(ok.keys().copied().collect::<Vec<_>>(), vec![1]);
    }
}
