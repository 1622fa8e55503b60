//! The shop's HTTP adapters: catalog, cart, checkout, orders. The WebSocket adapters are in
//! `live`.
//!
//! Checkout takes an `Idempotency-Key`. It renews the cart's holds, records a pending order
//! (freezing the cart), charges the wallet through payments with the order id as the payment's
//! key, and commits the holds through inventory. If the commit fails after the charge, the
//! charge is refunded before the answer. A crash or an outage anywhere in between leaves a
//! pending order that a background task drives to the same end; a retry with the same key
//! gets the stored answer, and the money moves once.

use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use motorpool_platform::auth::{Admin, Caller, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::idempotency;
use motorpool_platform::money::MoneyView;
use motorpool_platform::problem::{ApiJson, ApiResult, Code, FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{Applied, CheckoutRefusal, CheckoutResult, Rejection, Shop, ShopError};
use crate::domain::{self, Action, MAX_LINE_QUANTITY};
use crate::store::{self, CartRow, LineRow, OrderLineRow, OrderRow, ProductRow};

#[derive(Clone)]
pub struct AppState {
    pub shop: Arc<Shop>,
    pub verifier: Verifier,
    /// Ends live sockets when the service stops.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/shop/products", get(search))
        .route("/api/shop/products/{code}", get(product).put(put_product))
        .route("/api/shop/models", get(models))
        .route("/api/shop/categories", get(categories))
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_item))
        .route("/api/cart/items/{code}", axum::routing::patch(set_item).delete(remove_item))
        .route("/api/cart/checkout", post(checkout))
        .route("/api/shop/orders", get(orders))
        .route("/api/shop/orders/{id}", get(order))
        .route("/api/cart/ws", get(crate::live::cart_socket))
        .route("/cart/update-product", get(crate::live::update_product))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(search, product, put_product, models, categories, cart, add_item, set_item, remove_item, checkout, orders, order,
          crate::live::cart_socket, crate::live::update_product),
    components(schemas(ProductView, ProductPage, ProductInput, CartView, LineView, PendingView, AddItem, SetItem, OrderView, OrderLineView, OrderPage, MoneyView)),
    tags((name = "shop", description = "Parts catalog, carts with live replies, checkout and orders"))
)]
pub struct ApiDoc;

impl From<ShopError> for Problem {
    fn from(e: ShopError) -> Self {
        match e {
            ShopError::PeerUnavailable(peer) => Problem::new(Code::PeerUnavailable).detail(format!("{peer} is unavailable")).retry_after(2),
            ShopError::PeerTimeout(peer) => Problem::new(Code::PeerTimeout).detail(format!("{peer} did not answer in time")),
            ShopError::CartBusy => Problem::new(Code::Conflict).detail("the cart is being changed by another request").retry_after(1),
            ShopError::Db(e) => Problem::from(e),
            ShopError::Internal(m) => Problem::internal(m),
        }
    }
}

/// The problem answering a refused cart change.
pub fn rejection_problem(r: &Rejection) -> Problem {
    match r {
        Rejection::OutOfStock { available } => {
            Problem::new(Code::OutOfStock).detail(format!("only {available} more can be held")).with("available", *available)
        }
        Rejection::HoldLimit { cap } => {
            let p = Problem::new(Code::HoldLimitExceeded).detail("a cart may not hold more units");
            if *cap > 0 { p.with("limit", *cap) } else { p }
        }
        Rejection::UnknownProduct => Problem::not_found("product"),
        Rejection::NotInCart => Problem::not_found("cart line"),
        Rejection::CheckoutInProgress => Problem::new(Code::InvalidState).detail("the cart is being checked out"),
        Rejection::TooMany => Problem::validation(vec![FieldError {
            field: "quantity".into(),
            message: format!("a line holds at most {MAX_LINE_QUANTITY} units"),
        }]),
    }
}

/// The problem answering a refused checkout.
pub fn refusal_problem(r: &CheckoutRefusal) -> Problem {
    match r {
        CheckoutRefusal::CartEmpty => Problem::new(Code::CartEmpty),
        CheckoutRefusal::InProgress => {
            Problem::new(Code::IdempotencyInProgress).detail("a checkout of this cart is running").retry_after(1)
        }
        CheckoutRefusal::OutOfStock { product_code, available } => Problem::new(Code::OutOfStock)
            .detail(format!("{product_code}: only {available} available"))
            .with("productCode", product_code.clone())
            .with("available", *available),
        CheckoutRefusal::InsufficientFunds => Problem::new(Code::InsufficientFunds).detail("top up the wallet and check out again"),
        CheckoutRefusal::Declined(reason) => Problem::new(Code::PaymentDeclined).detail(reason.clone()),
        CheckoutRefusal::HoldsLost => Problem::new(Code::CheckoutFailed).detail("some parts were no longer held; the charge was refunded"),
        CheckoutRefusal::Unfinished => Problem::new(Code::PeerUnavailable)
            .detail("the order is pending and will complete; retry with the same Idempotency-Key to see it")
            .retry_after(5),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub code: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: MoneyView,
    pub compatible_models: Vec<String>,
    /// Units that can be held now (product detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

impl ProductView {
    fn new(p: &ProductRow) -> Self {
        Self {
            code: p.code.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            price: MoneyView::from_minor(p.price_minor, &p.currency),
            compatible_models: p.model_list(),
            available: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words that must all occur in the code, name, category or models.
    pub q: Option<String>,
    /// A model name as listed by `/api/shop/models`.
    pub model: Option<String>,
    pub category: Option<String>,
    /// 1 to 100, default 24.
    pub limit: Option<i64>,
    /// The last code of the previous page.
    pub cursor: Option<String>,
}

fn limit(v: Option<i64>, default: i64, max: i64) -> Result<i64, Problem> {
    let l = v.unwrap_or(default);
    if !(1..=max).contains(&l) {
        return Err(Problem::validation(vec![FieldError { field: "limit".into(), message: format!("must be between 1 and {max}") }]));
    }
    Ok(l)
}

/// Search the parts catalog (public).
#[utoipa::path(get, path = "/api/shop/products", tag = "shop", params(SearchQuery), responses((status = 200, body = ProductPage)))]
async fn search(State(s): State<AppState>, Query(q): Query<SearchQuery>) -> ApiResult<Json<ProductPage>> {
    let limit = limit(q.limit, 24, 100)?;
    let words = domain::search_words(q.q.as_deref().unwrap_or(""));
    let model = q.model.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let category = q.category.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let rows = store::search(&s.shop.db, &words, model, category, q.cursor.as_deref(), limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<ProductView> = rows.iter().take(limit as usize).map(ProductView::new).collect();
    let next_cursor = if has_more { items.last().map(|p| p.code.clone()) } else { None };
    Ok(Json(ProductPage { items, next_cursor }))
}

/// One part with the units available now (public).
#[utoipa::path(get, path = "/api/shop/products/{code}", tag = "shop", responses((status = 200, body = ProductView), (status = 404)))]
async fn product(State(s): State<AppState>, Path(code): Path<String>) -> ApiResult<Json<ProductView>> {
    let p = store::find_product(&s.shop.db, &code).await?.ok_or_else(|| Problem::not_found("product"))?;
    let mut view = ProductView::new(&p);
    view.available = s.shop.availability(std::slice::from_ref(&p.code)).await?.first().map(|(_, a)| *a);
    Ok(Json(view))
}

/// A product as an administrator defines it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    /// In the shop's currency.
    pub price: MoneyView,
    #[serde(default)]
    pub compatible_models: Vec<String>,
}

/// Create or replace a catalog product (admin). Its stock is inventory's: set it with
/// `PUT /api/inventory/stock/{code}`.
#[utoipa::path(put, path = "/api/shop/products/{code}", tag = "shop", request_body = ProductInput, security(("bearer" = [])),
    responses((status = 201, body = ProductView, description = "created"), (status = 200, body = ProductView, description = "replaced"),
              (status = 422, description = "validation_failed"), (status = 403)))]
async fn put_product(
    State(s): State<AppState>,
    _admin: Admin,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<ProductInput>,
) -> ApiResult<(StatusCode, Json<ProductView>)> {
    check_code(&code)?;
    let spec = domain::ProductSpec {
        name: body.name,
        description: body.description,
        category: body.category,
        compatible_models: body.compatible_models,
    };
    let mut errors: Vec<FieldError> =
        domain::check_product(&spec).into_iter().map(|(field, message)| FieldError { field: field.into(), message }).collect();
    let price_minor = match body.price.parse() {
        Ok(m) if m.currency.code() != s.shop.cfg.currency => {
            let message = format!("the catalog is priced in {}", s.shop.cfg.currency);
            errors.push(FieldError { field: "price.currency".into(), message });
            0
        }
        Ok(m) if m.minor <= 0 => {
            errors.push(FieldError { field: "price.amount".into(), message: "a price is positive".into() });
            0
        }
        Ok(m) => m.minor,
        Err(e) => {
            errors.push(FieldError { field: "price".into(), message: e.to_string() });
            0
        }
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let search = domain::catalog::search_text(&code, &spec.name, &spec.category, &spec.compatible_models);
    let row = ProductRow {
        code,
        name: spec.name,
        description: spec.description,
        category: spec.category,
        price_minor,
        currency: s.shop.cfg.currency.clone(),
        models: domain::catalog::models_column(&spec.compatible_models),
    };
    let created = store::put_product(&s.shop.db, &row, &search).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(ProductView::new(&row))))
}

/// The car models parts are listed for (public).
#[utoipa::path(get, path = "/api/shop/models", tag = "shop", responses((status = 200, body = [String])))]
async fn models() -> Json<Vec<&'static str>> {
    let mut m: Vec<&'static str> = domain::catalog::MODELS.iter().map(|m| m.0).collect();
    m.sort_unstable();
    Json(m)
}

/// The catalog's categories (public).
#[utoipa::path(get, path = "/api/shop/categories", tag = "shop", responses((status = 200, body = [String])))]
async fn categories(State(s): State<AppState>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(store::categories(&s.shop.db).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub product_code: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: MoneyView,
    pub line_total: MoneyView,
    pub hold_id: String,
    pub hold_expires_at: String,
    /// False once the hold ran out; checkout tries to hold the units again.
    pub held: bool,
}

impl LineView {
    pub fn new(l: &LineRow, now: i64) -> Self {
        Self {
            product_code: l.product_code.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: MoneyView::from_minor(l.price_minor, &l.currency),
            line_total: MoneyView::from_minor(l.price_minor * l.quantity, &l.currency),
            hold_id: l.hold_id.clone(),
            hold_expires_at: rfc3339_ms(l.hold_expires_at),
            held: l.hold_expires_at > now,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    pub request_id: String,
    pub action: String,
    pub product_code: Option<String>,
    pub quantity: Option<i64>,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub id: String,
    pub lines: Vec<LineView>,
    /// Requests inventory has not answered yet.
    pub pending_requests: Vec<PendingView>,
    pub total: MoneyView,
    pub item_count: i64,
    pub checkout_in_progress: bool,
    pub updated_at: String,
}

/// The cart as it is now.
pub async fn cart_view(shop: &Shop, cart: &CartRow) -> Result<CartView, ShopError> {
    let cart = store::find_cart(&shop.db, &cart.user_id).await?.unwrap_or_else(|| cart.clone());
    let lines = store::lines(&shop.db, &cart.id).await?;
    let pending = store::pending_requests(&shop.db, &cart.id).await?;
    let now = shop.clock.now_ms();
    let currency = lines.first().map_or(shop.cfg.currency.as_str(), |l| l.currency.as_str()).to_owned();
    Ok(CartView {
        id: cart.id.clone(),
        total: MoneyView::from_minor(lines.iter().map(|l| l.price_minor * l.quantity).sum(), &currency),
        item_count: lines.iter().map(|l| l.quantity).sum(),
        lines: lines.iter().map(|l| LineView::new(l, now)).collect(),
        pending_requests: pending
            .into_iter()
            .map(|r| PendingView {
                request_id: r.request_id,
                action: r.action,
                product_code: r.product_code,
                quantity: r.quantity,
                status: r.status,
                created_at: rfc3339_ms(r.created_at),
            })
            .collect(),
        checkout_in_progress: cart.checkout_order_id.is_some(),
        updated_at: rfc3339_ms(cart.updated_at),
    })
}

/// The caller's cart.
#[utoipa::path(get, path = "/api/cart", tag = "shop", security(("bearer" = [])), responses((status = 200, body = CartView)))]
async fn cart(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<CartView>> {
    let cart = store::ensure_cart(&s.shop.db, &caller.user_id, s.shop.clock.now_ms()).await?;
    Ok(Json(cart_view(&s.shop, &cart).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddItem {
    pub product_code: String,
    /// 1 to 100; added to the line if the product is already in the cart.
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetItem {
    /// The line's new quantity, 1 to 100.
    pub quantity: i64,
}

fn check_quantity(q: i64) -> Result<(), Problem> {
    if !(1..=MAX_LINE_QUANTITY).contains(&q) {
        return Err(Problem::validation(vec![FieldError {
            field: "quantity".into(),
            message: format!("must be between 1 and {MAX_LINE_QUANTITY}"),
        }]));
    }
    Ok(())
}

fn check_code(code: &str) -> Result<(), Problem> {
    domain::check_code(code).map_err(|message| Problem::validation(vec![FieldError { field: "productCode".into(), message }]))
}

async fn line_response(s: &AppState, cart: &CartRow, applied: Applied, status: StatusCode) -> ApiResult<Response> {
    match applied {
        Applied::Confirmed(Some(line)) => Ok((status, Json(LineView::new(&line, s.shop.clock.now_ms()))).into_response()),
        Applied::Confirmed(None) => {
            let view = cart_view(&s.shop, cart).await?;
            Ok((status, Json(view)).into_response())
        }
        Applied::Rejected(r) => Err(rejection_problem(&r)),
        Applied::Pending => Err(Problem::new(Code::Conflict).detail("the request is still pending").retry_after(1)),
    }
}

/// Add a part to the caller's cart; inventory holds the units before the line exists.
#[utoipa::path(post, path = "/api/cart/items", tag = "shop", request_body = AddItem, security(("bearer" = [])),
    responses((status = 201, body = LineView), (status = 409, description = "out_of_stock (with `available`), hold_limit_exceeded, invalid_state"), (status = 404)))]
async fn add_item(State(s): State<AppState>, caller: Caller, ApiJson(body): ApiJson<AddItem>) -> ApiResult<Response> {
    check_code(&body.product_code)?;
    check_quantity(body.quantity)?;
    let (cart, applied) = s.shop.apply(&caller.user_id, Action::Add, Some(&body.product_code), body.quantity, None).await?;
    line_response(&s, &cart, applied, StatusCode::CREATED).await
}

/// Change a line's quantity; the hold follows.
#[utoipa::path(patch, path = "/api/cart/items/{code}", tag = "shop", request_body = SetItem, security(("bearer" = [])),
    responses((status = 200, body = LineView), (status = 409, description = "out_of_stock"), (status = 404)))]
async fn set_item(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<SetItem>,
) -> ApiResult<Response> {
    check_code(&code)?;
    check_quantity(body.quantity)?;
    let cart = store::ensure_cart(&s.shop.db, &caller.user_id, s.shop.clock.now_ms()).await?;
    if store::line(&s.shop.db, &cart.id, &code).await?.is_none() {
        return Err(Problem::not_found("cart line"));
    }
    let (cart, applied) = s.shop.apply(&caller.user_id, Action::Set, Some(&code), body.quantity, None).await?;
    line_response(&s, &cart, applied, StatusCode::OK).await
}

/// Remove a line; its hold is released in the background.
#[utoipa::path(delete, path = "/api/cart/items/{code}", tag = "shop", security(("bearer" = [])), responses((status = 204), (status = 404)))]
async fn remove_item(State(s): State<AppState>, caller: Caller, Path(code): Path<String>) -> ApiResult<StatusCode> {
    check_code(&code)?;
    let (_, applied) = s.shop.apply(&caller.user_id, Action::Remove, Some(&code), 0, None).await?;
    match applied {
        Applied::Confirmed(_) => Ok(StatusCode::NO_CONTENT),
        Applied::Rejected(r) => Err(rejection_problem(&r)),
        Applied::Pending => Err(Problem::new(Code::Conflict).retry_after(1)),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineView {
    pub product_code: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: MoneyView,
    pub line_total: MoneyView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: String,
    /// pending | placed | failed
    pub status: String,
    pub lines: Vec<OrderLineView>,
    pub total: MoneyView,
    pub charge_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: String,
}

impl OrderView {
    pub fn new(o: &OrderRow, lines: &[OrderLineRow]) -> Self {
        Self {
            id: o.id.clone(),
            status: o.status.clone(),
            lines: lines
                .iter()
                .map(|l| OrderLineView {
                    product_code: l.product_code.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: MoneyView::from_minor(l.unit_price_minor, &o.currency),
                    line_total: MoneyView::from_minor(l.unit_price_minor * l.quantity, &o.currency),
                })
                .collect(),
            total: MoneyView::from_minor(o.total_minor, &o.currency),
            charge_id: o.charge_id.clone(),
            failure: o.failure.clone(),
            created_at: rfc3339_ms(o.created_at),
        }
    }
}

/// Pay for the caller's cart from their wallet. Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/cart/checkout", tag = "shop", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "unique per checkout; a retry returns the first answer and charges nothing again")),
    responses((status = 201, body = OrderView), (status = 409, description = "cart_empty, insufficient_funds, out_of_stock, checkout_failed (refunded)"),
              (status = 402, description = "payment_declined"), (status = 503, description = "pending: retry with the same key")))]
async fn checkout(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    let key = idempotency::require_key(&headers)?;
    match s.shop.checkout(&caller.user_id, &key).await? {
        CheckoutResult::Replay(stored) => Ok(stored.into_response()),
        CheckoutResult::Placed(order) => {
            let lines = store::order_lines(&s.shop.db, &order.id).await?;
            Ok((StatusCode::CREATED, Json(OrderView::new(&order, &lines))).into_response())
        }
        CheckoutResult::Refused(r) => Err(refusal_problem(&r)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    pub next_cursor: Option<String>,
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/shop/orders", tag = "shop", params(PageQuery), security(("bearer" = [])), responses((status = 200, body = OrderPage)))]
async fn orders(State(s): State<AppState>, caller: Caller, Query(q): Query<PageQuery>) -> ApiResult<Json<OrderPage>> {
    let limit = limit(q.limit, 20, 100)?;
    let rows = store::list_orders(&s.shop.db, &caller.user_id, q.cursor.as_deref(), limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let mut items = Vec::new();
    for o in rows.iter().take(limit as usize) {
        items.push(OrderView::new(o, &store::order_lines(&s.shop.db, &o.id).await?));
    }
    let next_cursor = if has_more { items.last().map(|o| o.id.clone()) } else { None };
    Ok(Json(OrderPage { items, next_cursor }))
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/api/shop/orders/{id}", tag = "shop", security(("bearer" = [])), responses((status = 200, body = OrderView), (status = 404)))]
async fn order(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    let o = store::find_order(&s.shop.db, &id).await?.ok_or_else(|| Problem::not_found("order"))?;
    caller.require_owner(&o.user_id, "order")?;
    Ok(Json(OrderView::new(&o, &store::order_lines(&s.shop.db, &o.id).await?)))
}
