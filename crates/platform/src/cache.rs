//! The cache: typed keys under one namespace, kept in memory (embedded) or in Redis
//! (shared by every replica). It also keeps the counters that need to be shared: failure
//! counts and token buckets for rate limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;

use crate::config::{CacheBackend, CacheConfig};

#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub struct CacheError(pub String);

/// The outcome of taking a token from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Refused; a token will be available after this many milliseconds.
    Limited {
        retry_after_ms: u64,
    },
}

#[async_trait]
pub trait CacheStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Increments a counter, creating it with `ttl` when absent; returns the new value.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError>;
    /// The current value of a counter made by `incr` (0 when absent or expired).
    async fn counter(&self, key: &str) -> Result<i64, CacheError>;
    /// Takes one token from the bucket `key` that refills at `rate` tokens per second up to
    /// `burst`.
    async fn take_token(&self, key: &str, rate: f64, burst: u32) -> Result<RateDecision, CacheError>;
    async fn ping(&self) -> Result<(), CacheError>;
}

/// The cache handle services use. Keys are prefixed with the namespace.
#[derive(Clone)]
pub struct Cache {
    store: Arc<dyn CacheStore>,
    namespace: Arc<str>,
}

impl Cache {
    pub async fn connect(cfg: &CacheConfig) -> Result<Self, CacheError> {
        let store: Arc<dyn CacheStore> = match cfg.backend {
            CacheBackend::Memory => Arc::new(MemoryCache::new(cfg.memory_capacity)),
            CacheBackend::Redis => Arc::new(RedisCache::connect(&cfg.redis_url).await?),
        };
        Ok(Self { store, namespace: cfg.namespace.as_str().into() })
    }

    pub fn memory() -> Self {
        Self { store: Arc::new(MemoryCache::new(10_000)), namespace: "motorpool".into() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{}", self.namespace, key)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.store.get(&self.key(key)).await
    }
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        self.store.set(&self.key(key), value, ttl).await
    }
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.store.delete(&self.key(key)).await
    }
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        self.store.incr(&self.key(key), ttl).await
    }
    pub async fn counter(&self, key: &str) -> Result<i64, CacheError> {
        self.store.counter(&self.key(key)).await
    }
    pub async fn take_token(&self, key: &str, rate: f64, burst: u32) -> Result<RateDecision, CacheError> {
        self.store.take_token(&self.key(key), rate, burst).await
    }
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.store.ping().await
    }
}

/// Deletes every key of a namespace in Redis (test cleanup; never used by services).
pub async fn clear_redis_namespace(url: &str, namespace: &str) -> Result<(), CacheError> {
    let client = redis::Client::open(url).map_err(rerr)?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(rerr)?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(rerr)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.map_err(rerr)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[derive(Clone)]
struct MemEntry {
    value: Arc<[u8]>,
    ttl: Option<Duration>,
}

struct EntryTtl;

impl Expiry<String, MemEntry> for EntryTtl {
    fn expire_after_create(&self, _k: &String, v: &MemEntry, _now: Instant) -> Option<Duration> {
        v.ttl
    }
    fn expire_after_update(&self, _k: &String, v: &MemEntry, _now: Instant, _left: Option<Duration>) -> Option<Duration> {
        v.ttl
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The embedded cache: moka with per-entry time to live.
pub struct MemoryCache {
    entries: moka::future::Cache<String, MemEntry>,
    counters: moka::future::Cache<String, Arc<std::sync::Mutex<(i64, Instant)>>>,
    buckets: moka::future::Cache<String, Arc<std::sync::Mutex<Bucket>>>,
}

impl MemoryCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder().max_capacity(capacity).expire_after(EntryTtl).build(),
            counters: moka::future::Cache::builder().max_capacity(capacity).time_to_idle(Duration::from_secs(3600)).build(),
            buckets: moka::future::Cache::builder().max_capacity(capacity).time_to_idle(Duration::from_secs(600)).build(),
        }
    }
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.entries.get(key).await.map(|e| e.value.to_vec()))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        self.entries.insert(key.to_owned(), MemEntry { value: value.into(), ttl }).await;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        self.counters.invalidate(key).await;
        Ok(())
    }
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let now = Instant::now();
        let cell = self.counters.get_with(key.to_owned(), async { Arc::new(std::sync::Mutex::new((0, now + ttl))) }).await;
        let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
        if c.1 <= now {
            *c = (0, now + ttl);
        }
        c.0 += 1;
        Ok(c.0)
    }
    async fn counter(&self, key: &str) -> Result<i64, CacheError> {
        let Some(cell) = self.counters.get(key).await else { return Ok(0) };
        let c = cell.lock().unwrap_or_else(|p| p.into_inner());
        Ok(if c.1 <= Instant::now() { 0 } else { c.0 })
    }
    async fn take_token(&self, key: &str, rate: f64, burst: u32) -> Result<RateDecision, CacheError> {
        let now = Instant::now();
        let burst = f64::from(burst.max(1));
        let cell =
            self.buckets.get_with(key.to_owned(), async { Arc::new(std::sync::Mutex::new(Bucket { tokens: burst, at: now })) }).await;
        let mut b = cell.lock().unwrap_or_else(|p| p.into_inner());
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(RateDecision::Allowed)
        } else {
            Ok(RateDecision::Limited { retry_after_ms: (((1.0 - b.tokens) / rate) * 1000.0).ceil() as u64 })
        }
    }
    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

/// Redis: counters with `INCR` + `PEXPIRE`, token buckets as a Lua script that uses the
/// server's clock, so every gateway replica shares one bucket per client.
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    incr: redis::Script,
    bucket: redis::Script,
    outage: Outage,
}

fn rerr(e: redis::RedisError) -> CacheError {
    CacheError(e.to_string())
}

/// How long a Redis command may take, and a connection attempt.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Redis connections that give up quickly: one reconnection attempt per command, not the
/// client's default six with growing pauses (about 6 s, which a command waited out whole
/// during an outage); [`Outage`] does the backing off instead.
pub(crate) fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100))
}
/// After Redis failed a command, how long other commands fail at once (one probe per period).
const OUTAGE_BACKOFF_MS: u64 = 1_000;

/// Fails Redis commands fast while Redis is unreachable, so an outage costs callers an error
/// (which they treat as a miss, or let the request through) instead of a timeout each: after
/// a connection failure or a timeout, commands are refused at once for a second, then one
/// probe command goes to Redis and its outcome ends the outage or extends it.
#[derive(Default)]
pub(crate) struct Outage {
    /// Until when commands are refused (ms since `EPOCH`; 0: Redis is up).
    until_ms: std::sync::atomic::AtomicU64,
}

static EPOCH: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);

fn epoch_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Outage {
    pub(crate) async fn guard<T>(&self, command: impl Future<Output = Result<T, redis::RedisError>>) -> Result<T, CacheError> {
        use std::sync::atomic::Ordering;
        let until = self.until_ms.load(Ordering::Acquire);
        if until != 0 {
            let now = epoch_ms();
            // Refused while the back-off runs; after it, only the caller that moves it on probes.
            if now < until || self.until_ms.compare_exchange(until, now + OUTAGE_BACKOFF_MS, Ordering::AcqRel, Ordering::Acquire).is_err() {
                return Err(CacheError("redis is unavailable (backing off)".into()));
            }
        }
        match command.await {
            Ok(v) => {
                if until != 0 {
                    self.until_ms.store(0, Ordering::Release);
                    tracing::info!("redis is reachable again");
                }
                Ok(v)
            }
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() => {
                if self.until_ms.swap(epoch_ms() + OUTAGE_BACKOFF_MS, Ordering::AcqRel) == 0 {
                    tracing::warn!(error = %e, "redis is unreachable; failing its commands fast");
                }
                Err(rerr(e))
            }
            Err(e) => Err(rerr(e)),
        }
    }
}

const INCR_SCRIPT: &str = r"
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v";

const BUCKET_SCRIPT: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
local retry = 0
if tokens >= 1 then tokens = tokens - 1 else retry = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return retry";

impl RedisCache {
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(rerr)?;
        let conn = client.get_connection_manager_with_config(redis_config()).await.map_err(rerr)?;
        Ok(Self { conn, incr: redis::Script::new(INCR_SCRIPT), bucket: redis::Script::new(BUCKET_SCRIPT), outage: Outage::default() })
    }
}

#[async_trait]
impl CacheStore for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.outage.guard(redis::cmd("GET").arg(key).query_async(&mut self.conn.clone())).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.outage.guard(cmd.query_async::<()>(&mut self.conn.clone())).await
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.outage.guard(redis::cmd("DEL").arg(key).query_async::<()>(&mut self.conn.clone())).await
    }
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        self.outage.guard(self.incr.key(key).arg(ttl.as_millis() as u64).invoke_async(&mut self.conn.clone())).await
    }
    async fn counter(&self, key: &str) -> Result<i64, CacheError> {
        let v: Option<i64> = self.outage.guard(redis::cmd("GET").arg(key).query_async(&mut self.conn.clone())).await?;
        Ok(v.unwrap_or(0))
    }
    async fn take_token(&self, key: &str, rate: f64, burst: u32) -> Result<RateDecision, CacheError> {
        let retry: u64 = self.outage.guard(self.bucket.key(key).arg(rate).arg(burst.max(1)).invoke_async(&mut self.conn.clone())).await?;
        Ok(if retry == 0 { RateDecision::Allowed } else { RateDecision::Limited { retry_after_ms: retry } })
    }
    async fn ping(&self) -> Result<(), CacheError> {
        // Always asks Redis: readiness must see it come back.
        redis::cmd("PING").query_async::<()>(&mut self.conn.clone()).await.map_err(rerr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_bucket_refuses_after_burst_and_counts_expire() {
        let cache = MemoryCache::new(100);
        for _ in 0..3 {
            assert_eq!(cache.take_token("k", 1.0, 3).await.unwrap(), RateDecision::Allowed);
        }
        assert!(
            matches!(cache.take_token("k", 1.0, 3).await.unwrap(), RateDecision::Limited { retry_after_ms } if retry_after_ms > 0 && retry_after_ms <= 1000)
        );
        assert_eq!(cache.incr("c", Duration::from_millis(30)).await.unwrap(), 1);
        assert_eq!(cache.incr("c", Duration::from_millis(30)).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.incr("c", Duration::from_millis(30)).await.unwrap(), 1);
    }
}
