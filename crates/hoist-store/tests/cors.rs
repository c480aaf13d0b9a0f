//! Bucket CORS rules over HTTP: PutBucketCors/GetBucketCors/DeleteBucketCors through aws-sdk-s3.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
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
