//! The factory's HTTP adapters: place, read, list and cancel new-car orders.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use motorpool_platform::auth::{Caller, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::idempotency::{self, Begin};
use motorpool_platform::money::MoneyView;
use motorpool_platform::problem::{ApiJson, ApiResult, Code, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::app::{Factory, FactoryError};
use crate::domain::{self, Status};
use crate::store::{self, OrderRow};

#[derive(Clone)]
pub struct AppState {
    pub factory: Arc<Factory>,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/factory/order", post(place_order))
        .route("/api/factory/orders", get(list_orders))
        .route("/api/factory/order/{order_id}", get(get_order))
        .route("/api/factory/order/{order_id}/cancel", post(cancel_order))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(place_order, get_order, list_orders, cancel_order),
    components(schemas(PlaceOrder, Placed, OrderView, TimelineEntry, MoneyView)),
    tags((name = "factory", description = "New-car orders: placement, production plan, status timeline, cancellation"))
)]
pub struct ApiDoc;

impl From<FactoryError> for Problem {
    fn from(e: FactoryError) -> Self {
        match e {
            FactoryError::ConfigurationNotFound => Problem::not_found("configuration"),
            FactoryError::PeerUnavailable(peer) => Problem::new(Code::PeerUnavailable)
                .detail(format!("{peer} is unavailable; a placed order finishes in the background"))
                .retry_after(2),
            FactoryError::PeerTimeout(peer) => {
                Problem::new(Code::PeerTimeout).detail(format!("{peer} did not answer in time; a placed order finishes in the background"))
            }
            FactoryError::KeyReused => Problem::new(Code::IdempotencyKeyReused),
            FactoryError::Db(e) => Problem::from(e),
            FactoryError::Crashed(step) => Problem::new(Code::ServiceUnavailable)
                .detail(format!("interrupted after the {step} step; recovery finishes the order"))
                .retry_after(2),
            FactoryError::Internal(m) => Problem::internal(m),
        }
    }
}

/// The seed's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlaceOrder {
    pub config_id: String,
    /// The buyer: the caller, unless the caller is an admin ordering for someone.
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placed {
    pub order_id: String,
    pub message: &'static str,
    pub status: &'static str,
    pub status_code: String,
    pub estimated_delivery: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub status: &'static str,
    pub status_code: String,
    pub at: String,
    pub note: Option<String>,
}

/// An order as its buyer sees it: the seed's `status` and `estimatedDelivery`, and ours.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    /// As the seed shows it, e.g. "In Production".
    pub status: &'static str,
    pub status_code: String,
    /// `YYYY-MM-DD`, once production is booked.
    pub estimated_delivery: Option<String>,
    pub config_id: String,
    pub model: String,
    pub price: MoneyView,
    pub deposit: MoneyView,
    pub plant: Option<String>,
    pub production_date: Option<String>,
    pub failure: Option<String>,
    /// The placing saga or a cancellation still has steps to run (an unavailable peer or a
    /// crash stopped it); they finish in the background.
    pub in_progress: bool,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: String,
}

fn label(code: &str) -> &'static str {
    Status::parse(code).map(Status::label).unwrap_or("Unknown")
}

async fn view(s: &AppState, o: OrderRow) -> Result<OrderView, Problem> {
    let timeline = store::timeline(&s.factory.db, &o.id).await.map_err(Problem::from)?;
    Ok(OrderView {
        status: label(&o.status),
        status_code: o.status.clone(),
        estimated_delivery: o.production_day.map(|d| domain::date(domain::delivery_day(d))),
        price: MoneyView::from_minor(o.price, &o.currency),
        deposit: MoneyView::from_minor(o.deposit, &o.currency),
        production_date: o.production_day.map(domain::date),
        timeline: timeline
            .into_iter()
            .map(|(code, at, note)| TimelineEntry { status: label(&code), status_code: code, at: rfc3339_ms(at), note })
            .collect(),
        created_at: rfc3339_ms(o.created_at),
        in_progress: Factory::is_unfinished(&o),
        order_id: o.id,
        config_id: o.config_id,
        model: o.model,
        plant: o.plant,
        failure: o.failure,
    })
}

/// Place an order for a saved configuration (the seed's `POST /api/factory/order`).
#[utoipa::path(post, path = "/api/factory/order", tag = "factory", request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "optional: a retry with the same key replays the first answer")),
    responses((status = 201, body = Placed), (status = 202, body = Placed, description = "placed while a peer is unavailable; finished in the background"), (status = 402, description = "the deposit was declined; nothing is held"),
              (status = 403, description = "ordering for another user"), (status = 404, description = "no such configuration"),
              (status = 409, description = "insufficient funds for the deposit; nothing is held")))]
async fn place_order(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PlaceOrder>,
) -> ApiResult<Response> {
    if req.user_id != caller.user_id && !caller.is_admin() {
        return Err(Problem::new(Code::Forbidden).detail("userId must be your own"));
    }
    if req.config_id.is_empty() || req.config_id.len() > 64 {
        return Err(Problem::new(Code::ValidationFailed).field("configId", "must be 1 to 64 characters"));
    }
    // Optional (the seed sends none): a retry with the same key gets the first answer and
    // places nothing again.
    let key = idempotency::key_from(&headers)?;
    let scope = format!("{}:factory-order", caller.user_id);
    if let Some(key) = &key {
        let fingerprint = idempotency::fingerprint(&[req.config_id.as_bytes(), req.user_id.as_bytes()]);
        if let Begin::Replay(stored) = idempotency::begin(&s.factory.db, &scope, key, &fingerprint, s.factory.clock.now_ms()).await? {
            return Ok(stored.into_response());
        }
    }
    let order = match s.factory.place(&req.user_id, &req.config_id, key.as_deref()).await {
        Ok(order) => order,
        Err(e) => {
            // Whether or not an order was placed (an error can follow the commit), the key is
            // free for a retry: the retry finds the order the key made, if any.
            if let Some(key) = &key {
                idempotency::abandon(&s.factory.db, &scope, key).await;
            }
            return Err(e.into());
        }
    };
    let answer: Result<(StatusCode, Placed), Problem> = if order.status == Status::Failed.code() {
        let reason = order.failure.clone().unwrap_or_default();
        let code = if reason == "insufficient_funds" { Code::InsufficientFunds } else { Code::PaymentDeclined };
        Err(Problem::new(code).detail(format!("the deposit was not taken ({reason}); nothing is held")).with("orderId", order.id))
    } else if Factory::is_unfinished(&order) {
        let placed = Placed {
            message: "Order placed; it is being finished in the background.",
            status: label(&order.status),
            status_code: order.status.clone(),
            estimated_delivery: None,
            order_id: order.id,
        };
        Ok((StatusCode::ACCEPTED, placed))
    } else {
        let placed = Placed {
            message: "Order placed successfully.",
            status: label(&order.status),
            status_code: order.status.clone(),
            estimated_delivery: order.production_day.map(|d| domain::date(domain::delivery_day(d))),
            order_id: order.id,
        };
        Ok((StatusCode::CREATED, placed))
    };
    if let Some(key) = &key {
        let (status, body) = match &answer {
            Ok((status, placed)) => (status.as_u16(), serde_json::to_vec(placed)),
            Err(p) => (p.code.status().as_u16(), serde_json::to_vec(&p.body())),
        };
        let body = body.map_err(Problem::internal)?;
        idempotency::complete_outside(&s.factory.db, &scope, key, status, &body).await.map_err(Problem::from)?;
    }
    let (status, placed) = answer?;
    Ok((status, Json(placed)).into_response())
}

async fn own_order(s: &AppState, caller: &Caller, id: &str) -> Result<OrderRow, Problem> {
    let order = store::find_order(&s.factory.db, id).await.map_err(Problem::from)?.ok_or_else(|| Problem::not_found("order"))?;
    caller.require_owner(&order.user_id, "order")?;
    Ok(order)
}

/// An order's current status, estimated delivery and timeline (the seed's
/// `GET /api/factory/order/{orderId}`); read fresh every time.
#[utoipa::path(get, path = "/api/factory/order/{order_id}", tag = "factory", params(("order_id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404)))]
async fn get_order(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    let order = own_order(&s, &caller, &id).await?;
    Ok(Json(view(&s, order).await?))
}

/// The caller's orders, newest first (at most 100).
#[utoipa::path(get, path = "/api/factory/orders", tag = "factory", responses((status = 200, body = [OrderView])))]
async fn list_orders(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<OrderView>>> {
    let rows = store::list_orders_of(&s.factory.db, &caller.user_id, 100).await.map_err(Problem::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(&s, r).await?);
    }
    Ok(Json(out))
}

/// Cancel before production starts: parts released, deposit refunded.
#[utoipa::path(post, path = "/api/factory/order/{order_id}/cancel", tag = "factory", params(("order_id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404), (status = 409, description = "production has started (invalid_state)")))]
async fn cancel_order(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    let order = own_order(&s, &caller, &id).await?;
    match s.factory.cancel(order).await? {
        Some(order) => Ok(Json(view(&s, order).await?)),
        None => Err(Problem::new(Code::InvalidState).detail("the order can no longer be cancelled")),
    }
}
