//! Events: the envelope, the transactional outbox and its relay, the inbox, and the buses
//! that carry events between services (an embedded durable log, or NATS JetStream).
//!
//! A service never publishes directly. It writes its state change and the event into its own
//! database in one transaction ([`Outbox::add`]); the [`relay`] publishes unpublished rows
//! with the event id as the de-duplication id and deletes them only after the bus
//! acknowledged them, so a crash or a bus outage delays events but never loses them.
//! Consumers record each handled event id in the inbox inside the handler's transaction and
//! acknowledge after commit, so a redelivered event has no second effect.

mod embedded;
mod nats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use embedded::EmbeddedBus;
pub use nats::{NatsBus, delete_namespace_streams};

use crate::clock::Clock;
use crate::config::{EventsBackend, InfraConfig};
use crate::db::{Db, Tx};
use crate::metrics::Metrics;

/// The envelope every event travels in. `kind` is `<service>.<entity>.<past-tense verb>.v<N>`;
/// `data` is the versioned payload, which never changes meaning once shipped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub time: String,
    pub subject: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// The payload as its typed form.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.data.clone())
    }
}

/// An event type a service publishes: its name and what its payload means, for the
/// generated event catalog.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventSpec {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: &'static str,
    /// A JSON example of `data`.
    pub example: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus: {0}")]
    Other(String),
}

/// One delivered message. Acknowledge it after its effects are committed; a message that is
/// neither acknowledged nor rejected is delivered again after the ack wait.
pub struct Delivery {
    pub payload: Bytes,
    pub acker: Box<dyn Acker>,
}

#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Asks for redelivery after `delay`.
    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next message, waiting for one; `None` once the subscription is closed.
    async fn next(&mut self) -> Option<Result<Delivery, BusError>>;
}

/// A message bus with durable, at-least-once consumers and publish de-duplication by id.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes and waits for the bus to acknowledge that the message is stored.
    async fn publish(&self, subject: &str, id: &str, payload: Bytes) -> Result<(), BusError>;
    /// Publishes several messages in order and returns how many, from the first, the bus
    /// acknowledged (stopping at the first failure). Buses that can keep several publishes in
    /// flight override this.
    async fn publish_batch(&self, messages: &[(String, String, Bytes)]) -> Result<usize, BusError> {
        for (i, (subject, id, payload)) in messages.iter().enumerate() {
            if let Err(e) = self.publish(subject, id, payload.clone()).await {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(messages.len())
    }
    /// A durable consumer named `consumer` of the subjects matching `filter`
    /// (NATS-style: `*` one token, `>` the rest). It resumes where it left off.
    async fn subscribe(&self, consumer: &str, filter: &str) -> Result<Box<dyn Subscription>, BusError>;
    /// Prepares the bus to carry `service`'s events (a JetStream stream).
    async fn ensure_source(&self, service: &str) -> Result<(), BusError>;
    async fn ping(&self) -> Result<(), BusError>;
}

/// The bus chosen by configuration.
pub async fn connect_bus(infra: &InfraConfig) -> Result<Arc<dyn Bus>, BusError> {
    match infra.events.backend {
        EventsBackend::Embedded => {
            std::fs::create_dir_all(&infra.data_dir).map_err(|e| BusError::Other(e.to_string()))?;
            let bus = EmbeddedBus::open(&infra.data_dir.join("events.sqlite"), Duration::from_millis(infra.events.ack_wait_ms)).await?;
            Ok(Arc::new(bus))
        }
        EventsBackend::Nats => Ok(Arc::new(NatsBus::connect(&infra.events).await?)),
    }
}

/// The subject an event type travels on.
pub fn subject_for(namespace: &str, kind: &str) -> String {
    format!("{namespace}.{kind}")
}

/// NATS-style subject matching: `*` matches one token, `>` one or more trailing tokens.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Writes events into a service's outbox, inside the caller's transaction.
#[derive(Clone)]
pub struct Outbox {
    service: Arc<str>,
    namespace: Arc<str>,
    clock: Clock,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(service: &str, namespace: &str, clock: Clock) -> Self {
        Self { service: service.into(), namespace: namespace.into(), clock, wake: Arc::new(Notify::new()) }
    }

    /// Adds an event to the outbox in `tx`. It is published only if `tx` commits. Call
    /// [`Outbox::wake`] after the commit to publish without waiting for the next poll.
    pub async fn add<T: Serialize>(&self, tx: &mut Tx, kind: &str, subject: &str, data: &T) -> Result<Envelope, sqlx::Error> {
        let (envelope, row) = self.prepare(kind, subject, data)?;
        sqlx::query("INSERT INTO outbox (id, subject, payload, created_at) VALUES ($1, $2, $3, $4)")
            .bind(row.id)
            .bind(row.subject)
            .bind(row.payload)
            .bind(row.created_at)
            .execute(&mut **tx)
            .await?;
        Ok(envelope)
    }

    /// The event and the outbox row that [`Outbox::add`] would insert, for a service that
    /// writes the row as part of a larger statement of its own (columns
    /// `outbox (id, subject, payload, created_at)`).
    pub fn prepare<T: Serialize>(&self, kind: &str, subject: &str, data: &T) -> Result<(Envelope, OutboxRow), sqlx::Error> {
        let now = self.clock.now_ms();
        let envelope = Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            source: self.service.to_string(),
            time: crate::clock::rfc3339_ms(now),
            subject: subject.to_owned(),
            data: serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            traceparent: crate::telemetry::current_trace().map(|t| t.child().to_string()),
        };
        let payload = serde_json::to_vec(&envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let row = OutboxRow { id: envelope.id.clone(), subject: subject_for(&self.namespace, kind), payload, created_at: now };
        Ok((envelope, row))
    }

    /// Tells the relay there is something to publish.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// One row of the `outbox` table.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub created_at: i64,
}

/// Publishes a service's unpublished outbox rows until `shutdown`, oldest first. A row is
/// deleted only after the bus acknowledged it; after a crash or an outage the
/// remaining rows go out again, and the bus drops any duplicate by event id.
pub async fn relay(db: Db, bus: Arc<dyn Bus>, outbox: Outbox, interval: Duration, metrics: Metrics, shutdown: CancellationToken) {
    let mut backoff = interval;
    loop {
        match relay_batch(&db, bus.as_ref(), &metrics).await {
            // A full batch: more are waiting.
            Ok(n) if n >= RELAY_BATCH => {
                backoff = interval;
                continue;
            }
            Ok(_) => backoff = interval,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not publish; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = outbox.wake.notified() => {
                // Let the commits arriving right behind this one join its batch: under load
                // one round of queries and one flush then carries many events, not one.
                tokio::time::sleep(RELAY_LINGER).await;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Most rows one relay round publishes.
const RELAY_BATCH: usize = 256;
/// How long the relay waits after a wake-up before it reads the outbox.
const RELAY_LINGER: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes up to one batch of unpublished rows; returns how many went out. Published rows
/// are deleted by their exact sequence numbers: a row with a lower number that commits later
/// is still there and goes out with the next batch.
pub async fn relay_batch(db: &Db, bus: &dyn Bus, metrics: &Metrics) -> Result<usize, RelayError> {
    let rows: Vec<(i64, String, String, Vec<u8>)> =
        sqlx::query_as("SELECT seq, id, subject, payload FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1")
            .bind(RELAY_BATCH as i64)
            .fetch_all(db.pool())
            .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let messages: Vec<(String, String, Bytes)> =
        rows.iter().map(|(_, id, subject, payload)| (subject.clone(), id.clone(), Bytes::from(payload.clone()))).collect();
    let published = bus.publish_batch(&messages).await?;
    if published > 0 {
        // A published row goes at once: the table stays as small as the backlog, so the next
        // round's scan stays cheap. The delete is redone if a crash loses it (the bus drops the
        // duplicate), so it need not wait for a disk flush.
        let using = db.relaxed_commit().map(|r| format!(" USING {r}")).unwrap_or_default();
        let sql = format!("DELETE FROM outbox{using} WHERE seq IN ({})", db.json_array_elements("$1", "bigint"));
        let seqs: Vec<i64> = rows.iter().take(published).map(|(seq, ..)| *seq).collect();
        let seqs = serde_json::to_string(&seqs).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(seqs).execute(db.pool()).await?;
        metrics.count("events_published_total", "Events published from the outbox.", &[], published as u64);
    }
    Ok(published)
}

/// What a consumer does with one event, inside the transaction that also records it in the
/// inbox. Return an error to roll back and have the event delivered again later.
pub trait EventHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, tx: &'a mut Tx, event: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// A durable subscription of a service: its name, the event types it wants, and its handler.
#[derive(Clone)]
pub struct Consumer {
    pub name: String,
    pub filter: String,
    pub handler: Arc<dyn EventHandler>,
}

/// Runs `consumer` until `shutdown`: each event is applied at most once per consumer
/// (the inbox) and acknowledged after its transaction commits (at-least-once delivery).
pub async fn run_consumer(
    db: Db,
    bus: Arc<dyn Bus>,
    namespace: String,
    consumer: Consumer,
    clock: Clock,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let filter = subject_for(&namespace, &consumer.filter);
    let mut retry = Duration::from_millis(200);
    loop {
        let mut sub = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = bus.subscribe(&consumer.name, &filter) => match r {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::warn!(consumer = %consumer.name, error = %e, "cannot subscribe; will retry");
                    tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(retry) => {} }
                    retry = (retry * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        retry = Duration::from_millis(200);
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = sub.next() => d,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(consumer = %consumer.name, error = %e, "subscription failed; resubscribing");
                    break;
                }
                None => break,
            };
            let outcome = apply(&db, &consumer, &delivery.payload, &clock).await;
            let result = match outcome {
                Ok(applied) => {
                    let label = if applied { "applied" } else { "duplicate" };
                    metrics.count(
                        "events_consumed_total",
                        "Events handled by consumers.",
                        &[("consumer", &consumer.name), ("outcome", label)],
                        1,
                    );
                    delivery.acker.ack().await
                }
                Err(e) => {
                    metrics.count(
                        "events_consumed_total",
                        "Events handled by consumers.",
                        &[("consumer", &consumer.name), ("outcome", "failed")],
                        1,
                    );
                    tracing::warn!(consumer = %consumer.name, error = %e, "event handler failed; it will be redelivered");
                    delivery.acker.nak(Duration::from_secs(1)).await
                }
            };
            if let Err(e) = result {
                tracing::warn!(consumer = %consumer.name, error = %e, "acknowledgement failed; the event may be redelivered");
            }
        }
    }
}

/// Applies one event exactly once per consumer. Returns whether it was new.
/// A payload that is not an envelope at all is acknowledged and dropped: retrying it would
/// never succeed.
async fn apply(db: &Db, consumer: &Consumer, payload: &[u8], clock: &Clock) -> Result<bool, HandlerError> {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(consumer = %consumer.name, error = %e, "dropping a message that is not an event envelope");
            return Ok(false);
        }
    };
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query("INSERT INTO inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&consumer.name)
        .bind(&envelope.id)
        .bind(clock.now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let trace = envelope.traceparent.as_deref().and_then(crate::telemetry::TraceContext::parse);
    match trace {
        Some(ctx) => crate::telemetry::with_trace(ctx, consumer.handler.handle(&mut tx, &envelope)).await?,
        None => consumer.handler.handle(&mut tx, &envelope).await?,
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_patterns_match_like_nats() {
        assert!(subject_matches("mp.identity.>", "mp.identity.user.registered.v1"));
        assert!(!subject_matches("mp.identity.>", "mp.identity"));
        assert!(subject_matches("mp.*.user.registered.v1", "mp.identity.user.registered.v1"));
        assert!(subject_matches("mp.identity.user.registered.v1", "mp.identity.user.registered.v1"));
        assert!(!subject_matches("mp.identity.user.registered.v1", "mp.identity.user.disabled.v1"));
        assert!(!subject_matches("mp.identity.user", "mp.identity.user.registered.v1"));
    }
}
