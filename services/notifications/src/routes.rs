//! Notifications' HTTP adapters: request and response shapes, and the translation to use
//! cases. Every route acts for the calling user only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::Stream;
use motorpool_platform::auth::{AuthError, Caller, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::problem::{ApiJson, ApiResult, Code, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::Notifications;
use crate::domain::{Channel, ChannelSet};
use crate::store::{NotificationRow, WebhookRow};

/// How often an idle live stream sends a comment, so proxies keep the connection open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct AppState {
    pub app: Arc<Notifications>,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications", get(list_notifications))
        .route("/api/notifications/read-all", post(mark_all_read))
        .route("/api/notifications/stream", get(stream))
        .route("/api/notifications/preferences", get(get_preferences).put(set_preference))
        .route("/api/notifications/webhooks", get(list_webhooks).post(create_webhook))
        .route("/api/notifications/webhooks/{id}", delete(delete_webhook))
        .route("/api/notifications/{id}", get(get_notification))
        .route("/api/notifications/{id}/read", post(mark_read))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        list_notifications,
        get_notification,
        mark_read,
        mark_all_read,
        stream,
        get_preferences,
        set_preference,
        create_webhook,
        list_webhooks,
        delete_webhook
    ),
    components(schemas(
        NotificationView,
        NotificationPage,
        PreferenceView,
        PreferencesView,
        PreferenceUpdate,
        WebhookCreate,
        WebhookCreated,
        WebhookView,
        WebhookList,
        Channel
    )),
    tags((name = "notifications", description = "In-app notifications, live stream, channel preferences and signed webhooks"))
)]
pub struct ApiDoc;

/// Query strings refused with a problem, like bodies.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q).map_err(|e| Problem::new(Code::BadRequest).detail(e.body_text()))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: String,
    /// The event that caused it, e.g. `payments.charge.succeeded.v1`.
    pub event_type: String,
    pub title: String,
    pub body: String,
    pub created_at: String,
    /// When it was marked read; null while unread.
    pub read_at: Option<String>,
}

impl From<&NotificationRow> for NotificationView {
    fn from(n: &NotificationRow) -> Self {
        Self {
            id: n.id.clone(),
            event_type: n.event_type.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            created_at: rfc3339_ms(n.created_at),
            read_at: n.read_at.map(rfc3339_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
    /// All of the caller's unread notifications, not just this page's.
    pub unread_count: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Only unread notifications.
    pub unread: Option<bool>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = NotificationPage), (status = 401), (status = 422, description = "validation_failed")))]
async fn list_notifications(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<NotificationPage>> {
    let q = query(q)?;
    let page = s.app.list(&caller.user_id, q.limit, q.cursor.as_deref(), q.unread.unwrap_or(false)).await?;
    Ok(Json(NotificationPage {
        items: page.items.iter().map(NotificationView::from).collect(),
        next_cursor: page.next_cursor,
        unread_count: page.unread_count,
    }))
}

/// One of the caller's notifications.
#[utoipa::path(get, path = "/api/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = NotificationView), (status = 404, description = "not_found, also for other users' notifications")))]
async fn get_notification(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<NotificationView>> {
    Ok(Json(NotificationView::from(&s.app.get(&caller.user_id, &id).await?)))
}

/// Mark one of the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    responses((status = 204), (status = 404, description = "not_found, also for other users' notifications")))]
async fn mark_read(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.app.mark_read(&caller.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark all of the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = [])), responses((status = 204)))]
async fn mark_all_read(State(s): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    s.app.mark_all_read(&caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// The access token, for clients that cannot send an Authorization header (a browser's
    /// EventSource). A header wins over this.
    pub access_token: Option<String>,
}

/// The caller's new notifications, live, as Server-Sent Events: an event `notification`
/// carrying the JSON of a `NotificationView` for each one created after connecting, and a
/// keep-alive comment every 15 s. The stream ends when the access token expires.
#[utoipa::path(get, path = "/api/notifications/stream", tag = "notifications", params(StreamQuery), security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of `notification` events", content_type = "text/event-stream", body = NotificationView),
              (status = 401)))]
async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> ApiResult<([(HeaderName, HeaderValue); 1], Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static>)> {
    let q = query(q)?;
    // The gateway lets this route through without a header check (EventSource cannot send
    // one), so the token is verified here, with the same verifier as every other route.
    let token = motorpool_platform::auth::bearer(&headers).map(str::to_owned).or(q.access_token).ok_or(AuthError::Missing)?;
    let claims = s.verifier.verify(&token).await?;
    let live = s.app.live(&claims.sub, claims.exp).await?;
    let events = live.into_events(|n| serde_json::to_value(NotificationView::from(n)).unwrap_or_default());
    // Tell buffering proxies (nginx) to pass events through as they come.
    let no_buffering = [(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"))];
    Ok((no_buffering, Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceView {
    /// An event type, or `*` for every event without a rule of its own.
    pub event_type: String,
    pub channels: Vec<Channel>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesView {
    /// The caller's rules. An exact event type wins over `*`, which wins over `defaults`.
    pub preferences: Vec<PreferenceView>,
    /// The channels of events no rule covers.
    pub defaults: Vec<Channel>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreferenceUpdate {
    /// An event type such as `payments.charge.succeeded.v1`, or `*`.
    pub event_type: String,
    /// Channels to use: `in_app`, `email`, `webhook`, `sms`, `push`. Without `in_app` the
    /// notification is still kept, but as read, and not pushed live.
    pub channels: Vec<String>,
}

async fn preferences_view(s: &AppState, user_id: &str) -> Result<PreferencesView, Problem> {
    let rules = s.app.preferences(user_id).await?;
    Ok(PreferencesView {
        preferences: rules.into_iter().map(|(event_type, channels)| PreferenceView { event_type, channels: channels.to_vec() }).collect(),
        defaults: ChannelSet::defaults().to_vec(),
    })
}

/// The caller's channel preferences.
#[utoipa::path(get, path = "/api/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = PreferencesView)))]
async fn get_preferences(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<PreferencesView>> {
    Ok(Json(preferences_view(&s, &caller.user_id).await?))
}

/// Choose the channels of one event type (or of all, with `*`).
#[utoipa::path(put, path = "/api/notifications/preferences", tag = "notifications", request_body = PreferenceUpdate, security(("bearer" = [])),
    responses((status = 200, body = PreferencesView), (status = 422, description = "validation_failed")))]
async fn set_preference(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PreferenceUpdate>,
) -> ApiResult<Json<PreferencesView>> {
    s.app.set_preference(&caller.user_id, &body.event_type, &body.channels).await?;
    Ok(Json(preferences_view(&s, &caller.user_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookCreate {
    /// An http or https URL on the public internet.
    pub url: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    pub id: String,
    pub url: String,
    /// The signing secret: shown only in this response. Deliveries carry
    /// `Motorpool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    pub secret: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub created_at: String,
}

impl From<&WebhookRow> for WebhookView {
    fn from(w: &WebhookRow) -> Self {
        Self { id: w.id.clone(), url: w.url.clone(), created_at: rfc3339_ms(w.created_at) }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// Register a webhook for the caller's notifications (enable the `webhook` channel in the
/// preferences to use it). URLs that lead to loopback, private, link-local or other
/// non-public addresses are refused.
#[utoipa::path(post, path = "/api/notifications/webhooks", tag = "notifications", request_body = WebhookCreate, security(("bearer" = [])),
    responses((status = 201, body = WebhookCreated), (status = 409, description = "conflict: too many webhooks"),
              (status = 422, description = "validation_failed: the URL is not allowed")))]
async fn create_webhook(State(s): State<AppState>, caller: Caller, ApiJson(body): ApiJson<WebhookCreate>) -> ApiResult<Response> {
    let w = s.app.create_webhook(&caller.user_id, &body.url).await?;
    let created = WebhookCreated { id: w.id.clone(), url: w.url.clone(), secret: w.secret.clone(), created_at: rfc3339_ms(w.created_at) };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(created)).into_response())
}

/// The caller's webhooks (without their secrets).
#[utoipa::path(get, path = "/api/notifications/webhooks", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = WebhookList)))]
async fn list_webhooks(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<WebhookList>> {
    let items = s.app.list_webhooks(&caller.user_id).await?.iter().map(WebhookView::from).collect();
    Ok(Json(WebhookList { items }))
}

/// Delete one of the caller's webhooks; its queued deliveries are dropped.
#[utoipa::path(delete, path = "/api/notifications/webhooks/{id}", tag = "notifications", security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
async fn delete_webhook(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.app.delete_webhook(&caller.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
