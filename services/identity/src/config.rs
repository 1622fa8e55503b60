//! Identity's own configuration section, `[identity]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Lifetime of access tokens.
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens.
    pub refresh_ttl_secs: u64,
    /// Argon2id cost. The defaults follow OWASP's minimum for argon2id (19 MiB, 2 passes).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Failed logins after which an account is locked out for `lockout_secs`.
    pub max_failed_logins_per_account: i64,
    /// Failed logins after which a client address is locked out for `lockout_secs`.
    pub max_failed_logins_per_client: i64,
    pub lockout_secs: u64,
    /// Created as an admin at start when no account has this email.
    pub bootstrap_admin_email: Option<String>,
    /// Secret: masked when the configuration is printed.
    pub bootstrap_admin_password: Option<String>,
    /// How often replicas reload the signing keys (to pick up a rotation made elsewhere).
    pub key_reload_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 7 * 24 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_failed_logins_per_account: 5,
            max_failed_logins_per_client: 50,
            lockout_secs: 15 * 60,
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            key_reload_secs: 30,
        }
    }
}
