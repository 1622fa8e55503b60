//! `motorpool-loadgen`: an HTTP/1.1 keep-alive load generator for Motorpool's benchmarks.
//!
//! Closed loop (`--connections N`) measures the throughput a server sustains at a given
//! concurrency; open loop (`--rate R`) measures latency at a given offered load without
//! coordinated omission. Either way it prints one JSON line and never retries, so every
//! failure the server produces is counted. It only ever talks to the one URL it is given.

mod client;
mod closed_loop;
mod open_loop;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hyper::Uri;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(name = "motorpool-loadgen", version, about = "HTTP/1.1 load generator: closed or open loop, one JSON line out")]
struct Cli {
    /// Target, e.g. http://127.0.0.1:8080/.well-known/jwks.json (plain http only).
    #[arg(value_parser = http_url)]
    url: Uri,
    /// Closed loop: this many connections, each sending requests back to back.
    #[arg(long, value_parser = positive_usize, conflicts_with = "rate", required_unless_present = "rate")]
    connections: Option<usize>,
    /// Open loop: offer this many requests per second at fixed intervals.
    #[arg(long, value_parser = positive_f64)]
    rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value = "10", value_parser = positive_f64)]
    duration: f64,
    /// Open loop: most requests outstanding at once.
    #[arg(long, default_value = "256", value_parser = positive_usize)]
    max_in_flight: usize,
    /// Per-request timeout in milliseconds; a timed-out request counts as an error.
    #[arg(long, default_value = "5000", value_parser = positive_u64)]
    timeout_ms: u64,
    /// Runtime worker threads (wrk's `-t`).
    #[arg(long, default_value = "2", value_parser = positive_usize)]
    threads: usize,
    /// Free text copied into the output, to tell runs apart.
    #[arg(long)]
    label: Option<String>,
    /// Bearer tokens, one per line: each request carries the next (`Authorization: Bearer`).
    #[arg(long)]
    bearer_file: Option<std::path::PathBuf>,
}

fn http_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err("expected an absolute http:// URL".into()),
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number".into()),
    }
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err("expected a positive integer".into()),
    }
}

fn positive_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err("expected a positive integer".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("motorpool-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("motorpool-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<Value, String> {
    let bearers = match &cli.bearer_file {
        Some(path) => client::Bearers::load(path)?,
        None => client::Bearers::default(),
    };
    let duration = Duration::from_secs_f64(cli.duration);
    let timeout = Duration::from_millis(cli.timeout_ms);
    let mut out = serde_json::Map::new();
    out.insert("url".into(), json!(cli.url.to_string()));
    out.insert("label".into(), json!(cli.label));
    out.insert("threads".into(), json!(cli.threads));
    out.insert("duration_s".into(), json!(cli.duration));
    out.insert("bearer_tokens".into(), json!(bearers.len()));
    if let Some(rate) = cli.rate {
        let client = client::new(cli.max_in_flight);
        let plan = open_loop::Plan { rate, duration, max_in_flight: cli.max_in_flight, timeout };
        let (samples, pacing, elapsed) = open_loop::run(client, cli.url.clone(), plan, bearers).await.map_err(|e| e.to_string())?;
        out.insert("mode".into(), json!("open"));
        out.insert("target_rps".into(), json!(rate));
        out.insert("max_in_flight".into(), json!(cli.max_in_flight));
        out.insert("scheduled".into(), json!(pacing.scheduled));
        out.insert("unsent".into(), json!(pacing.scheduled - pacing.sent));
        out.insert("send_lag_p50_us".into(), json!(pacing.lag.p50));
        out.insert("send_lag_p99_us".into(), json!(pacing.lag.p99));
        out.insert("send_lag_max_us".into(), json!(pacing.lag.max));
        out.extend(samples.summarize(elapsed).to_json());
    } else {
        // `clap` guarantees one of --rate and --connections.
        let connections = cli.connections.unwrap_or(1);
        let client = client::new(connections);
        let (samples, elapsed) =
            closed_loop::run(client, cli.url.clone(), connections, duration, timeout, bearers).await.map_err(|e| e.to_string())?;
        out.insert("mode".into(), json!("closed"));
        out.insert("connections".into(), json!(connections));
        out.extend(samples.summarize(elapsed).to_json());
    }
    Ok(Value::Object(out))
}
