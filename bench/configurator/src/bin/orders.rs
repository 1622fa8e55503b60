//! New-car order placements per second, end to end through the gateway: every
//! `POST /api/factory/order` runs the factory's whole placing saga (the configuration fetched
//! from the configurator over gRPC, the bill of materials held in inventory, the deposit
//! charged through payments, a production day booked), against a baseline measured in the same
//! run by the same clients: `GET /api/factory/order/{id}`, a read through the same gateway,
//! token check and service.
//!
//! Set-up: one customer per client (registered, wallet topped up), each saving the same
//! configuration; the admin stocks its parts generously. Then two phases, each `--warmup-secs`
//! unmeasured and `--duration-secs` measured, every client sending its next request as soon as
//! it has the answer: reads of the client's first order, then placements. Prints one JSON
//! document; exits 1 if any request failed.

use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Factory order placements per second through the gateway, against order reads in the same run")]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    #[arg(long)]
    admin_email: String,
    #[arg(long)]
    admin_password: String,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    user_id: String,
    config_id: String,
    first_order: String,
}

async fn json_of(r: reqwest::Response, what: &str) -> Result<Value, Error> {
    let status = r.status();
    let body: Value = r.json().await?;
    if !status.is_success() {
        return Err(format!("{what}: {status} {body}").into());
    }
    Ok(body)
}

async fn login(http: &reqwest::Client, base: &str, email: &str, password: &str) -> Result<String, Error> {
    let r = http.post(format!("{base}/api/auth/login")).json(&json!({"email": email, "password": password})).send().await?;
    Ok(json_of(r, "login").await?["accessToken"].as_str().ok_or("no token")?.to_owned())
}

/// Top-ups of 1,000,000 EUR per client: 8,580 deposits of 5,825 EUR.
const TOP_UPS: usize = 50;

/// The configuration every client orders: the seed's, a Tundra with the V6.
const CONFIG: &str = r#"{"engine": "V6", "color": "Red", "interior": "Leather", "features": ["Sunroof", "GPS"]}"#;

async fn set_up(http: reqwest::Client, base: String, n: usize, run: String) -> Result<Client, Error> {
    let email = format!("orders-{run}-{n}@bench.motorpool.local");
    let password = "bench password for orders";
    let r = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": password, "fullName": "Bench Buyer"}))
        .send()
        .await?;
    json_of(r, "register").await?;
    let token = login(&http, &base, &email, password).await?;
    let me = json_of(http.get(format!("{base}/api/auth/me")).bearer_auth(&token).send().await?, "me").await?;
    let user_id = me["id"].as_str().ok_or("no id")?.to_owned();
    let top_up = json!({"amount": {"amount": "1000000.00", "currency": "EUR"}, "cardNumber": "4242424242424242"});
    // Enough for every deposit a client can place in the run (a top-up takes at most 1,000,000).
    for k in 0..TOP_UPS {
        let r = http
            .post(format!("{base}/api/payments/wallet/top-up"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("bench-{run}-{n}-{k}"))
            .json(&top_up)
            .send()
            .await?;
        json_of(r, "top-up").await?;
    }
    let body: Value = serde_json::from_str(CONFIG)?;
    let saved = json_of(http.post(format!("{base}/api/configure")).bearer_auth(&token).json(&body).send().await?, "configure").await?;
    let config_id = saved["configId"].as_str().ok_or("no configId")?.to_owned();
    Ok(Client { http, base, token, user_id, config_id, first_order: String::new() })
}

impl Client {
    async fn place(&self) -> Result<String, Error> {
        let r = self
            .http
            .post(format!("{}/api/factory/order", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"configId": self.config_id, "userId": self.user_id}))
            .send()
            .await?;
        if r.status() != 201 {
            return Err(format!("order: {} {}", r.status(), r.text().await.unwrap_or_default()).into());
        }
        let body: Value = r.json().await?;
        Ok(body["orderId"].as_str().ok_or("no orderId")?.to_owned())
    }

    async fn read(&self) -> Result<(), Error> {
        let r = self.http.get(format!("{}/api/factory/order/{}", self.base, self.first_order)).bearer_auth(&self.token).send().await?;
        if r.status() != 200 {
            return Err(format!("read: {}", r.status()).into());
        }
        r.bytes().await?;
        Ok(())
    }
}

/// Runs `phase` on every client back to back; the latencies (µs) of requests sent within the
/// measured window, and the failures.
async fn phase(clients: &[std::sync::Arc<Client>], placing: bool, warmup: Duration, measured: Duration) -> (Vec<u64>, usize, String) {
    let start = Instant::now() + warmup;
    let end = start + measured;
    let mut set = JoinSet::new();
    for c in clients {
        let c = c.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0;
            let mut first = String::new();
            while Instant::now() < end {
                let sent = Instant::now();
                let r = if placing { c.place().await.map(|_| ()) } else { c.read().await };
                match r {
                    Ok(()) if sent >= start => lat.push(sent.elapsed().as_micros() as u64),
                    Ok(()) => {}
                    Err(e) => {
                        failures += 1;
                        if first.is_empty() {
                            first = e.to_string();
                        }
                    }
                }
            }
            (lat, failures, first)
        });
    }
    let mut all = Vec::new();
    let mut failures = 0;
    let mut first = String::new();
    while let Some(Ok((lat, f, e))) = set.join_next().await {
        all.extend(lat);
        failures += f;
        if first.is_empty() {
            first = e;
        }
    }
    all.sort_unstable();
    (all, failures, first)
}

fn summary(lat: &[u64], secs: f64, failures: usize, first_error: &str) -> Value {
    let q = |p: f64| lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0);
    json!({"requests": lat.len(), "per_sec": lat.len() as f64 / secs, "p50_us": q(0.5), "p99_us": q(0.99), "max_us": q(1.0),
           "failures": failures, "first_error": first_error})
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;
    let base = args.gateway.trim_end_matches('/').to_owned();
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis().to_string();
    let admin = login(&http, &base, &args.admin_email, &args.admin_password).await?;

    let mut setups = JoinSet::new();
    for n in 0..args.clients {
        setups.spawn(set_up(http.clone(), base.clone(), n, run.clone()));
    }
    let mut clients = Vec::new();
    while let Some(c) = setups.join_next().await {
        clients.push(c??);
    }
    // Stock every part of the configuration generously (the same for every client).
    let config =
        json_of(http.get(format!("{base}/api/configure/{}", clients[0].config_id)).bearer_auth(&clients[0].token).send().await?, "config")
            .await?;
    for option in config["options"].as_array().ok_or("no options")? {
        let code = option.as_str().ok_or("option code")?;
        let r = http
            .put(format!("{base}/api/inventory/stock/{}", motorpool_factory::domain::sku(code)))
            .bearer_auth(&admin)
            .json(&json!({"quantity": 1_000_000}))
            .send()
            .await?;
        json_of(r, "stock").await?;
    }
    for c in &mut clients {
        c.first_order = c.place().await?;
    }
    let clients: Vec<std::sync::Arc<Client>> = clients.into_iter().map(std::sync::Arc::new).collect();
    let secs = args.duration_secs as f64;
    let warmup = Duration::from_secs(args.warmup_secs);
    let measured = Duration::from_secs(args.duration_secs);
    let (reads, read_failures, read_error) = phase(&clients, false, warmup, measured).await;
    let (places, place_failures, place_error) = phase(&clients, true, warmup, measured).await;
    let read = summary(&reads, secs, read_failures, &read_error);
    let place = summary(&places, secs, place_failures, &place_error);
    let ratio = place["per_sec"].as_f64().unwrap_or(0.0) / read["per_sec"].as_f64().unwrap_or(1.0).max(1e-9);
    let out = json!({"clients": args.clients, "seconds": args.duration_secs, "read_baseline": read, "placements": place,
                     "placements_per_read": ratio});
    println!("{}", serde_json::to_string_pretty(&out)?);
    if read_failures + place_failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
