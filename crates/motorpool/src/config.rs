//! The whole configuration of a Motorpool process: the shared infrastructure sections, each
//! service's listen address, and each service's own section. Layered as
//! defaults < `motorpool.toml` < `MOTORPOOL_...` environment < `--set key=value`, with
//! unknown keys refused at every layer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use motorpool_configurator::ConfiguratorConfig;
use motorpool_factory::FactoryConfig;
use motorpool_gateway::GatewayConfig;
use motorpool_identity::IdentityConfig;
use motorpool_inventory::InventoryConfig;
use motorpool_notifications::NotificationsConfig;
use motorpool_payments::PaymentsConfig;
use motorpool_platform::config::{
    CacheConfig, DiscoveryConfig, EventsConfig, HttpConfig, InfraConfig, LogConfig, StorageConfig, mask_url_password,
};
use motorpool_shop::ShopConfig;
use serde::{Deserialize, Serialize};

/// Every service the binary can run, in start order.
pub const SERVICES: &[&str] = &[
    motorpool_identity::NAME,
    motorpool_payments::NAME,
    motorpool_inventory::NAME,
    motorpool_shop::NAME,
    motorpool_configurator::NAME,
    motorpool_factory::NAME,
    motorpool_notifications::NAME,
    motorpool_gateway::NAME,
];

/// Token issuer and audience, shared by identity (which signs) and every verifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { issuer: "motorpool".into(), audience: "motorpool-api".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where SQLite files and the embedded event log live.
    pub data_dir: PathBuf,
    /// Seed demo accounts and data at start (`up` turns this on).
    pub demo_data: bool,
    /// Async worker threads of the process; 0 means one per CPU core.
    pub worker_threads: usize,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub cache: CacheConfig,
    pub discovery: DiscoveryConfig,
    pub auth: AuthConfig,
    /// Listen address per service; port 0 picks a free port.
    pub listen: BTreeMap<String, SocketAddr>,
    pub gateway: GatewayConfig,
    pub identity: IdentityConfig,
    pub payments: PaymentsConfig,
    pub inventory: InventoryConfig,
    pub shop: ShopConfig,
    pub configurator: ConfiguratorConfig,
    pub factory: FactoryConfig,
    pub notifications: NotificationsConfig,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Default for Config {
    fn default() -> Self {
        let listen = [
            ("gateway", "127.0.0.1:8080"),
            ("identity", "127.0.0.1:8101"),
            ("payments", "127.0.0.1:8113"),
            ("inventory", "127.0.0.1:8111"),
            ("shop", "127.0.0.1:8112"),
            ("notifications", "127.0.0.1:8114"),
            ("configurator", "127.0.0.1:8115"),
            ("factory", "127.0.0.1:8116"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), addr(v)))
        .collect();
        Self {
            data_dir: PathBuf::from("./data"),
            demo_data: false,
            worker_threads: 0,
            log: LogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
            cache: CacheConfig::default(),
            discovery: DiscoveryConfig::default(),
            auth: AuthConfig::default(),
            listen,
            gateway: GatewayConfig::default(),
            identity: IdentityConfig::default(),
            payments: PaymentsConfig::default(),
            inventory: InventoryConfig::default(),
            shop: ShopConfig::default(),
            configurator: ConfiguratorConfig::default(),
            factory: FactoryConfig::default(),
            notifications: NotificationsConfig::default(),
        }
    }
}

impl Config {
    /// Gathers the layers. `file` is `motorpool.toml` unless given; a missing default file
    /// is fine, a missing named file is an error.
    pub fn load(file: Option<&Path>, sets: &[String]) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.exists(), "config file {} does not exist", path.display());
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("motorpool.toml")),
        }
        figment = figment.merge(Env::prefixed("MOTORPOOL_").split("__").filter(|k| {
            // MOTORPOOL_TEST_* belong to the test kit, MOTORPOOL_ADMIN_PASSWORD to `admin create`.
            let key = k.as_str().to_ascii_lowercase();
            !key.starts_with("test_") && key != "admin_password"
        }));
        for set in sets {
            let (key, value) = set.split_once('=').ok_or_else(|| anyhow::anyhow!("--set {set}: expected key=value"))?;
            figment = figment.merge(Toml::string(&set_to_toml(key.trim(), value.trim())));
        }
        let config: Config = figment.extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for name in self.listen.keys() {
            anyhow::ensure!(SERVICES.contains(&name.as_str()), "listen.{name}: no such service (known: {})", SERVICES.join(", "));
        }
        for name in SERVICES {
            anyhow::ensure!(self.listen.contains_key(*name), "listen.{name} is missing");
        }
        anyhow::ensure!(self.worker_threads <= 1024, "worker_threads must be at most 1024 (0 = one per core)");
        anyhow::ensure!(self.http.body_limit_bytes >= 1024, "http.body_limit_bytes must be at least 1024");
        anyhow::ensure!(self.gateway.rate_limit_per_sec > 0.0, "gateway.rate_limit_per_sec must be positive");
        anyhow::ensure!(self.gateway.eject_ms >= 100, "gateway.eject_ms must be at least 100");
        anyhow::ensure!(self.identity.access_ttl_secs >= 60, "identity.access_ttl_secs must be at least 60");
        anyhow::ensure!(
            self.identity.refresh_ttl_secs > self.identity.access_ttl_secs,
            "identity.refresh_ttl_secs must exceed access_ttl_secs"
        );
        self.notifications.validate()?;
        self.inventory.validate()?;
        self.shop.validate()?;
        self.configurator.validate()?;
        self.factory.validate()?;
        Ok(())
    }

    pub fn infra(&self) -> InfraConfig {
        InfraConfig {
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            http: self.http.clone(),
            storage: self.storage.clone(),
            events: self.events.clone(),
            cache: self.cache.clone(),
            discovery: self.discovery.clone(),
        }
    }

    /// The configuration as TOML with every secret masked.
    pub fn to_masked_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.storage.postgres_url = mask_url_password(&shown.storage.postgres_url);
        shown.events.nats_url = mask_url_password(&shown.events.nats_url);
        shown.cache.redis_url = mask_url_password(&shown.cache.redis_url);
        shown.discovery.redis_url = mask_url_password(&shown.discovery.redis_url);
        if shown.identity.bootstrap_admin_password.is_some() {
            shown.identity.bootstrap_admin_password = Some("***".into());
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

/// `--set storage.backend=postgres` as a TOML document. Values that are not valid TOML on
/// their own (bare words) are taken as strings.
fn set_to_toml(key: &str, value: &str) -> String {
    let parses = format!("v = {value}").parse::<toml::Table>().is_ok();
    let value = if parses { value.to_owned() } else { format!("{value:?}") };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    if parts.is_empty() { format!("{last} = {value}") } else { format!("[{}]\n{last} = {value}", parts.join(".")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_flags_override_and_unknown_keys_fail() {
        let cfg =
            Config::load(Some(Path::new("/dev/null")), &["storage.backend=postgres".into(), "gateway.rate_limit_burst=7".into()]).unwrap();
        assert_eq!(cfg.storage.backend, motorpool_platform::config::StorageBackend::Postgres);
        assert_eq!(cfg.gateway.rate_limit_burst, 7);
        let err = Config::load(Some(Path::new("/dev/null")), &["storage.bakend=postgres".into()]).unwrap_err();
        assert!(err.to_string().contains("bakend"), "{err}");
        assert!(Config::load(Some(Path::new("/dev/null")), &["listen.nosuch=127.0.0.1:1".into()]).is_err());
    }

    #[test]
    fn secrets_are_masked() {
        let mut cfg = Config::default();
        cfg.storage.postgres_url = "postgres://app:hunter2@db:5432".into();
        cfg.identity.bootstrap_admin_password = Some("very-secret-pw".into());
        let text = cfg.to_masked_toml().unwrap();
        assert!(!text.contains("hunter2") && !text.contains("very-secret-pw"), "{text}");
        assert!(text.contains("postgres://app:***@db:5432"));
    }
}
