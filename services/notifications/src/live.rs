//! The live stream of one user's new notifications, as Server-Sent Events.
//!
//! It sends nothing old (the list endpoint does that): rows already visible when it opens
//! are remembered as seen. Afterwards it reads the database when this replica's handler
//! says the user has something new, and about every second regardless, so a notification
//! made by another replica arrives as well. Reads look back a few seconds, not just past the
//! newest row seen, because rows commit in a different order than their timestamps say;
//! ids already sent within that window are remembered so nothing is sent twice.
//!
//! The stream ends when the access token it was opened with expires (the client reconnects
//! with a fresh one) and when the service shuts down, so it never holds a drain open.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Schedule};
use crate::store::{self, NotificationRow};

/// How often a stream reads the database without being woken.
pub const POLL: Duration = Duration::from_secs(1);
/// How far back each read looks, in milliseconds.
const LOOKBACK_MS: i64 = 10_000;
const READ_LIMIT: i64 = 100;

pub struct LiveStream {
    db: Db,
    clock: Clock,
    user_id: String,
    woken: broadcast::Receiver<String>,
    schedule: Schedule,
    /// Ids seen (sent, or there before the stream opened) with their creation time.
    seen: HashMap<String, i64>,
    pending: VecDeque<NotificationRow>,
    ends_at: Instant,
    shutdown: CancellationToken,
}

impl LiveStream {
    /// Opens the stream of `user_id` until `ends_at` or `shutdown`.
    pub async fn open(
        db: Db,
        clock: Clock,
        hub: &Hub,
        user_id: &str,
        ends_at: Instant,
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        // Subscribe before reading, so a notification made in between is not missed.
        let woken = hub.subscribe();
        let existing = store::list_unread_since(&db, user_id, clock.now_ms() - LOOKBACK_MS, READ_LIMIT).await?;
        Ok(Self {
            db,
            clock,
            user_id: user_id.to_owned(),
            woken,
            schedule: Schedule::new(POLL),
            seen: existing.into_iter().map(|n| (n.id, n.created_at)).collect(),
            pending: VecDeque::new(),
            ends_at,
            shutdown,
        })
    }

    /// Reads what is new since the last read into `pending`.
    async fn read(&mut self) -> Result<(), sqlx::Error> {
        let since = self.clock.now_ms() - LOOKBACK_MS;
        self.seen.retain(|_, created_at| *created_at >= since);
        // Newest first from the store, so a burst beyond the limit keeps its latest rows;
        // sent oldest first, in the order they happened.
        for n in store::list_unread_since(&self.db, &self.user_id, since, READ_LIMIT).await?.into_iter().rev() {
            if self.seen.insert(n.id.clone(), n.created_at).is_none() {
                self.pending.push_back(n);
            }
        }
        Ok(())
    }

    /// The next row to send, waiting for one; `None` when the stream is over.
    async fn next_row(&mut self) -> Option<NotificationRow> {
        loop {
            if let Some(n) = self.pending.pop_front() {
                return Some(n);
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(self.ends_at) => return None,
                woken = self.woken.recv() => match woken {
                    Ok(user) if user == self.user_id => self.schedule.woken(),
                    Ok(_) => {}
                    // Missed wake-ups may have been ours: look.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.schedule.woken(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(self.schedule.next()) => {
                    self.schedule.read();
                    if let Err(e) = self.read().await {
                        tracing::warn!(error = %e, "live stream cannot read notifications; will retry");
                    }
                }
            }
        }
    }

    /// The stream as SSE events named `notification`, each carrying the JSON of `view(row)`.
    pub fn into_events<F>(self, view: F) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static
    where
        F: Fn(&NotificationRow) -> serde_json::Value + Send + Sync + 'static,
    {
        futures::stream::unfold((self, view), |(mut live, view)| async move {
            let row = live.next_row().await?;
            let event = Event::default().event("notification").id(row.id.clone()).data(view(&row).to_string());
            Some((Ok(event), (live, view)))
        })
    }
}
