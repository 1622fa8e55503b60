//! The configurator's configuration section, `[configurator]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConfiguratorConfig {
    /// How long an idle live configuration session is kept in the cache, in seconds.
    pub session_ttl_secs: u64,
    /// How long the popular configurations are served from the cache before they are counted
    /// again, in seconds (a new save drops them at once).
    pub popular_ttl_secs: u64,
    /// The model a configuration without one gets when several would fit.
    pub default_model: String,
    /// How often a replica looks for a catalog version another replica published, in ms.
    pub catalog_poll_ms: u64,
}

impl Default for ConfiguratorConfig {
    fn default() -> Self {
        Self { session_ttl_secs: 3_600, popular_ttl_secs: 60, default_model: "aurora".into(), catalog_poll_ms: 2_000 }
    }
}

impl ConfiguratorConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.session_ttl_secs >= 10, "configurator.session_ttl_secs must be at least 10");
        anyhow::ensure!(self.popular_ttl_secs >= 1, "configurator.popular_ttl_secs must be at least 1");
        anyhow::ensure!(!self.default_model.is_empty(), "configurator.default_model must not be empty");
        anyhow::ensure!(self.catalog_poll_ms >= 100, "configurator.catalog_poll_ms must be at least 100");
        Ok(())
    }
}
