//! The HTTP/1.1 fast path: the gateway's proxying done the way a dedicated proxy does it.
//!
//! A connection starts here. While its requests are plain HTTP/1.1 requests for a route in
//! the table — origin-form target, no body or a `Content-Length` one, no `Transfer-Encoding`,
//! `Expect` or `Upgrade` — each request head is parsed in place, checked (token, role, rate
//! limit) exactly as on the general path, and written to the replica with its headers
//! rewritten in one buffer; the response head is parsed the same way and the body is copied
//! through as it arrives (by length, chunk framing or until close). Each client connection
//! keeps its own keep-alive connection to the replica it last used, driven by the same task,
//! so a proxied request costs two reads and two writes and no hop between tasks.
//!
//! Anything else — a page, the docs, a WebSocket upgrade, a chunked upload, HTTP/1.0, HTTP/2,
//! a head that does not parse — hands the connection, with the bytes already read, to the
//! platform's hyper server for the rest of its life, where the general proxy path
//! ([`crate::proxy`]) and the router serve it. Both paths share admission, metrics and the
//! rules for rewriting headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use motorpool_platform::http::Accepted;
use motorpool_platform::problem::{Code, Problem};
use motorpool_platform::telemetry::{TraceContext, new_request_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::{Gateway, admit_with, is_hop_by_hop, method_index_str};
use crate::table::{self, RULES};

/// Largest request head the fast path reads; a longer one goes to the general path (which
/// refuses it).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Largest response head accepted from a replica.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Headers the gateway sets itself on both hops, replacing what came in.
fn set_by_gateway(name: &str) -> bool {
    name.eq_ignore_ascii_case("x-request-id") || name.eq_ignore_ascii_case("traceparent")
}

/// Request headers not forwarded as they came: hop-by-hop ones, the ones the gateway sets,
/// and `host` (the replica's) and `x-forwarded-for` (extended).
fn dropped_request_header(name: &str) -> bool {
    is_hop_by_hop(name) || set_by_gateway(name) || name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("x-forwarded-for")
}

/// What the fast path learned from a request head it will serve itself.
struct RequestHead {
    /// Length of the head in the buffer.
    len: usize,
    rule: usize,
    method: usize,
    is_head: bool,
    content_length: u64,
    close: bool,
    /// It carries an `Idempotency-Key`: the service answers a repeat with the first answer.
    idempotency_key: bool,
    /// The rewritten head to send upstream, without `host` (added per replica).
    upstream_head: BytesMut,
    request_id: HeaderValue,
    trace: TraceContext,
    /// Headers the admission check reads (authorization).
    headers: HeaderMap,
}

enum Parsed {
    /// Need more bytes.
    Partial,
    /// Serve it here.
    Fast(Box<RequestHead>),
    /// Leave this connection to the general path.
    Fallback,
}

/// Parses and classifies the request head at the start of `buf`.
fn parse_request(buf: &[u8], peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => return Parsed::Partial,
        _ => return Parsed::Fallback,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if !target.starts_with('/') {
        return Parsed::Fallback;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let Some(rule) = table::find_index(path) else {
        return Parsed::Fallback;
    };
    let mut content_length: Option<u64> = None;
    let mut close = false;
    let mut idempotency_key = false;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut request_id: Option<HeaderValue> = None;
    let mut parent: Option<TraceContext> = None;
    let mut auth = HeaderMap::new();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
                return Parsed::Fallback;
            };
            if content_length.is_some_and(|prior| prior != n) {
                return Parsed::Fallback;
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Fallback;
        } else if name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(h.value).unwrap_or_default();
            if value.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")) {
                return Parsed::Fallback;
            }
            close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            idempotency_key |= !h.value.is_empty();
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if forwarded_for.is_some() {
                return Parsed::Fallback;
            }
            forwarded_for = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-request-id") {
            if !h.value.is_empty() && h.value.len() <= 128 && h.value.iter().all(|b| (0x20..0x7f).contains(b)) {
                request_id = HeaderValue::from_bytes(h.value).ok();
            }
        } else if name.eq_ignore_ascii_case("traceparent") {
            parent = std::str::from_utf8(h.value).ok().and_then(TraceContext::parse);
        } else if name.eq_ignore_ascii_case("authorization") {
            match HeaderValue::from_bytes(h.value) {
                Ok(v) => {
                    auth.append(axum::http::header::AUTHORIZATION, v);
                }
                Err(_) => return Parsed::Fallback,
            }
        }
    }
    let request_id =
        request_id.unwrap_or_else(|| HeaderValue::from_str(&new_request_id()).unwrap_or_else(|_| HeaderValue::from_static("")));
    let trace = match parent {
        Some(parent) => parent.child(),
        None => TraceContext::new_root(),
    };

    let mut head = BytesMut::with_capacity(len + 160);
    head.put_slice(method.as_bytes());
    head.put_u8(b' ');
    head.put_slice(target.as_bytes());
    head.put_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if dropped_request_header(h.name) {
            continue;
        }
        head.put_slice(h.name.as_bytes());
        head.put_slice(b": ");
        head.put_slice(h.value);
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"x-forwarded-for: ");
    if let Some(prior) = forwarded_for {
        head.put_slice(prior);
        head.put_slice(b", ");
    }
    head.put_slice(peer.ip().to_string().as_bytes());
    head.put_slice(b"\r\nx-request-id: ");
    head.put_slice(request_id.as_bytes());
    head.put_slice(b"\r\ntraceparent: ");
    head.put_slice(&trace.child().header_bytes());
    head.put_slice(b"\r\n");

    Parsed::Fast(Box::new(RequestHead {
        len,
        rule,
        method: method_index_str(method),
        is_head: method == "HEAD",
        content_length: content_length.unwrap_or(0),
        close,
        idempotency_key,
        upstream_head: head,
        request_id,
        trace,
        headers: auth,
    }))
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

struct ResponseHead {
    len: usize,
    status: u16,
    framing: Framing,
    /// The replica will close the connection after this response.
    upstream_closes: bool,
    /// The rewritten head for the client, ending with the blank line.
    client_head: BytesMut,
}

enum ParsedResponse {
    Partial,
    Complete(ResponseHead),
    Invalid,
}

fn parse_response(buf: &[u8], request_is_head: bool, request_id: &HeaderValue, trace: &TraceContext, close: bool) -> ParsedResponse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return ParsedResponse::Partial,
        _ => return ParsedResponse::Invalid,
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return ParsedResponse::Invalid;
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut upstream_closes = version == 0;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
                return ParsedResponse::Invalid;
            };
            if content_length.is_some_and(|prior| prior != n) {
                return ParsedResponse::Invalid;
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            let value = std::str::from_utf8(h.value).unwrap_or_default();
            chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(h.value).unwrap_or_default();
            upstream_closes |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    let framing = if request_is_head || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if transfer_encoding {
        if chunked { Framing::Chunked } else { Framing::UntilClose }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };

    let mut head = BytesMut::with_capacity(len + 160);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(itoa3(status).as_slice());
    head.put_u8(b' ');
    head.put_slice(resp.reason.unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    for h in resp.headers.iter() {
        // The body is passed through as framed, so a chunked body keeps its
        // `transfer-encoding`; any other transfer coding is ended by closing the connection.
        let kept_framing = framing == Framing::Chunked && h.name.eq_ignore_ascii_case("transfer-encoding");
        if (is_hop_by_hop(h.name) && !kept_framing) || set_by_gateway(h.name) {
            continue;
        }
        head.put_slice(h.name.as_bytes());
        head.put_slice(b": ");
        head.put_slice(h.value);
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"x-request-id: ");
    head.put_slice(request_id.as_bytes());
    head.put_slice(b"\r\ntraceparent: ");
    head.put_slice(&trace.header_bytes());
    if close || framing == Framing::UntilClose {
        head.put_slice(b"\r\nconnection: close");
    }
    head.put_slice(b"\r\n\r\n");
    ParsedResponse::Complete(ResponseHead { len, status, framing, upstream_closes, client_head: head })
}

fn itoa3(n: u16) -> [u8; 3] {
    let n = n.min(999);
    [b'0' + (n / 100) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// Finds where a chunked body ends while its bytes stream past: feed it each piece in
/// order; it says how many bytes of the piece belong to the body.
#[derive(Debug, Default)]
struct ChunkedScanner {
    state: ChunkState,
    size: u64,
    /// Bytes of the current line (size line or trailer line) seen so far, capped.
    line_len: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// In chunk extensions, up to the end of the size line.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    TrailerLf,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The whole piece belongs to the body and it has not ended.
    More,
    /// The body ended after this many bytes of the piece.
    Done(usize),
    Invalid,
}

impl ChunkedScanner {
    fn feed(&mut self, piece: &[u8]) -> Scan {
        let mut i = 0;
        while i < piece.len() {
            let b = piece[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.line_len += 1;
                        if self.line_len > 16 {
                            return Scan::Invalid;
                        }
                        self.size = self.size * 16 + digit;
                    }
                    b';' | b' ' | b'\t' if self.line_len > 0 => self.state = ChunkState::Extension,
                    b'\r' if self.line_len > 0 => self.state = ChunkState::SizeLf,
                    _ => return Scan::Invalid,
                },
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => return Scan::Invalid,
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    self.line_len = 0;
                    if self.size == 0 {
                        self.state = ChunkState::Trailer;
                    } else {
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    let take = (piece.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Scan::Invalid;
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => match b {
                    b'\r' => self.state = ChunkState::TrailerLf,
                    b'\n' => return Scan::Invalid,
                    _ => {
                        self.line_len += 1;
                        if self.line_len > MAX_RESPONSE_HEAD {
                            return Scan::Invalid;
                        }
                    }
                },
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Scan::Invalid;
                    }
                    if self.line_len == 0 {
                        self.state = ChunkState::Done;
                        return Scan::Done(i + 1);
                    }
                    self.line_len = 0;
                    self.state = ChunkState::Trailer;
                }
                ChunkState::Done => return Scan::Done(i),
            }
            i += 1;
        }
        Scan::More
    }
}

/// A keep-alive connection to one replica, owned by one client connection.
struct Upstream {
    addr: String,
    /// The balancer's record of this replica (its requests in flight, its ejection).
    replica: std::sync::Arc<motorpool_platform::balance::Replica>,
    stream: TcpStream,
    buf: BytesMut,
    /// Requests already served on it (a fresh connection cannot be stale).
    served: u64,
}

/// Why a proxied exchange stopped early.
enum Failure {
    /// Nothing reached the client yet: answer with this problem.
    Answer(Problem),
    /// The client connection is unusable or a response was cut short: close it.
    Close,
}

/// Serves one client connection; see the module documentation.
pub async fn serve(gw: Arc<Gateway>, conn: Accepted) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut upstream: Option<Upstream> = None;
    let mut conn = conn;
    loop {
        // Read until a whole request head is buffered.
        let head = loop {
            if !buf.is_empty() {
                match parse_request(&buf, conn.peer) {
                    Parsed::Partial => {}
                    Parsed::Fast(head) => break head,
                    Parsed::Fallback => {
                        drop(upstream);
                        return conn.fallback(buf.freeze()).await;
                    }
                }
            }
            let read = tokio::select! {
                biased;
                read = conn.stream.read_buf(&mut buf) => read,
                _ = conn.shutdown.cancelled(), if buf.is_empty() => return,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        if head.content_length > gw.body_limit as u64 {
            // The general path answers 413 the way it always has.
            drop(upstream);
            return conn.fallback(buf.freeze()).await;
        }
        let started = Instant::now();
        let rule = &RULES[head.rule];
        let keep_alive = !head.close && !conn.shutdown.is_cancelled();
        let outcome = match admit_with(&gw, rule, head.method, &head.headers, conn.peer, head.trace).await {
            Err(refused) => Err(refused),
            Ok(()) => Ok(exchange(&gw, &mut conn, &mut buf, &head, &mut upstream, keep_alive).await),
        };
        let (status, keep_going) = match outcome {
            Ok(Ok((status, reusable))) => (status, reusable && keep_alive),
            Ok(Err(Failure::Close)) => {
                gw.record(head.rule, head.method, StatusCode::BAD_GATEWAY, started);
                return;
            }
            Ok(Err(Failure::Answer(problem))) => {
                // The request body may still be unread: answer and close.
                let response = problem.into_response();
                let status = response.status();
                let _ = write_response(&mut conn.stream, response, &head, false).await;
                gw.record(head.rule, head.method, status, started);
                return;
            }
            Err(refused) => {
                let status = refused.status();
                // Refused before its body was read: skip a body that is already buffered,
                // otherwise close after answering.
                let body_buffered = (buf.len() - head.len) as u64 >= head.content_length;
                let reuse = keep_alive && body_buffered;
                if write_response(&mut conn.stream, refused, &head, reuse).await.is_err() {
                    return;
                }
                if reuse {
                    buf.advance(head.len + head.content_length as usize);
                }
                (status.as_u16(), reuse)
            }
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        if status.is_server_error() {
            tracing::warn!(
                service = "gateway",
                route = rule.prefix,
                upstream = rule.service,
                status = status.as_u16(),
                request_id = head.request_id.to_str().unwrap_or_default(),
                trace_id = %head.trace.trace_id_hex(),
                "request failed"
            );
        }
        gw.record(head.rule, head.method, status, started);
        if !keep_going {
            return;
        }
    }
}

/// Writes a locally made response (a refusal or a problem) to the client.
async fn write_response(client: &mut TcpStream, response: Response, head: &RequestHead, keep_alive: bool) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(&itoa3(parts.status.as_u16()));
    out.put_u8(b' ');
    out.put_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH || name == axum::http::header::CONNECTION {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"x-request-id: ");
    out.put_slice(head.request_id.as_bytes());
    out.put_slice(b"\r\ntraceparent: ");
    out.put_slice(&head.trace.header_bytes());
    out.put_slice(b"\r\ncontent-length: ");
    out.put_slice(body.len().to_string().as_bytes());
    if !keep_alive {
        out.put_slice(b"\r\nconnection: close");
    }
    out.put_slice(b"\r\n\r\n");
    if !head.is_head {
        out.put_slice(&body);
    }
    client.write_all(&out).await
}

/// Sends the request to a replica and copies the response back. Ok((status, the client
/// connection can serve another request)).
async fn exchange(
    gw: &Gateway,
    conn: &mut Accepted,
    buf: &mut BytesMut,
    head: &RequestHead,
    upstream: &mut Option<Upstream>,
    keep_alive: bool,
) -> Result<(u16, bool), Failure> {
    let rule = &RULES[head.rule];
    let addrs = match gw.discovery.resolve(rule.service).await {
        Ok(addrs) if !addrs.is_empty() => addrs,
        Ok(_) => return Err(Failure::Answer(Problem::new(Code::PeerUnavailable).detail(format!("no live instance of {}", rule.service)))),
        Err(e) => {
            tracing::warn!(error = %e, service = rule.service, "discovery failed");
            return Err(Failure::Answer(Problem::new(Code::PeerUnavailable)));
        }
    };
    // Stay on the replica this connection already talks to while it is listed and not
    // ejected; otherwise the balancer picks one.
    gw.admit(rule.service).map_err(Failure::Answer)?;
    let keep = upstream.as_ref().is_some_and(|u| addrs.contains(&u.addr) && gw.balancer.live(&u.replica));
    if !keep {
        *upstream = None;
    }
    let mut addr = match upstream {
        Some(u) => u.addr.clone(),
        None => gw.balancer.pick(rule.service, &addrs, &[]).to_owned(),
    };

    // The head as much of the body as is buffered; the host line is added per replica.
    let body_in_buf = ((buf.len() - head.len) as u64).min(head.content_length) as usize;
    let body = Bytes::copy_from_slice(&buf[head.len..head.len + body_in_buf]);
    buf.advance(head.len + body_in_buf);
    let rest_of_body = head.content_length - body_in_buf as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(gw.cfg.upstream_timeout_ms);
    // The replica is told how long it has (what is left of the deadline, a little less).
    let request_for = |addr: &str| {
        let left = crate::proxy::budget_for_upstream(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let mut out = BytesMut::with_capacity(head.upstream_head.len() + addr.len() + 48 + body.len());
        out.put_slice(&head.upstream_head);
        out.put_slice(b"host: ");
        out.put_slice(addr.as_bytes());
        out.put_slice(b"\r\nx-request-timeout-ms: ");
        out.put_slice(itoa::Buffer::new().format(left.as_millis() as u64).as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&body);
        out.freeze()
    };
    let mut out = request_for(&addr);
    // GET, HEAD and requests with an Idempotency-Key may be sent again to another replica
    // when one fails them (when the whole body is in hand); any request may when the replica
    // could not even be reached (nothing was sent).
    let idempotent = (head.method <= 1 || head.idempotency_key) && rest_of_body == 0;
    let mut failed: Vec<String> = Vec::new();
    let mut attempt = 0;
    let mut _in_flight;
    let response = loop {
        attempt += 1;
        if let Some(u) = upstream.as_ref() {
            _in_flight = motorpool_platform::balance::Balancer::start_on(u.replica.clone());
        } else {
            let replica = gw.balancer.replica(&addr);
            _in_flight = motorpool_platform::balance::Balancer::start_on(replica.clone());
            match tokio::time::timeout_at(deadline, connect(&addr)).await {
                Ok(Ok(stream)) => {
                    *upstream = Some(Upstream { addr: addr.clone(), replica, stream, buf: BytesMut::with_capacity(8 * 1024), served: 0 })
                }
                Ok(Err(e)) => {
                    gw.failed(rule.service, &addr, "unavailable");
                    tracing::warn!(error = %e, service = rule.service, upstream = %addr, "upstream connect failed");
                    failed.push(addr.clone());
                    if failed.len() < addrs.len() {
                        addr = gw.balancer.pick(rule.service, &addrs, &failed).to_owned();
                        out = request_for(&addr);
                        continue;
                    }
                    return Err(Failure::Answer(gw.gave_up(rule.service, Code::PeerUnavailable)));
                }
                Err(_) => {
                    gw.failed(rule.service, &addr, "timeout");
                    return Err(Failure::Answer(gw.gave_up(rule.service, Code::PeerTimeout)));
                }
            }
        }
        let Some(up) = upstream.as_mut() else { return Err(Failure::Close) };
        let reused = up.served > 0;
        let sent = send_request(up, &out, conn, rest_of_body).await;
        let result = match sent {
            Ok(()) => tokio::time::timeout_at(deadline, read_response_head(up, head, keep_alive)).await,
            Err(e) => Ok(Err(e)),
        };
        match result {
            Ok(Ok(parsed)) => {
                gw.balancer.record(rule.service, true);
                break parsed;
            }
            // A reused connection the replica closed before reading the request (nothing came
            // back at all): once more on a fresh connection, when the whole request is in hand.
            Ok(Err(ExchangeError::Stale)) if reused && rest_of_body == 0 && attempt == 1 => {
                *upstream = None;
                continue;
            }
            Ok(Err(ExchangeError::Client)) => return Err(Failure::Close),
            Ok(Err(e)) => {
                *upstream = None;
                gw.failed(rule.service, &addr, "unavailable");
                tracing::warn!(error = ?e, service = rule.service, upstream = %addr, "upstream request failed");
                failed.push(addr.clone());
                if idempotent && failed.len() < addrs.len() {
                    addr = gw.balancer.pick(rule.service, &addrs, &failed).to_owned();
                    out = request_for(&addr);
                    continue;
                }
                return Err(Failure::Answer(gw.gave_up(rule.service, Code::PeerUnavailable)));
            }
            Err(_) => {
                *upstream = None;
                gw.failed(rule.service, &addr, "timeout");
                return Err(Failure::Answer(gw.gave_up(rule.service, Code::PeerTimeout)));
            }
        }
    };
    let Some(up) = upstream.as_mut() else { return Err(Failure::Close) };
    up.served += 1;
    let client_keeps = keep_alive && response.framing != Framing::UntilClose;
    match copy_response(up, &mut conn.stream, response.client_head, response.len, response.framing).await {
        Ok(()) => {}
        Err(_) => {
            *upstream = None;
            return Err(Failure::Close);
        }
    }
    if response.upstream_closes || response.framing == Framing::UntilClose {
        *upstream = None;
    }
    Ok((response.status, client_keeps))
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[derive(Debug)]
enum ExchangeError {
    /// The replica closed the connection before answering anything.
    Stale,
    /// The replica failed mid-way or sent something that is not HTTP.
    Upstream(#[allow(dead_code)] String),
    /// The client went away.
    Client,
}

/// Writes the request head (with the buffered body) and streams the rest of the body from
/// the client.
async fn send_request(up: &mut Upstream, out: &Bytes, conn: &mut Accepted, mut rest: u64) -> Result<(), ExchangeError> {
    up.stream.write_all(out).await.map_err(|_| ExchangeError::Stale)?;
    let mut chunk = vec![0u8; if rest > 0 { 16 * 1024 } else { 0 }];
    while rest > 0 {
        let want = chunk.len().min(usize::try_from(rest).unwrap_or(usize::MAX));
        let n = conn.stream.read(&mut chunk[..want]).await.map_err(|_| ExchangeError::Client)?;
        if n == 0 {
            return Err(ExchangeError::Client);
        }
        up.stream.write_all(&chunk[..n]).await.map_err(|e| ExchangeError::Upstream(e.to_string()))?;
        rest -= n as u64;
    }
    Ok(())
}

async fn read_response_head(up: &mut Upstream, head: &RequestHead, keep_alive: bool) -> Result<ResponseHead, ExchangeError> {
    let mut got_any = !up.buf.is_empty();
    loop {
        if !up.buf.is_empty() {
            match parse_response(&up.buf, head.is_head, &head.request_id, &head.trace, !keep_alive) {
                ParsedResponse::Complete(r) if (100..200).contains(&r.status) => {
                    // An interim response (no upgrade or Expect reaches this path): skip it.
                    up.buf.advance(r.len);
                    continue;
                }
                ParsedResponse::Complete(r) => return Ok(r),
                ParsedResponse::Invalid => return Err(ExchangeError::Upstream("response head does not parse".into())),
                ParsedResponse::Partial => {}
            }
        }
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) if !got_any => return Err(ExchangeError::Stale),
            Err(e) if !got_any && matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                return Err(ExchangeError::Stale);
            }
            Ok(0) => return Err(ExchangeError::Upstream("closed mid-response".into())),
            Err(e) => return Err(ExchangeError::Upstream(e.to_string())),
            Ok(_) => got_any = true,
        }
    }
}

/// Writes the response head and copies the body, as framed, from the replica to the client.
async fn copy_response(
    up: &mut Upstream,
    client: &mut TcpStream,
    client_head: BytesMut,
    head_len: usize,
    framing: Framing,
) -> std::io::Result<()> {
    up.buf.advance(head_len);
    let mut out = client_head;
    match framing {
        Framing::Empty => client.write_all(&out).await,
        Framing::Length(n) => {
            let mut rest = n;
            let now = (up.buf.len() as u64).min(rest) as usize;
            out.put_slice(&up.buf[..now]);
            up.buf.advance(now);
            rest -= now as u64;
            client.write_all(&out).await?;
            while rest > 0 {
                up.buf.clear();
                let n = up.stream.read_buf(&mut up.buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let take = (n as u64).min(rest) as usize;
                client.write_all(&up.buf[..take]).await?;
                up.buf.advance(take);
                rest -= take as u64;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut scanner = ChunkedScanner::default();
            let mut pending = std::mem::take(&mut out);
            loop {
                match scanner.feed(&up.buf) {
                    Scan::Done(n) => {
                        pending.put_slice(&up.buf[..n]);
                        up.buf.advance(n);
                        return client.write_all(&pending).await;
                    }
                    Scan::More => {
                        pending.put_slice(&up.buf);
                        up.buf.clear();
                        client.write_all(&pending).await?;
                        pending.clear();
                        if up.stream.read_buf(&mut up.buf).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Scan::Invalid => return Err(std::io::ErrorKind::InvalidData.into()),
                }
            }
        }
        Framing::UntilClose => {
            out.put_slice(&up.buf);
            up.buf.clear();
            client.write_all(&out).await?;
            loop {
                if up.stream.read_buf(&mut up.buf).await? == 0 {
                    return client.shutdown().await;
                }
                client.write_all(&up.buf).await?;
                up.buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.9:4000".parse().unwrap()
    }

    fn fast(raw: &[u8]) -> Box<RequestHead> {
        match parse_request(raw, peer()) {
            Parsed::Fast(h) => h,
            Parsed::Partial => panic!("partial"),
            Parsed::Fallback => panic!("fallback"),
        }
    }

    fn falls_back(raw: &[u8]) -> bool {
        matches!(parse_request(raw, peer()), Parsed::Fallback)
    }

    #[test]
    fn a_plain_request_is_rewritten_for_the_replica() {
        let raw = b"GET /api/auth/me?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer t\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.1\r\nAccept: */*\r\n\r\n";
        let h = fast(raw);
        assert_eq!(h.len, raw.len());
        assert_eq!(RULES[h.rule].prefix, "/api/auth");
        assert!(!h.close);
        let text = String::from_utf8(h.upstream_head.to_vec()).unwrap();
        assert!(text.starts_with("GET /api/auth/me?x=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("Authorization: Bearer t\r\n"), "{text}");
        assert!(text.contains("Accept: */*\r\n"), "{text}");
        assert!(text.contains("x-forwarded-for: 192.0.2.1, 10.0.0.9\r\n"), "{text}");
        assert!(text.contains("x-request-id: "), "{text}");
        assert!(text.contains("traceparent: 00-"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("host: gw"), "{text}");
        assert!(!text.contains("Connection"), "{text}");
        assert_eq!(h.headers.get("authorization").unwrap(), "Bearer t");
    }

    #[test]
    fn the_callers_request_id_and_trace_are_continued() {
        let raw = b"GET /.well-known/jwks.json HTTP/1.1\r\nx-request-id: abc-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let h = fast(raw);
        assert_eq!(h.request_id, "abc-1");
        assert_eq!(h.trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let text = String::from_utf8(h.upstream_head.to_vec()).unwrap();
        assert_eq!(text.matches("x-request-id").count(), 1, "{text}");
        assert_eq!(text.matches("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-").count(), 1, "{text}");
    }

    #[test]
    fn anything_unusual_goes_to_the_general_path() {
        assert!(falls_back(b"GET / HTTP/1.1\r\n\r\n"), "a page");
        assert!(falls_back(b"GET /api/auth/me HTTP/1.0\r\n\r\n"), "HTTP/1.0");
        assert!(falls_back(b"POST /api/payments/charges HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(falls_back(b"POST /api/payments/charges HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"));
        assert!(falls_back(b"POST /api/payments/charges HTTP/1.1\r\nContent-Length: x\r\n\r\n"));
        assert!(falls_back(b"POST /api/payments/charges HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
        assert!(falls_back(b"GET /api/notifications/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
        assert!(falls_back(b"GET http://evil/api/auth/me HTTP/1.1\r\n\r\n"), "absolute form");
        assert!(falls_back(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "HTTP/2 preface");
        assert!(falls_back(b"GET /api/auth/me HTTP/1.1\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b\r\n\r\n"));
        assert!(falls_back(b"\x16\x03\x01garbage\r\n\r\n"), "not HTTP");
        assert!(matches!(parse_request(b"GET /api/auth/me HTTP/1.1\r\nHost: x", peer()), Parsed::Partial));
        let huge = format!("GET /api/auth/me HTTP/1.1\r\nX-Big: {}", "a".repeat(MAX_REQUEST_HEAD));
        assert!(falls_back(huge.as_bytes()), "an oversized head");
    }

    #[test]
    fn connection_close_and_lengths_are_seen() {
        let h = fast(b"POST /api/payments/charges HTTP/1.1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n");
        assert_eq!(h.content_length, 12);
        assert!(h.close);
    }

    fn response(raw: &[u8], is_head: bool) -> ResponseHead {
        let id = HeaderValue::from_static("rid");
        match parse_response(raw, is_head, &id, &TraceContext::new_root(), false) {
            ParsedResponse::Complete(r) => r,
            _ => panic!("not complete"),
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).framing, Framing::Length(5));
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).framing, Framing::Empty);
        assert_eq!(response(b"HTTP/1.1 204 No Content\r\n\r\n", false).framing, Framing::Empty);
        assert_eq!(response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false).framing, Framing::Empty);
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false).framing, Framing::Chunked);
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).framing, Framing::UntilClose);
        assert_eq!(response(b"HTTP/1.1 200 OK\r\n\r\n", false).framing, Framing::UntilClose);
        assert!(response(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).upstream_closes);
        assert!(response(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false).upstream_closes);
        let id = HeaderValue::from_static("rid");
        let two_lengths = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(parse_response(two_lengths, false, &id, &TraceContext::new_root(), false), ParsedResponse::Invalid));
    }

    #[test]
    fn the_client_sees_our_ids_and_no_hop_headers() {
        let r = response(b"HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false);
        let text = String::from_utf8(r.client_head.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
        assert!(text.contains("Content-Type: application/json\r\n"), "{text}");
        assert!(text.contains("x-request-id: rid\r\n"), "{text}");
        assert!(!text.contains("theirs") && !text.contains("Keep-Alive") && !text.contains("Connection"), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn chunked_bodies_end_where_the_framing_says_in_any_split() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for split in 0..with_next.len() {
            let mut s = ChunkedScanner::default();
            let (a, b) = with_next.split_at(split);
            let end = match s.feed(a) {
                Scan::Done(n) => n,
                Scan::More => match s.feed(b) {
                    Scan::Done(n) => a.len() + n,
                    other => panic!("split {split}: {other:?}"),
                },
                Scan::Invalid => panic!("split {split}: invalid"),
            };
            assert_eq!(end, body.len(), "split {split}");
        }
        assert_eq!(ChunkedScanner::default().feed(b"0\r\n\r\n"), Scan::Done(5));
        assert_eq!(ChunkedScanner::default().feed(b"zz\r\n"), Scan::Invalid);
        assert_eq!(ChunkedScanner::default().feed(b"3\r\nabcX"), Scan::Invalid);
        assert_eq!(ChunkedScanner::default().feed(b"11111111111111111\r\n"), Scan::Invalid);
    }
}
