//! The store's state: buckets, objects and multipart uploads, held in memory for fast listing and
//! mirrored record by record on disk (see `fs`) so a restart sees every acknowledged write.
//! Buckets live here, with their CORS rules (kept in the bucket record, so they go with the
//! bucket; what a rule means is `cors`'s); object and multipart operations are in `objects` and
//! `multipart`.
//!
//! Decision: one mutex over the whole state. Record writes under it are small (JSON + fsync);
//! body bytes are received and hashed outside it (see `ingest`), so uploads of many parts still
//! proceed in parallel.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use hoist_core::checksum::ChecksumAlgorithm;
use serde::{Deserialize, Serialize};

use crate::cors::{self, CorsRule};
use crate::error::{Error, Result};
use crate::fs::{Layout, read_json, remove_durable, write_json};
use crate::ingest::Ingester;

/// Longest key S3 accepts, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 1024;

/// How an object's checksum was formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChecksumKind {
    /// Checksum of checksums, `value-N` (multipart).
    Composite,
    /// Checksum of the whole object.
    FullObject,
}

impl ChecksumKind {
    /// The name S3 gives it (`x-amz-checksum-type`).
    pub(crate) fn s3_name(self) -> &'static str {
        match self {
            Self::Composite => "COMPOSITE",
            Self::FullObject => "FULL_OBJECT",
        }
    }

    /// Parses S3's name (any case).
    pub(crate) fn from_s3_name(name: &str) -> Option<Self> {
        [Self::Composite, Self::FullObject].into_iter().find(|k| k.s3_name().eq_ignore_ascii_case(name))
    }
}

/// A checksum kept with an object or part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredChecksum {
    pub(crate) algorithm: ChecksumAlgorithm,
    /// Base64 value (composite values carry `-N`).
    pub(crate) value: String,
    pub(crate) kind: ChecksumKind,
}

/// A piece of an object's data: a file under the data dir and its length. A multipart object has
/// one per part, in object order: the parts `partNumber` and `GetObjectAttributes` name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Segment {
    /// Path relative to the data dir, always one the store generated.
    pub(crate) path: String,
    pub(crate) len: u64,
    /// The part's own checksum (multipart objects; manifests written before it existed lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checksum: Option<StoredChecksum>,
}

/// An object's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectRecord {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// `ETag` without quotes.
    pub(crate) etag: String,
    /// Unix seconds.
    pub(crate) last_modified: i64,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) checksum: Option<StoredChecksum>,
    pub(crate) segments: Vec<Segment>,
    /// For a multipart object, the directory holding its parts (removed with it).
    pub(crate) parts_dir: Option<String>,
}

/// A bucket's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BucketRecord {
    name: String,
    created: i64,
    /// CORS rules (none: no CORS configuration). Records written before rules existed lack it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cors: Vec<CorsRule>,
}

/// A bucket in memory.
#[derive(Debug)]
pub(crate) struct BucketState {
    pub(crate) created: i64,
    pub(crate) objects: BTreeMap<String, ObjectRecord>,
    /// CORS rules, shared with the requests being answered (empty: none).
    cors: Arc<[CorsRule]>,
}

/// A multipart upload's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadRecord {
    pub(crate) id: String,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) initiated: i64,
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) checksum_algorithm: Option<ChecksumAlgorithm>,
    /// How the parts' checksums make the object's (`x-amz-checksum-type`); `None` in records
    /// written before it was kept (see [`UploadRecord::checksum_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checksum_type: Option<ChecksumKind>,
}

impl UploadRecord {
    /// The checksum type of the upload: as created, or S3's default for its algorithm
    /// (`FULL_OBJECT` for `CRC64NVME`, which has no composite form; `COMPOSITE` otherwise).
    pub(crate) fn checksum_kind(&self) -> Option<ChecksumKind> {
        let alg = self.checksum_algorithm?;
        Some(self.checksum_type.unwrap_or(if alg.supports_composite() {
            ChecksumKind::Composite
        } else {
            ChecksumKind::FullObject
        }))
    }
}

/// A stored part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartRecord {
    pub(crate) number: u32,
    pub(crate) size: u64,
    /// Hex MD5 (the part's `ETag` without quotes).
    pub(crate) md5: String,
    pub(crate) checksum: Option<StoredChecksum>,
    pub(crate) last_modified: i64,
    /// Data file name inside the upload's directory.
    pub(crate) file: String,
}

/// A multipart upload in memory.
#[derive(Debug)]
pub(crate) struct UploadState {
    pub(crate) record: UploadRecord,
    pub(crate) parts: BTreeMap<u32, PartRecord>,
}

/// What a completed upload produced, kept so that a repeated Complete returns the same answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CompletedRecord {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) etag: String,
    pub(crate) checksum: Option<StoredChecksum>,
    /// (part number, `ETag`) as given to the Complete that succeeded.
    pub(crate) parts: Vec<(i32, String)>,
}

/// Everything in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) buckets: BTreeMap<String, BucketState>,
    pub(crate) uploads: HashMap<String, UploadState>,
    pub(crate) completed: HashMap<String, CompletedRecord>,
}

/// The store's backend: layout + state.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) layout: Layout,
    /// Receives request bodies onto disk (its hashing threads end with the backend).
    pub(crate) ingester: Ingester,
    state: Mutex<State>,
    /// Smallest part allowed at Complete except the last (S3: 5 MiB).
    pub(crate) min_part_size: u64,
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// S3's bucket naming rules for general purpose buckets.
pub(crate) fn check_bucket_name(name: &str) -> Result<()> {
    if hoist_core::config::is_valid_bucket_name(name) { Ok(()) } else { Err(Error::InvalidBucketName(name.to_owned())) }
}

/// Keys are opaque but at most 1,024 bytes, not empty, and without characters that listings
/// cannot carry. XML 1.0 has no way to write C0 controls other than tab and line feeds, and
/// parsers turn a carriage return into a line feed, so one such key would make every listing of
/// its bucket unparsable (or name another key) for every client: all C0 controls are refused, and
/// U+FFFE/U+FFFF (not XML characters either); DEL and C1 controls are valid XML and stay allowed.
/// Refused rather than listed with `encoding-type=url`, which s3s 0.14 does not implement.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("the key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLong(key.len()));
    }
    if let Some((at, ch)) = key.char_indices().find(|&(_, c)| c < ' ' || c == '\u{fffe}' || c == '\u{ffff}') {
        return Err(Error::KeyControlCharacter { ch, at });
    }
    Ok(())
}

impl Backend {
    /// Opens (or creates) a data dir and loads its state.
    pub(crate) fn open(root: &Path, min_part_size: u64) -> Result<Self> {
        let layout = Layout::open(root)?;
        let state = load(&layout)?;
        Ok(Self { layout, ingester: Ingester::start()?, state: Mutex::new(state), min_part_size })
    }

    /// Locks the state (a poisoned lock is recovered: every mutation is written to disk first).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// CreateBucket.
    pub(crate) fn create_bucket(&self, name: &str) -> Result<()> {
        check_bucket_name(name)?;
        let mut st = self.state();
        if st.buckets.contains_key(name) {
            return Err(Error::BucketAlreadyOwnedByYou(name.to_owned()));
        }
        fs::create_dir_all(self.layout.objects_dir(name))?;
        let created = now();
        let record = BucketRecord { name: name.to_owned(), created, cors: Vec::new() };
        write_json(&self.layout, &self.layout.bucket_record(name), &record)?;
        st.buckets.insert(name.to_owned(), BucketState { created, objects: BTreeMap::new(), cors: Arc::default() });
        Ok(())
    }

    /// HeadBucket.
    pub(crate) fn head_bucket(&self, name: &str) -> Result<()> {
        if self.state().buckets.contains_key(name) { Ok(()) } else { Err(Error::NoSuchBucket(name.to_owned())) }
    }

    /// ListBuckets: (name, created).
    pub(crate) fn list_buckets(&self) -> Vec<(String, i64)> {
        self.state().buckets.iter().map(|(n, b)| (n.clone(), b.created)).collect()
    }

    /// DeleteBucket: only when it holds no objects. Incomplete multipart uploads do not keep a
    /// bucket alive (AWS deletes the bucket and drops them): each upload's record is removed
    /// first (once gone, the upload does not come back after a restart), then its parts.
    pub(crate) fn delete_bucket(&self, name: &str) -> Result<()> {
        let mut st = self.state();
        let bucket = st.buckets.get(name).ok_or_else(|| Error::NoSuchBucket(name.to_owned()))?;
        if !bucket.objects.is_empty() {
            return Err(Error::BucketNotEmpty(name.to_owned()));
        }
        let uploads: Vec<String> =
            st.uploads.iter().filter(|(_, u)| u.record.bucket == name).map(|(id, _)| id.clone()).collect();
        for id in &uploads {
            remove_durable(&self.layout.upload_dir(id).join("upload.json"))?;
            st.uploads.remove(id);
        }
        remove_durable(&self.layout.bucket_record(name))?;
        fs::remove_dir_all(self.layout.bucket_dir(name))?;
        st.buckets.remove(name);
        drop(st);
        for id in &uploads {
            let _ = fs::remove_dir_all(self.layout.upload_dir(id));
        }
        tracing::info!(bucket = name, uploads = uploads.len(), "bucket deleted with its incomplete uploads");
        Ok(())
    }

    /// A bucket's CORS rules (empty when it has none).
    pub(crate) fn bucket_cors(&self, name: &str) -> Result<Arc<[CorsRule]>> {
        let st = self.state();
        let bucket = st.buckets.get(name).ok_or_else(|| Error::NoSuchBucket(name.to_owned()))?;
        Ok(Arc::clone(&bucket.cors))
    }

    /// GetBucketCors.
    pub(crate) fn get_bucket_cors(&self, name: &str) -> Result<Arc<[CorsRule]>> {
        let rules = self.bucket_cors(name)?;
        if rules.is_empty() { Err(Error::NoSuchCorsConfiguration(name.to_owned())) } else { Ok(rules) }
    }

    /// PutBucketCors: replaces the bucket's rules once they are valid.
    pub(crate) fn put_bucket_cors(&self, name: &str, rules: Vec<CorsRule>) -> Result<()> {
        cors::validate(&rules)?;
        self.set_bucket_cors(name, rules)
    }

    /// DeleteBucketCors (a bucket without rules is fine, as on AWS).
    pub(crate) fn delete_bucket_cors(&self, name: &str) -> Result<()> {
        self.set_bucket_cors(name, Vec::new())
    }

    /// Rewrites the bucket record with `rules`, then makes them the ones requests see.
    fn set_bucket_cors(&self, name: &str, rules: Vec<CorsRule>) -> Result<()> {
        let mut st = self.state();
        let bucket = st.buckets.get_mut(name).ok_or_else(|| Error::NoSuchBucket(name.to_owned()))?;
        let record = BucketRecord { name: name.to_owned(), created: bucket.created, cors: rules };
        write_json(&self.layout, &self.layout.bucket_record(name), &record)?;
        tracing::info!(bucket = name, rules = record.cors.len(), "CORS configuration replaced");
        bucket.cors = record.cors.into();
        Ok(())
    }
}

/// Reads every record of a data dir into memory; finishes a Complete interrupted by a crash.
fn load(layout: &Layout) -> Result<State> {
    let mut st = State::default();
    for entry in fs::read_dir(layout.buckets_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rec) = read_json::<BucketRecord>(&layout.bucket_record(&name))? else { continue };
        let mut objects = BTreeMap::new();
        for obj in fs::read_dir(layout.objects_dir(&name))? {
            if let Some(o) = read_json::<ObjectRecord>(&obj?.path())? {
                objects.insert(o.key.clone(), o);
            }
        }
        st.buckets.insert(name, BucketState { created: rec.created, objects, cors: rec.cors.into() });
    }
    for entry in fs::read_dir(layout.root().join("completed"))? {
        let path = entry?.path();
        let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
        if let Some(c) = read_json::<CompletedRecord>(&path)? {
            // A crash between writing the object and moving the parts: finish the move.
            let pending = layout.upload_dir(&id);
            if pending.exists() {
                crate::fs::rename_durable(&pending, &layout.blob(&id))?;
            }
            st.completed.insert(id, c);
        }
    }
    for entry in fs::read_dir(layout.uploads_dir())? {
        let id = entry?.file_name().to_string_lossy().into_owned();
        let Some(record) = read_json::<UploadRecord>(&layout.upload_dir(&id).join("upload.json"))? else {
            continue;
        };
        let mut parts = BTreeMap::new();
        for p in fs::read_dir(layout.upload_dir(&id))? {
            let p = p?.path();
            let is_part = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-"));
            if is_part && let Some(part) = read_json::<PartRecord>(&p)? {
                parts.insert(part.number, part);
            }
        }
        st.uploads.insert(id, UploadState { record, parts });
    }
    Ok(st)
}
