//! Signed webhook deliveries over HTTP(S), and the guard that keeps them off internal
//! networks.
//!
//! The guard is the connector itself: it resolves the host, refuses the connection if any
//! address is not public (unless `webhooks_allow_private`), and connects to exactly the
//! addresses it checked. Checking in the connector rather than before the request means a
//! DNS answer that changes between a check and the connection (DNS rebinding) cannot slip
//! through, and an IP literal in the URL is judged like any resolved name. Redirects are
//! never followed, so a receiver cannot bounce us to an internal URL either.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use tokio::net::TcpStream;

use super::{ChannelSender, SendError};
use crate::domain::address::is_public;
use crate::domain::webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature};
use crate::store::{self, DeliveryRow};

const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole request, from connecting to the response head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{host} resolves to {addr}, which webhooks may not reach")]
    Forbidden { host: String, addr: IpAddr },
    #[error("{0} does not resolve")]
    Unresolvable(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, io::Error),
}

/// The addresses of `host`, all of them allowed, or why not.
pub async fn resolve_allowed(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, GuardError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) | Err(_) => return Err(GuardError::Unresolvable(host.to_owned())),
        },
    };
    if addrs.is_empty() {
        return Err(GuardError::Unresolvable(host.to_owned()));
    }
    // One bad address refuses the host: otherwise a name with a public and a private
    // address would let the connection land on the private one.
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(GuardError::Forbidden { host: host.to_owned(), addr: bad.ip() });
    }
    Ok(addrs)
}

/// A TCP connector that only reaches allowed addresses (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct GuardedConnector {
    pub allow_private: bool,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = GuardError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, GuardError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for addr in resolve_allowed(&host, port, allow_private).await? {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last = e,
                    Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                }
            }
            Err(GuardError::Connect(host, last))
        })
    }
}

pub type WebhookClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;

/// The HTTP client for webhooks: pooled, HTTP/1.1, TLS with the Mozilla roots through ring,
/// every connection through the guard.
pub fn client(allow_private: bool) -> anyhow::Result<WebhookClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| anyhow::anyhow!("webhook TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(GuardedConnector { allow_private });
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

pub struct WebhookSender {
    pub db: Db,
    pub client: WebhookClient,
    pub clock: Clock,
    pub user_agent: Arc<str>,
}

/// The guard's refusal, if that is what an error from the client comes down to.
fn forbidden<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a GuardError> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(guard @ GuardError::Forbidden { .. }) = err.downcast_ref::<GuardError>() {
            return Some(guard);
        }
        cause = err.source();
    }
    None
}

/// An error and its causes on one line (hyper's top-level messages alone say little).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

#[async_trait]
impl ChannelSender for WebhookSender {
    async fn send(&self, d: &DeliveryRow) -> Result<(), SendError> {
        let webhook = store::find_webhook(&self.db, &d.target)
            .await
            .map_err(|e| SendError::Retryable(format!("database: {e}")))?
            .ok_or_else(|| SendError::Permanent("the webhook was deleted".into()))?;
        let uri: Uri = webhook.url.parse().map_err(|_| SendError::Permanent("the webhook URL is not valid".into()))?;
        let body = Bytes::from(d.body.clone());
        let timestamp = self.clock.now().unix_timestamp();
        let signed = signature(&webhook.secret, timestamp, &body).map_err(|e| SendError::Permanent(format!("signing: {e}")))?;
        // Webhook rows keep the event type where other channels keep a subject.
        let event_type = d.subject.as_deref().unwrap_or_default();
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, self.user_agent.as_ref())
            .header(SIGNATURE_HEADER, signed)
            .header(EVENT_HEADER, event_type)
            .header(DELIVERY_HEADER, d.id.as_str())
            .body(Full::new(body))
            .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?;
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
            Err(_) => return Err(SendError::Retryable("the receiver did not answer in time".into())),
            Ok(Err(e)) => {
                return Err(match forbidden(&e) {
                    Some(guard) => SendError::Permanent(guard.to_string()),
                    None => SendError::Retryable(chain(&e)),
                });
            }
            Ok(Ok(response)) => response,
        };
        // The body is not read: only the status matters, and an endless body cannot hold us.
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(SendError::Retryable(format!("the receiver answered {status}"))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_guard_refuses_internal_addresses_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri: Uri = format!("http://127.0.0.1:{port}/hook").parse().unwrap();
        let err = GuardedConnector { allow_private: false }.oneshot(uri.clone()).await.unwrap_err();
        assert!(matches!(err, GuardError::Forbidden { .. }), "{err}");
        // Nothing reached the listener.
        assert!(tokio::time::timeout(Duration::from_millis(100), listener.accept()).await.is_err());

        for refused in ["http://169.254.169.254/latest/meta-data/", "http://[::1]:80/", "http://10.0.0.1/", "http://0.0.0.0/"] {
            let err = GuardedConnector { allow_private: false }.oneshot(refused.parse().unwrap()).await.unwrap_err();
            assert!(matches!(err, GuardError::Forbidden { .. }), "{refused}: {err}");
        }
        assert!(matches!(resolve_allowed("localhost", 80, false).await, Err(GuardError::Forbidden { .. })));

        // Allowed explicitly (tests, closed networks): it connects.
        GuardedConnector { allow_private: true }.oneshot(uri).await.unwrap();
        assert!(listener.accept().await.is_ok());
    }

    #[tokio::test]
    async fn a_forbidden_address_is_a_permanent_failure_through_the_client() {
        let client = client(false).unwrap();
        let request = Request::post("http://127.0.0.1:9/hook").body(Full::new(Bytes::new())).unwrap();
        let err = client.request(request).await.unwrap_err();
        let guard = forbidden(&err).expect("the guard's refusal is found in the error chain");
        assert!(guard.to_string().contains("127.0.0.1"), "{guard}");
    }
}
