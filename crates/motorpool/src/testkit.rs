//! Starting Motorpool inside tests: the whole platform or some services, on random loopback
//! ports, with a fresh SQLite data dir or fresh PostgreSQL databases, NATS streams and Redis
//! keys per test. The backend comes from `MOTORPOOL_TEST_BACKEND`: unset or `embedded` for
//! the defaults, `infra` for PostgreSQL + NATS JetStream + Redis (addresses overridable with
//! `MOTORPOOL_TEST_POSTGRES_URL`, `MOTORPOOL_TEST_NATS_URL`, `MOTORPOOL_TEST_REDIS_URL`).
//! With `infra`, a missing server makes the test fail, never skip.

use std::net::SocketAddr;
use std::path::PathBuf;

use motorpool_platform::clock::Clock;
use motorpool_platform::config::{CacheBackend, DiscoveryBackend, EventsBackend, StorageBackend};
use tokio_util::sync::CancellationToken;

use crate::{Config, Platform, SERVICES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Infra,
}

impl Backend {
    pub fn from_env() -> Self {
        match std::env::var("MOTORPOOL_TEST_BACKEND").as_deref() {
            Ok("infra") | Ok("postgres") => Backend::Infra,
            Ok("embedded") | Ok("") | Err(_) => Backend::Embedded,
            Ok(other) => panic!("MOTORPOOL_TEST_BACKEND={other}: expected embedded or infra"),
        }
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// A configuration for one test: random ports, its own data dir and namespaces.
pub fn test_config(backend: Backend) -> Config {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let short = &id[id.len() - 12..];
    let mut cfg = Config { data_dir: std::env::temp_dir().join(format!("motorpool-test-{id}")), ..Config::default() };
    cfg.log.level = env_or("MOTORPOOL_TEST_LOG", "warn");
    for name in SERVICES {
        cfg.listen.insert((*name).to_owned(), SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    // Cheap hashing keeps tests fast; production keeps the OWASP defaults.
    cfg.identity.argon2_memory_kib = 1024;
    cfg.identity.argon2_iterations = 1;
    cfg.gateway.rate_limit_per_sec = 10_000.0;
    cfg.gateway.rate_limit_burst = 10_000;
    cfg.events.relay_interval_ms = 50;
    // Webhook receivers in tests listen on loopback; email is turned on by the tests that run
    // an SMTP sink, so the others do not queue mail for a server that is not there.
    cfg.notifications.webhooks_allow_private = true;
    cfg.notifications.delivery_poll_ms = 50;
    cfg.notifications.email_enabled = false;
    if backend == Backend::Infra {
        cfg.storage.backend = StorageBackend::Postgres;
        cfg.storage.postgres_url = env_or("MOTORPOOL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432");
        cfg.storage.database_prefix = format!("mpt_{short}");
        cfg.storage.max_connections = 8;
        cfg.events.backend = EventsBackend::Nats;
        cfg.events.nats_url = env_or("MOTORPOOL_TEST_NATS_URL", "nats://127.0.0.1:4222");
        cfg.events.namespace = format!("mpt{short}");
        cfg.cache.backend = CacheBackend::Redis;
        cfg.cache.redis_url = env_or("MOTORPOOL_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        cfg.cache.namespace = format!("mpt{short}");
        cfg.discovery.backend = DiscoveryBackend::Redis;
    }
    cfg
}

/// A platform started for a test.
pub struct TestPlatform {
    pub cfg: Config,
    pub clock: Clock,
    platform: Option<Platform>,
}

impl TestPlatform {
    /// Starts `services` (all when empty) with `cfg`.
    pub async fn start(cfg: Config, services: &[&str], clock: Clock) -> anyhow::Result<Self> {
        let names: Vec<String> = if services.is_empty() {
            SERVICES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            services.iter().map(|s| (*s).to_owned()).collect()
        };
        let platform = crate::start(&cfg, &names, clock.clone(), CancellationToken::new()).await?;
        Ok(Self { cfg, clock, platform: Some(platform) })
    }

    pub fn addr(&self, service: &str) -> SocketAddr {
        self.platform.as_ref().and_then(|p| p.addr(service)).unwrap_or_else(|| panic!("{service} is not running"))
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://{}", self.addr(service))
    }

    /// Stops the services (graceful drain) but keeps the data, so a test can start again
    /// with the same configuration.
    pub async fn stop(&mut self) {
        if let Some(p) = self.platform.take() {
            p.stop().await;
        }
    }

    /// Stops and removes everything the test created.
    pub async fn cleanup(mut self) {
        self.stop().await;
        cleanup_config(&self.cfg).await;
    }
}

/// Removes the data dir, databases, streams and keys of a test configuration.
pub async fn cleanup_config(cfg: &Config) {
    let _ = std::fs::remove_dir_all(&cfg.data_dir);
    if cfg.storage.backend == StorageBackend::Postgres {
        for name in SERVICES {
            let db = format!("{}_{}", cfg.storage.database_prefix, name);
            let _ = motorpool_platform::db::drop_postgres_database(&cfg.storage.postgres_url, &db).await;
        }
    }
    if cfg.events.backend == EventsBackend::Nats {
        let _ = motorpool_platform::events::delete_namespace_streams(&cfg.events.nats_url, &cfg.events.namespace).await;
    }
    if cfg.cache.backend == CacheBackend::Redis {
        let _ = motorpool_platform::cache::clear_redis_namespace(&cfg.cache.redis_url, &cfg.cache.namespace).await;
    }
}

/// The path of the SQLite file of a service (embedded backend).
pub fn sqlite_path(cfg: &Config, service: &str) -> PathBuf {
    cfg.data_dir.join(format!("{service}.sqlite"))
}
