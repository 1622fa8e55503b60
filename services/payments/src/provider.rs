//! The payment provider that brings money in from cards. The built-in one simulates a card
//! processor — with configurable declines and delays — so every failure path can be tested;
//! a real processor plugs in behind the same trait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use motorpool_platform::money::Money;

use crate::domain::CardNumber;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProviderOutcome {
    Approved { provider_ref: String },
    Declined { reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("payment provider unavailable: {0}")]
pub struct ProviderUnavailable(pub String);

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges a card. Calls with the same `idempotency_key` return the first outcome and
    /// move money once, as real processors guarantee.
    async fn charge_card(&self, idempotency_key: &str, card: &CardNumber, amount: Money) -> Result<ProviderOutcome, ProviderUnavailable>;
}

/// Test cards (the well-known numbers card processors publish): `4000000000000002` is
/// declined, `4000000000009995` is declined for insufficient funds, `4000000000000119`
/// makes the processor unavailable; anything else valid is approved.
pub struct SimulatedCardProcessor {
    delay: Duration,
    declined: Vec<String>,
    seen: Mutex<HashMap<String, ProviderOutcome>>,
}

impl SimulatedCardProcessor {
    pub fn new(delay: Duration, extra_declined: &[String]) -> Self {
        let mut declined = vec!["4000000000000002".to_owned(), "4000000000009995".to_owned()];
        declined.extend(extra_declined.iter().cloned());
        Self { delay, declined, seen: Mutex::default() }
    }
}

#[async_trait]
impl PaymentProvider for SimulatedCardProcessor {
    async fn charge_card(&self, idempotency_key: &str, card: &CardNumber, _amount: Money) -> Result<ProviderOutcome, ProviderUnavailable> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if card.digits() == "4000000000000119" {
            return Err(ProviderUnavailable("processing error".into()));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = seen
            .entry(idempotency_key.to_owned())
            .or_insert_with(|| {
                if self.declined.iter().any(|d| d == card.digits()) {
                    let reason = if card.digits() == "4000000000009995" { "insufficient_funds" } else { "card_declined" };
                    ProviderOutcome::Declined { reason: reason.into() }
                } else {
                    ProviderOutcome::Approved { provider_ref: format!("sim_{}", uuid::Uuid::now_v7().simple()) }
                }
            })
            .clone();
        Ok(outcome)
    }
}
