//! The proxy: every request that matches the route table is checked (token, role, rate
//! limit) and forwarded to a live replica of the owning service over pooled keep-alive
//! connections, streaming bodies both ways. WebSocket upgrades become a byte tunnel between
//! the client and the replica.
//!
//! Proxied requests do not go through the service router and its middleware: they are taken
//! straight off the connection ([`Front`]), and this module does the middleware's work itself
//! at a fraction of the cost — the request id, the trace context, one timer for the upstream
//! deadline, and metrics kept in pre-registered atomic series. What remains per request is
//! what a proxy cannot avoid: parsing, one routing decision, header rewriting, and the two
//! HTTP/1.1 hops.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use motorpool_platform::auth::{AuthError, Verifier};
use motorpool_platform::balance::{Balancer, BreakerPolicy};
use motorpool_platform::cache::{Cache, RateDecision};
use motorpool_platform::discovery::Discovery;
use motorpool_platform::http::{TRACEPARENT, X_REQUEST_ID, X_REQUEST_TIMEOUT_MS};
use motorpool_platform::metrics::{Counter, Histogram, Metrics};
use motorpool_platform::problem::{Code, Problem};
use motorpool_platform::telemetry::{TraceContext, new_request_id};

use crate::config::GatewayConfig;
use crate::table::{self, Access, RULES, Rule};

pub struct Gateway {
    pub client: Client<HttpConnector, Body>,
    pub discovery: Discovery,
    pub verifier: Verifier,
    pub cache: Cache,
    pub cfg: GatewayConfig,
    pub metrics: Metrics,
    pub body_limit: usize,
    /// Which replica gets each request (least busy of two, failed ones ejected for a while).
    pub(crate) balancer: Balancer,
    /// Per route-table rule and method, the request metrics (indexed like `RULES`).
    series: Vec<[Series; METHODS.len()]>,
}

/// The methods with their own metric series; anything else is counted as "other".
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"];

/// [`method_index`] for a method as text.
pub(crate) fn method_index_str(m: &str) -> usize {
    METHODS[..6].iter().position(|known| *known == m).unwrap_or(6)
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        _ => 6,
    }
}

/// The `http_requests_total` and `http_request_duration_seconds` series of one rule and
/// method, registered on first use. They carry the same names and labels as every other
/// service's (the route label is the rule's prefix), so dashboards need no special case.
#[derive(Default)]
struct Series {
    duration: OnceLock<Histogram>,
    /// By status code; a handful of entries at most, read far more often than extended.
    by_status: RwLock<Vec<(u16, Counter)>>,
}

impl Gateway {
    pub fn new(discovery: Discovery, verifier: Verifier, cache: Cache, cfg: GatewayConfig, metrics: Metrics, body_limit: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(512).build(connector);
        let series = RULES.iter().map(|_| Default::default()).collect();
        let breaker = BreakerPolicy { failures: cfg.breaker_failures, open_for: Duration::from_millis(cfg.breaker_open_ms) };
        let balancer = Balancer::with_breaker(Duration::from_millis(cfg.eject_ms), breaker);
        Self { client, discovery, verifier, cache, cfg, metrics, body_limit, balancer, series }
    }

    /// Whether `service` may get a request now; an open circuit is answered at once.
    pub(crate) fn admit(&self, service: &str) -> Result<(), Problem> {
        self.balancer.admit(service).map_err(|open| {
            Problem::new(Code::CircuitOpen)
                .detail(format!("{service} is failing; requests to it are refused for a moment"))
                .retry_after(open.retry_in.as_secs().max(1))
        })
    }

    /// A request `addr` failed at the transport (refused, broken, timed out): the replica is
    /// ejected for a while.
    pub(crate) fn failed(&self, service: &str, addr: &str, kind: &str) {
        self.upstream_error(service, kind);
        self.balancer.eject(addr);
    }

    /// No replica of `service` answered the request: that failure counts toward the
    /// service's circuit (one a retry on another replica saved does not). The answer.
    pub(crate) fn gave_up(&self, service: &str, code: Code) -> Problem {
        self.balancer.record(service, false);
        Problem::new(code)
    }

    /// Checks every routed service's replicas' `/ready` until `shutdown`, and forgets the
    /// replicas discovery no longer lists.
    pub(crate) async fn check_replicas(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let period = Duration::from_millis(self.cfg.ready_check_ms);
        if period.is_zero() {
            return;
        }
        // A check may take most of a period, never longer than a second.
        let limit = (period * 4 / 5).min(Duration::from_secs(1));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(period) => {}
            }
            let mut listed = std::collections::HashSet::new();
            for service in crate::table::services() {
                listed.extend(self.discovery.resolve(service).await.unwrap_or_default());
            }
            let gw = &self;
            let checks = listed.iter().map(|addr| async move { (addr, gw.ready(addr, limit).await) });
            for (addr, ready) in futures::future::join_all(checks).await {
                self.balancer.mark_ready(addr, ready);
            }
            self.balancer.retain(&listed);
        }
    }

    async fn ready(&self, addr: &str, limit: Duration) -> bool {
        let Ok(uri) = format!("http://{addr}/ready").parse::<Uri>() else { return false };
        let Ok(req) = hyper::Request::get(uri).body(Body::empty()) else { return false };
        matches!(tokio::time::timeout(limit, self.client.request(req)).await, Ok(Ok(r)) if r.status() == StatusCode::OK)
    }

    pub(crate) fn upstream_error(&self, service: &str, kind: &str) {
        self.metrics.count("gateway_upstream_errors_total", "Upstream failures.", &[("service", service), ("kind", kind)], 1);
    }

    pub(crate) fn record(&self, rule: usize, method: usize, status: StatusCode, started: Instant) {
        let series = &self.series[rule][method];
        let route = RULES[rule].prefix;
        series
            .duration
            .get_or_init(|| {
                self.metrics.histogram(
                    "http_request_duration_seconds",
                    "HTTP request latency, by route.",
                    &[("method", METHODS[method]), ("route", route)],
                )
            })
            .observe(started.elapsed().as_secs_f64());
        let code = status.as_u16();
        let known = series.by_status.read().unwrap_or_else(|p| p.into_inner()).iter().find(|(c, _)| *c == code).map(|(_, n)| n.clone());
        let counter = known.unwrap_or_else(|| {
            let counter = self.metrics.counter(
                "http_requests_total",
                "HTTP requests served, by route and status.",
                &[("method", METHODS[method]), ("route", route), ("status", status.as_str())],
            );
            let mut all = series.by_status.write().unwrap_or_else(|p| p.into_inner());
            if !all.iter().any(|(c, _)| *c == code) {
                all.push((code, counter.clone()));
            }
            counter
        });
        counter.add(1);
    }
}

/// Takes the requests the route table owns off the connection; hands back the rest (pages,
/// docs, the gateway's own routes, unknown paths) to the router.
pub struct Front(pub Arc<Gateway>);

impl motorpool_platform::http::Front for Front {
    fn connection(&self, conn: motorpool_platform::http::Accepted) -> BoxFuture<'static, ()> {
        Box::pin(crate::fast::serve(self.0.clone(), conn))
    }

    fn call(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> Result<BoxFuture<'static, Response>, hyper::Request<Incoming>> {
        match table::find_index(req.uri().path()) {
            Some(rule) => Ok(Box::pin(handle(self.0.clone(), rule, req, peer))),
            None => Err(req),
        }
    }
}

/// One proxied request, from arrival to the response head.
async fn handle(gw: Arc<Gateway>, rule_index: usize, mut req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
    let started = Instant::now();
    let rule = &RULES[rule_index];
    let method = method_index(req.method());
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.to_str().is_ok() => v.clone(),
        _ => HeaderValue::from_str(&new_request_id()).unwrap_or_else(|_| HeaderValue::from_static("")),
    };
    // The gateway's own span continues the caller's trace (or starts one); the upstream call
    // is a child of it.
    let trace = match req.headers().get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse) {
        Some(parent) => parent.child(),
        None => TraceContext::new_root(),
    };
    let headers = req.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    headers.insert(TRACEPARENT.clone(), trace.child().header_value());

    let admitted = motorpool_platform::telemetry::with_trace(trace, admit(&gw, rule, &req, peer)).await;
    let mut response = match admitted {
        Err(refused) => refused,
        Ok(()) => forward(&gw, rule, req, peer).await,
    };
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(
            service = "gateway",
            route = rule.prefix,
            upstream = rule.service,
            status = status.as_u16(),
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = %trace.trace_id_hex(),
            "request failed"
        );
    }
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id);
    headers.insert(TRACEPARENT.clone(), trace.header_value());
    gw.record(rule_index, method, status, started);
    response
}

/// Token, role and rate limit: Ok when the request may go on.
async fn admit(gw: &Gateway, rule: &Rule, req: &hyper::Request<Incoming>, peer: SocketAddr) -> Result<(), Response> {
    admit_request(gw, rule, method_index(req.method()), req.headers(), peer).await
}

/// [`admit`] for a request known by its method (as a series index) and headers, with the
/// trace context its token checks run under.
pub(crate) async fn admit_with(
    gw: &Gateway,
    rule: &Rule,
    method: usize,
    headers: &HeaderMap,
    peer: SocketAddr,
    trace: TraceContext,
) -> Result<(), Response> {
    motorpool_platform::telemetry::with_trace(trace, admit_request(gw, rule, method, headers, peer)).await
}

async fn admit_request(gw: &Gateway, rule: &Rule, method: usize, headers: &HeaderMap, peer: SocketAddr) -> Result<(), Response> {
    let is_read = METHODS[method] == "GET" || METHODS[method] == "HEAD";
    let needs_token = match rule.access {
        Access::Public => false,
        Access::PublicRead => !is_read,
        Access::User | Access::Roles(_) => true,
    };
    let mut client_key = None;
    if needs_token {
        let claims = match motorpool_platform::auth::bearer(headers) {
            None => Err(AuthError::Missing),
            Some(token) => gw.verifier.verify(token).await,
        };
        let claims = claims.map_err(|e| Problem::from(e).into_response())?;
        if let Access::Roles(roles) = rule.access
            && !roles.contains(&claims.role)
        {
            return Err(Problem::new(Code::Forbidden).into_response());
        }
        client_key = Some(format!("gateway:rate:user:{}", claims.sub));
    }
    if gw.cfg.rate_limit_enabled {
        let key = client_key.unwrap_or_else(|| format!("gateway:rate:ip:{}", peer.ip()));
        match gw.cache.take_token(&key, gw.cfg.rate_limit_per_sec, gw.cfg.rate_limit_burst).await {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after_ms }) => {
                gw.metrics.count("gateway_rate_limited_total", "Requests refused by the rate limit.", &[], 1);
                return Err(Problem::new(Code::TooManyRequests).retry_after(retry_after_ms.div_ceil(1000)).into_response());
            }
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; letting the request through"),
        }
    }
    Ok(())
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether a header named `name` (any case) describes one hop: one of [`HOP_BY_HOP`] or
/// `upgrade`. The fast path asks this of the raw names it parses.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    name.eq_ignore_ascii_case("upgrade") || HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(name))
}

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

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `X-Forwarded-For` with the client's address appended.
fn forwarded_for(prior: Option<&HeaderValue>, peer: SocketAddr) -> Option<HeaderValue> {
    let ip = peer.ip().to_string();
    match prior.and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {ip}")).ok(),
        None => HeaderValue::from_str(&ip).ok(),
    }
}

/// The time a replica is given for a request when the gateway has `left`: a little less, so
/// the replica's own answer (say, a peer of its timing out) reaches the client rather than the
/// gateway's bare 504.
pub(crate) fn budget_for_upstream(left: Duration) -> Duration {
    left.saturating_sub((left / 10).min(Duration::from_millis(100)))
}

async fn forward(gw: &Gateway, rule: &Rule, req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
    let service = rule.service;
    let addrs = match gw.discovery.resolve(service).await {
        Ok(addrs) if !addrs.is_empty() => addrs,
        Ok(_) => return Problem::new(Code::PeerUnavailable).detail(format!("no live instance of {service}")).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, service, "discovery failed");
            return Problem::new(Code::PeerUnavailable).into_response();
        }
    };
    if let Err(p) = gw.admit(service) {
        return p.into_response();
    }
    let addr = gw.balancer.pick(service, &addrs, &[]);
    let Ok(authority) = Authority::try_from(addr) else {
        tracing::warn!(service, upstream = %addr, "discovery returned an unusable address");
        return Problem::new(Code::PeerUnavailable).into_response();
    };
    let (mut parts, body) = req.into_parts();
    let mut target = parts.uri.into_parts();
    target.scheme = Some(Scheme::HTTP);
    target.authority = Some(authority);
    if target.path_and_query.is_none() {
        target.path_and_query = Some(axum::http::uri::PathAndQuery::from_static("/"));
    }
    let Ok(uri) = Uri::from_parts(target) else {
        return Problem::new(Code::BadRequest).detail("unusable request target").into_response();
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upgrade = is_upgrade(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::HOST);
    if let Some(v) = forwarded_for(parts.headers.get(&X_FORWARDED_FOR), peer) {
        parts.headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    let req = hyper::Request::from_parts(parts, body);
    if upgrade {
        return tunnel(gw, service, &addrs, addr, req).await;
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
    let (parts, body) = req.into_parts();
    // A request without a body can be built again for another replica; one with a body is
    // sent once.
    let body = (!hyper::body::Body::is_end_stream(&body)).then(|| Body::new(Limited::new(body, gw.body_limit)));
    match send(gw, service, &addrs, addr, &parts, body).await {
        Ok(resp) => {
            let mut resp = resp.map(Body::new);
            strip_hop_by_hop(resp.headers_mut(), false);
            resp
        }
        Err(answer) => answer,
    }
}

/// Sends a request (`parts`, and `body` if it has one) to replica `first` within the gateway's
/// upstream timeout, telling the replica what is left of it in `x-request-timeout-ms` (not for
/// upgrades). When a replica refuses the connection (it never got the request) and there is no
/// body to lose, the request goes to another, until each has been tried. `Err` is the answer
/// for the client.
async fn send(
    gw: &Gateway,
    service: &str,
    addrs: &[String],
    first: &str,
    parts: &axum::http::request::Parts,
    mut body: Option<Body>,
) -> Result<hyper::Response<Incoming>, Response> {
    let timeout = Duration::from_millis(gw.cfg.upstream_timeout_ms);
    let started = std::time::Instant::now();
    let upgrade = is_upgrade(&parts.headers);
    let mut addr = first.to_owned();
    let mut failed: Vec<String> = Vec::new();
    loop {
        let uri = retarget(&parts.uri, &addr).ok_or_else(|| Problem::new(Code::PeerUnavailable).into_response())?;
        let left = timeout.saturating_sub(started.elapsed());
        let once = body.take();
        let resendable = once.is_none();
        let mut up = hyper::Request::new(once.unwrap_or_else(Body::empty));
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = parts.version;
        *up.headers_mut() = parts.headers.clone();
        if !upgrade {
            up.headers_mut().insert(X_REQUEST_TIMEOUT_MS, HeaderValue::from(budget_for_upstream(left).as_millis() as u64));
        }
        let _in_flight = gw.balancer.start(&addr);
        match tokio::time::timeout(left, gw.client.request(up)).await {
            Err(_) => {
                gw.failed(service, &addr, "timeout");
                return Err(gw.gave_up(service, Code::PeerTimeout).into_response());
            }
            Ok(Err(e)) if e.is_connect() => {
                gw.failed(service, &addr, "unavailable");
                tracing::warn!(error = %e, service, upstream = %addr, "upstream refused the connection");
                failed.push(addr.clone());
                if resendable && failed.len() < addrs.len() {
                    addr = gw.balancer.pick(service, addrs, &failed).to_owned();
                    continue;
                }
                return Err(gw.gave_up(service, Code::PeerUnavailable).into_response());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, service, upstream = %addr, "upstream request failed");
                gw.upstream_error(service, "unavailable");
                return Err(Problem::new(Code::PeerUnavailable).into_response());
            }
            Ok(Ok(resp)) => {
                gw.balancer.record(service, true);
                return Ok(resp);
            }
        }
    }
}

/// Forwards an upgrade request; when the replica agrees (101), joins the two upgraded
/// connections and copies bytes both ways until either side closes. The socket stays with that
/// replica for its life; a replica that refuses the connection is ejected and another tried.
async fn tunnel(gw: &Gateway, service: &str, addrs: &[String], first: &str, mut req: hyper::Request<Incoming>) -> Response {
    let client_side = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let mut resp = match send(gw, service, addrs, first, &parts, None).await {
        Ok(resp) => resp,
        Err(answer) => return answer,
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

/// `uri` sent to `addr` instead.
fn retarget(uri: &Uri, addr: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(Authority::try_from(addr).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_client() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(forwarded_for(None, peer).unwrap(), "10.1.2.3");
        let prior = HeaderValue::from_static("192.0.2.7");
        assert_eq!(forwarded_for(Some(&prior), peer).unwrap(), "192.0.2.7, 10.1.2.3");
    }

    #[test]
    fn hop_by_hop_names_are_recognised_in_any_case() {
        for name in ["Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop("content-type"));
        assert!(!is_hop_by_hop("authorization"));
    }

    #[test]
    fn methods_map_to_their_series() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::DELETE)], "DELETE");
        assert_eq!(METHODS[method_index(&Method::OPTIONS)], "other");
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            assert_eq!(METHODS[method_index_str(m)], m);
        }
        assert_eq!(METHODS[method_index_str("PROPFIND")], "other");
    }
}
