//! The shop's configuration section, `[shop]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConfig {
    /// How long inventory keeps a cart line's units, in seconds, renewed by every change.
    pub cart_hold_ttl_secs: i64,
    /// How long a checkout's holds are extended for while it charges and commits, in seconds.
    pub checkout_hold_ttl_secs: i64,
    /// The catalog's currency.
    pub currency: String,
    /// Units of each demo part put in stock when demo data is seeded.
    pub demo_stock_per_part: i64,
    /// How often unfinished work (hold releases, interrupted checkouts) is retried, in ms.
    pub retry_interval_ms: u64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            cart_hold_ttl_secs: 1_800,
            checkout_hold_ttl_secs: 600,
            currency: "EUR".into(),
            demo_stock_per_part: 25,
            retry_interval_ms: 1_000,
        }
    }
}

impl ShopConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.cart_hold_ttl_secs >= 1, "shop.cart_hold_ttl_secs must be at least 1");
        anyhow::ensure!(self.checkout_hold_ttl_secs >= 30, "shop.checkout_hold_ttl_secs must be at least 30");
        anyhow::ensure!(
            motorpool_platform::money::Currency::parse(&self.currency).is_ok(),
            "shop.currency: unknown currency {}",
            self.currency
        );
        anyhow::ensure!(self.demo_stock_per_part >= 0, "shop.demo_stock_per_part must not be negative");
        anyhow::ensure!(self.retry_interval_ms >= 10, "shop.retry_interval_ms must be at least 10");
        Ok(())
    }
}
