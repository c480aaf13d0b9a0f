//! On-disk layout and durable writes. Owns paths and the rules that make a crash safe; knows
//! nothing about S3.
//!
//! ```text
//! DATA/
//!   credentials.json              generated access/secret key (when none was given)
//!   tmp/                          files being written; emptied at start-up
//!   blobs/<id>                    object data (single PUTs; completed parts are renamed here)
//!   buckets/<name>/bucket.json    bucket record: creation time, CORS rules
//!   buckets/<name>/notification.json   event notification rules (see `notify`)
//!   buckets/<name>/objects/<sha256(key)>.json   object manifest: key, size, ETag, segments
//!   uploads/<upload id>/upload.json             multipart upload record
//!   uploads/<upload id>/part-<n>.json           part record (points at its data file)
//!   uploads/<upload id>/<id>.part               part data
//!   completed/<upload id>.json    result of a completed upload, so a repeated Complete succeeds
//!   notify/<target>/<sequencer>.json  an event notification not yet accepted by its target
//! ```
//!
//! Decisions: keys never become paths (a key's file name is its SHA-256), bucket names are
//! validated before use, and upload ids and blob ids are generated hex, checked on input; so no
//! request can name a path outside the data dir. Every record is written to `tmp/`, fsynced,
//! renamed into place, and its directory fsynced: a 200 means the bytes are on disk and a crash
//! leaves either the old or the new record, never half of one.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rand::RngCore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

/// Paths inside one data dir.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the directory tree (if missing) and empties `tmp/`.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        for d in ["tmp", "blobs", "buckets", "uploads", "completed"] {
            fs::create_dir_all(root.join(d))?;
        }
        let layout = Self { root: root.to_path_buf() };
        for entry in fs::read_dir(layout.tmp_dir())? {
            let path = entry?.path();
            tracing::debug!(?path, "removing stale temp file");
            let _ = fs::remove_file(&path);
        }
        Ok(layout)
    }

    /// The data dir.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh path in `tmp/`.
    pub(crate) fn tmp_file(&self) -> PathBuf {
        self.tmp_dir().join(new_id())
    }

    pub(crate) fn blob(&self, id: &str) -> PathBuf {
        self.root.join("blobs").join(id)
    }

    pub(crate) fn buckets_dir(&self) -> PathBuf {
        self.root.join("buckets")
    }

    pub(crate) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.buckets_dir().join(bucket)
    }

    pub(crate) fn bucket_record(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("bucket.json")
    }

    pub(crate) fn notification_record(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("notification.json")
    }

    /// The queue directory of a notification target (names are checked by `notify`).
    pub(crate) fn notify_queue(&self, target: &str) -> PathBuf {
        self.root.join("notify").join(target)
    }

    pub(crate) fn objects_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("objects")
    }

    pub(crate) fn object_record(&self, bucket: &str, key: &str) -> PathBuf {
        self.objects_dir(bucket).join(format!("{}.json", hex::encode(Sha256::digest(key.as_bytes()))))
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub(crate) fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.uploads_dir().join(upload_id)
    }

    pub(crate) fn part_record(&self, upload_id: &str, number: u32) -> PathBuf {
        self.upload_dir(upload_id).join(format!("part-{number}.json"))
    }

    pub(crate) fn part_data(&self, upload_id: &str, file: &str) -> PathBuf {
        self.upload_dir(upload_id).join(file)
    }

    pub(crate) fn completed_record(&self, upload_id: &str) -> PathBuf {
        self.root.join("completed").join(format!("{upload_id}.json"))
    }
}

/// A random 128-bit id in lowercase hex: upload ids, blob ids, temp names.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// An id of the same shape as [`new_id`]'s whose first 16 hex digits are the wall-clock time in
/// nanoseconds (then 64 random bits): ids made later sort later, so the ids of one key's
/// multipart uploads sort in the order the uploads began (see `multipart::list_uploads`).
pub(crate) fn new_ordered_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    format!("{:016x}{}", u64::try_from(nanos).unwrap_or(u64::MAX), hex::encode(b))
}

/// Whether `s` looks like an id from [`new_id`] (so it is safe as a file name).
pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Writes `value` as JSON to `path` atomically and durably.
pub(crate) fn write_json<T: Serialize>(layout: &Layout, path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let tmp = layout.tmp_file();
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    rename_durable(&tmp, path)
}

/// Reads a JSON record; `Ok(None)` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Renames `from` to `to` and fsyncs `to`'s directory so the rename survives a crash.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_parent(to)
}

/// Removes a file and fsyncs its directory; a missing file is fine.
pub(crate) fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fsyncs the directory containing `path`.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_checked() {
        let id = new_id();
        assert!(is_id(&id));
        let (a, b) = (new_ordered_id(), new_ordered_id());
        assert!(is_id(&a) && is_id(&b));
        assert!(a < b, "{a} then {b}");
        for bad in ["", "../../etc", "ABCDEF0123456789ABCDEF0123456789", &format!("{id}/x")] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn keys_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        for key in ["../../escape", "/etc/passwd", "a/b/../b/c", "..", "\0"] {
            let p = layout.object_record("bucket", key);
            assert_eq!(p.parent().unwrap(), layout.objects_dir("bucket"), "{key}");
        }
    }

    #[test]
    fn json_records_round_trip_and_tmp_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let path = dir.path().join("rec.json");
        write_json(&layout, &path, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(read_json::<Vec<i32>>(&dir.path().join("none.json")).unwrap(), None);
        fs::write(layout.tmp_file(), b"half").unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(layout.tmp_dir()).unwrap().count(), 0);
    }
}
