//! Payments' use cases. Each money movement is one database transaction holding the posting,
//! the charge's new state, its event and the idempotency record, so they commit or vanish
//! together. Requests carry an idempotency key; a retry replays the first outcome, including
//! a refusal, and moves nothing again.

use std::sync::Arc;

use motorpool_platform::clock::Clock;
use motorpool_platform::db::{Db, Dialect, Tx};
use motorpool_platform::events::Outbox;
use motorpool_platform::idempotency::{self, Begin};
use motorpool_platform::metrics::Metrics;
use motorpool_platform::money::{CURRENCIES, Currency, Money};
use serde::{Deserialize, Serialize};

use crate::domain::{self, CardNumber, Posting};
use crate::events;
use crate::provider::{PaymentProvider, ProviderOutcome};
use crate::store::{self, ChargeRow, PostError, TxMeta};

/// Why a payment did not happen.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PaymentError {
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("the card was declined: {reason}")]
    Declined { reason: String },
    #[error("the payment provider is unavailable")]
    ProviderUnavailable,
    #[error("no such charge")]
    ChargeNotFound,
    #[error("the charge is {status}")]
    InvalidState { status: String },
    #[error("only {refundable} minor units can still be refunded")]
    RefundExceedsCapture { refundable: i64 },
    #[error("capture amount exceeds the authorisation of {authorized}")]
    CaptureExceedsAuthorization { authorized: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("idempotency key reused with another request")]
    KeyReused,
    #[error("a request with this idempotency key is still running")]
    KeyInProgress,
    #[error("the database is unavailable")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal,
}

impl PaymentError {
    /// Refusals are part of the request's outcome and are replayed; failures of ours or of
    /// the provider are not, so the client can retry them.
    fn is_final(&self) -> bool {
        !matches!(
            self,
            PaymentError::ProviderUnavailable
                | PaymentError::DatabaseUnavailable
                | PaymentError::Internal
                | PaymentError::KeyInProgress
                | PaymentError::KeyReused
        )
    }
}

fn internal(e: impl std::fmt::Display) -> PaymentError {
    tracing::error!(error = %e, "payments internal error");
    PaymentError::Internal
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        if motorpool_platform::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "payments database unavailable");
            return PaymentError::DatabaseUnavailable;
        }
        internal(e)
    }
}

/// An idempotency key with its scope (who and which operation).
pub struct Key {
    pub scope: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopUpDone {
    pub transaction_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub available_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefundDone {
    pub refund_id: String,
    pub charge: ChargeRow,
}

type Stored<T> = Result<T, PaymentError>;

pub struct Payments {
    pub db: Db,
    pub outbox: Outbox,
    pub clock: Clock,
    pub metrics: Metrics,
    pub provider: Arc<dyn PaymentProvider>,
}

pub struct ChargeCmd {
    pub user_id: String,
    pub amount: Money,
    pub reference: String,
    pub description: String,
}

impl Payments {
    pub async fn init(&self) -> anyhow::Result<()> {
        store::ensure_system_accounts(&self.db, CURRENCIES, self.clock.now_ms()).await?;
        Ok(())
    }

    /// Starts an idempotent operation: `Ok(None)` to proceed, `Ok(Some(outcome))` to replay.
    async fn begin<T: for<'de> Deserialize<'de>>(&self, key: &Key, fingerprint: &str) -> Result<Option<Stored<T>>, PaymentError> {
        match idempotency::begin(&self.db, &key.scope, &key.key, fingerprint, self.clock.now_ms()).await {
            Ok(Begin::Proceed) => Ok(None),
            Ok(Begin::Replay(stored)) => {
                let outcome: Stored<T> = serde_json::from_slice(&stored.body).map_err(internal)?;
                Ok(Some(outcome))
            }
            Err(p) if p.code == motorpool_platform::Code::IdempotencyKeyReused => Err(PaymentError::KeyReused),
            Err(p) if p.code == motorpool_platform::Code::IdempotencyInProgress => Err(PaymentError::KeyInProgress),
            Err(p) => Err(internal(p)),
        }
    }

    /// Commits a success: the outcome is recorded in the same transaction as its effects.
    async fn succeed<T: Serialize>(&self, mut tx: Tx, key: &Key, value: T) -> Result<T, PaymentError> {
        let stored: Stored<&T> = Ok(&value);
        let body = serde_json::to_vec(&stored).map_err(internal)?;
        let committed = async {
            idempotency::complete(&mut tx, &key.scope, &key.key, 200, &body).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = committed {
            // Nothing was applied: let a retry run again instead of waiting out the lease.
            idempotency::abandon(&self.db, &key.scope, &key.key).await;
            return Err(e.into());
        }
        self.outbox.wake();
        Ok(value)
    }

    /// Records a refusal (with its event, if any) so a retry replays it; forgets the attempt
    /// after a transient failure so a retry runs again.
    async fn fail<T>(&self, key: &Key, error: PaymentError, event: Option<events::ChargeFailed>) -> Result<T, PaymentError> {
        if error.is_final() {
            let stored: Stored<()> = Err(error.clone());
            let body = serde_json::to_vec(&stored).map_err(internal)?;
            let mut tx = self.db.begin_write().await?;
            if let Some(e) = event {
                self.outbox.add(&mut tx, events::CHARGE_FAILED, &e.user_id, &e).await?;
            }
            idempotency::complete(&mut tx, &key.scope, &key.key, 409, &body).await?;
            tx.commit().await?;
            self.outbox.wake();
            self.metrics.count("payments_refused_total", "Payments refused, by reason.", &[("reason", reason_label(&error))], 1);
        } else {
            idempotency::abandon(&self.db, &key.scope, &key.key).await;
        }
        Err(error)
    }

    async fn apply(&self, tx: &mut Tx, posting: &Posting, meta: &TxMeta<'_>) -> Result<(), PaymentError> {
        match store::post(tx, posting, meta).await {
            Ok(()) => Ok(()),
            Err(PostError::Insufficient(_)) => Err(PaymentError::InsufficientFunds),
            Err(PostError::Db(e)) => Err(e.into()),
        }
    }

    /// Brings money in from a card into the user's wallet.
    pub async fn top_up(&self, user_id: &str, amount: Money, card: &CardNumber, key: Key) -> Result<TopUpDone, PaymentError> {
        let fp = idempotency::fingerprint(&[
            b"top_up",
            user_id.as_bytes(),
            &amount.minor.to_be_bytes(),
            amount.currency.code().as_bytes(),
            card.digits().as_bytes(),
        ]);
        if let Some(replay) = self.begin::<TopUpDone>(&key, &fp).await? {
            return replay;
        }
        let provider_key = format!("{}:{}", key.scope, key.key);
        let outcome = match self.provider.charge_card(&provider_key, card, amount).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "card processor unavailable");
                return self.fail(&key, PaymentError::ProviderUnavailable, None).await;
            }
        };
        let provider_ref = match outcome {
            ProviderOutcome::Approved { provider_ref } => provider_ref,
            ProviderOutcome::Declined { reason } => {
                let event = events::ChargeFailed {
                    user_id: user_id.to_owned(),
                    amount: amount.to_view(),
                    reference: "top-up".into(),
                    reason: reason.clone(),
                };
                return self.fail(&key, PaymentError::Declined { reason }, Some(event)).await;
            }
        };
        let now = self.clock.now_ms();
        let txn_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        store::ensure_user_accounts(&mut tx, user_id, amount.currency, now).await?;
        let description = format!("Card top-up **** {} ({provider_ref})", card.last4());
        let meta = TxMeta { id: &txn_id, user_id, charge_id: None, reference: "top-up", description: &description, now };
        if let Err(e) = self.apply(&mut tx, &domain::top_up(user_id, amount), &meta).await {
            drop(tx);
            return self.fail(&key, e, None).await;
        }
        let available: (i64,) = sqlx::query_as("SELECT balance FROM accounts WHERE id = $1")
            .bind(domain::account_id(domain::AccountKind::Wallet, user_id, amount.currency))
            .fetch_one(&mut *tx)
            .await?;
        let event = events::WalletToppedUp {
            transaction_id: txn_id.clone(),
            user_id: user_id.to_owned(),
            amount: amount.to_view(),
            balance: Money::new(available.0, amount.currency).to_view(),
        };
        self.outbox.add(&mut tx, events::WALLET_TOPPED_UP, user_id, &event).await?;
        let done = TopUpDone {
            transaction_id: txn_id,
            currency: amount.currency.code().to_owned(),
            amount_minor: amount.minor,
            available_minor: available.0,
        };
        let done = self.succeed(tx, &key, done).await?;
        self.metrics.count("payments_top_ups_total", "Wallet top-ups.", &[("currency", amount.currency.code())], 1);
        Ok(done)
    }

    /// Claims the key inside `tx`: `Ok(None)` to proceed, `Ok(Some(outcome))` to replay.
    async fn claim<T: for<'de> Deserialize<'de>>(
        &self,
        tx: &mut Tx,
        key: &Key,
        fingerprint: &str,
    ) -> Result<Option<Stored<T>>, PaymentError> {
        match idempotency::claim(tx, &key.scope, &key.key, fingerprint, self.clock.now_ms()).await {
            Ok(Begin::Proceed) => Ok(None),
            Ok(Begin::Replay(stored)) => Ok(Some(serde_json::from_slice(&stored.body).map_err(internal)?)),
            Err(p) if p.code == motorpool_platform::Code::IdempotencyKeyReused => Err(PaymentError::KeyReused),
            Err(p) if p.code == motorpool_platform::Code::IdempotencyInProgress => Err(PaymentError::KeyInProgress),
            Err(p) => Err(internal(p)),
        }
    }

    /// Ends a claimed operation in its own transaction. A success or a refusal is stored with
    /// the key and committed with its effects or its event; refusals happen at the first,
    /// conditional statement, so a refused operation has written nothing but its record. Any
    /// other failure rolls everything back, the claim included, so a retry runs again.
    async fn settle<T: Serialize>(
        &self,
        mut tx: Tx,
        key: &Key,
        outcome: Result<T, PaymentError>,
        refusal_event: Option<events::ChargeFailed>,
    ) -> Result<T, PaymentError> {
        match outcome {
            Ok(value) => {
                let stored: Stored<&T> = Ok(&value);
                let body = serde_json::to_vec(&stored).map_err(internal)?;
                idempotency::complete(&mut tx, &key.scope, &key.key, 200, &body).await?;
                tx.commit().await?;
                self.outbox.wake();
                Ok(value)
            }
            Err(error) if error.is_final() => {
                let stored: Stored<()> = Err(error.clone());
                let body = serde_json::to_vec(&stored).map_err(internal)?;
                if let Some(e) = refusal_event {
                    self.outbox.add(&mut tx, events::CHARGE_FAILED, &e.user_id, &e).await?;
                }
                idempotency::complete(&mut tx, &key.scope, &key.key, 409, &body).await?;
                tx.commit().await?;
                self.outbox.wake();
                self.metrics.count("payments_refused_total", "Payments refused, by reason.", &[("reason", reason_label(&error))], 1);
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Takes money from the wallet: captured at once (`capture = true`) or held.
    pub async fn charge(&self, cmd: ChargeCmd, capture: bool, key: Key) -> Result<ChargeRow, PaymentError> {
        if cmd.amount.minor <= 0 {
            return Err(PaymentError::Invalid("the amount must be positive".into()));
        }
        let op: &[u8] = if capture { b"charge" } else { b"authorize" };
        let fp = idempotency::fingerprint(&[
            op,
            cmd.user_id.as_bytes(),
            &cmd.amount.minor.to_be_bytes(),
            cmd.amount.currency.code().as_bytes(),
            cmd.reference.as_bytes(),
            cmd.description.as_bytes(),
        ]);
        if capture && self.db.dialect() == Dialect::Postgres {
            match self.charge_in_one_statement(&cmd, &key, &fp).await {
                Ok(Some(charge)) => {
                    self.outbox.wake();
                    self.metrics.count("payments_charges_total", "Charges and authorisations made.", &[("kind", "charge")], 1);
                    return Ok(charge);
                }
                // Not covered, or the key is known: the general path tells which and answers.
                Ok(None) => {}
                // A concurrent request with the same key got there first: the general path
                // waits for it and replays its answer.
                Err(e) if motorpool_platform::db::is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut tx = self.db.begin_write().await?;
        if let Some(replay) = self.claim::<ChargeRow>(&mut tx, &key, &fp).await? {
            return replay;
        }
        let outcome = self.charge_in(&mut tx, &cmd, capture).await;
        let refusal = matches!(outcome, Err(PaymentError::InsufficientFunds)).then(|| events::ChargeFailed {
            user_id: cmd.user_id.clone(),
            amount: cmd.amount.to_view(),
            reference: cmd.reference.clone(),
            reason: "insufficient_funds".into(),
        });
        let charge = self.settle(tx, &key, outcome, refusal).await?;
        self.metrics.count(
            "payments_charges_total",
            "Charges and authorisations made.",
            &[("kind", if capture { "charge" } else { "authorization" })],
            1,
        );
        Ok(charge)
    }

    /// A captured charge in one statement (PostgreSQL); None when it wrote nothing because
    /// the wallet cannot cover it or the key is already known.
    async fn charge_in_one_statement(&self, cmd: &ChargeCmd, key: &Key, fingerprint: &str) -> Result<Option<ChargeRow>, sqlx::Error> {
        let charge = self.new_charge(cmd, true);
        let posting = domain::charge(&cmd.user_id, cmd.amount);
        let meta = TxMeta {
            id: &charge.id,
            user_id: &cmd.user_id,
            charge_id: Some(&charge.id),
            reference: &cmd.reference,
            description: &cmd.description,
            now: charge.created_at,
        };
        let (_, event) = self.outbox.prepare(events::CHARGE_SUCCEEDED, &charge.user_id, &events::ChargeSucceeded::from(&charge))?;
        let stored: Stored<&ChargeRow> = Ok(&charge);
        let body = serde_json::to_vec(&stored).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let done = store::Completion { scope: &key.scope, key: &key.key, fingerprint, status: 200, body: &body };
        let moved = store::charge_one_statement(&self.db, &posting, &meta, &charge, &event, &done).await?;
        Ok(moved.then_some(charge))
    }

    fn new_charge(&self, cmd: &ChargeCmd, capture: bool) -> ChargeRow {
        let now = self.clock.now_ms();
        ChargeRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: cmd.user_id.clone(),
            currency: cmd.amount.currency.code().to_owned(),
            authorized: cmd.amount.minor,
            captured: if capture { cmd.amount.minor } else { 0 },
            refunded: 0,
            status: if capture { "captured" } else { "authorized" }.to_owned(),
            reference: cmd.reference.clone(),
            description: cmd.description.clone(),
            created_at: now,
            updated_at: now,
        }
    }

    async fn charge_in(&self, tx: &mut Tx, cmd: &ChargeCmd, capture: bool) -> Result<ChargeRow, PaymentError> {
        let charge = self.new_charge(cmd, capture);
        let now = charge.created_at;
        let posting = if capture { domain::charge(&cmd.user_id, cmd.amount) } else { domain::authorize(&cmd.user_id, cmd.amount) };
        let meta = TxMeta {
            id: &charge.id,
            user_id: &cmd.user_id,
            charge_id: Some(&charge.id),
            reference: &cmd.reference,
            description: &cmd.description,
            now,
        };
        self.apply(tx, &posting, &meta).await?;
        store::insert_charge(tx, &charge).await?;
        if capture {
            self.outbox.add(tx, events::CHARGE_SUCCEEDED, &charge.user_id, &events::ChargeSucceeded::from(&charge)).await?;
        } else {
            self.outbox.add(tx, events::AUTHORIZATION_CREATED, &charge.user_id, &events::ChargeRef::from(&charge)).await?;
        }
        Ok(charge)
    }

    /// Captures `amount` of an authorisation; the rest goes back to the wallet.
    pub async fn capture(&self, charge_id: &str, amount: i64, key: Key) -> Result<ChargeRow, PaymentError> {
        let fp = idempotency::fingerprint(&[b"capture", charge_id.as_bytes(), &amount.to_be_bytes()]);
        let mut tx = self.db.begin_write().await?;
        if let Some(replay) = self.claim::<ChargeRow>(&mut tx, &key, &fp).await? {
            return replay;
        }
        let outcome = self.capture_in(&mut tx, charge_id, amount).await;
        self.settle(tx, &key, outcome, None).await
    }

    async fn capture_in(&self, tx: &mut Tx, charge_id: &str, amount: i64) -> Result<ChargeRow, PaymentError> {
        let current = store::find_charge_in(tx, charge_id).await?.ok_or(PaymentError::ChargeNotFound)?;
        if amount <= 0 || amount > current.authorized {
            return Err(PaymentError::CaptureExceedsAuthorization { authorized: current.authorized });
        }
        let currency = Currency::parse(&current.currency).map_err(internal)?;
        let now = self.clock.now_ms();
        let Some(charge) = store::mark_captured(tx, charge_id, amount, now).await? else {
            return Err(PaymentError::InvalidState { status: current.status });
        };
        let posting = domain::capture(&charge.user_id, currency, charge.authorized, amount);
        let txn_id = uuid::Uuid::now_v7().to_string();
        let meta = TxMeta {
            id: &txn_id,
            user_id: &charge.user_id,
            charge_id: Some(charge_id),
            reference: &charge.reference,
            description: &charge.description,
            now,
        };
        self.apply(tx, &posting, &meta).await.map_err(unexpected)?;
        self.outbox.add(tx, events::CHARGE_SUCCEEDED, &charge.user_id, &events::ChargeSucceeded::from(&charge)).await?;
        Ok(charge)
    }

    /// Releases an authorisation back to the wallet.
    pub async fn void(&self, charge_id: &str, key: Key) -> Result<ChargeRow, PaymentError> {
        let fp = idempotency::fingerprint(&[b"void", charge_id.as_bytes()]);
        let mut tx = self.db.begin_write().await?;
        if let Some(replay) = self.claim::<ChargeRow>(&mut tx, &key, &fp).await? {
            return replay;
        }
        let outcome = self.void_in(&mut tx, charge_id).await;
        self.settle(tx, &key, outcome, None).await
    }

    async fn void_in(&self, tx: &mut Tx, charge_id: &str) -> Result<ChargeRow, PaymentError> {
        let current = store::find_charge_in(tx, charge_id).await?.ok_or(PaymentError::ChargeNotFound)?;
        let currency = Currency::parse(&current.currency).map_err(internal)?;
        let now = self.clock.now_ms();
        let Some(charge) = store::mark_voided(tx, charge_id, now).await? else {
            return Err(PaymentError::InvalidState { status: current.status });
        };
        let txn_id = uuid::Uuid::now_v7().to_string();
        let meta = TxMeta {
            id: &txn_id,
            user_id: &charge.user_id,
            charge_id: Some(charge_id),
            reference: &charge.reference,
            description: &charge.description,
            now,
        };
        self.apply(tx, &domain::void(&charge.user_id, currency, charge.authorized), &meta).await.map_err(unexpected)?;
        self.outbox.add(tx, events::AUTHORIZATION_VOIDED, &charge.user_id, &events::ChargeRef::from(&charge)).await?;
        Ok(charge)
    }

    /// Returns captured money to the wallet; the total refunded never exceeds the capture.
    pub async fn refund(&self, charge_id: &str, amount: i64, reason: &str, key: Key) -> Result<RefundDone, PaymentError> {
        if amount <= 0 {
            return Err(PaymentError::Invalid("the amount must be positive".into()));
        }
        let fp = idempotency::fingerprint(&[b"refund", charge_id.as_bytes(), &amount.to_be_bytes(), reason.as_bytes()]);
        let mut tx = self.db.begin_write().await?;
        if let Some(replay) = self.claim::<RefundDone>(&mut tx, &key, &fp).await? {
            return replay;
        }
        let outcome = self.refund_in(&mut tx, charge_id, amount, reason).await;
        let done = self.settle(tx, &key, outcome, None).await?;
        self.metrics.count("payments_refunds_total", "Refunds made.", &[], 1);
        Ok(done)
    }

    async fn refund_in(&self, tx: &mut Tx, charge_id: &str, amount: i64, reason: &str) -> Result<RefundDone, PaymentError> {
        let current = store::find_charge_in(tx, charge_id).await?.ok_or(PaymentError::ChargeNotFound)?;
        if !matches!(current.status.as_str(), "captured" | "partially_refunded") {
            return Err(PaymentError::InvalidState { status: current.status });
        }
        let currency = Currency::parse(&current.currency).map_err(internal)?;
        let now = self.clock.now_ms();
        let Some(charge) = store::add_refund(tx, charge_id, amount, now).await? else {
            let (captured, refunded, status): (i64, i64, String) =
                sqlx::query_as("SELECT captured, refunded, status FROM charges WHERE id = $1").bind(charge_id).fetch_one(&mut **tx).await?;
            if status == "refunded" {
                return Err(PaymentError::InvalidState { status });
            }
            return Err(PaymentError::RefundExceedsCapture { refundable: captured - refunded });
        };
        let refund_id = uuid::Uuid::now_v7().to_string();
        store::insert_refund(tx, &refund_id, charge_id, amount, reason, now).await?;
        let money = Money::new(amount, currency);
        let meta = TxMeta {
            id: &refund_id,
            user_id: &charge.user_id,
            charge_id: Some(charge_id),
            reference: &charge.reference,
            description: reason,
            now,
        };
        self.apply(tx, &domain::refund(&charge.user_id, money), &meta).await.map_err(unexpected)?;
        let event = events::RefundCompleted {
            refund_id: refund_id.clone(),
            charge_id: charge_id.to_owned(),
            user_id: charge.user_id.clone(),
            amount: money.to_view(),
            reference: charge.reference.clone(),
        };
        self.outbox.add(tx, events::REFUND_COMPLETED, &charge.user_id, &event).await?;
        Ok(RefundDone { refund_id, charge })
    }
}

/// A refusal after an earlier statement of the same operation wrote something would break
/// "refusals write nothing"; it cannot happen when the state machine holds, and if it ever
/// did, it must roll back as an internal error rather than be stored as a refusal.
fn unexpected(e: PaymentError) -> PaymentError {
    match e {
        e @ (PaymentError::Internal | PaymentError::DatabaseUnavailable) => e,
        other => internal(format_args!("posting refused after the state changed: {other}")),
    }
}

fn reason_label(e: &PaymentError) -> &'static str {
    match e {
        PaymentError::InsufficientFunds => "insufficient_funds",
        PaymentError::Declined { .. } => "declined",
        PaymentError::InvalidState { .. } => "invalid_state",
        PaymentError::RefundExceedsCapture { .. } => "refund_exceeds_capture",
        PaymentError::CaptureExceedsAuthorization { .. } => "capture_exceeds_authorization",
        PaymentError::ChargeNotFound => "not_found",
        _ => "other",
    }
}
