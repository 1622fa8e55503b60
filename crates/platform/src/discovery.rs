//! Discovery: where a service's replicas listen. In one process it is a shared table; across
//! processes, registrations in Redis that live only while their owner keeps heartbeating; or
//! fixed addresses from configuration (for example Kubernetes Service DNS names).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::{DiscoveryBackend, InfraConfig};

#[derive(Debug, thiserror::Error)]
#[error("discovery: {0}")]
pub struct DiscoveryError(pub String);

#[async_trait]
pub trait Registry: Send + Sync {
    /// Announces (or re-announces) `instance` of `service` at `addr` for `ttl`.
    async fn register(&self, service: &str, instance: &str, addr: &str, ttl: Duration) -> Result<(), DiscoveryError>;
    async fn deregister(&self, service: &str, instance: &str, addr: &str) -> Result<(), DiscoveryError>;
    /// The live addresses of `service`.
    async fn resolve(&self, service: &str) -> Result<Vec<String>, DiscoveryError>;
    async fn ping(&self) -> Result<(), DiscoveryError>;
    /// How long others may still pick an instance after it deregistered (they resolve from a
    /// cache).
    fn propagation_delay(&self) -> Duration {
        Duration::ZERO
    }
}

/// How soon a heartbeat that failed is tried again.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(250);

/// The discovery handle; cloning shares it.
#[derive(Clone)]
pub struct Discovery {
    registry: Arc<dyn Registry>,
    ttl: Duration,
}

impl Discovery {
    pub async fn connect(infra: &InfraConfig) -> Result<Self, DiscoveryError> {
        let ttl = Duration::from_secs(infra.discovery.ttl_secs.max(1));
        let registry: Arc<dyn Registry> = match infra.discovery.backend {
            DiscoveryBackend::Local => Arc::new(LocalRegistry::default()),
            DiscoveryBackend::Redis => Arc::new(RedisRegistry::connect(infra.discovery_redis_url(), &infra.cache.namespace, ttl).await?),
            DiscoveryBackend::Static => Arc::new(StaticRegistry(infra.discovery.peers.clone())),
        };
        Ok(Self { registry, ttl })
    }

    pub fn local() -> Self {
        Self { registry: Arc::new(LocalRegistry::default()), ttl: Duration::from_secs(10) }
    }

    pub async fn resolve(&self, service: &str) -> Result<Vec<String>, DiscoveryError> {
        self.registry.resolve(service).await
    }

    pub async fn ping(&self) -> Result<(), DiscoveryError> {
        self.registry.ping().await
    }

    /// How long others may still route to an instance after it deregistered: a graceful
    /// shutdown keeps serving this long before it closes its listener, so a request routed
    /// meanwhile is neither refused nor reset in the listen queue.
    pub fn propagation_delay(&self) -> Duration {
        self.registry.propagation_delay()
    }

    /// Registers an instance and keeps it registered until `shutdown`, then removes it.
    /// Returns once the first registration is stored.
    pub async fn announce(&self, service: &str, addr: &str, shutdown: CancellationToken) -> Result<Registration, DiscoveryError> {
        let instance = uuid::Uuid::now_v7().simple().to_string();
        self.registry.register(service, &instance, addr, self.ttl).await?;
        let registration = Registration {
            registry: self.registry.clone(),
            service: service.to_owned(),
            instance: instance.clone(),
            addr: addr.to_owned(),
        };
        let beat = registration.clone();
        let ttl = self.ttl;
        tokio::spawn(async move {
            let period = ttl / 3;
            // After a failed heartbeat the next comes sooner, so an instance is registered
            // again soon after the registry is back rather than a whole period later.
            let retry = period.min(HEARTBEAT_RETRY);
            let mut wait = period;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = match beat.registry.register(&beat.service, &beat.instance, &beat.addr, ttl).await {
                    Ok(()) => period,
                    Err(e) => {
                        tracing::warn!(service = %beat.service, error = %e, "discovery heartbeat failed");
                        retry
                    }
                };
            }
        });
        Ok(registration)
    }
}

/// One announced instance; [`Registration::withdraw`] removes it (graceful shutdown).
#[derive(Clone)]
pub struct Registration {
    registry: Arc<dyn Registry>,
    service: String,
    instance: String,
    addr: String,
}

impl Registration {
    pub async fn withdraw(&self) {
        if let Err(e) = self.registry.deregister(&self.service, &self.instance, &self.addr).await {
            tracing::warn!(service = %self.service, error = %e, "could not deregister");
        }
    }
}

/// The in-process table.
#[derive(Default)]
pub struct LocalRegistry {
    table: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

#[async_trait]
impl Registry for LocalRegistry {
    async fn register(&self, service: &str, instance: &str, addr: &str, _ttl: Duration) -> Result<(), DiscoveryError> {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        t.entry(service.to_owned()).or_default().insert(instance.to_owned(), addr.to_owned());
        Ok(())
    }
    async fn deregister(&self, service: &str, instance: &str, _addr: &str) -> Result<(), DiscoveryError> {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(instances) = t.get_mut(service) {
            instances.remove(instance);
        }
        Ok(())
    }
    async fn resolve(&self, service: &str) -> Result<Vec<String>, DiscoveryError> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        Ok(t.get(service).map(|i| i.values().cloned().collect()).unwrap_or_default())
    }
    async fn ping(&self) -> Result<(), DiscoveryError> {
        Ok(())
    }
}

/// Fixed addresses.
pub struct StaticRegistry(BTreeMap<String, Vec<String>>);

#[async_trait]
impl Registry for StaticRegistry {
    async fn register(&self, _: &str, _: &str, _: &str, _: Duration) -> Result<(), DiscoveryError> {
        Ok(())
    }
    async fn deregister(&self, _: &str, _: &str, _: &str) -> Result<(), DiscoveryError> {
        Ok(())
    }
    async fn resolve(&self, service: &str) -> Result<Vec<String>, DiscoveryError> {
        Ok(self.0.get(service).cloned().unwrap_or_default())
    }
    async fn ping(&self) -> Result<(), DiscoveryError> {
        Ok(())
    }
}

/// Redis registrations: one sorted set per service, member `<instance>|<addr>`, score the
/// expiry time in ms. A dead process's member simply stops being refreshed and falls out of
/// the live range; resolutions are cached for a moment to keep Redis off the request path.
pub struct RedisRegistry {
    conn: redis::aio::ConnectionManager,
    namespace: String,
    cached: RwLock<HashMap<String, (Instant, Vec<String>)>>,
    outage: crate::cache::Outage,
    stale_for: Duration,
}

const RESOLVE_CACHE: Duration = Duration::from_millis(500);

fn derr(e: redis::RedisError) -> DiscoveryError {
    DiscoveryError(e.to_string())
}

fn now_ms() -> i64 {
    crate::clock::to_millis(time::OffsetDateTime::now_utc())
}

impl RedisRegistry {
    /// `ttl`: a registration's lifetime, also how long addresses last seen stand while Redis
    /// answers none (it came back empty).
    pub async fn connect(url: &str, namespace: &str, ttl: Duration) -> Result<Self, DiscoveryError> {
        let client = redis::Client::open(url).map_err(derr)?;
        let conn = client.get_connection_manager_with_config(crate::cache::redis_config()).await.map_err(derr)?;
        Ok(Self { conn, namespace: namespace.to_owned(), cached: RwLock::default(), outage: Default::default(), stale_for: ttl })
    }

    fn key(&self, service: &str) -> String {
        format!("{}:registry:{}", self.namespace, service)
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn register(&self, service: &str, instance: &str, addr: &str, ttl: Duration) -> Result<(), DiscoveryError> {
        let expires = now_ms() + ttl.as_millis() as i64;
        redis::cmd("ZADD")
            .arg(self.key(service))
            .arg(expires)
            .arg(format!("{instance}|{addr}"))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(derr)?;
        self.cached.write().unwrap_or_else(|p| p.into_inner()).remove(service);
        Ok(())
    }

    async fn deregister(&self, service: &str, instance: &str, addr: &str) -> Result<(), DiscoveryError> {
        redis::cmd("ZREM")
            .arg(self.key(service))
            .arg(format!("{instance}|{addr}"))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(derr)?;
        self.cached.write().unwrap_or_else(|p| p.into_inner()).remove(service);
        Ok(())
    }

    fn propagation_delay(&self) -> Duration {
        // A resolution cached just before the deregistration, and a margin.
        RESOLVE_CACHE * 2
    }

    async fn resolve(&self, service: &str) -> Result<Vec<String>, DiscoveryError> {
        if let Some((at, addrs)) = self.cached.read().unwrap_or_else(|p| p.into_inner()).get(service)
            && at.elapsed() < RESOLVE_CACHE
        {
            return Ok(addrs.clone());
        }
        let now = now_ms();
        let key = self.key(service);
        let mut conn = self.conn.clone();
        let members = self.outage.guard(async {
            // Expired members are pruned on the way, so a crashed process leaves no trace.
            redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now).query_async::<()>(&mut conn).await?;
            redis::cmd("ZRANGEBYSCORE").arg(&key).arg(now).arg("+inf").query_async::<Vec<String>>(&mut conn).await
        });
        let members = match members.await {
            Ok(m) => m,
            // Redis is away: the last addresses seen are the best guess (the balancer's health
            // checks and ejection deal with any that died meanwhile). They count as seen now:
            // the replicas could not heartbeat either, so their grace once Redis comes back
            // empty runs from the end of the outage, however long it lasted.
            Err(e) => match self.cached.write().unwrap_or_else(|p| p.into_inner()).get_mut(service) {
                Some((at, addrs)) => {
                    *at = Instant::now();
                    return Ok(addrs.clone());
                }
                None => return Err(DiscoveryError(e.to_string())),
            },
        };
        let mut addrs: Vec<String> = members.iter().filter_map(|m| m.split_once('|').map(|(_, a)| a.to_owned())).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            // Redis came back empty (it keeps nothing on disk) and the replicas have not
            // heartbeated since: the addresses seen within a registration's lifetime stand
            // until they do. "None yet" is not cached: the first replica of a peer that is
            // starting is used as soon as it registers.
            if let Some((at, seen)) = self.cached.read().unwrap_or_else(|p| p.into_inner()).get(service)
                && at.elapsed() < self.stale_for
            {
                return Ok(seen.clone());
            }
            return Ok(addrs);
        }
        self.cached.write().unwrap_or_else(|p| p.into_inner()).insert(service.to_owned(), (Instant::now(), addrs.clone()));
        Ok(addrs)
    }

    async fn ping(&self) -> Result<(), DiscoveryError> {
        redis::cmd("PING").query_async::<()>(&mut self.conn.clone()).await.map_err(derr)
    }
}
