//! All of payments' SQL. A posting is applied inside the caller's transaction: tracked
//! accounts are changed by a conditional update that the database refuses to take below
//! the account's minimum, entries are inserted in one statement, and nothing is checked
//! before it is written.

use motorpool_platform::db::{Db, Tx};
use motorpool_platform::events::OutboxRow;
use motorpool_platform::money::Currency;

use crate::domain::{AccountKind, PLATFORM, Posting, account_id};

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("insufficient funds in {0}")]
    Insufficient(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates a user's wallet and held accounts in `currency` if missing.
pub async fn ensure_user_accounts(tx: &mut Tx, user: &str, currency: Currency, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (id, kind, owner_id, currency, tracked, balance, min_balance, created_at) \
         VALUES ($1, 'wallet', $3, $4, $5, 0, 0, $6), ($2, 'held', $3, $4, $5, 0, 0, $6) ON CONFLICT DO NOTHING",
    )
    .bind(account_id(AccountKind::Wallet, user, currency))
    .bind(account_id(AccountKind::Held, user, currency))
    .bind(user)
    .bind(currency.code())
    .bind(true)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates the platform's accounts for every currency (at start).
pub async fn ensure_system_accounts(db: &Db, currencies: &[Currency], now: i64) -> Result<(), sqlx::Error> {
    for c in currencies {
        for kind in [AccountKind::CardClearing, AccountKind::Revenue] {
            sqlx::query(
                "INSERT INTO accounts (id, kind, owner_id, currency, tracked, balance, min_balance, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, 0, $6) ON CONFLICT DO NOTHING",
            )
            .bind(account_id(kind, PLATFORM, *c))
            .bind(kind.as_str())
            .bind(PLATFORM)
            .bind(c.code())
            .bind(false)
            .bind(now)
            .execute(db.pool())
            .await?;
        }
    }
    Ok(())
}

pub struct TxMeta<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub charge_id: Option<&'a str>,
    pub reference: &'a str,
    pub description: &'a str,
    pub now: i64,
}

/// Applies a balanced posting. Tracked accounts are updated in a fixed order (by id) so two
/// postings never wait on each other's locks in opposite orders.
pub async fn post(tx: &mut Tx, posting: &Posting, meta: &TxMeta<'_>) -> Result<(), PostError> {
    debug_assert!(posting.is_balanced());
    let mut tracked: Vec<_> = posting.legs.iter().filter(|l| l.kind.is_tracked()).collect();
    tracked.sort_by(|a, b| a.account.cmp(&b.account));
    for leg in tracked {
        let changed = sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance + $1 >= min_balance")
            .bind(leg.amount)
            .bind(&leg.account)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(PostError::Insufficient(leg.account.clone()));
        }
    }
    sqlx::query(
        "INSERT INTO transactions (id, kind, user_id, charge_id, reference, description, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(meta.id)
    .bind(posting.kind.as_str())
    .bind(meta.user_id)
    .bind(meta.charge_id)
    .bind(meta.reference)
    .bind(meta.description)
    .bind(meta.now)
    .execute(&mut **tx)
    .await?;
    let mut sql = String::from("INSERT INTO entries (transaction_id, account_id, amount, created_at) VALUES ");
    for i in 0..posting.legs.len() {
        let n = i * 2;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("($1, ${}, ${}, $2)", n + 3, n + 4));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(meta.id).bind(meta.now);
    for leg in &posting.legs {
        q = q.bind(&leg.account).bind(leg.amount);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The idempotency record a one-statement posting creates, already completed.
pub struct Completion<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub status: u16,
    pub body: &'a [u8],
}

/// PostgreSQL only: a captured charge as ONE autocommit statement (a data-modifying CTE)
/// instead of a transaction of nine round trips: the conditional wallet debit, and — only if
/// it succeeded — the transaction, its entries, the charge, the outbox event and the
/// idempotency record with its response. Returns false, having written nothing, when the
/// wallet cannot cover it or the key is already known; the caller then takes the general
/// path, which tells those cases apart. A concurrent request with the same key makes this
/// statement fail on the key's primary key, rolled back whole, and it takes the general path
/// too (where it waits for the other and replays its answer).
///
/// The general path ([`post`] and friends, the same SQL on both engines) stays the
/// reference; this is its equivalent for the hottest operation, for postings whose only
/// tracked leg is the debited wallet (so there is one row lock and no lock ordering to keep).
pub async fn charge_one_statement(
    db: &Db,
    posting: &Posting,
    meta: &TxMeta<'_>,
    charge: &ChargeRow,
    event: &OutboxRow,
    done: &Completion<'_>,
) -> Result<bool, sqlx::Error> {
    let [debit, credit] = posting.legs.as_slice() else {
        return Err(sqlx::Error::Protocol("charge_one_statement takes a two-leg posting".into()));
    };
    if !debit.kind.is_tracked() || credit.kind.is_tracked() || debit.amount >= 0 {
        return Err(sqlx::Error::Protocol("charge_one_statement takes a wallet debit to an untracked account".into()));
    }
    let moved: i64 = sqlx::query_scalar(
        "WITH moved AS ( \
           UPDATE accounts SET balance = balance + $1 \
           WHERE id = $2 AND tracked AND balance + $1 >= min_balance \
             AND NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE scope = $25 AND key = $26) \
           RETURNING id), \
         k AS ( \
           INSERT INTO idempotency_keys (scope, key, request_hash, created_at, status, response) \
           SELECT $25, $26, $27, $9, $23, $24 FROM moved), \
         t AS ( \
           INSERT INTO transactions (id, kind, user_id, charge_id, reference, description, created_at) \
           SELECT $3, $4, $5, $6, $7, $8, $9 FROM moved RETURNING id), \
         e AS ( \
           INSERT INTO entries (transaction_id, account_id, amount, created_at) \
           SELECT t.id, l.account_id, l.amount, $9 FROM t CROSS JOIN (VALUES ($2, $1), ($10, $11)) AS l (account_id, amount)), \
         c AS ( \
           INSERT INTO charges (id, user_id, currency, authorized, captured, refunded, status, reference, description, created_at, updated_at) \
           SELECT $6, $5, $12, $13, $14, $15, $16, $7, $8, $17, $18 FROM moved), \
         o AS ( \
           INSERT INTO outbox (id, subject, payload, created_at) SELECT $19, $20, $21, $22 FROM moved) \
         SELECT COUNT(*) FROM moved",
    )
    .bind(debit.amount)
    .bind(&debit.account)
    .bind(meta.id)
    .bind(posting.kind.as_str())
    .bind(meta.user_id)
    .bind(&charge.id)
    .bind(meta.reference)
    .bind(meta.description)
    .bind(meta.now)
    .bind(&credit.account)
    .bind(credit.amount)
    .bind(&charge.currency)
    .bind(charge.authorized)
    .bind(charge.captured)
    .bind(charge.refunded)
    .bind(&charge.status)
    .bind(charge.created_at)
    .bind(charge.updated_at)
    .bind(&event.id)
    .bind(&event.subject)
    .bind(&event.payload)
    .bind(event.created_at)
    .bind(i64::from(done.status))
    .bind(done.body)
    .bind(done.scope)
    .bind(done.key)
    .bind(done.fingerprint)
    .fetch_one(db.pool())
    .await?;
    Ok(moved == 1)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ChargeRow {
    pub id: String,
    pub user_id: String,
    pub currency: String,
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub status: String,
    pub reference: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const CHARGE_COLUMNS: &str =
    "id, user_id, currency, authorized, captured, refunded, status, reference, description, created_at, updated_at";

pub async fn insert_charge(tx: &mut Tx, c: &ChargeRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO charges (id, user_id, currency, authorized, captured, refunded, status, reference, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&c.id)
    .bind(&c.user_id)
    .bind(&c.currency)
    .bind(c.authorized)
    .bind(c.captured)
    .bind(c.refunded)
    .bind(&c.status)
    .bind(&c.reference)
    .bind(&c.description)
    .bind(c.created_at)
    .bind(c.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_charge(db: &Db, id: &str) -> Result<Option<ChargeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Reads a charge inside a transaction (never a second connection while holding one).
pub async fn find_charge_in(tx: &mut Tx, id: &str) -> Result<Option<ChargeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Moves an authorised charge to captured; None when it was not (or no longer) authorised.
pub async fn mark_captured(tx: &mut Tx, id: &str, amount: i64, now: i64) -> Result<Option<ChargeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE charges SET status = 'captured', captured = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'authorized' AND $1 <= authorized RETURNING {CHARGE_COLUMNS}"
    )))
    .bind(amount)
    .bind(now)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn mark_voided(tx: &mut Tx, id: &str, now: i64) -> Result<Option<ChargeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE charges SET status = 'voided', updated_at = $1 WHERE id = $2 AND status = 'authorized' RETURNING {CHARGE_COLUMNS}"
    )))
    .bind(now)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Adds a refund to a captured charge, only while the total stays within the capture: the
/// database decides, so concurrent refunds cannot together exceed it.
pub async fn add_refund(tx: &mut Tx, id: &str, amount: i64, now: i64) -> Result<Option<ChargeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE charges SET refunded = refunded + $1, \
           status = CASE WHEN refunded + $1 >= captured THEN 'refunded' ELSE 'partially_refunded' END, updated_at = $2 \
         WHERE id = $3 AND status IN ('captured', 'partially_refunded') AND refunded + $1 <= captured RETURNING {CHARGE_COLUMNS}"
    )))
    .bind(amount)
    .bind(now)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn insert_refund(tx: &mut Tx, id: &str, charge_id: &str, amount: i64, reason: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refunds (id, charge_id, amount, reason, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(charge_id)
        .bind(amount)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub amount: i64,
    pub reason: String,
}

pub async fn list_refunds(db: &Db, charge_id: &str) -> Result<Vec<RefundRow>, sqlx::Error> {
    sqlx::query_as("SELECT amount, reason FROM refunds WHERE charge_id = $1 ORDER BY created_at, id")
        .bind(charge_id)
        .fetch_all(db.pool())
        .await
}

/// (currency, wallet balance, held balance) for each currency the user has.
pub async fn balances(db: &Db, user: &str) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT w.currency, w.balance, h.balance FROM accounts w JOIN accounts h \
           ON h.owner_id = w.owner_id AND h.currency = w.currency AND h.kind = 'held' \
         WHERE w.owner_id = $1 AND w.kind = 'wallet' ORDER BY w.currency",
    )
    .bind(user)
    .fetch_all(db.pool())
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: String,
    pub kind: String,
    pub charge_id: Option<String>,
    pub reference: String,
    pub description: String,
    pub created_at: i64,
    pub currency: String,
    pub wallet_change: i64,
    pub held_change: i64,
}

/// A user's transactions, newest first, with what each did to their wallet and holds.
pub async fn list_transactions(db: &Db, user: &str, before: Option<&str>, limit: i64) -> Result<Vec<TransactionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.kind, t.charge_id, t.reference, t.description, t.created_at, a.currency, \
           CAST(SUM(CASE WHEN a.kind = 'wallet' THEN e.amount ELSE 0 END) AS BIGINT) AS wallet_change, \
           CAST(SUM(CASE WHEN a.kind = 'held' THEN e.amount ELSE 0 END) AS BIGINT) AS held_change \
         FROM transactions t JOIN entries e ON e.transaction_id = t.id JOIN accounts a ON a.id = e.account_id \
         WHERE t.user_id = $1 AND ($2 IS NULL OR t.id < $2) AND a.owner_id = $1 \
         GROUP BY t.id, t.kind, t.charge_id, t.reference, t.description, t.created_at, a.currency \
         ORDER BY t.id DESC LIMIT $3",
    )
    .bind(user)
    .bind(before)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// The ledger's health: per currency, the sum of all entries (must be 0), and the number of
/// tracked accounts whose stored balance differs from the sum of their entries (must be 0).
pub async fn ledger_check(db: &Db) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.currency, \
           CAST(COALESCE((SELECT SUM(e.amount) FROM entries e JOIN accounts x ON x.id = e.account_id WHERE x.currency = a.currency), 0) AS BIGINT), \
           CAST(SUM(CASE WHEN a.tracked AND a.balance <> COALESCE((SELECT SUM(e.amount) FROM entries e WHERE e.account_id = a.id), 0) THEN 1 ELSE 0 END) AS BIGINT) \
         FROM accounts a GROUP BY a.currency ORDER BY a.currency",
    )
    .fetch_all(db.pool())
    .await
}

pub async fn upsert_customer(tx: &mut Tx, user_id: &str, email: &str, full_name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (user_id, email, full_name) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, full_name = excluded.full_name",
    )
    .bind(user_id)
    .bind(email)
    .bind(full_name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_customer(db: &Db, user_id: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, full_name FROM customers WHERE user_id = $1").bind(user_id).fetch_optional(db.pool()).await
}
