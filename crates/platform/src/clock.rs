//! Time as a parameter. Domain code asks a [`Clock`] for "now" instead of calling the system
//! clock, so tests can hold time still or move it forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// A source of the current UTC time.
#[derive(Clone)]
pub struct Clock(Arc<ClockKind>);

enum ClockKind {
    System,
    /// Unix time in microseconds, moved only by the test that owns it.
    Manual(AtomicI64),
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(ClockKind::System))
    }

    pub fn manual(start: OffsetDateTime) -> Self {
        Self(Arc::new(ClockKind::Manual(AtomicI64::new(to_micros(start)))))
    }

    pub fn now(&self) -> OffsetDateTime {
        match &*self.0 {
            ClockKind::System => OffsetDateTime::now_utc(),
            ClockKind::Manual(us) => from_micros(us.load(Ordering::SeqCst)),
        }
    }

    /// Milliseconds since the Unix epoch: the form timestamps take in the databases.
    pub fn now_ms(&self) -> i64 {
        to_millis(self.now())
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, by: std::time::Duration) {
        if let ClockKind::Manual(us) = &*self.0 {
            us.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            ClockKind::System => f.write_str("Clock::System"),
            ClockKind::Manual(_) => write!(f, "Clock::Manual({})", self.now()),
        }
    }
}

fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 text of a database timestamp, the form every API puts on the wire: UTC with
/// exactly three fraction digits, so the texts sort as the instants do.
pub fn rfc3339_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    from_millis(ms).format(FORMAT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::manual(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:00 UTC));
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:01:30 UTC));
        assert_eq!(rfc3339_ms(clock.now_ms()), "2026-01-01T00:01:30.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }
}
