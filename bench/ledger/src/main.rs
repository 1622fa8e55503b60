//! Ledger transfer benchmark. Creates one user per client, tops each wallet up, then for a
//! fixed time every client pays tiny amounts from its own wallet as fast as it can — through
//! the gateway over HTTP (`POST /api/payments/charges` with an Idempotency-Key, JWT checked
//! twice) or straight to the payments service over gRPC (`Charge`). Prints one JSON line with
//! throughput and latency, then asks the ledger whether it still balances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use motorpool_proto::payments::v1::ChargeRequest;
use motorpool_proto::payments::v1::payments_client::PaymentsClient;
use serde_json::{Value, json};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Http,
    Grpc,
}

#[derive(Parser)]
struct Args {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Payments service base URL (for gRPC).
    #[arg(long, default_value = "http://127.0.0.1:8113")]
    payments: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long)]
    admin_email: String,
    #[arg(long)]
    admin_password: String,
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(
    http: &Http,
    method: &str,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(b)?)
        }
        None => Bytes::new(),
    };
    let resp = http.request(req.body(Full::new(payload))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    Ok((status, value))
}

struct User {
    id: String,
    token: String,
}

async fn make_user(http: &Http, gw: &str, i: usize) -> anyhow::Result<User> {
    let email = format!("bench-{i}-{}@example.com", uuid::Uuid::now_v7().simple());
    let password = "benchmark password";
    let (s, _) = call(
        http,
        "POST",
        &format!("{gw}/api/auth/register"),
        None,
        None,
        Some(&json!({"email": email, "password": password, "fullName": "Bench"})),
    )
    .await?;
    anyhow::ensure!(s == 201, "register: {s}");
    let (s, t) =
        call(http, "POST", &format!("{gw}/api/auth/login"), None, None, Some(&json!({"email": email, "password": password}))).await?;
    anyhow::ensure!(s == 200, "login: {s}");
    let token = t["accessToken"].as_str().unwrap_or_default().to_owned();
    let (_, me) = call(http, "GET", &format!("{gw}/api/auth/me"), Some(&token), None, None).await?;
    let key = uuid::Uuid::now_v7().to_string();
    let body = json!({"amount": {"amount": "100000.00", "currency": "EUR"}, "cardNumber": "4242424242424242"});
    let (s, _) = call(http, "POST", &format!("{gw}/api/payments/wallet/top-up"), Some(&token), Some(&key), Some(&body)).await?;
    anyhow::ensure!(s == 201, "top-up: {s}");
    Ok(User { id: me["id"].as_str().unwrap_or_default().to_owned(), token })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
    let gw = args.gateway.trim_end_matches('/').to_owned();
    let mut users = Vec::new();
    for i in 0..args.clients {
        users.push(make_user(&http, &gw, i).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let http = Arc::new(http);
    let mut tasks = Vec::new();
    for user in users {
        let http = http.clone();
        let gw = gw.clone();
        let payments = args.payments.clone();
        let mode = args.mode;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut grpc = match mode {
                Mode::Grpc => Some(PaymentsClient::connect(payments).await?),
                Mode::Http => None,
            };
            let body = json!({"amount": {"amount": "0.01", "currency": "EUR"}, "reference": "bench", "description": "benchmark payment"});
            while Instant::now() < deadline {
                let key = uuid::Uuid::now_v7().to_string();
                let started = Instant::now();
                let ok = match grpc.as_mut() {
                    Some(client) => {
                        let req = ChargeRequest {
                            idempotency_key: key,
                            user_id: user.id.clone(),
                            amount_minor: 1,
                            currency: "EUR".into(),
                            reference: "bench".into(),
                            description: "benchmark payment".into(),
                        };
                        client.charge(req).await.is_ok()
                    }
                    None => matches!(
                        call(&http, "POST", &format!("{gw}/api/payments/charges"), Some(&user.token), Some(&key), Some(&body)).await,
                        Ok((201, _))
                    ),
                };
                if ok {
                    latencies.push(started.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((latencies, errors))
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(args.duration_secs as f64);
    all.sort_unstable();
    let http = Arc::try_unwrap(http).unwrap_or_else(|a| (*a).clone());
    let (_, admin) = call(
        &http,
        "POST",
        &format!("{gw}/api/auth/login"),
        None,
        None,
        Some(&json!({"email": args.admin_email, "password": args.admin_password})),
    )
    .await?;
    let admin_token = admin["accessToken"].as_str().unwrap_or_default().to_owned();
    let (_, ledger) = call(&http, "GET", &format!("{gw}/api/admin/payments/ledger"), Some(&admin_token), None, None).await?;
    let mode = match args.mode {
        Mode::Http => "http",
        Mode::Grpc => "grpc",
    };
    let out = json!({
        "mode": mode,
        "clients": args.clients,
        "transfers": all.len(),
        "errors": errors,
        "tps": all.len() as f64 / elapsed,
        "p50_us": percentile(&all, 0.50),
        "p99_us": percentile(&all, 0.99),
        "ledger_balanced": ledger["balanced"],
        "ledger": ledger["currencies"],
    });
    println!("{out}");
    Ok(())
}
