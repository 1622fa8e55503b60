//! gRPC plumbing: calls to peers found through discovery, balanced across their replicas,
//! within the deadline of the request being served, retried where a repeat is safe, and
//! failing fast while a peer is down.
//!
//! - **Deadline:** the HTTP layer scopes each request's deadline (its own timeout, or less
//!   when the caller sent `grpc-timeout` or the gateway sent `x-request-timeout-ms`). A peer
//!   call gets what is left of it (at most [`DEFAULT_DEADLINE`]) and passes it on in
//!   `grpc-timeout`, so a chain of calls never outlives the request that started it.
//! - **Retries:** a call that never reached a replica (connection refused) goes to another
//!   replica, whatever it does. A call marked [`Retry::Safe`] (reads, and writes the peer
//!   makes idempotent: a key, an absolute quantity, a named hold) is also repeated when its
//!   replica failed it at the transport, after a jittered, growing pause, while the deadline
//!   allows.
//! - **Balancing and health:** [`Balancer`] picks the replica, ejects one that failed, and
//!   opens a per-peer circuit after failures in a row.
//!
//! A peer's own answers (not found, failed precondition, ...) pass through untouched; the
//! transport's end states are `Unavailable` (503 to the client) and `DeadlineExceeded` (504).

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::balance::Balancer;
use crate::discovery::Discovery;

/// The longest a single peer call may take, whatever the request's own deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// How long a replica that failed a call gets no calls.
const EJECT_FOR: Duration = Duration::from_secs(5);
/// Most attempts of one call.
const MAX_ATTEMPTS: u32 = 4;
/// The first retry waits up to this long (full jitter), doubling each time.
const BACKOFF_BASE: Duration = Duration::from_millis(20);
const BACKOFF_CAP: Duration = Duration::from_millis(400);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the deadline of its peer calls (a later one than the one
/// already in force is ignored).
pub async fn with_deadline<F: Future>(deadline: Instant, fut: F) -> F::Output {
    let deadline = current_deadline().map_or(deadline, |d| d.min(deadline));
    DEADLINE.scope(deadline, fut).await
}

/// The deadline of the request this task is serving, if any.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// What a peer call may take from now: what is left of the deadline, less a little for the
/// caller to answer with once the call has failed (a tenth, at most 50 ms), and at most
/// [`DEFAULT_DEADLINE`].
pub fn time_left() -> Duration {
    current_deadline().map_or(DEFAULT_DEADLINE, |d| {
        let left = d.saturating_duration_since(Instant::now());
        left.saturating_sub((left / 10).min(Duration::from_millis(50))).min(DEFAULT_DEADLINE)
    })
}

/// Parses a `grpc-timeout` header value (`<up to 8 digits><H|M|S|m|u|n>`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether a call may be repeated after its replica failed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A repeat has no further effect: retried on transport failures within the deadline.
    Safe,
    /// Sent at most once; only a call that never reached any replica goes to another.
    Once,
}

/// Calls to peer services.
#[derive(Clone)]
pub struct Peers {
    discovery: Discovery,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    balancer: Arc<Balancer>,
}

impl Peers {
    pub fn new(discovery: Discovery) -> Self {
        Self { discovery, channels: Arc::default(), balancer: Arc::new(Balancer::new(EJECT_FOR)) }
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    fn channel_to(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| tonic::Status::unavailable(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Calls `service`: `call` sends `message` (as a request carrying the trace context and
    /// the time left) on the channel it is given, e.g.
    /// `peers.call("inventory", Retry::Safe, msg, |ch, req| async move { InventoryClient::new(ch).commit(req).await })`.
    /// Returns the peer's reply, the peer's own error status, or `Unavailable` /
    /// `DeadlineExceeded` when no replica could answer in time.
    pub async fn call<M, T, Fut>(
        &self,
        service: &str,
        retry: Retry,
        message: M,
        call: impl Fn(Channel, tonic::Request<M>) -> Fut,
    ) -> Result<T, tonic::Status>
    where
        M: Clone,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + time_left();
        if let Err(open) = self.balancer.admit(service) {
            return Err(tonic::Status::unavailable(format!(
                "{service} is failing: calls refused for {} ms more",
                open.retry_in.as_millis()
            )));
        }
        let mut tried: Vec<String> = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addrs =
                self.discovery.resolve(service).await.map_err(|e| tonic::Status::unavailable(format!("cannot find {service}: {e}")))?;
            if addrs.is_empty() {
                return Err(tonic::Status::unavailable(format!("no live instance of {service}")));
            }
            if tried.len() >= addrs.len() {
                tried.clear();
            }
            let addr = self.balancer.pick(service, &addrs, &tried).to_owned();
            let channel = self.channel_to(&addr)?;
            let mut req = request(message.clone());
            req.set_timeout(deadline.saturating_duration_since(Instant::now()));
            let outcome = {
                let _in_flight = self.balancer.start(&addr);
                match tokio::time::timeout_at(deadline, call(channel, req)).await {
                    Ok(r) => r,
                    Err(_) => Err(tonic::Status::deadline_exceeded(format!("{service} did not answer in time"))),
                }
            };
            let status = match outcome {
                Ok(reply) => {
                    self.balancer.record(service, true);
                    return Ok(reply.into_inner());
                }
                Err(s) if !transport_failure(&s) => {
                    self.balancer.record(service, true);
                    return Err(s);
                }
                // However the transport put it (tonic answers `Cancelled` when the timeout it
                // was given runs out), a call that failed at its deadline timed out.
                Err(s) if s.code() == tonic::Code::DeadlineExceeded || timed_out_in_tonic(&s) || Instant::now() >= deadline => {
                    tonic::Status::deadline_exceeded(format!("{service} did not answer in time"))
                }
                Err(s) => s,
            };
            self.balancer.eject(&addr);
            tracing::warn!(peer = service, replica = %addr, attempt, code = ?status.code(), message = status.message(), "peer call failed");
            let may_repeat = retry == Retry::Safe || never_sent(&status);
            let pause = backoff(attempt);
            if !may_repeat || attempt >= MAX_ATTEMPTS || Instant::now() + pause >= deadline {
                // Only a call no replica could answer counts toward the circuit: one a retry
                // saved shows the peer is up.
                self.balancer.record(service, false);
                return Err(status);
            }
            tried.push(addr);
            tokio::time::sleep(pause).await;
        }
    }
}

/// The pause before attempt `attempt + 1`: full jitter over a doubling window.
fn backoff(attempt: u32) -> Duration {
    let window = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
    window.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// A failure of the call's transport rather than an answer of the peer: it could not be
/// reached, the connection broke, or it took too long.
fn transport_failure(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::DeadlineExceeded => true,
        _ if timed_out_in_tonic(s) => true,
        // The peer answers Unavailable itself when its own dependencies are down; that is an
        // answer (the replica works) unless the transport made the status.
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => s.source().is_some(),
        _ => false,
    }
}

/// tonic's own end of a call whose `grpc-timeout` ran out.
fn timed_out_in_tonic(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Cancelled && s.message() == "Timeout expired"
}

/// Whether the call certainly never reached a replica: its connection was refused.
fn never_sent(s: &tonic::Status) -> bool {
    let mut source = s.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A request carrying the current trace context (`traceparent`) and what is left of the
/// deadline (`grpc-timeout`).
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(time_left());
    if let Some(ctx) = crate::telemetry::current_trace()
        && let Ok(value) = ctx.child().to_string().parse()
    {
        req.metadata_mut().insert("traceparent", value);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_garbage_is_refused() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "10", "10x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_deadline_in_scope_bounds_what_a_call_may_take_and_a_later_one_does_not_extend_it() {
        assert_eq!(time_left(), DEFAULT_DEADLINE, "no request: the default");
        let soon = Instant::now() + Duration::from_millis(300);
        with_deadline(soon, async {
            assert!(time_left() <= Duration::from_millis(300));
            with_deadline(Instant::now() + Duration::from_secs(60), async {
                assert!(time_left() <= Duration::from_millis(300), "an inner, later deadline is ignored");
            })
            .await;
            let req = request(());
            let header = req.metadata().get("grpc-timeout").expect("grpc-timeout sent").to_str().unwrap().to_owned();
            assert!(parse_grpc_timeout(&header).unwrap() <= Duration::from_millis(300), "{header}");
        })
        .await;
        with_deadline(Instant::now() + Duration::from_secs(60), async {
            assert_eq!(time_left(), DEFAULT_DEADLINE, "never more than the default");
        })
        .await;
    }

    #[test]
    fn backoff_grows_within_its_cap() {
        for attempt in 1..12 {
            let window = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
            for _ in 0..50 {
                assert!(backoff(attempt) <= window);
            }
        }
        assert!((0..200).map(|_| backoff(8)).any(|d| d > BACKOFF_BASE), "later pauses are longer");
    }
}
