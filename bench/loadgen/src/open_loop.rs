//! Open loop: requests fall due at fixed intervals whatever the server does, and each one's
//! latency runs from the moment it was due, not from when it could actually be sent. A slow
//! server therefore shows up as latency instead of silently lowering the offered load (the
//! "coordinated omission" a closed loop suffers from).
//!
//! Pacing runs on its own OS thread with `std::thread::sleep` (nanosleep, ~50 µs slack)
//! because tokio's timer has 1 ms granularity: at 10 000 req/s it would release requests in
//! bursts of ten per tick and add up to a millisecond of queueing that is not the server's.
//! How late each send actually was is reported as the send lag, so that floor is visible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Uri;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinError;

use crate::client::{self, HttpClient};
use crate::stats::{Percentiles, Sample, Samples, micros};

/// After the last request fell due, how long the pacer still waits for a free in-flight
/// slot before it gives up on the requests not sent yet (reported as unsent).
const SEND_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests per second offered.
    pub rate: f64,
    pub duration: Duration,
    /// Requests outstanding at once; a due request waits (and its latency grows) while all
    /// slots are taken, which bounds connections and memory when the server stalls.
    pub max_in_flight: usize,
    pub timeout: Duration,
}

/// How well the offered load was delivered.
#[derive(Debug)]
pub struct Pacing {
    pub scheduled: u64,
    pub sent: u64,
    /// Time from when each request was due to when it was handed to the client.
    pub lag: Percentiles,
}

pub async fn run(client: HttpClient, target: Uri, plan: Plan, bearers: client::Bearers) -> Result<(Samples, Pacing, Duration), JoinError> {
    let (results, mut received) = mpsc::unbounded_channel();
    let started = Instant::now();
    let handle = Handle::current();
    let pacer = tokio::task::spawn_blocking(move || pace(&handle, &client, &target, &bearers, plan, &results, started));
    let mut samples = Samples::default();
    // Ends once the pacer and every request it spawned have dropped their sender.
    while let Some(sample) = received.recv().await {
        samples.record(sample);
    }
    let pacing = pacer.await?;
    Ok((samples, pacing, started.elapsed()))
}

fn pace(
    handle: &Handle,
    client: &HttpClient,
    target: &Uri,
    bearers: &client::Bearers,
    plan: Plan,
    results: &mpsc::UnboundedSender<Sample>,
    started: Instant,
) -> Pacing {
    let in_flight = Arc::new(Semaphore::new(plan.max_in_flight));
    let scheduled = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let give_up = tokio::time::Instant::from_std(started + plan.duration + SEND_GRACE);
    let mut lags_us = Vec::with_capacity(usize::try_from(scheduled).unwrap_or(0));
    let mut sent = 0;
    for i in 0..scheduled {
        // Each due time is computed from the start, so sleep overshoot never accumulates.
        let due = started + Duration::from_secs_f64(i as f64 / plan.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match handle.block_on(tokio::time::timeout_at(give_up, in_flight.clone().acquire_owned())) {
                Ok(Ok(permit)) => permit,
                // Timed out (the semaphore is never closed): stop, and report the rest as unsent.
                _ => break,
            },
        };
        lags_us.push(micros(due.elapsed()));
        sent += 1;
        let (client, target, results, bearer) = (client.clone(), target.clone(), results.clone(), bearers.nth(i));
        handle.spawn(async move {
            let sample = client::get(&client, &target, bearer, due, plan.timeout).await;
            drop(permit);
            // The receiver outlives every sender unless the whole run is being torn down.
            let _ = results.send(sample);
        });
    }
    lags_us.sort_unstable();
    Pacing { scheduled, sent, lag: Percentiles::of(&lags_us) }
}
