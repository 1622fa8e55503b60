//! Inventory's HTTP adapters: the admin's view and control of stock.

use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use motorpool_platform::auth::{Admin, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::problem::{ApiJson, ApiResult, Code, FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{Inventory, InventoryError};
use crate::store::{self, Level, SetOutcome};

#[derive(Clone)]
pub struct AppState {
    pub inventory: Arc<Inventory>,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/inventory/stock", get(list_stock))
        .route("/api/inventory/stock/{sku}", get(get_stock).put(put_stock))
        .route("/api/inventory/holds", get(list_holds))
        .route("/api/inventory/check", get(check))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(list_stock, get_stock, put_stock, list_holds, check),
    components(schemas(StockView, StockPage, SetStockRequest, HoldView, ConsistencyView)),
    tags((name = "inventory", description = "Stock of parts and the holds on it (admin)"))
)]
pub struct ApiDoc;

impl From<InventoryError> for Problem {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Invalid(message) => Problem::validation(vec![FieldError { field: "request".into(), message }]),
            InventoryError::Db(e) => Problem::from(e),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    pub sku: String,
    pub quantity: i64,
    /// Units under live holds.
    pub held: i64,
    /// quantity − held, never negative.
    pub available: i64,
}

fn view(sku: String, l: Level) -> StockView {
    StockView { sku, quantity: l.quantity, held: l.held, available: l.available() }
}

fn sku_param(sku: &str) -> Result<(), Problem> {
    crate::domain::check_sku(sku).map_err(|message| Problem::validation(vec![FieldError { field: "sku".into(), message }]))
}

/// One SKU's stock (admin).
#[utoipa::path(get, path = "/api/inventory/stock/{sku}", tag = "inventory", security(("bearer" = [])),
    responses((status = 200, body = StockView), (status = 404)))]
async fn get_stock(State(s): State<AppState>, _admin: Admin, Path(sku): Path<String>) -> ApiResult<Json<StockView>> {
    sku_param(&sku)?;
    let found = s.inventory.availability(std::slice::from_ref(&sku)).await?;
    let (sku, level) = found.into_iter().next().ok_or_else(|| Problem::not_found("sku"))?;
    Ok(Json(view(sku, level)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    /// Units on the shelf, sold ones excluded; not below what is held.
    pub quantity: i64,
}

/// Create a SKU or set its quantity (admin).
#[utoipa::path(put, path = "/api/inventory/stock/{sku}", tag = "inventory", request_body = SetStockRequest, security(("bearer" = [])),
    responses((status = 200, body = StockView), (status = 409, description = "stock_below_held"), (status = 422)))]
async fn put_stock(
    State(s): State<AppState>,
    _admin: Admin,
    Path(sku): Path<String>,
    ApiJson(body): ApiJson<SetStockRequest>,
) -> ApiResult<Json<StockView>> {
    sku_param(&sku)?;
    if !(0..=1_000_000_000).contains(&body.quantity) {
        return Err(Problem::validation(vec![FieldError { field: "quantity".into(), message: "must be between 0 and 1000000000".into() }]));
    }
    match s.inventory.set_stock(&sku, body.quantity, false).await? {
        SetOutcome::Set { after, .. } | SetOutcome::Kept(after) => {
            Ok(Json(StockView { sku, quantity: after.quantity, held: after.held, available: after.quantity - after.held }))
        }
        SetOutcome::BelowHeld(c) => Err(Problem::new(Code::StockBelowHeld)
            .detail(format!("{} units are held; the quantity cannot go below that", c.held))
            .field("quantity", format!("must be at least {}", c.held))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 500, default 100.
    pub limit: Option<i64>,
    /// The last SKU of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockPage {
    pub items: Vec<StockView>,
    pub next_cursor: Option<String>,
}

/// Every SKU's stock, by SKU (admin).
#[utoipa::path(get, path = "/api/inventory/stock", tag = "inventory", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = StockPage)))]
async fn list_stock(State(s): State<AppState>, _admin: Admin, Query(q): Query<PageQuery>) -> ApiResult<Json<StockPage>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::validation(vec![FieldError { field: "limit".into(), message: "must be between 1 and 500".into() }]));
    }
    let inv = &s.inventory;
    let rows = store::list_levels(&inv.db, q.cursor.as_deref(), limit + 1, inv.clock.now_ms()).await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<StockView> = rows.into_iter().take(limit as usize).map(|(sku, l)| view(sku, l)).collect();
    let next_cursor = if has_more { items.last().map(|i| i.sku.clone()) } else { None };
    Ok(Json(StockPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HoldsQuery {
    /// The owner, e.g. `cart:0192…`.
    pub owner: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub created_at: String,
    pub expires_at: String,
}

/// An owner's live holds (admin).
#[utoipa::path(get, path = "/api/inventory/holds", tag = "inventory", params(HoldsQuery), security(("bearer" = [])),
    responses((status = 200, body = [HoldView])))]
async fn list_holds(State(s): State<AppState>, _admin: Admin, Query(q): Query<HoldsQuery>) -> ApiResult<Json<Vec<HoldView>>> {
    crate::domain::check_owner(&q.owner).map_err(|message| Problem::validation(vec![FieldError { field: "owner".into(), message }]))?;
    let inv = &s.inventory;
    let rows = store::holds_of(&inv.db, &q.owner, inv.clock.now_ms()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|h| HoldView {
                hold_id: h.id,
                owner: h.owner,
                sku: h.sku,
                quantity: h.quantity,
                created_at: rfc3339_ms(h.created_at),
                expires_at: rfc3339_ms(h.expires_at),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyView {
    /// True when every counter equals the holds behind it.
    pub consistent: bool,
    /// SKUs whose held count differs from their holds: 0 in a healthy database.
    pub stock_mismatches: i64,
    /// Owners whose held count differs from their holds: 0 in a healthy database.
    pub owner_mismatches: i64,
}

/// Reconcile the held counters with the holds (admin).
#[utoipa::path(get, path = "/api/inventory/check", tag = "inventory", security(("bearer" = [])),
    responses((status = 200, body = ConsistencyView)))]
async fn check(State(s): State<AppState>, _admin: Admin) -> ApiResult<Json<ConsistencyView>> {
    let (stock_mismatches, owner_mismatches) = store::consistency(&s.inventory.db).await?;
    Ok(Json(ConsistencyView { consistent: stock_mismatches == 0 && owner_mismatches == 0, stock_mismatches, owner_mismatches }))
}
