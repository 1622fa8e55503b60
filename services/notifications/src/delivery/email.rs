//! Email over SMTP with lettre: plain text plus an HTML alternative, sent through the
//! configured relay with pooled connections. A relay that is down or answers with a
//! temporary error means "try again later"; a permanent SMTP refusal or an address that is
//! not one means never.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{ChannelSender, SendError};
use crate::config::NotificationsConfig;
use crate::store::DeliveryRow;
use crate::templates::Templates;

const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: Arc<Templates>,
}

impl EmailSender {
    /// Nothing connects yet: the first send opens the connection.
    pub fn new(cfg: &NotificationsConfig, templates: Arc<Templates>) -> anyhow::Result<Self> {
        let from: Mailbox = cfg.email_from.parse().map_err(|e| anyhow::anyhow!("notifications.email_from: {e}"))?;
        // Plain SMTP to a relay we run next to the service (no TLS on loopback or in a pod).
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.as_str())
            .port(cfg.smtp_port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self { transport, from, templates })
    }

    fn message(&self, d: &DeliveryRow) -> Result<Message, SendError> {
        let to: Address = d.target.parse().map_err(|e| SendError::Permanent(format!("not an email address: {e}")))?;
        let subject = d.subject.clone().unwrap_or_else(|| "Motorpool".to_owned());
        let html = self.templates.email_html(&subject, &d.body).map_err(|e| SendError::Permanent(format!("email layout: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(None)
            .multipart(MultiPart::alternative_plain_html(d.body.clone(), html))
            .map_err(|e| SendError::Permanent(format!("building the message: {e}")))
    }
}

#[async_trait]
impl ChannelSender for EmailSender {
    async fn send(&self, d: &DeliveryRow) -> Result<(), SendError> {
        let message = self.message(d)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP refused the message: {e}"))),
            Err(e) => Err(SendError::Retryable(format!("SMTP: {e}"))),
        }
    }
}
