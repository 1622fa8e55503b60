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
    /// What arrived: the body's length and the headers the gateway is responsible for.
    async fn echo_body(headers: axum::http::HeaderMap, body: axum::body::Bytes) -> axum::Json<serde_json::Value> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        axum::Json(json!({
            "len": body.len(),
            "allX": body.iter().all(|b| *b == b'x'),
            "xff": h("x-forwarded-for"),
            "requestId": h("x-request-id"),
            "traceparent": h("traceparent"),
            "connection": h("connection"),
            "custom": h("x-custom"),
        }))
    }
    /// A response streamed in chunks, some time apart.
    async fn stream() -> axum::response::Response {
        let parts = futures::stream::iter(0..3).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(format!("part-{i}")))
        });
        axum::response::Response::new(axum::body::Body::from_stream(parts))
    }
    let router = axum::Router::new()
        .route("/api/auth/register", get(echo))
        .route("/api/auth/register/echo", post(echo_body))
        .route("/api/auth/register/stream", get(stream))
        .route("/api/auth/login", post(slow));
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
async fn bodies_streams_and_pipelined_requests_pass_through_whole() {
    let upstream = fake_upstream().await;
    let tp = gateway_in_front_of(upstream).await;
    let http = client();
    let gw = tp.url("gateway");

    // A large body arrives whole, with the forwarding headers set and hop-by-hop ones gone.
    let r = http
        .post(format!("{gw}/api/auth/register/echo"))
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-custom", "kept")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(vec![b'x'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let trace = r.headers()["traceparent"].to_str().unwrap().to_owned();
    let seen: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen["len"], 200_000);
    assert_eq!(seen["allX"], true);
    assert_eq!(seen["xff"], "192.0.2.1, 127.0.0.1");
    assert_eq!(seen["custom"], "kept");
    assert_eq!(seen["connection"], serde_json::Value::Null);
    assert_eq!(seen["requestId"], request_id.as_str(), "the replica sees the id the client gets back");
    assert!(trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "the caller's trace goes on: {trace}");
    assert!(seen["traceparent"].as_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));

    // A streamed (chunked) response arrives whole.
    let body = http.get(format!("{gw}/api/auth/register/stream")).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "part-0part-1part-2");

    // Two requests written at once on one connection get two answers, in order.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(tp.addr("gateway")).await.unwrap();
    raw.write_all(
        b"GET /api/auth/register/stream HTTP/1.1\r\nHost: gw\r\n\r\n\
          POST /api/auth/register/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nConnection: close\r\n\r\nxxxxx",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await.expect("the gateway closes after the second").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
    let (first, second) = answer.split_at(answer.rfind("HTTP/1.1 200 OK").unwrap());
    assert!(first.contains("part-0") && first.contains("part-2"), "{answer}");
    assert!(second.contains("\"len\":5") && second.to_ascii_lowercase().contains("connection: close"), "{answer}");
    tp.cleanup().await;
}

/// A replica that answers one request per connection and then closes it, without saying so.
async fn one_shot_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_replica_connection_closed_while_idle_is_replaced_without_an_error() {
    let tp = gateway_in_front_of(one_shot_upstream().await).await;
    let http = client();
    for i in 0..4 {
        // The client keeps its connection to the gateway; the gateway's to the replica was
        // closed after the previous answer.
        let r = http.get(format!("{}/api/auth/register/x", tp.url("gateway"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// One GET spoken as HTTP/1.0, which the gateway's fast path hands to its general (hyper)
/// path: the status code and the whole answer.
async fn http10_get(gw: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(gw.trim_start_matches("http://")).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: motorpool\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn a_bodiless_request_refused_by_a_dead_replica_goes_to_another_on_both_proxy_paths() {
    // A port nothing listens on any more: connecting to it is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    for path in ["fast", "general"] {
        let mut cfg = config();
        cfg.discovery.backend = DiscoveryBackend::Static;
        // The dead replica second: the balancer's first pick of two equally idle ones.
        cfg.discovery.peers.insert("identity".into(), vec![fake_upstream().await.to_string(), dead.clone()]);
        // No ready checks, which would take the dead replica out before any request tried it.
        cfg.gateway.ready_check_ms = 0;
        let tp = TestPlatform::start(cfg, &["gateway"], Clock::system()).await.unwrap();
        let gw = tp.url("gateway");
        for i in 0..4 {
            let (status, body) = if path == "fast" {
                let r = client().get(format!("{gw}/api/auth/register/stream")).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            } else {
                http10_get(&gw, "/api/auth/register/stream").await
            };
            assert_eq!(status, 200, "{path} path, request {i}: {body}");
            assert!(body.ends_with("part-0part-1part-2"), "{path} path, request {i}: {body}");
        }
        let metrics = client().get(format!("{gw}/metrics")).send().await.unwrap().text().await.unwrap();
        let refused = metric_in(&metrics, "gateway_upstream_errors_total", "kind=\"unavailable\"");
        assert!(refused >= 1.0, "{path} path: the dead replica was tried first and refused ({refused})");
        tp.cleanup().await;
    }
}
