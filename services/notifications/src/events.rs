//! What notifications consumes: every event of the configured sources. Notifications
//! publishes no events of its own.
//!
//! For each user-facing event (its `data` has a string `userId`) the handler stores the
//! in-app notification and queues one delivery per other channel the user chose, all in the
//! transaction that also records the event in the inbox. The inbox makes a redelivered event
//! a no-op; the unique keys on notifications `(user_id, event_id)` and deliveries
//! `(notification_id, channel, target)` hold even if the same event arrives through two
//! consumers. Identity's registrations also keep the local copy of users current, so emails
//! can be addressed without ever reading identity's tables.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Tx;
use motorpool_platform::events::{Consumer, Envelope, EventHandler, HandlerError};
use motorpool_platform::metrics::Metrics;
use serde::Deserialize;

use crate::domain::preferences::channels_for;
use crate::domain::{Channel, ChannelSet, user_facing};
use crate::hub::Hub;
use crate::store::{self, NewDelivery, NewNotification, UserRow};
use crate::templates::{Recipient, Templates};

pub const USER_REGISTERED: &str = "identity.user.registered.v1";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRegistered {
    user_id: String,
    email: String,
    full_name: String,
}

/// One durable consumer per source service, all with the same handler.
pub fn consumers(sources: &[String], handler: Arc<NotificationHandler>) -> Vec<Consumer> {
    sources
        .iter()
        .map(|source| Consumer { name: format!("notifications-{source}"), filter: format!("{source}.>"), handler: handler.clone() })
        .collect()
}

pub struct NotificationHandler {
    pub templates: Arc<Templates>,
    pub hub: Arc<Hub>,
    pub clock: Clock,
    pub metrics: Metrics,
    pub email_enabled: bool,
}

impl EventHandler for NotificationHandler {
    fn handle<'a>(&'a self, tx: &'a mut Tx, event: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move { self.apply(tx, event).await }.boxed()
    }
}

impl NotificationHandler {
    async fn apply(&self, tx: &mut Tx, event: &Envelope) -> Result<(), HandlerError> {
        let now = self.clock.now_ms();
        if event.kind == USER_REGISTERED {
            match event.data::<UserRegistered>() {
                Ok(u) => store::upsert_user(tx, &UserRow { id: u.user_id, email: u.email, full_name: u.full_name }, now).await?,
                // Retrying cannot fix a payload; the notification below still goes out.
                Err(e) => tracing::warn!(event_id = %event.id, error = %e, "malformed registration event; user not recorded"),
            }
        }
        let Some(user_id) = user_facing(&event.data) else { return Ok(()) };
        let user = store::find_user_in(tx, user_id).await?;
        let rules: Vec<(String, ChannelSet)> = store::list_preferences_in(tx, user_id)
            .await?
            .into_iter()
            .map(|(selector, stored)| (selector, ChannelSet::from_stored(&stored)))
            .collect();
        let channels = channels_for(&event.kind, &rules);
        let recipient = user.as_ref().map(|u| Recipient { name: u.full_name.clone(), email: u.email.clone() });
        let texts = self.templates.render(event, recipient.as_ref());

        let id = uuid::Uuid::now_v7().to_string();
        let notification = NewNotification {
            id: &id,
            user_id,
            event_id: &event.id,
            event_type: &event.kind,
            title: &texts.title,
            body: &texts.body,
            created_at: now,
        };
        // With in-app switched off the notification is still kept (it anchors the other
        // deliveries and the history), but as read, so it neither counts nor is pushed live.
        let read_at = (!channels.contains(Channel::InApp)).then_some(now);
        if !store::insert_notification(tx, &notification, read_at).await? {
            return Ok(());
        }
        self.metrics.count("notifications_created_total", "In-app notifications stored.", &[], 1);

        let mut queued = 0;
        for channel in channels.iter() {
            let delivery = |target: String, subject: Option<String>, body: String| NewDelivery {
                id: uuid::Uuid::now_v7().to_string(),
                notification_id: &id,
                user_id,
                channel: channel.as_str(),
                target,
                subject,
                body,
                now,
            };
            let deliveries = match channel {
                Channel::InApp => Vec::new(),
                Channel::Email if !self.email_enabled => Vec::new(),
                Channel::Email => match &user {
                    Some(u) => vec![delivery(u.email.clone(), Some(texts.email_subject.clone()), texts.email_body.clone())],
                    None => {
                        tracing::info!(event_id = %event.id, user_id, "no email address known for the user; email skipped");
                        Vec::new()
                    }
                },
                Channel::Webhook => {
                    let payload =
                        serde_json::json!({"id": event.id, "type": event.kind, "time": event.time, "data": event.data}).to_string();
                    store::list_webhooks_in(tx, user_id)
                        .await?
                        .into_iter()
                        .map(|w| delivery(w.id, Some(event.kind.clone()), payload.clone()))
                        .collect()
                }
                Channel::Sms => vec![delivery(user_id.to_owned(), None, texts.sms.clone())],
                Channel::Push => vec![delivery(user_id.to_owned(), Some(texts.title.clone()), texts.body.clone())],
            };
            for d in &deliveries {
                if store::insert_delivery(tx, d).await? {
                    queued += 1;
                }
            }
        }
        if read_at.is_none() {
            self.hub.notification_created(user_id);
        }
        if queued > 0 {
            self.hub.deliveries_queued();
        }
        Ok(())
    }
}
