//! What every service's HTTP server has in common: request ids and trace context, per-route
//! metrics, a request timeout, body limits, problem+json for unknown routes and methods, the
//! operational routes (`/health`, `/ready`, `/metrics`, `/version`, `/openapi.json`), and
//! serving with a graceful, bounded shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::problem::{Code, Problem};
use crate::telemetry::{TraceContext, new_request_id, with_trace};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A readiness check: a name and an async probe.
pub type ReadyProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the operational routes report.
#[derive(Clone)]
pub struct Ops {
    pub service: &'static str,
    pub metrics: Metrics,
    pub probes: Vec<(&'static str, ReadyProbe)>,
    pub openapi: Arc<serde_json::Value>,
}

/// Builds a service's full router around its REST routes (and gRPC routes, served on the
/// same port).
pub fn service_router(rest: Router, grpc: Option<Router>, ops: Ops, body_limit: usize, timeout: Duration) -> Router {
    let metrics = ops.metrics.clone();
    let service = ops.service;
    let mut app = rest.merge(ops_routes(ops));
    if let Some(grpc) = grpc {
        app = app.merge(grpc);
    }
    app.fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::new(Observe { service, metrics, timeout }), observe))
}

/// Wraps a tonic service as routes that can be merged into a service router.
pub fn grpc_routes<S>(svc: S) -> Router
where
    S: tower::Service<Request, Error = Infallible> + tonic::server::NamedService + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    Router::new().route_service(&format!("/{}/{{*rest}}", S::NAME), svc.map_request(|req: Request| req))
}

async fn route_not_found(req: Request) -> Problem {
    Problem::new(Code::RouteNotFound).detail(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed() -> Problem {
    Problem::new(Code::MethodNotAllowed)
}

struct Observe {
    service: &'static str,
    metrics: Metrics,
    timeout: Duration,
}

/// Request id, trace context, logging span, timeout and metrics for one request.
async fn observe(State(obs): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let trace = req
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .map(|parent| parent.child())
        .unwrap_or_else(TraceContext::new_root);
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let span = tracing::info_span!("request", service = obs.service, %method, route = %route, request_id = %request_id, trace_id = %trace.trace_id_hex());
    let is_upgrade = req.headers().contains_key(header::UPGRADE);
    let mut response = if is_upgrade {
        with_trace(trace, next.run(req)).instrument(span.clone()).await
    } else {
        // The request's deadline: this service's timeout, or less when the caller has less
        // left (a gRPC peer's `grpc-timeout`, the gateway's `x-request-timeout-ms`).
        let budget = caller_budget(req.headers()).map_or(obs.timeout, |b| b.min(obs.timeout));
        let deadline = tokio::time::Instant::now() + budget;
        let run = with_trace(trace, crate::grpc::with_deadline(deadline, next.run(req))).instrument(span.clone());
        match tokio::time::timeout_at(deadline, run).await {
            Ok(r) => r,
            Err(_) => {
                span.in_scope(|| tracing::warn!("request timed out"));
                Problem::new(Code::Timeout).into_response()
            }
        }
    };
    let status = response.status();
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request"));
    }
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&trace.to_string()) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    let status_text = status.as_str();
    obs.metrics.count(
        "http_requests_total",
        "HTTP requests served, by route and status.",
        &[("method", method.as_str()), ("route", &route), ("status", status_text)],
        1,
    );
    obs.metrics.observe(
        "http_request_duration_seconds",
        "HTTP request latency, by route.",
        &[("method", method.as_str()), ("route", &route)],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Header in which the gateway passes on what is left of its deadline, in milliseconds.
pub const X_REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// The time the caller gives this request, if it said.
fn caller_budget(headers: &HeaderMap) -> Option<Duration> {
    if let Some(v) = headers.get("grpc-timeout") {
        return v.to_str().ok().and_then(crate::grpc::parse_grpc_timeout);
    }
    let ms: u64 = headers.get(&X_REQUEST_TIMEOUT_MS)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

fn ops_routes(ops: Ops) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/openapi.json", get(openapi))
        .with_state(Arc::new(ops))
}

async fn health(State(ops): State<Arc<Ops>>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "service": ops.service}))
}

/// Ready only when every probe (database, bus, cache, required peers) answers in time.
async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut all_ok = true;
    let results = futures::future::join_all(ops.probes.iter().map(|(name, probe)| async move {
        let outcome = match tokio::time::timeout(Duration::from_secs(2), probe()).await {
            Ok(r) => r,
            Err(_) => Err("timed out".to_owned()),
        };
        (*name, outcome)
    }))
    .await;
    for (name, outcome) in results {
        match outcome {
            Ok(()) => checks.insert(name.to_owned(), json!("ok")),
            Err(e) => {
                all_ok = false;
                tracing::warn!(check = name, error = %e, "readiness check failed");
                checks.insert(name.to_owned(), json!("failing"))
            }
        };
    }
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({"status": if all_ok { "ready" } else { "not_ready" }, "service": ops.service, "checks": checks});
    (status, Json(body)).into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render()).into_response()
}

async fn version(State(ops): State<Arc<Ops>>) -> Json<serde_json::Value> {
    Json(json!({"service": ops.service, "version": env!("CARGO_PKG_VERSION")}))
}

async fn openapi(State(ops): State<Arc<Ops>>) -> Json<serde_json::Value> {
    Json((*ops.openapi).clone())
}

/// A handler in front of a service's router. The gateway's proxy takes the requests its
/// route table owns without the router and middleware (it does its own request ids, trace
/// context, metrics and timeout); everything else it hands back and the router serves it.
pub trait Front: Send + Sync + 'static {
    /// Either the response future for `req`, or `req` back for the router.
    #[allow(clippy::result_large_err)]
    fn call(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> Result<BoxFuture<'static, Response>, hyper::Request<Incoming>>;

    /// Serves a whole accepted connection. A front that speaks HTTP itself hands the
    /// connection to the platform's server with [`Accepted::fallback`] whenever it meets a
    /// request it leaves to the router; by default it does so at once.
    fn connection(&self, conn: Accepted) -> BoxFuture<'static, ()> {
        conn.fallback(Bytes::new()).boxed()
    }
}

/// An accepted connection, before any byte of it was read.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Cancelled when the server stops: finish the request in flight, then close.
    pub shutdown: CancellationToken,
    server: Arc<Server>,
}

/// The platform's own HTTP server for one service: hyper (HTTP/1.1, and HTTP/2 for gRPC)
/// in front of the router.
struct Server {
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    router: Router,
    front: Option<Arc<dyn Front>>,
}

impl Accepted {
    /// Serves the rest of the connection with the platform's server; `read` holds bytes
    /// already taken from the stream, which are served first.
    pub async fn fallback(self, read: Bytes) {
        let Accepted { stream, peer, shutdown, server } = self;
        let router = server.router.clone();
        let front = server.front.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let req = match &front {
                Some(front) => match front.call(req, peer) {
                    Ok(handled) => return handled.map(Ok::<_, Infallible>).left_future(),
                    Err(req) => req,
                },
                None => req,
            };
            let mut req = req;
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req).right_future()
        });
        let io = TokioIo::new(Prefixed { prefix: read, inner: stream });
        let connection = server.builder.serve_connection_with_upgrades(io, service);
        let mut connection = std::pin::pin!(connection);
        let outcome = tokio::select! {
            outcome = connection.as_mut() => outcome,
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = outcome {
            tracing::trace!(error = %e, "connection ended with an error");
        }
    }
}

/// A stream with some bytes already read from it put back in front.
struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` (behind `front`, if given) on `listener` until `shutdown`, then lets
/// in-flight requests finish for at most `drain`. HTTP/1.1 and HTTP/2 (h2c, for gRPC) share
/// the port.
pub async fn serve(listener: TcpListener, router: Router, front: Option<Arc<dyn Front>>, shutdown: CancellationToken, drain: Duration) {
    let server = Arc::new(Server { builder: hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()), router, front });
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Responses are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let conn = Accepted { stream, peer, shutdown: shutdown.clone(), server: server.clone() };
        match &server.front {
            Some(front) => connections.spawn(front.connection(conn)),
            None => connections.spawn(conn.fallback(Bytes::new())),
        };
    }
    drop(listener);
    connections.close();
    tokio::select! {
        _ = connections.wait() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
    }
}

/// Accept errors: a connection that died before it was accepted is skipped; anything else
/// (such as running out of file descriptors) is logged and retried after a pause.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
