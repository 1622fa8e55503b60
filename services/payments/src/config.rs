//! Payments' configuration section, `[payments]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Delay the simulated card processor adds to every card charge, in ms.
    pub provider_delay_ms: u64,
    /// More card numbers the simulated processor declines (besides the standard test cards).
    pub provider_declined_cards: Vec<String>,
}
