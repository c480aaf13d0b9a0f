//! The `s3s::S3` implementation: DTO in, backend call, DTO out. No disk logic here; errors go
//! through the one `From<Error> for S3Error` in `error`.

use std::collections::BTreeMap;
use std::sync::Arc;

use hoist_core::checksum::ChecksumAlgorithm;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, CORSRule, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateBucketInput, CreateBucketOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketCorsInput, DeleteBucketCorsOutput,
    DeleteBucketInput, DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, DeletedObject, ETag, ETagCondition, GetBucketCorsInput, GetBucketCorsOutput,
    GetBucketNotificationConfigurationInput, GetBucketNotificationConfigurationOutput, GetObjectAttributesInput,
    GetObjectAttributesOutput, GetObjectAttributesParts, GetObjectInput, GetObjectOutput, HeadBucketInput,
    HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput, ListBucketsOutput,
    ListMultipartUploadsInput, ListMultipartUploadsOutput, ListObjectVersionsInput, ListObjectVersionsOutput,
    ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, ListPartsInput, ListPartsOutput,
    MultipartUpload, Object, ObjectPart, ObjectVersion, Part, PutBucketCorsInput, PutBucketCorsOutput,
    PutBucketNotificationConfigurationInput, PutBucketNotificationConfigurationOutput, PutObjectInput, PutObjectOutput,
    StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::backend::{Backend, ChecksumKind, ObjectRecord, StoredChecksum};
use crate::cors::CorsRule;
use crate::error::Error;
use crate::ingest::verify;
use crate::multipart::{CompleteOptions, CompletePart, check_part_number};
use crate::notify::{EventName, Notifier};
use crate::objects::{WriteCondition, read_range};
use crate::post_form::{self, FileName};
use crate::refusals::XmlBodyWatch;

/// Upper bound on ListParts/ListObjects/ListMultipartUploads page sizes, as in S3.
const MAX_PAGE: usize = 1000;
/// The one storage class the store has (S3's default).
const STORAGE_CLASS: &str = "STANDARD";

/// The S3 front of the backend.
#[derive(Debug, Clone)]
pub(crate) struct HoistS3 {
    pub(crate) backend: Arc<Backend>,
    /// Raises an event after each successful write, before the answer goes out.
    pub(crate) notifier: Arc<Notifier>,
}

fn ts(unix: i64) -> Timestamp {
    Timestamp::from(time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH))
}

fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_owned())
}

/// Which checksum values a request carries in headers (s3s parsed them into the input).
macro_rules! claimed_checksums {
    ($input:expr) => {{
        let mut v: Vec<(ChecksumAlgorithm, String)> = Vec::new();
        if let Some(c) = &$input.checksum_crc32 {
            v.push((ChecksumAlgorithm::Crc32, c.clone()));
        }
        if let Some(c) = &$input.checksum_crc32c {
            v.push((ChecksumAlgorithm::Crc32c, c.clone()));
        }
        if let Some(c) = &$input.checksum_crc64nvme {
            v.push((ChecksumAlgorithm::Crc64Nvme, c.clone()));
        }
        if let Some(c) = &$input.checksum_sha1 {
            v.push((ChecksumAlgorithm::Sha1, c.clone()));
        }
        if let Some(c) = &$input.checksum_sha256 {
            v.push((ChecksumAlgorithm::Sha256, c.clone()));
        }
        v
    }};
}

/// The algorithm named by `x-amz-trailer` (aws-chunked bodies send the checksum after the data).
fn trailer_algorithm(headers: &http::HeaderMap) -> Option<ChecksumAlgorithm> {
    let name = headers.get("x-amz-trailer")?.to_str().ok()?;
    name.trim().strip_prefix("x-amz-checksum-")?.parse().ok()
}

/// Checksum values that arrived in the trailer, once the body has been read.
fn trailer_values<T>(req: &S3Request<T>) -> Vec<(ChecksumAlgorithm, String)> {
    let Some(trailers) = req.trailing_headers.as_ref().and_then(s3s::TrailingHeaders::take) else {
        return Vec::new();
    };
    ChecksumAlgorithm::ALL
        .into_iter()
        .filter_map(|a| Some((a, trailers.get(a.header_name())?.to_str().ok()?.to_owned())))
        .collect()
}

fn algorithm_of(dto: Option<&s3s::dto::ChecksumAlgorithm>) -> S3Result<Option<ChecksumAlgorithm>> {
    dto.map(|a| a.as_str().parse::<ChecksumAlgorithm>())
        .transpose()
        .map_err(|e| Error::InvalidArgument(e.to_string()).into())
}

fn metadata(m: Option<s3s::dto::Metadata>) -> BTreeMap<String, String> {
    m.map(|m| m.into_iter().collect()).unwrap_or_default()
}

fn content_length(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

/// Fills the checksum fields of an output DTO from a stored checksum.
macro_rules! set_checksum {
    ($out:expr, $stored:expr) => {
        if let Some(c) = $stored {
            let v = Some(c.value.clone());
            match c.algorithm {
                ChecksumAlgorithm::Crc32 => $out.checksum_crc32 = v,
                ChecksumAlgorithm::Crc32c => $out.checksum_crc32c = v,
                ChecksumAlgorithm::Crc64Nvme => $out.checksum_crc64nvme = v,
                ChecksumAlgorithm::Sha1 => $out.checksum_sha1 = v,
                ChecksumAlgorithm::Sha256 => $out.checksum_sha256 = v,
            }
        }
    };
}

fn kind_dto(kind: ChecksumKind) -> s3s::dto::ChecksumType {
    s3s::dto::ChecksumType::from(kind.s3_name().to_owned())
}

fn checksum_type(c: &StoredChecksum) -> s3s::dto::ChecksumType {
    kind_dto(c.kind)
}

fn checksum_type_of(dto: Option<&s3s::dto::ChecksumType>) -> S3Result<Option<ChecksumKind>> {
    dto.map(|t| {
        ChecksumKind::from_s3_name(t.as_str()).ok_or_else(|| {
            let name = t.as_str();
            Error::InvalidArgument(format!("x-amz-checksum-type {name:?} is not valid: use COMPOSITE or FULL_OBJECT"))
                .into()
        })
    })
    .transpose()
}

/// The write condition of a PutObject or Complete. S3 takes `If-None-Match` on writes only as `*`.
fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<WriteCondition> {
    let if_none_match = match if_none_match {
        None => false,
        Some(ETagCondition::Any) => true,
        Some(ETagCondition::ETag(_)) => {
            return Err(Error::NotImplemented(
                "If-None-Match on a write takes only \"*\" (write only if the key does not exist)".into(),
            )
            .into());
        }
    };
    let if_match = if_match.map(|c| match c {
        ETagCondition::Any => "*".to_owned(),
        ETagCondition::ETag(e) => e.value().to_owned(),
    });
    Ok(WriteCondition { if_none_match, if_match })
}

/// The byte range of part `n` (1-based, in object order) of an object, and how many parts it has
/// (a single PUT is one part).
fn part_range(o: &ObjectRecord, n: i32) -> Result<(std::ops::Range<u64>, usize), Error> {
    let parts = o.segments.len().max(1);
    let index = usize::try_from(n)
        .ok()
        .filter(|i| (1..=parts).contains(i))
        .ok_or(Error::InvalidPartNumber { requested: n, parts })?;
    let start: u64 = o.segments[..index - 1].iter().map(|s| s.len).sum();
    let len = o.segments.get(index - 1).map_or(0, |s| s.len);
    Ok((start..start + len, parts))
}

fn wants_checksum(mode: Option<&s3s::dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(s3s::dto::ChecksumMode::ENABLED))
}

/// A CORS rule as PutBucketCors sent it.
fn cors_rule(r: CORSRule) -> CorsRule {
    CorsRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    }
}

/// A stored CORS rule as GetBucketCors returns it (empty lists left out).
fn cors_rule_dto(r: &CorsRule) -> CORSRule {
    let listed = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    CORSRule {
        id: r.id.clone(),
        allowed_origins: r.allowed_origins.clone(),
        allowed_methods: r.allowed_methods.clone(),
        allowed_headers: listed(&r.allowed_headers),
        expose_headers: listed(&r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

/// An object as the listings show it.
fn object_dto(o: &ObjectRecord) -> Object {
    Object {
        key: Some(o.key.clone()),
        size: i64::try_from(o.size).ok(),
        e_tag: Some(etag(&o.etag)),
        last_modified: Some(ts(o.last_modified)),
        storage_class: Some(s3s::dto::ObjectStorageClass::from(STORAGE_CLASS.to_owned())),
        ..Default::default()
    }
}

fn head_output(o: &ObjectRecord, with_checksum: bool) -> HeadObjectOutput {
    let mut out = HeadObjectOutput {
        content_length: i64::try_from(o.size).ok(),
        e_tag: Some(etag(&o.etag)),
        last_modified: Some(ts(o.last_modified)),
        content_type: o.content_type.clone(),
        metadata: (!o.metadata.is_empty()).then(|| o.metadata.clone().into_iter().collect()),
        accept_ranges: Some("bytes".into()),
        ..Default::default()
    };
    if with_checksum {
        set_checksum!(out, o.checksum.as_ref());
        out.checksum_type = o.checksum.as_ref().map(checksum_type);
    }
    out
}

/// HEAD / GET of part `n`: its length and range, `x-amz-mp-parts-count` for a multipart object,
/// and with checksum mode the part's own checksum (the one that covers the bytes sent).
fn part_head_output(o: &ObjectRecord, n: i32, with_checksum: bool) -> Result<HeadObjectOutput, Error> {
    let (range, parts) = part_range(o, n)?;
    let mut out = head_output(o, false);
    out.content_length = i64::try_from(range.end - range.start).ok();
    out.content_range = Some(format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), o.size));
    out.parts_count = o.parts_dir.as_ref().and_then(|_| i32::try_from(parts).ok());
    if with_checksum {
        let index = usize::try_from(n - 1).unwrap_or(0);
        let whole = o.parts_dir.is_none().then_some(o.checksum.as_ref()).flatten();
        set_checksum!(out, o.segments.get(index).and_then(|s| s.checksum.as_ref()).or(whole));
    }
    Ok(out)
}

/// S3 refuses `partNumber` together with `Range`.
fn both_range_and_part() -> Error {
    Error::InvalidRequest("a request cannot have both a Range header and a partNumber: send one of them".into())
}

#[async_trait::async_trait]
impl S3 for HoistS3 {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.backend.create_bucket(&req.input.bucket)?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", req.input.bucket)) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.backend.head_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .backend
            .list_buckets()
            .into_iter()
            .map(|(name, created)| Bucket { name: Some(name), creation_date: Some(ts(created)), ..Default::default() })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.backend.delete_bucket(&req.input.bucket)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        let rules = input.cors_configuration.cors_rules.into_iter().map(cors_rule).collect();
        self.backend.put_bucket_cors(&input.bucket, rules)?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let rules = self.backend.get_bucket_cors(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules.iter().map(cors_rule_dto).collect()) }))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.backend.delete_bucket_cors(&req.input.bucket)?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = &mut req.input;
        if let Some(name) = req.extensions.get::<FileName>().and_then(FileName::get) {
            input.key = input.key.replace(post_form::PLACEHOLDER, &name);
        }
        crate::backend::check_key(&input.key)?;
        self.backend.head_bucket(&input.bucket)?;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let claimed = claimed_checksums!(input);
        let declared = algorithm_of(input.checksum_algorithm.as_ref())?;
        let trailer = trailer_algorithm(&req.headers);
        let mut algs: Vec<ChecksumAlgorithm> = claimed.iter().map(|(a, _)| *a).chain(declared).chain(trailer).collect();
        algs.dedup();
        let body = self
            .backend
            .ingester
            .ingest(&self.backend.layout, input.body.take(), content_length(input.content_length), &algs)
            .await?;
        let mut all_claims = claimed;
        all_claims.extend(trailer_values(&req));
        let input = &req.input;
        let stored = match verify(&body, input.content_md5.as_deref(), &all_claims, declared.or(trailer)) {
            Ok(s) => s,
            Err(e) => {
                body.discard();
                return Err(e.into());
            }
        };
        let rec = self.backend.put_object(
            &input.bucket,
            &input.key,
            &body,
            (input.content_type.clone(), metadata(input.metadata.clone())),
            stored,
            &condition,
        )?;
        let event = if req.method == http::Method::POST { EventName::Post } else { EventName::Put };
        self.notifier.object_created(&input.bucket, &input.key, event, rec.size, &rec.etag)?;
        let mut out = PutObjectOutput { e_tag: Some(etag(&rec.etag)), ..Default::default() };
        set_checksum!(out, rec.checksum.as_ref());
        Ok(S3Response::new(out))
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let input = req.input;
        self.backend.head_bucket(&input.bucket)?;
        let rules = crate::notify::rules_from_dto(input.notification_configuration, &self.notifier.targets())?;
        self.notifier.put_config(&input.bucket, rules)?;
        Ok(S3Response::new(PutBucketNotificationConfigurationOutput::default()))
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.backend.head_bucket(&req.input.bucket)?;
        let rules = self.notifier.config(&req.input.bucket)?.unwrap_or_default();
        Ok(S3Response::new(crate::notify::rules_to_dto(&rules)))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let o = self.backend.head_object(&input.bucket, &input.key)?;
        let with_checksum = wants_checksum(input.checksum_mode.as_ref());
        let (range, partial, head) = match (&input.range, input.part_number) {
            (Some(_), Some(_)) => return Err(both_range_and_part().into()),
            (Some(r), None) => (r.check(o.size).map_err(|_| Error::InvalidRange)?, true, head_output(&o, false)),
            (None, Some(n)) => {
                let (range, _) = part_range(&o, n)?;
                (range, true, part_head_output(&o, n, with_checksum)?)
            }
            (None, None) => (0..o.size, false, head_output(&o, with_checksum)),
        };
        let len = range.end - range.start;
        let stream = read_range(self.backend.layout.root().to_path_buf(), o.segments.clone(), range.clone());
        let out = GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: i64::try_from(len).ok(),
            content_range: partial.then(|| format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), o.size)),
            e_tag: head.e_tag,
            last_modified: head.last_modified,
            content_type: head.content_type,
            metadata: head.metadata,
            accept_ranges: head.accept_ranges,
            checksum_crc32: head.checksum_crc32,
            checksum_crc32c: head.checksum_crc32c,
            checksum_crc64nvme: head.checksum_crc64nvme,
            checksum_sha1: head.checksum_sha1,
            checksum_sha256: head.checksum_sha256,
            checksum_type: head.checksum_type,
            parts_count: head.parts_count,
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        if partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let o = self.backend.head_object(&input.bucket, &input.key)?;
        let with_checksum = wants_checksum(input.checksum_mode.as_ref());
        let Some(n) = input.part_number else {
            return Ok(S3Response::new(head_output(&o, with_checksum)));
        };
        if input.range.is_some() {
            return Err(both_range_and_part().into());
        }
        let mut resp = S3Response::new(part_head_output(&o, n, with_checksum)?);
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        Ok(resp)
    }

    /// `GetObjectAttributes`: the attributes asked for in `x-amz-object-attributes`; `ObjectParts`
    /// for a multipart object (parts numbered 1..=N in object order, as `partNumber` reads them),
    /// paged by `max-parts` / `part-number-marker`.
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let o = self.backend.head_object(&input.bucket, &input.key)?;
        let wants = |name: &str| input.object_attributes.iter().any(|a| a.as_str().eq_ignore_ascii_case(name));
        let mut out = GetObjectAttributesOutput {
            e_tag: wants(s3s::dto::ObjectAttributes::ETAG).then(|| etag(&o.etag)),
            last_modified: Some(ts(o.last_modified)),
            object_size: wants(s3s::dto::ObjectAttributes::OBJECT_SIZE)
                .then(|| i64::try_from(o.size).unwrap_or(i64::MAX)),
            storage_class: wants(s3s::dto::ObjectAttributes::STORAGE_CLASS)
                .then(|| s3s::dto::StorageClass::from(STORAGE_CLASS.to_owned())),
            ..Default::default()
        };
        if wants(s3s::dto::ObjectAttributes::CHECKSUM)
            && let Some(c) = &o.checksum
        {
            let mut dto = s3s::dto::Checksum { checksum_type: Some(checksum_type(c)), ..Default::default() };
            set_checksum!(dto, Some(c));
            out.checksum = Some(dto);
        }
        if wants(s3s::dto::ObjectAttributes::OBJECT_PARTS) && o.parts_dir.is_some() {
            let marker = input.part_number_marker.map_or(0, |m| usize::try_from(m).unwrap_or(0));
            let max = input.max_parts.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
            let listed: Vec<ObjectPart> = o
                .segments
                .iter()
                .enumerate()
                .skip(marker)
                .take(max)
                .map(|(i, seg)| {
                    let mut part = ObjectPart {
                        part_number: i32::try_from(i + 1).ok(),
                        size: i64::try_from(seg.len).ok(),
                        ..Default::default()
                    };
                    set_checksum!(part, seg.checksum.as_ref());
                    part
                })
                .collect();
            let truncated = marker.saturating_add(listed.len()) < o.segments.len();
            out.object_parts = Some(GetObjectAttributesParts {
                total_parts_count: i32::try_from(o.segments.len()).ok(),
                part_number_marker: input.part_number_marker,
                next_part_number_marker: listed.last().and_then(|p| p.part_number).filter(|_| truncated),
                max_parts: i32::try_from(max).ok(),
                is_truncated: Some(truncated),
                parts: Some(listed),
            });
        }
        Ok(S3Response::new(out))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.backend.delete_object(&req.input.bucket, &req.input.key)?;
        self.notifier.object_removed(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > MAX_PAGE {
            return Err(Error::MalformedXml(format!(
                "{} keys listed; DeleteObjects takes at most 1000",
                input.delete.objects.len()
            ))
            .into());
        }
        let mut deleted = Vec::with_capacity(input.delete.objects.len());
        for o in input.delete.objects {
            self.backend.delete_object(&input.bucket, &o.key)?;
            self.notifier.object_removed(&input.bucket, &o.key)?;
            deleted.push(DeletedObject { key: Some(o.key), ..Default::default() });
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput { deleted: (!quiet).then_some(deleted), ..Default::default() }))
    }

    /// Buckets are unversioned: every object is its only version, with version id `null`.
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let listing = self.backend.list_objects(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            input.key_marker.as_deref(),
            true,
            max,
        )?;
        let versions = listing
            .objects
            .iter()
            .map(|o| ObjectVersion {
                key: Some(o.key.clone()),
                version_id: Some("null".into()),
                is_latest: Some(true),
                size: i64::try_from(o.size).ok(),
                e_tag: Some(etag(&o.etag)),
                last_modified: Some(ts(o.last_modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(prefix),
            delimiter: input.delimiter,
            max_keys: i32::try_from(max).ok(),
            is_truncated: Some(listing.next.is_some()),
            next_key_marker: listing.next,
            next_version_id_marker: None,
            key_marker: input.key_marker,
            common_prefixes: Some(
                listing.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
            ),
            versions: Some(versions),
            ..Default::default()
        }))
    }

    /// `ListObjects` version 1 (`GET /bucket` without `list-type=2`): pages by `marker`, a key to
    /// list after. `NextMarker` is sent only with a delimiter, as S3 does (without one, clients
    /// continue from the last key listed); it can name a common prefix, and a page resumed after
    /// one skips every key under it (see `Backend::list_objects`).
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let marker = input.marker.as_deref().filter(|m| !m.is_empty());
        let listing =
            self.backend.list_objects(&input.bucket, &prefix, input.delimiter.as_deref(), marker, true, max)?;
        let with_delimiter = input.delimiter.as_deref().is_some_and(|d| !d.is_empty());
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(prefix),
            marker: Some(input.marker.unwrap_or_default()),
            delimiter: input.delimiter,
            max_keys: i32::try_from(max).ok(),
            is_truncated: Some(listing.next.is_some()),
            next_marker: listing.next.filter(|_| with_delimiter),
            common_prefixes: Some(
                listing.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
            ),
            contents: Some(listing.objects.iter().map(object_dto).collect()),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let after = input.continuation_token.as_deref().or(input.start_after.as_deref());
        let resume = input.continuation_token.is_some();
        let listing =
            self.backend.list_objects(&input.bucket, &prefix, input.delimiter.as_deref(), after, resume, max)?;
        let contents: Vec<Object> = listing.objects.iter().map(object_dto).collect();
        let key_count = contents.len() + listing.common_prefixes.len();
        let out = ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(prefix),
            delimiter: input.delimiter,
            max_keys: i32::try_from(max).ok(),
            key_count: i32::try_from(key_count).ok(),
            is_truncated: Some(listing.next.is_some()),
            next_continuation_token: listing.next,
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            common_prefixes: Some(
                listing.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
            ),
            contents: Some(contents),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let alg = algorithm_of(input.checksum_algorithm.as_ref())?;
        let kind = checksum_type_of(input.checksum_type.as_ref())?;
        let upload = self.backend.create_upload(
            &input.bucket,
            &input.key,
            input.content_type.clone(),
            metadata(input.metadata.clone()),
            alg,
            kind,
        )?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            checksum_type: upload.checksum_kind().map(kind_dto),
            upload_id: Some(upload.id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    async fn upload_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = &mut req.input;
        let number = check_part_number(input.part_number)?;
        Backend::check_upload_id(&input.upload_id)?;
        let upload = self.backend.upload(&input.bucket, &input.key, &input.upload_id)?;
        let claimed = claimed_checksums!(input);
        let declared = algorithm_of(input.checksum_algorithm.as_ref())?;
        let trailer = trailer_algorithm(&req.headers);
        let mut algs: Vec<ChecksumAlgorithm> =
            claimed.iter().map(|(a, _)| *a).chain(declared).chain(trailer).chain(upload.checksum_algorithm).collect();
        algs.sort_by_key(|a| a.cli_name());
        algs.dedup();
        let body = self
            .backend
            .ingester
            .ingest(&self.backend.layout, input.body.take(), content_length(input.content_length), &algs)
            .await?;
        let mut all_claims = claimed;
        all_claims.extend(trailer_values(&req));
        let input = &req.input;
        let fallback = upload.checksum_algorithm.or(declared).or(trailer);
        let stored = match verify(&body, input.content_md5.as_deref(), &all_claims, fallback) {
            Ok(s) => s,
            Err(e) => {
                body.discard();
                return Err(e.into());
            }
        };
        let part = self.backend.put_part(&input.bucket, &input.key, &input.upload_id, number, &body, stored)?;
        let mut out = UploadPartOutput { e_tag: Some(etag(&part.md5)), ..Default::default() };
        set_checksum!(out, part.checksum.as_ref());
        Ok(S3Response::new(out))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        Backend::check_upload_id(&input.upload_id)?;
        let marker = input.part_number_marker.map_or(0, |m| u32::try_from(m).unwrap_or(0));
        let max = input.max_parts.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let (upload, parts, truncated) =
            self.backend.list_parts(&input.bucket, &input.key, &input.upload_id, marker, max)?;
        let next = parts.last().map(|p| i32::try_from(p.number).unwrap_or(i32::MAX));
        let parts = parts
            .iter()
            .map(|p| {
                let mut part = Part {
                    part_number: i32::try_from(p.number).ok(),
                    e_tag: Some(etag(&p.md5)),
                    size: i64::try_from(p.size).ok(),
                    last_modified: Some(ts(p.last_modified)),
                    ..Default::default()
                };
                set_checksum!(part, p.checksum.as_ref());
                part
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            is_truncated: Some(truncated),
            max_parts: i32::try_from(max).ok(),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            checksum_type: upload.checksum_kind().map(kind_dto),
            checksum_algorithm: upload
                .checksum_algorithm
                .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_owned())),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        if let Some(watch) = req.extensions.get::<XmlBodyWatch>() {
            watch.check_part_numbers()?;
        }
        let input = req.input;
        Backend::check_upload_id(&input.upload_id)?;
        let claimed = claimed_checksums!(input);
        if claimed.len() > 1 {
            let msg = "Complete may carry one x-amz-checksum-* header, not several: send the upload's algorithm's";
            return Err(Error::InvalidRequest(msg.into()).into());
        }
        let options = CompleteOptions {
            condition: write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
            checksum_type: checksum_type_of(input.checksum_type.as_ref())?,
            checksum: claimed.into_iter().next(),
            object_size: input.mpu_object_size,
        };
        let parts: Vec<CompletePart> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| CompletePart {
                number: p.part_number.unwrap_or(0),
                etag: p.e_tag.map(ETag::into_value).unwrap_or_default(),
            })
            .collect();
        if parts.len() > crate::multipart::MAX_PART_NUMBER as usize {
            return Err(Error::MalformedXml(format!("{} parts listed; at most 10000 are allowed", parts.len())).into());
        }
        let done = self.backend.complete_upload(&input.bucket, &input.key, &input.upload_id, &parts, &options)?;
        // The size is the object's as it stands now (a later write of the key would have its own event).
        let size = self
            .backend
            .head_object(&input.bucket, &input.key)
            .ok()
            .filter(|o| o.etag == done.etag)
            .map_or(0, |o| o.size);
        self.notifier.object_created(
            &input.bucket,
            &input.key,
            EventName::CompleteMultipartUpload,
            size,
            &done.etag,
        )?;
        let mut out = CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&done.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        };
        set_checksum!(out, done.checksum.as_ref());
        out.checksum_type = done.checksum.as_ref().map(checksum_type);
        Ok(S3Response::new(out))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        Backend::check_upload_id(&input.upload_id)?;
        self.backend.abort_upload(&input.bucket, &input.key, &input.upload_id)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_uploads.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let (uploads, truncated) = self.backend.list_uploads(
            &input.bucket,
            &prefix,
            input.key_marker.as_deref(),
            input.upload_id_marker.as_deref(),
            max,
        )?;
        let last = uploads.last().map(|u| (u.key.clone(), u.id.clone()));
        let uploads = uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.id),
                initiated: Some(ts(u.initiated)),
                checksum_algorithm: u
                    .checksum_algorithm
                    .map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_owned())),
                ..Default::default()
            })
            .collect();
        let (next_key, next_id) = if truncated { last.unzip() } else { (None, None) };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(prefix),
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: i32::try_from(max).ok(),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}
