//! Webhook deliveries against real HTTP receivers on ephemeral ports, on `SQLite` always and on
//! Postgres when `HOIST_TEST_DATABASE_URL` names one. Every signature a receiver gets is checked
//! with the `standardwebhooks` crate, an implementation independent of Hoist's.

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // small test counts and latencies

use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_server::config::WebhookEndpoint;
use hoist_server::db::Db;
use hoist_server::pipeline::events::{Event, JOB_SUCCEEDED, UPLOAD_COMPLETED};
use hoist_server::pipeline::webhooks::{self, DeliveryState, Schedule, Webhooks};
use hoist_testkit::receiver::{Hit, Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=";

fn endpoint(rx: &Receiver, events: &[&str]) -> WebhookEndpoint {
    WebhookEndpoint {
        url: rx.url.clone(),
        secret: SECRET.into(),
        events: events.iter().map(ToString::to_string).collect(),
    }
}

fn id(hit: &Hit) -> &str {
    hit.header("webhook-id")
}

/// Verifies a request as a receiver would, with the `standardwebhooks` crate.
fn verify(secret: &str, hit: &Hit) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("{e:?}"))?;
    wh.verify(&hit.body, &hit.headers).map_err(|e| format!("{e:?}"))
}

/// The databases to run on: a fresh `SQLite` file always, Postgres when configured.
async fn databases(dir: &tempfile::TempDir) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}?mode=rwc", dir.path().join("hoist.db").display())];
    match std::env::var("HOIST_TEST_DATABASE_URL") {
        Ok(pg) => urls.push(hoist_server::db::fresh_postgres_schema(&pg).await.unwrap()),
        Err(_) => eprintln!("HOIST_TEST_DATABASE_URL is not set: Postgres not checked here"),
    }
    urls
}

/// A database, and a pool of its own to play the caller's transaction.
async fn open(url: &str) -> (Db, sqlx::AnyPool) {
    let db = Db::connect(url).await.unwrap();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(2).connect(url).await.unwrap();
    (db, pool)
}

fn event(kind: &str) -> Event {
    Event {
        id: format!("evt_{:032x}", rand::random::<u128>()),
        kind: kind.into(),
        at_ms: hoist_server::db::now_ms(),
        data: serde_json::json!({ "upload_id": "u1", "key": "dev/a.mp4" }),
    }
}

/// Enqueues `e` in a transaction, commits, wakes the loop: what the pipeline does.
async fn raise(pool: &sqlx::AnyPool, hooks: &Webhooks, e: &Event) {
    let mut tx = pool.begin().await.unwrap();
    hooks.enqueue(&mut tx, e).await.unwrap();
    tx.commit().await.unwrap();
    hooks.wake();
}

/// The delivery of `event_id` to the receiver at `url_target`.
async fn delivery(db: &Db, event_id: &str) -> webhooks::Delivery {
    webhooks::list(db, false, 10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.event_id == event_id)
        .expect("a delivery row")
}

/// Waits until the delivery of `event_id` leaves `pending`.
async fn settled(db: &Db, event_id: &str, within: Duration) -> webhooks::Delivery {
    let end = Instant::now() + within;
    loop {
        let d = delivery(db, event_id).await;
        if d.state != DeliveryState::Pending || Instant::now() > end {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast(attempts: usize) -> Schedule {
    Schedule::new(vec![Duration::from_millis(20); attempts])
}

fn spawn_loop(hooks: &Arc<Webhooks>, db: &Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(Arc::clone(hooks).run(db.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_2xx_with_one_id_each_attempt_signed() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (db, pool) = open(&url).await;
        let rx = Receiver::start(vec![Reply::Status(503), Reply::Status(503), Reply::Status(503)]).await;
        let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(8)));
        let run = spawn_loop(&hooks, &db);
        let e = event(JOB_SUCCEEDED);
        let started = Instant::now();
        raise(&pool, &hooks, &e).await;
        let d = settled(&db, &e.id, Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "4 attempts took {:?}", started.elapsed());
        assert_eq!((d.state, d.attempts, d.last_status), (DeliveryState::Delivered, 4, Some(200)), "{d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hits = rx.hits();
        assert_eq!(hits.len(), 4, "exactly 4 attempts");
        for h in &hits {
            assert_eq!(id(h), e.id, "one webhook-id across retries");
            assert_eq!(h.header("content-type"), "application/json");
            verify(SECRET, h).unwrap();
            assert!(verify(OTHER_SECRET, h).is_err(), "a wrong secret must not verify");
            let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
            assert_eq!(body["type"], JOB_SUCCEEDED);
            assert_eq!(body["data"], e.data);
            assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        // A tampered body fails the independent check too.
        let mut bad = hits[0].clone();
        bad.body.push(b' ');
        assert!(verify(SECRET, &bad).is_err());
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_until_enabled() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (db, pool) = open(&url).await;
        let rx = Receiver::start(vec![Reply::Status(503), Reply::Status(410)]).await;
        let retry = Duration::from_secs(2);
        let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(Schedule::new(vec![
            Duration::ZERO,
            retry,
            retry,
        ])));
        let run = spawn_loop(&hooks, &db);
        // `a` gets a 503 and waits for its retry; then `b` gets 410 Gone.
        let (a, b) = (event(UPLOAD_COMPLETED), event(JOB_SUCCEEDED));
        raise(&pool, &hooks, &a).await;
        assert_eq!(rx.wait_for(1, Duration::from_secs(5)).await.len(), 1);
        raise(&pool, &hooks, &b).await;
        assert_eq!(rx.wait_for(2, Duration::from_secs(5)).await.len(), 2);
        assert_eq!(settled(&db, &b.id, Duration::from_secs(5)).await.state, DeliveryState::Disabled);
        assert_eq!(delivery(&db, &a.id).await.state, DeliveryState::Disabled, "its pending delivery stopped");
        // New events are not queued for it, and `a`'s retry never comes.
        let c = event(JOB_SUCCEEDED);
        raise(&pool, &hooks, &c).await;
        tokio::time::sleep(retry + Duration::from_millis(500)).await;
        assert_eq!(rx.hits().len(), 2, "nothing more is sent to a disabled endpoint");
        assert!(
            webhooks::list(&db, false, 10_000).await.unwrap().iter().all(|d| d.event_id != c.id),
            "no row for a disabled endpoint"
        );
        let disabled = webhooks::disabled_endpoints(&db).await.unwrap();
        assert!(disabled.iter().any(|d| rx.url.ends_with(&d.endpoint)), "{disabled:?}");
        assert_eq!(
            webhooks::redeliver(&db, &delivery(&db, &b.id).await.id).await.unwrap(),
            webhooks::Redelivery::EndpointDisabled
        );
        // An operator enables it: both stopped deliveries go out (the receiver now answers 200).
        assert_eq!(webhooks::enable(&db, &rx.url).await.unwrap(), Some(2));
        assert_eq!(webhooks::enable(&db, &rx.url).await.unwrap(), None, "enabling twice is a no-op");
        hooks.wake();
        assert_eq!(settled(&db, &a.id, Duration::from_secs(5)).await.state, DeliveryState::Delivered);
        assert_eq!(settled(&db, &b.id, Duration::from_secs(5)).await.state, DeliveryState::Delivered);
        assert_eq!(rx.hits().len(), 4);
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_delays_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (db, pool) = open(&url).await;
        let rx = Receiver::start(vec![Reply::WithHeader(503, "retry-after", "1".into())]).await;
        let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(3)));
        let run = spawn_loop(&hooks, &db);
        let e = event(JOB_SUCCEEDED);
        raise(&pool, &hooks, &e).await;
        let hits = rx.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(hits.len(), 2);
        let gap = hits[1].at - hits[0].at;
        assert!(gap >= Duration::from_secs(1), "Retry-After: 1 honoured, got {gap:?}");
        assert!(gap < Duration::from_millis(2500), "and not much later: {gap:?}");
        assert_eq!(settled(&db, &e.id, Duration::from_secs(5)).await.state, DeliveryState::Delivered);
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let url = &databases(&dir).await[0];
    let (db, pool) = open(url).await;
    let elsewhere = Receiver::start(vec![]).await;
    let rx = Receiver::start(vec![Reply::WithHeader(302, "location", elsewhere.url.clone()); 2]).await;
    let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(2)));
    let run = spawn_loop(&hooks, &db);
    let e = event(JOB_SUCCEEDED);
    raise(&pool, &hooks, &e).await;
    let d = settled(&db, &e.id, Duration::from_secs(5)).await;
    assert_eq!((d.state, d.attempts, d.last_status), (DeliveryState::Failed, 2, Some(302)), "{d:?}");
    assert!(d.last_error.as_deref().unwrap().contains("redirects are not followed"), "{d:?}");
    assert!(elsewhere.hits().is_empty(), "the signed body went nowhere else");
    assert_eq!(rx.hits().len(), 2);
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let url = &databases(&dir).await[0];
    let (db, pool) = open(url).await;
    let rx = Receiver::start(vec![Reply::Hang, Reply::Hang]).await;
    let timeout = Duration::from_millis(300);
    let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(2)).with_timeout(timeout));
    let run = spawn_loop(&hooks, &db);
    let e = event(JOB_SUCCEEDED);
    let started = Instant::now();
    raise(&pool, &hooks, &e).await;
    let d = settled(&db, &e.id, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= timeout * 2, "{:?}", started.elapsed());
    assert_eq!((d.state, d.attempts, d.last_status), (DeliveryState::Failed, 2, None), "{d:?}");
    assert!(d.last_error.as_deref().unwrap().contains("no answer within"), "{d:?}");
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_a_stop_is_sent_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let rx = Receiver::start(vec![Reply::Hang]).await;
        let e = event(JOB_SUCCEEDED);
        let timeout = Duration::from_millis(500);
        {
            let (db, pool) = open(&url).await;
            let hooks =
                Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(8)).with_timeout(timeout));
            let run = spawn_loop(&hooks, &db);
            raise(&pool, &hooks, &e).await;
            assert_eq!(rx.wait_for(1, Duration::from_secs(5)).await.len(), 1);
            // The process stops mid-attempt: the row stays pending, leased.
            run.abort();
            let _ = run.await;
            assert_eq!(delivery(&db, &e.id).await.state, DeliveryState::Pending);
            pool.close().await;
        }
        // A new process on the same database sends it once the lease (2 × timeout + 1 s) is over.
        let (db, _pool) = open(&url).await;
        let hooks =
            Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap().with_schedule(fast(8)).with_timeout(timeout));
        let run = spawn_loop(&hooks, &db);
        let d = settled(&db, &e.id, Duration::from_secs(10)).await;
        assert_eq!((d.state, d.attempts), (DeliveryState::Delivered, 2), "{d:?}");
        let hits = rx.hits();
        assert_eq!(hits.len(), 2);
        assert!(hits[1].at - hits[0].at >= timeout * 2, "not before the lease expired");
        assert!(hits.iter().all(|h| id(h) == e.id && verify(SECRET, h).is_ok()));
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_attempt_once() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let rx = Receiver::start(vec![]).await;
        let (db1, pool) = open(&url).await;
        let (db2, _pool2) = open(&url).await;
        let one = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap());
        let two = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap());
        let runs = [spawn_loop(&one, &db1), spawn_loop(&two, &db2)];
        let events: Vec<Event> = (0..60).map(|_| event(JOB_SUCCEEDED)).collect();
        for (i, e) in events.iter().enumerate() {
            // Half the wake-ups go to each replica; the other one finds the row by polling.
            raise(&pool, if i % 2 == 0 { &one } else { &two }, e).await;
        }
        let hits = rx.wait_for(events.len(), Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let hits_after = rx.hits();
        assert_eq!(hits_after.len(), hits.len(), "no attempt sent twice");
        let mut ids: Vec<&str> = hits_after.iter().map(id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), events.len(), "each event exactly once");
        for e in &events {
            assert_eq!(delivery(&db1, &e.id).await.state, DeliveryState::Delivered);
        }
        for r in runs {
            r.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_per_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (db, pool) = open(&url).await;
        let jobs = Receiver::start(vec![]).await;
        let all = Receiver::start(vec![]).await;
        let hooks = Arc::new(Webhooks::new(&[endpoint(&jobs, &[JOB_SUCCEEDED]), endpoint(&all, &[])]).unwrap());
        let run = spawn_loop(&hooks, &db);
        let (up, done) = (event(UPLOAD_COMPLETED), event(JOB_SUCCEEDED));
        raise(&pool, &hooks, &up).await;
        raise(&pool, &hooks, &done).await;
        // Enqueueing the same event again is a no-op (one row per event and endpoint).
        raise(&pool, &hooks, &done).await;
        let got = all.wait_for(2, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut all_ids: Vec<String> = got.iter().map(|h| id(h).to_owned()).collect();
        all_ids.sort();
        let mut want = vec![up.id.clone(), done.id.clone()];
        want.sort();
        assert_eq!(all_ids, want);
        assert_eq!(all.hits().len(), 2);
        let job_ids: Vec<String> = jobs.hits().iter().map(|h| id(h).to_owned()).collect();
        assert_eq!(job_ids, vec![done.id.clone()]);
        run.abort();
    }
}

/// Event committed → request at the receiver, one event at a time, ~200 times; prints p50/p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_to_receiver_latency() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir).await {
        let (db, pool) = open(&url).await;
        let rx = Receiver::start(vec![]).await;
        let hooks = Arc::new(Webhooks::new(&[endpoint(&rx, &[])]).unwrap());
        let run = spawn_loop(&hooks, &db);
        let mut lat = Vec::new();
        for i in 0..200 {
            let e = event(JOB_SUCCEEDED);
            let mut tx = pool.begin().await.unwrap();
            hooks.enqueue(&mut tx, &e).await.unwrap();
            tx.commit().await.unwrap();
            let committed = Instant::now();
            hooks.wake();
            let hits = rx.wait_for(i + 1, Duration::from_secs(5)).await;
            assert_eq!(hits.len(), i + 1);
            lat.push(hits[i].at - committed);
        }
        lat.sort();
        let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
        let backend = url.split(':').next().unwrap();
        eprintln!(
            "event → receiver on {backend}: p50 {p50:?}, p99 {p99:?}, max {:?} over {} deliveries",
            lat[lat.len() - 1],
            lat.len()
        );
        assert!(p50 <= Duration::from_secs(1), "target: ≤ 1 s p50, got {p50:?}");
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_tls_and_failures_are_recorded_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let url = &databases(&dir).await[0];
    let (db, pool) = open(url).await;
    // A plain-HTTP receiver behind an https:// URL: the TLS handshake fails, the body never leaves.
    let rx = Receiver::start(vec![]).await;
    let https =
        WebhookEndpoint { url: rx.url.replace("http://", "https://"), secret: SECRET.into(), events: Vec::new() };
    // And a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let refused = WebhookEndpoint { url: format!("http://{closed}/hooks"), secret: SECRET.into(), events: Vec::new() };
    let hooks = Arc::new(Webhooks::new(&[https, refused]).unwrap().with_schedule(fast(1)));
    let run = spawn_loop(&hooks, &db);
    let e = event(JOB_SUCCEEDED);
    raise(&pool, &hooks, &e).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rows: Vec<_> =
        webhooks::list(&db, true, 10_000).await.unwrap().into_iter().filter(|d| d.event_id == e.id).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for d in &rows {
        assert_eq!((d.state, d.attempts, d.last_status), (DeliveryState::Failed, 1, None), "{d:?}");
        let error = d.last_error.as_deref().unwrap();
        let want = if d.endpoint.ends_with("/hooks/hoist") { "corrupt message" } else { "Connection refused" };
        assert!(error.contains(want), "{d:?}");
    }
    assert!(rx.hits().is_empty(), "no plain-text request reached the receiver");
    run.abort();
}
