//! The proxy: every request that matches the route table is checked (token, role, rate
//! limit) and forwarded to a live replica of the owning service over pooled keep-alive
//! connections, streaming bodies both ways. WebSocket upgrades become a byte tunnel between
//! the client and the replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use motorpool_platform::auth::{AuthError, Verifier};
use motorpool_platform::cache::{Cache, RateDecision};
use motorpool_platform::discovery::Discovery;
use motorpool_platform::http::TRACEPARENT;
use motorpool_platform::metrics::Metrics;
use motorpool_platform::problem::{Code, Problem};

use crate::config::GatewayConfig;
use crate::table::{self, Access};

pub struct Gateway {
    pub client: Client<HttpConnector, Body>,
    pub discovery: Discovery,
    pub verifier: Verifier,
    pub cache: Cache,
    pub cfg: GatewayConfig,
    pub metrics: Metrics,
    pub body_limit: usize,
    next: AtomicUsize,
}

impl Gateway {
    pub fn new(discovery: Discovery, verifier: Verifier, cache: Cache, cfg: GatewayConfig, metrics: Metrics, body_limit: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(512).build(connector);
        Self { client, discovery, verifier, cache, cfg, metrics, body_limit, next: AtomicUsize::new(0) }
    }
}

/// The gateway's fallback handler: everything that is not a page, the docs or an ops route.
pub async fn handle(State(gw): State<Arc<Gateway>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let Some(rule) = table::find(req.uri().path()) else {
        return Problem::new(Code::RouteNotFound).detail(format!("no route for {} {}", req.method(), req.uri().path())).into_response();
    };
    let needs_token = match rule.access {
        Access::Public => false,
        Access::PublicRead => !(req.method() == Method::GET || req.method() == Method::HEAD),
        Access::User | Access::Roles(_) => true,
    };
    let mut client_key = None;
    if needs_token {
        let claims = match motorpool_platform::auth::bearer(req.headers()) {
            None => Err(AuthError::Missing),
            Some(token) => gw.verifier.verify(token).await,
        };
        let claims = match claims {
            Ok(c) => c,
            Err(e) => return Problem::from(e).into_response(),
        };
        if let Access::Roles(roles) = rule.access
            && !roles.contains(&claims.role)
        {
            return Problem::new(Code::Forbidden).into_response();
        }
        client_key = Some(format!("gateway:rate:user:{}", claims.sub));
    }
    if gw.cfg.rate_limit_enabled {
        let key = client_key.unwrap_or_else(|| format!("gateway:rate:ip:{}", peer.ip()));
        match gw.cache.take_token(&key, gw.cfg.rate_limit_per_sec, gw.cfg.rate_limit_burst).await {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after_ms }) => {
                gw.metrics.count("gateway_rate_limited_total", "Requests refused by the rate limit.", &[], 1);
                return Problem::new(Code::TooManyRequests).retry_after(retry_after_ms.div_ceil(1000)).into_response();
            }
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; letting the request through"),
        }
    }
    forward(&gw, rule.service, req, peer).await
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    for name in &HOP_BY_HOP {
        if keep_upgrade && name == header::CONNECTION {
            continue;
        }
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

async fn forward(gw: &Gateway, service: &str, mut req: Request, peer: SocketAddr) -> Response {
    let addrs = match gw.discovery.resolve(service).await {
        Ok(addrs) if !addrs.is_empty() => addrs,
        Ok(_) => return Problem::new(Code::PeerUnavailable).detail(format!("no live instance of {service}")).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, service, "discovery failed");
            return Problem::new(Code::PeerUnavailable).into_response();
        }
    };
    let addr = &addrs[gw.next.fetch_add(1, Ordering::Relaxed) % addrs.len()];
    let upgrade = is_upgrade(req.headers());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{addr}{path}").parse::<Uri>() else {
        return Problem::new(Code::BadRequest).detail("unusable request target").into_response();
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    headers.remove(header::HOST);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Some(ctx) = motorpool_platform::telemetry::current_trace()
        && let Ok(v) = HeaderValue::from_str(&ctx.child().to_string())
    {
        headers.insert(TRACEPARENT.clone(), v);
    }

    if upgrade {
        return tunnel(gw, req).await;
    }
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > gw.body_limit as u64);
    if too_large {
        return Problem::new(Code::PayloadTooLarge).into_response();
    }
    let limit = gw.body_limit;
    let req = req.map(|b| Body::new(Limited::new(b, limit)));
    let timeout = Duration::from_millis(gw.cfg.upstream_timeout_ms);
    match tokio::time::timeout(timeout, gw.client.request(req)).await {
        Err(_) => {
            gw.metrics.count("gateway_upstream_errors_total", "Upstream failures.", &[("service", service), ("kind", "timeout")], 1);
            Problem::new(Code::PeerTimeout).into_response()
        }
        Ok(Err(e)) => {
            gw.metrics.count("gateway_upstream_errors_total", "Upstream failures.", &[("service", service), ("kind", "unavailable")], 1);
            tracing::warn!(error = %e, service, upstream = %addr, "upstream request failed");
            Problem::new(Code::PeerUnavailable).into_response()
        }
        Ok(Ok(resp)) => {
            let mut resp = resp.map(Body::new);
            strip_hop_by_hop(resp.headers_mut(), false);
            resp
        }
    }
}

/// Forwards an upgrade request; when the replica agrees (101), joins the two upgraded
/// connections and copies bytes both ways until either side closes.
async fn tunnel(gw: &Gateway, mut req: Request) -> Response {
    let client_side = hyper::upgrade::on(&mut req);
    let req = req.map(|_| Body::empty());
    let mut resp = match tokio::time::timeout(Duration::from_millis(gw.cfg.upstream_timeout_ms), gw.client.request(req)).await {
        Err(_) => return Problem::new(Code::PeerTimeout).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream upgrade failed");
            return Problem::new(Code::PeerUnavailable).into_response();
        }
        Ok(Ok(resp)) => resp,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return resp.map(Body::new);
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
    });
    resp.map(Body::new)
}
