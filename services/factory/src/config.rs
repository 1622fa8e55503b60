//! The factory's configuration section, `[factory]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FactoryConfig {
    /// The plant orders are built in.
    pub plant: String,
    /// Cars the plant starts per day.
    pub daily_capacity: i64,
    /// Days from an order to the earliest production day.
    pub lead_days: i64,
    /// Share of the price taken as a deposit when the order is placed, in percent.
    pub deposit_percent: i64,
    /// How long inventory holds a new order's parts before the order confirms them, in
    /// seconds (a crash between the hold and its record leaves them this long at most).
    pub placing_hold_ttl_secs: i64,
    /// How often the scheduler moves orders on and retries waiting ones, in ms.
    pub tick_ms: u64,
    /// How long a placing saga that stopped (a crash, an unavailable peer) is left before
    /// recovery resumes it, in ms.
    pub resume_after_ms: i64,
    /// Units of each bill-of-materials part put in stock when demo data is seeded.
    pub demo_stock_per_part: i64,
    /// Fault injection, for tests of recovery: the saga stops right after each named step's
    /// effect and before recording it, once per process, as if the process died there. Steps:
    /// `hold`, `deposit`, `book` (inside the booking transaction), `parts_hold` (a waiting
    /// order's hold), `commit` (production start), `compensate`. Empty in production.
    pub crash_after: Vec<String>,
}

/// The steps `factory.crash_after` may name.
pub const CRASH_POINTS: &[&str] = &["hold", "deposit", "book", "parts_hold", "commit", "compensate"];

impl Default for FactoryConfig {
    fn default() -> Self {
        Self {
            plant: "leipzig".into(),
            daily_capacity: 4,
            lead_days: 7,
            deposit_percent: 10,
            placing_hold_ttl_secs: 600,
            tick_ms: 1_000,
            resume_after_ms: 20_000,
            demo_stock_per_part: 50,
            crash_after: Vec::new(),
        }
    }
}

impl FactoryConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.plant.is_empty(), "factory.plant must not be empty");
        anyhow::ensure!(self.daily_capacity >= 1, "factory.daily_capacity must be at least 1");
        anyhow::ensure!((0..=365).contains(&self.lead_days), "factory.lead_days must be 0 to 365");
        anyhow::ensure!((0..=100).contains(&self.deposit_percent), "factory.deposit_percent must be 0 to 100");
        anyhow::ensure!(self.placing_hold_ttl_secs >= 30, "factory.placing_hold_ttl_secs must be at least 30");
        anyhow::ensure!(self.tick_ms >= 10, "factory.tick_ms must be at least 10");
        anyhow::ensure!(self.resume_after_ms >= 100, "factory.resume_after_ms must be at least 100");
        anyhow::ensure!(self.demo_stock_per_part >= 0, "factory.demo_stock_per_part must not be negative");
        if let Some(bad) = self.crash_after.iter().find(|p| !CRASH_POINTS.contains(&p.as_str())) {
            anyhow::bail!("factory.crash_after: no step {bad:?}; the steps are {}", CRASH_POINTS.join(", "));
        }
        Ok(())
    }
}
