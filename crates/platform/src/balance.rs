//! Which replica of a service gets a request, and whether the service gets one at all. Used by
//! the gateway for HTTP and by every service for its gRPC peers.
//!
//! - **Balancing:** the less busy of two candidates (power of two choices over requests in
//!   flight), the candidates taken in turn so equal loads still spread.
//! - **Passive health:** a replica that refused a connection, failed or timed out is ejected
//!   for a while; **active health:** one whose `/ready` check fails is out until a check
//!   passes. Either way it gets nothing while another replica is left.
//! - **Circuit breaker, per service:** after `failures` requests in a row that no replica
//!   answered (the caller records them; one a retry on another replica saved is not one), the
//!   service gets no requests for `open_for` (callers answer at once instead
//!   of waiting on a service that is down); then one probe request goes through, and its
//!   outcome closes the circuit or opens it again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the balancer knows of one replica; a connection to it keeps a handle, so its
/// requests are counted without a lookup.
#[derive(Default)]
pub struct Replica {
    in_flight: AtomicUsize,
    /// Until when it gets no new requests (ms on the balancer's clock; 0: never ejected).
    ejected_until_ms: AtomicU64,
    /// Its last active readiness check failed.
    unready: AtomicBool,
}

/// The breaker of one service.
#[derive(Default)]
struct Circuit {
    /// Failed requests in a row.
    failures: AtomicU32,
    /// While closed 0; open until this time (ms on the balancer's clock), then half-open.
    open_until_ms: AtomicU64,
    /// Half-open: when the probe request was let through (0: none yet).
    probe_since_ms: AtomicU64,
}

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failed requests in a row that open the circuit (0: never).
    pub failures: u32,
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(3) }
    }
}

/// Per service, the turn that breaks ties and the circuit.
#[derive(Default)]
struct ServiceState {
    turn: AtomicUsize,
    circuit: Circuit,
}

pub struct Balancer {
    replicas: Mutex<HashMap<String, Arc<Replica>>>,
    services: Mutex<HashMap<String, Arc<ServiceState>>>,
    eject_for: Duration,
    breaker: BreakerPolicy,
    epoch: Instant,
}

/// A request in flight to a replica; dropping it ends the request.
pub struct InFlight(Arc<Replica>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The circuit of a service is open: no request is sent for `retry_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    pub retry_in: Duration,
}

impl Balancer {
    pub fn new(eject_for: Duration) -> Self {
        Self::with_breaker(eject_for, BreakerPolicy::default())
    }

    pub fn with_breaker(eject_for: Duration, breaker: BreakerPolicy) -> Self {
        Self { replicas: Mutex::default(), services: Mutex::default(), eject_for, breaker, epoch: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, so 0 can mean "never" in the atomics.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn service(&self, service: &str) -> Arc<ServiceState> {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(service) {
            return s.clone();
        }
        map.entry(service.to_owned()).or_default().clone()
    }

    pub fn replica(&self, addr: &str) -> Arc<Replica> {
        let mut map = self.replicas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = map.get(addr) {
            return r.clone();
        }
        map.entry(addr.to_owned()).or_default().clone()
    }

    /// Whether `addr` may take new requests now.
    pub fn is_live(&self, addr: &str) -> bool {
        self.live(&self.replica(addr))
    }

    /// Whether this replica may take new requests now.
    pub fn live(&self, r: &Replica) -> bool {
        self.live_at(r, self.now_ms())
    }

    fn live_at(&self, r: &Replica, now: u64) -> bool {
        r.ejected_until_ms.load(Ordering::Relaxed) <= now && !r.unready.load(Ordering::Relaxed)
    }

    /// Picks a replica of `service` among `addrs` (not empty), skipping `avoid` (ones that
    /// already failed this request) and ejected or unready ones while any other is left.
    pub fn pick<'a>(&self, service: &str, addrs: &'a [String], avoid: &[String]) -> &'a str {
        let now = self.now_ms();
        let states: Vec<(usize, Arc<Replica>)> = addrs.iter().enumerate().map(|(i, a)| (i, self.replica(a))).collect();
        let fresh: Vec<&(usize, Arc<Replica>)> = states.iter().filter(|(i, _)| !avoid.contains(&addrs[*i])).collect();
        let live: Vec<&(usize, Arc<Replica>)> = fresh.iter().copied().filter(|(_, r)| self.live_at(r, now)).collect();
        let pool: Vec<&(usize, Arc<Replica>)> = match (live.is_empty(), fresh.is_empty()) {
            (false, _) => live,
            (true, false) => fresh,
            (true, true) => states.iter().collect(),
        };
        let chosen = if pool.len() == 1 {
            pool[0].0
        } else {
            let turn = self.service(service).turn.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            // Two candidates taken in turn (so equal loads still spread), the less busy wins.
            let a = pool[turn % pool.len()];
            let b = pool[(turn + 1 + (turn / pool.len()) % (pool.len() - 1)) % pool.len()];
            if b.1.in_flight.load(Ordering::Relaxed) < a.1.in_flight.load(Ordering::Relaxed) { b.0 } else { a.0 }
        };
        &addrs[chosen]
    }

    /// Counts a request to `addr` as in flight until the guard is dropped.
    pub fn start(&self, addr: &str) -> InFlight {
        Self::start_on(self.replica(addr))
    }

    /// [`Self::start`] on a replica already in hand.
    pub fn start_on(r: Arc<Replica>) -> InFlight {
        r.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(r)
    }

    /// Takes `addr` out of rotation for a while: it refused a connection, failed or timed out.
    pub fn eject(&self, addr: &str) {
        let until = self.now_ms() + u64::try_from(self.eject_for.as_millis()).unwrap_or(u64::MAX);
        self.replica(addr).ejected_until_ms.store(until, Ordering::Relaxed);
        tracing::warn!(upstream = addr, for_ms = self.eject_for.as_millis() as u64, "replica ejected");
    }

    /// Records the outcome of an active readiness check of `addr`. A replica that passes is
    /// no longer ejected either: it answered, so it is back.
    pub fn mark_ready(&self, addr: &str, ready: bool) {
        let r = self.replica(addr);
        let was_unready = r.unready.swap(!ready, Ordering::Relaxed);
        if ready {
            r.ejected_until_ms.store(0, Ordering::Relaxed);
        }
        if was_unready == ready {
            tracing::info!(upstream = addr, ready, "replica readiness changed");
        }
    }

    /// Whether the last readiness check of `addr` passed (true before any check).
    pub fn is_ready(&self, addr: &str) -> bool {
        !self.replica(addr).unready.load(Ordering::Relaxed)
    }

    /// Forgets replicas not in `listed` (gone from discovery), so the table does not grow
    /// with every address a replica ever had. A request still in flight keeps its record.
    pub fn retain(&self, listed: &HashSet<String>) {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner).retain(|addr, _| listed.contains(addr));
    }

    /// How many replicas the balancer keeps a record of.
    pub fn known_replicas(&self) -> usize {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether a request to `service` may be sent now. While the circuit is open, no; once
    /// its time is up, one probe request may (and the rest wait for its outcome, or for
    /// `open_for` more if the probe never reports).
    pub fn admit(&self, service: &str) -> Result<(), CircuitOpen> {
        let c = &self.service(service).circuit;
        let open_until = c.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now < open_until {
            return Err(CircuitOpen { retry_in: Duration::from_millis(open_until - now) });
        }
        let open_ms = u64::try_from(self.breaker.open_for.as_millis()).unwrap_or(u64::MAX);
        let probe = c.probe_since_ms.load(Ordering::Acquire);
        if (probe == 0 || now >= probe.saturating_add(open_ms))
            && c.probe_since_ms.compare_exchange(probe, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            return Ok(());
        }
        Err(CircuitOpen { retry_in: Duration::from_millis(open_ms.min(100)) })
    }

    /// Records whether a request to `service` got an answer (any answer: a replica that says
    /// no is working) or failed at the transport (refused, reset, timed out).
    pub fn record(&self, service: &str, answered: bool) {
        let s = self.service(service);
        let c = &s.circuit;
        if answered {
            // Reads first: on the common path (closed, no failures) nothing is written, so
            // cores do not trade the cache line back and forth.
            if c.failures.load(Ordering::Relaxed) != 0 {
                c.failures.store(0, Ordering::Relaxed);
            }
            if c.open_until_ms.load(Ordering::Acquire) != 0 && c.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
                c.probe_since_ms.store(0, Ordering::Release);
                tracing::info!(service, "circuit closed");
            }
            return;
        }
        let failures = c.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let half_open = c.open_until_ms.load(Ordering::Acquire) != 0;
        if self.breaker.failures > 0 && (failures >= self.breaker.failures || half_open) {
            let until = self.now_ms() + u64::try_from(self.breaker.open_for.as_millis()).unwrap_or(u64::MAX);
            c.open_until_ms.store(until, Ordering::Release);
            c.probe_since_ms.store(0, Ordering::Release);
            tracing::warn!(service, failures, open_for_ms = self.breaker.open_for.as_millis() as u64, "circuit open");
        }
    }

    /// Whether the circuit of `service` is open (or half-open) now.
    pub fn circuit_open(&self, service: &str) -> bool {
        self.service(service).circuit.open_until_ms.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn equal_loads_spread_over_every_replica() {
        let b = Balancer::new(Duration::from_secs(5));
        let a = addrs(3);
        let mut counts = HashMap::new();
        for _ in 0..300 {
            *counts.entry(b.pick("shop", &a, &[]).to_owned()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|c| *c >= 50), "{counts:?}");
    }

    #[test]
    fn each_service_spreads_on_its_own_whatever_the_mix() {
        // One pick of another service between each shop pick must not pin shop to one replica.
        let b = Balancer::new(Duration::from_secs(5));
        let a = addrs(2);
        let mut shop = HashSet::new();
        for _ in 0..20 {
            b.pick("identity", &a, &[]);
            shop.insert(b.pick("shop", &a, &[]).to_owned());
        }
        assert_eq!(shop.len(), 2);
    }

    #[test]
    fn the_less_busy_replica_wins_and_in_flight_ends_with_the_guard() {
        let b = Balancer::new(Duration::from_secs(5));
        let a = addrs(2);
        let busy: Vec<InFlight> = (0..5).map(|_| b.start(&a[0])).collect();
        for _ in 0..20 {
            assert_eq!(b.pick("shop", &a, &[]), a[1]);
        }
        drop(busy);
        let picked: HashSet<&str> = (0..20).map(|_| b.pick("shop", &a, &[])).collect();
        assert_eq!(picked.len(), 2, "both again once the first is idle");
    }

    #[test]
    fn an_ejected_or_failed_replica_gets_nothing_while_another_is_left() {
        let b = Balancer::new(Duration::from_millis(200));
        let a = addrs(3);
        b.eject(&a[1]);
        for _ in 0..50 {
            assert_ne!(b.pick("shop", &a, &[]), a[1]);
            assert_eq!(b.pick("shop", &a, &[a[0].clone()]), a[2], "neither the failed nor the ejected one");
        }
        // All ejected: still answer with one rather than none.
        b.eject(&a[0]);
        b.eject(&a[2]);
        let picked = b.pick("shop", &a, &[]);
        assert!(a.iter().any(|x| x == picked));
        // The ejection ends.
        std::thread::sleep(Duration::from_millis(250));
        assert!(a.iter().all(|x| b.is_live(x)));
    }

    #[test]
    fn an_unready_replica_is_out_until_a_check_passes_and_a_pass_ends_an_ejection() {
        let b = Balancer::new(Duration::from_secs(60));
        let a = addrs(2);
        b.mark_ready(&a[0], false);
        assert!(!b.is_ready(&a[0]));
        for _ in 0..20 {
            assert_eq!(b.pick("shop", &a, &[]), a[1]);
        }
        b.mark_ready(&a[0], true);
        b.eject(&a[1]);
        assert!(!b.is_live(&a[1]));
        b.mark_ready(&a[1], true);
        assert!(b.is_live(&a[0]) && b.is_live(&a[1]));
    }

    #[test]
    fn replicas_gone_from_discovery_are_forgotten() {
        let b = Balancer::new(Duration::from_secs(5));
        let a = addrs(4);
        for x in &a {
            b.start(x);
        }
        assert_eq!(b.known_replicas(), 4);
        b.retain(&a[..2].iter().cloned().collect());
        assert_eq!(b.known_replicas(), 2);
    }

    #[test]
    fn the_circuit_opens_after_failures_in_a_row_lets_one_probe_through_then_closes_or_reopens() {
        let b = Balancer::with_breaker(Duration::from_secs(5), BreakerPolicy { failures: 3, open_for: Duration::from_millis(150) });
        // Failures broken by an answer do not open it.
        b.record("shop", false);
        b.record("shop", false);
        b.record("shop", true);
        b.record("shop", false);
        b.record("shop", false);
        assert!(b.admit("shop").is_ok());
        b.record("shop", false);
        let open = b.admit("shop").expect_err("three in a row open the circuit");
        assert!(open.retry_in <= Duration::from_millis(150) && open.retry_in > Duration::ZERO);
        assert!(b.admit("identity").is_ok(), "other services are not affected");

        // Half-open: exactly one probe of many callers.
        std::thread::sleep(Duration::from_millis(170));
        let admitted = (0..10).filter(|_| b.admit("shop").is_ok()).count();
        assert_eq!(admitted, 1);
        // The probe fails: open again at once.
        b.record("shop", false);
        assert!(b.admit("shop").is_err());
        std::thread::sleep(Duration::from_millis(170));
        assert!(b.admit("shop").is_ok());
        // The probe is answered: closed, everyone goes.
        b.record("shop", true);
        assert!(!b.circuit_open("shop"));
        assert!((0..10).all(|_| b.admit("shop").is_ok()));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_the_open_time() {
        let b = Balancer::with_breaker(Duration::from_secs(5), BreakerPolicy { failures: 1, open_for: Duration::from_millis(100) });
        b.record("shop", false);
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.admit("shop").is_ok(), "the probe");
        assert!(b.admit("shop").is_err(), "the rest wait for it");
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.admit("shop").is_ok(), "a lost probe is replaced");
    }
}
