//! The `s3s::S3` implementation: DTO in, backend call, DTO out. No disk logic here; errors go
//! through the one `From<Error> for S3Error` in `error`.

use std::collections::BTreeMap;
use std::sync::Arc;

use hoist_core::checksum::ChecksumAlgorithm;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, CORSRule, CommonPrefix, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CreateBucketInput, CreateBucketOutput, CreateMultipartUploadInput,
    CreateMultipartUploadOutput, DeleteBucketCorsInput, DeleteBucketCorsOutput, DeleteBucketInput, DeleteBucketOutput,
    DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, GetBucketCorsInput,
    GetBucketCorsOutput, ListObjectVersionsInput, ListObjectVersionsOutput,
    ObjectVersion,
    ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListMultipartUploadsInput, ListMultipartUploadsOutput,
    ListObjectsV2Input, ListObjectsV2Output, ListPartsInput, ListPartsOutput, MultipartUpload, Object, Part,
    GetBucketNotificationConfigurationInput, GetBucketNotificationConfigurationOutput,
    PutBucketNotificationConfigurationInput, PutBucketNotificationConfigurationOutput,
    PutBucketCorsInput, PutBucketCorsOutput, PutObjectInput, PutObjectOutput, StreamingBlob, Timestamp,
    UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::backend::{Backend, ChecksumKind, ObjectRecord, StoredChecksum};
use crate::cors::CorsRule;
use crate::error::Error;
use crate::ingest::verify;
use crate::multipart::{CompletePart, check_part_number};
use crate::notify::{EventName, Notifier};
use crate::objects::read_range;
use crate::refusals::XmlBodyWatch;

/// Upper bound on ListParts/ListObjects/ListMultipartUploads page sizes, as in S3.
const MAX_PAGE: usize = 1000;

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
        if let Some(c) = &$input.checksum_crc32 { v.push((ChecksumAlgorithm::Crc32, c.clone())); }
        if let Some(c) = &$input.checksum_crc32c { v.push((ChecksumAlgorithm::Crc32c, c.clone())); }
        if let Some(c) = &$input.checksum_crc64nvme { v.push((ChecksumAlgorithm::Crc64Nvme, c.clone())); }
        if let Some(c) = &$input.checksum_sha1 { v.push((ChecksumAlgorithm::Sha1, c.clone())); }
        if let Some(c) = &$input.checksum_sha256 { v.push((ChecksumAlgorithm::Sha256, c.clone())); }
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

fn checksum_type(c: &StoredChecksum) -> s3s::dto::ChecksumType {
    s3s::dto::ChecksumType::from(
        match c.kind {
            ChecksumKind::Composite => s3s::dto::ChecksumType::COMPOSITE,
            ChecksumKind::FullObject => s3s::dto::ChecksumType::FULL_OBJECT,
        }
        .to_owned(),
    )
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
        crate::backend::check_key(&input.key)?;
        self.backend.head_bucket(&input.bucket)?;
        let claimed = claimed_checksums!(input);
        let declared = algorithm_of(input.checksum_algorithm.as_ref())?;
        let trailer = trailer_algorithm(&req.headers);
        let mut algs: Vec<ChecksumAlgorithm> = claimed.iter().map(|(a, _)| *a).chain(declared).chain(trailer).collect();
        algs.dedup();
        let body = self.backend.ingester.ingest(&self.backend.layout, input.body.take(), content_length(input.content_length), &algs).await?;
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
            input.content_type.clone(),
            metadata(input.metadata.clone()),
            stored,
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
        let (range, partial) = match &input.range {
            Some(r) => (r.check(o.size).map_err(|_| Error::InvalidRange)?, true),
            None => (0..o.size, false),
        };
        let len = range.end - range.start;
        let stream = read_range(self.backend.layout.root().to_path_buf(), o.segments.clone(), range.clone());
        let head = head_output(&o, wants_checksum(input.checksum_mode.as_ref()) && !partial);
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
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        if partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let o = self.backend.head_object(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(head_output(&o, wants_checksum(req.input.checksum_mode.as_ref()))))
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
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            ..Default::default()
        }))
    }

    /// Buckets are unversioned: every object is its only version, with version id `null`.
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let listing =
            self.backend.list_objects(&input.bucket, &prefix, input.delimiter.as_deref(), input.key_marker.as_deref(), true, max)?;
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

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.map_or(MAX_PAGE, |m| usize::try_from(m).unwrap_or(0).min(MAX_PAGE));
        let after = input.continuation_token.as_deref().or(input.start_after.as_deref());
        let resume = input.continuation_token.is_some();
        let listing = self.backend.list_objects(&input.bucket, &prefix, input.delimiter.as_deref(), after, resume, max)?;
        let contents: Vec<Object> = listing
            .objects
            .iter()
            .map(|o| Object {
                key: Some(o.key.clone()),
                size: i64::try_from(o.size).ok(),
                e_tag: Some(etag(&o.etag)),
                last_modified: Some(ts(o.last_modified)),
                storage_class: Some(s3s::dto::ObjectStorageClass::from("STANDARD".to_owned())),
                ..Default::default()
            })
            .collect();
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
        let id = self.backend.create_upload(
            &input.bucket,
            &input.key,
            input.content_type.clone(),
            metadata(input.metadata.clone()),
            alg,
        )?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
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
        let body = self.backend.ingester.ingest(&self.backend.layout, input.body.take(), content_length(input.content_length), &algs).await?;
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
        let done = self.backend.complete_upload(&input.bucket, &input.key, &input.upload_id, &parts)?;
        // The size is the object's as it stands now (a later write of the key would have its own event).
        let size = self.backend.head_object(&input.bucket, &input.key).ok().filter(|o| o.etag == done.etag).map_or(0, |o| o.size);
        self.notifier.object_created(&input.bucket, &input.key, EventName::CompleteMultipartUpload, size, &done.etag)?;
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
                checksum_algorithm: u.checksum_algorithm.map(|a| s3s::dto::ChecksumAlgorithm::from(a.s3_name().to_owned())),
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
