//! Notifications: consumes the platform's events and tells people what concerns them. Every
//! user-facing event becomes a stored in-app notification (listed, and pushed live over
//! Server-Sent Events) and, by the user's preferences, an email over SMTP, a signed webhook,
//! an SMS or a push message, each delivered from a durable queue with retries.
//!
//! It never reads another service's tables: what it knows about users comes from their events.

mod app;
pub mod config;
mod delivery;
mod domain;
pub mod events;
mod hub;
mod live;
mod routes;
mod store;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::Migrations;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::NotificationsConfig;

use crate::delivery::ChannelSender;
use crate::domain::Channel;

pub const NAME: &str = "notifications";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_init.sql", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[("0001_init.sql", include_str!("../migrations/postgres/0001_init.sql"))],
};

/// Notifications as the platform runs it.
pub struct NotificationsService {
    pub config: NotificationsConfig,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for NotificationsService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> Option<Migrations> {
        Some(MIGRATIONS)
    }

    fn build(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
        async move {
            let cfg = self.config;
            cfg.validate()?;
            let db = ctx.db()?;
            let templates = Arc::new(templates::Templates::new().map_err(|e| anyhow::anyhow!("notification templates: {e}"))?);
            let hub = Arc::new(hub::Hub::new());

            let handler = Arc::new(events::NotificationHandler {
                templates: templates.clone(),
                hub: hub.clone(),
                clock: ctx.clock.clone(),
                metrics: ctx.metrics.clone(),
                email_enabled: cfg.email_enabled,
            });

            let log = |channel: Channel| -> Arc<dyn ChannelSender> { Arc::new(delivery::log::LogProvider { channel: channel.as_str() }) };
            let senders: HashMap<Channel, Arc<dyn ChannelSender>> = HashMap::from([
                (Channel::Email, Arc::new(delivery::email::EmailSender::new(&cfg, templates)?) as Arc<dyn ChannelSender>),
                (
                    Channel::Webhook,
                    Arc::new(delivery::webhook::WebhookSender {
                        db: db.clone(),
                        client: delivery::webhook::client(cfg.webhooks_allow_private)?,
                        clock: ctx.clock.clone(),
                        user_agent: format!("Motorpool-Webhooks/{}", env!("CARGO_PKG_VERSION")).into(),
                    }),
                ),
                (Channel::Sms, log(Channel::Sms)),
                (Channel::Push, log(Channel::Push)),
            ]);
            let worker = delivery::Worker {
                db: db.clone(),
                clock: ctx.clock.clone(),
                hub: hub.clone(),
                senders,
                max_attempts: cfg.webhook_max_attempts,
                poll: Duration::from_millis(cfg.delivery_poll_ms),
                metrics: ctx.metrics.clone(),
                shutdown: ctx.shutdown.clone(),
            };

            let app = Arc::new(app::Notifications {
                db,
                clock: ctx.clock.clone(),
                hub,
                webhooks_allow_private: cfg.webhooks_allow_private,
                shutdown: ctx.shutdown.clone(),
            });
            let state = routes::AppState { app, verifier: ctx.verifier.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.consumers = events::consumers(&cfg.sources, handler);
            parts.tasks.push(worker.run().boxed());
            Ok(parts)
        }
        .boxed()
    }
}
