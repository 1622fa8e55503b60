//! The outbox, relay, bus and inbox together: an event committed while the bus is down or
//! just before the process dies is delivered afterwards, and a consumer applies it once,
//! however often the bus delivers it.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool::testkit::cleanup_config;
use motorpool_platform::clock::Clock;
use motorpool_platform::config::{EventsBackend, InfraConfig};
use motorpool_platform::db::{Db, Migrations, Tx};
use motorpool_platform::events::{self, Bus, Consumer, Envelope, EventHandler, HandlerError, Outbox};
use motorpool_platform::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::helpers::config;

const SCHEMA: Migrations = Migrations {
    sqlite: &[("0001_applied.sql", "create table applied (event_id text not null, note text not null)")],
    postgres: &[("0001_applied.sql", "create table applied (event_id text not null, note text not null)")],
};

/// Records every application of an event in the consumer's own table.
struct Recorder;

impl EventHandler for Recorder {
    fn handle<'a>(&'a self, tx: &'a mut Tx, event: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let note: String = event.data["note"].as_str().unwrap_or_default().to_owned();
            sqlx::query("INSERT INTO applied (event_id, note) VALUES ($1, $2)").bind(&event.id).bind(note).execute(&mut **tx).await?;
            Ok(())
        }
        .boxed()
    }
}

async fn applied(db: &Db) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT note FROM applied ORDER BY note").fetch_all(db.pool()).await.unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

async fn unpublished(db: &Db) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(db.pool()).await.unwrap();
    n
}

async fn commit_events(db: &Db, outbox: &Outbox, notes: &[&str]) {
    let mut tx = db.begin_write().await.unwrap();
    for note in notes {
        outbox.add(&mut tx, "producer.thing.happened.v1", "thing-1", &serde_json::json!({"note": note})).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Waits until the consumer has applied `n` events (bounded).
async fn wait_applied(db: &Db, n: usize) -> Vec<String> {
    for _ in 0..300 {
        let got = applied(db).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    applied(db).await
}

/// Starts the producer's outbox relay and the consumer; cancel the token to stop both.
fn pipeline(producer: &Db, consumer_db: &Db, bus: &Arc<dyn Bus>, outbox: &Outbox, infra: &InfraConfig, clock: &Clock) -> CancellationToken {
    let stop = CancellationToken::new();
    let metrics = Metrics::new("test");
    tokio::spawn(events::relay(producer.clone(), bus.clone(), outbox.clone(), Duration::from_millis(50), metrics.clone(), stop.clone()));
    tokio::spawn(events::run_consumer(
        consumer_db.clone(),
        bus.clone(),
        infra.events.namespace.clone(),
        consumer(),
        clock.clone(),
        metrics,
        stop.clone(),
    ));
    stop
}

fn consumer() -> Consumer {
    Consumer { name: "recorder".into(), filter: "producer.thing.>".into(), handler: Arc::new(Recorder) }
}

async fn open(infra: &InfraConfig, service: &str) -> Db {
    let db = Db::connect(service, infra).await.unwrap();
    db.migrate(&SCHEMA).await.unwrap();
    db
}

#[tokio::test]
async fn events_committed_before_a_crash_are_delivered_after_restart_exactly_once() {
    let cfg = config();
    let infra = cfg.infra();
    let clock = Clock::system();
    let producer = open(&infra, "producer").await;
    let outbox = Outbox::new("producer", &infra.events.namespace, clock.clone());

    // "Crash": events are committed, but no relay ever runs in this life.
    commit_events(&producer, &outbox, &["a", "b", "c"]).await;
    assert_eq!(unpublished(&producer).await, 3);
    let (id, subject, payload, created_at): (String, String, Vec<u8>, i64) =
        sqlx::query_as("SELECT id, subject, payload, created_at FROM outbox ORDER BY seq LIMIT 1")
            .fetch_one(producer.pool())
            .await
            .unwrap();
    producer.close().await;

    // Restart: relay and consumer come up and catch up.
    let producer = open(&infra, "producer").await;
    let consumer_db = open(&infra, "consumer").await;
    let bus: Arc<dyn Bus> = events::connect_bus(&infra).await.unwrap();
    let stop = pipeline(&producer, &consumer_db, &bus, &outbox, &infra, &clock);
    assert_eq!(wait_applied(&consumer_db, 3).await, ["a", "b", "c"]);
    assert_eq!(unpublished(&producer).await, 0);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox").fetch_one(producer.pool()).await.unwrap();
    assert_eq!(left, 0, "published rows are deleted");

    // The bus delivers an event again (a relay that crashed after publishing but before
    // deleting the row): no second effect.
    let envelope: Envelope = serde_json::from_slice(&payload).unwrap();
    sqlx::query("INSERT INTO outbox (id, subject, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(&subject)
        .bind(&payload)
        .bind(created_at)
        .execute(producer.pool())
        .await
        .unwrap();
    outbox.wake();
    for _ in 0..100 {
        if unpublished(&producer).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Publish the same event under a new bus message id too, so broker de-duplication cannot
    // hide it: only the inbox stands between it and a second effect.
    let subject = events::subject_for(&infra.events.namespace, &envelope.kind);
    bus.publish(&subject, &format!("{}-again", envelope.id), bytes::Bytes::from(payload)).await.unwrap();
    commit_events(&producer, &outbox, &["d"]).await;
    outbox.wake();
    assert_eq!(wait_applied(&consumer_db, 4).await, ["a", "b", "c", "d"], "redelivered events applied once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(applied(&consumer_db).await.len(), 4);
    stop.cancel();
    producer.close().await;
    consumer_db.close().await;
    cleanup(&cfg).await;
}

async fn cleanup(cfg: &motorpool::Config) {
    cleanup_config(cfg).await;
    if cfg.storage.backend == motorpool_platform::config::StorageBackend::Postgres {
        for db in ["producer", "consumer"] {
            let _ =
                motorpool_platform::db::drop_postgres_database(&cfg.storage.postgres_url, &format!("{}_{db}", cfg.storage.database_prefix))
                    .await;
        }
    }
}

/// A NATS server of our own on a free port, so the test can stop and restart it.
struct OwnNats {
    child: tokio::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnNats {
    async fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = tokio::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server must be installed for infra tests");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port, dir: dir.to_owned() };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start");
    }

    async fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        (self.port, self.dir)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The embedded log lives in the process and cannot be down on its own, so this case is the
/// broker's: it needs `nats-server` and runs in the infra suite (`--include-ignored`).
#[tokio::test]
#[ignore = "needs nats-server; run by the infra suite"]
async fn infra_events_committed_while_nats_is_down_are_delivered_when_it_returns() {
    let mut cfg = config();
    let dir = cfg.data_dir.join("nats");
    std::fs::create_dir_all(&dir).unwrap();
    let nats = OwnNats::start(free_port(), &dir).await;
    cfg.events.backend = EventsBackend::Nats;
    cfg.events.nats_url = format!("nats://127.0.0.1:{}", nats.port);
    let infra = cfg.infra();
    let clock = Clock::system();
    let producer = open(&infra, "producer").await;
    let consumer_db = open(&infra, "consumer").await;
    let outbox = Outbox::new("producer", &infra.events.namespace, clock.clone());
    let bus: Arc<dyn Bus> = events::connect_bus(&infra).await.unwrap();
    let stop = pipeline(&producer, &consumer_db, &bus, &outbox, &infra, &clock);
    commit_events(&producer, &outbox, &["before"]).await;
    outbox.wake();
    assert_eq!(wait_applied(&consumer_db, 1).await, ["before"]);

    // The broker goes away; the service keeps committing.
    let (port, dir) = nats.stop().await;
    commit_events(&producer, &outbox, &["during-1", "during-2"]).await;
    outbox.wake();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unpublished(&producer).await, 2, "nothing is marked published while the bus is down");

    // It comes back (same storage): everything arrives, once.
    let nats = OwnNats::start(port, &dir).await;
    assert_eq!(wait_applied(&consumer_db, 3).await, ["before", "during-1", "during-2"]);
    for _ in 0..100 {
        if unpublished(&producer).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unpublished(&producer).await, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(applied(&consumer_db).await.len(), 3);
    stop.cancel();
    producer.close().await;
    consumer_db.close().await;
    nats.stop().await;
    cfg.events.backend = EventsBackend::Embedded;
    cleanup(&cfg).await;
}
