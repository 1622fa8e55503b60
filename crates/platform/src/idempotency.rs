//! Idempotent unsafe requests. A request that carries an `Idempotency-Key` is recorded before
//! it runs; a retry with the same key and body gets the original response, the same key with
//! another body is refused (422), and a second request while the first is still running is
//! refused (409) — so two concurrent requests with one key have one effect. A request that
//! died mid-way (its record never completed) can be retried after a lease.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::db::{Db, Tx};
use crate::problem::{Code, Problem};

pub const HEADER: &str = "idempotency-key";

/// How long an unfinished record blocks retries before it may be taken over.
pub const LEASE_MS: i64 = 30_000;

/// The key of a request, validated: 1 to 255 visible ASCII characters. `None` when absent.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value.to_str().map_err(|_| Problem::new(Code::BadRequest).detail("Idempotency-Key must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::new(Code::BadRequest).detail("Idempotency-Key must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(key.to_owned()))
}

/// Like [`key_from`], but the key is mandatory.
pub fn require_key(headers: &HeaderMap) -> Result<String, Problem> {
    key_from(headers)?
        .ok_or_else(|| Problem::new(Code::BadRequest).field("Idempotency-Key", "this request needs an Idempotency-Key header"))
}

/// A fingerprint of what the request asks for.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with a request.
#[derive(Debug)]
pub enum Begin {
    /// First time (or a takeover of an abandoned attempt): do the work, then [`complete`].
    Proceed,
    /// Already done: answer with this.
    Replay(Stored),
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub body: Vec<u8>,
}

impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut resp = (status, self.body).into_response();
        let content_type = if status.is_success() { "application/json" } else { crate::problem::CONTENT_TYPE };
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        resp
    }
}

/// (request fingerprint, stored status, stored response, created at).
type RecordRow = (String, Option<i64>, Option<Vec<u8>>, i64);

/// Inserts the record of an attempt; true when this call created it.
async fn try_insert(conn: &mut sqlx::AnyConnection, scope: &str, key: &str, fingerprint: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

async fn read(conn: &mut sqlx::AnyConnection, scope: &str, key: &str) -> Result<Option<RecordRow>, sqlx::Error> {
    sqlx::query_as("SELECT request_hash, status, response, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
}

/// Records the start of request `key` in `scope` (e.g. `"<user>:top-up"`).
pub async fn begin(db: &Db, scope: &str, key: &str, fingerprint: &str, now_ms: i64) -> Result<Begin, Problem> {
    let mut conn = db.pool().acquire().await?;
    if try_insert(&mut conn, scope, key, fingerprint, now_ms).await? {
        return Ok(Begin::Proceed);
    }
    let row = read(&mut conn, scope, key).await?;
    drop(conn);
    let Some((hash, status, response, created_at)) = row else {
        // Deleted between our insert and read (an abandoned attempt): try once more.
        return Box::pin(begin(db, scope, key, fingerprint, now_ms)).await;
    };
    if hash != fingerprint {
        return Err(Problem::new(Code::IdempotencyKeyReused));
    }
    if let Some(status) = status {
        return Ok(Begin::Replay(Stored { status: status as u16, body: response.unwrap_or_default() }));
    }
    if created_at < now_ms - LEASE_MS {
        // Take over an attempt that never finished; only one taker wins the swap.
        let taken =
            sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE scope = $2 AND key = $3 AND status IS NULL AND created_at = $4")
                .bind(now_ms)
                .bind(scope)
                .bind(key)
                .bind(created_at)
                .execute(db.pool())
                .await?
                .rows_affected();
        if taken == 1 {
            return Ok(Begin::Proceed);
        }
    }
    Err(Problem::new(Code::IdempotencyInProgress).retry_after(1))
}

/// Claims `key` inside the transaction that will make the effect, for operations with no
/// outside call: the record, the effect and the stored response then commit together, in
/// one round of the database. A concurrent request with the same key waits on the row until
/// the first commits and then replays its answer; if the first rolled back, it runs itself.
pub async fn claim(tx: &mut Tx, scope: &str, key: &str, fingerprint: &str, now_ms: i64) -> Result<Begin, Problem> {
    if try_insert(tx, scope, key, fingerprint, now_ms).await? {
        return Ok(Begin::Proceed);
    }
    let row = read(tx, scope, key).await?;
    match row {
        Some((hash, _, _, _)) if hash != fingerprint => Err(Problem::new(Code::IdempotencyKeyReused)),
        Some((_, Some(status), response, _)) => Ok(Begin::Replay(Stored { status: status as u16, body: response.unwrap_or_default() })),
        _ => Err(Problem::new(Code::IdempotencyInProgress).retry_after(1)),
    }
}

/// Stores the response inside the transaction that made the effect, so effect and record
/// commit together.
pub async fn complete(tx: &mut Tx, scope: &str, key: &str, status: u16, body: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET status = $1, response = $2 WHERE scope = $3 AND key = $4")
        .bind(i64::from(status))
        .bind(body.to_vec())
        .bind(scope)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores a response for a request that changed nothing (a refusal worth replaying).
pub async fn complete_outside(db: &Db, scope: &str, key: &str, status: u16, body: &[u8]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    complete(&mut tx, scope, key, status, body).await?;
    tx.commit().await
}

/// Forgets an unfinished attempt that failed before any effect, so a retry can run now.
pub async fn abandon(db: &Db, scope: &str, key: &str) {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(db.pool())
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not release an idempotency key; it frees itself after the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
    }

    #[test]
    fn keys_are_validated() {
        let mut h = HeaderMap::new();
        assert!(key_from(&h).unwrap().is_none());
        h.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(key_from(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert!(key_from(&h).is_err());
    }
}
