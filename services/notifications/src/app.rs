//! Notifications' use cases for the HTTP API: a user's notifications, their preferences and
//! their webhooks. Every call is scoped to the calling user in the SQL itself, so another
//! user's id is simply "not found".

use std::sync::Arc;

use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use motorpool_platform::problem::{Code, FieldError, Problem};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::webhook::{GuardError, resolve_allowed};
use crate::domain::webhook::{self, WebhookUrl};
use crate::domain::{ChannelSet, EventSelector};
use crate::hub::Hub;
use crate::live::LiveStream;
use crate::store::{self, NotificationRow, WebhookRow};

pub struct Notifications {
    pub db: Db,
    pub clock: Clock,
    pub hub: Arc<Hub>,
    pub webhooks_allow_private: bool,
    pub shutdown: CancellationToken,
}

/// One page of a user's notifications.
pub struct Page {
    pub items: Vec<NotificationRow>,
    pub next_cursor: Option<String>,
    pub unread_count: i64,
}

pub const PAGE_DEFAULT: i64 = 20;
pub const PAGE_MAX: i64 = 100;

impl Notifications {
    pub async fn list(&self, user_id: &str, limit: Option<i64>, cursor: Option<&str>, unread_only: bool) -> Result<Page, Problem> {
        let mut errors = Vec::new();
        let limit = limit.unwrap_or(PAGE_DEFAULT);
        if !(1..=PAGE_MAX).contains(&limit) {
            errors.push(FieldError { field: "limit".into(), message: format!("must be between 1 and {PAGE_MAX}") });
        }
        if cursor.is_some_and(|c| uuid::Uuid::parse_str(c).is_err()) {
            errors.push(FieldError { field: "cursor".into(), message: "must be the nextCursor of a previous page".into() });
        }
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        let mut items = store::list_notifications(&self.db, user_id, cursor, unread_only, limit + 1).await?;
        let has_more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = if has_more { items.last().map(|n| n.id.clone()) } else { None };
        let unread_count = store::count_unread(&self.db, user_id).await?;
        Ok(Page { items, next_cursor, unread_count })
    }

    pub async fn get(&self, user_id: &str, id: &str) -> Result<NotificationRow, Problem> {
        store::find_notification(&self.db, user_id, id).await?.ok_or_else(|| Problem::not_found("notification"))
    }

    pub async fn mark_read(&self, user_id: &str, id: &str) -> Result<(), Problem> {
        if store::mark_read(&self.db, user_id, id, self.clock.now_ms()).await? { Ok(()) } else { Err(Problem::not_found("notification")) }
    }

    pub async fn mark_all_read(&self, user_id: &str) -> Result<u64, Problem> {
        Ok(store::mark_all_read(&self.db, user_id, self.clock.now_ms()).await?)
    }

    /// The user's rules as `(event type or "*", channels)`.
    pub async fn preferences(&self, user_id: &str) -> Result<Vec<(String, ChannelSet)>, Problem> {
        let rows = store::list_preferences(&self.db, user_id).await?;
        Ok(rows.into_iter().map(|(selector, stored)| (selector, ChannelSet::from_stored(&stored))).collect())
    }

    pub async fn set_preference(&self, user_id: &str, event_type: &str, channels: &[String]) -> Result<(), Problem> {
        let mut errors = Vec::new();
        let selector = EventSelector::parse(event_type).map_err(|e| errors.push(e)).ok();
        let channels = ChannelSet::parse(channels).map_err(|e| errors.push(e)).ok();
        let (Some(selector), Some(channels)) = (selector, channels) else { return Err(Problem::validation(errors)) };
        store::upsert_preference(&self.db, user_id, selector.as_str(), &channels.to_stored(), self.clock.now_ms()).await?;
        Ok(())
    }

    /// Registers a webhook after checking where its URL leads. The secret is returned here
    /// and never again.
    pub async fn create_webhook(&self, user_id: &str, url: &str) -> Result<WebhookRow, Problem> {
        let url = WebhookUrl::parse(url).map_err(|e| Problem::validation(vec![e]))?;
        if let Err(e) = resolve_allowed(url.host(), url.port(), self.webhooks_allow_private).await {
            // Say what is wrong, not which address a name has: the answer would map internal
            // names to internal addresses for whoever asks.
            let message = match e {
                GuardError::Forbidden { .. } => "must lead to a public address, not a loopback, private, link-local or other internal one",
                GuardError::Unresolvable(_) | GuardError::Connect(..) => "names a host that does not resolve",
            };
            return Err(Problem::validation(vec![FieldError { field: "url".into(), message: message.into() }]));
        }
        let row = WebhookRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            url: url.as_str().to_owned(),
            secret: webhook::new_secret(),
            created_at: self.clock.now_ms(),
        };
        if !store::insert_webhook(&self.db, &row, webhook::MAX_PER_USER).await? {
            return Err(Problem::new(Code::Conflict).detail(format!("at most {} webhooks per user", webhook::MAX_PER_USER)));
        }
        Ok(row)
    }

    pub async fn list_webhooks(&self, user_id: &str) -> Result<Vec<WebhookRow>, Problem> {
        Ok(store::list_webhooks(&self.db, user_id).await?)
    }

    pub async fn delete_webhook(&self, user_id: &str, id: &str) -> Result<(), Problem> {
        if store::delete_webhook(&self.db, user_id, id, self.clock.now_ms()).await? { Ok(()) } else { Err(Problem::not_found("webhook")) }
    }

    /// The live stream of `user_id`'s new notifications, until `expires_at` (Unix seconds,
    /// the access token's expiry).
    pub async fn live(&self, user_id: &str, expires_at: i64) -> Result<LiveStream, Problem> {
        let left = (expires_at - self.clock.now().unix_timestamp()).max(0);
        let ends_at = Instant::now() + std::time::Duration::from_secs(left.unsigned_abs());
        Ok(LiveStream::open(self.db.clone(), self.clock.clone(), &self.hub, user_id, ends_at, self.shutdown.clone()).await?)
    }
}
