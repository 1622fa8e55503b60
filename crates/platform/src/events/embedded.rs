//! The embedded bus: a durable event log in one SQLite file under the data dir. It gives the
//! same guarantees the services rely on from JetStream — publish de-duplication by event id,
//! durable consumers that resume after a restart, redelivery of what was not acknowledged —
//! with nothing to install. Processes that share the data dir share the log; a publisher in
//! the same process wakes subscribers at once, others notice on their next poll.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::{Acker, Bus, BusError, Delivery, Subscription, subject_matches};
use crate::db::Db;

const POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct EmbeddedBus {
    db: Db,
    wake: Arc<Notify>,
}

fn err(e: impl std::fmt::Display) -> BusError {
    BusError::Other(e.to_string())
}

impl EmbeddedBus {
    pub async fn open(path: &std::path::Path, _ack_wait: Duration) -> Result<Self, BusError> {
        let db = Db::open_sqlite_file(path, 4).await.map_err(err)?;
        for statement in [
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, \
             subject TEXT NOT NULL, payload BLOB NOT NULL, stored_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, position BIGINT NOT NULL)",
        ] {
            sqlx::query(statement).execute(db.pool()).await.map_err(err)?;
        }
        Ok(Self { db, wake: Arc::new(Notify::new()) })
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, subject: &str, id: &str, payload: Bytes) -> Result<(), BusError> {
        sqlx::query("INSERT INTO events (id, subject, payload, stored_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(subject)
            .bind(payload.to_vec())
            .bind(crate::clock::to_millis(time::OffsetDateTime::now_utc()))
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, consumer: &str, filter: &str) -> Result<Box<dyn Subscription>, BusError> {
        let name = format!("{consumer}|{filter}");
        let position: Option<(i64,)> = sqlx::query_as("SELECT position FROM cursors WHERE consumer = $1")
            .bind(&name)
            .fetch_optional(self.db.pool())
            .await
            .map_err(err)?;
        let state = Arc::new(Mutex::new(SubState { acked: position.map_or(0, |p| p.0), not_before: None }));
        Ok(Box::new(EmbeddedSubscription { bus: self.clone(), name, filter: filter.to_owned(), state }))
    }

    async fn ensure_source(&self, _service: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.db.ping().await.map_err(err)
    }
}

struct SubState {
    /// Highest sequence number this consumer has acknowledged (or skipped as not its own).
    acked: i64,
    /// Set by a negative acknowledgement: the next delivery waits until then.
    not_before: Option<Instant>,
}

struct EmbeddedSubscription {
    bus: EmbeddedBus,
    name: String,
    filter: String,
    state: Arc<Mutex<SubState>>,
}

fn lock(state: &Mutex<SubState>) -> std::sync::MutexGuard<'_, SubState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let wait = lock(&self.state).not_before.take();
            if let Some(at) = wait {
                tokio::time::sleep_until(at.into()).await;
            }
            let after = lock(&self.state).acked;
            // Register for a wake-up before reading, so a publish between the read and the
            // wait is not missed.
            let notified = self.bus.wake.notified();
            let rows: Vec<(i64, String, Vec<u8>)> =
                match sqlx::query_as("SELECT seq, subject, payload FROM events WHERE seq > $1 ORDER BY seq LIMIT 256")
                    .bind(after)
                    .fetch_all(self.bus.db.pool())
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => return Some(Err(err(e))),
                };
            let mut skipped_to = after;
            for (seq, subject, payload) in rows {
                if subject_matches(&self.filter, &subject) {
                    // Skipped rows before this one are not ours; remember that in memory so
                    // the next read starts past them.
                    lock(&self.state).acked = seq - 1;
                    let acker = EmbeddedAcker { bus: self.bus.clone(), name: self.name.clone(), seq, state: self.state.clone() };
                    return Some(Ok(Delivery { payload: Bytes::from(payload), acker: Box::new(acker) }));
                }
                skipped_to = seq;
            }
            if skipped_to > after {
                lock(&self.state).acked = skipped_to;
                continue;
            }
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    }
}

struct EmbeddedAcker {
    bus: EmbeddedBus,
    name: String,
    seq: i64,
    state: Arc<Mutex<SubState>>,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO cursors (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position WHERE excluded.position > cursors.position",
        )
        .bind(&self.name)
        .bind(self.seq)
        .execute(self.bus.db.pool())
        .await
        .map_err(err)?;
        let mut state = lock(&self.state);
        state.acked = state.acked.max(self.seq);
        Ok(())
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        lock(&self.state).not_before = Some(Instant::now() + delay);
        Ok(())
    }
}
