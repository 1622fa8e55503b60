//! The default SMS and push provider: it writes the message to the log instead of handing it
//! to a carrier. A real provider (an SMS gateway, FCM/APNs) implements the same
//! [`ChannelSender`] and replaces it where the worker's senders are built.

use async_trait::async_trait;

use super::{ChannelSender, SendError};
use crate::store::DeliveryRow;

pub struct LogProvider {
    pub channel: &'static str,
}

#[async_trait]
impl ChannelSender for LogProvider {
    async fn send(&self, d: &DeliveryRow) -> Result<(), SendError> {
        tracing::info!(
            channel = self.channel,
            delivery = %d.id,
            notification = %d.notification_id,
            user_id = %d.user_id,
            title = d.subject.as_deref().unwrap_or(""),
            text = %d.body,
            "message logged by the default {} provider",
            self.channel
        );
        Ok(())
    }
}
