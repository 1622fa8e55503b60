//! Configurator live sessions through the gateway: the pick-to-answer round trip over
//! WebSocket at N concurrent sessions (issue target: under 10 ms p99 at 100 sessions), with a
//! baseline measured in the same run on the same sockets.
//!
//! Opens N sessions to `ws://<gateway>/api/configure/ws` (through the gateway's WebSocket
//! tunnel to the configurator), reads each one's initial `state`, picks a model (`aurora`,
//! `tundra` and `volt-s` in turn) and keeps the features the answer shows as available among
//! `sunroof`, `navigation`, `heated-seats`, `premium-audio` and `parking-assist`. Then, per
//! round, two phases on the same sessions, each `--warmup-secs` unmeasured and `--duration-secs`
//! measured, every session sending its next message as soon as it has the answer to the last
//! (plus `--think-ms`):
//!
//! - `ping` (the baseline): a WebSocket Ping, timed until its Pong. It crosses the same client,
//!   gateway tunnel and service socket as a pick, and the session's read loop in the service,
//!   whose WebSocket layer answers it without the configurator doing any work: it isolates the
//!   transport;
//! - `pick`: `{"type":"pick","option":X}` then `{"type":"unpick","option":X}`, X going round the
//!   session's features, timed from the send until the answer (a full `state`: every option's
//!   state with reasons, the price and the cheapest completion, after the session is stored in
//!   the cache). Answers of type `error`, `conflict` or any other, and states whose picks do
//!   not show the change, are counted; errors must be 0.
//!
//! A round trip counts in a phase when it was sent within the measured window. Besides the
//! latencies, each phase records how the machine's CPU time was shared meanwhile (all cores =
//! 100 %): this load generator's, the `--own-pid` processes' (the servers under test), others'
//! (neither idle nor ours: compilers, other test suites, hypervisor steal), and the most `rustc`
//! processes seen. Prints one JSON document with both phases and the ratios pick ÷ ping; exits 1
//! if anything failed.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MODELS: &[&str] = &["aurora", "tundra", "volt-s"];
/// Features no rule ties to a model or to another option in the demo catalog.
const FEATURES: &[&str] = &["sunroof", "navigation", "heated-seats", "premium-audio", "parking-assist"];
/// The target for the pick round trip at p99, in microseconds.
const TARGET_P99_US: u64 = 10_000;

#[derive(Parser)]
#[command(about = "Configurator WebSocket pick round trip through the gateway, against ping/pong on the same sockets")]
struct Args {
    /// The gateway, host:port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Rounds of (ping phase, pick phase); the figures pool every round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Pause of every session between an answer and its next message, in milliseconds (0: each
    /// session sends as soon as it has its answer).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Longest wait for one answer; a session whose answer is later counts an error and stops.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// Processes whose CPU time counts as the benchmark's own (the servers under test).
    #[arg(long)]
    own_pid: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    Pick,
}

/// One phase of the schedule, shared by every session.
#[derive(Clone, Copy)]
struct Phase {
    kind: Kind,
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// What one session saw in one phase.
#[derive(Default)]
struct Tally {
    /// Round trips sent within the measured window, in microseconds.
    samples: Vec<u32>,
    reply_bytes: u64,
    /// Answers by `type` (pick phase), every one, warm-up included.
    replies: BTreeMap<String, u64>,
    /// `state` answers whose picks do not show the change just asked for.
    mismatched: u64,
    /// Send or receive failures, closed sockets, timeouts, unexpected frames.
    transport_errors: u64,
}

struct Session {
    ws: Ws,
    model: &'static str,
    features: Vec<String>,
    /// Position in the pick/unpick sequence; kept across phases so picks and unpicks alternate.
    step: usize,
    pings: u64,
    alive: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.sessions == 0 || args.rounds == 0 || args.duration_secs == 0 {
        return Err("--sessions, --rounds and --duration-secs must be at least 1".into());
    }
    let host = args.gateway.trim_start_matches("http://").trim_start_matches("ws://").trim_end_matches('/');
    let url = format!("ws://{host}/api/configure/ws");
    let limit = Duration::from_secs(args.timeout_secs);

    // Open every session and bring it to a model with its features, concurrently.
    let mut opening = JoinSet::new();
    for index in 0..args.sessions {
        let url = url.clone();
        opening.spawn(async move { (index, open(&url, index, limit).await) });
    }
    let mut sessions = Vec::with_capacity(args.sessions);
    while let Some(joined) = opening.join_next().await {
        let (index, opened) = joined?;
        sessions.push((index, opened.map_err(|e| format!("session {index}: {e}"))?));
    }
    sessions.sort_by_key(|(index, _)| *index);
    let mut models: BTreeMap<&str, usize> = BTreeMap::new();
    let mut features: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &sessions {
        *models.entry(s.model).or_default() += 1;
        for f in &s.features {
            *features.entry(f.clone()).or_default() += 1;
        }
    }

    // One schedule for all: ping then pick, per round, with a pause between phases so that the
    // last round trips of one phase do not overlap the next.
    let warmup = Duration::from_secs(args.warmup_secs);
    let measured = Duration::from_secs(args.duration_secs);
    let gap = Duration::from_millis(500);
    let mut at = Instant::now() + Duration::from_millis(200);
    let mut schedule = Vec::new();
    for _ in 0..args.rounds {
        for kind in [Kind::Ping, Kind::Pick] {
            schedule.push(Phase { kind, start: at, measure_from: at + warmup, end: at + warmup + measured });
            at += warmup + measured + gap;
        }
    }

    let think = Duration::from_millis(args.think_ms);
    let mut running = JoinSet::new();
    for (index, session) in sessions {
        let schedule = schedule.clone();
        running.spawn(async move { (index, drive(session, index, &schedule, think, limit).await) });
    }
    // Meanwhile: what the rest of the machine did in each measured window.
    let mut machine = Vec::with_capacity(schedule.len());
    for phase in &schedule {
        sleep_until(phase.measure_from).await;
        let (before, rustc_before) = (cpu_sample(&args.own_pid), rustc_count());
        sleep_until(phase.end).await;
        let (after, rustc_after) = (cpu_sample(&args.own_pid), rustc_count());
        machine.push(before.zip(after).map(|(b, a)| Usage { rustc: rustc_before.max(rustc_after), ..usage(&b, &a) }));
    }
    let mut tallies: Vec<Vec<Tally>> = (0..schedule.len()).map(|_| Vec::new()).collect();
    let mut lost = 0;
    while let Some(joined) = running.join_next().await {
        let (_, (per_phase, alive)) = joined?;
        lost += usize::from(!alive);
        for (i, t) in per_phase.into_iter().enumerate() {
            tallies[i].push(t);
        }
    }

    // Every phase's sessions together; then each kind pooled over the rounds.
    let phases: Vec<Tally> = tallies.into_iter().map(merge).collect();
    let secs = measured.as_secs_f64();
    let mut per_round = Vec::new();
    for (round, pair) in phases.chunks(2).enumerate() {
        let (ping, pick) = (stats(&pair[0], secs), stats(&pair[1], secs));
        let conditions: Vec<Value> = machine[round * 2..round * 2 + 2].iter().map(conditions).collect();
        per_round.push(json!({
            "round": round + 1,
            "ping": ping, "pick": pick, "ratios": ratios(&pick, &ping),
            "machine": {"ping": conditions[0], "pick": conditions[1]},
        }));
    }
    let rounds_secs = secs * args.rounds as f64;
    let pooled = |kind: Kind| {
        let mut all = Tally::default();
        for (phase, t) in schedule.iter().zip(&phases) {
            if phase.kind == kind {
                absorb(&mut all, t);
            }
        }
        all
    };
    let (ping_all, pick_all) = (pooled(Kind::Ping), pooled(Kind::Pick));
    let (ping, pick) = (stats(&ping_all, rounds_secs), stats(&pick_all, rounds_secs));
    let answers = |t: &Tally, kind: &str| t.replies.get(kind).copied().unwrap_or(0);
    let unexpected: u64 =
        pick_all.replies.iter().filter(|(k, _)| !matches!(k.as_str(), "state" | "conflict" | "error")).map(|(_, n)| n).sum();
    let errors = answers(&pick_all, "error") + pick_all.transport_errors + ping_all.transport_errors + unexpected + pick_all.mismatched;
    let p99 = pick["p99_us"].as_u64().unwrap_or(u64::MAX);
    let out = json!({
        "url": url,
        "sessions": args.sessions,
        "warmup_secs": args.warmup_secs,
        "duration_secs": args.duration_secs,
        "rounds": args.rounds,
        "think_ms": args.think_ms,
        "models": models,
        "features": features,
        "ping": {
            "what": "WebSocket Ping until its Pong, same sockets, gateway and service",
            "transport_errors": ping_all.transport_errors,
            "errors": ping_all.transport_errors,
            "stats": ping,
        },
        "pick": {
            "what": "pick or unpick of a feature until the answer",
            "replies": pick_all.replies,
            "conflicts": answers(&pick_all, "conflict"),
            "error_replies": answers(&pick_all, "error"),
            "unexpected_replies": unexpected,
            "mismatched_states": pick_all.mismatched,
            "transport_errors": pick_all.transport_errors,
            "errors": errors - ping_all.transport_errors,
            "stats": pick,
        },
        "ratios": ratios(&pick, &ping),
        "errors": errors,
        "sessions_lost": lost,
        "target": {"pick_p99_us_under": TARGET_P99_US, "met": p99 < TARGET_P99_US},
        "per_round": per_round,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    let us = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0) as f64 / 1000.0;
    eprintln!(
        "{} sessions: pick p50 {:.2} / p99 {:.2} ms, {:.0} msg/s; ping p50 {:.2} / p99 {:.2} ms, {:.0} msg/s; \
         ratios p50 {:.2}, p99 {:.2}; errors {errors}, conflicts {}; target p99 < {} ms: {}",
        args.sessions,
        us(&pick, "p50_us"),
        us(&pick, "p99_us"),
        pick["per_sec"].as_f64().unwrap_or(0.0),
        us(&ping, "p50_us"),
        us(&ping, "p99_us"),
        ping["per_sec"].as_f64().unwrap_or(0.0),
        out["ratios"]["p50"].as_f64().unwrap_or(f64::NAN),
        out["ratios"]["p99"].as_f64().unwrap_or(f64::NAN),
        answers(&pick_all, "conflict"),
        TARGET_P99_US / 1000,
        if p99 < TARGET_P99_US { "met" } else { "MISSED" },
    );
    if errors > 0 || lost > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Connects session `index`, reads its first state, picks its model and keeps the features
/// the answer shows as available.
async fn open(url: &str, index: usize, limit: Duration) -> Result<Session, Error> {
    let (mut ws, _) = timeout(limit, tokio_tungstenite::connect_async_with_config(url, None, true)).await??;
    let first = next_text(&mut ws, limit).await?;
    if first["type"] != "state" {
        return Err(format!("first message is not a state: {first}").into());
    }
    let model = MODELS[index % MODELS.len()];
    ws.send(Message::text(json!({"type": "pick", "option": model}).to_string())).await?;
    let state = next_text(&mut ws, limit).await?;
    if state["type"] != "state" || !has_pick(&state, model) {
        return Err(format!("picking {model} gave {state}").into());
    }
    let available =
        |code: &str| state["options"].as_array().is_some_and(|all| all.iter().any(|o| o["option"] == code && o["state"] == "available"));
    let features: Vec<String> = FEATURES.iter().filter(|f| available(f)).map(|f| (*f).to_owned()).collect();
    if features.is_empty() {
        return Err(format!("none of {FEATURES:?} is available on {model}").into());
    }
    Ok(Session { ws, model, features, step: index, pings: 0, alive: true })
}

async fn next_text(ws: &mut Ws, limit: Duration) -> Result<Value, Error> {
    loop {
        match timeout(limit, ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(format!("unexpected frame {other:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the socket closed".into()),
        }
    }
}

fn has_pick(state: &Value, code: &str) -> bool {
    state["picks"].as_array().is_some_and(|p| p.iter().any(|c| c == code))
}

/// Runs one session through the whole schedule; its tally per phase, and whether it lasted.
async fn drive(mut s: Session, index: usize, schedule: &[Phase], think: Duration, limit: Duration) -> (Vec<Tally>, bool) {
    let mut out = Vec::with_capacity(schedule.len());
    for phase in schedule {
        let mut tally = Tally::default();
        // Spread the sessions' first sends over the first millisecond rather than all at once.
        sleep_until(phase.start + Duration::from_micros((index as u64 * 10) % 1_000)).await;
        while s.alive {
            let sent = Instant::now();
            if sent >= phase.end {
                break;
            }
            let answered = match phase.kind {
                Kind::Ping => ping(&mut s, limit).await,
                Kind::Pick => pick(&mut s, limit, &mut tally).await,
            };
            match answered {
                Ok((received, bytes)) => {
                    let took = received - sent;
                    if sent >= phase.measure_from {
                        tally.samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        tally.reply_bytes += bytes as u64;
                    }
                }
                Err(_) => {
                    tally.transport_errors += 1;
                    s.alive = false;
                }
            }
            if !think.is_zero() {
                sleep(think).await;
            }
        }
        out.push(tally);
    }
    let _ = s.ws.close(None).await;
    (out, s.alive)
}

/// One Ping until its Pong: when the Pong came and the size of its payload.
async fn ping(s: &mut Session, limit: Duration) -> Result<(Instant, usize), Error> {
    s.pings += 1;
    let payload = Bytes::copy_from_slice(&s.pings.to_be_bytes());
    s.ws.send(Message::Ping(payload.clone())).await?;
    loop {
        match timeout(limit, s.ws.next()).await? {
            Some(Ok(Message::Pong(p))) if p == payload => return Ok((Instant::now(), p.len())),
            Some(Ok(Message::Pong(_) | Message::Ping(_))) => continue,
            Some(Ok(other)) => return Err(format!("unexpected frame {other:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the socket closed".into()),
        }
    }
}

/// The session's next pick or unpick until its answer: when the answer came (read before it
/// is parsed and checked) and its size.
async fn pick(s: &mut Session, limit: Duration, tally: &mut Tally) -> Result<(Instant, usize), Error> {
    let option = &s.features[(s.step / 2) % s.features.len()];
    let picking = s.step.is_multiple_of(2);
    s.step += 1;
    let kind = if picking { "pick" } else { "unpick" };
    s.ws.send(Message::text(json!({"type": kind, "option": option}).to_string())).await?;
    let (received, text) = loop {
        match timeout(limit, s.ws.next()).await? {
            Some(Ok(Message::Text(t))) => break (Instant::now(), t),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(format!("unexpected frame {other:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the socket closed".into()),
        }
    };
    let answer: Value = serde_json::from_str(&text)?;
    let kind = answer["type"].as_str().unwrap_or("(none)").to_owned();
    if kind == "state" && has_pick(&answer, option) != picking {
        tally.mismatched += 1;
    }
    *tally.replies.entry(kind).or_default() += 1;
    Ok((received, text.len()))
}

fn absorb(into: &mut Tally, t: &Tally) {
    into.samples.extend_from_slice(&t.samples);
    into.reply_bytes += t.reply_bytes;
    for (k, n) in &t.replies {
        *into.replies.entry(k.clone()).or_default() += n;
    }
    into.mismatched += t.mismatched;
    into.transport_errors += t.transport_errors;
}

fn merge(per_session: Vec<Tally>) -> Tally {
    let mut all = Tally::default();
    for t in &per_session {
        absorb(&mut all, t);
    }
    all
}

/// Round trips per second and latency quantiles (nearest rank) in microseconds.
fn stats(t: &Tally, secs: f64) -> Value {
    let mut sorted = t.samples.clone();
    sorted.sort_unstable();
    let n = sorted.len();
    let q = |p: f64| if n == 0 { 0 } else { sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1] };
    let mean = if n == 0 { 0.0 } else { sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 };
    json!({
        "round_trips": n,
        "per_sec": (n as f64 / secs).round(),
        "p50_us": q(0.50), "p90_us": q(0.90), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": q(1.0),
        "mean_us": mean.round(),
        "reply_bytes_mean": if n == 0 { 0 } else { t.reply_bytes / n as u64 },
    })
}

/// Pick ÷ ping for every figure.
fn ratios(pick: &Value, ping: &Value) -> Value {
    let r = |k: &str| {
        let (a, b) = (pick[k].as_f64().unwrap_or(0.0), ping[k].as_f64().unwrap_or(0.0));
        if b > 0.0 { json!((a / b * 100.0).round() / 100.0) } else { Value::Null }
    };
    json!({
        "p50": r("p50_us"), "p90": r("p90_us"), "p99": r("p99_us"), "max": r("max_us"), "mean": r("mean_us"),
        "per_sec": r("per_sec"),
    })
}

fn conditions(m: &Option<Usage>) -> Value {
    match m {
        Some(u) => json!({
            "others_cpu_pct": u.others, "own_cpu_pct": ((u.client + u.servers) * 10.0).round() / 10.0,
            "client_cpu_pct": u.client, "servers_cpu_pct": u.servers, "rustc_processes": u.rustc,
        }),
        None => Value::Null,
    }
}

/// The machine's CPU ticks (all, and idle with iowait) from `/proc/stat`, and the ticks of this
/// process and of `own` (user and system, every thread).
struct CpuSample {
    total: u64,
    idle: u64,
    client: u64,
    servers: u64,
}

/// Shares of the machine's CPU over a measured window, in per cent of all its cores: others'
/// (neither idle nor ours), this process's, the servers'; and the most `rustc` processes seen.
struct Usage {
    others: f64,
    client: f64,
    servers: f64,
    rustc: usize,
}

fn cpu_sample(own: &[u32]) -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    if fields.len() < 8 {
        return None;
    }
    let ticks = |path: String| -> u64 {
        let Ok(text) = std::fs::read_to_string(path) else { return 0 };
        let Some((_, rest)) = text.rsplit_once(')') else { return 0 };
        // After the command: state is field 3, utime 14 and stime 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let client = ticks("/proc/self/stat".into());
    let servers = own.iter().map(|pid| ticks(format!("/proc/{pid}/stat"))).sum::<u64>();
    Some(CpuSample { total: fields.iter().sum(), idle: fields[3] + fields[4], client, servers })
}

fn usage(before: &CpuSample, after: &CpuSample) -> Usage {
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    let busy = (after.total - after.idle).saturating_sub(before.total - before.idle) as f64;
    let client = after.client.saturating_sub(before.client) as f64;
    let servers = after.servers.saturating_sub(before.servers) as f64;
    let pct = |v: f64| (v / total * 1000.0).round() / 10.0;
    Usage { others: pct((busy - client - servers).max(0.0)), client: pct(client), servers: pct(servers), rustc: 0 }
}

fn rustc_count() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rustc"))
        .count()
}
