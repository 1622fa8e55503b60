//! RFC 9457 problem details: the one error shape every Motorpool API answers with.
//!
//! Each error has a stable snake_case `code` that clients may switch on; the table in
//! [`Code`] maps every code to its HTTP status and title in one place. A 5xx body never
//! carries internal detail: the cause is logged once, here, and the client gets a generic text.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/problem+json";

macro_rules! codes {
    ($($variant:ident => ($status:expr, $code:literal, $title:literal)),+ $(,)?) => {
        /// Every error code the platform can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $($variant),+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];
            pub fn status(self) -> StatusCode { match self { $(Code::$variant => $status),+ } }
            pub fn as_str(self) -> &'static str { match self { $(Code::$variant => $code),+ } }
            pub fn title(self) -> &'static str { match self { $(Code::$variant => $title),+ } }
        }
    };
}

codes! {
    BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
    MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
    InvalidBody => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "The body does not match the expected shape"),
    ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed"),
    UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Expected application/json"),
    PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request body too large"),
    Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required"),
    InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token", "The access token is not valid"),
    InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Wrong email or password"),
    InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "invalid_refresh_token", "The refresh token is not valid"),
    RefreshTokenReused => (StatusCode::UNAUTHORIZED, "refresh_token_reused", "The refresh token was already used; its session is revoked"),
    AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled", "The account is disabled"),
    Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
    NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
    RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found", "No such route"),
    MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed"),
    Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
    EmailTaken => (StatusCode::CONFLICT, "email_taken", "The email is already registered"),
    IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", "The idempotency key was used with another request"),
    IdempotencyInProgress => (StatusCode::CONFLICT, "idempotency_in_progress", "A request with this idempotency key is still running"),
    InsufficientFunds => (StatusCode::CONFLICT, "insufficient_funds", "Insufficient funds"),
    PaymentDeclined => (StatusCode::PAYMENT_REQUIRED, "payment_declined", "The payment was declined"),
    ProviderUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", "The payment provider is unavailable"),
    InvalidState => (StatusCode::CONFLICT, "invalid_state", "Not possible in the current state"),
    RefundExceedsCapture => (StatusCode::UNPROCESSABLE_ENTITY, "refund_exceeds_capture", "The refund exceeds what was captured"),
    OutOfStock => (StatusCode::CONFLICT, "out_of_stock", "Not enough stock is available"),
    StockBelowHeld => (StatusCode::CONFLICT, "stock_below_held", "More units are held than the new quantity"),
    HoldLimitExceeded => (StatusCode::CONFLICT, "hold_limit_exceeded", "Holding more units is not allowed"),
    CartEmpty => (StatusCode::CONFLICT, "cart_empty", "The cart is empty"),
    CheckoutFailed => (StatusCode::CONFLICT, "checkout_failed", "The order could not be completed; any payment was refunded"),
    InvalidConfiguration => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_configuration", "The configuration breaks the catalog's rules"),
    TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Too many requests"),
    TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", "Too many failed attempts"),
    Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
    ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable"),
    PeerUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "peer_unavailable", "An upstream service is unavailable"),
    DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "The database is unavailable; try again shortly"),
    PeerTimeout => (StatusCode::GATEWAY_TIMEOUT, "peer_timeout", "An upstream service did not answer in time"),
    CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, "circuit_open", "An upstream service is failing; requests to it are refused for a moment"),
    Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "The request took too long"),
}

/// One failing field of a validation error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The serialized problem body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProblemBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members particular to the problem (RFC 9457 extensions), e.g. `available` with
    /// `out_of_stock`.
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// An error answer. Build it from a [`Code`], add detail or field errors, return it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(code: Code) -> Self {
        Self { code, detail: None, errors: Vec::new(), retry_after_secs: None, extensions: serde_json::Map::new() }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError { field: field.into(), message: message.into() });
        self
    }

    /// Adds an extension member to the body (not one of the standard names).
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// A 500 whose cause is logged here, once, and never sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(Code::Internal)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound).detail(format!("{what} not found"))
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(Code::ValidationFailed) }
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("https://motorpool.dev/problems/{}", self.code.as_str()),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            errors: self.errors.clone(),
            extensions: self.extensions.clone(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code.as_str())?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    /// A database that cannot be reached (or dropped the session) is a 503 the client may
    /// retry; any other database error is a 500.
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return Problem::new(Code::DatabaseUnavailable).retry_after(1);
        }
        Problem::internal(format_args!("database: {e}"))
    }
}

/// The result type of every handler.
pub type ApiResult<T> = Result<T, Problem>;

/// A JSON body extractor whose rejections are problems with stable codes. Pair it with
/// `#[serde(deny_unknown_fields)]` on the body type so unknown fields are refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => Problem::new(Code::InvalidBody).detail(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => Problem::new(Code::MalformedJson).detail(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => Problem::new(Code::UnsupportedMediaType),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(Code::PayloadTooLarge),
        other => Problem::new(Code::BadRequest).detail(other.body_text()),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_unique_snake_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s} is not snake_case");
        }
    }

    #[test]
    fn server_errors_carry_no_detail() {
        let p = Problem::internal("connection refused to 10.0.0.3");
        assert_eq!(p.body().detail, None);
        assert_eq!(p.body().status, 500);
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_a_retryable_503_and_other_database_errors_a_500() {
        let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        for e in [sqlx::Error::Io(lost), sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let p = Problem::from(e);
            assert_eq!(p.code, Code::DatabaseUnavailable);
            assert_eq!(p.body().status, 503);
            assert_eq!(p.retry_after_secs, Some(1));
        }
        for e in [sqlx::Error::RowNotFound, sqlx::Error::ColumnNotFound("x".into()), sqlx::Error::Protocol("bad message".into())] {
            let p = Problem::from(e);
            assert_eq!(p.code, Code::Internal);
            assert_eq!(p.retry_after_secs, None);
        }
    }
}
