//! Prometheus metrics without a global registry: each service owns a [`Metrics`] and renders
//! it from its own `/metrics`. Labels must be low-cardinality (route templates, status codes,
//! outcome names), never ids.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A registered counter; adding to it is one atomic operation.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct HistogramCells {
    /// Per bucket (not cumulative); rendering accumulates.
    counts: [AtomicU64; BUCKETS.len()],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A registered histogram of durations; an observation is three atomic operations.
#[derive(Clone, Default)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let cells = &self.0;
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            cells.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        cells.sum_ns.fetch_add((seconds.max(0.0) * 1e9) as u64, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    counters: BTreeMap<(&'static str, String), Counter>,
    gauges: BTreeMap<(&'static str, String), Arc<AtomicI64>>,
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

/// A service's metric registry. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    service: Arc<str>,
    registry: Arc<Mutex<Registry>>,
}

fn labels(service: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = format!("service=\"{service}\"");
    for (k, v) in pairs {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, ",{k}=\"{v}\"");
    }
    out
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        Self { service: service.into(), registry: Arc::default() }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut guard = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// The counter `name` (which should end in `_total`) with these labels, registered on
    /// first use. Hot paths keep the handle instead of looking it up per event.
    pub fn counter(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)]) -> Counter {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "counter"));
            r.counters.entry(key).or_default().clone()
        })
    }

    /// The histogram `name` (ending in `_seconds`) with these labels, registered on first use.
    pub fn histogram(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)]) -> Histogram {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "histogram"));
            r.histograms.entry(key).or_default().clone()
        })
    }

    /// Adds `by` to the counter `name` (which should end in `_total`).
    pub fn count(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], by: u64) {
        self.counter(name, help, pairs).add(by);
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], value: i64) {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "gauge"));
            r.gauges.entry(key).or_default().store(value, Ordering::Relaxed);
        });
    }

    /// Records one observation in seconds into the histogram `name` (ending in `_seconds`).
    pub fn observe(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], seconds: f64) {
        self.histogram(name, help, pairs).observe(seconds);
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.with(|r| {
            let mut out = String::new();
            for (name, (help, kind)) in &r.help {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for ((n, l), v) in r.counters.range((*name, String::new())..) {
                    if n != name {
                        break;
                    }
                    let _ = writeln!(out, "{name}{{{l}}} {}", v.0.load(Ordering::Relaxed));
                }
                for ((n, l), v) in r.gauges.range((*name, String::new())..) {
                    if n != name {
                        break;
                    }
                    let _ = writeln!(out, "{name}{{{l}}} {}", v.load(Ordering::Relaxed));
                }
                for ((n, l), h) in r.histograms.range((*name, String::new())..) {
                    if n != name {
                        break;
                    }
                    let mut cumulative = 0;
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        cumulative += h.0.counts[i].load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {cumulative}");
                    }
                    let count = h.0.count.load(Ordering::Relaxed);
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
                    let _ = writeln!(out, "{name}_count{{{l}}} {count}");
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_the_registered_series() {
        let m = Metrics::new("gateway");
        let a = m.counter("hits_total", "Hits.", &[("route", "/a")]);
        a.add(2);
        m.count("hits_total", "Hits.", &[("route", "/a")], 3);
        assert!(m.render().contains("hits_total{service=\"gateway\",route=\"/a\"} 5"), "{}", m.render());
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new("identity");
        m.count("logins_total", "Logins.", &[("outcome", "ok")], 2);
        m.observe("req_seconds", "Latency.", &[("route", "/x")], 0.003);
        let text = m.render();
        assert!(text.contains("logins_total{service=\"identity\",outcome=\"ok\"} 2"), "{text}");
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("req_seconds_count{service=\"identity\",route=\"/x\"} 1"), "{text}");
        m.observe("req_seconds", "Latency.", &[("route", "/x")], 20.0);
        let text = m.render();
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"10\"} 1"), "{text}");
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("req_seconds_sum{service=\"identity\",route=\"/x\"} 20.003"), "{text}");
    }
}
