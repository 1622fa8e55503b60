//! Live replies over WebSocket, as the seed's cart does them: a client sends a change with its
//! own request id and hears `pending` at once, then `confirmed` or `rejected` when inventory
//! has answered, with the cart as it is then. `GET /cart/update-product` is the seed's one-shot
//! form: the request is upgraded and the one reply sent on the socket.
//!
//! Browsers cannot put an Authorization header on a WebSocket, so both take the access token
//! as `?access_token=` too; the gateway lets these paths through and the token is verified
//! here, before the upgrade.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use motorpool_platform::auth::AuthError;
use motorpool_platform::problem::{ApiResult, Code, Problem};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use utoipa::IntoParams;

use crate::app::{Applied, Shop};
use crate::domain::{self, Action, MAX_LINE_QUANTITY};
use crate::routes::{AppState, cart_view, rejection_problem};
use crate::store::CartRow;

/// Requests one socket may have in flight.
const IN_FLIGHT: usize = 16;
/// Largest message a client may send.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Deserialize, IntoParams)]
pub struct SocketQuery {
    /// The access token, for browsers (a header wins over this).
    pub access_token: Option<String>,
}

async fn authenticate(s: &AppState, headers: &HeaderMap, query_token: Option<String>) -> Result<String, Problem> {
    let token = motorpool_platform::auth::bearer(headers).map(str::to_owned).or(query_token).ok_or(AuthError::Missing)?;
    Ok(s.verifier.verify(&token).await?.sub)
}

fn upgrade(ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>) -> Result<WebSocketUpgrade, Problem> {
    ws.map_err(|e| Problem::new(Code::BadRequest).detail(format!("a WebSocket upgrade is required: {e}")))
}

/// One message from the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    request_id: String,
    product_code: Option<String>,
    quantity: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cart: Option<crate::routes::CartView>,
}

/// A checked request: action, product, quantity.
type Request = (Action, Option<String>, i64);

fn parse(text: &str) -> Result<(String, Request), (Option<String>, String)> {
    let m: ClientMessage = serde_json::from_str(text).map_err(|e| (None, format!("not a cart request: {e}")))?;
    let rid = Some(m.request_id.clone());
    domain::check_request_id(&m.request_id).map_err(|e| (None, e))?;
    let action = Action::parse(&m.kind).ok_or_else(|| (rid.clone(), format!("unknown type {:?} (add, set, remove, check)", m.kind)))?;
    let code = match (action, m.product_code) {
        (Action::Check, c) => c,
        (_, Some(c)) => {
            domain::check_code(&c).map_err(|e| (rid.clone(), e))?;
            Some(c)
        }
        (_, None) => return Err((rid, "productCode is required".into())),
    };
    let quantity = match action {
        Action::Add => m.quantity.unwrap_or(1),
        Action::Set => m.quantity.ok_or_else(|| (rid.clone(), "quantity is required".into()))?,
        Action::Remove | Action::Check => 0,
    };
    let min = if action == Action::Add { 1 } else { 0 };
    if !(min..=MAX_LINE_QUANTITY).contains(&quantity) {
        return Err((rid, format!("quantity must be between {min} and {MAX_LINE_QUANTITY}")));
    }
    Ok((m.request_id, (action, code, quantity)))
}

/// Runs one request and builds its final reply.
async fn run(shop: &Shop, user_id: &str, request_id: String, (action, code, quantity): Request, kind: &'static str) -> Reply {
    let outcome = shop.apply(user_id, action, code.as_deref(), quantity, Some(&request_id)).await;
    let mut reply = Reply { kind, request_id, status: "rejected", reason: None, available: None, detail: None, cart: None };
    let cart: Option<CartRow> = match outcome {
        Ok((cart, Applied::Confirmed(_))) => {
            reply.status = "confirmed";
            Some(cart)
        }
        Ok((cart, Applied::Pending)) => {
            reply.status = "pending";
            Some(cart)
        }
        Ok((cart, Applied::Rejected(r))) => {
            reply.reason = Some(r.reason());
            reply.available = r.available();
            reply.detail = rejection_problem(&r).detail;
            Some(cart)
        }
        Err(e) => {
            let p = Problem::from(e);
            reply.reason = Some(p.code.as_str());
            reply.detail = p.detail;
            None
        }
    };
    if let Some(cart) = cart {
        reply.cart = cart_view(shop, &cart).await.ok();
    }
    reply
}

fn text(v: &impl Serialize) -> Message {
    Message::Text(serde_json::to_string(v).unwrap_or_default().into())
}

/// The cart's live channel (WebSocket). On open: `{"type":"cart","cart":…}`. Send
/// `{"type":"add|set|remove|check","requestId":"…","productCode":"…","quantity":n}`; the
/// replies are `{"type":"reply","requestId":"…","status":"pending"}` and then
/// `…"status":"confirmed"|"rejected"` with `reason`, `available` and the cart.
#[utoipa::path(get, path = "/api/cart/ws", tag = "shop", params(SocketQuery), security(("bearer" = [])),
    responses((status = 101, description = "WebSocket of cart requests and replies"), (status = 401)))]
pub async fn cart_socket(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SocketQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let token = q.ok().and_then(|Query(q)| q.access_token);
    let user_id = authenticate(&s, &headers, token).await?;
    let ws = upgrade(ws)?;
    Ok(ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| serve_socket(s, user_id, socket)))
}

async fn serve_socket(s: AppState, user_id: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    // One writer, so replies from concurrent requests never interleave mid-frame.
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let shop = s.shop.clone();
    match initial_cart(&shop, &user_id).await {
        Some(cart) => {
            let _ = tx.send(text(&json!({"type": "cart", "cart": cart}))).await;
        }
        None => {
            let _ = tx.send(text(&json!({"type": "error", "code": "internal"}))).await;
        }
    }
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let shutdown = s.shutdown.clone();
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => {
                let _ = tx.send(Message::Close(Some(CloseFrame { code: close_code::AWAY, reason: "shutting down".into() }))).await;
                break;
            }
            m = stream.next() => m,
        };
        let Some(Ok(msg)) = msg else { break };
        let body = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            Message::Binary(_) => {
                let _ = tx.send(text(&json!({"type": "error", "code": "bad_request", "detail": "send JSON text messages"}))).await;
                continue;
            }
            _ => continue,
        };
        let (request_id, request) = match parse(&body) {
            Ok(p) => p,
            Err((rid, detail)) => {
                let _ = tx.send(text(&json!({"type": "error", "code": "bad_request", "requestId": rid, "detail": detail}))).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = tx
                .send(text(
                    &json!({"type": "error", "code": "too_many_requests", "requestId": request_id, "detail": "wait for earlier replies"}),
                ))
                .await;
            continue;
        };
        let _ = tx.send(text(&json!({"type": "reply", "requestId": request_id, "status": "pending"}))).await;
        let (shop, tx, user_id) = (shop.clone(), tx.clone(), user_id.clone());
        tokio::spawn(async move {
            let reply = run(&shop, &user_id, request_id, request, "reply").await;
            let _ = tx.send(text(&reply)).await;
            drop(permit);
        });
    }
    drop(tx);
    let _ = writer.await;
}

async fn initial_cart(shop: &Shop, user_id: &str) -> Option<crate::routes::CartView> {
    let cart = crate::store::ensure_cart(&shop.db, user_id, shop.clock.now_ms()).await.ok()?;
    cart_view(shop, &cart).await.ok()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateQuery {
    pub product_code: String,
    /// The product's new quantity in the cart; 0 removes it.
    pub quantity: i64,
    /// The client's id for this request (generated when absent).
    pub request_id: Option<String>,
    #[serde(rename = "access_token")]
    pub access_token: Option<String>,
}

/// The seed's form: set a product's quantity in the caller's cart; the request is upgraded to
/// a WebSocket that carries one reply `{"requestId","status","reason"?,"available"?,"cart"}`
/// and closes.
#[utoipa::path(get, path = "/cart/update-product", tag = "shop", params(UpdateQuery), security(("bearer" = [])),
    responses((status = 101, description = "WebSocket with one reply"), (status = 401), (status = 422)))]
pub async fn update_product(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UpdateQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let q = q.map_err(|e| Problem::new(Code::BadRequest).detail(e.body_text()))?.0;
    let user_id = authenticate(&s, &headers, q.access_token.clone()).await?;
    let request_id = q.request_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let body = json!({"type": "set", "requestId": request_id, "productCode": q.product_code, "quantity": q.quantity}).to_string();
    let (request_id, request) = parse(&body).map_err(|(_, detail)| {
        Problem::validation(vec![motorpool_platform::problem::FieldError { field: "query".into(), message: detail }])
    })?;
    let ws = upgrade(ws)?;
    Ok(ws.max_message_size(MAX_MESSAGE).on_upgrade(move |mut socket| async move {
        let reply = run(&s.shop, &user_id, request_id, request, "reply").await;
        let mut v: Value = serde_json::to_value(&reply).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("type");
        }
        let _ = socket.send(Message::Text(v.to_string().into())).await;
        let _ = socket.send(Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: "done".into() }))).await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let (rid, (a, c, q)) = parse(r#"{"type":"add","requestId":"r1","productCode":"BPF-VWGOLF","quantity":2}"#).unwrap();
        assert_eq!((rid.as_str(), a, c.as_deref(), q), ("r1", Action::Add, Some("BPF-VWGOLF"), 2));
        assert!(parse(r#"{"type":"add","requestId":"r1"}"#).is_err(), "productCode is required");
        assert!(parse(r#"{"type":"buy","requestId":"r1","productCode":"X"}"#).is_err());
        assert!(parse(r#"{"type":"set","requestId":"r1","productCode":"X","quantity":101}"#).is_err());
        assert!(parse(r#"{"type":"add","requestId":"r1","productCode":"X","extra":1}"#).is_err(), "unknown fields are refused");
        let (_, (a, _, q)) = parse(r#"{"type":"set","requestId":"r2","productCode":"X","quantity":0}"#).unwrap();
        assert_eq!((a, q), (Action::Set, 0));
        assert!(parse(r#"{"type":"check","requestId":"r3"}"#).is_ok());
    }
}
