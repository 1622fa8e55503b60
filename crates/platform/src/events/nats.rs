//! The NATS JetStream bus: one stream per publishing service (`<NS>_<SERVICE>`, subjects
//! `<ns>.<service>.>`), publishes acknowledged by the server with the event id as
//! `Nats-Msg-Id` (the stream drops duplicates within its window), and durable pull consumers
//! with explicit acknowledgement.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Mutex;

use super::{Acker, Bus, BusError, Delivery, Subscription};
use crate::config::EventsConfig;

pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    namespace: String,
    ack_wait: Duration,
    streams: Mutex<HashSet<String>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Stream and durable names may not contain `.`, `*`, `>` or spaces.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

impl NatsBus {
    pub async fn connect(cfg: &EventsConfig) -> Result<Self, BusError> {
        // Retrying the first connection lets a service start while NATS is still down; the
        // outbox holds its events until the server is back.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(cfg.nats_url.as_str())
            .await
            .map_err(unavailable)?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        Ok(Self {
            client,
            js,
            namespace: cfg.namespace.clone(),
            ack_wait: Duration::from_millis(cfg.ack_wait_ms),
            streams: Mutex::new(HashSet::new()),
        })
    }

    fn stream_name(&self, service: &str) -> String {
        sanitize(&format!("{}_{}", self.namespace, service)).to_uppercase()
    }

    async fn stream(&self, service: &str) -> Result<stream::Stream, BusError> {
        let name = self.stream_name(service);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.{}.>", self.namespace, service)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        };
        let stream = self.js.get_or_create_stream(config).await.map_err(unavailable)?;
        self.streams.lock().await.insert(name);
        Ok(stream)
    }

    /// The service that owns a subject `<ns>.<service>.<...>`.
    fn source_of<'a>(&self, subject: &'a str) -> Result<&'a str, BusError> {
        subject
            .strip_prefix(&self.namespace)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next())
            .filter(|s| !s.is_empty() && *s != "*" && *s != ">")
            .ok_or_else(|| BusError::Other(format!("subject {subject} names no source service")))
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: &str, id: &str, payload: Bytes) -> Result<(), BusError> {
        let service = self.source_of(subject)?;
        if !self.streams.lock().await.contains(&self.stream_name(service)) {
            self.stream(service).await?;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = self.js.publish_with_headers(subject.to_owned(), headers, payload).await.map_err(unavailable)?;
        ack.await.map_err(unavailable)?;
        Ok(())
    }

    async fn publish_batch(&self, messages: &[(String, String, Bytes)]) -> Result<usize, BusError> {
        // Send everything first, then collect the acknowledgements: one round trip's wait
        // for the whole batch instead of one per message.
        let mut acks = Vec::with_capacity(messages.len());
        for (subject, id, payload) in messages {
            let service = self.source_of(subject)?;
            if !self.streams.lock().await.contains(&self.stream_name(service)) {
                self.stream(service).await?;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            match self.js.publish_with_headers(subject.clone(), headers, payload.clone()).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    if acks.is_empty() {
                        return Err(unavailable(e));
                    }
                    break;
                }
            }
        }
        let mut confirmed = 0;
        for ack in acks {
            match ack.await {
                Ok(_) => confirmed += 1,
                Err(e) if confirmed == 0 => return Err(unavailable(e)),
                Err(_) => break,
            }
        }
        Ok(confirmed)
    }

    async fn subscribe(&self, consumer_name: &str, filter: &str) -> Result<Box<dyn Subscription>, BusError> {
        let service = self.source_of(filter)?;
        let stream = self.stream(service).await?;
        let durable = sanitize(&format!("{consumer_name}__{}", filter.strip_prefix(&self.namespace).unwrap_or(filter)));
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: filter.to_owned(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(Box::new(NatsSubscription { messages }))
    }

    async fn ensure_source(&self, service: &str) -> Result<(), BusError> {
        self.stream(service).await.map(|_| ())
    }

    async fn ping(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            // A flush is a PING/PONG round trip with the server.
            async_nats::connection::State::Connected => self.client.flush().await.map_err(unavailable),
            other => Err(BusError::Unavailable(format!("NATS connection is {other:?}"))),
        }
    }
}

/// Deletes every stream of a namespace (test cleanup; never used by services).
pub async fn delete_namespace_streams(url: &str, namespace: &str) -> Result<(), BusError> {
    let client = async_nats::connect(url).await.map_err(unavailable)?;
    let js = jetstream::new(client);
    let prefix = sanitize(&format!("{namespace}_")).to_uppercase();
    let mut names = js.stream_names();
    let mut doomed = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(unavailable)?;
        if name.starts_with(&prefix) {
            doomed.push(name);
        }
    }
    for name in doomed {
        js.delete_stream(&name).await.map_err(unavailable)?;
    }
    Ok(())
}

struct NatsSubscription {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        match self.messages.next().await? {
            Ok(message) => {
                let payload = message.payload.clone();
                Some(Ok(Delivery { payload, acker: Box::new(NatsAcker(message)) }))
            }
            Err(e) => Some(Err(unavailable(e))),
        }
    }
}

struct NatsAcker(jetstream::Message);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        // A double ack waits for the server to confirm, so "acknowledged" means stored.
        self.0.double_ack().await.map_err(unavailable)
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Nak(Some(delay))).await.map_err(unavailable)
    }
}
