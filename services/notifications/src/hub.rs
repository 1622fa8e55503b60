//! Wake-ups inside one replica: the event handler tells open live streams that a user has a
//! new notification and the delivery worker that something was queued. They are hints, never
//! the data: every listener reads the database, and also polls it, so notifications made by
//! another replica arrive too and a lost wake-up only costs latency.
//!
//! The handler wakes listeners from inside its transaction, which commits a moment later, so
//! a listener that was woken looks again a few times shortly after ([`Schedule`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

pub struct Hub {
    created: broadcast::Sender<String>,
    queued: Notify,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self { created: broadcast::channel(1024).0, queued: Notify::new() }
    }

    /// `user_id` has a new notification.
    pub fn notification_created(&self, user_id: &str) {
        // No open stream means nobody to tell: not an error.
        let _ = self.created.send(user_id.to_owned());
    }

    /// Users with new notifications, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.created.subscribe()
    }

    /// Deliveries were queued.
    pub fn deliveries_queued(&self) {
        // A stored permit wakes the worker even if it is busy right now.
        self.queued.notify_one();
    }

    pub async fn deliveries_woken(&self) {
        self.queued.notified().await
    }
}

/// Look-agains after a wake-up, relative to it: the waking transaction commits within
/// milliseconds, rarely more.
const AFTER_WAKE: [Duration; 4] = [Duration::ZERO, Duration::from_millis(25), Duration::from_millis(100), Duration::from_millis(300)];

/// When a listener next reads the database: at its regular poll, and soon after each wake-up.
pub struct Schedule {
    every: Duration,
    next_poll: Instant,
    soon: VecDeque<Instant>,
}

impl Schedule {
    pub fn new(every: Duration) -> Self {
        Self { every, next_poll: Instant::now() + every, soon: VecDeque::new() }
    }

    pub fn woken(&mut self) {
        let now = Instant::now();
        self.soon = AFTER_WAKE.iter().map(|d| now + *d).collect();
    }

    /// The next time to read.
    pub fn next(&self) -> Instant {
        self.soon.front().copied().map_or(self.next_poll, |t| t.min(self.next_poll))
    }

    /// Records a read made now.
    pub fn read(&mut self) {
        let now = Instant::now();
        while self.soon.front().is_some_and(|t| *t <= now) {
            self.soon.pop_front();
        }
        if self.next_poll <= now {
            self.next_poll = now + self.every;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_brings_reads_forward_then_polling_resumes() {
        let mut s = Schedule::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(s.next(), start + Duration::from_secs(1));
        s.woken();
        let mut reads = Vec::new();
        for _ in 0..5 {
            tokio::time::sleep_until(s.next()).await;
            reads.push(Instant::now() - start);
            s.read();
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(reads, [ms(0), ms(25), ms(100), ms(300), ms(1000)]);
        assert_eq!(s.next(), start + ms(2000));
    }

    #[tokio::test]
    async fn the_worker_wake_up_is_kept_until_it_waits() {
        let hub = Hub::new();
        hub.deliveries_queued();
        tokio::time::timeout(Duration::from_secs(1), hub.deliveries_woken()).await.unwrap();
        let mut rx = hub.subscribe();
        hub.notification_created("u-1");
        assert_eq!(rx.recv().await.unwrap(), "u-1");
    }
}
