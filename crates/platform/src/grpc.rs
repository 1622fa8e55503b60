//! gRPC plumbing: channels to peers found through discovery (round-robin over replicas, one
//! lazily connected channel per address), and requests that carry the caller's trace context
//! and a deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::discovery::Discovery;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no live instance of {0}")]
    NoInstance(String),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("bad address {0}: {1}")]
    BadAddress(String, String),
}

/// Default deadline of a peer call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Channels to peer services.
#[derive(Clone)]
pub struct Peers {
    discovery: Discovery,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    next: Arc<AtomicUsize>,
}

impl Peers {
    pub fn new(discovery: Discovery) -> Self {
        Self { discovery, channels: Arc::default(), next: Arc::default() }
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// A channel to one live instance of `service`.
    pub async fn channel(&self, service: &str) -> Result<Channel, PeerError> {
        let addrs = self.discovery.resolve(service).await.map_err(|e| PeerError::Discovery(e.to_string()))?;
        if addrs.is_empty() {
            return Err(PeerError::NoInstance(service.to_owned()));
        }
        let addr = &addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()];
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| PeerError::BadAddress(addr.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(DEFAULT_DEADLINE)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.clone(), channel.clone());
        Ok(channel)
    }
}

/// A request carrying the current trace context (`traceparent`) and the default deadline.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(DEFAULT_DEADLINE);
    if let Some(ctx) = crate::telemetry::current_trace()
        && let Ok(value) = ctx.child().to_string().parse()
    {
        req.metadata_mut().insert("traceparent", value);
    }
    req
}
