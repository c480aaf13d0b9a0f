//! S3 event notifications over real HTTP: the store on an ephemeral port, written to with the AWS
//! SDK and browser POST forms, sending to a real receiver (`hoist_testkit::Receiver`) that is
//! up, answers errors, is down, or comes back later; and a restart of the store between.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
};
use hoist_store::{NotifyOptions, NotifyTarget, Store, StoreHandle};
use hoist_testkit::post_form::{PostForm, multipart_body};
use hoist_testkit::receiver::{Hit, Receiver, Reply};
use serde_json::Value;

const SECRET: &str = "notify-secret-for-tests";
/// Retries in milliseconds, so a test sees several.
const FAST: NotifyOptions = NotifyOptions {
    backoff_base: Duration::from_millis(20),
    backoff_cap: Duration::from_millis(200),
    timeout: Duration::from_secs(5),
    max_queued: 100,
};

async fn start(dir: &Path, targets: &[(&str, &str)], options: NotifyOptions) -> (StoreHandle, aws_sdk_s3::Client) {
    let mut b = Store::builder(dir).min_part_size(1024).notify_options(options);
    for (name, url) in targets {
        b = b.notify(NotifyTarget::new(name, url, SECRET).unwrap());
    }
    let store = b.build().unwrap();
    let creds = store.credentials().clone();
    let handle = store.start("127.0.0.1:0").await.unwrap();
    let client = hoist_testkit::sdk_client(&handle.endpoint_url(), &creds);
    (handle, client)
}

/// The one record of a hit, after checking its signature.
fn record(hit: &Hit) -> Value {
    let sig = hit.header(hoist_store::notify::SIGNATURE_HEADER);
    assert!(hoist_store::notify::verify(SECRET, &hit.body, sig), "bad signature {sig:?}");
    assert_eq!(hit.header("content-type"), "application/json");
    let v: Value = serde_json::from_slice(&hit.body).unwrap();
    let records = v["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{v}");
    records[0].clone()
}

/// A port where nothing listens (bound, then released).
async fn dead_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

fn queued(dir: &Path, target: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("notify").join(target))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_owned())
        .collect();
    v.sort();
    v
}

async fn put(c: &aws_sdk_s3::Client, key: &str, body: &[u8]) -> String {
    c.put_object().bucket("bkt").key(key).body(ByteStream::from(body.to_vec())).send().await.unwrap().e_tag.unwrap()
}

#[tokio::test]
async fn put_post_multipart_and_delete_send_signed_aws_shaped_records() {
    let rx = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let (handle, c) = start(dir.path(), &[("hook", &rx.url)], FAST).await;
    c.create_bucket().bucket("bkt").send().await.unwrap();

    let put_etag = put(&c, "in/my clip+1é.mp4", b"hello").await;
    // A browser POST form.
    let creds = hoist_store::Credentials::load_or_generate(dir.path()).unwrap().0;
    let form = PostForm::new()
        .condition(r#"{"bucket": "bkt"}"#)
        .condition(r#"["eq", "$key", "in/posted.txt"]"#)
        .field("key", "in/posted.txt")
        .sign(&creds);
    let (ct, body) = multipart_body(&form, "posted.txt", b"posted");
    let r = reqwest::Client::new()
        .post(format!("{}/bkt", handle.endpoint_url()))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // Multipart: two parts.
    let id = c.create_multipart_upload().bucket("bkt").key("in/big.bin").send().await.unwrap().upload_id.unwrap();
    let mut parts = Vec::new();
    for (n, len) in [(1, 2048usize), (2, 10)] {
        let e = c
            .upload_part()
            .bucket("bkt")
            .key("in/big.bin")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(vec![7u8; len]))
            .send()
            .await
            .unwrap()
            .e_tag
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(e).build());
    }
    let done = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("in/big.bin")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    c.delete_object().bucket("bkt").key("in/posted.txt").send().await.unwrap();

    let hits = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let recs: Vec<Value> = hits.iter().map(record).collect();
    let names: Vec<&str> = recs.iter().map(|r| r["eventName"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete"]
    );
    let put_rec = &recs[0];
    assert_eq!(put_rec["eventVersion"], "2.1");
    assert_eq!(put_rec["eventSource"], "aws:s3");
    assert!(put_rec["eventTime"].as_str().unwrap().ends_with('Z'), "{put_rec}");
    assert_eq!(put_rec["s3"]["bucket"]["name"], "bkt");
    assert_eq!(put_rec["s3"]["object"]["key"], "in/my+clip%2B1%C3%A9.mp4");
    assert_eq!(put_rec["s3"]["object"]["size"], 5);
    assert_eq!(put_rec["s3"]["object"]["eTag"], put_etag.trim_matches('"'));
    assert_eq!(recs[2]["s3"]["object"]["size"], 2058);
    assert_eq!(recs[2]["s3"]["object"]["eTag"], done.e_tag.unwrap().trim_matches('"'));
    assert!(recs[3]["s3"]["object"].get("size").is_none(), "a removal has no size");
    let seqs: Vec<&str> = recs.iter().map(|r| r["s3"]["object"]["sequencer"].as_str().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequencers increase: {seqs:?}");
    // Delivered events leave the queue.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(queued(dir.path(), "hook"), Vec::<String>::new());
    handle.shutdown().await;
}

#[tokio::test]
async fn bucket_configurations_route_filter_and_round_trip() {
    let (created, removed) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    let dir = tempfile::tempdir().unwrap();
    let (handle, c) = start(dir.path(), &[("created", &created.url), ("removed", &removed.url)], FAST).await;
    c.create_bucket().bucket("bkt").send().await.unwrap();
    let filter = |rules: &[(FilterRuleName, &str)]| {
        NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .set_filter_rules(Some(
                        rules.iter().map(|(n, v)| FilterRule::builder().name(n.clone()).value(*v).build()).collect(),
                    ))
                    .build(),
            )
            .build()
    };
    let config = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .id("videos")
                .queue_arn("arn:hoist:sqs:::created")
                .events(Event::S3ObjectCreated)
                .filter(filter(&[(FilterRuleName::Prefix, "in/"), (FilterRuleName::Suffix, ".mp4")]))
                .build()
                .unwrap(),
        )
        .queue_configurations(
            QueueConfiguration::builder()
                .queue_arn("arn:hoist:sqs:::removed")
                .events(Event::S3ObjectRemoved)
                .build()
                .unwrap(),
        )
        .build();
    c.put_bucket_notification_configuration().bucket("bkt").notification_configuration(config).send().await.unwrap();
    let got = c.get_bucket_notification_configuration().bucket("bkt").send().await.unwrap();
    let queues = got.queue_configurations();
    assert_eq!(queues.len(), 2);
    assert_eq!((queues[0].id(), queues[0].queue_arn()), (Some("videos"), "arn:hoist:sqs:::created"));
    assert_eq!(queues[0].events(), [Event::S3ObjectCreated]);
    assert_eq!(queues[0].filter().unwrap().key().unwrap().filter_rules().len(), 2);

    // Refused: an ARN that names no target, and a topic configuration.
    let bad = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .queue_arn("arn:aws:sqs:us-east-1:1:elsewhere")
                .events(Event::S3ObjectCreated)
                .build()
                .unwrap(),
        )
        .build();
    let e = c
        .put_bucket_notification_configuration()
        .bucket("bkt")
        .notification_configuration(bad)
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidArgument"), "{e:?}");
    assert!(e.meta().message().unwrap().contains("arn:hoist:sqs:::created"), "the message names the targets: {e:?}");
    let missing = c.get_bucket_notification_configuration().bucket("nope").send().await.unwrap_err();
    assert_eq!(missing.into_service_error().meta().code(), Some("NoSuchBucket"));

    for key in ["in/a.mp4", "out/a.mp4", "in/a.txt"] {
        put(&c, key, b"x").await;
    }
    c.delete_object().bucket("bkt").key("in/a.mp4").send().await.unwrap();
    let hits = created.wait_for(1, Duration::from_secs(10)).await;
    let gone = removed.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys = |r: &Receiver| {
        r.hits().iter().map(|h| record(h)["s3"]["object"]["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&created), ["in/a.mp4"], "only the prefix and suffix match: {hits:?}");
    assert_eq!(record(&hits[0])["s3"]["configurationId"], "videos");
    assert_eq!(keys(&removed), ["in/a.mp4"], "{gone:?}");

    // An empty configuration turns the bucket's notifications off.
    c.put_bucket_notification_configuration()
        .bucket("bkt")
        .notification_configuration(NotificationConfiguration::builder().build())
        .send()
        .await
        .unwrap();
    put(&c, "in/b.mp4", b"x").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(created.hits().len(), 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_failing_then_up_gets_every_event_with_its_sequencer() {
    let addr = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let (handle, c) = start(dir.path(), &[("hook", &format!("http://{addr}/hook"))], FAST).await;
    c.create_bucket().bucket("bkt").send().await.unwrap();
    for k in ["a", "b", "c"] {
        put(&c, k, k.as_bytes()).await;
    }
    // Nobody listens: the three wait on disk, oldest first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = queued(dir.path(), "hook");
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    // The receiver comes up, refuses twice, then accepts.
    let rx = Receiver::start_on(&addr, vec![Reply::Status(503), Reply::Status(500)]).await;
    let hits = rx.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(hits.len(), 5, "two refusals and three deliveries: {hits:?}");
    let recs: Vec<Value> = hits.iter().map(record).collect();
    let seq = |r: &Value| r["s3"]["object"]["sequencer"].as_str().unwrap().to_owned();
    assert!(hits[..3].iter().all(|h| h.body == hits[0].body), "the refused event is sent again unchanged");
    let delivered: Vec<(String, String)> =
        recs[2..].iter().map(|r| (r["s3"]["object"]["key"].as_str().unwrap().to_owned(), seq(r))).collect();
    assert_eq!(delivered.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(
        delivered.iter().map(|d| d.1.clone()).collect::<Vec<_>>(),
        waiting,
        "the sequencers are the queued ones"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(queued(dir.path(), "hook").is_empty());
    handle.shutdown().await;
}

#[tokio::test]
async fn events_pending_at_a_restart_are_delivered_by_the_next_run() {
    let addr = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let (handle, c) = start(dir.path(), &[("hook", &format!("http://{addr}/hook"))], FAST).await;
    c.create_bucket().bucket("bkt").send().await.unwrap();
    put(&c, "one", b"1").await;
    put(&c, "two", b"2").await;
    handle.shutdown().await;
    let waiting = queued(dir.path(), "hook");
    assert_eq!(waiting.len(), 2);

    let rx = Receiver::start(vec![]).await;
    let (handle, _c) = start(dir.path(), &[("hook", &rx.url)], FAST).await;
    let hits = rx.wait_for(2, Duration::from_secs(10)).await;
    let got: Vec<(String, String)> = hits
        .iter()
        .map(record)
        .map(|r| {
            (
                r["s3"]["object"]["key"].as_str().unwrap().to_owned(),
                r["s3"]["object"]["sequencer"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, [("one".to_owned(), waiting[0].clone()), ("two".to_owned(), waiting[1].clone())]);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_new_events_but_not_the_writes() {
    let addr = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let (handle, c) =
        start(dir.path(), &[("hook", &format!("http://{addr}/hook"))], NotifyOptions { max_queued: 2, ..FAST }).await;
    c.create_bucket().bucket("bkt").send().await.unwrap();
    for k in ["a", "b", "c", "d"] {
        put(&c, k, b"x").await;
    }
    assert_eq!(queued(dir.path(), "hook").len(), 2, "the queue holds at most max_queued events");
    assert_eq!(c.list_objects_v2().bucket("bkt").send().await.unwrap().contents().len(), 4, "every write succeeded");
    handle.shutdown().await;
}

#[tokio::test]
async fn bad_targets_are_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let t = NotifyTarget::new("a", "http://127.0.0.1:1/", SECRET).unwrap();
    let e = Store::builder(dir.path()).notify(t.clone()).notify(t).build().unwrap_err().to_string();
    assert!(e.contains("given twice"), "{e}");
    let e = NotifyTarget::new("a", "127.0.0.1:1/x", SECRET).unwrap_err().to_string();
    assert!(e.contains("http://"), "{e}");
}
