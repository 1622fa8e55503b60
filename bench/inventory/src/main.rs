//! Inventory hold benchmark. For a fixed time every client holds one unit of a SKU and gives
//! it back, as fast as it can — straight to the inventory service over gRPC (`Hold` with one
//! line, then `Release` of that hold) or through the gateway as a signed-in shopper
//! (`POST /api/cart/items`, then `DELETE /api/cart/items/{code}`; the shop takes the hold and
//! releases it later through its queue). One op is one hold plus its release.
//!
//! Every SKU is stocked far above what the run can hold, so no hold should be refused for want
//! of stock (refusals are counted by reason); the point is throughput on one hot SKU (every
//! client queues on one stock row) and on many. Ops of the first seconds are not counted.
//! Afterwards it waits until no unit is held any more, checks through `Availability` that no
//! SKU is oversold and none lost or gained units, and asks the admin consistency check whether
//! the held counters still equal the holds behind them. Prints one JSON line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use motorpool_proto::inventory::v1::inventory_client::InventoryClient;
use motorpool_proto::inventory::v1::{AvailabilityRequest, HoldRequest, Line, Outcome, ReleaseRequest, SetStockRequest, StockLevel};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Grpc,
    Gateway,
}

#[derive(Parser)]
struct Args {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Inventory service base URL (its gRPC shares the port with its REST API).
    #[arg(long, default_value = "http://127.0.0.1:8111")]
    inventory: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds of unmeasured ops first.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// SKUs the clients spread their holds over (1: one hot SKU): `BENCH-0001`…, which the
    /// gateway mode first makes products of the shop's catalog.
    #[arg(long, default_value_t = 1)]
    skus: usize,
    /// Units every SKU is stocked with before the run.
    #[arg(long, default_value_t = 1_000_000)]
    stock: i64,
    /// Only stock the SKUs and exit (so the caller can refresh the planner's statistics with
    /// the SKUs in place before the measured run).
    #[arg(long)]
    setup_only: bool,
    /// How long to wait after the run for every hold to be gone (the shop releases later).
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    #[arg(long)]
    admin_email: String,
    #[arg(long)]
    admin_password: String,
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(http: &Http, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
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

/// Percent-encodes everything but RFC 3986's unreserved characters (for path and query parts).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn login(http: &Http, gw: &str, email: &str, password: &str) -> anyhow::Result<String> {
    let (s, t) = call(http, "POST", &format!("{gw}/api/auth/login"), None, Some(&json!({"email": email, "password": password}))).await?;
    anyhow::ensure!(s == 200, "login {email}: {s} {t}");
    Ok(t["accessToken"].as_str().unwrap_or_default().to_owned())
}

async fn make_shopper(http: &Http, gw: &str, i: usize) -> anyhow::Result<String> {
    let email = format!("bench-{i}-{}@example.com", uuid::Uuid::now_v7().simple());
    let password = "benchmark password";
    let body = json!({"email": email, "password": password, "fullName": "Bench"});
    let (s, r) = call(http, "POST", &format!("{gw}/api/auth/register"), None, Some(&body)).await?;
    anyhow::ensure!(s == 201, "register: {s} {r}");
    login(http, gw, &email, password).await
}

/// Makes every SKU a product of the shop's catalog (admin `PUT /api/shop/products/{code}`),
/// so shoppers can put it in their carts.
async fn define_products(http: &Http, gw: &str, admin: &str, skus: &[String]) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for chunk in skus.chunks(skus.len().div_ceil(8)) {
        let (http, gw, admin, chunk) = (http.clone(), gw.to_owned(), admin.to_owned(), chunk.to_vec());
        set.spawn(async move {
            for sku in chunk {
                let body =
                    json!({"name": format!("Bench part {sku}"), "category": "Bench", "price": {"amount": "1.00", "currency": "EUR"}});
                let (s, r) = call(&http, "PUT", &format!("{gw}/api/shop/products/{}", encode(&sku)), Some(&admin), Some(&body)).await?;
                anyhow::ensure!(s == 200 || s == 201, "define product {sku}: {s} {r}");
            }
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Sets every SKU's quantity to `quantity`, creating the ones that do not exist.
async fn stock_up(rpc: &InventoryClient<Channel>, skus: &[String], quantity: i64) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for chunk in skus.chunks(skus.len().div_ceil(8)) {
        let mut rpc = rpc.clone();
        let chunk = chunk.to_vec();
        set.spawn(async move {
            for sku in chunk {
                rpc.set_stock(SetStockRequest { sku, quantity, only_if_absent: false }).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

async fn levels(rpc: &mut InventoryClient<Channel>, skus: &[String]) -> anyhow::Result<Vec<StockLevel>> {
    let mut out = Vec::with_capacity(skus.len());
    // The service answers at most 500 SKUs per request.
    for chunk in skus.chunks(500) {
        out.extend(rpc.availability(AvailabilityRequest { skus: chunk.to_vec() }).await?.into_inner().levels);
    }
    Ok(out)
}

/// One benchmark client: a cart owner talking to inventory, or a shopper talking to the gateway.
enum Shopper {
    Grpc { rpc: InventoryClient<Channel>, owner: String },
    Gateway { http: Http, gw: String, token: String },
}

impl Shopper {
    /// Holds one unit of `sku`: the hold id (empty through the gateway), or why it was refused.
    async fn hold(&mut self, sku: &str) -> anyhow::Result<Result<String, String>> {
        match self {
            Shopper::Grpc { rpc, owner } => {
                let req = HoldRequest { owner: owner.clone(), lines: vec![Line { sku: sku.to_owned(), quantity: 1 }], ttl_seconds: 0 };
                let reply = rpc.hold(req).await?.into_inner();
                match (reply.outcome(), reply.holds.into_iter().next()) {
                    (Outcome::Held, Some(hold)) => Ok(Ok(hold.hold_id)),
                    (outcome, _) => Ok(Err(outcome.as_str_name().to_owned())),
                }
            }
            Shopper::Gateway { http, gw, token } => {
                let body = json!({"productCode": sku, "quantity": 1});
                match call(http, "POST", &format!("{gw}/api/cart/items"), Some(token), Some(&body)).await? {
                    (201, _) => Ok(Ok(String::new())),
                    (409, problem) => Ok(Err(problem["code"].as_str().unwrap_or("conflict").to_owned())),
                    (s, b) => anyhow::bail!("add to cart: {s} {b}"),
                }
            }
        }
    }

    /// Gives the hold back; false when there was nothing to release.
    async fn release(&mut self, sku: &str, hold_id: String) -> anyhow::Result<bool> {
        match self {
            Shopper::Grpc { rpc, owner } => {
                let reply = rpc.release(ReleaseRequest { hold_ids: vec![hold_id], owner: owner.clone() }).await?.into_inner();
                Ok(reply.released == 1)
            }
            Shopper::Gateway { http, gw, token } => {
                match call(http, "DELETE", &format!("{gw}/api/cart/items/{}", encode(sku)), Some(token), None).await? {
                    (204, _) => Ok(true),
                    (404, _) => Ok(false),
                    (s, b) => anyhow::bail!("remove from cart: {s} {b}"),
                }
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    /// Hold plus release, µs, of every completed op.
    ops: Vec<u64>,
    holds: Vec<u64>,
    releases: Vec<u64>,
    /// Refused holds by reason (inventory's outcome, or the shop's problem code).
    refused: BTreeMap<String, u64>,
    release_missed: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }

    fn merge(&mut self, other: Tally) {
        self.ops.extend(other.ops);
        self.holds.extend(other.holds);
        self.releases.extend(other.releases);
        for (reason, n) in other.refused {
            *self.refused.entry(reason).or_default() += n;
        }
        self.release_missed += other.release_missed;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Runs ops until `deadline`; only those started after `measure_from` are counted (before it,
/// connections, pools and prepared statements warm up).
async fn run_client(mut shopper: Shopper, skus: Arc<Vec<String>>, measure_from: Instant, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut warm_up = Tally::default();
    while Instant::now() < deadline {
        let sku = &skus[rand::random_range(0..skus.len())];
        let started = Instant::now();
        let tally = if started < measure_from { &mut warm_up } else { &mut tally };
        match shopper.hold(sku).await {
            Ok(Ok(hold_id)) => {
                let held = Instant::now();
                tally.holds.push(micros(held - started));
                match shopper.release(sku, hold_id).await {
                    Ok(true) => {
                        tally.releases.push(micros(held.elapsed()));
                        tally.ops.push(micros(started.elapsed()));
                    }
                    Ok(false) => tally.release_missed += 1,
                    Err(e) => tally.error(e),
                }
            }
            Ok(Err(reason)) => *tally.refused.entry(reason).or_default() += 1,
            Err(e) => tally.error(e),
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits (up to `drain`) until no unit of `skus` is held, then reports the stock levels.
async fn settle(rpc: &mut InventoryClient<Channel>, skus: &[String], stock: i64, drain: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut held_at_end = None;
    loop {
        let levels = levels(rpc, skus).await?;
        let held: i64 = levels.iter().map(|l| l.held).sum();
        // Units still held when the clients stopped: releases the shop had queued, not sent.
        let held_at_end = *held_at_end.get_or_insert(held);
        if held == 0 || started.elapsed() >= drain {
            return Ok(json!({
                "drained": held == 0,
                "drain_ms": started.elapsed().as_millis() as u64,
                "held_at_end": held_at_end,
                "held_after": held,
                "oversold_skus": levels.iter().filter(|l| l.available < 0 || l.held > l.quantity).count(),
                "min_available": levels.iter().map(|l| l.available).min(),
                "quantity_changed_skus": levels.iter().filter(|l| l.quantity != stock).count(),
                "missing_skus": skus.len() - levels.len(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.clients > 0 && args.skus > 0, "--clients and --skus must be positive");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
    let gw = args.gateway.trim_end_matches('/').to_owned();
    let mut admin_rpc = InventoryClient::connect(args.inventory.clone()).await?;

    let skus: Vec<String> = (1..=args.skus).map(|i| format!("BENCH-{i:04}")).collect();
    if let Mode::Gateway = args.mode {
        let admin = login(&http, &gw, &args.admin_email, &args.admin_password).await?;
        define_products(&http, &gw, &admin, &skus).await?;
    }
    stock_up(&admin_rpc, &skus, args.stock).await?;
    if args.setup_only {
        println!("{}", json!({"skus": skus.len()}));
        return Ok(());
    }

    let mut shoppers = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        shoppers.push(match args.mode {
            Mode::Grpc => Shopper::Grpc {
                rpc: InventoryClient::connect(args.inventory.clone()).await?,
                owner: format!("cart:bench-{}", uuid::Uuid::now_v7()),
            },
            Mode::Gateway => Shopper::Gateway { http: http.clone(), gw: gw.clone(), token: make_shopper(&http, &gw, i).await? },
        });
    }

    let skus = Arc::new(skus);
    let measure_from = Instant::now() + Duration::from_secs(args.warmup_secs);
    let deadline = measure_from + Duration::from_secs(args.duration_secs);
    let mut tasks = JoinSet::new();
    for shopper in shoppers {
        tasks.spawn(run_client(shopper, skus.clone(), measure_from, deadline));
    }
    let mut tally = Tally::default();
    while let Some(t) = tasks.join_next().await {
        tally.merge(t?);
    }
    let elapsed = measure_from.elapsed().as_secs_f64().max(args.duration_secs as f64);
    tally.ops.sort_unstable();
    tally.holds.sort_unstable();
    tally.releases.sort_unstable();

    let stock = settle(&mut admin_rpc, &skus, args.stock, Duration::from_secs(args.drain_secs)).await?;
    // An op is only over when its hold is gone: through the gateway that is after the drain.
    let drain_ms = if stock["held_at_end"].as_i64() == Some(0) { 0 } else { stock["drain_ms"].as_u64().unwrap_or(0) };
    let drained_secs = elapsed + drain_ms as f64 / 1000.0;
    let admin = login(&http, &gw, &args.admin_email, &args.admin_password).await?;
    let (s, check) = call(&http, "GET", &format!("{gw}/api/inventory/check"), Some(&admin), None).await?;
    anyhow::ensure!(s == 200, "inventory check: {s} {check}");

    let mode = match args.mode {
        Mode::Grpc => "grpc",
        Mode::Gateway => "gateway",
    };
    let out = json!({
        "mode": mode,
        "clients": args.clients,
        "seconds": args.duration_secs,
        "warmup_seconds": args.warmup_secs,
        "skus": skus.len(),
        "ops": tally.ops.len(),
        "ops_per_sec": tally.ops.len() as f64 / elapsed,
        "ops_per_sec_with_drain": tally.ops.len() as f64 / drained_secs,
        "p50_us": percentile(&tally.ops, 0.50),
        "p90_us": percentile(&tally.ops, 0.90),
        "p99_us": percentile(&tally.ops, 0.99),
        "max_us": tally.ops.last().copied().unwrap_or(0),
        "hold_p50_us": percentile(&tally.holds, 0.50),
        "hold_p99_us": percentile(&tally.holds, 0.99),
        "release_p50_us": percentile(&tally.releases, 0.50),
        "release_p99_us": percentile(&tally.releases, 0.99),
        "refused": tally.refused,
        "release_missed": tally.release_missed,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "stock": stock,
        "consistent": check["consistent"],
        "check": check,
    });
    println!("{out}");
    Ok(())
}
