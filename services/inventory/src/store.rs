//! All of inventory's SQL.
//!
//! The invariant: `stock.held` equals the sum of the SKU's rows in `holds`, and
//! `owner_holds.held` the sum of the owner's rows; every function that inserts, resizes or
//! deletes a hold changes the counters in the same transaction (or the same statement). A
//! hold is taken by a conditional update of the counter (`... WHERE quantity - held >= $n`),
//! which PostgreSQL re-evaluates on the newest row version after waiting for a concurrent
//! writer and SQLite runs under its single write lock: two racing holds can never both see the
//! same units. The `stock_not_oversold` and `owner_holds_cap` checks back this up in the schema.
//!
//! Row locks are always taken in one order — hold rows, then stock rows by SKU, then owner
//! rows by owner — so concurrent transactions queue instead of deadlocking.

use motorpool_platform::db::{Db, Tx};
use motorpool_platform::events::OutboxRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HoldRow {
    pub id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

const HOLD_COLUMNS: &str = "id, owner, sku, quantity, created_at, expires_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SaleRow {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub reference: String,
    pub committed_at: i64,
}

/// A SKU's stock as clients see it: holds past their expiry no longer count, whether or not
/// the sweeper has deleted them yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub quantity: i64,
    /// Units under live holds.
    pub held: i64,
}

impl Level {
    pub fn available(&self) -> i64 {
        self.quantity - self.held
    }
}

/// The counters of a stock row right after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub quantity: i64,
    pub held: i64,
}

/// True when `e` is the violation of the named check constraint (PostgreSQL names it in the
/// error; SQLite in the message).
pub fn is_check_violation(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error().is_some_and(|d| d.constraint() == Some(constraint) || d.message().contains(constraint))
}

/// Errors worth running the transaction again for: a PostgreSQL deadlock or serialization
/// failure (the other transaction went ahead).
pub fn is_retryable(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "40P01" || c == "40001")
}

/// PostgreSQL's one-statement hold of one line: takes the units if available, adds them to the
/// owner's count (the cap check aborts the whole statement), inserts the hold and its event, and
/// the low-stock event when this hold crossed the threshold — one round trip, one commit.
/// `None` when the SKU is unknown or has too few units; the general path then looks closer.
pub async fn hold_one_statement(
    db: &Db,
    hold: &HoldRow,
    owner_cap: i64,
    created: &OutboxRow,
    low: &OutboxRow,
    threshold: i64,
) -> Result<Option<Counters>, sqlx::Error> {
    let row = sqlx::query(
        "WITH s AS ( \
           UPDATE stock SET held = held + $3, updated_at = $5 \
           WHERE sku = $2 AND quantity - held >= $3 \
           RETURNING quantity, held), \
         o AS ( \
           INSERT INTO owner_holds (owner, held, cap) SELECT $1, $3, $7 FROM s \
           ON CONFLICT (owner) DO UPDATE SET held = owner_holds.held + excluded.held, cap = excluded.cap), \
         h AS ( \
           INSERT INTO holds (id, owner, sku, quantity, created_at, expires_at) SELECT $4, $1, $2, $3, $5, $6 FROM s), \
         e AS ( \
           INSERT INTO outbox (id, subject, payload, created_at) SELECT $8, $9, $10, $5 FROM s), \
         l AS ( \
           INSERT INTO outbox (id, subject, payload, created_at) \
           SELECT $11, $12, convert_to(jsonb_set(jsonb_set(jsonb_set(convert_from($13, 'UTF8')::jsonb, \
               '{data,quantity}', to_jsonb(s.quantity)), '{data,held}', to_jsonb(s.held)), \
               '{data,available}', to_jsonb(s.quantity - s.held))::text, 'UTF8'), $5 \
           FROM s WHERE s.quantity - s.held < $14 AND s.quantity - s.held + $3 >= $14) \
         SELECT quantity, held FROM s",
    )
    .bind(&hold.owner)
    .bind(&hold.sku)
    .bind(hold.quantity)
    .bind(&hold.id)
    .bind(hold.created_at)
    .bind(hold.expires_at)
    .bind(owner_cap)
    .bind(&created.id)
    .bind(&created.subject)
    .bind(&created.payload)
    .bind(&low.id)
    .bind(&low.subject)
    .bind(&low.payload)
    .bind(threshold)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| Counters { quantity: r.get(0), held: r.get(1) }))
}

/// PostgreSQL's one-statement release of one hold: deletes it, gives its units back to the
/// SKU and the owner, and inserts the event (its SKU and quantity filled in from the deleted
/// row). False when there was no such hold of that owner. The owner's update reads the
/// stock update's row, so the stock row is locked before the owner row, as everywhere else:
/// PostgreSQL promises no order between sub-statements (it ran `o` before `s`), and a hold and
/// a release of one owner on one SKU then deadlocked.
pub async fn release_one_statement(db: &Db, id: &str, owner: &str, now: i64, released: &OutboxRow) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "WITH d AS ( \
           DELETE FROM holds WHERE id = $1 AND owner = $2 RETURNING sku, quantity), \
         s AS ( \
           UPDATE stock SET held = stock.held - d.quantity, updated_at = $3 FROM d WHERE stock.sku = d.sku RETURNING d.quantity), \
         o AS ( \
           UPDATE owner_holds SET held = owner_holds.held - s.quantity FROM s WHERE owner_holds.owner = $2), \
         e AS ( \
           INSERT INTO outbox (id, subject, payload, created_at) \
           SELECT $4, $5, convert_to(jsonb_set(jsonb_set(convert_from($6, 'UTF8')::jsonb, \
               '{data,sku}', to_jsonb(d.sku)), '{data,quantity}', to_jsonb(d.quantity))::text, 'UTF8'), $3 FROM d) \
         SELECT COUNT(*) FROM d",
    )
    .bind(id)
    .bind(owner)
    .bind(now)
    .bind(&released.id)
    .bind(&released.subject)
    .bind(&released.payload)
    .fetch_one(db.pool())
    .await?;
    Ok(n == 1)
}

/// Releases many holds of many owners in one PostgreSQL statement: deletes each `(id,
/// owner)` still held, gives the units back per SKU and per owner, and writes one
/// `hold.released` event per deleted hold from `released[i]` (the event prepared for entry
/// `i`, its `data.sku` and `data.quantity` filled in here). Returns the ids released.
///
/// Row locks follow the module's order even with many rows: the materialised `ls` and `lo`
/// lock the stock rows and then the owner rows sorted, and each update touches only rows
/// already locked there; `lo` waits for the stock update through its one-time filter.
pub async fn release_many_one_statement(
    db: &Db,
    entries: &[(String, String)],
    now: i64,
    released: &[OutboxRow],
) -> Result<Vec<String>, sqlx::Error> {
    // The Any driver binds no arrays: the entries arrive as one JSON array, so every batch
    // size shares one prepared statement.
    let mut list = Vec::with_capacity(entries.len());
    for ((id, owner), row) in entries.iter().zip(released) {
        let payload: serde_json::Value = serde_json::from_slice(&row.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        list.push(serde_json::json!({"id": id, "owner": owner, "event_id": row.id, "payload": payload}));
    }
    let list = serde_json::to_string(&list).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let subject = released.first().map(|r| r.subject.clone()).unwrap_or_default();
    sqlx::query_scalar(
        "WITH r AS ( \
           SELECT * FROM json_to_recordset($1::json) AS r(id text, owner text, event_id text, payload jsonb)), \
         d AS ( \
           DELETE FROM holds h USING r WHERE h.id = r.id AND h.owner = r.owner \
           RETURNING h.id, h.owner, h.sku, h.quantity, r.event_id, r.payload), \
         ls AS MATERIALIZED ( \
           SELECT sku FROM stock WHERE sku IN (SELECT sku FROM d) ORDER BY sku FOR UPDATE), \
         s AS ( \
           UPDATE stock SET held = stock.held - x.q, updated_at = $2 \
           FROM (SELECT sku, sum(quantity) AS q FROM d GROUP BY sku) x \
           WHERE stock.sku = x.sku AND stock.sku IN (SELECT sku FROM ls) RETURNING stock.sku), \
         lo AS MATERIALIZED ( \
           SELECT owner FROM owner_holds WHERE owner IN (SELECT owner FROM d) AND (SELECT count(*) FROM s) >= 0 \
           ORDER BY owner FOR UPDATE), \
         o AS ( \
           UPDATE owner_holds SET held = owner_holds.held - y.q \
           FROM (SELECT owner, sum(quantity) AS q FROM d GROUP BY owner) y \
           WHERE owner_holds.owner = y.owner AND owner_holds.owner IN (SELECT owner FROM lo)), \
         e AS ( \
           INSERT INTO outbox (id, subject, payload, created_at) \
           SELECT d.event_id, $3, convert_to(jsonb_set(jsonb_set(d.payload, \
               '{data,sku}', to_jsonb(d.sku)), '{data,quantity}', to_jsonb(d.quantity))::text, 'UTF8'), $2 FROM d) \
         SELECT id FROM d",
    )
    .bind(list)
    .bind(now)
    .bind(subject)
    .fetch_all(db.pool())
    .await
}

/// Takes `quantity` units of `sku` if that many are available; the counters after, or `None`.
pub async fn try_take(tx: &mut Tx, sku: &str, quantity: i64, now: i64) -> Result<Option<Counters>, sqlx::Error> {
    let row =
        sqlx::query("UPDATE stock SET held = held + $1, updated_at = $2 WHERE sku = $3 AND quantity - held >= $1 RETURNING quantity, held")
            .bind(quantity)
            .bind(now)
            .bind(sku)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|r| Counters { quantity: r.get(0), held: r.get(1) }))
}

/// Gives `quantity` held units of `sku` back (a release, an expiry, a smaller hold).
pub async fn give_back(tx: &mut Tx, sku: &str, quantity: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stock SET held = held - $1, updated_at = $2 WHERE sku = $3")
        .bind(quantity)
        .bind(now)
        .bind(sku)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Turns `quantity` held units of `sku` into sold ones; the counters after.
pub async fn sell(tx: &mut Tx, sku: &str, quantity: i64, now: i64) -> Result<Counters, sqlx::Error> {
    let r =
        sqlx::query("UPDATE stock SET quantity = quantity - $1, held = held - $1, updated_at = $2 WHERE sku = $3 RETURNING quantity, held")
            .bind(quantity)
            .bind(now)
            .bind(sku)
            .fetch_one(&mut **tx)
            .await?;
    Ok(Counters { quantity: r.get(0), held: r.get(1) })
}

/// The raw counters of a SKU (expired holds included), if it exists.
pub async fn counters(tx: &mut Tx, sku: &str) -> Result<Option<Counters>, sqlx::Error> {
    let row = sqlx::query("SELECT quantity, held FROM stock WHERE sku = $1").bind(sku).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| Counters { quantity: r.get(0), held: r.get(1) }))
}

/// [`counters`] with the row locked until the transaction ends (a no-op update takes the lock
/// on PostgreSQL; SQLite's writer already holds the database).
pub async fn lock_counters(tx: &mut Tx, sku: &str) -> Result<Option<Counters>, sqlx::Error> {
    let row =
        sqlx::query("UPDATE stock SET held = held WHERE sku = $1 RETURNING quantity, held").bind(sku).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| Counters { quantity: r.get(0), held: r.get(1) }))
}

/// Adds `delta` (negative to subtract) to the owner's held units; the cap check refuses a total
/// above `cap` with a `owner_holds_cap` violation. Returns the new total.
pub async fn owner_add(tx: &mut Tx, owner: &str, delta: i64, cap: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO owner_holds (owner, held, cap) VALUES ($1, $2, $3) \
         ON CONFLICT (owner) DO UPDATE SET held = owner_holds.held + excluded.held, cap = excluded.cap RETURNING held",
    )
    .bind(owner)
    .bind(delta)
    .bind(cap)
    .fetch_one(&mut **tx)
    .await
}

/// Subtracts units from an owner's count (never checked against the cap).
pub async fn owner_sub(tx: &mut Tx, owner: &str, quantity: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE owner_holds SET held = held - $1 WHERE owner = $2").bind(quantity).bind(owner).execute(&mut **tx).await?;
    Ok(())
}

/// Units an owner holds under live holds.
pub async fn owner_live_held(db: &Db, owner: &str, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM holds WHERE owner = $1 AND expires_at > $2")
        .bind(owner)
        .bind(now)
        .fetch_one(db.pool())
        .await
}

pub async fn insert_hold(tx: &mut Tx, h: &HoldRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO holds (id, owner, sku, quantity, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&h.id)
        .bind(&h.owner)
        .bind(&h.sku)
        .bind(h.quantity)
        .bind(h.created_at)
        .bind(h.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Locks and reads one live hold of `owner` (an update that changes nothing, so both engines
/// take the row's write lock).
pub async fn lock_live_hold(tx: &mut Tx, id: &str, owner: &str, now: i64) -> Result<Option<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE holds SET expires_at = expires_at WHERE id = $1 AND owner = $2 AND expires_at > $3 RETURNING {HOLD_COLUMNS}"
    )))
    .bind(id)
    .bind(owner)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn update_hold(tx: &mut Tx, id: &str, quantity: i64, expires_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE holds SET quantity = $1, expires_at = $2 WHERE id = $3")
        .bind(quantity)
        .bind(expires_at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes one hold of `owner`, live or expired; the deleted row.
pub async fn delete_hold(tx: &mut Tx, id: &str, owner: &str) -> Result<Option<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("DELETE FROM holds WHERE id = $1 AND owner = $2 RETURNING {HOLD_COLUMNS}")))
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await
}

/// Deletes one live hold of `owner` (for a commit: an expired hold cannot be sold).
pub async fn delete_live_hold(tx: &mut Tx, id: &str, owner: &str, now: i64) -> Result<Option<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM holds WHERE id = $1 AND owner = $2 AND expires_at > $3 RETURNING {HOLD_COLUMNS}"
    )))
    .bind(id)
    .bind(owner)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
}

/// Deletes the expired holds of one SKU; the deleted rows. The caller gives their units back.
pub async fn delete_expired_of_sku(tx: &mut Tx, sku: &str, now: i64) -> Result<Vec<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("DELETE FROM holds WHERE sku = $1 AND expires_at <= $2 RETURNING {HOLD_COLUMNS}")))
        .bind(sku)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
}

/// Deletes the expired holds of one owner; the deleted rows.
pub async fn delete_expired_of_owner(tx: &mut Tx, owner: &str, now: i64) -> Result<Vec<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("DELETE FROM holds WHERE owner = $1 AND expires_at <= $2 RETURNING {HOLD_COLUMNS}")))
        .bind(owner)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
}

/// Deletes up to `limit` expired holds, oldest expiry first; the deleted rows.
pub async fn delete_expired_batch(tx: &mut Tx, now: i64, limit: i64) -> Result<Vec<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM holds WHERE id IN (SELECT id FROM holds WHERE expires_at <= $1 ORDER BY expires_at, id LIMIT $2) RETURNING {HOLD_COLUMNS}"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// Drops the counters of owners that hold nothing.
pub async fn prune_idle_owners(db: &Db) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM owner_holds WHERE held = 0").execute(db.pool()).await?.rows_affected())
}

pub async fn find_sale(tx: &mut Tx, hold_id: &str, owner: &str) -> Result<Option<SaleRow>, sqlx::Error> {
    sqlx::query_as("SELECT hold_id, owner, sku, quantity, reference, committed_at FROM sales WHERE hold_id = $1 AND owner = $2")
        .bind(hold_id)
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await
}

pub async fn insert_sale(tx: &mut Tx, s: &SaleRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sales (hold_id, owner, sku, quantity, reference, committed_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&s.hold_id)
        .bind(&s.owner)
        .bind(&s.sku)
        .bind(s.quantity)
        .bind(&s.reference)
        .bind(s.committed_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A stock row's held units minus those of its expired holds (`$1` is now), for reads: what
/// clients see as held.
const LIVE_HELD: &str =
    "s.held - CAST(COALESCE((SELECT SUM(h.quantity) FROM holds h WHERE h.sku = s.sku AND h.expires_at <= $1), 0) AS BIGINT)";

/// Stock levels of `skus` as of `now` (expired holds not counted), in one snapshot.
pub async fn levels(db: &Db, skus: &[String], now: i64) -> Result<Vec<(String, Level)>, sqlx::Error> {
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT s.sku, s.quantity, {LIVE_HELD} FROM stock s WHERE s.sku IN ({})", db.json_array_elements("$2", "text"));
    let list = serde_json::to_string(skus).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(list).fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(|r| (r.get::<String, _>(0), Level { quantity: r.get(1), held: r.get(2) })).collect())
}

/// A page of stock levels ordered by SKU, after `cursor`.
pub async fn list_levels(db: &Db, cursor: Option<&str>, limit: i64, now: i64) -> Result<Vec<(String, Level)>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.sku, s.quantity, {LIVE_HELD} FROM stock s WHERE s.sku > $2 ORDER BY s.sku LIMIT $3"
    )))
    .bind(now)
    .bind(cursor.unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| (r.get::<String, _>(0), Level { quantity: r.get(1), held: r.get(2) })).collect())
}

/// Live holds of an owner, oldest first.
pub async fn holds_of(db: &Db, owner: &str, now: i64) -> Result<Vec<HoldRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {HOLD_COLUMNS} FROM holds WHERE owner = $1 AND expires_at > $2 ORDER BY created_at, id"
    )))
    .bind(owner)
    .bind(now)
    .fetch_all(db.pool())
    .await
}

/// What setting a SKU's quantity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The SKU now has these counters.
    Set { before: Option<Counters>, after: Counters },
    /// `only_if_absent` and the SKU exists: left as it is.
    Kept(Counters),
    /// The new quantity is below what live holds need.
    BelowHeld(Counters),
}

/// Creates a SKU or sets its quantity, never below its held units.
pub async fn set_stock(tx: &mut Tx, sku: &str, quantity: i64, only_if_absent: bool, now: i64) -> Result<SetOutcome, sqlx::Error> {
    let before = counters(tx, sku).await?;
    match before {
        Some(c) if only_if_absent => Ok(SetOutcome::Kept(c)),
        Some(c) if c.held > quantity => Ok(SetOutcome::BelowHeld(c)),
        Some(_) => {
            let r = sqlx::query("UPDATE stock SET quantity = $1, updated_at = $2 WHERE sku = $3 RETURNING quantity, held")
                .bind(quantity)
                .bind(now)
                .bind(sku)
                .fetch_one(&mut **tx)
                .await?;
            Ok(SetOutcome::Set { before, after: Counters { quantity: r.get(0), held: r.get(1) } })
        }
        None => {
            sqlx::query("INSERT INTO stock (sku, quantity, held, updated_at) VALUES ($1, $2, 0, $3)")
                .bind(sku)
                .bind(quantity)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            Ok(SetOutcome::Set { before: None, after: Counters { quantity, held: 0 } })
        }
    }
}

/// Sum of every SKU's `held` against the sum of its hold rows, and owners likewise: both
/// differences are 0 in a consistent database (tests and the admin check use it).
pub async fn consistency(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let stock: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM stock s WHERE s.held <> COALESCE((SELECT SUM(h.quantity) FROM holds h WHERE h.sku = s.sku), 0)",
    )
    .fetch_one(db.pool())
    .await?;
    let owners: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM owner_holds o WHERE o.held <> COALESCE((SELECT SUM(h.quantity) FROM holds h WHERE h.owner = o.owner), 0)",
    )
    .fetch_one(db.pool())
    .await?;
    Ok((stock, owners))
}
