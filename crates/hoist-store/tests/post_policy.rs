//! Browser POST uploads (`multipart/form-data` with a SigV4-signed POST policy) against the real
//! store: the form and its signature are built by hand in `hoist_testkit::post_form`, sent with
//! reqwest. s3s 0.14 parses the form, checks the signature and the policy, then calls the
//! store's `put_object`; these tests pin what a browser gets either way (as on AWS: a form that
//! breaks its policy is `403 AccessDenied`), and that a refused form stores nothing.

use hoist_testkit::post_form::{PostForm, multipart_around_file, multipart_body};
use hoist_testkit::{TestStore, pattern};
use md5::Digest as _;

/// Posts `fields` and then `file` to the bucket's URL, as a browser form would.
async fn post(store: &TestStore, bucket: &str, fields: &[(String, String)], file: &[u8]) -> (u16, String) {
    let (content_type, body) = multipart_body(fields, "photo.bin", file);
    let r = reqwest::Client::new()
        .post(format!("{}/{bucket}", store.endpoint_url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The usual policy: this bucket, keys under `user/`, `text/plain`, 1..=1000 bytes.
fn usual() -> PostForm {
    PostForm::new()
        .condition(r#"{"bucket": "bkt"}"#)
        .condition(r#"["starts-with", "$key", "user/"]"#)
        .condition(r#"["eq", "$Content-Type", "text/plain"]"#)
        .condition(r#"["content-length-range", 1, 1000]"#)
}

async fn start() -> TestStore {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    store
}

/// Nothing was stored: no object in the bucket, no temp file left behind.
async fn assert_nothing_stored(store: &TestStore, what: &str) {
    let listed = store.client().list_objects_v2().bucket("bkt").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.is_empty(), "{what}: stored {keys:?}");
    let tmp = std::fs::read_dir(store.data_dir().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "{what}: a temp file was left");
}

fn code_of(body: &str) -> &str {
    body.split("<Code>").nth(1).and_then(|s| s.split("</Code>").next()).unwrap_or("?")
}

/// The error message, XML entities decoded.
fn message_of(body: &str) -> String {
    let raw = body.split("<Message>").nth(1).and_then(|s| s.split("</Message>").next()).unwrap_or("");
    raw.replace("&apos;", "'").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_post_stores_the_object_and_answers_204_or_the_asked_status() {
    let store = start().await;
    let creds = store.credentials();
    let file = pattern(700, 1);
    let form = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, &file).await;
    assert_eq!(status, 204, "{body}");
    let got = store.client().get_object().bucket("bkt").key("user/a.txt").send().await.unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&file)));
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), file.as_slice());

    let form = usual()
        .condition(r#"{"success_action_status": "201"}"#)
        .field("key", "user/b.txt")
        .field("Content-Type", "text/plain")
        .field("success_action_status", "201")
        .sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"hello").await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("<Key>user/b.txt</Key>") && body.contains("<Bucket>bkt</Bucket>"), "{body}");
    let head = store.client().head_object().bucket("bkt").key("user/b.txt").send().await.unwrap();
    assert_eq!(head.content_length(), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn success_action_redirect_and_status_200_are_honoured() {
    let store = start().await;
    let creds = store.credentials();
    let form = usual()
        .condition(r#"["starts-with", "$success_action_redirect", "https://app.example.com/"]"#)
        .field("key", "user/r.txt")
        .field("Content-Type", "text/plain")
        .field("success_action_redirect", "https://app.example.com/done?x=1")
        .sign(&creds);
    let (content_type, body) = multipart_body(&form, "photo.bin", b"redirected");
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow
        .post(format!("{}/bkt", store.endpoint_url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let etag = hex::encode(md5::Md5::digest(b"redirected"));
    assert!(location.starts_with("https://app.example.com/done?x=1&bucket=bkt&key=user%2Fr.txt"), "{location}");
    assert!(location.contains(&etag), "{location}");
    store.client().head_object().bucket("bkt").key("user/r.txt").send().await.expect("stored");

    let form = usual()
        .condition(r#"{"success_action_status": "200"}"#)
        .field("key", "user/s.txt")
        .field("Content-Type", "text/plain")
        .field("success_action_status", "200")
        .sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"ok").await;
    assert_eq!((status, body.as_str()), (200, ""));
}

#[tokio::test(flavor = "multi_thread")]
async fn filename_in_the_key_is_the_file_name() {
    let store = start().await;
    let form = usual().field("key", "user/${filename}").field("Content-Type", "text/plain").sign(&store.credentials());
    let (status, body) = post(&store, "bkt", &form, b"named").await;
    assert_eq!(status, 204, "{body}");
    let got = store
        .client()
        .get_object()
        .bucket("bkt")
        .key("user/photo.bin")
        .send()
        .await
        .expect("stored under the file's name");
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"named");
    let listed = store.client().list_objects_v2().bucket("bkt").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["user/photo.bin"]);

    // The answers name the stored key: 201's XML and 303's Location.
    let form = usual()
        .condition(r#"{"success_action_status": "201"}"#)
        .field("key", "user/${filename}")
        .field("Content-Type", "text/plain")
        .field("success_action_status", "201")
        .sign(&store.credentials());
    let (status, body) = post(&store, "bkt", &form, b"named").await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("<Key>user/photo.bin</Key>"), "{body}");
    let form = usual()
        .condition(r#"["starts-with", "$success_action_redirect", "https://app.example.com/"]"#)
        .field("key", "user/${filename}")
        .field("Content-Type", "text/plain")
        .field("success_action_redirect", "https://app.example.com/done")
        .sign(&store.credentials());
    let (content_type, body) = multipart_body(&form, "photo.bin", b"named");
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.post(format!("{}/bkt", store.endpoint_url())).header("content-type", content_type).body(body);
    let r = r.send().await.unwrap();
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(location.contains("key=user%2Fphoto%2Ebin") || location.contains("key=user%2Fphoto.bin"), "{location}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_policy_is_refused() {
    let store = start().await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let form = usual()
        .expires_at(past)
        .field("key", "user/a.txt")
        .field("Content-Type", "text/plain")
        .sign(&store.credentials());
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    assert!(message_of(&body).contains("expired"), "{body}");
    assert_nothing_stored(&store, "expired policy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_signature_is_refused() {
    let store = start().await;
    let creds = store.credentials();
    let mut form = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    let sig = form.iter_mut().find(|(n, _)| n == "x-amz-signature").unwrap();
    sig.1 = format!("{}{}", &sig.1[..63], if sig.1.ends_with('0') { '1' } else { '0' });
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "SignatureDoesNotMatch"), "{body}");
    assert!(!message_of(&body).is_empty(), "the refusal says why: {body}");

    // Signed with another secret.
    let other = hoist_store::Credentials::new(creds.access_key.clone(), "not-the-secret-key-0123456789");
    let form = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&other);
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "SignatureDoesNotMatch"), "{body}");

    // The policy changed after signing (a wider size range).
    let mut form = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    let wider = usual().condition(r#"["content-length-range", 0, 1000000000]"#);
    let forged_policy = wider.field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    let forged = forged_policy.iter().find(|(n, _)| n == "policy").unwrap().1.clone();
    form.iter_mut().find(|(n, _)| n == "policy").unwrap().1 = forged;
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "SignatureDoesNotMatch"), "{body}");
    assert_nothing_stored(&store, "wrong signature").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_outside_starts_with_is_refused() {
    let store = start().await;
    let form = usual().field("key", "admin/a.txt").field("Content-Type", "text/plain").sign(&store.credentials());
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    assert!(message_of(&body).contains("'key'") && message_of(&body).contains("user/"), "{body}");
    assert_nothing_stored(&store, "key outside starts-with").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_content_type_outside_its_condition_is_refused() {
    let store = start().await;
    let creds = store.credentials();
    let form = usual().field("key", "user/a.txt").field("Content-Type", "text/html").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"<script>").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "eq: {body}");
    assert!(message_of(&body).contains("content-type"), "{body}");

    let images = PostForm::new()
        .condition(r#"{"bucket": "bkt"}"#)
        .condition(r#"["starts-with", "$key", "user/"]"#)
        .condition(r#"["starts-with", "$Content-Type", "image/"]"#);
    let form = images.clone().field("key", "user/a.png").field("Content-Type", "text/html").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"<script>").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "starts-with: {body}");
    // A form that leaves the field out does not satisfy the condition either.
    let form = images.clone().field("key", "user/a.png").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"<script>").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "missing field: {body}");
    assert_nothing_stored(&store, "content type").await;

    let form = images.field("key", "user/a.png").field("Content-Type", "image/png").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"png").await;
    assert_eq!(status, 204, "the same policy with a matching type: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_outside_content_length_range_is_refused() {
    let store = start().await;
    let creds = store.credentials();
    let form = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, &pattern(1001, 0)).await;
    assert_eq!((status, code_of(&body)), (400, "EntityTooLarge"), "{body}");
    let (status, body) = post(&store, "bkt", &form, b"").await;
    assert_eq!((status, code_of(&body)), (400, "EntityTooSmall"), "{body}");
    assert_nothing_stored(&store, "content-length-range").await;
    let (status, body) = post(&store, "bkt", &form, &pattern(1000, 0)).await;
    assert_eq!(status, 204, "the upper bound is inclusive: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_for_another_bucket_is_refused() {
    let store = start().await;
    store.create_bucket("other-bkt").await;
    let creds = store.credentials();
    let other = PostForm::new().condition(r#"{"bucket": "other-bkt"}"#).condition(r#"["starts-with", "$key", ""]"#);
    let form = other.clone().field("key", "a.txt").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    assert!(message_of(&body).contains("bucket"), "{body}");
    // A bucket form field that disagrees with the URL.
    let form = other.field("key", "a.txt").field("bucket", "other-bkt").sign(&creds);
    let (status, body) = post(&store, "bkt", &form, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    assert_nothing_stored(&store, "bucket condition").await;
    let other_listed = store.client().list_objects_v2().bucket("other-bkt").send().await.unwrap();
    assert!(other_listed.contents().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_without_signature_or_policy_or_with_unlisted_fields_is_refused() {
    let store = start().await;
    let creds = store.credentials();
    // No policy, no signature: an anonymous upload.
    let anonymous = vec![("key".to_owned(), "user/a.txt".to_owned())];
    let (status, body) = post(&store, "bkt", &anonymous, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    // A policy but no signature: still anonymous, whatever the policy says.
    let mut unsigned = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    unsigned.retain(|(n, _)| n != "x-amz-signature");
    let (status, body) = post(&store, "bkt", &unsigned, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    // A signature but no policy.
    let mut no_policy = usual().field("key", "user/a.txt").field("Content-Type", "text/plain").sign(&creds);
    no_policy.retain(|(n, _)| n != "policy");
    let (status, body) = post(&store, "bkt", &no_policy, b"data").await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(!message_of(&body).is_empty(), "{body}");
    // A field the policy does not mention (metadata the signer did not allow).
    let extra = usual()
        .field("key", "user/a.txt")
        .field("Content-Type", "text/plain")
        .field("x-amz-meta-owner", "mallory")
        .sign(&creds);
    let (status, body) = post(&store, "bkt", &extra, b"data").await;
    assert_eq!((status, code_of(&body)), (403, "AccessDenied"), "{body}");
    assert!(message_of(&body).contains("x-amz-meta-owner"), "{body}");
    assert_nothing_stored(&store, "unsigned form").await;
}

/// Posts `fields` and a file of `len` zero bytes streamed in 1 MiB chunks (nothing that size is
/// held by the test).
async fn post_streamed(store: &TestStore, fields: &[(String, String)], len: usize) -> (u16, String) {
    let (content_type, head, tail) = multipart_around_file(fields, "big.bin");
    let chunk = bytes::Bytes::from(vec![0u8; 1024 * 1024]);
    let mut pieces = vec![bytes::Bytes::from(head)];
    pieces.extend((0..len / chunk.len()).map(|_| chunk.clone()));
    pieces.push(chunk.slice(..len % chunk.len()));
    pieces.push(bytes::Bytes::from(tail));
    let stream = futures::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
    let r = reqwest::Client::new()
        .post(format!("{}/bkt", store.endpoint_url()))
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// s3s 0.14 reads a POST's file into memory, whole, before it checks the policy's size range and
/// before it refuses an unsigned form; its own cap is 5 GiB. The store caps it at 100 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_file_over_the_store_cap_is_refused_whatever_the_policy_allows() {
    const CAP: usize = 100 * 1024 * 1024;
    let store = start().await;
    let form = PostForm::new()
        .condition(r#"{"bucket": "bkt"}"#)
        .condition(r#"["starts-with", "$key", "user/"]"#)
        .condition(r#"["content-length-range", 0, 1073741824]"#)
        .field("key", "user/big.bin")
        .sign(&store.credentials());
    let (status, body) = post_streamed(&store, &form, CAP + 1).await;
    assert_eq!((status, code_of(&body)), (400, "EntityTooLarge"), "{body}");
    // The same without a signature: refused at the cap too, not after gigabytes.
    let anonymous = vec![("key".to_owned(), "user/big.bin".to_owned())];
    let (status, body) = post_streamed(&store, &anonymous, CAP + 1).await;
    assert_eq!((status, code_of(&body)), (400, "EntityTooLarge"), "{body}");
    assert_nothing_stored(&store, "over the cap").await;
    let (status, body) = post_streamed(&store, &form, 3 * 1024 * 1024).await;
    assert_eq!(status, 204, "a file under the cap: {body}");
}

/// A form's key with a control character is refused like one in a path (listings could not
/// carry it), and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_form_key_with_a_control_character_is_refused() {
    let store = start().await;
    let form =
        usual().field("key", "user/line\nbreak.txt").field("Content-Type", "text/plain").sign(&store.credentials());
    let (status, body) = post(&store, "bkt", &form, b"hello").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code_of(&body), "InvalidArgument", "{body}");
    assert!(message_of(&body).contains("control character"), "{body}");
    assert_nothing_stored(&store, "a key with a line feed").await;
}
