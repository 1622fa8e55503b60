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
) -> Result<(Samples, Duration), JoinError> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let client = client.clone();
        let target = target.clone();
        workers.spawn(async move {
            let mut samples = Samples::default();
            // A request started before the deadline is allowed to finish (bounded by `timeout`).
            while Instant::now() < deadline {
                samples.record(client::get(&client, &target, Instant::now(), timeout).await);
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
