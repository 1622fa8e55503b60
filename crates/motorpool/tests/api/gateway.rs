//! The gateway's own behaviour: unknown routes, unreachable and slow peers, rate limits,
//! WebSocket tunnelling, the web pages and the merged API docs.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use motorpool::testkit::TestPlatform;
use motorpool_platform::clock::Clock;
use motorpool_platform::config::DiscoveryBackend;
use serde_json::json;

use crate::helpers::*;

/// A stand-in upstream on a random port: a WebSocket echo and a handler that never answers
/// in time.
async fn fake_upstream() -> std::net::SocketAddr {
    async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
        ws.on_upgrade(|mut socket: WebSocket| async move {
            while let Some(Ok(msg)) = socket.recv().await {
                if let Message::Text(t) = msg
                    && socket.send(Message::Text(format!("echo:{t}").into())).await.is_err()
                {
                    return;
                }
            }
        })
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }
    let router = axum::Router::new().route("/api/auth/register", get(echo)).route("/api/auth/login", post(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Only the gateway, with "identity" statically pointed at `upstream`.
async fn gateway_in_front_of(upstream: std::net::SocketAddr) -> TestPlatform {
    let mut cfg = config();
    cfg.discovery.backend = DiscoveryBackend::Static;
    cfg.discovery.peers.insert("identity".into(), vec![upstream.to_string()]);
    cfg.gateway.upstream_timeout_ms = 300;
    TestPlatform::start(cfg, &["gateway"], Clock::system()).await.unwrap()
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled_to_the_service() {
    let upstream = fake_upstream().await;
    let tp = gateway_in_front_of(upstream).await;
    let url = format!("ws://{}/api/auth/register", tp.addr("gateway"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::Text(format!("hello {i}").into())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo:hello {i}"));
    }
    tp.cleanup().await;
}

#[tokio::test]
async fn a_slow_peer_is_a_504_and_a_missing_peer_a_503() {
    let upstream = fake_upstream().await;
    let tp = gateway_in_front_of(upstream).await;
    let http = client();
    let r = http.post(format!("{}/api/auth/login", tp.url("gateway"))).json(&json!({})).send().await.unwrap();
    assert_problem(r, 504, "peer_timeout").await;
    tp.cleanup().await;

    // Gateway alone, nothing registered for identity.
    let tp = TestPlatform::start(config(), &["gateway"], Clock::system()).await.unwrap();
    let r = http.post(format!("{}/api/auth/login", tp.url("gateway"))).json(&json!({})).send().await.unwrap();
    assert_problem(r, 503, "peer_unavailable").await;
    // And the gateway says it is not ready.
    let r = http.get(format!("{}/ready", tp.url("gateway"))).send().await.unwrap();
    assert_eq!(r.status(), 503);
    tp.cleanup().await;
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn().await;
    for path in ["/api/nothing-here", "/api/authx", "/favicon.php"] {
        let r = app.http.get(format!("{}{path}", app.gw)).send().await.unwrap();
        assert_problem(r, 404, "route_not_found").await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn clients_over_their_rate_are_refused_with_retry_after() {
    let mut cfg = config();
    cfg.gateway.rate_limit_per_sec = 1.0;
    cfg.gateway.rate_limit_burst = 5;
    let app = spawn_with(cfg).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = app.http.get(format!("{}/.well-known/jwks.json", app.gw)).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    let r = app.http.get(format!("{}/.well-known/jwks.json", app.gw)).send().await.unwrap();
    assert_problem(r, 429, "too_many_requests").await;
    app.cleanup().await;
}

#[tokio::test]
async fn pages_and_merged_api_docs_are_served() {
    let app = spawn().await;
    for page in ["/", "/index.html", "/login.html", "/register.html", "/account.html", "/assets/app.js", "/assets/app.css"] {
        let r = app.http.get(format!("{}{page}", app.gw)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(r.headers().contains_key("content-security-policy"), "{page}");
    }
    let r = app.http.get(format!("{}/docs/", app.gw)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = app.http.get(format!("{}/docs/openapi.json", app.gw)).send().await.unwrap().json().await.unwrap();
    for path in ["/api/auth/register", "/api/auth/login", "/api/auth/refresh", "/api/auth/logout", "/api/auth/me", "/api/admin/users"] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    app.cleanup().await;
}
