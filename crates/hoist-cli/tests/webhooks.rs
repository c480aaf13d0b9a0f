//! `hoist webhooks` as an operator runs it, next to a running `hoist serve` on the same data dir:
//! a failed delivery is listed, `redeliver` queues it, and the running service sends it again,
//! signed (checked with the `standardwebhooks` crate).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{HOIST, stderr};
use hoist_server::config::WebhookEndpoint;
use hoist_server::db::Db;
use hoist_server::pipeline::events::{Event, JOB_FAILED};
use hoist_server::pipeline::webhooks::{Schedule, Webhooks};
use hoist_testkit::receiver::{Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hoist(args: &[&str]) -> Output {
    Command::new(HOIST).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_failed_delivery_is_listed_and_redelivered_by_the_running_service() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    // The receiver refuses the first attempt, then accepts.
    let rx = rt.block_on(Receiver::start(vec![Reply::Status(500)]));
    let cfg = dir.path().join("hoist.toml");
    std::fs::write(&cfg, format!("[[webhooks]]\nurl = \"{}?token=t0ps3cret\"\nsecret = \"{SECRET}\"\n", rx.url))
        .unwrap();
    let endpoint =
        WebhookEndpoint { url: format!("{}?token=t0ps3cret", rx.url), secret: SECRET.into(), events: Vec::new() };

    // A delivery that ran out of attempts (a one-attempt schedule), on the service's database.
    std::fs::create_dir_all(&data).unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", data.join("hoist.db").display());
    let event = Event {
        id: "evt_cli_0001".into(),
        kind: JOB_FAILED.into(),
        at_ms: hoist_server::db::now_ms(),
        data: serde_json::json!({"job": "j1"}),
    };
    rt.block_on(async {
        let db = Db::connect(&db_url).await.unwrap();
        let pool = sqlx::AnyPool::connect(&db_url).await.unwrap();
        let hooks = Arc::new(
            Webhooks::new(std::slice::from_ref(&endpoint)).unwrap().with_schedule(Schedule::new(vec![Duration::ZERO])),
        );
        let mut tx = pool.begin().await.unwrap();
        hooks.enqueue(&mut tx, &event).await.unwrap();
        tx.commit().await.unwrap();
        let run = tokio::spawn(Arc::clone(&hooks).run(db.clone()));
        assert_eq!(rx.wait_for(1, Duration::from_secs(5)).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.abort();
        pool.close().await;
    });

    let o = hoist(&["webhooks", "ls", "--failed", "--json", "--data", data_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{}", stdout(&o));
    assert_eq!(
        (rows[0]["state"].as_str(), rows[0]["event_id"].as_str(), rows[0]["last_status"].as_i64()),
        (Some("failed"), Some("evt_cli_0001"), Some(500))
    );
    let id = rows[0]["id"].as_str().unwrap().to_owned();
    let o = hoist(&["webhooks", "ls", "--data", data_arg]);
    let text = stdout(&o);
    assert!(text.contains(&id) && text.contains("failed") && text.contains("HTTP 500"), "{text}");
    assert!(!text.contains("t0ps3cret"), "no query string in listings: {text}");

    // `hoist serve` on the same data dir and config; then the operator redelivers.
    let mut serve = Command::new(HOIST)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data", data_arg, "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    assert_eq!(rx.hits().len(), 1, "a failed delivery is not sent again by itself");

    let o = hoist(&["webhooks", "redeliver", &id, "--data", data_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("queued"), "{}", stdout(&o));
    let hits = rt.block_on(rx.wait_for(2, Duration::from_secs(5)));
    assert_eq!(hits.len(), 2, "the running service sent it again");
    let again = &hits[1];
    assert_eq!(again.header("webhook-id"), "evt_cli_0001");
    let wh = standardwebhooks::Webhook::new(SECRET).unwrap();
    wh.verify(&again.body, &again.headers).unwrap();

    let delivered = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let o = hoist(&["webhooks", "ls", "--json", "--data", data_arg]);
        stdout(&o).lines().any(|l| l.contains(&id) && l.contains("\"delivered\""))
    });
    assert!(delivered, "ls shows it delivered");
    serve.kill().unwrap();
    serve.wait().unwrap();

    // Clear refusals.
    let o = hoist(&["webhooks", "redeliver", "whd_nope", "--data", data_arg]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no webhook delivery whd_nope"), "{}", stderr(&o));
    let o = hoist(&["webhooks", "enable", &rx.url, "--data", data_arg]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not disabled"), "{}", stderr(&o));
}
