//! The HTTP side: a pooled HTTP/1.1 keep-alive client and one timed GET.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::stats::{Outcome, Sample};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A keep-alive client that may hold up to `connections` idle connections, so a connection
/// is never closed just because the pool was momentarily full.
pub fn new(connections: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    // Small requests must leave at once rather than wait for Nagle's algorithm.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(connections).pool_idle_timeout(Duration::from_secs(90)).build(connector)
}

/// GETs `target` (with `authorization`, if any) and reads the whole body. The latency runs
/// from `due`, which the caller sets to the send time (closed loop) or to the scheduled time
/// (open loop).
pub async fn get(client: &HttpClient, target: &Uri, authorization: Option<HeaderValue>, due: Instant, timeout: Duration) -> Sample {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = target.clone();
    if let Some(value) = authorization {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| error_chain(&e))?;
        Ok::<_, String>(status)
    };
    let outcome = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(message)) => Outcome::Transport(message),
        Err(_) => Outcome::Timeout,
    };
    Sample { latency: due.elapsed(), outcome }
}

/// The error and its causes on one line; hyper's top-level messages alone ("client error
/// (Connect)") do not say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Bearer tokens to send in turn, one per request (`--bearer-file`); none: no header.
#[derive(Clone, Default)]
pub struct Bearers(std::sync::Arc<[HeaderValue]>);

impl Bearers {
    /// One token per non-empty line of `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let values = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|token| {
                HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| format!("{}: a token that is no header value", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if values.is_empty() {
            return Err(format!("{}: no tokens", path.display()));
        }
        Ok(Self(values.into()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The header of request number `i`: tokens in turn, from the first again after the last.
    pub fn nth(&self, i: u64) -> Option<HeaderValue> {
        let n = self.0.len() as u64;
        (n > 0).then(|| self.0[(i % n) as usize].clone())
    }
}
