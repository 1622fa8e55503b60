//! What the run measured, per kind of operation: how each ended (done, refused as documented,
//! failed), the latency of every answered operation, and which answers they were.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The kinds of operation a virtual user performs, in report order.
pub const OPS: &[&str] = &["browse", "configure", "add", "checkout", "checkout_replay", "order", "order_replay", "cancel"];

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Done,
    /// A documented refusal (409 `out_of_stock`, 402 `payment_declined`...): the platform
    /// said no for a reason the API names. The text says which.
    Refused(String),
    /// A 5xx, a transport error, a timeout, or an answer the API does not document for it.
    Failed(String),
}

/// One kind of operation's record.
#[derive(Debug, Default, Clone)]
pub struct OpStats {
    /// Latencies (µs) of the operations that were answered (done or refused).
    latencies_us: Vec<u64>,
    pub done: u64,
    pub refused: u64,
    pub failed: u64,
    /// How many ended each way, e.g. `"409 out_of_stock"` or `"transport: ..."`.
    pub outcomes: BTreeMap<String, u64>,
    pub first_error: Option<String>,
}

impl OpStats {
    pub fn record(&mut self, latency: Duration, outcome: &Outcome) {
        match outcome {
            Outcome::Done => {
                self.done += 1;
                self.latencies_us.push(micros(latency));
            }
            Outcome::Refused(why) => {
                self.refused += 1;
                self.latencies_us.push(micros(latency));
                *self.outcomes.entry(why.clone()).or_default() += 1;
            }
            Outcome::Failed(why) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| why.clone());
                // Keep the kinds apart, not every message: "503 ..." or "transport".
                let kind: String = why.split(':').next().unwrap_or(why).chars().take(60).collect();
                *self.outcomes.entry(format!("error {kind}")).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: OpStats) {
        self.latencies_us.extend(other.latencies_us);
        self.done += other.done;
        self.refused += other.refused;
        self.failed += other.failed;
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn count(&self) -> u64 {
        self.done + self.refused + self.failed
    }

    pub fn summary(&mut self) -> Value {
        self.latencies_us.sort_unstable();
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        json!({
            "count": self.count(),
            "done": self.done,
            "refused": self.refused,
            "errors": self.failed,
            "p50_ms": ms(percentile(&self.latencies_us, 50.0)),
            "p99_ms": ms(percentile(&self.latencies_us, 99.0)),
            "max_ms": ms(self.latencies_us.last().copied().unwrap_or(0)),
            "outcomes": self.outcomes,
            "first_error": self.first_error,
        })
    }
}

/// Every kind's record.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ops: BTreeMap<&'static str, OpStats>,
}

impl Stats {
    pub fn record(&mut self, op: &'static str, latency: Duration, outcome: &Outcome) {
        self.ops.entry(op).or_default().record(latency, outcome);
    }

    pub fn merge(&mut self, other: Stats) {
        for (op, s) in other.ops {
            self.ops.entry(op).or_default().merge(s);
        }
    }

    /// The JSON summary: totals, and one object per kind in report order.
    pub fn summary(&mut self, elapsed: Duration) -> Map<String, Value> {
        let secs = elapsed.as_secs_f64();
        let mut all = OpStats::default();
        let mut per_op = Map::new();
        for op in OPS {
            if let Some(s) = self.ops.get_mut(op) {
                per_op.insert((*op).to_owned(), s.summary());
                all.merge(s.clone());
            }
        }
        let mut out = Map::new();
        out.insert("ops".into(), json!(all.count()));
        out.insert("ops_per_sec".into(), json!(if secs > 0.0 { (all.count() as f64 / secs * 10.0).round() / 10.0 } else { 0.0 }));
        out.insert("elapsed_s".into(), json!((secs * 1000.0).round() / 1000.0));
        out.insert("done".into(), json!(all.done));
        out.insert("refused".into(), json!(all.refused));
        out.insert("errors".into(), json!(all.failed));
        let overall = all.summary();
        out.insert("p50_ms".into(), overall["p50_ms"].clone());
        out.insert("p99_ms".into(), overall["p99_ms"].clone());
        out.insert("per_op".into(), Value::Object(per_op));
        out
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile of an ascending slice (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_answers_and_failures_are_not() {
        let mut s = Stats::default();
        s.record("add", Duration::from_micros(1000), &Outcome::Done);
        s.record("add", Duration::from_micros(3000), &Outcome::Refused("409 out_of_stock".into()));
        s.record("add", Duration::from_micros(900_000), &Outcome::Failed("503 peer_unavailable: inventory".into()));
        let out = s.summary(Duration::from_secs(1));
        assert_eq!(
            (out["ops"].clone(), out["done"].clone(), out["refused"].clone(), out["errors"].clone()),
            (json!(3), json!(1), json!(1), json!(1))
        );
        let add = &out["per_op"]["add"];
        assert_eq!(add["p99_ms"], 3.0, "failed operations' latencies are left out: {add}");
        assert_eq!(add["outcomes"]["409 out_of_stock"], 1);
        assert_eq!(add["outcomes"]["error 503 peer_unavailable"], 1);
        assert_eq!(add["first_error"], "503 peer_unavailable: inventory");
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
