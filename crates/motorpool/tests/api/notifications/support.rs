//! What the notifications tests need around the platform: a real SMTP server on loopback
//! that records what it receives, a webhook receiver that can fail on purpose, a reader for
//! Server-Sent Events, and a way to put events on the bus as another service would.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use motorpool_platform::events::{self, Bus, Envelope};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Polls `check` every 50 ms until it returns something, for at most `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ SMTP

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (unfolded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut()
                && (line.starts_with(' ') || line.starts_with('\t'))
            {
                v.push_str(line.trim_start());
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

/// A minimal SMTP server: greets, accepts EHLO/HELO, MAIL FROM, RCPT TO, DATA, RSET, NOOP
/// and QUIT with the replies RFC 5321 prescribes, and records every message.
pub struct SmtpSink {
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on `port`, chosen before the platform started, so a test can start the server
    /// after the platform already tried to use it.
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, sink.clone()));
            }
        });
        Self { mails, task }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until a message to `to` has arrived and returns it.
    pub async fn wait_for(&self, to: &str, within: Duration) -> Mail {
        eventually(&format!("an email to {to}"), within, || async { self.mails().into_iter().find(|m| m.to.iter().any(|t| t == to)) }).await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn angle_address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map_or(arg, |(addr, _)| addr);
    inner.to_owned()
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(text.as_bytes()).await.is_ok()
}

async fn smtp_session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 sink.test ESMTP ready\r\n").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-sink.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_owned(),
            "HELO" => "250 sink.test\r\n".to_owned(),
            "MAIL" => {
                from = angle_address(command.split_once(':').map_or("", |(_, a)| a));
                to.clear();
                "250 2.1.0 OK\r\n".to_owned()
            }
            "RCPT" => {
                to.push(angle_address(command.split_once(':').map_or("", |(_, a)| a)));
                "250 2.1.5 OK\r\n".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-stuffing: a leading "." was doubled by the client.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                mails.lock().unwrap().push(Mail { from: from.clone(), to: to.clone(), data });
                "250 2.0.0 OK queued\r\n".to_owned()
            }
            "RSET" => {
                from.clear();
                to.clear();
                "250 2.0.0 OK\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 OK\r\n".to_owned(),
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 Command not recognized\r\n".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

// -------------------------------------------------------------- webhooks

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: StatusCode,
}

impl Hit {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server on loopback that records webhook deliveries and answers 500 to the first
/// `fail_first` of them.
pub struct WebhookReceiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let recorded = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let recorded = recorded.clone();
                let failures_left = failures_left.clone();
                async move {
                    let fail = failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    let status = if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT };
                    recorded.lock().unwrap().push(Hit { headers, body, status });
                    status
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, hits, task }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived and returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        eventually(&format!("{n} webhook requests"), within, || async {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------ SSE

/// A Server-Sent Events reader over a streaming response.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its `event:` name and `data:` text.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub data: String,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped), or `None` if none arrives within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { name: "message".into(), data: String::new() };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

// ------------------------------------------------------------------ bus

/// Publishes events on the platform's bus the way a service's outbox relay does.
pub struct Publisher {
    bus: Arc<dyn Bus>,
    namespace: String,
}

impl Publisher {
    pub async fn connect(cfg: &motorpool::Config) -> Self {
        let infra = cfg.infra();
        Self { bus: events::connect_bus(&infra).await.unwrap(), namespace: infra.events.namespace }
    }

    pub fn envelope(kind: &str, data: Value) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            source: kind.split('.').next().unwrap().to_owned(),
            time: motorpool_platform::clock::rfc3339_ms(motorpool_platform::clock::Clock::system().now_ms()),
            subject: "test-subject".into(),
            data,
            traceparent: None,
        }
    }

    /// Publishes `envelope` with `message_id` as the bus's de-duplication id.
    pub async fn publish_as(&self, envelope: &Envelope, message_id: &str) {
        let subject = events::subject_for(&self.namespace, &envelope.kind);
        self.bus.publish(&subject, message_id, serde_json::to_vec(envelope).unwrap().into()).await.unwrap();
    }

    /// Publishes a new event and returns it.
    pub async fn publish(&self, kind: &str, data: Value) -> Envelope {
        let envelope = Self::envelope(kind, data);
        self.publish_as(&envelope, &envelope.id).await;
        envelope
    }
}
