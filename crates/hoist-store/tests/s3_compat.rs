//! Where the store meets what common S3 tools and test suites expect of AWS (issue 16): deleting
//! a bucket that holds only incomplete uploads, `FULL_OBJECT` multipart checksums, `partNumber`
//! reads and `GetObjectAttributes`, `BadDigest` for malformed checksum values, `ListObjects` version 1,
//! and conditional writes. Each check is a function of an SDK client and an existing, empty
//! bucket, so that it can run against another endpoint too; the tests run them against the
//! embedded store over HTTP.

// Test sizes are small; a check fails by panicking, as a test does.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::missing_panics_doc)]

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
};
use hoist_core::checksum::{self, Checksum};
use hoist_testkit::{TestStore, error_code as code, pattern};
use md5::Digest as _;

const MIB: usize = 1024 * 1024;

/// A store with an empty bucket `bkt`, and a client for it.
async fn start() -> (TestStore, Client) {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let client = store.client();
    (store, client)
}

/// The object's bytes.
async fn read(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let got = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(md5::Md5::digest(data)))
}

fn core_alg(a: &ChecksumAlgorithm) -> checksum::ChecksumAlgorithm {
    a.as_str().parse().expect("a CRC the core knows")
}

/// Uploads `parts` to a new upload of `key` (created with `create`'s settings, the SDK computing
/// each part's checksum when `alg` is set) and returns the upload id and the parts for Complete.
async fn upload(
    c: &Client,
    bucket: &str,
    key: &str,
    alg: Option<ChecksumAlgorithm>,
    kind: Option<ChecksumType>,
    parts: &[Vec<u8>],
) -> (String, Vec<CompletedPart>) {
    let created = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_checksum_algorithm(alg.clone())
        .set_checksum_type(kind)
        .send()
        .await
        .unwrap();
    let id = created.upload_id.unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .set_checksum_algorithm(alg.clone())
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                .build(),
        );
    }
    (id, done)
}

/// Completes an upload with `parts`, unconditionally.
async fn complete(
    c: &Client,
    bucket: &str,
    key: &str,
    id: &str,
    parts: Vec<CompletedPart>,
) -> aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput {
    let req = c.complete_multipart_upload().bucket(bucket).key(key).upload_id(id);
    req.multipart_upload(listed(parts)).send().await.unwrap()
}

fn listed(parts: Vec<CompletedPart>) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder().set_parts(Some(parts)).build()
}

// ---------------------------------------------------------------------------------------------
// DeleteBucket

/// A bucket holding only incomplete uploads is deleted, and its uploads with it; one holding an
/// object is not.
pub async fn check_delete_bucket_drops_incomplete_uploads(c: &Client, bucket: &str) {
    let doomed = format!("{bucket}-doomed");
    c.create_bucket().bucket(&doomed).send().await.unwrap();
    let (id, _) = upload(c, &doomed, "k", None, None, &[pattern(1000, 1)]).await;
    c.delete_bucket().bucket(&doomed).send().await.expect("a bucket with only incomplete uploads is deleted");
    let e = c.head_bucket().bucket(&doomed).send().await.unwrap_err();
    assert!(e.raw_response().is_some_and(|r| r.status().as_u16() == 404), "{e:?}");
    // Recreated, it holds nothing of before.
    c.create_bucket().bucket(&doomed).send().await.unwrap();
    let uploads = c.list_multipart_uploads().bucket(&doomed).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let e = c.list_parts().bucket(&doomed).key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    c.delete_bucket().bucket(&doomed).send().await.unwrap();

    c.put_object().bucket(bucket).key("keep").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let e = c.delete_bucket().bucket(bucket).send().await.unwrap_err();
    assert_eq!(code(&e), "BucketNotEmpty");
    c.delete_object().bucket(bucket).key("keep").send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_bucket_drops_incomplete_uploads() {
    let (_store, c) = start().await;
    check_delete_bucket_drops_incomplete_uploads(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_deleted_with_its_uploads_stays_deleted_after_a_restart() {
    let mut store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let (id, _) = upload(&store.client(), "bkt", "k", None, None, &[pattern(1000, 1)]).await;
    store.client().delete_bucket().bucket("bkt").send().await.unwrap();
    store.shutdown().await;
    let again = TestStore::start_in(store.data_dir()).await;
    let c = again.client();
    let e = c.head_bucket().bucket("bkt").send().await.unwrap_err();
    assert!(e.raw_response().is_some_and(|r| r.status().as_u16() == 404), "{e:?}");
    let e = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload", "{e:?}");
    assert!(!again.data_dir().join("uploads").join(&id).exists(), "the upload's parts are gone from disk");
    c.create_bucket().bucket("bkt").send().await.unwrap();
    assert!(c.list_multipart_uploads().bucket("bkt").send().await.unwrap().uploads().is_empty());
}

// ---------------------------------------------------------------------------------------------
// FULL_OBJECT checksums

/// For each CRC, an upload created with `FULL_OBJECT` gets the CRC of the whole object: in
/// Complete's answer (which names the type), in HEAD and GET with checksum mode, and `ListParts`
/// says the type; a whole-object value sent with Complete is checked, and a wrong one leaves the
/// upload in place.
pub async fn check_full_object_checksums(c: &Client, bucket: &str) {
    let parts = vec![pattern(5 * MIB, 1), pattern(5 * MIB + 17, 2), pattern(3001, 3)];
    let all = parts.concat();
    for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32C, ChecksumAlgorithm::Crc64Nvme] {
        let key = format!("full-{}", alg.as_str());
        let want = Checksum::of(core_alg(&alg), &all).to_base64();
        let (id, done) = upload(c, bucket, &key, Some(alg.clone()), Some(ChecksumType::FullObject), &parts).await;
        let lp = c.list_parts().bucket(bucket).key(&key).upload_id(&id).send().await.unwrap();
        assert_eq!(lp.checksum_type(), Some(&ChecksumType::FullObject), "{alg:?}");

        let complete = c.complete_multipart_upload().bucket(bucket).key(&key).upload_id(&id);
        // A wrong whole-object value: BadDigest, and the upload is still there.
        let wrong = Checksum::of(core_alg(&alg), b"other bytes").to_base64();
        let e = with_whole_checksum(complete.clone(), &alg, &wrong)
            .checksum_type(ChecksumType::FullObject)
            .multipart_upload(listed(done.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "BadDigest", "{alg:?}: {e:?}");
        c.list_parts().bucket(bucket).key(&key).upload_id(&id).send().await.expect("the upload stays");

        let out = with_whole_checksum(complete, &alg, &want)
            .checksum_type(ChecksumType::FullObject)
            .mpu_object_size(all.len() as i64)
            .multipart_upload(listed(done))
            .send()
            .await
            .unwrap();
        assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject), "{alg:?}");
        let sums = (out.checksum_crc32(), out.checksum_crc32_c(), out.checksum_crc64_nvme());
        assert_eq!(whole_of(&alg, sums), Some(want.as_str()));

        let head = c.head_object().bucket(bucket).key(&key).checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
        assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));
        let sums = (head.checksum_crc32(), head.checksum_crc32_c(), head.checksum_crc64_nvme());
        assert_eq!(whole_of(&alg, sums), Some(want.as_str()));
        // The SDK validates a full-object checksum against the body it reads.
        let got = c.get_object().bucket(bucket).key(&key).checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
        assert_eq!(got.checksum_type(), Some(&ChecksumType::FullObject));
        let sums = (got.checksum_crc32(), got.checksum_crc32_c(), got.checksum_crc64_nvme());
        assert_eq!(whole_of(&alg, sums), Some(want.as_str()));
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), all.as_slice());
    }
}

type Sums<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn with_whole_checksum(
    b: aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder,
    alg: &ChecksumAlgorithm,
    value: &str,
) -> aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder {
    match alg {
        ChecksumAlgorithm::Crc32 => b.checksum_crc32(value),
        ChecksumAlgorithm::Crc32C => b.checksum_crc32_c(value),
        _ => b.checksum_crc64_nvme(value),
    }
}

/// The value of `alg` among an output's (CRC32, CRC32C, CRC64NVME) checksums.
fn whole_of<'a>(alg: &ChecksumAlgorithm, (crc32, crc32c, crc64): Sums<'a>) -> Option<&'a str> {
    match alg {
        ChecksumAlgorithm::Crc32 => crc32,
        ChecksumAlgorithm::Crc32C => crc32c,
        _ => crc64,
    }
}

/// `COMPOSITE` stays the default for `CRC32C` (checksum of the part checksums, `-N`), `CRC64NVME`
/// defaults to `FULL_OBJECT`, and the combinations S3 refuses are refused at Create, naming the fix.
pub async fn check_checksum_type_defaults_and_refusals(c: &Client, bucket: &str) {
    let parts = vec![pattern(5 * MIB, 4), pattern(100, 5)];
    let (id, done) = upload(c, bucket, "composite", Some(ChecksumAlgorithm::Crc32C), None, &parts).await;
    let lp = c.list_parts().bucket(bucket).key("composite").upload_id(&id).send().await.unwrap();
    assert_eq!(lp.checksum_type(), Some(&ChecksumType::Composite));
    let out = complete(c, bucket, "composite", &id, done).await;
    let part_sums: Vec<Checksum> = parts.iter().map(|p| Checksum::of(checksum::ChecksumAlgorithm::Crc32c, p)).collect();
    assert_eq!(out.checksum_crc32_c(), checksum::composite(&part_sums).as_deref());
    assert_eq!(out.checksum_type(), Some(&ChecksumType::Composite));

    let (id, done) = upload(c, bucket, "nvme", Some(ChecksumAlgorithm::Crc64Nvme), None, &parts).await;
    let out = complete(c, bucket, "nvme", &id, done).await;
    assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject));
    let want = Checksum::of(checksum::ChecksumAlgorithm::Crc64Nvme, &parts.concat()).to_base64();
    assert_eq!(out.checksum_crc64_nvme(), Some(want.as_str()));

    for (alg, kind) in [
        (Some(ChecksumAlgorithm::Sha256), ChecksumType::FullObject),
        (Some(ChecksumAlgorithm::Crc64Nvme), ChecksumType::Composite),
        (None, ChecksumType::FullObject),
    ] {
        let e = c
            .create_multipart_upload()
            .bucket(bucket)
            .key("refused")
            .set_checksum_algorithm(alg.clone())
            .checksum_type(kind.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidRequest", "{alg:?} {kind:?}: {e:?}");
    }
    let uploads = c.list_multipart_uploads().bucket(bucket).prefix("refused").send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "a refused Create left an upload");
}

/// A Complete whose `x-amz-checksum-type` or `x-amz-mp-object-size` is not the upload's is
/// refused and leaves the upload in place.
pub async fn check_complete_checks_type_and_size(c: &Client, bucket: &str) {
    let parts = vec![pattern(5 * MIB, 15), pattern(99, 16)];
    let size = parts.iter().map(Vec::len).sum::<usize>() as i64;
    let (id, done) = upload(c, bucket, "checked", Some(ChecksumAlgorithm::Crc32C), None, &parts).await;
    let req = || c.complete_multipart_upload().bucket(bucket).key("checked").upload_id(&id);
    let full = req().checksum_type(ChecksumType::FullObject);
    let e = full.multipart_upload(listed(done.clone())).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidRequest", "a COMPOSITE upload completed as FULL_OBJECT: {e:?}");
    let e = req().mpu_object_size(size + 1).multipart_upload(listed(done.clone())).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidRequest", "a wrong x-amz-mp-object-size: {e:?}");
    c.list_parts().bucket(bucket).key("checked").upload_id(&id).send().await.expect("the upload stays");
    let out = req().mpu_object_size(size).multipart_upload(listed(done)).send().await.unwrap();
    assert_eq!(out.checksum_type(), Some(&ChecksumType::Composite));
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_checks_type_and_size() {
    let (_store, c) = start().await;
    check_complete_checks_type_and_size(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_keeps_its_checksum_type_across_a_restart() {
    let mut store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let parts = vec![pattern(5 * MIB, 17), pattern(5, 18)];
    let alg = Some(ChecksumAlgorithm::Crc32C);
    let (id, done) = upload(&store.client(), "bkt", "k", alg, Some(ChecksumType::FullObject), &parts).await;
    store.shutdown().await;
    let again = TestStore::start_in(store.data_dir()).await;
    let out = complete(&again.client(), "bkt", "k", &id, done).await;
    assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject));
    let want = Checksum::of(checksum::ChecksumAlgorithm::Crc32c, &parts.concat()).to_base64();
    assert_eq!(out.checksum_crc32_c(), Some(want.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn full_object_checksums() {
    let (_store, c) = start().await;
    check_full_object_checksums(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_type_defaults_and_refusals() {
    let (_store, c) = start().await;
    check_checksum_type_defaults_and_refusals(&c, "bkt").await;
}

// ---------------------------------------------------------------------------------------------
// partNumber and GetObjectAttributes

/// HEAD and GET with `partNumber`: the part's bytes and length, `x-amz-mp-parts-count`; a part
/// past the last is `InvalidPartNumber`; a single PUT is one part; `Range` with `partNumber` is
/// refused.
pub async fn check_part_number_reads(c: &Client, bucket: &str) {
    let parts = vec![pattern(5 * MIB, 6), pattern(5 * MIB + 3, 7), pattern(1234, 8)];
    let (id, done) = upload(c, bucket, "mp", Some(ChecksumAlgorithm::Crc32C), None, &parts).await;
    complete(c, bucket, "mp", &id, done).await;
    let total = parts.iter().map(Vec::len).sum::<usize>();
    let mut start = 0;
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let head = c.head_object().bucket(bucket).key("mp").part_number(n).send().await.unwrap();
        assert_eq!((head.content_length(), head.parts_count()), (Some(p.len() as i64), Some(3)), "part {n}");
        let get = c.get_object().bucket(bucket).key("mp").part_number(n);
        let got = get.checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
        assert_eq!(got.parts_count(), Some(3));
        let range = format!("bytes {start}-{}/{total}", start + p.len() - 1);
        assert_eq!(got.content_range(), Some(range.as_str()));
        let part_sum = Checksum::of(checksum::ChecksumAlgorithm::Crc32c, p).to_base64();
        assert_eq!(got.checksum_crc32_c(), Some(part_sum.as_str()), "a part read carries the part's checksum");
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), p.as_slice(), "part {n}");
        start += p.len();
    }
    let e = c.get_object().bucket(bucket).key("mp").part_number(4).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidPartNumber", "{e:?}");
    let e = c.head_object().bucket(bucket).key("mp").part_number(4).send().await.unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(416));
    let e = c.get_object().bucket(bucket).key("mp").part_number(1).range("bytes=0-9").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidRequest", "{e:?}");

    let single = pattern(4000, 9);
    c.put_object().bucket(bucket).key("single").body(ByteStream::from(single.clone())).send().await.unwrap();
    let got = c.get_object().bucket(bucket).key("single").part_number(1).send().await.unwrap();
    assert_eq!(got.parts_count(), None, "a single PUT has no parts count");
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), single.as_slice());
    let e = c.get_object().bucket(bucket).key("single").part_number(2).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidPartNumber");
}

/// `GetObjectAttributes`: `ETag`, Checksum (with its type), `ObjectSize`, `StorageClass`, and
/// `ObjectParts` paged by max-parts / part-number-marker.
pub async fn check_get_object_attributes(c: &Client, bucket: &str) {
    let parts = vec![pattern(5 * MIB, 10), pattern(5 * MIB, 11), pattern(77, 12)];
    let full = Some(ChecksumType::FullObject);
    let (id, done) = upload(c, bucket, "attrs", Some(ChecksumAlgorithm::Crc32), full, &parts).await;
    let out = complete(c, bucket, "attrs", &id, done).await;
    let all = [
        ObjectAttributes::Etag,
        ObjectAttributes::Checksum,
        ObjectAttributes::ObjectParts,
        ObjectAttributes::ObjectSize,
        ObjectAttributes::StorageClass,
    ];
    let a = c
        .get_object_attributes()
        .bucket(bucket)
        .key("attrs")
        .set_object_attributes(Some(all.to_vec()))
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(a.e_tag().map(|e| e.trim_matches('"')), out.e_tag().map(|e| e.trim_matches('"')));
    assert_eq!(a.object_size(), Some(parts.iter().map(Vec::len).sum::<usize>() as i64));
    assert_eq!(a.storage_class().map(aws_sdk_s3::types::StorageClass::as_str), Some("STANDARD"));
    let sum = a.checksum().expect("a checksum");
    assert_eq!(sum.checksum_type(), Some(&ChecksumType::FullObject));
    let want = Checksum::of(checksum::ChecksumAlgorithm::Crc32, &parts.concat()).to_base64();
    assert_eq!(sum.checksum_crc32(), Some(want.as_str()));
    let op = a.object_parts().expect("object parts");
    let paging = (op.total_parts_count(), op.is_truncated(), op.next_part_number_marker());
    assert_eq!(paging, (Some(3), Some(true), Some("2")));
    let numbers: Vec<Option<i32>> = op.parts().iter().map(aws_sdk_s3::types::ObjectPart::part_number).collect();
    assert_eq!(numbers, vec![Some(1), Some(2)]);
    let sizes: Vec<Option<i64>> = op.parts().iter().map(aws_sdk_s3::types::ObjectPart::size).collect();
    assert_eq!(sizes, vec![Some(5 * MIB as i64), Some(5 * MIB as i64)]);
    let first = Checksum::of(checksum::ChecksumAlgorithm::Crc32, &parts[0]).to_base64();
    assert_eq!(op.parts()[0].checksum_crc32(), Some(first.as_str()));
    let rest = c
        .get_object_attributes()
        .bucket(bucket)
        .key("attrs")
        .object_attributes(ObjectAttributes::ObjectParts)
        .part_number_marker("2")
        .send()
        .await
        .unwrap();
    assert!(rest.e_tag().is_none() && rest.object_size().is_none(), "only what was asked for");
    let op = rest.object_parts().expect("object parts");
    assert_eq!(op.is_truncated(), Some(false));
    let numbers: Vec<(Option<i32>, Option<i64>)> = op.parts().iter().map(|p| (p.part_number(), p.size())).collect();
    assert_eq!(numbers, vec![(Some(3), Some(77))]);

    c.put_object().bucket(bucket).key("plain").body(ByteStream::from_static(b"plain")).send().await.unwrap();
    let plain = c.get_object_attributes().bucket(bucket).key("plain").set_object_attributes(Some(all.to_vec()));
    let a = plain.send().await.unwrap();
    assert_eq!(a.object_size(), Some(5));
    assert!(a.object_parts().is_none(), "a single PUT has no parts");
    let missing = c.get_object_attributes().bucket(bucket).key("missing").object_attributes(ObjectAttributes::Etag);
    let e = missing.send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread")]
async fn part_number_reads() {
    let (_store, c) = start().await;
    check_part_number_reads(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_object_attributes() {
    let (_store, c) = start().await;
    check_get_object_attributes(&c, "bkt").await;
}

// ---------------------------------------------------------------------------------------------
// BadDigest

/// An `x-amz-checksum-*` value that is not base64, or decodes to the wrong length, is `BadDigest`
/// (S3's answer), on `PutObject` and `UploadPart`, and nothing is stored.
pub async fn check_malformed_checksum_is_bad_digest(c: &Client, bucket: &str) {
    for value in ["not base64!", "AAAA", "AAAAAAAAAAA="] {
        let e = c
            .put_object()
            .bucket(bucket)
            .key("bad")
            .checksum_crc32_c(value)
            .body(ByteStream::from_static(b"data"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "BadDigest", "{value:?}: {e:?}");
    }
    let e = c.head_object().bucket(bucket).key("bad").send().await.unwrap_err();
    assert!(e.raw_response().is_some_and(|r| r.status().as_u16() == 404), "nothing stored");
    let (id, _) = upload(c, bucket, "bad-mp", None, None, &[]).await;
    let e = c
        .upload_part()
        .bucket(bucket)
        .key("bad-mp")
        .upload_id(&id)
        .part_number(1)
        .checksum_sha256("c2hvcnQ=")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BadDigest", "{e:?}");
    let lp = c.list_parts().bucket(bucket).key("bad-mp").upload_id(&id).send().await.unwrap();
    assert!(lp.parts().is_empty());
    c.abort_multipart_upload().bucket(bucket).key("bad-mp").upload_id(&id).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_checksum_is_bad_digest() {
    let (_store, c) = start().await;
    check_malformed_checksum_is_bad_digest(&c, "bkt").await;
}

// ---------------------------------------------------------------------------------------------
// ListObjects version 1

/// `ListObjects` v1 paged by `marker`: without a delimiter no `NextMarker` (continue from the last
/// key), with one `NextMarker` (which may be a common prefix); every page together lists each key
/// or prefix once, in order.
pub async fn check_list_objects_v1(c: &Client, bucket: &str) {
    let keys = ["a/1", "a/2", "b", "c/1", "c/2", "d", "e/x/1"];
    for k in keys {
        c.put_object().bucket(bucket).key(k).body(ByteStream::from_static(b"v")).send().await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c.list_objects().bucket(bucket).set_marker(marker.clone()).max_keys(2).send().await.unwrap();
        assert!(page.next_marker().is_none(), "no NextMarker without a delimiter");
        let got: Vec<String> = page.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
        assert!(got.len() <= 2);
        seen.extend(got.iter().cloned());
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = got.last().cloned();
    }
    assert_eq!(seen, keys);

    let mut entries = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..10 {
        let list = c.list_objects().bucket(bucket).delimiter("/").set_marker(marker.clone()).max_keys(2);
        let page = list.send().await.unwrap();
        assert_eq!(page.delimiter(), Some("/"));
        entries.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        entries.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
        if page.is_truncated() != Some(true) {
            marker = None;
            break;
        }
        marker = Some(page.next_marker().expect("NextMarker with a delimiter").to_owned());
    }
    assert!(marker.is_none(), "the listing ended");
    entries.sort();
    assert_eq!(entries, ["a/", "b", "c/", "d", "e/"]);

    let page = c.list_objects().bucket(bucket).prefix("c/").send().await.unwrap();
    let got: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!((got, page.is_truncated()), (vec!["c/1", "c/2"], Some(false)));
    assert_eq!(page.contents()[0].e_tag(), Some(quoted_md5(b"v").as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_objects_v1() {
    let (_store, c) = start().await;
    check_list_objects_v1(&c, "bkt").await;
}

// ---------------------------------------------------------------------------------------------
// Conditional writes

/// `If-None-Match: *` and `If-Match` on `PutObject`: 412 `PreconditionFailed` when they fail,
/// `NoSuchKey` for `If-Match` on a missing key; the object is unchanged.
pub async fn check_conditional_put(c: &Client, bucket: &str) {
    let put = |body: &'static [u8]| c.put_object().bucket(bucket).key("cond").body(ByteStream::from_static(body));
    put(b"one").if_none_match("*").send().await.expect("a new key");
    let e = put(b"two").if_none_match("*").send().await.unwrap_err();
    assert_eq!((code(&e), e.raw_response().map(|r| r.status().as_u16())), ("PreconditionFailed".into(), Some(412)));
    let e = put(b"two").if_match(quoted_md5(b"other")).send().await.unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed");
    let got = read(c, bucket, "cond").await;
    assert_eq!(got, b"one", "a failed condition changes nothing");
    put(b"two").if_match(quoted_md5(b"one")).send().await.expect("the ETag matches");
    let head = c.head_object().bucket(bucket).key("cond").send().await.unwrap();
    assert_eq!(head.e_tag(), Some(quoted_md5(b"two").as_str()));
    let e = c
        .put_object()
        .bucket(bucket)
        .key("missing")
        .if_match(quoted_md5(b"x"))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchKey", "{e:?}");
}

/// The same conditions on `CompleteMultipartUpload`; a failed one leaves the upload in place, and
/// it can be completed afterwards.
pub async fn check_conditional_complete(c: &Client, bucket: &str) {
    c.put_object().bucket(bucket).key("mpc").body(ByteStream::from_static(b"old")).send().await.unwrap();
    let parts = vec![pattern(5 * MIB, 13), pattern(10, 14)];
    let (id, done) = upload(c, bucket, "mpc", None, None, &parts).await;
    let complete = || {
        let parts = listed(done.clone());
        c.complete_multipart_upload().bucket(bucket).key("mpc").upload_id(&id).multipart_upload(parts)
    };
    let e = complete().if_none_match("*").send().await.unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed", "{e:?}");
    let e = complete().if_match(quoted_md5(b"not old")).send().await.unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed", "{e:?}");
    let lp = c.list_parts().bucket(bucket).key("mpc").upload_id(&id).send().await.expect("the upload stays");
    assert_eq!(lp.parts().len(), 2);
    let head = c.head_object().bucket(bucket).key("mpc").send().await.unwrap();
    assert_eq!(head.e_tag(), Some(quoted_md5(b"old").as_str()), "the object is unchanged");
    complete().if_match(quoted_md5(b"old")).send().await.expect("the ETag matches");
    let head = c.head_object().bucket(bucket).key("mpc").send().await.unwrap();
    assert_eq!(head.content_length(), Some(parts.iter().map(Vec::len).sum::<usize>() as i64));

    let (id, done) = upload(c, bucket, "mpc-new", None, None, &parts).await;
    c.complete_multipart_upload()
        .bucket(bucket)
        .key("mpc-new")
        .upload_id(&id)
        .multipart_upload(listed(done))
        .if_none_match("*")
        .send()
        .await
        .expect("a new key");
}

/// Writes racing with `If-None-Match: *` on one key: exactly one wins, and the object is its.
pub async fn check_racing_if_none_match(c: &Client, bucket: &str) {
    const RACERS: u8 = 8;
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let c = c.clone();
            let bucket = bucket.to_owned();
            tokio::spawn(async move {
                let body = pattern(64 * 1024, i);
                let put = c.put_object().bucket(bucket).key("race").if_none_match("*");
                let r = put.body(ByteStream::from(body.clone())).send().await;
                (r.map_err(|e| code(&e)), body)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(_), body) => winners.push(body),
            (Err(code), _) => assert_eq!(code, "PreconditionFailed"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one write wins");
    let got = read(c, bucket, "race").await;
    assert_eq!(got, winners[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_put() {
    let (_store, c) = start().await;
    check_conditional_put(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_complete() {
    let (_store, c) = start().await;
    check_conditional_complete(&c, "bkt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_if_none_match() {
    let (_store, c) = start().await;
    check_racing_if_none_match(&c, "bkt").await;
}
