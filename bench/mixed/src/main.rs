//! `motorpool-mixed`: a mixed workload through the gateway with a correctness oracle.
//!
//! Set-up (as the admin and as fresh customers): products of this run's own in the catalog,
//! some plentiful and some scarce, stocked with known quantities; every car part the
//! configurator's catalog can put in a bill of materials stocked with a known quantity; N
//! customers registered, logged in and topped up. Then N virtual users run a closed loop for
//! the duration (browse, configure over WebSocket, add to cart, checkout, order a car, cancel
//! one; weights configurable), spread round-robin over the gateways given. Then the oracle
//! (see `oracle.rs`) waits for the background work to settle, within a bound, and checks the
//! invariants. Prints a human table on stderr and one JSON line on stdout; exits 1 when an
//! invariant fails, 2 when the set-up fails.

mod api;
mod cpu;
mod oracle;
mod stats;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::api::{Api, car_sku, cents, decimal};
use crate::oracle::{Level, Oracle};
use crate::stats::{OPS, Stats};
use crate::workload::{Behaviour, Product, User, Weights};

#[derive(Parser, Debug)]
#[command(
    about = "Mixed workload through the gateway (browse, configure over WebSocket, cart, checkout, car orders) with a correctness oracle"
)]
struct Args {
    /// Gateway base URL; repeat (or separate with commas) for several gateways, used
    /// round-robin per virtual user.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    gateway: Vec<String>,
    #[arg(long, default_value = "admin@motorpool.local")]
    admin_email: String,
    #[arg(long, default_value = "motorpool-admin")]
    admin_password: String,
    /// Virtual users (each its own customer).
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Seconds of load before the measured window (its operations count for the oracle).
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Operation weights, e.g. `browse=30,configure=15,add=25,checkout=15,order=10,cancel=3`.
    #[arg(long, default_value = "")]
    weights: String,
    /// Share of checkouts and car orders whose Idempotency-Key is sent again after the answer.
    #[arg(long, default_value_t = 0.2)]
    replay: f64,
    /// Share of checkouts sent twice at once with one key.
    #[arg(long, default_value_t = 0.05)]
    concurrent_replay: f64,
    /// Share of adds that go to a scarce product.
    #[arg(long, default_value_t = 0.2)]
    scarce: f64,
    /// Share of adds that ask a scarce product for 60 units (more than it ever has).
    #[arg(long, default_value_t = 0.03)]
    greedy: f64,
    /// Products this run creates.
    #[arg(long, default_value_t = 16)]
    products: usize,
    /// Of those, how many are scarce.
    #[arg(long, default_value_t = 4)]
    scarce_products: usize,
    /// Units of each scarce product.
    #[arg(long, default_value_t = 40)]
    scarce_stock: i64,
    /// Units of each plentiful product.
    #[arg(long, default_value_t = 1_000_000)]
    stock: i64,
    /// Units of each car part (`CAR-*`); small values make orders wait for parts.
    #[arg(long, default_value_t = 1_000_000)]
    car_stock: i64,
    /// Amount of each wallet top-up (EUR).
    #[arg(long, default_value = "1000000.00")]
    top_up: String,
    /// Top-ups per user.
    #[arg(long, default_value_t = 2)]
    top_ups: usize,
    /// Car orders one user places at most (the factory lists 100 per user).
    #[arg(long, default_value_t = 90)]
    max_car_orders: usize,
    /// Longest wait for the platform to settle before the verdict.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Time limit of every request (and of each WebSocket step).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// A name for this run in the output (e.g. `embedded`).
    #[arg(long, default_value = "")]
    label: String,
    /// A platform process to measure CPU of during the measured window: `name=pid`
    /// (`shop-1=1234`; the service is the name without `-<n>`) or `name:service=pid`.
    #[arg(long)]
    watch: Vec<String>,
    /// Processes to measure by command name, as one service: `comm=service`, e.g.
    /// `postgres=infra-postgres` (services named `infra-*` are never the busiest).
    #[arg(long)]
    watch_comm: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check the checker: after the load, as the admin, take one unit of a product off the
    /// shelf without a sale and refund 0.01 of a placed order's charge. The oracle must then
    /// fail `shop_stock_conservation` and `wallets_explained` (and nothing else).
    #[arg(long)]
    negative_control: bool,
    /// Makes e-mails, product codes and keys unique (default: the time).
    #[arg(long)]
    run_id: Option<String>,
}

type Error = String;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("motorpool-mixed: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool, Error> {
    let weights = Weights::parse(&args.weights)?;
    let watched: Vec<cpu::Watched> = args.watch.iter().map(|w| cpu::Watched::parse(w)).collect::<Result<_, _>>()?;
    let by_name: Vec<cpu::ByName> = args.watch_comm.iter().map(|w| cpu::ByName::parse(w)).collect::<Result<_, _>>()?;
    if args.products == 0 || args.scarce_products > args.products || args.users == 0 {
        return Err("need at least one product, no more scarce products than products, and at least one user".into());
    }
    let top_up = cents(&args.top_up).ok_or("--top-up must be a decimal with two places, e.g. 1000000.00")?;
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("{ms:x}")
    });
    let timeout = Duration::from_millis(args.timeout_ms);
    let http = api::client(timeout, args.users * 2 + 8);
    let gateways: Vec<Api> = args.gateway.iter().map(|g| Api::new(http.clone(), g)).collect();
    let admin_api = gateways[0].clone();
    let set_up_began = Instant::now();

    let admin = login(&admin_api, &args.admin_email, &args.admin_password).await?;
    let mut initial: BTreeMap<String, Level> = BTreeMap::new();

    // This run's products: its own codes, so nothing else sells them.
    let mut products = Vec::new();
    for i in 0..args.products {
        let scarce = i < args.scarce_products;
        let code = format!("MIX-{}-{i:02}", run_id.to_uppercase());
        let price_minor = 490 + 275 * i as i64;
        let body = json!({
            "name": format!("Mixed bench part {i}"), "description": "A part the mixed workload buys.", "category": "Mixed bench",
            "price": {"amount": decimal(price_minor), "currency": "EUR"}, "compatibleModels": ["VW Golf", "Audi A3"],
        });
        let a = admin_api.put(&format!("/api/shop/products/{code}"), Some(&admin), &body).await?;
        if !matches!(a.status, 200 | 201) {
            return Err(format!("PUT product {code}: {}", a.describe()));
        }
        let level = put_stock(&admin_api, &admin, &code, if scarce { args.scarce_stock } else { args.stock }).await?;
        initial.insert(code.clone(), level);
        products.push(Product { code, scarce });
    }

    // Every car part a bill of materials can name: one per model and option of the catalog.
    let catalog = admin_api.get_ok("/api/configure/catalog", None).await?;
    let mut car_skus: Vec<String> =
        catalog["options"].as_array().into_iter().flatten().filter_map(|o| o["code"].as_str()).map(car_sku).collect();
    car_skus.sort();
    car_skus.dedup();
    if car_skus.is_empty() {
        return Err(format!("the configurator's catalog has no options: {catalog}"));
    }
    for sku in &car_skus {
        let level = put_stock(&admin_api, &admin, sku, args.car_stock).await?;
        initial.insert(sku.clone(), level);
    }

    // The customers, a few at a time (password hashing is the expensive part).
    let made: Vec<Result<User, Error>> = futures::stream::iter((0..args.users).map(|i| {
        let api = gateways[i % gateways.len()].clone();
        let run_id = run_id.clone();
        let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        async move { customer(api, i, &run_id, seed, top_up, args.top_ups).await }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    let mut users: Vec<User> = made.into_iter().collect::<Result<_, _>>()?;
    users.sort_by_key(|u| u.idx);
    let set_up_s = set_up_began.elapsed().as_secs_f64();
    eprintln!(
        "set up in {set_up_s:.1} s: {} users on {} gateway(s), {} products ({} scarce), {} car parts; running {} s + {} s warm-up",
        users.len(),
        gateways.len(),
        products.len(),
        args.scarce_products,
        car_skus.len(),
        args.duration_secs,
        args.warmup_secs
    );

    // The load.
    let how = Arc::new(Behaviour {
        weights,
        replay: args.replay,
        concurrent_replay: args.concurrent_replay,
        scarce: args.scarce,
        greedy: args.greedy,
        max_car_orders: args.max_car_orders,
        ws_timeout: timeout,
    });
    let products = Arc::new(products);
    let start = Instant::now() + Duration::from_secs(args.warmup_secs);
    let end = start + Duration::from_secs(args.duration_secs);
    let cpu_task = {
        let (watched, by_name) = (watched.clone(), by_name.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            let s = cpu::sample(&watched, &by_name);
            tokio::time::sleep_until(end).await;
            s.since(end.duration_since(start).as_secs_f64())
        })
    };
    let tasks: Vec<_> = users.into_iter().map(|u| tokio::spawn(u.run(products.clone(), how.clone(), start, end))).collect();
    let mut stats = Stats::default();
    let mut users = Vec::new();
    for t in tasks {
        let (u, s) = t.await.map_err(|e| format!("a virtual user panicked: {e}"))?;
        stats.merge(s);
        users.push(u);
    }
    let overrun = Instant::now().saturating_duration_since(end).as_secs_f64();
    let cpu = cpu_task.await.map_err(|e| e.to_string())?;
    let mut summary = stats.summary(Duration::from_secs(args.duration_secs));

    if args.negative_control {
        negative_control(&admin_api, &admin, &products, &users).await?;
    }

    // The verdict.
    let mut oracle = Oracle::new(&admin_api, &admin, &users, &products, &initial);
    let (checks, counts, settle_s, rounds) = oracle.settle_and_check(Duration::from_secs(args.settle_secs)).await;
    let ok = checks.iter().all(|c| c.ok);

    print_table(&args.label, &summary, &checks, settle_s, rounds);
    let mut out = Map::new();
    out.insert("label".into(), json!(args.label));
    out.insert("run_id".into(), json!(run_id));
    out.insert("gateways".into(), json!(args.gateway));
    out.insert("users".into(), json!(args.users));
    out.insert("duration_s".into(), json!(args.duration_secs));
    out.insert("warmup_s".into(), json!(args.warmup_secs));
    out.insert("weights".into(), json!(how.weights.to_string()));
    out.insert("set_up_s".into(), json!((set_up_s * 10.0).round() / 10.0));
    out.insert("overrun_s".into(), json!((overrun * 100.0).round() / 100.0));
    out.append(&mut summary);
    out.insert(
        "oracle".into(),
        json!({
            "ok": ok,
            "settle_s": (settle_s * 10.0).round() / 10.0,
            "rounds": rounds,
            "checks": checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
            "counts": counts,
        }),
    );
    out.insert("cpu".into(), cpu);
    println!("{}", Value::Object(out));
    Ok(ok)
}

/// Two effects no client asked for, which the oracle must notice.
async fn negative_control(api: &Api, admin: &str, products: &[Product], users: &[User]) -> Result<(), Error> {
    let code = &products.last().ok_or("no products")?.code;
    let level = api.get_ok(&format!("/api/inventory/stock/{code}"), Some(admin)).await?;
    let quantity = level["quantity"].as_i64().ok_or("no quantity")?;
    put_stock(api, admin, code, quantity - 1).await?;
    eprintln!("negative control: {code} set from {quantity} to {} units without a sale", quantity - 1);
    for u in users {
        let Some((order_id, _)) = u.seen.checkouts.first() else { continue };
        let order = u.api.get_ok(&format!("/api/shop/orders/{order_id}"), Some(&u.token)).await?;
        let charge = order["chargeId"].as_str().ok_or("order without a charge")?;
        let body = json!({"amount": {"amount": "0.01", "currency": "EUR"}, "reason": "negative control"});
        let a =
            api.post(&format!("/api/admin/payments/charges/{charge}/refunds"), Some(admin), Some(&format!("neg-{charge}")), &body).await?;
        if !matches!(a.status, 200 | 201) {
            return Err(format!("negative control refund: {}", a.describe()));
        }
        eprintln!("negative control: refunded 0.01 of user {}'s order {order_id} (charge {charge})", u.idx);
        return Ok(());
    }
    Err("negative control: no placed order to refund".into())
}

async fn login(api: &Api, email: &str, password: &str) -> Result<String, Error> {
    let a = api.post("/api/auth/login", None, None, &json!({"email": email, "password": password})).await?;
    if a.status != 200 {
        return Err(format!("login {email}: {}", a.describe()));
    }
    a.body["accessToken"].as_str().map(str::to_owned).ok_or_else(|| format!("login {email}: no token"))
}

async fn put_stock(api: &Api, admin: &str, sku: &str, quantity: i64) -> Result<Level, Error> {
    let a = api.put(&format!("/api/inventory/stock/{sku}"), Some(admin), &json!({"quantity": quantity})).await?;
    if a.status != 200 {
        return Err(format!("PUT stock {sku}: {}", a.describe()));
    }
    let n = |k: &str| a.body[k].as_i64().ok_or_else(|| format!("PUT stock {sku}: no {k} in {}", a.body));
    Ok(Level { quantity: n("quantity")?, held: n("held")? })
}

async fn customer(api: Api, i: usize, run_id: &str, seed: u64, top_up: i64, top_ups: usize) -> Result<User, Error> {
    let email = format!("mix-{run_id}-{i}@bench.motorpool.local");
    let password = "mixed workload password";
    let a = api
        .post("/api/auth/register", None, None, &json!({"email": email, "password": password, "fullName": format!("Mixed User {i}")}))
        .await?;
    if a.status != 201 {
        return Err(format!("register {email}: {}", a.describe()));
    }
    let token = login(&api, &email, password).await?;
    let me = api.get_ok("/api/auth/me", Some(&token)).await?;
    let user_id = me["id"].as_str().ok_or_else(|| format!("/api/auth/me: no id in {me}"))?.to_owned();
    let mut user = User::new(i, email, token, user_id, api.clone(), run_id, seed);
    for k in 0..top_ups {
        let body = json!({"amount": {"amount": decimal(top_up), "currency": "EUR"}, "cardNumber": "4242424242424242"});
        let key = format!("mix-{run_id}-{i}-top-up-{k}");
        let a = api.post("/api/payments/wallet/top-up", Some(&user.token), Some(&key), &body).await?;
        if a.status != 201 {
            return Err(format!("top-up for {}: {}", user.email, a.describe()));
        }
        user.topped_up_minor += top_up;
    }
    Ok(user)
}

/// A JSON value as table text (strings without quotes).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn print_table(label: &str, summary: &Map<String, Value>, checks: &[oracle::Check], settle_s: f64, rounds: u32) {
    let mut t = String::new();
    let title = if label.is_empty() { String::new() } else { format!(" ({label})") };
    t.push_str(&format!(
        "\nmixed workload{title}: {} ops in {} s = {} ops/s; {} refused, {} errors; p50 {} ms, p99 {} ms\n",
        summary["ops"],
        summary["elapsed_s"],
        summary["ops_per_sec"],
        summary["refused"],
        summary["errors"],
        summary["p50_ms"],
        summary["p99_ms"]
    ));
    t.push_str(&format!(
        "{:<16} {:>8} {:>8} {:>8} {:>7} {:>10} {:>10}\n",
        "operation", "count", "done", "refused", "errors", "p50 ms", "p99 ms"
    ));
    for op in OPS {
        if let Some(s) = summary["per_op"].get(*op) {
            let f = |k: &str| text(&s[k]);
            t.push_str(&format!(
                "{:<16} {:>8} {:>8} {:>8} {:>7} {:>10} {:>10}\n",
                op,
                f("count"),
                f("done"),
                f("refused"),
                f("errors"),
                f("p50_ms"),
                f("p99_ms")
            ));
        }
    }
    t.push_str(&format!("oracle (settled in {settle_s:.1} s, {rounds} round(s)):\n"));
    for c in checks {
        t.push_str(&format!("  {} {:<24} {}\n", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail));
    }
    eprint!("{t}");
}
