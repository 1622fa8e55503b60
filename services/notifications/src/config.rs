//! Notifications' own configuration section, `[notifications]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Services whose events are consumed, one durable consumer `notifications-<source>` each.
    pub sources: Vec<String>,
    /// SMTP relay that accepts our mail (plain SMTP: a local relay or a sidecar).
    pub smtp_host: String,
    pub smtp_port: u16,
    /// The `From` header of every email, e.g. `Motorpool <no-reply@motorpool.local>`.
    pub email_from: String,
    /// When false (the default: a fresh machine has no mail relay), no email is queued.
    pub email_enabled: bool,
    /// Attempts per delivery (email, webhook, SMS, push) before it is marked failed.
    pub webhook_max_attempts: u32,
    /// Allow webhook URLs that resolve to loopback, private, link-local or other
    /// non-public addresses. Only for tests and closed networks: it opens the door to SSRF.
    pub webhooks_allow_private: bool,
    /// How often the delivery worker looks for due deliveries when nothing woke it.
    pub delivery_poll_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            sources: vec!["identity".into(), "payments".into(), "shop".into(), "factory".into()],
            smtp_host: "127.0.0.1".into(),
            smtp_port: 2525,
            email_from: "Motorpool <no-reply@motorpool.local>".into(),
            email_enabled: false,
            webhook_max_attempts: 6,
            webhooks_allow_private: false,
            delivery_poll_ms: 500,
        }
    }
}

impl NotificationsConfig {
    /// Refuses settings the service cannot run with; called at start.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.sources.is_empty(), "notifications.sources must name at least one service");
        for source in &self.sources {
            anyhow::ensure!(
                !source.is_empty() && source.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
                "notifications.sources: {source:?} is not a service name"
            );
        }
        anyhow::ensure!(!self.smtp_host.trim().is_empty(), "notifications.smtp_host must not be empty");
        self.email_from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| anyhow::anyhow!("notifications.email_from {:?}: {e}", self.email_from))?;
        anyhow::ensure!((1..=20).contains(&self.webhook_max_attempts), "notifications.webhook_max_attempts must be between 1 and 20");
        anyhow::ensure!(self.delivery_poll_ms >= 10, "notifications.delivery_poll_ms must be at least 10");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        NotificationsConfig::default().validate().unwrap();
        let bad = [
            NotificationsConfig { sources: vec![], ..Default::default() },
            NotificationsConfig { sources: vec!["pay.ments".into()], ..Default::default() },
            NotificationsConfig { email_from: "not an address".into(), ..Default::default() },
            NotificationsConfig { webhook_max_attempts: 0, ..Default::default() },
            NotificationsConfig { delivery_poll_ms: 1, ..Default::default() },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
    }
}
