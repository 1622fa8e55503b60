//! Prometheus metrics without a global registry: each service owns a [`Metrics`] and renders
//! it from its own `/metrics`. Labels must be low-cardinality (route templates, status codes,
//! outcome names), never ids.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    counters: BTreeMap<(&'static str, String), u64>,
    gauges: BTreeMap<(&'static str, String), i64>,
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

    /// Adds `by` to the counter `name` (which should end in `_total`).
    pub fn count(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], by: u64) {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "counter"));
            *r.counters.entry(key).or_default() += by;
        });
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], value: i64) {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "gauge"));
            r.gauges.insert(key, value);
        });
    }

    /// Records one observation in seconds into the histogram `name` (ending in `_seconds`).
    pub fn observe(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], seconds: f64) {
        let key = (name, labels(&self.service, pairs));
        self.with(|r| {
            r.help.entry(name).or_insert((help, "histogram"));
            let h = r.histograms.entry(key).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
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
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
                for ((n, l), v) in r.gauges.range((*name, String::new())..) {
                    if n != name {
                        break;
                    }
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
                for ((n, l), h) in r.histograms.range((*name, String::new())..) {
                    if n != name {
                        break;
                    }
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {}", h.counts[i]);
                    }
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
                    let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
                    let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
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
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new("identity");
        m.count("logins_total", "Logins.", &[("outcome", "ok")], 2);
        m.observe("req_seconds", "Latency.", &[("route", "/x")], 0.003);
        let text = m.render();
        assert!(text.contains("logins_total{service=\"identity\",outcome=\"ok\"} 2"), "{text}");
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("req_seconds_bucket{service=\"identity\",route=\"/x\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("req_seconds_count{service=\"identity\",route=\"/x\"} 1"), "{text}");
    }
}
