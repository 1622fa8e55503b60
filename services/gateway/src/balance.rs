//! Which replica of a service gets a request: the less busy of two candidates (power of two
//! choices over requests in flight), never one that just failed to connect or answer while
//! another is left (passive health: it is ejected for `gateway.eject_ms`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the balancer knows of one replica; a connection to it keeps a handle, so its
/// requests are counted without a lookup.
#[derive(Default)]
pub struct Replica {
    in_flight: AtomicUsize,
    /// Until when it gets no new requests (ms on the balancer's clock; 0: never ejected).
    ejected_until_ms: AtomicU64,
}

pub struct Balancer {
    replicas: Mutex<HashMap<String, Arc<Replica>>>,
    /// Per service, the round-robin position that breaks ties.
    turns: Mutex<HashMap<String, usize>>,
    eject_for: Duration,
    epoch: Instant,
}

/// A request in flight to a replica; dropping it ends the request.
pub struct InFlight(Arc<Replica>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    pub fn new(eject_for: Duration) -> Self {
        Self { replicas: Mutex::default(), turns: Mutex::default(), eject_for, epoch: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
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
        r.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    /// Picks a replica of `service` among `addrs` (not empty), skipping `avoid` (ones that
    /// already failed this request) and ejected ones while any other is left.
    pub fn pick<'a>(&self, service: &str, addrs: &'a [String], avoid: &[String]) -> &'a str {
        let now = self.now_ms();
        let states: Vec<(usize, Arc<Replica>)> = addrs.iter().enumerate().map(|(i, a)| (i, self.replica(a))).collect();
        let fresh: Vec<&(usize, Arc<Replica>)> = states.iter().filter(|(i, _)| !avoid.contains(&addrs[*i])).collect();
        let live: Vec<&(usize, Arc<Replica>)> =
            fresh.iter().copied().filter(|(_, r)| r.ejected_until_ms.load(Ordering::Relaxed) <= now).collect();
        let pool: Vec<&(usize, Arc<Replica>)> = match (live.is_empty(), fresh.is_empty()) {
            (false, _) => live,
            (true, false) => fresh,
            (true, true) => states.iter().collect(),
        };
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            match turns.get_mut(service) {
                Some(t) => {
                    *t = t.wrapping_add(1);
                    *t
                }
                None => *turns.entry(service.to_owned()).or_insert(1),
            }
        };
        let chosen = if pool.len() == 1 {
            pool[0].0
        } else {
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
    fn the_less_busy_replica_wins_and_in_flight_ends_with_the_guard() {
        let b = Balancer::new(Duration::from_secs(5));
        let a = addrs(2);
        let busy: Vec<InFlight> = (0..5).map(|_| b.start(&a[0])).collect();
        for _ in 0..20 {
            assert_eq!(b.pick("shop", &a, &[]), a[1]);
        }
        drop(busy);
        let picked: std::collections::HashSet<&str> = (0..20).map(|_| b.pick("shop", &a, &[])).collect();
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
}
