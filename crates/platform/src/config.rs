//! Typed configuration shared by every service: where data lives, which backends carry
//! storage, events, cache and discovery, and the HTTP limits.
//!
//! Layering (lowest first): built-in defaults < `motorpool.toml` < `MOTORPOOL_...` environment
//! variables < command-line `--set key=value`. Unknown keys are errors everywhere, so a typo
//! never silently falls back to a default. This module never reads the process environment on
//! its own: the binary gathers the layers and passes the result in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Log output settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// An `EnvFilter` directive such as `info` or `motorpool=debug,info`.
    pub level: String,
    /// `json` (one object per line) or `pretty` (for a terminal).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Json }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Limits applied to every HTTP server in the platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Time a request may take before it is answered with 504/503.
    pub request_timeout_ms: u64,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { body_limit_bytes: 256 * 1024, request_timeout_ms: 15_000, shutdown_timeout_ms: 10_000 }
    }
}

impl HttpConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    Sqlite,
    Postgres,
}

/// Where each service keeps its tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Server URL without a database name, e.g. `postgres://user:pass@host:5432`.
    /// Each service gets its own database `<database_prefix>_<service>`, created if missing.
    pub postgres_url: String,
    pub database_prefix: String,
    /// Connections per service pool.
    pub max_connections: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Sqlite,
            postgres_url: "postgres://postgres@127.0.0.1:5432".into(),
            database_prefix: "motorpool".into(),
            max_connections: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventsBackend {
    /// A durable log in a SQLite file under the data dir, shared by the services of one process.
    Embedded,
    /// NATS JetStream: one stream per publishing service, durable pull consumers.
    Nats,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub backend: EventsBackend,
    pub nats_url: String,
    /// Prefix of every subject and stream; lets several deployments share one server.
    pub namespace: String,
    /// How often the outbox relay looks for unpublished rows when nothing woke it.
    pub relay_interval_ms: u64,
    /// How long a delivered event may stay unacknowledged before it is delivered again.
    pub ack_wait_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: EventsBackend::Embedded,
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: "motorpool".into(),
            relay_interval_ms: 500,
            ack_wait_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    pub redis_url: String,
    /// Prefix of every key, so deployments (and tests) can share one Redis.
    pub namespace: String,
    /// Entry limit of the in-memory cache.
    pub memory_capacity: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            backend: CacheBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            namespace: "motorpool".into(),
            memory_capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryBackend {
    /// The in-process table: services of one process find each other's loopback ports.
    Local,
    /// Registrations in Redis with a heartbeat TTL.
    Redis,
    /// Fixed addresses from `discovery.peers` (e.g. Kubernetes Service DNS names).
    Static,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub backend: DiscoveryBackend,
    /// Redis URL for the `redis` backend; defaults to `cache.redis_url` when empty.
    pub redis_url: String,
    /// Seconds a registration lives without a heartbeat.
    pub ttl_secs: u64,
    /// Host other processes use to reach this one, when the listen address is a wildcard.
    pub advertise_host: Option<String>,
    /// For the `static` backend: service name -> list of `host:port`.
    pub peers: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self { backend: DiscoveryBackend::Local, redis_url: String::new(), ttl_secs: 10, advertise_host: None, peers: Default::default() }
    }
}

/// Everything a service needs from the environment besides its own section.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InfraConfig {
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub cache: CacheConfig,
    pub discovery: DiscoveryConfig,
}

impl InfraConfig {
    /// Redis URL used by discovery (its own, or the cache's).
    pub fn discovery_redis_url(&self) -> &str {
        if self.discovery.redis_url.is_empty() { &self.cache.redis_url } else { &self.discovery.redis_url }
    }
}

/// Replace the password of a URL such as `postgres://user:secret@host` with `***`, for
/// printing configuration without leaking secrets.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}://{}:***@{}", &url[..scheme_end], &userinfo[..colon], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A listen address, parsed early so a bad one fails at start.
pub type Listen = SocketAddr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_and_keeps_the_rest() {
        assert_eq!(mask_url_password("postgres://app:s3cret@db:5432"), "postgres://app:***@db:5432");
        assert_eq!(mask_url_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(mask_url_password("redis://:pw@host"), "redis://:***@host");
    }
}
