//! Buckets and objects against the real store over HTTP (aws-sdk-s3, and reqwest on pre-signed
//! URLs where the status code itself is the rule): one test per rule of S3's bucket calls,
//! ranged reads, checksum mode, listing and delete.

use aws_sdk_s3::config::ResponseChecksumValidation;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use hoist_core::checksum::{Checksum, ChecksumAlgorithm as Alg};
use hoist_testkit::sdk::{presigned_get, presigned_put};
use hoist_testkit::{TestStore, error_code, error_message, pattern};

#[tokio::test(flavor = "multi_thread")]
async fn bucket_create_twice_head_list_and_delete() {
    let store = TestStore::start().await;
    let c = store.client();
    c.create_bucket().bucket("second-bkt").send().await.unwrap();
    c.create_bucket().bucket("first-bkt").send().await.unwrap();

    let e = c.create_bucket().bucket("first-bkt").send().await.unwrap_err();
    assert_eq!(error_code(&e), "BucketAlreadyOwnedByYou");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(409));

    c.head_bucket().bucket("first-bkt").send().await.unwrap();
    let e = c.head_bucket().bucket("missing-bkt").send().await.unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert!(e.into_service_error().is_not_found());

    let listed = c.list_buckets().send().await.unwrap();
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["first-bkt", "second-bkt"], "every bucket, in name order");
    assert!(listed.buckets().iter().all(|b| b.creation_date().is_some()));

    let e = c.delete_bucket().bucket("missing-bkt").send().await.unwrap_err();
    assert_eq!(error_code(&e), "NoSuchBucket");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));

    c.delete_bucket().bucket("first-bkt").send().await.unwrap();
    let e = c.head_bucket().bucket("first-bkt").send().await.unwrap_err();
    assert!(e.into_service_error().is_not_found(), "a deleted bucket is gone");
    let names: Vec<String> =
        c.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name().map(str::to_owned)).collect();
    assert_eq!(names, ["second-bkt"]);
}

/// boto3 showed `create_bucket(Bucket='b')` failing with message "Unknown": s3s refuses a bad
/// name while routing, before the store's code, with a code and no message.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_bucket_names_and_long_keys_are_refused_with_a_message_naming_the_fix() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    for bad in ["b", "Bad_Name", "192.168.1.1", "xn--bucket", "ends-with-dash-"] {
        let e = c.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidBucketName", "{bad}");
        let msg = error_message(&e);
        assert!(msg.contains(&format!("{bad:?}")), "{bad}: the message names the bucket: {msg:?}");
        assert!(msg.contains("3-63 characters"), "{bad}: the message says the rule: {msg:?}");
    }
    // Not only CreateBucket: any call naming an invalid bucket.
    let e = c.get_object().bucket("ab").key("k").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidBucketName");
    assert!(error_message(&e).contains("\"ab\""), "{}", error_message(&e));

    let long = "k".repeat(1025);
    let e = c.put_object().bucket("bkt").key(&long).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(error_code(&e), "KeyTooLongError");
    assert!(error_message(&e).contains("1025 bytes"), "{}", error_message(&e));
    assert!(c.list_objects_v2().bucket("bkt").send().await.unwrap().contents().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_object_ranges_suffix_open_and_unsatisfiable() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let data = pattern(1000, 7);
    c.put_object().bucket("bkt").key("k").body(ByteStream::from(data.clone())).send().await.unwrap();
    c.put_object().bucket("bkt").key("empty").body(ByteStream::from_static(b"")).send().await.unwrap();

    let ranged = |range: &'static str| c.get_object().bucket("bkt").key("k").range(range).send();
    for (range, want, content_range) in [
        ("bytes=-100", 900..1000, "bytes 900-999/1000"),
        ("bytes=-5000", 0..1000, "bytes 0-999/1000"),
        ("bytes=990-", 990..1000, "bytes 990-999/1000"),
        ("bytes=0-", 0..1000, "bytes 0-999/1000"),
        ("bytes=10-19", 10..20, "bytes 10-19/1000"),
        ("bytes=995-2000", 995..1000, "bytes 995-999/1000"),
    ] {
        let r = ranged(range).await.unwrap();
        assert_eq!(r.content_range(), Some(content_range), "{range}");
        assert_eq!(r.content_length(), Some(i64::try_from(want.len()).unwrap()), "{range}");
        let got = r.body.collect().await.unwrap().into_bytes();
        assert_eq!(got.as_ref(), &data[want], "{range}");
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let e = ranged(range).await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidRange", "{range}");
    }
    let e = c.get_object().bucket("bkt").key("empty").range("bytes=0-").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidRange", "no byte of an empty object can be served");

    // The status codes themselves, on the wire.
    let http = reqwest::Client::new();
    let url = presigned_get(&c, "bkt", "k").await;
    let r = http.get(&url).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[990..]);
    let r = http.get(&url).header("range", "bytes=1000-").send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert!(r.text().await.unwrap().contains("<Code>InvalidRange</Code>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_mode_enabled_returns_the_stored_checksum_and_only_then() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    // A client that does not ask for checksums on GetObject by itself (the SDK's default does).
    let conf = store
        .client()
        .config()
        .to_builder()
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    let data = pattern(70_000, 3);
    let crc = Checksum::of(Alg::Crc32c, &data).to_base64();
    c.put_object()
        .bucket("bkt")
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();

    let head = c.head_object().bucket("bkt").key("k").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(head.checksum_crc32_c(), Some(crc.as_str()));
    assert_eq!(head.checksum_type().map(aws_sdk_s3::types::ChecksumType::as_str), Some("FULL_OBJECT"));
    let head = c.head_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(head.checksum_crc32_c(), None, "no checksum unless asked for");
    assert_eq!(head.checksum_type(), None);

    let get = c.get_object().bucket("bkt").key("k").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(get.checksum_crc32_c(), Some(crc.as_str()));
    let get = c.get_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(get.checksum_crc32_c(), None, "no checksum unless asked for");
    // A range is not the object: its checksum would not match the bytes served.
    let get = c
        .get_object()
        .bucket("bkt")
        .key("k")
        .range("bytes=0-9")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(get.checksum_crc32_c(), None);
}

async fn put_keys(c: &aws_sdk_s3::Client, keys: &[&str]) {
    for k in keys {
        c.put_object().bucket("bkt").key(*k).body(ByteStream::from_static(b"v")).send().await.unwrap();
    }
}

/// Every page of a listing, following continuation tokens (at most 50 pages: a listing that
/// never ends is a failure, not a hang). Each entry is `key` or `prefix/` (a common prefix).
async fn all_pages(
    c: &aws_sdk_s3::Client,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    max_keys: i32,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..50 {
        let page = c
            .list_objects_v2()
            .bucket("bkt")
            .set_prefix(prefix.map(str::to_owned))
            .set_delimiter(delimiter.map(str::to_owned))
            .max_keys(max_keys)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        let mut entries: Vec<String> = page.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
        entries.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
        entries.sort();
        assert!(entries.len() <= usize::try_from(max_keys).unwrap(), "a page holds at most max-keys entries");
        assert_eq!(page.key_count(), Some(i32::try_from(entries.len()).unwrap()));
        pages.push(entries);
        assert_eq!(page.is_truncated(), Some(page.next_continuation_token().is_some()));
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return pages,
        }
    }
    panic!("the listing did not end after 50 pages: {pages:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_objects_v2_prefix_delimiter_pages_and_start_after() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    put_keys(&c, &["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "c/3", "d", "e/1"]).await;

    let flat = |pages: Vec<Vec<String>>| pages.concat();
    assert_eq!(flat(all_pages(&c, Some("a/"), None, 1000).await), ["a/1", "a/2", "a/b/3"]);
    assert_eq!(flat(all_pages(&c, None, Some("/"), 1000).await), ["a/", "b", "c/", "d", "e/"]);
    assert_eq!(flat(all_pages(&c, Some("a/"), Some("/"), 1000).await), ["a/1", "a/2", "a/b/"]);

    // Pages of every size, with and without a delimiter: each entry exactly once, in order.
    let all = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "c/3", "d", "e/1"];
    for max in 1..=4 {
        let pages = all_pages(&c, None, None, max).await;
        assert_eq!(pages.len(), all.len().div_ceil(usize::try_from(max).unwrap()), "max-keys {max}: {pages:?}");
        assert_eq!(flat(pages), all, "max-keys {max}");
        let pages = all_pages(&c, None, Some("/"), max).await;
        assert_eq!(flat(pages.clone()), ["a/", "b", "c/", "d", "e/"], "max-keys {max} with a delimiter: {pages:?}");
        let pages = all_pages(&c, Some("c/"), Some("/"), max).await;
        assert_eq!(flat(pages), ["c/1", "c/2", "c/3"], "max-keys {max} under a prefix");
    }

    let after = c.list_objects_v2().bucket("bkt").start_after("b").send().await.unwrap();
    let keys: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c/1", "c/2", "c/3", "d", "e/1"]);
    assert_eq!(after.start_after(), Some("b"));
    let after = c.list_objects_v2().bucket("bkt").prefix("c/").start_after("c/1").max_keys(1).send().await.unwrap();
    let keys: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c/2"]);
    assert_eq!(after.is_truncated(), Some(true));
    let rest = c
        .list_objects_v2()
        .bucket("bkt")
        .prefix("c/")
        .start_after("c/1")
        .continuation_token(after.next_continuation_token().unwrap())
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = rest.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["c/3"], "the token, not start-after, says where the next page starts");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_of_a_missing_key_is_204_and_deletes_only_that_key() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    put_keys(&c, &["keep"]).await;
    c.delete_object().bucket("bkt").key("never-there").send().await.unwrap();

    let url = c
        .delete_object()
        .bucket("bkt")
        .key("never-there")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_mins(1)).unwrap())
        .await
        .unwrap();
    let r = reqwest::Client::new().delete(url.uri()).send().await.unwrap();
    assert_eq!(r.status(), 204);

    let url = presigned_put(&c, "bkt", "gone").await;
    assert_eq!(reqwest::Client::new().put(&url).body("x").send().await.unwrap().status(), 200);
    c.delete_object().bucket("bkt").key("gone").send().await.unwrap();
    let keys: Vec<String> = c
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(keys, ["keep"]);
}
