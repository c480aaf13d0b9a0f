//! Bucket CORS rules over HTTP: PutBucketCors/GetBucketCors/DeleteBucketCors through aws-sdk-s3,
//! and what a browser sees (preflights and response headers) through a plain HTTP client.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use hoist_testkit::TestStore;

const APP: &str = "https://app.example.com";

/// Code, HTTP status and message of a refused SDK call.
fn refusal<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> (String, u16, String) {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    (e.code().unwrap_or("?").to_owned(), status, e.message().unwrap_or_default().to_owned())
}

fn rule(origins: &[&str], methods: &[&str]) -> aws_sdk_s3::types::builders::CorsRuleBuilder {
    let v = |s: &[&str]| Some(s.iter().map(|&s| s.to_owned()).collect());
    CorsRule::builder().set_allowed_origins(v(origins)).set_allowed_methods(v(methods))
}

fn config(rules: Vec<CorsRule>) -> CorsConfiguration {
    CorsConfiguration::builder().set_cors_rules(Some(rules)).build().unwrap()
}

/// Four rules using every field: uploads from [`APP`], reads from any `*.example.org`, a later
/// rule for GET from [`APP`] (the first rule does not allow GET), and a last one that matches
/// only what an earlier rule already does (so it never answers).
fn sample_rules() -> Vec<CorsRule> {
    vec![
        rule(&[APP], &["PUT", "POST"])
            .allowed_headers("content-type")
            .allowed_headers("x-amz-*")
            .expose_headers("ETag")
            .expose_headers("x-amz-checksum-crc32c")
            .max_age_seconds(600)
            .build()
            .unwrap(),
        rule(&["https://*.example.org"], &["GET", "HEAD"]).build().unwrap(),
        rule(&[APP], &["GET"]).expose_headers("ETag").max_age_seconds(5).build().unwrap(),
        rule(&[APP], &["GET", "PUT"]).max_age_seconds(1).build().unwrap(),
    ]
}

/// A store with `global_origins` as its `--cors-origin` list, and bucket `bkt` with [`sample_rules`].
async fn browser_store(global_origins: Vec<String>) -> TestStore {
    let store = TestStore::start_with_cors_origins(global_origins).await;
    store.create_bucket("bkt").await;
    store.client().put_bucket_cors().bucket("bkt").cors_configuration(config(sample_rules())).send().await.unwrap();
    store
}

/// A preflight for `method` on `path`, from `origin`, asking for `headers`.
async fn preflight(
    store: &TestStore,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", store.endpoint_url()))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

fn presign() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_mins(5)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_cors_round_trips_until_deleted() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let e = c.get_bucket_cors().bucket("bkt").send().await.unwrap_err();
    let (code, status, message) = refusal(&e);
    assert_eq!((code.as_str(), status), ("NoSuchCORSConfiguration", 404), "{message}");
    assert!(message.contains("PutBucketCors"), "{message}");

    let rules = sample_rules();
    c.put_bucket_cors().bucket("bkt").cors_configuration(config(rules.clone())).send().await.unwrap();
    let got = c.get_bucket_cors().bucket("bkt").send().await.unwrap();
    assert_eq!(got.cors_rules(), rules.as_slice());

    let replacement = vec![rule(&["*"], &["DELETE"]).id("only").build().unwrap()];
    c.put_bucket_cors().bucket("bkt").cors_configuration(config(replacement.clone())).send().await.unwrap();
    let got = c.get_bucket_cors().bucket("bkt").send().await.unwrap();
    assert_eq!(got.cors_rules(), replacement.as_slice(), "a put replaces the whole configuration");

    c.delete_bucket_cors().bucket("bkt").send().await.unwrap();
    let e = c.get_bucket_cors().bucket("bkt").send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchCORSConfiguration");
    c.delete_bucket_cors().bucket("bkt").send().await.expect("deleting no configuration succeeds, as on AWS");

    let e = c.get_bucket_cors().bucket("no-such-bucket").send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchBucket");
    let e = c.put_bucket_cors().bucket("no-such-bucket").cors_configuration(config(rules)).send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchBucket");
    let e = c.delete_bucket_cors().bucket("no-such-bucket").send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_cors_rules_are_refused_and_change_nothing() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    store.create_bucket("bare").await;
    let c = store.client();
    let valid = sample_rules();
    c.put_bucket_cors().bucket("bkt").cors_configuration(config(valid.clone())).send().await.unwrap();

    let good = || rule(&[APP], &["GET"]).build().unwrap();
    let cases: Vec<(Vec<CorsRule>, &str, &str)> = vec![
        (vec![good(), rule(&[APP], &["GET", "PATCH"]).build().unwrap()], "InvalidRequest", "\"PATCH\""),
        // No AllowedOrigin element at all: s3s refuses it while parsing, without a message.
        (vec![rule(&[], &["GET"]).build().unwrap()], "MalformedXML", ""),
        (vec![rule(&[""], &["GET"]).build().unwrap()], "MalformedXML", "AllowedOrigin is empty"),
        (vec![rule(&["https://*.*.example.com"], &["GET"]).build().unwrap()], "InvalidRequest", "more than one '*'"),
        ((0..101).map(|_| good()).collect(), "InvalidRequest", "at most 100"),
    ];
    for (rules, want_code, want_message) in cases {
        for bucket in ["bkt", "bare"] {
            let e =
                c.put_bucket_cors().bucket(bucket).cors_configuration(config(rules.clone())).send().await.unwrap_err();
            let (code, status, message) = refusal(&e);
            assert_eq!((code.as_str(), status), (want_code, 400), "{message}");
            assert!(message.contains(want_message), "{message:?} should contain {want_message:?}");
        }
        let kept = c.get_bucket_cors().bucket("bkt").send().await.unwrap();
        assert_eq!(kept.cors_rules(), valid.as_slice(), "a refused put changed the rules");
        let e = c.get_bucket_cors().bucket("bare").send().await.unwrap_err();
        assert_eq!(refusal(&e).0, "NoSuchCORSConfiguration", "a refused put stored rules");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_rules_survive_a_restart_and_go_with_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let rules = sample_rules();
    let mut store = TestStore::start_in(dir.path()).await;
    for b in ["kept", "dropped"] {
        store.create_bucket(b).await;
        store.client().put_bucket_cors().bucket(b).cors_configuration(config(rules.clone())).send().await.unwrap();
    }
    store.shutdown().await;

    let mut store = TestStore::start_in(dir.path()).await;
    let c = store.client();
    assert_eq!(c.get_bucket_cors().bucket("kept").send().await.unwrap().cors_rules(), rules.as_slice());
    c.delete_bucket().bucket("dropped").send().await.unwrap();
    store.create_bucket("dropped").await;
    let e = c.get_bucket_cors().bucket("dropped").send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchCORSConfiguration", "a new bucket of the same name inherited the rules");
    store.shutdown().await;

    let store = TestStore::start_in(dir.path()).await;
    let c = store.client();
    assert_eq!(c.get_bucket_cors().bucket("kept").send().await.unwrap().cors_rules(), rules.as_slice());
    let e = c.get_bucket_cors().bucket("dropped").send().await.unwrap_err();
    assert_eq!(refusal(&e).0, "NoSuchCORSConfiguration", "deleted rules came back after a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_is_answered_from_the_first_matching_bucket_rule() {
    let store = browser_store(Vec::new()).await;
    let path = "/bkt/some/key?partNumber=1&uploadId=x";

    let r = preflight(&store, path, APP, "PUT", Some("Content-Type,X-Amz-Checksum-Crc32c")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("PUT, POST"));
    assert_eq!(header(&r, "access-control-allow-headers"), Some("Content-Type, X-Amz-Checksum-Crc32c"));
    assert_eq!(header(&r, "access-control-expose-headers"), Some("ETag, x-amz-checksum-crc32c"));
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));
    assert_eq!(header(&r, "vary"), Some("Origin"));

    // A wildcard origin; the rule has no headers to expose and no max age.
    let r = preflight(&store, path, "https://cdn.example.org", "GET", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("https://cdn.example.org"));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET, HEAD"));
    for absent in ["access-control-allow-headers", "access-control-expose-headers", "access-control-max-age"] {
        assert_eq!(header(&r, absent), None, "{absent}");
    }

    // The first rule allows the origin but not GET: the third rule answers, not the fourth.
    let r = preflight(&store, path, APP, "GET", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET"));
    assert_eq!(header(&r, "access-control-max-age"), Some("5"));
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_refusals_say_what_did_not_match() {
    let store = browser_store(Vec::new()).await;
    store.create_bucket("bare").await;
    let path = "/bkt/key";
    let cases = [
        (path, "https://evil.example", "PUT", None, "allows origin https://evil.example"),
        (path, "https://example.org", "GET", None, "allows origin https://example.org"),
        (path, APP, "DELETE", None, "to use method \"DELETE\""),
        (path, APP, "PUT", Some("content-type,x-custom"), "to send header \"x-custom\""),
        ("/bare/key", APP, "PUT", None, "bucket \"bare\" has no CORS configuration"),
        ("/missing/key", APP, "PUT", None, "bucket \"missing\" has no CORS configuration"),
    ];
    for (path, origin, method, headers, why) in cases {
        let r = preflight(&store, path, origin, method, headers).await;
        assert_eq!(r.status(), 403, "{origin} {method} {headers:?}");
        assert_eq!(header(&r, "access-control-allow-origin"), None);
        let body = r.text().await.unwrap();
        assert!(body.contains(why), "{body:?} should contain {why:?}");
        assert!(body.contains("--cors-origin"), "{body:?} should name the global fix");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_to_allowed_origins_carry_cors_headers() {
    let store = browser_store(Vec::new()).await;
    let c = store.client();
    let http = reqwest::Client::new();
    let put = c.put_object().bucket("bkt").key("k").presigned(presign()).await.unwrap();
    let r = http.put(put.uri()).header("origin", APP).body("hello").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&r, "access-control-expose-headers"), Some("ETag, x-amz-checksum-crc32c"));
    assert_eq!(header(&r, "vary"), Some("Origin"));
    assert!(header(&r, "etag").is_some());

    let get = c.get_object().bucket("bkt").key("k").presigned(presign()).await.unwrap();
    let r = http.get(get.uri()).header("origin", APP).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&r, "access-control-expose-headers"), Some("ETag"));

    let r = http.get(get.uri()).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None, "an origin no rule allows");

    let delete = c.delete_object().bucket("bkt").key("k").presigned(presign()).await.unwrap();
    let r = http.delete(delete.uri()).header("origin", "https://cdn.example.org").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), None, "a method the origin's rule does not allow");

    // Errors too, so that a browser can read why a request failed.
    let r = http.get(get.uri()).header("origin", APP).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
}

#[tokio::test(flavor = "multi_thread")]
async fn global_cors_origin_still_applies_beside_bucket_rules() {
    let global = "http://global.example";
    let store = browser_store(vec![global.into()]).await;

    // The global origin: any method and header, on a bucket with rules and on the root.
    for path in ["/bkt/key", "/"] {
        let r = preflight(&store, path, global, "DELETE", Some("x-custom")).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "access-control-allow-origin"), Some(global));
        assert_eq!(header(&r, "access-control-allow-methods"), Some("GET, HEAD, PUT, POST, DELETE"));
        assert_eq!(header(&r, "access-control-allow-headers"), Some("x-custom"));
        assert!(header(&r, "access-control-expose-headers").unwrap().contains("ETag"));
    }
    // A bucket rule's origin: that rule's answer on the bucket, nothing on the root.
    let r = preflight(&store, "/bkt/key", APP, "PUT", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-methods"), Some("PUT, POST"));
    let r = preflight(&store, "/", APP, "GET", None).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("--cors-origin https://app.example.com"));

    let c = store.client();
    c.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let get = c.get_object().bucket("bkt").key("k").presigned(presign()).await.unwrap();
    let r = reqwest::Client::new().get(get.uri()).header("origin", global).send().await.unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some(global));
    assert!(header(&r, "access-control-expose-headers").unwrap().contains("ETag"));
}
