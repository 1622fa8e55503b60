//! The configurator's HTTP and WebSocket adapters.
//!
//! Everything here is open to anonymous visitors, as a showroom is; a signed-in caller's
//! saved configurations are theirs alone (a stranger gets 404), and a share code opens a
//! read-only copy. The token is optional, so it is verified here rather than by the gateway:
//! from the `Authorization` header, or `?access_token=` on the WebSocket (browsers cannot set
//! headers there).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use motorpool_platform::auth::{Admin, Caller, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::money::MoneyView;
use motorpool_platform::problem::{ApiJson, ApiResult, Code, Problem};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{App, ConfiguratorError, PopularLists, PublishError, Session};
use crate::domain::{Evaluation, Fix, MODEL_GROUP};
use crate::store::{self, ConfigurationRow};

#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub verifier: Verifier,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/configure", post(save_configuration))
        .route("/api/configure/catalog", get(catalog).put(publish_catalog))
        .route("/api/configure/evaluate", post(evaluate))
        .route("/api/configure/popular", get(popular))
        .route("/api/configure/mine", get(mine))
        .route("/api/configure/shared/{code}", get(shared))
        .route("/api/configure/ws", get(live))
        .route("/api/configure/{config_id}", get(configuration))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(save_configuration, configuration, shared, mine, catalog, publish_catalog, evaluate, popular, live),
    components(schemas(SaveRequest, Saved, ConfigurationView, ConfigurationPage, EvaluateRequest, MoneyView)),
    tags((name = "configurator", description = "Configure a new car: catalog, live option states and prices, saved and shared configurations"))
)]
pub struct ApiDoc;

impl From<ConfiguratorError> for Problem {
    fn from(e: ConfiguratorError) -> Self {
        match e {
            ConfiguratorError::Unresolved(errors) => errors
                .into_iter()
                .fold(Problem::new(Code::ValidationFailed).detail("some values name no option"), |p, (f, m)| p.field(f, m)),
            ConfiguratorError::Invalid(because) => {
                let rules: Vec<Value> = because.rules.iter().map(|r| json!({"id": r.id, "message": r.message})).collect();
                let detail = match because.rules.first() {
                    Some(r) => r.message.clone(),
                    None => "the choices cannot all be had together".into(),
                };
                Problem::new(Code::InvalidConfiguration)
                    .detail(detail)
                    .with("violatedRules", rules)
                    .with("conflictingOptions", because.picks.clone())
                    .with("groups", because.groups.clone())
            }
            ConfiguratorError::Db(e) => Problem::from(e),
            ConfiguratorError::Cache(e) => Problem::new(Code::ServiceUnavailable).detail(format!("cache unavailable: {e}")).retry_after(1),
            ConfiguratorError::Internal(m) => Problem::internal(m),
        }
    }
}

/// The caller when a valid token came; `None` when none came; 401 for a bad one.
async fn optional_caller(verifier: &Verifier, headers: &HeaderMap, query_token: Option<&str>) -> Result<Option<Caller>, Problem> {
    let Some(token) = motorpool_platform::auth::bearer(headers).or(query_token) else {
        return Ok(None);
    };
    let claims = verifier.verify(token).await.map_err(Problem::from)?;
    Ok(Some(Caller { user_id: claims.sub, email: claims.email, role: claims.role }))
}

/// The seed's body: single choices by name or code, features as a list; `model` defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    pub model: Option<String>,
    pub engine: Option<String>,
    pub color: Option<String>,
    pub interior: Option<String>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Any further option codes (wheels, packages, …).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Most values one request may name.
const MAX_VALUES: usize = 64;

impl SaveRequest {
    fn picks(&self, app: &App) -> Result<Vec<String>, Problem> {
        if self.features.len() + self.options.len() > MAX_VALUES {
            return Err(Problem::new(Code::ValidationFailed).detail(format!("at most {MAX_VALUES} features and options")));
        }
        let mut fields: Vec<(&str, &str, &str)> = Vec::new();
        for (field, value) in [("engine", &self.engine), ("color", &self.color), ("interior", &self.interior)] {
            if let Some(v) = value {
                fields.push((field, field, v));
            }
        }
        for f in &self.features {
            fields.push(("features", "features", f));
        }
        let mut picks = app.resolve(self.model.as_deref(), &fields)?;
        for code in &self.options {
            if !picks.contains(code) {
                picks.push(code.clone());
            }
        }
        App::selection(&app.engine(), &picks)?;
        Ok(picks)
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub config_id: String,
    pub message: &'static str,
    pub share_code: String,
    pub price: String,
    pub currency: String,
}

/// A saved configuration: the seed's fields, the price as a decimal string, and ours.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationView {
    pub config_id: String,
    pub model: String,
    pub engine: Option<String>,
    pub color: Option<String>,
    pub interior: Option<String>,
    pub features: Vec<String>,
    /// Decimal string in `currency`, as priced when saved.
    pub price: String,
    pub currency: String,
    /// Every option of the complete configuration, by code.
    pub options: Vec<String>,
    /// What the customer picked; the rest completed it.
    pub picks: Vec<String>,
    pub catalog_version: i64,
    /// Only for the owner (or when nobody owns it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_code: Option<String>,
    pub read_only: bool,
    pub created_at: String,
}

/// A saved configuration as shown, its options named as in the catalog version it was made with.
async fn view(app: &App, row: ConfigurationRow, show_code: bool, read_only: bool) -> Result<ConfigurationView, Problem> {
    let options: Vec<String> = serde_json::from_str(&row.options).unwrap_or_default();
    let catalog = app
        .catalog_version(row.catalog_version)
        .await?
        .ok_or_else(|| Problem::internal("a saved configuration's catalog version is gone"))?;
    let group_of = |code: &str| catalog.options.iter().find(|o| o.code == code).map(|o| o.group.as_str());
    let name_of = |code: &str| catalog.options.iter().find(|o| o.code == code).map(|o| o.name.clone()).unwrap_or_else(|| code.to_owned());
    let single = |group: &str| options.iter().find(|c| group_of(c) == Some(group)).map(|c| name_of(c));
    Ok(ConfigurationView {
        engine: single("engine"),
        color: single("color"),
        interior: single("interior"),
        features: options.iter().filter(|c| group_of(c) == Some("features")).map(|c| name_of(c)).collect(),
        price: MoneyView::from_minor(row.price, &row.currency).amount,
        currency: row.currency,
        picks: serde_json::from_str(&row.picks).unwrap_or_default(),
        options,
        catalog_version: row.catalog_version,
        share_code: show_code.then_some(row.share_code),
        read_only,
        created_at: rfc3339_ms(row.created_at),
        model: row.model,
        config_id: row.id,
    })
}

/// Save a configuration (the seed's `POST /api/configure`).
#[utoipa::path(post, path = "/api/configure", tag = "configurator", request_body = SaveRequest,
    responses((status = 201, body = Saved), (status = 422, description = "unknown options (validation_failed) or broken rules (invalid_configuration, with violatedRules)")))]
async fn save_configuration(State(s): State<AppState>, headers: HeaderMap, ApiJson(req): ApiJson<SaveRequest>) -> ApiResult<Response> {
    let caller = optional_caller(&s.verifier, &headers, None).await?;
    let picks = req.picks(&s.app)?;
    let row = s.app.save(&picks, caller.as_ref().map(|c| c.user_id.as_str())).await?;
    let body = Saved {
        config_id: row.id,
        message: "Configuration saved successfully.",
        share_code: row.share_code,
        price: MoneyView::from_minor(row.price, &row.currency).amount,
        currency: row.currency,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A saved configuration (the seed's `GET /api/configure/{configId}`). One a signed-in user
/// saved is theirs (and admins'): anyone else gets 404.
#[utoipa::path(get, path = "/api/configure/{config_id}", tag = "configurator",
    params(("config_id" = String, Path)), responses((status = 200, body = ConfigurationView), (status = 404)))]
async fn configuration(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<ConfigurationView>> {
    let caller = optional_caller(&s.verifier, &headers, None).await?;
    let row = store::find_configuration(&s.app.db, &id).await.map_err(Problem::from)?.ok_or_else(|| Problem::not_found("configuration"))?;
    if let Some(owner) = &row.owner_id {
        caller.ok_or_else(|| Problem::not_found("configuration"))?.require_owner(owner, "configuration")?;
    }
    Ok(Json(view(&s.app, row, true, false).await?))
}

/// A read-only copy of a configuration by its share code.
#[utoipa::path(get, path = "/api/configure/shared/{code}", tag = "configurator",
    params(("code" = String, Path)), responses((status = 200, body = ConfigurationView), (status = 404)))]
async fn shared(State(s): State<AppState>, Path(code): Path<String>) -> ApiResult<Json<ConfigurationView>> {
    let row =
        store::find_by_share_code(&s.app.db, &code).await.map_err(Problem::from)?.ok_or_else(|| Problem::not_found("configuration"))?;
    let mut v = view(&s.app, row, false, true).await?;
    // A copy names no id: it cannot be used to reach the owner's original.
    v.config_id = String::new();
    Ok(Json(v))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationPage {
    pub items: Vec<ConfigurationView>,
    pub next_cursor: Option<String>,
}

/// The caller's saved configurations, newest first.
#[utoipa::path(get, path = "/api/configure/mine", tag = "configurator", params(PageQuery),
    responses((status = 200, body = ConfigurationPage), (status = 401)))]
async fn mine(State(s): State<AppState>, caller: Caller, Query(q): Query<PageQuery>) -> ApiResult<Json<ConfigurationPage>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::new(Code::ValidationFailed).field("limit", "must be between 1 and 100"));
    }
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            let (at, id) = c.split_once('_').ok_or_else(|| Problem::new(Code::ValidationFailed).field("cursor", "not a cursor"))?;
            Some((at.parse::<i64>().map_err(|_| Problem::new(Code::ValidationFailed).field("cursor", "not a cursor"))?, id.to_owned()))
        }
    };
    let rows = store::list_by_owner(&s.app.db, &caller.user_id, cursor.as_ref().map(|(a, i)| (*a, i.as_str())), limit + 1)
        .await
        .map_err(Problem::from)?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<ConfigurationRow> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = if more { rows.last().map(|r| format!("{}_{}", r.created_at, r.id)) } else { None };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(view(&s.app, row, true, false).await?);
    }
    Ok(Json(ConfigurationPage { items, next_cursor }))
}

/// The current catalog: groups, options with prices (minor units), rules.
#[utoipa::path(get, path = "/api/configure/catalog", tag = "configurator", responses((status = 200, description = "the catalog document")))]
async fn catalog(State(s): State<AppState>) -> Json<crate::domain::Catalog> {
    Json(s.app.engine().catalog().clone())
}

/// Publishes a new catalog version (admin). `version` must be the one after the newest: 409
/// otherwise (someone published first). An invalid catalog is 422 with every problem found.
/// Configurations saved before keep the version and price they were made with; every replica
/// serves the new version within `configurator.catalog_poll_ms`.
#[utoipa::path(put, path = "/api/configure/catalog", tag = "configurator", security(("bearer" = [])),
    responses((status = 200, description = "the catalog as now served"), (status = 403), (status = 409), (status = 422)))]
async fn publish_catalog(
    State(s): State<AppState>,
    _admin: Admin,
    ApiJson(catalog): ApiJson<crate::domain::Catalog>,
) -> ApiResult<Json<crate::domain::Catalog>> {
    match s.app.publish_catalog(catalog).await {
        Ok(engine) => Ok(Json(engine.catalog().clone())),
        Err(PublishError::Invalid(m)) => Err(Problem::new(Code::ValidationFailed).detail(m)),
        Err(e @ PublishError::Version { .. }) => Err(Problem::new(Code::Conflict).detail(e.to_string())),
        Err(PublishError::Db(e)) => Err(Problem::from(e)),
        Err(PublishError::Internal(m)) => Err(Problem::internal(m)),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Option codes picked so far, the model among them or not.
    pub picks: Vec<String>,
}

/// Every option's state, the price and the cheapest completion for some picks (what the live
/// socket sends after each pick).
#[utoipa::path(post, path = "/api/configure/evaluate", tag = "configurator", request_body = EvaluateRequest,
    responses((status = 200, description = "the evaluation"), (status = 422)))]
async fn evaluate(State(s): State<AppState>, ApiJson(req): ApiJson<EvaluateRequest>) -> ApiResult<Json<Evaluation>> {
    if req.picks.len() > MAX_VALUES {
        return Err(Problem::new(Code::ValidationFailed).field("picks", format!("at most {MAX_VALUES}")));
    }
    Ok(Json(s.app.evaluate(&req.picks)?))
}

/// The most ordered and the most saved configurations (served from the cache; a save or an
/// order refreshes them).
#[utoipa::path(get, path = "/api/configure/popular", tag = "configurator",
    responses((status = 200, description = "`mostOrdered` and `mostSaved`: up to ten kinds of configuration each, with their counts")))]
async fn popular(State(s): State<AppState>) -> ApiResult<Json<PopularLists>> {
    Ok(Json(s.app.popular().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// A session to continue (from an earlier `state` message), on this replica or another.
    pub session: Option<String>,
    /// The access token, for browsers (a header wins); saves then belong to this user.
    pub access_token: Option<String>,
}

/// Live configuration. Send `{"type":"pick","option":"<code>"}` (add `"resolve":true` to take
/// the least change when it conflicts), `{"type":"unpick","option":"<code>"}`, `{"type":"reset"}`
/// or `{"type":"save"}`; every change is answered with `{"type":"state","session",...evaluation}`,
/// a conflicting pick with `{"type":"conflict","option","fix"}` and the state unchanged, a save
/// with `{"type":"saved","configId","shareCode","price"}`, a bad message with `{"type":"error"}`.
#[utoipa::path(get, path = "/api/configure/ws", tag = "configurator", params(LiveQuery),
    responses((status = 101, description = "WebSocket"), (status = 401, description = "a bad token")))]
async fn live(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let caller = optional_caller(&s.verifier, &headers, q.access_token.as_deref()).await?;
    let ws = ws.map_err(|e| Problem::new(Code::BadRequest).detail(format!("a WebSocket upgrade is required: {e}")))?;
    let session = match q.session.as_deref() {
        Some(id) => s.app.find_session(id).await?.ok_or_else(|| Problem::not_found("session"))?,
        None => Session { id: uuid::Uuid::now_v7().to_string(), picks: Vec::new() },
    };
    let owner = caller.map(|c| c.user_id);
    Ok(ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| run_session(s, socket, session, owner)))
}

/// Largest message a client may send.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    option: Option<String>,
    #[serde(default)]
    resolve: bool,
}

async fn run_session(s: AppState, socket: WebSocket, mut session: Session, owner: Option<String>) {
    let (mut tx, mut rx) = socket.split();
    let mut reply = state_message(&s.app, &session);
    if s.app.store_session(&session).await.is_err() {
        reply = json!({"type": "error", "message": "the session could not be stored; try again"});
    }
    if tx.send(Message::Text(reply.to_string().into())).await.is_err() {
        return;
    }
    loop {
        let msg = tokio::select! {
            () = s.shutdown.cancelled() => break,
            m = rx.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => break,
        };
        let reply = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(m) => handle(&s.app, &mut session, owner.as_deref(), m).await,
            Err(e) => json!({"type": "error", "message": format!("not a configurator message: {e}")}),
        };
        if tx.send(Message::Text(reply.to_string().into())).await.is_err() {
            break;
        }
    }
}

fn state_message(app: &App, session: &Session) -> Value {
    match app.evaluate(&session.picks) {
        Ok(evaluation) => {
            let mut v = serde_json::to_value(evaluation).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), "state".into());
                m.insert("session".into(), session.id.clone().into());
                m.insert("picks".into(), json!(session.picks));
            }
            v
        }
        Err(e) => json!({"type": "error", "message": e.to_string()}),
    }
}

async fn handle(app: &App, session: &mut Session, owner: Option<&str>, m: ClientMessage) -> Value {
    let option = m.option.as_deref();
    let engine = app.engine();
    let known = |code: &str| engine.catalog().options.iter().any(|o| o.code == code);
    match (m.kind.as_str(), option) {
        ("pick" | "unpick", None) => json!({"type": "error", "message": "option is required"}),
        ("pick" | "unpick", Some(code)) if !known(code) => json!({"type": "error", "message": format!("no option {code:?}")}),
        ("pick", Some(code)) => {
            let Ok(current) = App::selection(&engine, &session.picks) else {
                return json!({"type": "error", "message": "the session's picks are no longer in the catalog; reset"});
            };
            let fix = match engine.fix(&current, code) {
                Ok(fix) => fix,
                Err(e) => return json!({"type": "error", "message": e.to_string()}),
            };
            match fix {
                Fix::Change(change) if change.dropped.is_empty() || m.resolve => session.picks = change.selection,
                other => return json!({"type": "conflict", "option": code, "fix": other}),
            }
            persist(app, session).await
        }
        ("unpick", Some(code)) => {
            session.picks.retain(|p| p != code);
            persist(app, session).await
        }
        ("reset", _) => {
            session.picks.clear();
            persist(app, session).await
        }
        ("save", _) => match app.save(&with_model(app, &session.picks), owner).await {
            Ok(row) => json!({
                "type": "saved", "configId": row.id, "shareCode": row.share_code,
                "price": MoneyView::from_minor(row.price, &row.currency),
            }),
            Err(ConfiguratorError::Invalid(because)) => {
                json!({"type": "error", "message": "the configuration breaks the catalog's rules", "because": because})
            }
            Err(e) => json!({"type": "error", "message": e.to_string()}),
        },
        (other, _) => json!({"type": "error", "message": format!("unknown type {other:?} (pick, unpick, reset, save)")}),
    }
}

/// The picks with a model: a save without one takes the one that fits.
fn with_model(app: &App, picks: &[String]) -> Vec<String> {
    let engine = app.engine();
    if picks.iter().any(|p| engine.catalog().options.iter().any(|o| o.code == *p && o.group == MODEL_GROUP)) {
        return picks.to_vec();
    }
    let mut all = vec![app.fitting_model(&engine, picks)];
    all.extend(picks.iter().cloned());
    all
}

async fn persist(app: &App, session: &Session) -> Value {
    match app.store_session(session).await {
        Ok(()) => state_message(app, session),
        Err(e) => json!({"type": "error", "message": e.to_string()}),
    }
}
