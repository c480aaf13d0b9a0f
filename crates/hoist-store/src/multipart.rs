//! Multipart uploads: create, upload part, list parts, complete, abort, list uploads, with S3's
//! rules (see issue 2): part numbers 1..=10,000; a repeated part replaces the earlier one;
//! Complete checks every listed part exists with a matching `ETag` (`InvalidPart`), ascending order
//! (`InvalidPartOrder`), gaps allowed, every part but the last ≥ 5 MiB (`EntityTooSmall`), empty
//! list → `MalformedXML`; after Abort every call → `NoSuchUpload`; a repeated Complete with the same
//! parts returns the first result. Upload ids begin with their creation time, so that one key's
//! uploads list in the order they began and page by id (see `list_uploads`).
//!
//! Checksum types (`x-amz-checksum-type`, as S3 has them since 2025): an upload created with a
//! CRC algorithm and `FULL_OBJECT` gets the CRC of the whole object, combined at Complete from
//! the parts' CRCs and lengths (`checksum::combine_full_object`, no data re-read); `COMPOSITE`
//! (the default, except for `CRC64NVME` which has only the full-object form) gets the checksum of
//! the part checksums, `-N`. A whole-object value sent with Complete is checked against the
//! result (`BadDigest`); so are `x-amz-checksum-type` and `x-amz-mp-object-size` when sent.
//! Every refusal, a failed write condition included, leaves the upload in place.
//!
//! Complete is O(parts): the object's manifest lists the part files, and the upload's directory
//! is renamed into `blobs/` in one step. Order on disk: completed record and object manifest first,
//! then the rename; start-up finishes a rename a crash interrupted (see `backend::load`).

use std::collections::BTreeMap;

use hoist_core::checksum::{self, Checksum, ChecksumAlgorithm};

use crate::backend::{
    Backend, ChecksumKind, CompletedRecord, ObjectRecord, PartRecord, Segment, StoredChecksum, UploadRecord,
    UploadState, check_key, now,
};
use crate::error::{Error, Result};
use crate::fs::{is_id, new_id, new_ordered_id, remove_durable, rename_durable, write_json};
use crate::ingest::Ingested;
use crate::objects::WriteCondition;

/// S3's smallest part (except the last), from core's one definition of S3's limits.
pub(crate) const MIN_PART_SIZE: u64 = hoist_core::ProviderLimits::AWS.min_part_size;
/// S3's highest part number, from core's one definition of S3's limits (10,000 fits an i32).
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
pub(crate) const MAX_PART_NUMBER: i32 = hoist_core::ProviderLimits::AWS.max_parts as i32;

/// One entry of a Complete request.
#[derive(Debug, Clone)]
pub(crate) struct CompletePart {
    pub(crate) number: i32,
    pub(crate) etag: String,
}

/// What a Complete asks for besides its part list.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompleteOptions {
    /// `If-None-Match` / `If-Match`.
    pub(crate) condition: WriteCondition,
    /// `x-amz-checksum-type`, when sent: it must be the upload's.
    pub(crate) checksum_type: Option<ChecksumKind>,
    /// A whole-object checksum the client computed (`x-amz-checksum-*`).
    pub(crate) checksum: Option<(ChecksumAlgorithm, String)>,
    /// `x-amz-mp-object-size`, when sent: the object's size must be it.
    pub(crate) object_size: Option<i64>,
}

impl CompleteOptions {
    /// What is checked before the parts: the write condition against the key's current object,
    /// and the checksum type against the upload's.
    fn check_before(&self, upload: &UploadRecord, current: Option<&ObjectRecord>) -> Result<()> {
        self.condition.check(&upload.key, current)?;
        if let Some(asked) = self.checksum_type
            && upload.checksum_kind() != Some(asked)
        {
            return Err(Error::InvalidRequest(format!(
                "the upload was created with checksum type {}; Complete must send the same x-amz-checksum-type",
                upload.checksum_kind().map_or("none", ChecksumKind::s3_name)
            )));
        }
        Ok(())
    }

    /// What is checked of the object the parts make: its size and whole-object checksum.
    fn check_result(&self, size: u64, made: Option<&StoredChecksum>) -> Result<()> {
        if let Some(want) = self.object_size
            && u64::try_from(want).ok() != Some(size)
        {
            return Err(Error::InvalidRequest(format!(
                "x-amz-mp-object-size is {want} but the listed parts hold {size} bytes"
            )));
        }
        match &self.checksum {
            Some((alg, value)) => check_whole_checksum(*alg, value, made),
            None => Ok(()),
        }
    }
}

/// The checksum type for an upload created with `algorithm` and `requested` type, as S3 rules:
/// a type needs an algorithm, `FULL_OBJECT` needs a CRC, `COMPOSITE` is not for `CRC64NVME`.
pub(crate) fn checksum_type_for(
    algorithm: Option<ChecksumAlgorithm>,
    requested: Option<ChecksumKind>,
) -> Result<Option<ChecksumKind>> {
    match (algorithm, requested) {
        (None, Some(_)) => Err(Error::InvalidRequest(
            "x-amz-checksum-type needs x-amz-checksum-algorithm: name the algorithm (for example CRC32C) too".into(),
        )),
        (Some(a), Some(ChecksumKind::FullObject)) if !a.supports_full_object() => Err(Error::InvalidRequest(format!(
            "the FULL_OBJECT checksum type is not supported with {}: use CRC32, CRC32C or CRC64NVME, or COMPOSITE",
            a.s3_name()
        ))),
        (Some(a), Some(ChecksumKind::Composite)) if !a.supports_composite() => Err(Error::InvalidRequest(format!(
            "the COMPOSITE checksum type is not supported with {}: use FULL_OBJECT",
            a.s3_name()
        ))),
        (_, requested) => Ok(requested),
    }
}

/// Checks a part number from a request.
pub(crate) fn check_part_number(n: i32) -> Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n.unsigned_abs())
    } else {
        Err(Error::InvalidArgument(format!(
            "part number {n} is out of range: it must be an integer between 1 and 10000"
        )))
    }
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

impl Backend {
    /// CreateMultipartUpload → the new upload's record.
    pub(crate) fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
        checksum_algorithm: Option<ChecksumAlgorithm>,
        checksum_type: Option<ChecksumKind>,
    ) -> Result<UploadRecord> {
        check_key(key)?;
        self.head_bucket(bucket)?;
        let checksum_type = checksum_type_for(checksum_algorithm, checksum_type)?;
        let id = new_ordered_id();
        let record = UploadRecord {
            id: id.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated: now(),
            content_type,
            metadata,
            checksum_algorithm,
            checksum_type,
        };
        let dir = self.layout.upload_dir(&id);
        std::fs::create_dir(&dir)?;
        write_json(&self.layout, &dir.join("upload.json"), &record)?;
        crate::fs::sync_parent(&dir)?;
        self.state().uploads.insert(id, UploadState { record: record.clone(), parts: BTreeMap::new() });
        Ok(record)
    }

    /// The upload's record, checking it belongs to `bucket`/`key`.
    pub(crate) fn upload(&self, bucket: &str, key: &str, id: &str) -> Result<UploadRecord> {
        let st = self.state();
        st.uploads
            .get(id)
            .filter(|u| u.record.bucket == bucket && u.record.key == key)
            .map(|u| u.record.clone())
            .ok_or_else(|| Error::NoSuchUpload(id.to_owned()))
    }

    /// UploadPart of an ingested, verified body.
    pub(crate) fn put_part(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        body: &Ingested,
        checksum: Option<StoredChecksum>,
    ) -> Result<PartRecord> {
        let file = format!("{}.part", new_id());
        let part = PartRecord {
            number,
            size: body.len,
            md5: hex::encode(body.md5),
            checksum,
            last_modified: now(),
            file: file.clone(),
        };
        let mut st = self.state();
        let upload = st
            .uploads
            .get_mut(id)
            .filter(|u| u.record.bucket == bucket && u.record.key == key)
            .ok_or_else(|| Error::NoSuchUpload(id.to_owned()))?;
        let data = self.layout.part_data(id, &file);
        rename_durable(&body.tmp, &data)?;
        if let Err(e) = write_json(&self.layout, &self.layout.part_record(id, number), &part) {
            let _ = std::fs::remove_file(&data);
            return Err(e.into());
        }
        if let Some(old) = upload.parts.insert(number, part.clone()) {
            let _ = std::fs::remove_file(self.layout.part_data(id, &old.file));
        }
        Ok(part)
    }

    /// ListParts: parts after `marker`, ascending, at most `max`; plus whether more remain.
    pub(crate) fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        marker: u32,
        max: usize,
    ) -> Result<(UploadRecord, Vec<PartRecord>, bool)> {
        let st = self.state();
        let u = st
            .uploads
            .get(id)
            .filter(|u| u.record.bucket == bucket && u.record.key == key)
            .ok_or_else(|| Error::NoSuchUpload(id.to_owned()))?;
        let mut parts: Vec<PartRecord> =
            u.parts.range(marker.saturating_add(1)..).take(max + 1).map(|(_, p)| p.clone()).collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok((u.record.clone(), parts, truncated))
    }

    /// AbortMultipartUpload: removes the upload and its parts.
    pub(crate) fn abort_upload(&self, bucket: &str, key: &str, id: &str) -> Result<()> {
        let mut st = self.state();
        if !st.uploads.get(id).is_some_and(|u| u.record.bucket == bucket && u.record.key == key) {
            return Err(Error::NoSuchUpload(id.to_owned()));
        }
        let dir = self.layout.upload_dir(id);
        // Remove the record first: once it is gone the upload no longer exists after a restart.
        remove_durable(&dir.join("upload.json"))?;
        st.uploads.remove(id);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// ListMultipartUploads: uploads of `bucket` under `prefix`, ordered by key and then upload
    /// id, after the (key, id) marker (S3: "uploads for a key equal to the key-marker are
    /// included only if their upload ID is lexicographically greater than the upload-id-marker").
    ///
    /// Decision: S3 lists one key's uploads in the order they began, and pages them by id. Both
    /// hold only if ids sort in the order uploads begin, so upload ids start with their creation
    /// time (`fs::new_ordered_id`): ordering by the initiation time (whole seconds) while paging
    /// by a random id would skip an upload whose id sorted below the marker's but began a second
    /// later. Uploads made by an older store (random ids) are still each listed once, in
    /// id order.
    pub(crate) fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        id_marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<UploadRecord>, bool)> {
        self.head_bucket(bucket)?;
        let st = self.state();
        let mut all: Vec<&UploadRecord> = st
            .uploads
            .values()
            .map(|u| &u.record)
            .filter(|r| r.bucket == bucket && r.key.starts_with(prefix))
            .collect();
        all.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
        let after = |r: &&UploadRecord| match (key_marker, id_marker) {
            (None, _) => true,
            (Some(k), None) => r.key.as_str() > k,
            (Some(k), Some(i)) => r.key.as_str() > k || (r.key == k && r.id.as_str() > i),
        };
        let mut out: Vec<UploadRecord> = all.into_iter().filter(after).take(max + 1).cloned().collect();
        let truncated = out.len() > max;
        out.truncate(max);
        Ok((out, truncated))
    }

    /// CompleteMultipartUpload.
    pub(crate) fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        parts: &[CompletePart],
        options: &CompleteOptions,
    ) -> Result<CompletedRecord> {
        if parts.is_empty() {
            return Err(Error::MalformedXml(
                "the XML you provided did not validate: CompleteMultipartUpload needs at least one Part".into(),
            ));
        }
        let given: Vec<(i32, String)> = parts.iter().map(|p| (p.number, unquote(&p.etag).to_owned())).collect();
        let mut st = self.state();
        if let Some(done) = st.completed.get(id) {
            // A retried Complete (the first response was lost) gets the same answer.
            if done.bucket == bucket && done.key == key && done.parts == given {
                return Ok(done.clone());
            }
            return Err(Error::NoSuchUpload(id.to_owned()));
        }
        let upload = st
            .uploads
            .get(id)
            .filter(|u| u.record.bucket == bucket && u.record.key == key)
            .ok_or_else(|| Error::NoSuchUpload(id.to_owned()))?;
        let bucket_state = st.buckets.get(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
        options.check_before(&upload.record, bucket_state.objects.get(key))?;
        let mut chosen: Vec<&PartRecord> = Vec::with_capacity(parts.len());
        for (i, (number, etag)) in given.iter().enumerate() {
            if i > 0 && *number <= given[i - 1].0 {
                return Err(Error::InvalidPartOrder);
            }
            let n = check_part_number(*number)?;
            let part = upload.parts.get(&n).filter(|p| p.md5 == *etag).ok_or(Error::InvalidPart(*number))?;
            chosen.push(part);
        }
        for p in &chosen[..chosen.len() - 1] {
            if p.size < self.min_part_size {
                return Err(Error::EntityTooSmall(i32::try_from(p.number).unwrap_or(i32::MAX)));
            }
        }
        let md5s: Vec<[u8; 16]> = chosen.iter().filter_map(|p| checksum::etag_to_md5(&p.md5)).collect();
        let etag = checksum::multipart_etag(&md5s);
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        let object_checksum = combined_checksum(&upload.record, &chosen);
        options.check_result(size, object_checksum.as_ref())?;
        let done = CompletedRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.clone(),
            checksum: object_checksum.clone(),
            parts: given,
        };
        let record = ObjectRecord {
            key: key.to_owned(),
            size,
            etag,
            last_modified: now(),
            content_type: upload.record.content_type.clone(),
            metadata: upload.record.metadata.clone(),
            checksum: object_checksum,
            segments: chosen
                .iter()
                .map(|p| Segment { path: format!("blobs/{id}/{}", p.file), len: p.size, checksum: p.checksum.clone() })
                .collect(),
            parts_dir: Some(format!("blobs/{id}")),
        };
        let unused: Vec<String> = upload
            .parts
            .values()
            .filter(|p| !chosen.iter().any(|c| c.number == p.number))
            .map(|p| p.file.clone())
            .collect();
        write_json(&self.layout, &self.layout.completed_record(id), &done)?;
        let old = {
            let b = st.buckets.get_mut(bucket).ok_or_else(|| Error::NoSuchBucket(bucket.to_owned()))?;
            write_json(&self.layout, &self.layout.object_record(bucket, key), &record)?;
            b.objects.insert(key.to_owned(), record)
        };
        let dir = self.layout.upload_dir(id);
        remove_durable(&dir.join("upload.json"))?;
        for f in unused {
            let _ = std::fs::remove_file(dir.join(f));
        }
        rename_durable(&dir, &self.layout.blob(id))?;
        st.uploads.remove(id);
        st.completed.insert(id.to_owned(), done.clone());
        drop(st);
        if let Some(old) = old {
            for s in &old.segments {
                let _ = std::fs::remove_file(self.layout.root().join(&s.path));
            }
            if let Some(d) = &old.parts_dir {
                let _ = std::fs::remove_dir_all(self.layout.root().join(d));
            }
        }
        Ok(done)
    }

    /// Whether `id` has the shape of an upload id (anything else cannot exist).
    pub(crate) fn check_upload_id(id: &str) -> Result<()> {
        if is_id(id) { Ok(()) } else { Err(Error::NoSuchUpload(id.to_owned())) }
    }
}

/// The object checksum S3 reports after Complete, when every part carried one of the upload's
/// algorithm: of the upload's type (see [`UploadRecord::checksum_kind`]); for an upload created
/// without an algorithm, composite of the parts' common one (full-object for `CRC64NVME`).
fn combined_checksum(upload: &UploadRecord, parts: &[&PartRecord]) -> Option<StoredChecksum> {
    let algorithm = upload.checksum_algorithm;
    let parsed: Vec<(Checksum, u64)> = parts
        .iter()
        .map(|p| {
            let c = p.checksum.as_ref()?;
            if algorithm.is_some_and(|a| a != c.algorithm) {
                return None;
            }
            Some((Checksum::from_base64(c.algorithm, &c.value)?, p.size))
        })
        .collect::<Option<_>>()?;
    let alg = parsed.first()?.0.algorithm();
    if parsed.iter().any(|(c, _)| c.algorithm() != alg) {
        return None;
    }
    let kind = upload.checksum_kind().unwrap_or(if alg.supports_composite() {
        ChecksumKind::Composite
    } else {
        ChecksumKind::FullObject
    });
    match kind {
        ChecksumKind::Composite => {
            let only: Vec<Checksum> = parsed.into_iter().map(|(c, _)| c).collect();
            checksum::composite(&only).map(|value| StoredChecksum { algorithm: alg, value, kind })
        }
        ChecksumKind::FullObject => checksum::combine_full_object(&parsed).map(|c| StoredChecksum {
            algorithm: alg,
            value: c.to_base64(),
            kind,
        }),
    }
}

/// Checks the whole-object checksum a Complete sent against the one the parts make. A composite
/// value may be sent with or without its `-N`.
fn check_whole_checksum(alg: ChecksumAlgorithm, sent: &str, made: Option<&StoredChecksum>) -> Result<()> {
    let header = alg.header_name();
    let Some(made) = made.filter(|m| m.algorithm == alg) else {
        return Err(Error::InvalidRequest(format!(
            "Complete sent {header}, but the parts do not make an object checksum of that algorithm: create the \
             upload with x-amz-checksum-algorithm {} and send that checksum with every part",
            alg.s3_name()
        )));
    };
    let sent = sent.trim();
    let matches = match made.kind {
        ChecksumKind::FullObject => Checksum::from_base64(alg, sent).is_some_and(|c| c.to_base64() == made.value),
        ChecksumKind::Composite => sent == made.value || made.value.split_once('-').is_some_and(|(v, _)| v == sent),
    };
    if matches { Ok(()) } else { Err(Error::BadDigest(header.to_owned())) }
}
