//! Objects: put, read (whole or a range, streamed across segments), head, delete, list.
//!
//! An object is a manifest of segments (files under the data dir). A single PUT has one segment;
//! a completed multipart upload has one per part, so Complete never copies data.
//!
//! Conditional writes (`If-None-Match: *`, `If-Match: "etag"` on PutObject and Complete, as S3
//! has them since 2024): the condition is checked under the state lock, in the same step that
//! installs the new version, so of two writes racing with `If-None-Match: *` exactly one wins.
//!
//! Listing: a page's continuation token is its last entry, a key or a common prefix, as plain
//! text; a page resumed after a common prefix skips every key under it (see `list_objects`).

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::backend::{Backend, ObjectRecord, Segment, StoredChecksum, check_key, now};
use crate::error::{Error, Result};
use crate::fs::{new_id, remove_durable, rename_durable, write_json};
use crate::ingest::Ingested;

/// Size of the reads that serve GetObject.
const READ_CHUNK: usize = 256 * 1024;

/// What ListObjectsV2 returns.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) objects: Vec<ObjectRecord>,
    pub(crate) common_prefixes: Vec<String>,
    /// Set when truncated: the last entry returned (a key or a common prefix), to continue after
    /// with `resume`.
    pub(crate) next: Option<String>,
}

/// What a conditional write requires of the key's current object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WriteCondition {
    /// `If-None-Match: *`: the key must not exist.
    pub(crate) if_none_match: bool,
    /// `If-Match`: the key must exist, and have this `ETag` (without quotes) unless it is `*`.
    pub(crate) if_match: Option<String>,
}

impl WriteCondition {
    /// Checks the condition against the key's current object: `NoSuchKey` when `If-Match` finds
    /// no object (S3's answer), `PreconditionFailed` when either condition fails.
    pub(crate) fn check(&self, key: &str, current: Option<&ObjectRecord>) -> Result<()> {
        if self.if_none_match && current.is_some() {
            return Err(Error::PreconditionFailed(format!("If-None-Match: * but the key {key:?} exists")));
        }
        if let Some(want) = &self.if_match {
            let Some(current) = current else { return Err(Error::NoSuchKey(key.to_owned())) };
            if want != "*" && *want != current.etag {
                return Err(Error::PreconditionFailed(format!(
                    "If-Match: \"{want}\" but the key {key:?} has ETag \"{}\"",
                    current.etag
                )));
            }
        }
        Ok(())
    }
}

impl Backend {
    /// PutObject of an ingested body (already verified), with its content type and metadata.
    pub(crate) fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &Ingested,
        (content_type, metadata): (Option<String>, std::collections::BTreeMap<String, String>),
        checksum: Option<StoredChecksum>,
        condition: &WriteCondition,
    ) -> Result<ObjectRecord> {
        check_key(key)?;
        self.head_bucket(bucket)?;
        let blob = new_id();
        let blob_path = self.layout.blob(&blob);
        rename_durable(&body.tmp, &blob_path)?;
        let record = ObjectRecord {
            key: key.to_owned(),
            size: body.len,
            etag: hex::encode(body.md5),
            last_modified: now(),
            content_type,
            metadata,
            checksum,
            segments: vec![Segment { path: format!("blobs/{blob}"), len: body.len, checksum: None }],
            parts_dir: None,
        };
        if let Err(e) = self.install_object(bucket, record.clone(), condition) {
            let _ = std::fs::remove_file(&blob_path);
            return Err(e);
        }
        Ok(record)
    }

    /// Makes `record` the current version of its key (durably) if `condition` holds, then frees
    /// the old data.
    fn install_object(&self, bucket: &str, record: ObjectRecord, condition: &WriteCondition) -> Result<()> {
        let old = {
            let mut st = self.state();
            let b = st.buckets.get_mut(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
            condition.check(&record.key, b.objects.get(&record.key))?;
            write_json(&self.layout, &self.layout.object_record(bucket, &record.key), &record)?;
            b.objects.insert(record.key.clone(), record)
        };
        if let Some(old) = old {
            self.free_data(&old);
        }
        Ok(())
    }

    /// Removes an object's data files (best effort: a leftover file is only wasted space).
    fn free_data(&self, record: &ObjectRecord) {
        for s in &record.segments {
            let _ = std::fs::remove_file(self.layout.root().join(&s.path));
        }
        if let Some(dir) = &record.parts_dir {
            let _ = std::fs::remove_dir(self.layout.root().join(dir));
        }
    }

    /// HeadObject.
    pub(crate) fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        let st = self.state();
        let b = st.buckets.get(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
        b.objects.get(key).cloned().ok_or_else(|| Error::NoSuchKey(key.to_owned()))
    }

    /// DeleteObject (deleting a missing key succeeds, as in S3).
    pub(crate) fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let old = {
            let mut st = self.state();
            let b = st.buckets.get_mut(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
            if !b.objects.contains_key(key) {
                return Ok(());
            }
            remove_durable(&self.layout.object_record(bucket, key))?;
            b.objects.remove(key)
        };
        if let Some(old) = old {
            self.free_data(&old);
        }
        Ok(())
    }

    /// ListObjectsV2: keys under `prefix` after `after`, rolled up at `delimiter`, at most
    /// `max_keys` entries (keys and common prefixes together, in key order).
    ///
    /// `resume` says `after` is a continuation this listing gave out ([`Listing::next`]): the last
    /// entry of the previous page, a key or a common prefix. After a common prefix the next page
    /// starts past every key under it (else it would roll them up into the same prefix again,
    /// and a listing paged one entry at a time would never end). A continuation names a common
    /// prefix exactly when it is longer than `prefix` and ends with the delimiter: a key under
    /// `prefix` with the delimiter after `prefix` is always rolled up, never listed.
    pub(crate) fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        resume: bool,
        max_keys: usize,
    ) -> Result<Listing> {
        let st = self.state();
        let b = st.buckets.get(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let past_prefix = after.filter(|a| {
            resume && delimiter.is_some_and(|d| a.len() > prefix.len() && a.starts_with(prefix) && a.ends_with(d))
        });
        let mut out = Listing::default();
        let mut prefixes = BTreeSet::new();
        let mut last: Option<String> = None;
        let mut count = 0;
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a),
            _ => std::ops::Bound::Included(prefix),
        };
        for (key, rec) in b.objects.range::<str, _>((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break; // keys are sorted: past the prefix's range
            }
            if past_prefix.is_some_and(|p| key.starts_with(p)) {
                continue;
            }
            let rest = &key[prefix.len()..];
            let entry = match delimiter.and_then(|d| rest.find(d).map(|i| i + d.len())) {
                Some(end) => {
                    let p = &key[..prefix.len() + end];
                    if prefixes.contains(p) {
                        continue;
                    }
                    Some(p.to_owned())
                }
                None => None,
            };
            if count == max_keys {
                out.next = last;
                break;
            }
            count += 1;
            if let Some(p) = entry {
                last = Some(p.clone());
                prefixes.insert(p);
            } else {
                last = Some(key.clone());
                out.objects.push(rec.clone());
            }
        }
        out.common_prefixes = prefixes.into_iter().collect();
        Ok(out)
    }
}

/// Streams `range` of an object's bytes across its segments.
pub(crate) fn read_range(
    root: std::path::PathBuf,
    segments: Vec<Segment>,
    range: Range<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    futures::stream::unfold(
        (root, segments, 0usize, 0u64, range, None::<(tokio::fs::File, u64)>),
        |(root, segments, mut seg, mut seg_start, range, mut open)| async move {
            loop {
                if range.start >= range.end || seg >= segments.len() {
                    return None;
                }
                let s = &segments[seg];
                let seg_end = seg_start + s.len;
                if seg_end <= range.start {
                    seg += 1;
                    seg_start = seg_end;
                    open = None;
                    continue;
                }
                if open.is_none() {
                    let file = match tokio::fs::File::open(root.join(&s.path)).await {
                        Ok(f) => f,
                        Err(e) => return Some((Err(e), (root, segments, usize::MAX, 0, range, None))),
                    };
                    let mut f = file;
                    let offset = range.start - seg_start;
                    if let Err(e) = f.seek(std::io::SeekFrom::Start(offset)).await {
                        return Some((Err(e), (root, segments, usize::MAX, 0, range, None)));
                    }
                    open = Some((f, offset));
                }
                let (file, _) = open.as_mut()?;
                let want = (range.end.min(seg_end) - range.start).min(READ_CHUNK as u64);
                #[allow(clippy::cast_possible_truncation)] // want ≤ READ_CHUNK
                let mut buf = vec![0u8; want as usize];
                match file.read_exact(&mut buf).await {
                    Ok(_) => {
                        let mut range = range;
                        range.start += want;
                        if range.start >= seg_end {
                            seg += 1;
                            seg_start = seg_end;
                            open = None;
                        }
                        return Some((Ok(Bytes::from(buf)), (root, segments, seg, seg_start, range, open)));
                    }
                    Err(e) => return Some((Err(e), (root, segments, usize::MAX, 0, range, None))),
                }
            }
        },
    )
}
