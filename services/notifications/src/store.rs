//! All of notifications' SQL. Functions that run inside the event handler's transaction take
//! the transaction (a handler must never take a second pool connection while it holds one);
//! the rest take the pool.

use motorpool_platform::db::{Db, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The local copy of a user, from identity's events.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub event_type: String,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

const NOTIFICATION_COLUMNS: &str = "id, user_id, event_type, title, body, created_at, read_at";

fn notification_from(row: &AnyRow) -> Result<NotificationRow, sqlx::Error> {
    Ok(NotificationRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        event_type: row.try_get("event_type")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
    })
}

/// A notification about to be stored.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub user_id: String,
    pub url: String,
    pub secret: String,
    pub created_at: i64,
}

const WEBHOOK_COLUMNS: &str = "id, user_id, url, secret, created_at";

fn webhook_from(row: &AnyRow) -> Result<WebhookRow, sqlx::Error> {
    Ok(WebhookRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
    })
}

/// An outbound message about to be queued.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub id: String,
    pub notification_id: &'a str,
    pub user_id: &'a str,
    pub channel: &'static str,
    pub target: String,
    pub subject: Option<String>,
    pub body: String,
    pub now: i64,
}

/// A delivery a worker has claimed: `lease_until` is the claim, which every later update
/// of the row must present.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub notification_id: String,
    pub user_id: String,
    pub channel: String,
    pub target: String,
    pub subject: Option<String>,
    pub body: String,
    pub attempts: i64,
    pub lease_until: i64,
}

// ------------------------------------------------------------------ users

pub async fn upsert_user(tx: &mut Tx, user: &UserRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, full_name, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET email = excluded.email, full_name = excluded.full_name, updated_at = excluded.updated_at",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.full_name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_user_in(tx: &mut Tx, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, email, full_name FROM users WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|(id, email, full_name)| UserRow { id, email, full_name }))
}

// ------------------------------------------------------------ preferences

/// A user's rules as `(event type or "*", stored channel list)`.
pub async fn list_preferences_in(tx: &mut Tx, user_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT event_type, channels FROM preferences WHERE user_id = $1 ORDER BY event_type")
        .bind(user_id)
        .fetch_all(&mut **tx)
        .await
}

pub async fn list_preferences(db: &Db, user_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT event_type, channels FROM preferences WHERE user_id = $1 ORDER BY event_type")
        .bind(user_id)
        .fetch_all(db.pool())
        .await
}

pub async fn upsert_preference(db: &Db, user_id: &str, event_type: &str, channels: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO preferences (user_id, event_type, channels, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, event_type) DO UPDATE SET channels = excluded.channels, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(event_type)
    .bind(channels)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

// ---------------------------------------------------------- notifications

/// Stores a notification unless the user already has one for this event; returns whether
/// it was new. `read_at` is set for notifications the user chose not to see in-app.
pub async fn insert_notification(tx: &mut Tx, n: &NewNotification<'_>, read_at: Option<i64>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, user_id, event_id, event_type, title, body, created_at, read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, event_id) DO NOTHING",
    )
    .bind(n.id)
    .bind(n.user_id)
    .bind(n.event_id)
    .bind(n.event_type)
    .bind(n.title)
    .bind(n.body)
    .bind(n.created_at)
    .bind(read_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A user's notifications, newest first, older than the cursor `before` (an id: UUIDv7
/// ids sort by creation).
pub async fn list_notifications(
    db: &Db,
    user_id: &str,
    before: Option<&str>,
    unread_only: bool,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
         WHERE user_id = $1 AND ($2 IS NULL OR id < $2) AND (read_at IS NULL OR $3 = 0) \
         ORDER BY id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(before)
        .bind(i64::from(unread_only))
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

pub async fn count_unread(db: &Db, user_id: &str) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}

/// One notification of `user_id`; another user's id is simply not found.
pub async fn find_notification(db: &Db, user_id: &str, id: &str) -> Result<Option<NotificationRow>, sqlx::Error> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1 AND user_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(user_id).fetch_optional(db.pool()).await?;
    row.as_ref().map(notification_from).transpose()
}

/// Marks one of `user_id`'s notifications read (keeping the first read time); false when
/// the user has no such notification.
pub async fn mark_read(db: &Db, user_id: &str, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND user_id = $3")
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n == 1)
}

pub async fn mark_all_read(db: &Db, user_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// The newest unread notifications of `user_id` created at or after `since` (ms), newest
/// first: what a live stream looks at.
pub async fn list_unread_since(db: &Db, user_id: &str, since: i64, limit: i64) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = $1 AND created_at >= $2 AND read_at IS NULL \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(since).bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(notification_from).collect()
}

// --------------------------------------------------------------- webhooks

/// Stores a webhook unless the user already has `max` of them; returns whether it was stored.
/// The count and the insert are one statement; on PostgreSQL two registrations racing at the
/// limit can still both pass, which a soft cap against runaway lists tolerates.
pub async fn insert_webhook(db: &Db, w: &WebhookRow, max: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO webhooks (id, user_id, url, secret, created_at) \
         SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM webhooks WHERE user_id = $2) < $6",
    )
    .bind(&w.id)
    .bind(&w.user_id)
    .bind(&w.url)
    .bind(&w.secret)
    .bind(w.created_at)
    .bind(max)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn list_webhooks(db: &Db, user_id: &str) -> Result<Vec<WebhookRow>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(db.pool()).await?;
    rows.iter().map(webhook_from).collect()
}

pub async fn list_webhooks_in(tx: &mut Tx, user_id: &str) -> Result<Vec<WebhookRow>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(&mut **tx).await?;
    rows.iter().map(webhook_from).collect()
}

pub async fn find_webhook(db: &Db, id: &str) -> Result<Option<WebhookRow>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(webhook_from).transpose()
}

/// Removes one of `user_id`'s webhooks and gives up its queued deliveries, together.
/// False when the user has no such webhook.
pub async fn delete_webhook(db: &Db, user_id: &str, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let n =
        sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2").bind(id).bind(user_id).execute(&mut *tx).await?.rows_affected();
    if n == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', last_error = 'the webhook was deleted', updated_at = $1 \
         WHERE channel = 'webhook' AND target = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

// ------------------------------------------------------------- deliveries

/// Queues a delivery unless this notification already has one for the channel and target;
/// returns whether it was new.
pub async fn insert_delivery(tx: &mut Tx, d: &NewDelivery<'_>) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO deliveries (id, notification_id, user_id, channel, target, subject, body, status, attempts, \
         next_attempt_at, last_error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, NULL, $8, $8) \
         ON CONFLICT (notification_id, channel, target) DO NOTHING",
    )
    .bind(&d.id)
    .bind(d.notification_id)
    .bind(d.user_id)
    .bind(d.channel)
    .bind(&d.target)
    .bind(&d.subject)
    .bind(&d.body)
    .bind(d.now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Queued deliveries due at `now`, as `(id, next_attempt_at)`: the value a claim must match.
pub async fn due_deliveries(db: &Db, now: i64, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, next_attempt_at FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Claims a due delivery by moving its next attempt to `lease_until` and counting the
/// attempt, only if nobody else did since it was seen at `seen_next_attempt_at`. Returns the
/// row when this caller won the claim.
pub async fn claim_delivery(
    db: &Db,
    id: &str,
    seen_next_attempt_at: i64,
    lease_until: i64,
    now: i64,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE deliveries SET next_attempt_at = $1, attempts = attempts + 1, updated_at = $2 \
         WHERE id = $3 AND status = 'queued' AND next_attempt_at = $4 \
         RETURNING id, notification_id, user_id, channel, target, subject, body, attempts, next_attempt_at",
    )
    .bind(lease_until)
    .bind(now)
    .bind(id)
    .bind(seen_next_attempt_at)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(DeliveryRow {
            id: r.try_get("id")?,
            notification_id: r.try_get("notification_id")?,
            user_id: r.try_get("user_id")?,
            channel: r.try_get("channel")?,
            target: r.try_get("target")?,
            subject: r.try_get("subject")?,
            body: r.try_get("body")?,
            attempts: r.try_get("attempts")?,
            lease_until: r.try_get("next_attempt_at")?,
        })
    })
    .transpose()
}

/// How a claimed delivery ended. Each update presents the claim, so a worker whose lease ran
/// out (and whose row another worker took over) changes nothing.
pub enum Outcome<'a> {
    Sent,
    RetryAt { at: i64, error: &'a str },
    Failed { error: &'a str },
}

pub async fn finish_delivery(db: &Db, d: &DeliveryRow, outcome: Outcome<'_>, now: i64) -> Result<bool, sqlx::Error> {
    let query = match outcome {
        Outcome::Sent => {
            sqlx::query("UPDATE deliveries SET status = 'sent', last_error = NULL, updated_at = $1 WHERE id = $2 AND next_attempt_at = $3")
                .bind(now)
                .bind(&d.id)
                .bind(d.lease_until)
        }
        Outcome::RetryAt { at, error } => sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1, last_error = $2, updated_at = $3 \
             WHERE id = $4 AND next_attempt_at = $5 AND status = 'queued'",
        )
        .bind(at)
        .bind(error.to_owned())
        .bind(now)
        .bind(&d.id)
        .bind(d.lease_until),
        Outcome::Failed { error } => {
            sqlx::query("UPDATE deliveries SET status = 'failed', last_error = $1, updated_at = $2 WHERE id = $3 AND next_attempt_at = $4")
                .bind(error.to_owned())
                .bind(now)
                .bind(&d.id)
                .bind(d.lease_until)
        }
    };
    Ok(query.execute(db.pool()).await?.rows_affected() == 1)
}
