//! Identity's HTTP adapters: request and response shapes, and the translation to use cases.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use motorpool_platform::auth::{Admin, Caller, Role, Verifier};
use motorpool_platform::clock::rfc3339_ms;
use motorpool_platform::problem::{ApiJson, ApiResult, FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{Identity, TokenPair};
use crate::domain::{Email, FullName, Password};
use crate::store::{self, UserRow};

#[derive(Clone)]
pub struct AppState {
    pub identity: Arc<Identity>,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(s: &AppState) -> Verifier {
        s.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/users/{id}", get(get_user).patch(update_user))
        .route("/api/admin/keys/rotate", post(rotate_keys))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(register, login, refresh, logout, me, jwks, list_users, get_user, update_user, rotate_keys),
    components(schemas(RegisterRequest, LoginRequest, RefreshRequest, TokenResponse, UserView, UserPage, UserPatch, Jwks, Jwk, RotatedKey, Role)),
    tags((name = "identity", description = "Accounts, sessions and roles"))
)]
pub struct ApiDoc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub full_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: "Bearer".into(),
            expires_in: p.expires_in,
            refresh_expires_in: p.refresh_expires_in,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            role: u.role,
            disabled: u.disabled_at.is_some(),
            created_at: rfc3339_ms(u.created_at),
            updated_at: rfc3339_ms(u.updated_at),
        }
    }
}

/// Create a customer account.
#[utoipa::path(post, path = "/api/auth/register", tag = "identity", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, description = "email_taken"), (status = 422, description = "validation_failed")))]
async fn register(State(s): State<AppState>, ApiJson(body): ApiJson<RegisterRequest>) -> ApiResult<(StatusCode, Json<UserView>)> {
    let mut errors: Vec<FieldError> = Vec::new();
    let email = Email::parse(&body.email).map_err(|e| errors.push(e)).ok();
    let password = Password::parse(&body.password, email.as_ref()).map_err(|e| errors.push(e)).ok();
    let name = FullName::parse(&body.full_name).map_err(|e| errors.push(e)).ok();
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(Problem::validation(errors));
    };
    let user = s.identity.register(email, password, name, Role::Customer).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// The client address for throttling: the address our gateway appended to
/// `X-Forwarded-For`, else the peer.
fn client_addr(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| peer.ip().to_string())
}

/// Exchange email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/api/auth/login", tag = "identity", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "invalid_credentials"), (status = 429, description = "too_many_attempts")))]
async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    if body.password.chars().count() > crate::domain::PASSWORD_MAX {
        return Err(Problem::new(motorpool_platform::Code::InvalidCredentials));
    }
    let pair = s.identity.login(&body.email, &body.password, &client_addr(&headers, peer)).await?;
    Ok(Json(pair.into()))
}

/// Rotate a refresh token: the old one is spent, a new pair is returned.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "identity", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "invalid_refresh_token or refresh_token_reused")))]
async fn refresh(State(s): State<AppState>, ApiJson(body): ApiJson<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(s.identity.refresh(&body.refresh_token).await?.into()))
}

/// End the session of a refresh token.
#[utoipa::path(post, path = "/api/auth/logout", tag = "identity", request_body = RefreshRequest, responses((status = 204)))]
async fn logout(State(s): State<AppState>, ApiJson(body): ApiJson<RefreshRequest>) -> ApiResult<StatusCode> {
    s.identity.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user.
#[utoipa::path(get, path = "/api/auth/me", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401)))]
async fn me(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<UserView>> {
    let user = store::find_user(&s.identity.db, &caller.user_id).await?.ok_or_else(|| Problem::not_found("user"))?;
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub usage: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity", responses((status = 200, body = Jwks)))]
async fn jwks(State(s): State<AppState>) -> Json<Jwks> {
    let keys = s
        .identity
        .keys
        .public_keys()
        .into_iter()
        .map(|k| Jwk { kty: "OKP".into(), crv: "Ed25519".into(), x: k.x, kid: k.kid, alg: "EdDSA".into(), usage: "sig".into() })
        .collect();
    Json(Jwks { keys })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserListQuery {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Substring of email or name.
    pub q: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

/// List users (admin).
#[utoipa::path(get, path = "/api/admin/users", tag = "identity", params(UserListQuery), security(("bearer" = [])),
    responses((status = 200, body = UserPage), (status = 403)))]
async fn list_users(State(s): State<AppState>, _admin: Admin, Query(q): Query<UserListQuery>) -> ApiResult<Json<UserPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Problem::validation(vec![FieldError { field: "limit".into(), message: "must be between 1 and 200".into() }]));
    }
    let rows = store::list_users(&s.identity.db, q.cursor.as_deref(), q.q.as_deref().filter(|q| !q.is_empty()), limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    let items: Vec<UserView> = rows.iter().take(limit as usize).map(UserView::from).collect();
    let next_cursor = if has_more { items.last().map(|u| u.id.clone()) } else { None };
    Ok(Json(UserPage { items, next_cursor }))
}

/// One user (admin).
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 404)))]
async fn get_user(State(s): State<AppState>, _admin: Admin, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    let user = store::find_user(&s.identity.db, &id).await?.ok_or_else(|| Problem::not_found("user"))?;
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Change a user's role or disable them (admin). Admins cannot disable or demote themselves.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "identity", request_body = UserPatch, security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 404), (status = 409)))]
async fn update_user(
    State(s): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    if id == admin.user_id && (body.disabled == Some(true) || body.role.is_some_and(|r| r != Role::Admin)) {
        return Err(Problem::new(motorpool_platform::Code::Conflict).detail("an admin cannot disable or demote their own account"));
    }
    let user = s.identity.update_user(&id, body.role, body.disabled).await?;
    s.verifier.forget(&id);
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedKey {
    pub kid: String,
}

/// Make a new signing key current (admin). Tokens signed with the old key stay valid until
/// they expire.
#[utoipa::path(post, path = "/api/admin/keys/rotate", tag = "identity", security(("bearer" = [])), responses((status = 200, body = RotatedKey)))]
async fn rotate_keys(State(s): State<AppState>, _admin: Admin) -> ApiResult<Json<RotatedKey>> {
    let kid = s.identity.keys.rotate().await.map_err(Problem::internal)?;
    Ok(Json(RotatedKey { kid }))
}
