//! Outbound delivery: the channel senders and the worker that drives the durable
//! `deliveries` table. The event handler only queues rows (in its transaction); this worker
//! claims due rows, sends them, and records the outcome, retrying with exponential backoff.
//! Rows survive restarts, and the claim is a lease in the row itself, so several replicas
//! can run workers without sending one row twice at the same time, and a row whose worker
//! died mid-send is picked up again when its lease runs out.

pub mod email;
pub mod log;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use motorpool_platform::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::domain::Channel;
use crate::domain::retry::{AfterFailure, after_failure};
use crate::hub::{Hub, Schedule};
use crate::store::{self, DeliveryRow, Outcome};

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (the receiver is down or answered with an error).
    #[error("{0}")]
    Retryable(String),
    /// Will never work (the address is refused, the webhook is gone).
    #[error("{0}")]
    Permanent(String),
}

/// A channel: sends one queued delivery.
#[async_trait]
pub trait ChannelSender: Send + Sync {
    async fn send(&self, delivery: &DeliveryRow) -> Result<(), SendError>;
}

/// Every send ends well before its lease does, so a slow receiver never gets a second
/// worker sending the same row in parallel.
const LEASE: Duration = Duration::from_secs(120);
const BATCH: i64 = 32;
const CONCURRENCY: usize = 8;

pub struct Worker {
    pub db: Db,
    pub clock: Clock,
    pub hub: Arc<Hub>,
    pub senders: HashMap<Channel, Arc<dyn ChannelSender>>,
    pub max_attempts: u32,
    pub poll: Duration,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Runs until shutdown.
    pub async fn run(self) {
        let mut schedule = Schedule::new(self.poll);
        loop {
            match self.work_once().await {
                // A full batch: more may be due right away.
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivery worker cannot read the queue; will retry"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.hub.deliveries_woken() => schedule.woken(),
                _ = tokio::time::sleep_until(schedule.next()) => schedule.read(),
            }
        }
    }

    /// Claims and sends one batch of due deliveries; returns how many were due.
    async fn work_once(&self) -> Result<usize, sqlx::Error> {
        let now = self.clock.now_ms();
        let due = store::due_deliveries(&self.db, now, BATCH).await?;
        let lease_until = now + LEASE.as_millis() as i64;
        let mut claimed = Vec::with_capacity(due.len());
        for (id, seen) in &due {
            match store::claim_delivery(&self.db, id, *seen, lease_until, now).await {
                Ok(Some(d)) => claimed.push(d),
                // Another replica's worker claimed it first.
                Ok(None) => {}
                // Send what is already claimed rather than leave it to its lease.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim deliveries; will retry");
                    break;
                }
            }
        }
        futures::stream::iter(claimed).for_each_concurrent(CONCURRENCY, |d| self.attempt(d)).await;
        Ok(due.len())
    }

    async fn attempt(&self, d: DeliveryRow) {
        let sender = Channel::parse(&d.channel).and_then(|c| self.senders.get(&c));
        let result = match sender {
            Some(sender) => sender.send(&d).await,
            None => Err(SendError::Permanent(format!("no sender for channel {}", d.channel))),
        };
        let now = self.clock.now_ms();
        let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        let outcome = match &result {
            Ok(()) => Outcome::Sent,
            Err(SendError::Permanent(e)) => Outcome::Failed { error: e },
            Err(SendError::Retryable(e)) => match after_failure(attempts, self.max_attempts) {
                AfterFailure::RetryIn(delay) => Outcome::RetryAt { at: now + delay.as_millis() as i64, error: e },
                AfterFailure::GiveUp => Outcome::Failed { error: e },
            },
        };
        let label = match (&result, &outcome) {
            (Ok(()), _) => {
                tracing::debug!(delivery = %d.id, channel = %d.channel, attempts, "delivered");
                "sent"
            }
            (Err(e), Outcome::Failed { .. }) => {
                tracing::warn!(delivery = %d.id, channel = %d.channel, attempts, error = %e, "delivery failed for good");
                "failed"
            }
            (Err(e), _) => {
                tracing::info!(delivery = %d.id, channel = %d.channel, attempts, error = %e, "delivery failed; will retry");
                "retry"
            }
        };
        self.metrics.count(
            "notifications_delivery_attempts_total",
            "Delivery attempts, by channel and outcome.",
            &[("channel", &d.channel), ("outcome", label)],
            1,
        );
        match store::finish_delivery(&self.db, &d, outcome, now).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(delivery = %d.id, "delivery changed while it was being sent (lease expired or webhook deleted)"),
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "cannot record a delivery outcome; it will be tried again after its lease")
            }
        }
    }
}
