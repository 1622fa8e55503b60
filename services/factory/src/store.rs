//! All of the factory's SQL.

use motorpool_platform::db::{Db, Tx};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub config_id: String,
    pub model: String,
    pub bom: String,
    pub holds: Option<String>,
    pub price: i64,
    pub currency: String,
    pub deposit: i64,
    pub charge_id: Option<String>,
    pub status: String,
    pub step: String,
    pub plant: Option<String>,
    pub production_day: Option<i64>,
    pub next_at: Option<i64>,
    pub failure: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, user_id, config_id, model, bom, holds, price, currency, deposit, charge_id, status, step, plant, \
                       production_day, next_at, failure, created_at, updated_at";

pub async fn insert_order(tx: &mut Tx, o: &OrderRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    )))
    .bind(&o.id)
    .bind(&o.user_id)
    .bind(&o.config_id)
    .bind(&o.model)
    .bind(&o.bom)
    .bind(&o.holds)
    .bind(o.price)
    .bind(&o.currency)
    .bind(o.deposit)
    .bind(&o.charge_id)
    .bind(&o.status)
    .bind(&o.step)
    .bind(&o.plant)
    .bind(o.production_day)
    .bind(o.next_at)
    .bind(&o.failure)
    .bind(o.created_at)
    .bind(o.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the order's mutable fields, if it is still at `expected_step` (a concurrent
/// scheduler tick or recovery that moved it first wins). Whether it was written.
/// Writes `o` over the order as the caller read it (`expected`: its step, status and
/// `updated_at`, which every write moves on); false when another writer came first.
pub async fn update_order(tx: &mut Tx, o: &OrderRow, expected: &OrderRow) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE orders SET holds = $1, charge_id = $2, status = $3, step = $4, plant = $5, production_day = $6, next_at = $7, \
         failure = $8, updated_at = $9 WHERE id = $10 AND step = $11 AND status = $12 AND updated_at = $13",
    )
    .bind(&o.holds)
    .bind(&o.charge_id)
    .bind(&o.status)
    .bind(&o.step)
    .bind(&o.plant)
    .bind(o.production_day)
    .bind(o.next_at)
    .bind(&o.failure)
    .bind(o.updated_at)
    .bind(&o.id)
    .bind(&expected.step)
    .bind(&expected.status)
    .bind(expected.updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn add_timeline(tx: &mut Tx, order_id: &str, status: &str, at: i64, note: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_timeline (order_id, seq, status, at, note) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM order_timeline WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status)
    .bind(at)
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The order a placing request with this key made, if any.
pub async fn order_for_key(db: &Db, user_id: &str, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT order_id FROM order_keys WHERE user_id = $1 AND idempotency_key = $2")
        .bind(user_id)
        .bind(key)
        .fetch_optional(db.pool())
        .await
}

/// Records which order a placing request's key made (a unique violation: another request
/// with the key placed one first).
pub async fn insert_order_key(tx: &mut Tx, user_id: &str, key: &str, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO order_keys (user_id, idempotency_key, order_id) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(key)
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn find_order(db: &Db, id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))).bind(id).fetch_optional(db.pool()).await
}

/// `(status, at, note)` in order.
pub async fn timeline(db: &Db, id: &str) -> Result<Vec<(String, i64, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, at, note FROM order_timeline WHERE order_id = $1 ORDER BY seq").bind(id).fetch_all(db.pool()).await
}

pub async fn list_orders_of(db: &Db, user_id: &str, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Orders the scheduler moves on now: a plan stage that is due.
pub async fn due_orders(db: &Db, now: i64, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM orders WHERE next_at <= $1 ORDER BY next_at LIMIT $2")))
        .bind(now)
        .bind(limit)
        .fetch_all(db.pool())
        .await
}

/// Orders whose placing saga stopped part way (a crash, an outage) and was not touched since
/// `before`.
pub async fn stalled_orders(db: &Db, before: i64, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE step IN ('hold', 'deposit', 'book', 'compensate') AND updated_at < $1 ORDER BY updated_at LIMIT $2"
    )))
    .bind(before)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// The first day from `from` on that may have room: `from` itself, a day with fewer than
/// `capacity` booked, or the day after a booked one (days without a row are empty). One
/// indexed query however far ahead the plant is booked.
pub async fn first_open_day(tx: &mut Tx, plant: &str, from: i64, capacity: i64) -> Result<i64, sqlx::Error> {
    let day: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(c.d) FROM ( \
           SELECT CAST($2 AS BIGINT) AS d \
           UNION ALL SELECT day FROM slots WHERE plant = $1 AND day >= $2 AND booked < $3 \
           UNION ALL SELECT day + 1 FROM slots WHERE plant = $1 AND day >= $2) c \
         WHERE NOT EXISTS (SELECT 1 FROM slots s WHERE s.plant = $1 AND s.day = c.d AND s.booked >= $3)",
    )
    .bind(plant)
    .bind(from)
    .bind(capacity)
    .fetch_one(&mut **tx)
    .await?;
    Ok(day.unwrap_or(from))
}

/// Takes one slot of `plant` on `day` if fewer than `capacity` are booked.
pub async fn book_slot(tx: &mut Tx, plant: &str, day: i64, capacity: i64) -> Result<bool, sqlx::Error> {
    let booked: Option<i64> = sqlx::query_scalar(
        "INSERT INTO slots (plant, day, booked) VALUES ($1, $2, 1) \
         ON CONFLICT (plant, day) DO UPDATE SET booked = slots.booked + 1 WHERE slots.booked < $3 RETURNING booked",
    )
    .bind(plant)
    .bind(day)
    .bind(capacity)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(booked.is_some())
}

/// Gives a slot back (a cancelled order).
pub async fn free_slot(tx: &mut Tx, plant: &str, day: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE slots SET booked = booked - 1 WHERE plant = $1 AND day = $2 AND booked > 0")
        .bind(plant)
        .bind(day)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
