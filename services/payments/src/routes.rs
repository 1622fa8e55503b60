//! Payments' HTTP adapters for people: the wallet, top-ups, paying from the wallet, the
//! transaction history, invoices, and the admin's refunds and ledger check.

use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use motorpool_platform::auth::{Admin, Caller, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::idempotency;
use motorpool_platform::money::{Money, MoneyView};
use motorpool_platform::problem::{ApiJson, ApiResult, Code, FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{ChargeCmd, Key, PaymentError, Payments};
use crate::domain::CardNumber;
use crate::store::{self, ChargeRow};

#[derive(Clone)]
pub struct AppState {
    pub payments: Arc<Payments>,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/payments/wallet", get(wallet))
        .route("/api/payments/wallet/top-up", post(top_up))
        .route("/api/payments/charges", post(pay))
        .route("/api/payments/charges/{id}", get(get_charge))
        .route("/api/payments/transactions", get(transactions))
        .route("/api/payments/invoices/{id}", get(invoice))
        .route("/api/admin/payments/charges/{id}/refunds", post(refund))
        .route("/api/admin/payments/ledger", get(ledger))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(wallet, top_up, pay, get_charge, transactions, invoice, refund, ledger),
    components(schemas(WalletView, CurrencyBalance, TopUpRequest, TopUpView, PayRequest, ChargeView, TransactionView, TransactionPage, InvoiceView, InvoiceLine, RefundRequest, RefundView, LedgerView, LedgerCurrency, MoneyView)),
    tags((name = "payments", description = "Wallets, charges, refunds and invoices"))
)]
pub struct ApiDoc;

impl From<PaymentError> for Problem {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::InsufficientFunds => Problem::new(Code::InsufficientFunds),
            PaymentError::Declined { reason } => Problem::new(Code::PaymentDeclined).detail(reason),
            PaymentError::ProviderUnavailable => Problem::new(Code::ProviderUnavailable).retry_after(5),
            PaymentError::ChargeNotFound => Problem::not_found("charge"),
            PaymentError::InvalidState { status } => Problem::new(Code::InvalidState).detail(format!("the charge is {status}")),
            PaymentError::RefundExceedsCapture { refundable } => {
                Problem::new(Code::RefundExceedsCapture).detail(format!("at most {refundable} minor units can still be refunded"))
            }
            PaymentError::CaptureExceedsAuthorization { authorized } => Problem::validation(vec![FieldError {
                field: "amount".into(),
                message: format!("must be between 1 and {authorized} minor units"),
            }]),
            PaymentError::Invalid(message) => Problem::validation(vec![FieldError { field: "amount".into(), message }]),
            PaymentError::KeyReused => Problem::new(Code::IdempotencyKeyReused),
            PaymentError::KeyInProgress => Problem::new(Code::IdempotencyInProgress).retry_after(1),
            PaymentError::DatabaseUnavailable => Problem::new(Code::DatabaseUnavailable).retry_after(1),
            PaymentError::Internal => Problem::new(Code::Internal),
        }
    }
}

fn money(view: &MoneyView, field: &str) -> Result<Money, Problem> {
    let m = view.parse().map_err(|e| Problem::validation(vec![FieldError { field: field.into(), message: e.to_string() }]))?;
    if m.minor <= 0 {
        return Err(Problem::validation(vec![FieldError { field: field.into(), message: "must be positive".into() }]));
    }
    Ok(m)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyBalance {
    pub currency: String,
    /// Spendable now.
    pub available: MoneyView,
    /// Held by authorisations not yet captured or voided.
    pub held: MoneyView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletView {
    pub user_id: String,
    pub balances: Vec<CurrencyBalance>,
}

/// The caller's wallet, per currency.
#[utoipa::path(get, path = "/api/payments/wallet", tag = "payments", security(("bearer" = [])), responses((status = 200, body = WalletView)))]
async fn wallet(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<WalletView>> {
    let rows = store::balances(&s.payments.db, &caller.user_id).await?;
    let balances = rows
        .into_iter()
        .map(|(c, a, h)| CurrencyBalance { available: MoneyView::from_minor(a, &c), held: MoneyView::from_minor(h, &c), currency: c })
        .collect();
    Ok(Json(WalletView { user_id: caller.user_id, balances }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TopUpRequest {
    pub amount: MoneyView,
    /// Test cards: 4242424242424242 approves, 4000000000000002 is declined.
    pub card_number: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopUpView {
    pub transaction_id: String,
    pub amount: MoneyView,
    pub available: MoneyView,
}

/// Move money from a card into the wallet. Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/payments/wallet/top-up", tag = "payments", request_body = TopUpRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "unique per top-up; a retry returns the first answer")),
    responses((status = 201, body = TopUpView), (status = 402, description = "payment_declined"), (status = 422, description = "validation_failed or idempotency_key_reused")))]
async fn top_up(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TopUpRequest>,
) -> ApiResult<Response> {
    let key = idempotency::require_key(&headers)?;
    let amount = money(&body.amount, "amount")?;
    if amount.minor > 100_000_000 {
        return Err(Problem::validation(vec![FieldError { field: "amount".into(), message: "at most 1000000 per top-up".into() }]));
    }
    let card = CardNumber::parse(&body.card_number).ok_or_else(|| {
        Problem::validation(vec![FieldError { field: "cardNumber".into(), message: "is not a valid card number".into() }])
    })?;
    let key = Key { scope: format!("{}:top-up", caller.user_id), key };
    let done = s.payments.top_up(&caller.user_id, amount, &card, key).await?;
    let out = TopUpView {
        transaction_id: done.transaction_id,
        amount: MoneyView::from_minor(done.amount_minor, &done.currency),
        available: MoneyView::from_minor(done.available_minor, &done.currency),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PayRequest {
    pub amount: MoneyView,
    /// What the payment is for, shown on the invoice (e.g. an order number).
    pub reference: String,
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeView {
    pub id: String,
    pub status: String,
    pub authorized: MoneyView,
    pub captured: MoneyView,
    pub refunded: MoneyView,
    pub reference: String,
    pub description: String,
    pub invoice_id: String,
    pub created_at: String,
}

impl From<&ChargeRow> for ChargeView {
    fn from(c: &ChargeRow) -> Self {
        Self {
            id: c.id.clone(),
            status: c.status.clone(),
            authorized: MoneyView::from_minor(c.authorized, &c.currency),
            captured: MoneyView::from_minor(c.captured, &c.currency),
            refunded: MoneyView::from_minor(c.refunded, &c.currency),
            reference: c.reference.clone(),
            description: c.description.clone(),
            invoice_id: c.id.clone(),
            created_at: rfc3339_ms(c.created_at),
        }
    }
}

fn text_field(value: &str, field: &str, max: usize) -> Result<String, Problem> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Problem::validation(vec![FieldError {
            field: field.into(),
            message: format!("must be 1 to {max} printable characters"),
        }]));
    }
    Ok(v.to_owned())
}

/// Pay from the wallet. Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/payments/charges", tag = "payments", request_body = PayRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "unique per payment")),
    responses((status = 201, body = ChargeView), (status = 409, description = "insufficient_funds")))]
async fn pay(State(s): State<AppState>, caller: Caller, headers: HeaderMap, ApiJson(body): ApiJson<PayRequest>) -> ApiResult<Response> {
    let key = idempotency::require_key(&headers)?;
    let amount = money(&body.amount, "amount")?;
    let cmd = ChargeCmd {
        user_id: caller.user_id.clone(),
        amount,
        reference: text_field(&body.reference, "reference", 120)?,
        description: text_field(&body.description, "description", 200)?,
    };
    let key = Key { scope: format!("{}:charge", caller.user_id), key };
    let charge = s.payments.charge(cmd, true, key).await?;
    Ok((StatusCode::CREATED, Json(ChargeView::from(&charge))).into_response())
}

async fn owned_charge(s: &AppState, caller: &Caller, id: &str) -> Result<ChargeRow, Problem> {
    let charge = store::find_charge(&s.payments.db, id).await?.ok_or_else(|| Problem::not_found("charge"))?;
    caller.require_owner(&charge.user_id, "charge")?;
    Ok(charge)
}

/// One of the caller's charges.
#[utoipa::path(get, path = "/api/payments/charges/{id}", tag = "payments", security(("bearer" = [])), responses((status = 200, body = ChargeView), (status = 404)))]
async fn get_charge(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<ChargeView>> {
    Ok(Json(ChargeView::from(&owned_charge(&s, &caller, &id).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub id: String,
    pub kind: String,
    /// What it did to the wallet (negative: money left it).
    pub wallet_change: MoneyView,
    /// What it did to held money.
    pub held_change: MoneyView,
    pub reference: String,
    pub description: String,
    pub charge_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionPage {
    pub items: Vec<TransactionView>,
    pub next_cursor: Option<String>,
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/api/payments/transactions", tag = "payments", params(PageQuery), security(("bearer" = [])), responses((status = 200, body = TransactionPage)))]
async fn transactions(State(s): State<AppState>, caller: Caller, Query(q): Query<PageQuery>) -> ApiResult<Json<TransactionPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Problem::validation(vec![FieldError { field: "limit".into(), message: "must be between 1 and 200".into() }]));
    }
    let rows = store::list_transactions(&s.payments.db, &caller.user_id, q.cursor.as_deref(), limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<TransactionView> = rows
        .iter()
        .take(limit as usize)
        .map(|t| TransactionView {
            id: t.id.clone(),
            kind: t.kind.clone(),
            wallet_change: MoneyView::from_minor(t.wallet_change, &t.currency),
            held_change: MoneyView::from_minor(t.held_change, &t.currency),
            reference: t.reference.clone(),
            description: t.description.clone(),
            charge_id: t.charge_id.clone(),
            created_at: rfc3339_ms(t.created_at),
        })
        .collect();
    let next_cursor = if has_more { items.last().map(|t| t.id.clone()) } else { None };
    Ok(Json(TransactionPage { items, next_cursor }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    pub description: String,
    pub amount: MoneyView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    pub invoice_id: String,
    pub number: String,
    pub issued_at: String,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub reference: String,
    pub status: String,
    pub lines: Vec<InvoiceLine>,
    pub total: MoneyView,
    pub refunds: Vec<InvoiceLine>,
    pub amount_due_after_refunds: MoneyView,
}

/// An invoice for a captured charge: JSON, or a printable page when the client accepts HTML.
#[utoipa::path(get, path = "/api/payments/invoices/{id}", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = InvoiceView), (status = 404), (status = 409, description = "invalid_state: not captured")))]
async fn invoice(State(s): State<AppState>, caller: Caller, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let charge = owned_charge(&s, &caller, &id).await?;
    if charge.captured == 0 {
        return Err(
            Problem::new(Code::InvalidState).detail(format!("the charge is {}; invoices exist for captured charges", charge.status))
        );
    }
    let customer = store::find_customer(&s.payments.db, &charge.user_id).await?;
    let refunds = store::list_refunds(&s.payments.db, &charge.id).await?;
    let inv = InvoiceView {
        invoice_id: charge.id.clone(),
        number: format!("MP-{}", &charge.id.replace('-', "")[..12].to_uppercase()),
        issued_at: rfc3339_ms(charge.updated_at),
        customer_id: charge.user_id.clone(),
        customer_name: customer.as_ref().map(|c| c.1.clone()),
        customer_email: customer.as_ref().map(|c| c.0.clone()),
        reference: charge.reference.clone(),
        status: charge.status.clone(),
        lines: vec![InvoiceLine {
            description: charge.description.clone(),
            amount: MoneyView::from_minor(charge.captured, &charge.currency),
        }],
        total: MoneyView::from_minor(charge.captured, &charge.currency),
        refunds: refunds
            .iter()
            .map(|r| InvoiceLine {
                description: format!("Refund: {}", r.reason),
                amount: MoneyView::from_minor(-r.amount, &charge.currency),
            })
            .collect(),
        amount_due_after_refunds: MoneyView::from_minor(charge.captured - charge.refunded, &charge.currency),
    };
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html { Ok(Html(invoice_html(&inv)).into_response()) } else { Ok(Json(inv).into_response()) }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn invoice_html(inv: &InvoiceView) -> String {
    let mut rows = String::new();
    for l in inv.lines.iter().chain(inv.refunds.iter()) {
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{} {}</td></tr>",
            esc(&l.description),
            esc(&l.amount.amount),
            esc(&l.amount.currency)
        ));
    }
    let customer = match (&inv.customer_name, &inv.customer_email) {
        (Some(n), Some(e)) => format!("{}<br>{}", esc(n), esc(e)),
        _ => esc(&inv.customer_id),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Invoice {number}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;color:#111}}table{{width:100%;border-collapse:collapse}}\
td,th{{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}}.num{{text-align:right}}h1{{margin-bottom:0}}@media print{{button{{display:none}}}}</style></head>\
<body><h1>Invoice {number}</h1><p>Motorpool · issued {issued}</p><p><strong>Billed to</strong><br>{customer}</p>\
<p>Reference: {reference} · Status: {status}</p><table><thead><tr><th>Item</th><th class=\"num\">Amount</th></tr></thead><tbody>{rows}</tbody>\
<tfoot><tr><th>Total after refunds</th><th class=\"num\">{due} {cur}</th></tr></tfoot></table></body></html>",
        number = esc(&inv.number),
        issued = esc(&inv.issued_at),
        reference = esc(&inv.reference),
        status = esc(&inv.status),
        due = esc(&inv.amount_due_after_refunds.amount),
        cur = esc(&inv.amount_due_after_refunds.currency),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundRequest {
    pub amount: MoneyView,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    pub refund_id: String,
    pub charge: ChargeView,
}

/// Refund part or all of a captured charge (admin). Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/admin/payments/charges/{id}/refunds", tag = "payments", request_body = RefundRequest, security(("bearer" = [])),
    responses((status = 201, body = RefundView), (status = 422, description = "refund_exceeds_capture"), (status = 409, description = "invalid_state")))]
async fn refund(
    State(s): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundRequest>,
) -> ApiResult<Response> {
    let key = idempotency::require_key(&headers)?;
    let charge = store::find_charge(&s.payments.db, &id).await?.ok_or_else(|| Problem::not_found("charge"))?;
    let amount = money(&body.amount, "amount")?;
    if amount.currency.code() != charge.currency {
        return Err(Problem::validation(vec![FieldError {
            field: "amount.currency".into(),
            message: format!("the charge is in {}", charge.currency),
        }]));
    }
    let reason = text_field(&body.reason, "reason", 200)?;
    let key = Key { scope: format!("{}:refund", admin.user_id), key };
    let done = s.payments.refund(&id, amount.minor, &reason, key).await?;
    Ok((StatusCode::CREATED, Json(RefundView { refund_id: done.refund_id, charge: ChargeView::from(&done.charge) })).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerCurrency {
    pub currency: String,
    /// Sum of every entry in this currency: 0 in a healthy ledger.
    pub entries_sum_minor: i64,
    /// User accounts whose stored balance differs from their entries: 0 in a healthy ledger.
    pub mismatched_accounts: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerView {
    pub balanced: bool,
    pub currencies: Vec<LedgerCurrency>,
}

/// Reconcile the ledger (admin).
#[utoipa::path(get, path = "/api/admin/payments/ledger", tag = "payments", security(("bearer" = [])), responses((status = 200, body = LedgerView)))]
async fn ledger(State(s): State<AppState>, _admin: Admin) -> ApiResult<Json<LedgerView>> {
    let rows = store::ledger_check(&s.payments.db).await?;
    let currencies: Vec<LedgerCurrency> = rows
        .into_iter()
        .map(|(currency, sum, mismatched)| LedgerCurrency { currency, entries_sum_minor: sum, mismatched_accounts: mismatched })
        .collect();
    let balanced = currencies.iter().all(|c| c.entries_sum_minor == 0 && c.mismatched_accounts == 0);
    Ok(Json(LedgerView { balanced, currencies }))
}
