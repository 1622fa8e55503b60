//! All of the configurator's SQL.

use motorpool_platform::db::{Db, Tx};

/// Stores `body` as catalog `version` unless that version exists already; whether it did.
pub async fn insert_catalog(tx: &mut Tx, version: i64, body: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("INSERT INTO catalogs (version, body, created_at) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING")
        .bind(version)
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One catalog version's body.
pub async fn find_catalog(db: &Db, version: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT body FROM catalogs WHERE version = $1").bind(version).fetch_optional(db.pool()).await
}

/// The newest stored catalog version.
pub async fn latest_catalog_version(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(version) FROM catalogs").fetch_one(db.pool()).await
}

/// The newest catalog's body.
pub async fn find_latest_catalog(db: &Db) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT body FROM catalogs ORDER BY version DESC LIMIT 1").fetch_optional(db.pool()).await
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConfigurationRow {
    pub id: String,
    pub owner_id: Option<String>,
    pub share_code: String,
    pub catalog_version: i64,
    pub model: String,
    /// JSON array of option codes.
    pub picks: String,
    /// JSON array of option codes.
    pub options: String,
    pub signature: String,
    pub price: i64,
    pub currency: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, owner_id, share_code, catalog_version, model, picks, options, signature, price, currency, created_at";

pub async fn insert_configuration(tx: &mut Tx, c: &ConfigurationRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO configurations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )))
    .bind(&c.id)
    .bind(&c.owner_id)
    .bind(&c.share_code)
    .bind(c.catalog_version)
    .bind(&c.model)
    .bind(&c.picks)
    .bind(&c.options)
    .bind(&c.signature)
    .bind(c.price)
    .bind(&c.currency)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_configuration(db: &Db, id: &str) -> Result<Option<ConfigurationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM configurations WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn find_by_share_code(db: &Db, code: &str) -> Result<Option<ConfigurationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM configurations WHERE share_code = $1")))
        .bind(code)
        .fetch_optional(db.pool())
        .await
}

/// A page of the owner's configurations, newest first, older than the cursor `(created_at, id)`.
pub async fn list_by_owner(db: &Db, owner: &str, before: Option<(i64, &str)>, limit: i64) -> Result<Vec<ConfigurationRow>, sqlx::Error> {
    let (at, id) = before.unwrap_or((i64::MAX, ""));
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM configurations WHERE owner_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(owner)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Counts one factory order of a saved configuration.
pub async fn count_order(tx: &mut Tx, config_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE configurations SET orders = orders + 1 WHERE id = $1").bind(config_id).execute(&mut **tx).await?;
    Ok(())
}

/// Kinds of configuration (equal model and options) by `saves` or by `orders`, most first:
/// `(saves, orders, the newest saved configuration of that kind)`.
pub async fn most_popular(db: &Db, by_orders: bool, limit: i64) -> Result<Vec<(i64, i64, ConfigurationRow)>, sqlx::Error> {
    let order = if by_orders { "orders DESC, saves DESC" } else { "saves DESC, orders DESC" };
    let having = if by_orders { " HAVING SUM(orders) > 0" } else { "" };
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT signature, COUNT(*) AS saves, CAST(SUM(orders) AS BIGINT) AS orders FROM configurations \
         GROUP BY signature{having} ORDER BY {order}, signature LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (signature, saves, orders) in rows {
        // The newest one stands for its kind: its price is the most recent.
        let row: Option<ConfigurationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM configurations WHERE signature = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(&signature)
        .fetch_optional(db.pool())
        .await?;
        if let Some(row) = row {
            out.push((saves, orders, row));
        }
    }
    Ok(out)
}
