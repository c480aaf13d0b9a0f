//! The service's Complete path through the fault proxy: `hoist serve` with its S3 endpoint (as
//! `--s3-endpoint` sets it) pointed at the proxy in front of a real store, parts PUT to the
//! signed URLs, then Complete with the store's answer spoiled (lost, 200 carrying an `<Error>`,
//! lost then `NoSuchUpload`, cut, 5xx, reset, trickled).
//!
//! The rule checked for every fault: the service never reports success for an object that is not
//! stored byte for byte, nor failure for one that is; a failure can be retried (faults off) to
//! success; and no incomplete upload is left in the store.

#![allow(clippy::cast_possible_truncation)] // sizes from JSON are small on purpose

mod common;

use common::*;
use hoist_server::config::S3Target;
use hoist_testkit::TestStore;
use hoist_testkit::fault_proxy::{Fault, FaultProxy, Op, Rule};
use serde_json::json;

/// The faults that can strike CompleteMultipartUpload as the service sends it.
const COMPLETE_FAULTS: [Fault; 10] = [
    Fault::LostResponse,
    Fault::LostThenNoSuchUpload,
    Fault::ErrorIn200,
    Fault::Truncate,
    Fault::Reset,
    Fault::InternalError,
    Fault::SlowDown,
    Fault::Trickle,
    Fault::RequestTimeout,
    Fault::NoSuchUpload,
];

#[tokio::test(flavor = "multi_thread")]
async fn complete_never_reports_success_for_a_missing_object_nor_failure_for_a_stored_one() {
    let store = TestStore::start().await;
    store.create_bucket("hoist").await;
    let upstream = store.endpoint_url().trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::scripted(upstream, vec![]).await;
    let creds = store.credentials();
    let endpoint = proxy.endpoint_url();
    let svc = Service::start_with(|c| {
        c.s3 = S3Target::External {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            profile: None,
            credentials: Some((creds.access_key.clone(), creds.secret_key.clone())),
        };
    })
    .await;
    let s3 = store.client();
    let mut broken = Vec::new();
    for (i, fault) in COMPLETE_FAULTS.into_iter().enumerate() {
        let content = data(10 * MIB + 777 * i, i as u8);
        let c = call(
            "POST",
            &format!("{}/v1/uploads", svc.url),
            Some(BOB),
            Some(create_body(&format!("f{i}.bin"), content.len())),
        )
        .await;
        assert_eq!(c.status, 201, "{fault:?}: {}", c.body);
        let id = c.body["id"].as_str().unwrap().to_owned();
        let key = c.body["key"].as_str().unwrap().to_owned();
        let count = c.body["part_count"].as_u64().unwrap();
        let part_size = c.body["part_size"].as_u64().unwrap() as usize;
        let numbers: Vec<u64> = (1..=count).collect();
        let signed = call(
            "POST",
            &format!("{}/v1/uploads/{id}/parts", svc.url),
            Some(BOB),
            Some(json!({ "part_numbers": numbers })),
        )
        .await;
        assert_eq!(signed.status, 200, "{}", signed.body);
        let mut etags = Vec::new();
        for (part, chunk) in signed.body["parts"].as_array().unwrap().iter().zip(content.chunks(part_size)) {
            let (status, etag, text) = put_part(part, chunk.to_vec()).await;
            assert_eq!(status, 200, "{fault:?}: {text}");
            etags.push(json!({ "part_number": part["part_number"], "etag": etag.unwrap() }));
        }
        proxy.set_rules(vec![Rule { op: Op::Complete, nth: 1, fault }]);
        let url = format!("{}/v1/uploads/{id}/complete", svc.url);
        let done = call("POST", &url, Some(BOB), Some(json!({ "parts": etags }))).await;
        let fired = proxy.seen(Op::Complete) >= 1;
        let stored = s3.get_object().bucket("hoist").key(&key).send().await.ok();
        let stored = match stored {
            Some(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            None => None,
        };
        let identical = stored.as_deref() == Some(content.as_slice());
        println!(
            "{fault:?}: fault reached {fired}; service answered {} {}; object stored and identical: {identical}",
            done.status, done.body
        );
        if !fired {
            broken.push(format!("{fault:?}: the Complete never reached the proxy"));
        }
        if done.status == 200 && !identical {
            broken.push(format!(
                "{fault:?}: success reported, object {}",
                if stored.is_some() { "different" } else { "missing" }
            ));
        }
        if done.status != 200 && identical {
            broken.push(format!("{fault:?}: failure ({}) reported for a stored, identical object", done.status));
        }
        if done.status != 200 {
            proxy.set_rules(vec![]);
            let again = call("POST", &url, Some(BOB), Some(json!({ "parts": etags }))).await;
            let identical = s3.get_object().bucket("hoist").key(&key).send().await.ok();
            let identical = match identical {
                Some(o) => o.body.collect().await.unwrap().into_bytes().as_ref() == content.as_slice(),
                None => false,
            };
            if again.status != 200 || !identical {
                broken.push(format!(
                    "{fault:?}: a retried Complete answered {} {} (object identical: {identical})",
                    again.status, again.body
                ));
            }
        }
        let left = s3.list_multipart_uploads().bucket("hoist").prefix(&key).send().await.unwrap();
        if !left.uploads().is_empty() {
            broken.push(format!("{fault:?}: incomplete upload left: {:?}", left.uploads()));
        }
    }
    svc.stop().await;
    assert!(
        broken.is_empty(),
        "{} of {} faults broke the rules:\n{}",
        broken.len(),
        COMPLETE_FAULTS.len(),
        broken.join("\n")
    );
}
