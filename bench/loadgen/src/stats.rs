//! What a run measured: one latency per finished request, outcome counts, and the summary
//! (percentiles by nearest rank over the exact, sorted samples). Keeping every sample costs
//! 8 bytes per request, which for benchmark-sized runs (10^5..10^7 requests) is cheaper and
//! simpler than an HDR histogram and has no bucketing error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived and its body was read to the end.
    Status(u16),
    /// Connecting, sending or reading failed; the message is kept for the first one only.
    Transport(String),
    /// No complete response within the request timeout.
    Timeout,
}

/// One finished request. `latency` runs from the moment the request was due (closed loop:
/// when it was sent; open loop: its scheduled time) to the end of the response body, or to
/// the failure.
#[derive(Debug, Clone)]
pub struct Sample {
    pub latency: Duration,
    pub outcome: Outcome,
}

/// Samples of one worker, or of a whole run once merged.
#[derive(Debug, Default)]
pub struct Samples {
    latencies_us: Vec<u64>,
    ok: u64,
    /// Responses outside 2xx, by status.
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    timeouts: u64,
    first_error: Option<String>,
}

impl Samples {
    pub fn record(&mut self, sample: Sample) {
        self.latencies_us.push(micros(sample.latency));
        match sample.outcome {
            Outcome::Status(status) if (200..300).contains(&status) => self.ok += 1,
            Outcome::Status(status) => *self.statuses.entry(status).or_default() += 1,
            Outcome::Transport(message) => {
                self.transport_errors += 1;
                self.first_error.get_or_insert(message);
            }
            Outcome::Timeout => {
                self.timeouts += 1;
                self.first_error.get_or_insert_with(|| "request timed out".to_owned());
            }
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The summary over a run that took `elapsed` from its first send to its last answer.
    pub fn summarize(mut self, elapsed: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let requests = self.latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        Summary {
            requests,
            errors: requests - self.ok,
            rps: if secs > 0.0 { requests as f64 / secs } else { 0.0 },
            elapsed_s: secs,
            latency: Percentiles::of(&self.latencies_us),
            statuses: self.statuses,
            transport_errors: self.transport_errors,
            timeouts: self.timeouts,
            first_error: self.first_error,
        }
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50/p90/p99/max of ascending samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(sorted: &[u64]) -> Self {
        Self {
            p50: percentile(sorted, 50.0),
            p90: percentile(sorted, 90.0),
            p99: percentile(sorted, 99.0),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// Nearest-rank percentile of an ascending slice (0 when empty): the smallest sample such
/// that at least `p` percent of the samples are less than or equal to it.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug)]
pub struct Summary {
    pub requests: u64,
    /// Everything that was not a 2xx response: other statuses, transport errors, timeouts.
    pub errors: u64,
    pub rps: f64,
    pub elapsed_s: f64,
    pub latency: Percentiles,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    pub first_error: Option<String>,
}

impl Summary {
    /// The flat JSON object the tool prints (flat so shell scripts can pick fields with `jq`).
    pub fn to_json(&self) -> Map<String, Value> {
        let statuses: Map<String, Value> = self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        let mut out = Map::new();
        out.insert("requests".into(), json!(self.requests));
        out.insert("errors".into(), json!(self.errors));
        out.insert("rps".into(), json!((self.rps * 10.0).round() / 10.0));
        out.insert("elapsed_s".into(), json!((self.elapsed_s * 1000.0).round() / 1000.0));
        out.insert("p50_us".into(), json!(self.latency.p50));
        out.insert("p90_us".into(), json!(self.latency.p90));
        out.insert("p99_us".into(), json!(self.latency.p99));
        out.insert("max_us".into(), json!(self.latency.max));
        out.insert("non_2xx".into(), Value::Object(statuses));
        out.insert("transport_errors".into(), json!(self.transport_errors));
        out.insert("timeouts".into(), json!(self.timeouts));
        out.insert("first_error".into(), json!(self.first_error));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(us: u64, outcome: Outcome) -> Sample {
        Sample { latency: Duration::from_micros(us), outcome }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // With 10 samples p99 is the largest one, not an interpolation below it.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), 10);
    }

    #[test]
    fn every_non_2xx_outcome_is_an_error_and_merging_keeps_counts() {
        let mut a = Samples::default();
        a.record(sample(30, Outcome::Status(200)));
        a.record(sample(10, Outcome::Status(502)));
        let mut b = Samples::default();
        b.record(sample(20, Outcome::Transport("connection reset".into())));
        b.record(sample(40, Outcome::Timeout));
        b.record(sample(50, Outcome::Status(204)));
        a.merge(b);
        let s = a.summarize(Duration::from_secs(1));
        assert_eq!((s.requests, s.errors), (5, 3));
        assert_eq!(s.statuses.get(&502), Some(&1));
        assert_eq!((s.transport_errors, s.timeouts), (1, 1));
        assert_eq!(s.first_error.as_deref(), Some("connection reset"));
        assert_eq!(s.latency, Percentiles { p50: 30, p90: 50, p99: 50, max: 50 });
        assert!((s.rps - 5.0).abs() < 1e-9);
    }
}
