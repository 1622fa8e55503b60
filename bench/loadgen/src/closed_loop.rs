//! Closed loop: `connections` workers, each sending its next request as soon as the previous
//! answer has been read. Throughput is what the server sustains at that concurrency; latency
//! is per request, from send to the end of the body.

use std::time::{Duration, Instant};

use hyper::Uri;
use tokio::task::{JoinError, JoinSet};

use crate::client::{self, HttpClient};
use crate::stats::Samples;

pub async fn run(
    client: HttpClient,
    target: Uri,
    connections: usize,
    duration: Duration,
    timeout: Duration,
    bearers: client::Bearers,
) -> Result<(Samples, Duration), JoinError> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..connections {
        let (client, target, bearers, sent) = (client.clone(), target.clone(), bearers.clone(), sent.clone());
        workers.spawn(async move {
            let mut samples = Samples::default();
            // A request started before the deadline is allowed to finish (bounded by `timeout`).
            while Instant::now() < deadline {
                let bearer = bearers.nth(sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                samples.record(client::get(&client, &target, bearer, Instant::now(), timeout).await);
            }
            samples
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = workers.join_next().await {
        all.merge(joined?);
    }
    Ok((all, started.elapsed()))
}
