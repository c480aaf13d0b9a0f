//! Multipart rules against the real store over HTTP, with aws-sdk-s3 as the client.

#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use hoist_testkit::TestStore;
use hoist_testkit::error_code as code;
use md5::Digest as _;

const MIB: usize = 1024 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn upload_parts(store: &TestStore, key: &str, parts: &[Vec<u8>]) -> (String, Vec<CompletedPart>) {
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key(key).send().await.unwrap().upload_id.unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i32::try_from(i + 1).unwrap();
        let e_tag = put_part(&c, key, &id, n, p.clone()).await;
        done.push(CompletedPart::builder().part_number(n).e_tag(e_tag).build());
    }
    (id, done)
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_round_trip_with_etag_and_range_across_parts() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let parts = vec![data(5 * MIB, 1), data(5 * MIB, 2), data(1234, 3)];
    let (id, done) = upload_parts(&store, "big", &parts).await;
    let c = store.client();
    let out = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done.clone())).build())
        .send()
        .await
        .unwrap();
    let md5s: Vec<[u8; 16]> = parts.iter().map(|p| md5::Md5::digest(p).into()).collect();
    let expect = format!("\"{}\"", hoist_core::checksum::multipart_etag(&md5s));
    assert_eq!(out.e_tag.as_deref(), Some(expect.as_str()));

    let all: Vec<u8> = parts.concat();
    let got = c.get_object().bucket("bkt").key("big").send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert_eq!(got.as_ref(), all.as_slice());
    let start = 5 * MIB - 10;
    let end = 10 * MIB + 5;
    let r = c.get_object().bucket("bkt").key("big").range(format!("bytes={start}-{end}")).send().await.unwrap();
    assert_eq!(r.content_range.as_deref(), Some(format!("bytes {start}-{end}/{}", all.len()).as_str()));
    let got = r.body.collect().await.unwrap().into_bytes();
    assert_eq!(got.as_ref(), &all[start..=end]);

    // A repeated Complete with the same parts returns the same result; other calls: NoSuchUpload.
    let again = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    assert_eq!(again.e_tag, out.e_tag);
    let e = c.list_parts().bucket("bkt").key("big").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_rules_invalid_part_order_small_and_empty() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let (id, done) = upload_parts(&store, "k", &[data(1024, 1), data(5 * MIB, 2)]).await;
    let complete = |parts: Vec<CompletedPart>| {
        c.complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let forged = CompletedPart::builder().part_number(1).e_tag("\"00000000000000000000000000000000\"").build();
    assert_eq!(code(&complete(vec![forged, done[1].clone()]).await.unwrap_err()), "InvalidPart");
    let missing = CompletedPart::builder().part_number(7).e_tag(done[0].e_tag.clone().unwrap()).build();
    assert_eq!(code(&complete(vec![missing]).await.unwrap_err()), "InvalidPart");
    assert_eq!(code(&complete(vec![done[1].clone(), done[0].clone()]).await.unwrap_err()), "InvalidPartOrder");
    assert_eq!(code(&complete(done.clone()).await.unwrap_err()), "EntityTooSmall");
    assert_eq!(code(&complete(vec![]).await.unwrap_err()), "MalformedXML");
    // Gaps are allowed: part 2 alone completes (1 KiB part 1 left out).
    complete(vec![done[1].clone()]).await.unwrap();
    let head = c.head_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(head.content_length, Some(i64::try_from(5 * MIB).unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_then_everything_is_no_such_upload() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let (id, _) = upload_parts(&store, "k", &[data(100, 1)]).await;
    c.abort_multipart_upload().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    let e = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let e = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let e = c.abort_multipart_upload().bucket("bkt").key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let ups = c.list_multipart_uploads().bucket("bkt").send().await.unwrap();
    assert!(ups.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_checksums_and_md5_are_refused_and_nothing_is_stored() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c
        .create_multipart_upload()
        .bucket("bkt")
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let body = data(4096, 9);
    let wrong = hoist_core::checksum::Checksum::of(hoist_core::checksum::ChecksumAlgorithm::Crc32c, b"other");
    let e = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .checksum_crc32_c(wrong.to_base64())
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BadDigest");
    let e = c
        .put_object()
        .bucket("bkt")
        .key("o")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BadDigest");
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert!(parts.parts().is_empty());
    assert_eq!(
        code(&c.head_object().bucket("bkt").key("o").send().await.unwrap_err().into_service_error()),
        "NotFound"
    );

    // The right checksum is stored and listed.
    let right = hoist_core::checksum::Checksum::of(hoist_core::checksum::ChecksumAlgorithm::Crc32c, &body);
    c.upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .checksum_crc32_c(right.to_base64())
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts()[0].checksum_crc32_c(), Some(right.to_base64().as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_parts_and_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TestStore::start_in(dir.path()).await;
    store.create_bucket("bkt").await;
    let c = store.client();
    c.put_object().bucket("bkt").key("small").body(ByteStream::from_static(b"hello")).send().await.unwrap();
    let (id, done) = upload_parts(&store, "k", &[data(5 * MIB, 1), data(10, 2)]).await;
    store.shutdown().await;
    drop(store);

    let store = TestStore::start_in(dir.path()).await;
    let c = store.client();
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 2);
    c.complete_multipart_upload()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket("bkt").key("small").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_delete_and_versions_of_an_unversioned_bucket() {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    for k in ["a", "b/1", "b/2"] {
        c.put_object().bucket("bkt").key(k).body(ByteStream::from_static(b"v")).send().await.unwrap();
    }
    let versions = c.list_object_versions().bucket("bkt").send().await.unwrap();
    assert_eq!(versions.versions().len(), 3);
    assert!(versions.versions().iter().all(|v| v.version_id() == Some("null") && v.is_latest() == Some(true)));
    let ids: Vec<ObjectIdentifier> =
        ["a", "b/1", "b/2", "missing"].iter().map(|k| ObjectIdentifier::builder().key(*k).build().unwrap()).collect();
    let out = c
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 4, "deleting a missing key succeeds, as in S3");
    assert!(c.list_objects_v2().bucket("bkt").send().await.unwrap().contents().is_empty());
    c.delete_bucket().bucket("bkt").send().await.unwrap();
}

fn md5_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(md5::Md5::digest(bytes)))
}

async fn put_part(c: &aws_sdk_s3::Client, key: &str, id: &str, n: i32, body: Vec<u8>) -> String {
    let r = c
        .upload_part()
        .bucket("bkt")
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
    r.e_tag.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_parts_pages_ascending_with_etag_size_and_date() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    // Uploaded out of order, with a gap (no part 4).
    for n in [5, 1, 3, 2, 6] {
        put_part(&c, "k", &id, n, data(100 * usize::try_from(n).unwrap(), 1)).await;
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "ListParts never ended");
        let page = c
            .list_parts()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .max_parts(2)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(page.max_parts(), Some(2));
        assert_eq!(page.part_number_marker(), marker.as_deref());
        for p in page.parts() {
            let n = p.part_number().unwrap();
            let size = 100 * usize::try_from(n).unwrap();
            assert_eq!(p.size(), Some(i64::try_from(size).unwrap()), "part {n}");
            assert_eq!(p.e_tag(), Some(md5_etag(&data(size, 1)).as_str()), "part {n}");
            assert!(p.last_modified().is_some(), "part {n}");
            seen.push(n);
        }
        if page.is_truncated() == Some(true) {
            let next = page.next_part_number_marker().expect("a truncated page says where to go on");
            assert_eq!(next, page.parts().last().unwrap().part_number().unwrap().to_string());
            marker = Some(next.to_owned());
        } else {
            assert_eq!(page.next_part_number_marker(), None);
            break;
        }
    }
    assert_eq!(seen, [1, 2, 3, 5, 6]);
    assert_eq!(pages, 3);
    let after = c.list_parts().bucket("bkt").key("k").upload_id(&id).part_number_marker("3").send().await.unwrap();
    let numbers: Vec<i32> = after.parts().iter().filter_map(aws_sdk_s3::types::Part::part_number).collect();
    assert_eq!(numbers, [5, 6]);
    assert_eq!(after.is_truncated(), Some(false));
}

/// Upload ids made within the same second and across a second boundary, several for one key:
/// ListMultipartUploads pages with key-marker + upload-id-marker must return each exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn list_multipart_uploads_prefix_and_pages() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let create = |key: &'static str| {
        let c = c.clone();
        async move { c.create_multipart_upload().bucket("bkt").key(key).send().await.unwrap().upload_id.unwrap() }
    };
    let mut want: Vec<(String, String)> = Vec::new();
    // An upload of "p/a" started in one second, then more of "p/a" in the next: at least one
    // of them has an id that sorts before the first one's (S3 orders one key's uploads by
    // when they began; a listing that pages by id alone skips those).
    let first = create("p/a").await;
    want.push(("p/a".into(), first.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..64 {
        let id = create("p/a").await;
        let lower = id < first;
        want.push(("p/a".into(), id));
        if lower && want.len() >= 3 {
            break;
        }
    }
    for key in ["p/b", "p/b", "q/c", "p/c/d"] {
        let id = create(key).await;
        if key.starts_with("p/") {
            want.push((key.into(), id));
        }
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    for max in [1, 2, 3] {
        seen.clear();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 200, "ListMultipartUploads never ended");
            let page = c
                .list_multipart_uploads()
                .bucket("bkt")
                .prefix("p/")
                .max_uploads(max)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .unwrap();
            assert!(page.uploads().len() <= usize::try_from(max).unwrap());
            seen.extend(
                page.uploads().iter().map(|u| (u.key().unwrap().to_owned(), u.upload_id().unwrap().to_owned())),
            );
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_owned);
                id_marker = page.next_upload_id_marker().map(str::to_owned);
                assert!(key_marker.is_some() && id_marker.is_some());
            } else {
                key_marker = None;
                id_marker = None;
                break;
            }
        }
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        sorted_seen.dedup();
        assert_eq!(sorted_seen.len(), seen.len(), "max-uploads {max}: an upload listed twice: {seen:?}");
        let mut sorted_want = want.clone();
        sorted_want.sort();
        assert_eq!(sorted_seen, sorted_want, "max-uploads {max}: every upload under p/, once");
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        assert_eq!(keys, sorted_keys, "ordered by key");
        let first_a = seen.iter().position(|(k, _)| k == "p/a").unwrap();
        assert_eq!(seen[first_a].1, first, "one key's uploads in the order they began");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_upload_part_replaces_the_earlier_one() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    let first = data(5 * MIB, 1);
    let second = data(5 * MIB + 17, 2);
    let last = data(300, 3);
    let old = put_part(&c, "k", &id, 1, first).await;
    let new = put_part(&c, "k", &id, 1, second.clone()).await;
    let tail = put_part(&c, "k", &id, 2, last.clone()).await;
    assert_eq!(new, md5_etag(&second));
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 2, "still one part 1");
    assert_eq!(parts.parts()[0].e_tag(), Some(new.as_str()));
    assert_eq!(parts.parts()[0].size(), Some(i64::try_from(second.len()).unwrap()));

    let complete = |etag: &str| {
        let parts = vec![
            CompletedPart::builder().part_number(1).e_tag(etag).build(),
            CompletedPart::builder().part_number(2).e_tag(&tail).build(),
        ];
        c.complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    assert_eq!(code(&complete(&old).await.unwrap_err()), "InvalidPart", "the replaced part is gone");
    complete(&new).await.unwrap();
    let got = c.get_object().bucket("bkt").key("k").send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert_eq!(got.as_ref(), [second, last].concat().as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_complete_the_upload_is_gone_but_the_same_complete_is_answered_again() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let (id, done) = upload_parts(&store, "k", &[data(5 * MIB, 1), data(10, 2)]).await;
    let complete = |parts: Vec<CompletedPart>| {
        c.complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let first = complete(done.clone()).await.unwrap();
    let object = c.get_object().bucket("bkt").key("k").send().await.unwrap().body.collect().await.unwrap().into_bytes();

    let again = complete(done.clone()).await.unwrap();
    assert_eq!(again.e_tag(), first.e_tag(), "a retried Complete gets the same answer");
    // Other parts: part 1 alone (valid before the first Complete) is refused now.
    let e = complete(vec![done[0].clone()]).await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let e = complete(vec![done[1].clone(), done[0].clone()]).await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");

    let e = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let e = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    let e = c.abort_multipart_upload().bucket("bkt").key("k").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    assert!(c.list_multipart_uploads().bucket("bkt").send().await.unwrap().uploads().is_empty());

    let now = c.get_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(now.e_tag(), first.e_tag());
    assert_eq!(now.body.collect().await.unwrap().into_bytes(), object, "the object is what the first Complete made");
}
