//! The gateway's configuration section, `[gateway]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Per-client token bucket: sustained requests per second...
    pub rate_limit_per_sec: f64,
    /// ...and the burst a client may spend at once.
    pub rate_limit_burst: u32,
    pub rate_limit_enabled: bool,
    /// Time an upstream may take to answer before the gateway answers 504.
    pub upstream_timeout_ms: u64,
    /// How long the merged API document is cached.
    pub docs_cache_secs: u64,
    /// How long a replica that refused a connection, failed or timed out gets no new requests.
    pub eject_ms: u64,
    /// How often every replica's `/ready` is checked; one that fails gets no requests until a
    /// check passes (0: no active checks).
    pub ready_check_ms: u64,
    /// Failed requests in a row to a service (whatever the replica) that open its circuit:
    /// then the gateway answers 503 `circuit_open` at once (0: never).
    pub breaker_failures: u32,
    /// How long an open circuit refuses requests before one probe request is let through.
    pub breaker_open_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_sec: 100.0,
            rate_limit_burst: 200,
            rate_limit_enabled: true,
            upstream_timeout_ms: 10_000,
            docs_cache_secs: 30,
            eject_ms: 5_000,
            ready_check_ms: 1_000,
            breaker_failures: 5,
            breaker_open_ms: 3_000,
        }
    }
}
