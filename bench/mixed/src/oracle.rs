//! The oracle: once the load has stopped and the background work has settled, what the
//! platform holds must add up — stock conserved per SKU, the ledger balanced and every
//! wallet explained by its user's top-ups, orders and refunds, every order in a final,
//! consistent state, and no key that charged twice.
//!
//! Everything is read through the public API (each user's own token, the admin's for stock
//! and the reconciliations), so the oracle checks what a client can see.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::api::{Api, car_sku, minor, today_utc};
use crate::workload::{Product, User};

/// A SKU's level when the run began, as the set-up's `PUT` answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub quantity: i64,
    pub held: i64,
}

/// Everything one user's token shows.
#[derive(Debug, Clone, Default)]
struct UserView {
    shop_orders: Vec<Value>,
    cart: Value,
    car_orders: Vec<Value>,
    transactions: Vec<Value>,
    wallet: Value,
}

/// One invariant's verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was compared, and every violation (the first 20).
    pub detail: String,
}

/// A car order's timeline: `placed at … → scheduled at … → cancelled at …`.
fn timeline_of(o: &Value) -> String {
    let steps: Vec<String> = o["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{} at {}", t["statusCode"].as_str().unwrap_or("?"), t["at"].as_str().unwrap_or("?")))
        .collect();
    steps.join(" → ")
}

fn check(name: &'static str, problems: Vec<String>, ok_detail: String) -> Check {
    if problems.is_empty() {
        Check { name, ok: true, detail: ok_detail }
    } else {
        let n = problems.len();
        let mut detail: Vec<String> = problems.into_iter().take(20).collect();
        if n > 20 {
            detail.push(format!("... and {} more", n - 20));
        }
        Check { name, ok: false, detail: format!("{n} violation(s): {}", detail.join("; ")) }
    }
}

pub struct Oracle<'a> {
    pub admin: &'a Api,
    pub admin_token: &'a str,
    pub users: &'a [User],
    pub products: &'a [Product],
    pub initial: &'a BTreeMap<String, Level>,
    /// Model and options of each saved configuration, fetched once.
    configs: HashMap<String, BTreeSet<String>>,
}

/// Statuses in which a car order's parts have been used (committed at production start).
const CONSUMED: &[&str] = &["in_production", "quality_check", "shipped", "delivered"];
const CAR_STATUSES: &[&str] =
    &["placed", "awaiting_parts", "scheduled", "in_production", "quality_check", "shipped", "delivered", "cancelled", "failed"];

impl<'a> Oracle<'a> {
    pub fn new(
        admin: &'a Api,
        admin_token: &'a str,
        users: &'a [User],
        products: &'a [Product],
        initial: &'a BTreeMap<String, Level>,
    ) -> Self {
        Self { admin, admin_token, users, products, initial, configs: HashMap::new() }
    }

    /// Evaluates until every invariant holds or `settle` has passed (background work such as
    /// queued hold releases and the factory's scheduler may still be moving things); the last
    /// verdicts, the time it took and how many rounds.
    pub async fn settle_and_check(&mut self, settle: Duration) -> (Vec<Check>, Value, f64, u32) {
        let began = Instant::now();
        let deadline = began + settle;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let (mut checks, counts) = match self.evaluate().await {
                Ok(r) => r,
                Err(e) => (vec![Check { name: "oracle_reads", ok: false, detail: e }], Value::Null),
            };
            let mut all_ok = checks.iter().all(|c| c.ok);
            // Once the totals add up (or time is up), every owner's holds one by one.
            if all_ok || Instant::now() >= deadline {
                let holds = match self.holds_by_owner().await {
                    Ok(c) => c,
                    Err(e) => Check { name: "holds_by_owner", ok: false, detail: e },
                };
                all_ok &= holds.ok;
                checks.push(holds);
            }
            if all_ok || Instant::now() >= deadline {
                return (checks, counts, began.elapsed().as_secs_f64(), rounds);
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }

    /// Every owner the run made, one by one: each cart holds exactly its lines, each
    /// scheduled car order exactly its bill of materials, every other car order nothing. A
    /// violation names the order, its timeline and when its holds were made.
    async fn holds_by_owner(&mut self) -> Result<Check, String> {
        let views = self.gather().await?;
        let mut problems = Vec::new();
        let mut owners = 0;
        for (u, v) in self.users.iter().zip(&views) {
            let cart_id = v.cart["id"].as_str().unwrap_or("");
            let expected: i64 = v.cart["lines"].as_array().into_iter().flatten().map(|l| l["quantity"].as_i64().unwrap_or(0)).sum();
            let (n, units, _) = self.holds_of(&format!("cart:{cart_id}")).await?;
            owners += 1;
            if units != expected {
                problems.push(format!("user {}: cart {cart_id} has {expected} units in lines, {units} units in {n} holds", u.idx));
            }
        }
        for (i, v) in views.iter().enumerate() {
            for o in &v.car_orders {
                let id = o["orderId"].as_str().unwrap_or("");
                let st = o["statusCode"].as_str().unwrap_or("");
                let expected = if st == "scheduled" { self.bom(i, o["configId"].as_str().unwrap_or("")).await?.len() } else { 0 };
                let (n, units, made) = self.holds_of(&format!("order:{id}")).await?;
                owners += 1;
                if n != expected || units != expected as i64 {
                    problems.push(format!(
                        "user {i}: {st} car order {id} holds {units} units in {n} holds (expected {expected}); holds made at {}; timeline: {}",
                        made.join(", "),
                        timeline_of(o)
                    ));
                }
            }
        }
        Ok(check(
            "holds_by_owner",
            problems,
            format!(
                "{owners} owners' holds read: every cart holds its lines, every scheduled car order its parts, every other car order none"
            ),
        ))
    }

    async fn gather(&self) -> Result<Vec<UserView>, String> {
        let views: Vec<Result<UserView, String>> =
            futures::stream::iter(self.users.iter().map(|u| self.gather_user(u))).buffered(8).collect().await;
        views.into_iter().collect()
    }

    async fn gather_user(&self, u: &User) -> Result<UserView, String> {
        let t = Some(u.token.as_str());
        let mut v = UserView::default();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/shop/orders?limit=100&cursor={c}"),
                None => "/api/shop/orders?limit=100".to_owned(),
            };
            let page = u.api.get_ok(&path, t).await?;
            v.shop_orders.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        v.cart = u.api.get_ok("/api/cart", t).await?;
        v.car_orders = u.api.get_ok("/api/factory/orders", t).await?.as_array().cloned().unwrap_or_default();
        // The list shows 100 orders at most: read the others the user knows of one by one.
        let listed: BTreeSet<String> = v.car_orders.iter().filter_map(|o| o["orderId"].as_str().map(str::to_owned)).collect();
        let known = u.seen.car_orders.iter().chain(u.seen.car_refused.iter().map(|(id, _)| id));
        for id in known.filter(|id| !listed.contains(*id)).collect::<BTreeSet<_>>() {
            v.car_orders.push(u.api.get_ok(&format!("/api/factory/order/{id}"), t).await?);
        }
        cursor = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/payments/transactions?limit=200&cursor={c}"),
                None => "/api/payments/transactions?limit=200".to_owned(),
            };
            let page = u.api.get_ok(&path, t).await?;
            v.transactions.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        v.wallet = u.api.get_ok("/api/payments/wallet", t).await?;
        Ok(v)
    }

    /// Every SKU's `(quantity, held, available)`, from the admin's stock list.
    async fn stock(&self) -> Result<BTreeMap<String, (i64, i64, i64)>, String> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/inventory/stock?limit=500&cursor={c}"),
                None => "/api/inventory/stock?limit=500".to_owned(),
            };
            let page = self.admin.get_ok(&path, Some(self.admin_token)).await?;
            for s in page["items"].as_array().cloned().unwrap_or_default() {
                let n = |k: &str| s[k].as_i64().unwrap_or(i64::MIN);
                out.insert(s["sku"].as_str().unwrap_or("").to_owned(), (n("quantity"), n("held"), n("available")));
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Ok(out)
    }

    /// The parts a configuration is built from, as the factory's bill of materials names them:
    /// one for the model and one per option.
    async fn bom(&mut self, user: usize, config_id: &str) -> Result<BTreeSet<String>, String> {
        if let Some(b) = self.configs.get(config_id) {
            return Ok(b.clone());
        }
        let users = self.users;
        let user = &users[user];
        let c = user.api.get_ok(&format!("/api/configure/{config_id}"), Some(&user.token)).await?;
        let mut skus: BTreeSet<String> = c["options"].as_array().into_iter().flatten().filter_map(|o| o.as_str()).map(car_sku).collect();
        skus.insert(car_sku(c["model"].as_str().unwrap_or("")));
        self.configs.insert(config_id.to_owned(), skus.clone());
        Ok(skus)
    }

    async fn evaluate(&mut self) -> Result<(Vec<Check>, Value), String> {
        let views = self.gather().await?;
        let stock = self.stock().await?;
        let inventory = self.admin.get_ok("/api/inventory/check", Some(self.admin_token)).await?;
        let ledger = self.admin.get_ok("/api/admin/payments/ledger", Some(self.admin_token)).await?;
        // Read the car orders again: if any moved while the stock was read, the two do not
        // describe one moment and this round cannot judge them.
        let again: Vec<Result<Value, String>> =
            futures::stream::iter(self.users.iter().map(|u| async move { u.api.get_ok("/api/factory/orders", Some(&u.token)).await }))
                .buffered(8)
                .collect()
                .await;
        let mut moved = Vec::new();
        for (u, (v, a)) in self.users.iter().zip(views.iter().zip(again)) {
            let a = a?;
            let before: BTreeMap<&str, &str> =
                v.car_orders.iter().map(|o| (o["orderId"].as_str().unwrap_or(""), o["statusCode"].as_str().unwrap_or(""))).collect();
            for o in a.as_array().into_iter().flatten() {
                let (id, st) = (o["orderId"].as_str().unwrap_or(""), o["statusCode"].as_str().unwrap_or(""));
                if before.get(id).is_some_and(|b| *b != st) {
                    moved.push(format!("user {} order {id}: {} -> {st}", u.idx, before[id]));
                }
            }
        }

        let mut checks = Vec::new();
        checks.push(check("snapshot_stable", moved, "no car order changed status while stock was read".into()));

        // 1. Inventory's own reconciliation and the bounds of every level the run touched.
        let consistent = inventory["consistent"] == true;
        checks.push(check(
            "inventory_check",
            if consistent { vec![] } else { vec![format!("GET /api/inventory/check: {inventory}")] },
            inventory.to_string(),
        ));
        let mut bounds = Vec::new();
        for sku in self.initial.keys() {
            match stock.get(sku) {
                None => bounds.push(format!("{sku}: missing from the stock list")),
                Some(&(q, h, a)) => {
                    if q < 0 || h < 0 || a < 0 || h > q || a != q - h {
                        bounds.push(format!("{sku}: quantity {q}, held {h}, available {a}"));
                    }
                }
            }
        }
        checks.push(check(
            "stock_bounds",
            bounds,
            format!("{} SKUs: quantity ≥ held ≥ 0, available = quantity − held ≥ 0", self.initial.len()),
        ));

        // 2. Shop parts: what was sold left the shelf once; what carts hold is held.
        let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
        let mut in_carts: BTreeMap<&str, i64> = BTreeMap::new();
        for v in &views {
            for o in v.shop_orders.iter().filter(|o| o["status"] == "placed") {
                for l in o["lines"].as_array().into_iter().flatten() {
                    *sold.entry(l["productCode"].as_str().unwrap_or("")).or_default() += l["quantity"].as_i64().unwrap_or(0);
                }
            }
            for l in v.cart["lines"].as_array().into_iter().flatten() {
                if l["held"] == true {
                    *in_carts.entry(l["productCode"].as_str().unwrap_or("")).or_default() += l["quantity"].as_i64().unwrap_or(0);
                }
            }
        }
        let mut shop_problems = Vec::new();
        let (mut units_sold, mut units_in_carts) = (0, 0);
        for p in self.products {
            let code = p.code.as_str();
            let init = self.initial[code];
            let (s, c) = (sold.get(code).copied().unwrap_or(0), in_carts.get(code).copied().unwrap_or(0));
            units_sold += s;
            units_in_carts += c;
            let Some(&(q, h, _)) = stock.get(code) else { continue };
            if q != init.quantity - s || h != init.held + c {
                shop_problems.push(format!(
                    "{code}: quantity {q} (expected {} − {s} sold = {}), held {h} (expected {} in carts + {} before)",
                    init.quantity,
                    init.quantity - s,
                    c,
                    init.held
                ));
            }
        }
        checks.push(check(
            "shop_stock_conservation",
            shop_problems,
            format!(
                "{} products: quantity = initial − units in placed orders ({units_sold}); held = units in carts ({units_in_carts})",
                self.products.len()
            ),
        ));

        // 3. Car parts: used once by each order that reached production, held by each
        //    scheduled one.
        let mut consumed: BTreeMap<String, i64> = BTreeMap::new();
        let mut held_by_orders: BTreeMap<String, i64> = BTreeMap::new();
        let mut car_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut owners: Vec<(usize, Value)> = Vec::new();
        for (i, v) in views.iter().enumerate() {
            for o in &v.car_orders {
                owners.push((i, o.clone()));
            }
        }
        for (i, o) in &owners {
            let status = o["statusCode"].as_str().unwrap_or("?").to_owned();
            *car_status.entry(status.clone()).or_default() += 1;
            let holding = status == "scheduled";
            let used = CONSUMED.contains(&status.as_str());
            if !(holding || used) {
                continue;
            }
            let bom = self.bom(*i, o["configId"].as_str().unwrap_or("")).await?;
            for sku in bom {
                *(if used { consumed.entry(sku) } else { held_by_orders.entry(sku) }).or_default() += 1;
            }
        }
        let mut car_problems = Vec::new();
        for (sku, init) in self.initial.iter().filter(|(s, _)| s.starts_with("CAR-")) {
            let (u, h) = (consumed.get(sku).copied().unwrap_or(0), held_by_orders.get(sku).copied().unwrap_or(0));
            let Some(&(q, held, _)) = stock.get(sku) else { continue };
            if q != init.quantity - u || held != init.held + h {
                car_problems.push(format!(
                    "{sku}: quantity {q} (expected {} − {u} used = {}), held {held} (expected {h} by scheduled orders + {} before)",
                    init.quantity,
                    init.quantity - u,
                    init.held
                ));
            }
        }
        for sku in consumed.keys().chain(held_by_orders.keys()) {
            if !self.initial.contains_key(sku) {
                car_problems.push(format!("{sku}: used or held by an order but not stocked by the set-up"));
            }
        }
        // Units used beyond what orders in production account for: name the orders that were
        // due to start production but ended cancelled or failed and whose parts are all among
        // the missing ones (the admin API shows no sales, so this is a match, not a proof).
        let today = today_utc();
        let missing: BTreeMap<String, i64> = self
            .initial
            .iter()
            .filter_map(|(sku, init)| {
                let &(q, _, _) = stock.get(sku)?;
                let gap = init.quantity - consumed.get(sku).copied().unwrap_or(0) - q;
                (sku.starts_with("CAR-") && gap > 0).then(|| (sku.clone(), gap))
            })
            .collect();
        if !missing.is_empty() {
            let mut suspects = Vec::new();
            for (i, o) in &owners {
                let st = o["statusCode"].as_str().unwrap_or("");
                let due = o["productionDate"].as_str().is_some_and(|d| d <= today.as_str());
                if !matches!(st, "cancelled" | "failed") || !due {
                    continue;
                }
                let bom = self.bom(*i, o["configId"].as_str().unwrap_or("")).await?;
                if bom.iter().all(|sku| missing.contains_key(sku)) {
                    suspects.push(format!("{st} order {} of user {i} ({})", o["orderId"].as_str().unwrap_or("?"), timeline_of(o)));
                }
            }
            car_problems.insert(
                0,
                format!(
                    "{} unit(s) used that no order in production accounts for ({missing:?}); orders due to start production by today that ended cancelled or failed, all of whose parts are among those: {}",
                    missing.values().sum::<i64>(),
                    if suspects.is_empty() { "none".to_owned() } else { suspects.join("; ") }
                ),
            );
        }
        checks.push(check(
            "car_stock_conservation",
            car_problems,
            format!(
                "{} car SKUs: quantity = initial − parts of orders in production or later ({} parts); held = parts of scheduled orders ({} parts)",
                self.initial.keys().filter(|s| s.starts_with("CAR-")).count(),
                consumed.values().sum::<i64>(),
                held_by_orders.values().sum::<i64>()
            ),
        ));

        // 4. Every order in a final, consistent state.
        let mut state_problems = Vec::new();
        let mut shop_status: BTreeMap<String, u64> = BTreeMap::new();
        for (u, v) in self.users.iter().zip(&views) {
            for o in &v.shop_orders {
                let st = o["status"].as_str().unwrap_or("?");
                *shop_status.entry(st.to_owned()).or_default() += 1;
                match st {
                    "placed" if o["chargeId"].is_string() => {}
                    "placed" => state_problems.push(format!("user {} shop order {}: placed without a charge", u.idx, o["id"])),
                    "failed" => {}
                    other => state_problems.push(format!("user {} shop order {}: {other} after settling", u.idx, o["id"])),
                }
            }
            if v.cart["checkoutInProgress"] == true {
                state_problems.push(format!("user {}: cart {} still has a checkout in progress", u.idx, v.cart["id"]));
            }
            for o in &v.car_orders {
                let st = o["statusCode"].as_str().unwrap_or("?");
                let id = o["orderId"].as_str().unwrap_or("?");
                if !CAR_STATUSES.contains(&st) {
                    state_problems.push(format!("user {} car order {id}: unknown status {st}", u.idx));
                }
                if o["inProgress"] == true || st == "placed" {
                    state_problems.push(format!("user {} car order {id}: {st}, saga still in progress after settling", u.idx));
                }
                if st == "scheduled" && o["productionDate"].as_str().is_some_and(|d| d <= today.as_str()) {
                    state_problems.push(format!(
                        "user {} car order {id}: scheduled for {} but production has not started",
                        u.idx, o["productionDate"]
                    ));
                }
                if st == "scheduled" && o["productionDate"].is_null() {
                    state_problems.push(format!("user {} car order {id}: scheduled without a production date", u.idx));
                }
            }
        }
        checks.push(check(
            "orders_final",
            state_problems,
            format!("shop orders {shop_status:?}; car orders {car_status:?}; none pending or mid-saga"),
        ));

        // 5. What each user was told is what the platform keeps.
        let mut told = Vec::new();
        for (u, v) in self.users.iter().zip(&views) {
            let shop: HashMap<&str, &Value> = v.shop_orders.iter().map(|o| (o["id"].as_str().unwrap_or(""), o)).collect();
            for (id, total) in &u.seen.checkouts {
                match shop.get(id.as_str()) {
                    None => told.push(format!("user {}: checkout answered 201 order {id}, which the order list lacks", u.idx)),
                    Some(o) if o["status"] != "placed" || minor(&o["total"]) != Some(*total) => {
                        told.push(format!("user {}: order {id} answered placed for {total}, now {} {}", u.idx, o["status"], o["total"]))
                    }
                    Some(_) => {}
                }
            }
            let car: HashMap<&str, &str> =
                v.car_orders.iter().map(|o| (o["orderId"].as_str().unwrap_or(""), o["statusCode"].as_str().unwrap_or(""))).collect();
            for id in &u.seen.car_orders {
                match car.get(id.as_str()) {
                    None => told.push(format!("user {}: car order {id} was accepted but is not found", u.idx)),
                    Some(&"failed") => told.push(format!("user {}: car order {id} was accepted, now failed", u.idx)),
                    Some(&"cancelled") if !u.seen.cancelled.contains(id) => {
                        told.push(format!("user {}: car order {id} is cancelled but the user never cancelled it", u.idx))
                    }
                    Some(st) if u.seen.cancelled.contains(id) && *st != "cancelled" => {
                        told.push(format!("user {}: car order {id} was cancelled (200), now {st}", u.idx))
                    }
                    Some(_) => {}
                }
            }
            for (id, code) in &u.seen.car_refused {
                if car.get(id.as_str()) != Some(&"failed") {
                    told.push(format!("user {}: car order {id} was refused ({code}) but is {:?}", u.idx, car.get(id.as_str())));
                }
            }
            told.extend(u.seen.replay_mismatches.iter().map(|m| format!("user {}: {m}", u.idx)));
        }
        let replays: u64 = self.users.iter().map(|u| u.seen.replays).sum();
        let unknown: u64 = self.users.iter().map(|u| u.seen.unknown).sum();
        checks.push(check(
            "client_view_kept",
            told,
            format!(
                "every 201 checkout placed with its total, every accepted car order live or cancelled by its user, every refused one failed; {replays} repeated keys answered with the first answer; {unknown} answers never came (either outcome accepted)"
            ),
        ));

        // 6. Money: the ledger balances; every wallet equals its history and its history is
        //    exactly the user's top-ups and one charge per order (refunded when the order failed
        //    or was cancelled), never two for one order.
        let balanced = ledger["balanced"] == true;
        checks.push(check(
            "ledger_balanced",
            if balanced { vec![] } else { vec![format!("GET /api/admin/payments/ledger: {ledger}")] },
            ledger.to_string(),
        ));
        let mut money = Vec::new();
        let (mut charges_total, mut refunds_total, mut top_ups_total) = (0i64, 0i64, 0i64);
        for (u, v) in self.users.iter().zip(&views) {
            let who = format!("user {}", u.idx);
            let (mut sum_wallet, mut sum_held, mut top_ups) = (0i64, 0i64, 0i64);
            // charge id -> reference; reference -> [(charge id, amount)]; charge id -> refunded
            let mut charges: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
            let mut refunds: HashMap<String, i64> = HashMap::new();
            for t in &v.transactions {
                let w = minor(&t["walletChange"]).unwrap_or(0);
                sum_wallet += w;
                sum_held += minor(&t["heldChange"]).unwrap_or(0);
                let charge_id = t["chargeId"].as_str().unwrap_or("").to_owned();
                match t["kind"].as_str().unwrap_or("") {
                    "top_up" => top_ups += w,
                    "charge" => charges.entry(t["reference"].as_str().unwrap_or("").to_owned()).or_default().push((charge_id, w)),
                    "refund" => *refunds.entry(charge_id).or_default() += w,
                    other => money.push(format!("{who}: a {other} transaction {} the workload never makes", t["id"])),
                }
            }
            top_ups_total += top_ups;
            charges_total -= charges.values().flatten().map(|(_, a)| a).sum::<i64>();
            refunds_total += refunds.values().sum::<i64>();
            let wallet = v.wallet["balances"].as_array().into_iter().flatten().find(|b| b["currency"] == "EUR");
            let (available, held) =
                wallet.map_or((0, 0), |b| (minor(&b["available"]).unwrap_or(i64::MIN), minor(&b["held"]).unwrap_or(i64::MIN)));
            if available != sum_wallet || held != sum_held {
                money.push(format!("{who}: wallet {available}/{held} held, history sums to {sum_wallet}/{sum_held}"));
            }
            if top_ups != u.topped_up_minor {
                money.push(format!("{who}: top-ups in the history {top_ups}, the client topped up {}", u.topped_up_minor));
            }
            // Each order's charges and refunds.
            let net = |reference: &str| -> (usize, i64, i64) {
                let list = charges.get(reference).map(Vec::as_slice).unwrap_or(&[]);
                let charged: i64 = list.iter().map(|(_, a)| -a).sum();
                let refunded: i64 = list.iter().map(|(id, _)| refunds.get(id).copied().unwrap_or(0)).sum();
                (list.len(), charged, refunded)
            };
            let mut expected_wallet = u.topped_up_minor;
            let mut references: BTreeSet<String> = BTreeSet::new();
            for o in &v.shop_orders {
                let id = o["id"].as_str().unwrap_or("");
                let reference = format!("order:{id}");
                let (n, charged, refunded) = net(&reference);
                let total = minor(&o["total"]).unwrap_or(-1);
                match o["status"].as_str().unwrap_or("") {
                    "placed" => {
                        expected_wallet -= total;
                        if n != 1 || charged != total || refunded != 0 {
                            money
                                .push(format!("{who}: placed shop order {id} of {total}: {n} charge(s) of {charged}, refunded {refunded}"));
                        }
                        let charge_id = charges.get(&reference).and_then(|l| l.first()).map(|(c, _)| c.as_str());
                        if n == 1 && o["chargeId"].as_str() != charge_id {
                            money.push(format!("{who}: shop order {id} names charge {} but was charged by {charge_id:?}", o["chargeId"]));
                        }
                    }
                    _ if n > 1 || charged != refunded => {
                        money.push(format!("{who}: {} shop order {id}: {n} charge(s) of {charged}, refunded {refunded}", o["status"]))
                    }
                    _ => {}
                }
                references.insert(reference);
            }
            for o in &v.car_orders {
                let id = o["orderId"].as_str().unwrap_or("");
                let reference = format!("factory-order:{id}");
                let (n, charged, refunded) = net(&reference);
                let deposit = minor(&o["deposit"]).unwrap_or(-1);
                match o["statusCode"].as_str().unwrap_or("") {
                    st @ ("failed" | "cancelled") => {
                        if n > 1 || charged != refunded {
                            money.push(format!("{who}: {st} car order {id}: {n} charge(s) of {charged}, refunded {refunded}"));
                        }
                    }
                    st => {
                        expected_wallet -= deposit;
                        if n != 1 || charged != deposit || refunded != 0 {
                            money.push(format!(
                                "{who}: {st} car order {id} (deposit {deposit}): {n} charge(s) of {charged}, refunded {refunded}"
                            ));
                        }
                    }
                }
                references.insert(reference);
            }
            for (reference, list) in &charges {
                if !references.contains(reference) {
                    money.push(format!("{who}: {} charge(s) with reference {reference:?}, which is none of the user's orders", list.len()));
                }
            }
            if available != expected_wallet {
                money.push(format!(
                    "{who}: wallet {available}, expected {expected_wallet} (top-ups − placed shop orders − deposits of live car orders)"
                ));
            }
        }
        checks.push(check(
            "wallets_explained",
            money,
            format!(
                "{} wallets = their history = top-ups ({top_ups_total}) − one charge per placed shop order and live car order; failed and cancelled orders refunded in full; no orphan or second charge (charged {charges_total}, refunded {refunds_total}, minor units)",
                self.users.len()
            ),
        ));

        let counts = json!({
            "shop_orders": shop_status,
            "car_orders": car_status,
            "units_sold": units_sold,
            "units_in_carts": units_in_carts,
            "car_parts_used": consumed.values().sum::<i64>(),
            "car_parts_held": held_by_orders.values().sum::<i64>(),
            "top_ups_minor": top_ups_total,
            "charged_minor": charges_total,
            "refunded_minor": refunds_total,
            "repeated_keys": replays,
            "unknown_outcomes": unknown,
        });
        Ok((checks, counts))
    }

    /// `(holds, units, distinct creation times)` an owner has now.
    async fn holds_of(&self, owner: &str) -> Result<(usize, i64, Vec<String>), String> {
        let h = self.admin.get_ok(&format!("/api/inventory/holds?owner={owner}"), Some(self.admin_token)).await?;
        let list = h.as_array().cloned().unwrap_or_default();
        let made: BTreeSet<String> = list.iter().filter_map(|x| x["createdAt"].as_str().map(str::to_owned)).collect();
        Ok((list.len(), list.iter().map(|x| x["quantity"].as_i64().unwrap_or(0)).sum(), made.into_iter().collect()))
    }
}
