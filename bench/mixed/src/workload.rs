//! The virtual users: each a registered customer with a funded wallet who, in a closed loop
//! until the end of the run, browses the catalog, configures a car over the configurator's
//! WebSocket, adds parts to the cart, checks out with an `Idempotency-Key` (sometimes sending
//! the key again, or twice at once), orders a car from a saved configuration (also with a
//! key, sometimes repeated) and now and then cancels one. Each user remembers what the
//! platform told it, for the oracle.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Answer, Api, minor};
use crate::stats::{Outcome, Stats};

/// Relative weights of the operations a user picks from.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub browse: u32,
    pub configure: u32,
    pub add: u32,
    pub checkout: u32,
    pub order: u32,
    pub cancel: u32,
}

impl Weights {
    /// `browse=30,configure=15,...`; kinds left out keep their default.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut w = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("weight {part:?} is not kind=number"))?;
            let v: u32 = v.trim().parse().map_err(|_| format!("weight {part:?}: not a number"))?;
            match k.trim() {
                "browse" => w.browse = v,
                "configure" => w.configure = v,
                "add" => w.add = v,
                "checkout" => w.checkout = v,
                "order" => w.order = v,
                "cancel" => w.cancel = v,
                other => return Err(format!("no operation {other:?} (browse, configure, add, checkout, order, cancel)")),
            }
        }
        if w.total() == 0 {
            return Err("every weight is 0".into());
        }
        Ok(w)
    }

    fn total(&self) -> u32 {
        self.browse + self.configure + self.add + self.checkout + self.order + self.cancel
    }

    fn pick(&self, rng: &mut StdRng) -> Op {
        let mut n = rng.random_range(0..self.total());
        for (w, op) in [
            (self.browse, Op::Browse),
            (self.configure, Op::Configure),
            (self.add, Op::Add),
            (self.checkout, Op::Checkout),
            (self.order, Op::Order),
            (self.cancel, Op::Cancel),
        ] {
            if n < w {
                return op;
            }
            n -= w;
        }
        Op::Browse
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self { browse: 30, configure: 15, add: 25, checkout: 15, order: 10, cancel: 3 }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "browse={},configure={},add={},checkout={},order={},cancel={}",
            self.browse, self.configure, self.add, self.checkout, self.order, self.cancel
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Browse,
    Configure,
    Add,
    Checkout,
    Order,
    Cancel,
}

/// How the users behave, beyond the weights.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub weights: Weights,
    /// Share of checkouts and car orders whose key is sent again after the answer.
    pub replay: f64,
    /// Share of checkouts sent twice at once with one key.
    pub concurrent_replay: f64,
    /// Share of adds that go to a scarce product.
    pub scarce: f64,
    /// Share of adds that ask a scarce product for more than it can have.
    pub greedy: f64,
    /// Car orders one user places at most (the factory lists 100 per user).
    pub max_car_orders: usize,
    /// Time limit of each WebSocket step.
    pub ws_timeout: Duration,
}

/// A product the run created, with its price.
#[derive(Debug, Clone)]
pub struct Product {
    pub code: String,
    pub scarce: bool,
}

/// What the platform told one user, for the oracle.
#[derive(Debug, Default)]
pub struct Seen {
    /// Checkouts answered 201: order id and total.
    pub checkouts: Vec<(String, i64)>,
    /// Car orders answered 201 or 202.
    pub car_orders: Vec<String>,
    /// Car orders refused with an order id (the deposit was refused): they must be failed.
    pub car_refused: Vec<(String, String)>,
    /// Car orders this user cancelled (answered 200).
    pub cancelled: Vec<String>,
    /// Car orders a cancellation found past cancelling (409 `invalid_state`).
    pub past_cancelling: Vec<String>,
    /// Keys sent again and answered as the first time.
    pub replays: u64,
    /// Replays answered with another order, status or without `idempotent-replayed`.
    pub replay_mismatches: Vec<String>,
    /// Checkouts and car orders whose answer never came or was a 5xx: they may or may not
    /// have happened, so the oracle accepts either (and says how many there were).
    pub unknown: u64,
}

pub struct User {
    pub idx: usize,
    pub email: String,
    pub token: String,
    pub user_id: String,
    pub api: Api,
    pub topped_up_minor: i64,
    pub configs: Vec<String>,
    pub seen: Seen,
    cart_nonempty: bool,
    run: String,
    seq: u64,
    rng: StdRng,
}

/// One finished operation: kind, latency, outcome.
type Rec = (&'static str, Duration, Outcome);

const WORDS: &[&str] = &["brake", "filter", "oil", "wiper", "pads", "golf", "mixed", "battery", "light", "tyre"];

impl User {
    pub fn new(idx: usize, email: String, token: String, user_id: String, api: Api, run: &str, seed: u64) -> Self {
        Self {
            idx,
            email,
            token,
            user_id,
            api,
            topped_up_minor: 0,
            configs: Vec::new(),
            seen: Seen::default(),
            cart_nonempty: false,
            run: run.to_owned(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn key(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("mix-{}-{}-{what}-{}", self.run, self.idx, self.seq)
    }

    /// Runs operations back to back until `end`; those that began at or after `start` are
    /// recorded.
    pub async fn run(mut self, products: Arc<Vec<Product>>, how: Arc<Behaviour>, start: Instant, end: Instant) -> (User, Stats) {
        let mut stats = Stats::default();
        while Instant::now() < end {
            let began = Instant::now();
            let op = how.weights.pick(&mut self.rng);
            for (kind, latency, outcome) in self.perform(op, &products, &how).await {
                if began >= start {
                    stats.record(kind, latency, &outcome);
                }
            }
        }
        (self, stats)
    }

    async fn perform(&mut self, op: Op, products: &[Product], how: &Behaviour) -> Vec<Rec> {
        // An operation that makes no sense yet becomes the one that leads to it.
        let op = match op {
            Op::Checkout if !self.cart_nonempty => Op::Add,
            Op::Order if self.configs.is_empty() => Op::Configure,
            Op::Order if self.seen.car_orders.len() + self.seen.car_refused.len() >= how.max_car_orders => Op::Browse,
            Op::Cancel if self.cancellable().is_none() => Op::Browse,
            other => other,
        };
        match op {
            Op::Browse => vec![self.browse(products).await],
            Op::Configure => vec![self.configure(how.ws_timeout).await],
            Op::Add => vec![self.add(products, how).await],
            Op::Checkout => self.checkout(how).await,
            Op::Order => self.order(how).await,
            Op::Cancel => vec![self.cancel().await],
        }
    }

    async fn browse(&mut self, products: &[Product]) -> Rec {
        let path = if self.rng.random_bool(0.5) {
            format!("/api/shop/products?q={}&limit=24", WORDS[self.rng.random_range(0..WORDS.len())])
        } else {
            format!("/api/shop/products/{}", products[self.rng.random_range(0..products.len())].code)
        };
        let t = Instant::now();
        let outcome = match self.api.get(&path, None).await {
            Ok(a) if a.status == 200 => Outcome::Done,
            Ok(a) => Outcome::Failed(a.describe()),
            Err(e) => Outcome::Failed(e),
        };
        ("browse", t.elapsed(), outcome)
    }

    /// Opens a live session, picks a model and a few options (a conflicting one now and then,
    /// taking the offered change), saves, closes.
    async fn configure(&mut self, limit: Duration) -> Rec {
        let t = Instant::now();
        let outcome = match self.live_session(limit).await {
            Ok(Some(config_id)) => {
                self.configs.push(config_id);
                Outcome::Done
            }
            Ok(None) => Outcome::Refused("save refused: invalid_configuration".into()),
            Err(e) => Outcome::Failed(e),
        };
        ("configure", t.elapsed(), outcome)
    }

    async fn live_session(&mut self, limit: Duration) -> Result<Option<String>, String> {
        let url = self.api.ws_url(&format!("/api/configure/ws?access_token={}", self.token));
        let (mut ws, _) = timeout(limit, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| "timeout: WebSocket handshake".to_owned())?
            .map_err(|e| format!("transport: WebSocket handshake: {e}"))?;
        let mut state = next_json(&mut ws, limit).await?;
        if state["type"] != "state" {
            return Err(format!("ws: first message is not a state: {state}"));
        }
        let models = options_where(&state, |group, _| group == "model");
        if models.is_empty() {
            return Err(format!("ws: no model in the state: {state}"));
        }
        let model = models[self.rng.random_range(0..models.len())].clone();
        state = say(&mut ws, json!({"type": "pick", "option": model}), limit).await?;
        if state["type"] != "state" {
            return Err(format!("ws: picking model {model}: {state}"));
        }
        for _ in 0..self.rng.random_range(1..=3) {
            // Mostly an option that fits; sometimes one that breaks a rule, taking the least
            // change the configurator offers (or not, leaving the state as it was).
            let conflicting = self.rng.random_bool(0.2);
            let wanted = if conflicting { "unavailable" } else { "available" };
            let candidates = options_where(&state, |group, st| group != "model" && st == wanted);
            if candidates.is_empty() {
                continue;
            }
            let option = candidates[self.rng.random_range(0..candidates.len())].clone();
            let resolve = conflicting && self.rng.random_bool(0.7);
            let reply = say(&mut ws, json!({"type": "pick", "option": option, "resolve": resolve}), limit).await?;
            match reply["type"].as_str() {
                Some("state") => state = reply,
                Some("conflict") => {}
                _ => return Err(format!("ws: picking {option}: {reply}")),
            }
        }
        let saved = say(&mut ws, json!({"type": "save"}), limit).await?;
        let _ = ws.close(None).await;
        match saved["type"].as_str() {
            Some("saved") => Ok(Some(saved["configId"].as_str().ok_or_else(|| format!("ws: saved without an id: {saved}"))?.to_owned())),
            Some("error") if saved.get("because").is_some() => Ok(None),
            _ => Err(format!("ws: save: {saved}")),
        }
    }

    async fn add(&mut self, products: &[Product], how: &Behaviour) -> Rec {
        let scarce: Vec<&Product> = products.iter().filter(|p| p.scarce).collect();
        let plenty: Vec<&Product> = products.iter().filter(|p| !p.scarce).collect();
        let roll: f64 = self.rng.random();
        let (product, quantity) = if !scarce.is_empty() && roll < how.greedy {
            (scarce[self.rng.random_range(0..scarce.len())], 60)
        } else if !scarce.is_empty() && (roll < how.greedy + how.scarce || plenty.is_empty()) {
            (scarce[self.rng.random_range(0..scarce.len())], self.rng.random_range(1..=3))
        } else {
            (plenty[self.rng.random_range(0..plenty.len())], self.rng.random_range(1..=3))
        };
        let t = Instant::now();
        let r =
            self.api.post("/api/cart/items", Some(&self.token), None, &json!({"productCode": product.code, "quantity": quantity})).await;
        let outcome = match r {
            Ok(a) if a.status == 201 => {
                self.cart_nonempty = true;
                Outcome::Done
            }
            Ok(a) if a.status == 409 && matches!(a.code(), "out_of_stock" | "hold_limit_exceeded") => Outcome::Refused(a.label()),
            Ok(a) => Outcome::Failed(a.describe()),
            Err(e) => Outcome::Failed(e),
        };
        ("add", t.elapsed(), outcome)
    }

    /// The documented refusals of a checkout.
    fn checkout_refusal(a: &Answer) -> bool {
        (a.status == 409
            && matches!(
                a.code(),
                "cart_empty"
                    | "insufficient_funds"
                    | "out_of_stock"
                    | "checkout_failed"
                    | "idempotency_in_progress"
                    | "hold_limit_exceeded"
            ))
            || (a.status == 402 && a.code() == "payment_declined")
    }

    async fn checkout(&mut self, how: &Behaviour) -> Vec<Rec> {
        let key = self.key("checkout");
        let concurrent = self.rng.random_bool(how.concurrent_replay);
        let mut recs = Vec::new();
        let first = if concurrent {
            let t = Instant::now();
            let (a, b) = tokio::join!(self.checkout_once(&key), self.checkout_once(&key));
            let latency = t.elapsed();
            // Whichever finished with an order is "the" answer; the other must agree with it.
            let (first, second) = match (&a, &b) {
                (Ok(x), _) if x.status == 201 => (a, b),
                _ => (b, a),
            };
            let mut first = first;
            // Both may still be in progress: ask again until one has the stored answer.
            for _ in 0..50 {
                match &first {
                    Ok(x) if x.status == 409 && x.code() == "idempotency_in_progress" => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        first = self.checkout_once(&key).await;
                    }
                    _ => break,
                }
            }
            recs.push(("checkout", latency, self.checkout_outcome(&first)));
            if let (Ok(f), Ok(s)) = (&first, &second)
                && f.status == 201
            {
                let outcome = match s.status {
                    201 if s.body["id"] == f.body["id"] => {
                        self.seen.replays += 1;
                        Outcome::Done
                    }
                    409 if s.code() == "idempotency_in_progress" => Outcome::Refused(s.label()),
                    _ => {
                        self.seen.replay_mismatches.push(format!(
                            "checkout key {key} sent twice at once: {} then {}",
                            f.describe(),
                            s.describe()
                        ));
                        Outcome::Failed(format!("replay mismatch: {}", s.describe()))
                    }
                };
                recs.push(("checkout_replay", latency, outcome));
            }
            first
        } else {
            let t = Instant::now();
            let first = self.checkout_once(&key).await;
            recs.push(("checkout", t.elapsed(), self.checkout_outcome(&first)));
            first
        };
        if let Ok(f) = &first
            && f.status == 201
            && !concurrent
            && self.rng.random_bool(how.replay)
        {
            let t = Instant::now();
            let again = self.checkout_once(&key).await;
            let outcome = self.judge_replay("checkout", &key, f, &again, |s| s.status == 201 && s.body["id"] == f.body["id"]);
            recs.push(("checkout_replay", t.elapsed(), outcome));
        }
        recs
    }

    /// A key sent again after its first answer `first`: done when the answer is `same` and
    /// marked replayed, else the mismatch is recorded for the oracle.
    fn judge_replay(
        &mut self,
        what: &str,
        key: &str,
        first: &Answer,
        again: &Result<Answer, String>,
        same: impl Fn(&Answer) -> bool,
    ) -> Outcome {
        match again {
            Ok(s) if same(s) && s.replayed => {
                self.seen.replays += 1;
                Outcome::Done
            }
            Ok(s) => {
                self.seen.replay_mismatches.push(format!(
                    "{what} key {key} sent again: {} then {} (replayed: {})",
                    first.describe(),
                    s.describe(),
                    s.replayed
                ));
                Outcome::Failed(format!("replay mismatch: {}", s.describe()))
            }
            Err(e) => Outcome::Failed(e.clone()),
        }
    }

    async fn checkout_once(&self, key: &str) -> Result<Answer, String> {
        self.api.post("/api/cart/checkout", Some(&self.token), Some(key), &json!({})).await
    }

    fn checkout_outcome(&mut self, r: &Result<Answer, String>) -> Outcome {
        match r {
            Ok(a) if a.status == 201 => {
                let id = a.body["id"].as_str().unwrap_or("").to_owned();
                let total = minor(&a.body["total"]).unwrap_or(-1);
                if a.body["status"] != "placed" || id.is_empty() || total < 0 {
                    return Outcome::Failed(format!("checkout 201 without a placed order: {}", a.describe()));
                }
                self.seen.checkouts.push((id, total));
                self.cart_nonempty = false;
                Outcome::Done
            }
            Ok(a) if Self::checkout_refusal(a) => {
                if a.code() == "cart_empty" {
                    self.cart_nonempty = false;
                }
                Outcome::Refused(a.label())
            }
            Ok(a) => {
                self.seen.unknown += 1;
                Outcome::Failed(a.describe())
            }
            Err(e) => {
                self.seen.unknown += 1;
                Outcome::Failed(e.clone())
            }
        }
    }

    async fn order(&mut self, how: &Behaviour) -> Vec<Rec> {
        let config_id = self.configs[self.rng.random_range(0..self.configs.len())].clone();
        let key = self.key("car");
        let body = json!({"configId": config_id, "userId": self.user_id});
        let t = Instant::now();
        let first = self.api.post("/api/factory/order", Some(&self.token), Some(&key), &body).await;
        let mut recs = Vec::new();
        let outcome = match &first {
            Ok(a) if matches!(a.status, 201 | 202) => match a.body["orderId"].as_str() {
                Some(id) => {
                    self.seen.car_orders.push(id.to_owned());
                    Outcome::Done
                }
                None => Outcome::Failed(format!("order accepted without an id: {}", a.describe())),
            },
            Ok(a) if (a.status == 409 && a.code() == "insufficient_funds") || (a.status == 402 && a.code() == "payment_declined") => {
                if let Some(id) = a.body["orderId"].as_str() {
                    self.seen.car_refused.push((id.to_owned(), a.code().to_owned()));
                }
                Outcome::Refused(a.label())
            }
            Ok(a) => {
                self.seen.unknown += 1;
                Outcome::Failed(a.describe())
            }
            Err(e) => {
                self.seen.unknown += 1;
                Outcome::Failed(e.clone())
            }
        };
        recs.push(("order", t.elapsed(), outcome));
        if let Ok(f) = &first
            && f.status < 500
            && f.body["orderId"].is_string()
            && self.rng.random_bool(how.replay)
        {
            let t = Instant::now();
            let again = self.api.post("/api/factory/order", Some(&self.token), Some(&key), &body).await;
            let outcome =
                self.judge_replay("car order", &key, f, &again, |s| s.status == f.status && s.body["orderId"] == f.body["orderId"]);
            recs.push(("order_replay", t.elapsed(), outcome));
        }
        recs
    }

    /// A car order this user placed and has not cancelled yet (its status may have moved on).
    fn cancellable(&self) -> Option<usize> {
        let id = |i: &usize| &self.seen.car_orders[*i];
        (0..self.seen.car_orders.len()).rev().find(|i| !self.seen.cancelled.contains(id(i)) && !self.seen.past_cancelling.contains(id(i)))
    }

    async fn cancel(&mut self) -> Rec {
        let Some(i) = self.cancellable() else { return ("cancel", Duration::ZERO, Outcome::Refused("nothing to cancel".into())) };
        let id = self.seen.car_orders[i].clone();
        let t = Instant::now();
        let r = self.api.post(&format!("/api/factory/order/{id}/cancel"), Some(&self.token), None, &json!({})).await;
        let outcome = match r {
            Ok(a) if a.status == 200 => {
                self.seen.cancelled.push(id);
                Outcome::Done
            }
            Ok(a) if a.status == 409 && a.code() == "invalid_state" => {
                // Production started: it can no longer be cancelled; do not try it again.
                self.seen.past_cancelling.push(id);
                Outcome::Refused(a.label())
            }
            Ok(a) => Outcome::Failed(a.describe()),
            Err(e) => Outcome::Failed(e),
        };
        ("cancel", t.elapsed(), outcome)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message as JSON (pings skipped), within `limit`.
async fn next_json(ws: &mut Ws, limit: Duration) -> Result<Value, String> {
    loop {
        let m = timeout(limit, ws.next()).await.map_err(|_| "timeout: WebSocket reply".to_owned())?;
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).map_err(|e| format!("ws: not JSON: {e}: {t}")),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(other)) => return Err(format!("ws: unexpected message {other:?}")),
            Some(Err(e)) => return Err(format!("transport: WebSocket: {e}")),
            None => return Err("transport: WebSocket closed".into()),
        }
    }
}

async fn say(ws: &mut Ws, msg: Value, limit: Duration) -> Result<Value, String> {
    timeout(limit, ws.send(Message::Text(msg.to_string().into())))
        .await
        .map_err(|_| "timeout: WebSocket send".to_owned())?
        .map_err(|e| format!("transport: WebSocket send: {e}"))?;
    next_json(ws, limit).await
}

/// The codes of the evaluation's options whose group and state pass `keep`.
fn options_where(state: &Value, keep: impl Fn(&str, &str) -> bool) -> Vec<String> {
    state["options"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|o| keep(o["group"].as_str().unwrap_or(""), o["state"].as_str().unwrap_or("")))
                .filter_map(|o| o["option"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_pick_only_weighted_kinds() {
        let w = Weights::parse("browse=0,configure=0,add=1,checkout=0,order=0,cancel=0").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| w.pick(&mut rng) == Op::Add));
        assert!(Weights::parse("fly=1").is_err());
        assert!(Weights::parse("browse=0,configure=0,add=0,checkout=0,order=0,cancel=0").is_err());
        assert_eq!(Weights::parse("").unwrap().to_string(), Weights::default().to_string());
    }

    #[test]
    fn options_are_filtered_by_group_and_state() {
        let s = json!({"options": [
            {"option": "tundra", "group": "model", "state": "available"},
            {"option": "v6-3.0", "group": "engine", "state": "unavailable"},
            {"option": "red", "group": "color", "state": "available"},
        ]});
        assert_eq!(options_where(&s, |g, _| g == "model"), vec!["tundra"]);
        assert_eq!(options_where(&s, |g, st| g != "model" && st == "available"), vec!["red"]);
    }
}
