//! Inventory's configuration section, `[inventory]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Lifetime of a hold when the caller does not say, in seconds.
    pub hold_ttl_secs: u64,
    /// The longest lifetime a caller may ask for, in seconds.
    pub max_hold_ttl_secs: u64,
    /// Most units one owner (a cart, an order) may hold at once, over all SKUs.
    pub owner_cap_units: i64,
    /// How often the sweeper deletes expired holds, in milliseconds.
    pub sweep_interval_ms: u64,
    /// A `inventory.stock.low.v1` event is published when available stock falls below this.
    pub low_stock_threshold: i64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { hold_ttl_secs: 900, max_hold_ttl_secs: 86_400, owner_cap_units: 100, sweep_interval_ms: 1_000, low_stock_threshold: 5 }
    }
}

impl InventoryConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.hold_ttl_secs >= 1, "inventory.hold_ttl_secs must be at least 1");
        anyhow::ensure!(self.max_hold_ttl_secs >= self.hold_ttl_secs, "inventory.max_hold_ttl_secs must be at least hold_ttl_secs");
        anyhow::ensure!(self.owner_cap_units >= 1, "inventory.owner_cap_units must be at least 1");
        anyhow::ensure!(self.sweep_interval_ms >= 10, "inventory.sweep_interval_ms must be at least 10");
        anyhow::ensure!(self.low_stock_threshold >= 0, "inventory.low_stock_threshold must not be negative");
        Ok(())
    }
}
