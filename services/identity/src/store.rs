//! All of identity's SQL. Functions that must commit together with an event take the
//! transaction; the rest take the pool.

use motorpool_platform::auth::Role;
use motorpool_platform::db::{Db, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub role: Role,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const USER_COLUMNS: &str = "id, email, password_hash, full_name, role, disabled_at, created_at, updated_at";

fn user_from(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        full_name: row.try_get("full_name")?,
        role: Role::parse(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role}").into()))?,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert_user(tx: &mut Tx, user: &UserRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, full_name, role, disabled_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(&user.full_name)
    .bind(user.role.as_str())
    .bind(user.disabled_at)
    .bind(user.created_at)
    .bind(user.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(email).fetch_optional(db.pool()).await?;
    row.as_ref().map(user_from).transpose()
}

/// Reads a user inside a transaction: a handler that holds a transaction must not take a
/// second pool connection, or concurrent requests can exhaust the pool and wait on each other.
pub async fn find_user_in(tx: &mut Tx, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(user_from).transpose()
}

pub async fn find_user(db: &Db, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(user_from).transpose()
}

/// Users ordered by id (UUIDv7, so by creation), after `after` if given, optionally filtered
/// by a substring of email or name.
pub async fn list_users(db: &Db, after: Option<&str>, query: Option<&str>, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
    let pattern = query.map(|q| format!("%{}%", q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR id > $1) \
         AND ($2 IS NULL OR lower(email) LIKE $2 ESCAPE '\\' OR lower(full_name) LIKE $2 ESCAPE '\\') \
         ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(pattern).bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(user_from).collect()
}

/// Sets role and disabled state; returns the row as it was before.
pub async fn update_user(tx: &mut Tx, id: &str, role: Role, disabled_at: Option<i64>, now: i64) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let before = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **tx).await?;
    let Some(before) = before.as_ref().map(user_from).transpose()? else { return Ok(None) };
    sqlx::query("UPDATE users SET role = $1, disabled_at = $2, updated_at = $3 WHERE id = $4")
        .bind(role.as_str())
        .bind(disabled_at)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(before))
}

pub async fn insert_refresh_token(
    tx: &mut Tx,
    hash: &str,
    family: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(hash)
        .bind(family)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks a live refresh token used, in one statement so two concurrent refreshes with the
/// same token cannot both succeed. Returns its family and user when this call used it.
pub async fn use_refresh_token(tx: &mut Tx, hash: &str, now: i64) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
         RETURNING family_id, user_id",
    )
    .bind(now)
    .bind(hash)
    .fetch_optional(&mut **tx)
    .await
}

/// The state of a refresh token that could not be used: (family, already used?).
pub async fn find_refresh_token(tx: &mut Tx, hash: &str) -> Result<Option<(String, bool)>, sqlx::Error> {
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1").bind(hash).fetch_optional(&mut **tx).await?;
    Ok(row.map(|(family, used)| (family, used.is_some())))
}

pub async fn revoke_family(tx: &mut Tx, family: &str, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(family)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

pub async fn revoke_user_tokens(tx: &mut Tx, user_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}
