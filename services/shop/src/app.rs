//! The shop's use cases: changing a cart (every line backed by an inventory hold), checking
//! out (charge through payments, then commit the holds, refunding if the commit fails), and the
//! background work that finishes what a crash or an outage interrupted.
//!
//! A cart change asks inventory first and writes the cart after, so changes to one cart are
//! serialised by a short lease on the cart row (it works across replicas; a crashed holder's
//! lease runs out). Two changes skip the lease: adding a product the cart does not have yet
//! writes its line only if the cart is still idle and still lacks it (or gives the fresh hold
//! back and takes the leased path), and removing a line is one write that queues the hold's
//! release in the same statement, so it never waits on inventory; a background task sends it.

use std::sync::Arc;
use std::time::Duration;

use motorpool_platform::clock::Clock;
use motorpool_platform::db::Db;
use motorpool_platform::events::Outbox;
use motorpool_platform::grpc::{Peers, Retry};
use motorpool_platform::metrics::{Counter, Metrics};
use motorpool_proto::inventory::v1::inventory_client::InventoryClient;
use motorpool_proto::inventory::v1::{self as inv, Outcome};
use motorpool_proto::payments::v1::payments_client::PaymentsClient;
use motorpool_proto::payments::v1::{ChargeRequest, RefundRequest};
use tokio::sync::Notify;
use tonic::Code as Grpc;
use tonic::transport::Channel;

use crate::config::ShopConfig;
use crate::domain::{Action, MAX_LINE_QUANTITY};
use crate::events;
use crate::store::{self, CartRow, LineRow, OrderLineRow, OrderRow};

/// Why a request failed (a refusal by inventory is a [`Rejection`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("{0} is unavailable")]
    PeerUnavailable(&'static str),
    #[error("{0} did not answer in time")]
    PeerTimeout(&'static str),
    #[error("the cart is busy")]
    CartBusy,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
}

/// Why inventory or the cart refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    OutOfStock { available: i64 },
    HoldLimit { cap: i64 },
    UnknownProduct,
    NotInCart,
    CheckoutInProgress,
    TooMany,
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::OutOfStock { .. } => "out_of_stock",
            Rejection::HoldLimit { .. } => "hold_limit_exceeded",
            Rejection::UnknownProduct | Rejection::NotInCart => "not_found",
            Rejection::CheckoutInProgress => "invalid_state",
            Rejection::TooMany => "validation_failed",
        }
    }

    pub fn available(&self) -> Option<i64> {
        match self {
            Rejection::OutOfStock { available } => Some(*available),
            _ => None,
        }
    }

    /// Back from a stored request.
    pub fn from_stored(reason: &str, available: Option<i64>) -> Self {
        match reason {
            "out_of_stock" => Rejection::OutOfStock { available: available.unwrap_or(0) },
            "hold_limit_exceeded" => Rejection::HoldLimit { cap: 0 },
            "invalid_state" => Rejection::CheckoutInProgress,
            "validation_failed" => Rejection::TooMany,
            _ => Rejection::NotInCart,
        }
    }
}

/// What became of a cart change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Done; the line as it is now (none after a removal or a check).
    Confirmed(Option<LineRow>),
    Rejected(Rejection),
    /// The same request id is still being worked on.
    Pending,
}

/// How a checkout ended, for the HTTP adapter.
#[derive(Debug)]
pub enum CheckoutResult {
    /// The stored response of an earlier attempt with the same key.
    Replay(motorpool_platform::idempotency::Stored),
    Placed(Box<OrderRow>),
    Refused(CheckoutRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutRefusal {
    CartEmpty,
    InProgress,
    OutOfStock {
        product_code: String,
        available: i64,
    },
    InsufficientFunds,
    Declined(String),
    /// Charged, but the holds were gone: the charge was refunded.
    HoldsLost,
    /// Payments or inventory did not answer; the order finishes in the background.
    Unfinished,
}

#[derive(Clone)]
pub struct ShopMetrics {
    confirmed: Counter,
    rejected: Counter,
    placed: Counter,
    failed: Counter,
    refunded: Counter,
}

impl ShopMetrics {
    pub fn new(m: &Metrics) -> Self {
        let req = |s| m.counter("shop_cart_requests_total", "Cart change requests by outcome", &[("outcome", s)]);
        let orders = |s| m.counter("shop_orders_total", "Checkouts by outcome", &[("outcome", s)]);
        Self {
            confirmed: req("confirmed"),
            rejected: req("rejected"),
            placed: orders("placed"),
            failed: orders("failed"),
            refunded: orders("refunded_after_charge"),
        }
    }
}

pub struct Shop {
    pub db: Db,
    pub outbox: Outbox,
    pub clock: Clock,
    pub peers: Peers,
    pub cfg: ShopConfig,
    pub metrics: ShopMetrics,
    /// Wakes the release task after a removal.
    pub releases: Arc<Notify>,
    /// The cart's hot statements, grouped across concurrent requests on PostgreSQL.
    pub cart: crate::grouped::CartStatements,
}

/// How long one cart change may hold the cart's lease.
const LEASE_MS: i64 = 15_000;
/// How long a change waits for another change's lease at most, and how often it looks.
const LEASE_WAIT: Duration = Duration::from_secs(5);
const LEASE_POLL: Duration = Duration::from_millis(10);
/// A pending order untouched this long is re-driven by the background task.
const STALE_ORDER_MS: i64 = 20_000;
/// Most queued hold releases one round of the release queue sends, and the most in one
/// `ReleaseMany` (inventory takes at most 100).
const RELEASE_ROUND: usize = 256;
const RELEASE_BATCH: usize = 64;

pub fn owner(cart_id: &str) -> String {
    format!("cart:{cart_id}")
}

fn peer_error(peer: &'static str, s: &tonic::Status) -> ShopError {
    tracing::warn!(peer, code = ?s.code(), message = s.message(), "peer call failed");
    match s.code() {
        Grpc::DeadlineExceeded => ShopError::PeerTimeout(peer),
        _ => ShopError::PeerUnavailable(peer),
    }
}

/// Why inventory refused a hold of a line; `have` is what the line already holds, so the
/// answer says how many more units could be asked for.
fn refused(reply: &inv::HoldReply, have: i64) -> Result<Rejection, ShopError> {
    match reply.outcome() {
        Outcome::OutOfStock | Outcome::UnknownSku => {
            let short = reply.shortages.first().map_or(0, |s| s.available.max(0));
            Ok(Rejection::OutOfStock { available: (short - have).max(0) })
        }
        Outcome::OwnerCapExceeded => Ok(Rejection::HoldLimit { cap: reply.owner_cap }),
        other => Err(ShopError::Internal(format!("unexpected hold outcome {other:?}"))),
    }
}

impl LineRow {
    /// The line of `product` that `hold` now backs.
    fn held(product: store::ProductRow, quantity: i64, hold: &inv::Hold) -> Self {
        LineRow {
            product_code: product.code,
            name: product.name,
            quantity,
            price_minor: product.price_minor,
            currency: product.currency,
            hold_id: hold.hold_id.clone(),
            hold_expires_at: hold.expires_at_ms,
        }
    }
}

impl Shop {
    /// A call to inventory (see [`Peers::call`]).
    async fn inventory<M: Clone, T, Fut>(
        &self,
        retry: Retry,
        message: M,
        call: impl Fn(InventoryClient<Channel>, tonic::Request<M>) -> Fut,
    ) -> Result<T, ShopError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.peers
            .call("inventory", retry, message, |ch, req| call(InventoryClient::new(ch), req))
            .await
            .map_err(|s| peer_error("inventory", &s))
    }

    /// A call to payments; every call that moves money carries an idempotency key.
    async fn payments<M: Clone, T, Fut>(
        &self,
        message: M,
        call: impl Fn(PaymentsClient<Channel>, tonic::Request<M>) -> Fut,
    ) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.peers.call("payments", Retry::Safe, message, |ch, req| call(PaymentsClient::new(ch), req)).await
    }

    /// Asks inventory to hold `quantity` units of `sku` for `owner`, as one line. A hold is
    /// not idempotent (a repeat would hold twice), so it is sent once.
    async fn hold_line(&self, owner: &str, sku: &str, quantity: i64, ttl_seconds: i64) -> Result<inv::HoldReply, ShopError> {
        let lines = vec![inv::Line { sku: sku.to_owned(), quantity }];
        let hold = inv::HoldRequest { owner: owner.to_owned(), lines, ttl_seconds };
        self.inventory(Retry::Once, hold, |mut c, r| async move { c.hold(r).await }).await
    }

    /// Available units of `codes` (missing: no stock record, so 0).
    pub async fn availability(&self, codes: &[String]) -> Result<Vec<(String, i64)>, ShopError> {
        let ask = inv::AvailabilityRequest { skus: codes.to_vec() };
        let reply = self.inventory(Retry::Safe, ask, |mut c, r| async move { c.availability(r).await }).await?;
        Ok(codes.iter().map(|c| (c.clone(), reply.levels.iter().find(|l| &l.sku == c).map_or(0, |l| l.available.max(0)))).collect())
    }

    /// Runs `f` on the user's cart while holding its change lease (waiting a few seconds for
    /// it at most); the cart is created on first use.
    async fn with_cart<T>(&self, user_id: &str, f: impl AsyncFnOnce(&CartRow) -> Result<T, ShopError>) -> Result<T, ShopError> {
        let mut waited = Duration::ZERO;
        let (cart, until) = loop {
            let now = self.clock.now_ms();
            let until = now + LEASE_MS;
            if let Some(cart) = store::lease_cart(&self.db, user_id, now, until).await? {
                break (cart, until);
            }
            if store::find_cart(&self.db, user_id).await?.is_none() {
                store::ensure_cart(&self.db, user_id, now).await?;
                continue;
            }
            if waited >= LEASE_WAIT {
                return Err(ShopError::CartBusy);
            }
            tokio::time::sleep(LEASE_POLL).await;
            waited += LEASE_POLL;
        };
        let out = f(&cart).await;
        if let Err(e) = store::end_lease(&self.db, &cart.id, until, self.clock.now_ms()).await {
            tracing::warn!(error = %e, "cart lease not ended; it runs out by itself");
        }
        out
    }

    /// Applies one change to the user's cart. With a request id (the live channel), the
    /// request is part of the cart's state: recorded as pending first, settled after, and a
    /// repeated id gets the stored outcome without a second effect.
    pub async fn apply(
        &self,
        user_id: &str,
        action: Action,
        code: Option<&str>,
        quantity: i64,
        request_id: Option<&str>,
    ) -> Result<(CartRow, Applied), ShopError> {
        let Some(rid) = request_id else {
            let result = self.change(user_id, action, code, quantity).await;
            self.count(&result);
            return result;
        };
        let now = self.clock.now_ms();
        let cart = store::ensure_cart(&self.db, user_id, now).await?;
        let quantity_field = matches!(action, Action::Add | Action::Set).then_some(quantity);
        if !store::insert_request(&self.db, &cart.id, rid, action.as_str(), code, quantity_field, now).await? {
            let applied = match store::find_request(&self.db, &cart.id, rid).await? {
                Some(r) if r.status == "confirmed" => {
                    let line = match &r.product_code {
                        Some(c) => store::line(&self.db, &cart.id, c).await?,
                        None => None,
                    };
                    Applied::Confirmed(line)
                }
                Some(r) if r.status == "rejected" => {
                    Applied::Rejected(Rejection::from_stored(r.reason.as_deref().unwrap_or(""), r.available))
                }
                _ => Applied::Pending,
            };
            return Ok((cart, applied));
        }
        let result = self.change(user_id, action, code, quantity).await;
        self.count(&result);
        let (status, reason, available) = match &result {
            Ok((_, Applied::Rejected(r))) => ("rejected", Some(r.reason()), r.available()),
            Ok(_) => ("confirmed", None, None),
            Err(_) => ("rejected", Some("unavailable"), None),
        };
        store::resolve_request(&self.db, &cart.id, rid, status, reason, available, self.clock.now_ms()).await?;
        result
    }

    fn count(&self, result: &Result<(CartRow, Applied), ShopError>) {
        match result {
            Ok((_, Applied::Confirmed(_))) => self.metrics.confirmed.add(1),
            Ok((_, Applied::Rejected(_))) => self.metrics.rejected.add(1),
            _ => {}
        }
    }

    async fn change(&self, user_id: &str, action: Action, code: Option<&str>, quantity: i64) -> Result<(CartRow, Applied), ShopError> {
        match (action, code) {
            (Action::Remove, Some(code)) => return self.remove(user_id, code).await,
            (Action::Set, Some(code)) if quantity == 0 => return self.remove(user_id, code).await,
            (Action::Add, Some(code)) => {
                if let Some(done) = self.add_new_line(user_id, code, quantity).await? {
                    return Ok(done);
                }
            }
            _ => {}
        }
        self.with_cart(user_id, async |cart: &CartRow| {
            if cart.checkout_order_id.is_some() && action != Action::Check {
                return Ok((cart.clone(), Applied::Rejected(Rejection::CheckoutInProgress)));
            }
            let applied = match (action, code) {
                (Action::Add | Action::Set, Some(code)) => self.put(cart, action, code, quantity).await?,
                (Action::Check, _) => {
                    self.renew_holds(cart, self.cfg.cart_hold_ttl_secs).await?;
                    Applied::Confirmed(None)
                }
                _ => Applied::Rejected(Rejection::NotInCart),
            };
            Ok((cart.clone(), applied))
        })
        .await
    }

    /// Removes a line at once and queues its hold's release (one statement on PostgreSQL);
    /// it waits only for a leased change of the same cart to end.
    async fn remove(&self, user_id: &str, code: &str) -> Result<(CartRow, Applied), ShopError> {
        let mut waited = Duration::ZERO;
        loop {
            match self.cart.removals.run((user_id.to_owned(), code.to_owned())).await? {
                store::Removal::Removed { cart, .. } => {
                    self.releases.notify_one();
                    return Ok((cart, Applied::Confirmed(None)));
                }
                store::Removal::NotInCart(cart) => return Ok((cart, Applied::Rejected(Rejection::NotInCart))),
                store::Removal::Frozen(cart) => return Ok((cart, Applied::Rejected(Rejection::CheckoutInProgress))),
                store::Removal::NoCart => {
                    let cart = store::ensure_cart(&self.db, user_id, self.clock.now_ms()).await?;
                    return Ok((cart, Applied::Rejected(Rejection::NotInCart)));
                }
                store::Removal::Busy if waited >= LEASE_WAIT => return Err(ShopError::CartBusy),
                store::Removal::Busy => {
                    tokio::time::sleep(LEASE_POLL).await;
                    waited += LEASE_POLL;
                }
            }
        }
    }

    /// The common add, a product not yet in an idle cart, without the lease: read, hold,
    /// then write the line only if the cart is still idle and still has no line of it. `None`
    /// when that does not apply or the write lost a race (its fresh hold is then queued for
    /// release): the caller takes the leased path.
    async fn add_new_line(&self, user_id: &str, code: &str, quantity: i64) -> Result<Option<(CartRow, Applied)>, ShopError> {
        let Some(view) = self.cart.views.run((user_id.to_owned(), code.to_owned())).await? else {
            return Ok(None);
        };
        if view.busy || view.line.is_some() || view.cart.checkout_order_id.is_some() {
            return Ok(None);
        }
        let cart = view.cart;
        let Some(product) = view.product else {
            return Ok(Some((cart, Applied::Rejected(Rejection::UnknownProduct))));
        };
        if quantity > MAX_LINE_QUANTITY {
            return Ok(Some((cart, Applied::Rejected(Rejection::TooMany))));
        }
        let owner = owner(&cart.id);
        let reply = self.hold_line(&owner, code, quantity, self.cfg.cart_hold_ttl_secs).await?;
        let Outcome::Held = reply.outcome() else {
            return refused(&reply, 0).map(|r| Some((cart, Applied::Rejected(r))));
        };
        let hold = reply.holds.first().ok_or_else(|| ShopError::Internal("inventory held nothing".into()))?;
        let now = self.clock.now_ms();
        let line = store::NewLine {
            cart_id: cart.id.clone(),
            code: code.to_owned(),
            quantity,
            hold_id: hold.hold_id.clone(),
            expires_at: hold.expires_at_ms,
        };
        if self.cart.inserts.run(line).await? {
            return Ok(Some((cart, Applied::Confirmed(Some(LineRow::held(product, quantity, hold))))));
        }
        let mut tx = self.db.begin_write().await?;
        store::queue_release(&mut tx, &hold.hold_id, &owner, now).await?;
        tx.commit().await?;
        self.releases.notify_one();
        Ok(None)
    }

    /// Adds to or sets a line, asking inventory for the units first.
    async fn put(&self, cart: &CartRow, action: Action, code: &str, quantity: i64) -> Result<Applied, ShopError> {
        let Some((product, existing)) = store::product_and_line(&self.db, &cart.id, code).await? else {
            return Ok(Applied::Rejected(Rejection::UnknownProduct));
        };
        let have = existing.as_ref().map_or(0, |(q, _)| *q);
        let target = if action == Action::Add { have + quantity } else { quantity };
        if target > MAX_LINE_QUANTITY {
            return Ok(Applied::Rejected(Rejection::TooMany));
        }
        let owner = owner(&cart.id);
        let ttl = self.cfg.cart_hold_ttl_secs;
        // Resize the line's hold (to an absolute quantity, so a repeat is harmless); a hold
        // that is gone (expired) is replaced by a new one.
        let mut reply = None;
        if let Some((_, hold_id)) = &existing {
            let adjust = inv::AdjustRequest { hold_id: hold_id.clone(), owner: owner.clone(), quantity: target, ttl_seconds: ttl };
            let r = self.inventory(Retry::Safe, adjust, |mut c, r| async move { c.adjust(r).await }).await?;
            if r.outcome() != Outcome::HoldNotFound {
                reply = Some(r);
            }
        }
        let reply = match reply {
            Some(r) => r,
            None => self.hold_line(&owner, code, target, ttl).await?,
        };
        match reply.outcome() {
            Outcome::Held => {
                let hold = reply.holds.first().ok_or_else(|| ShopError::Internal("inventory held nothing".into()))?;
                let now = self.clock.now_ms();
                match existing.as_ref().filter(|(_, h)| *h != hold.hold_id) {
                    Some((_, old)) => {
                        // The old hold was gone already; releasing it again is harmless.
                        let mut tx = self.db.begin_write().await?;
                        store::put_line(&mut tx, &cart.id, code, target, &hold.hold_id, hold.expires_at_ms, now).await?;
                        store::queue_release(&mut tx, old, &owner, now).await?;
                        tx.commit().await?;
                    }
                    None => {
                        let mut conn = self.db.pool().acquire().await?;
                        store::put_line(&mut conn, &cart.id, code, target, &hold.hold_id, hold.expires_at_ms, now).await?;
                    }
                }
                Ok(Applied::Confirmed(Some(LineRow::held(product, target, hold))))
            }
            _ => {
                // What the request could have asked for: more units (add) or a line total (set).
                let have = if action == Action::Add && existing.is_some() { have } else { 0 };
                refused(&reply, have).map(Applied::Rejected)
            }
        }
    }

    /// Extends every line's hold; lines whose hold is gone get a new one if stock allows.
    /// The lines that could not be held again, with what is available of them.
    async fn renew_holds(&self, cart: &CartRow, ttl: i64) -> Result<Vec<(String, i64)>, ShopError> {
        let lines = store::lines(&self.db, &cart.id).await?;
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let owner = owner(&cart.id);
        let extend =
            inv::ExtendRequest { hold_ids: lines.iter().map(|l| l.hold_id.clone()).collect(), owner: owner.clone(), ttl_seconds: ttl };
        let reply = self.inventory(Retry::Safe, extend, |mut c, r| async move { c.extend(r).await }).await?;
        let now = self.clock.now_ms();
        let mut short = Vec::new();
        let mut tx = self.db.begin_write().await?;
        for h in &reply.holds {
            if let Some(l) = lines.iter().find(|l| l.hold_id == h.hold_id) {
                store::put_line(&mut tx, &cart.id, &l.product_code, l.quantity, &h.hold_id, h.expires_at_ms, now).await?;
            }
        }
        tx.commit().await?;
        for missing in &reply.missing_hold_ids {
            let Some(l) = lines.iter().find(|l| &l.hold_id == missing) else { continue };
            let r = self.hold_line(&owner, &l.product_code, l.quantity, ttl).await?;
            match (r.outcome(), r.holds.first()) {
                (Outcome::Held, Some(h)) => {
                    let mut tx = self.db.begin_write().await?;
                    store::put_line(&mut tx, &cart.id, &l.product_code, l.quantity, &h.hold_id, h.expires_at_ms, self.clock.now_ms())
                        .await?;
                    tx.commit().await?;
                }
                _ => short.push((l.product_code.clone(), r.shortages.first().map_or(0, |s| s.available.max(0)))),
            }
        }
        Ok(short)
    }

    /// Checks out the user's cart under an idempotency key (see the module docs of `routes`).
    pub async fn checkout(&self, user_id: &str, key: &str) -> Result<CheckoutResult, ShopError> {
        use motorpool_platform::idempotency::{self, Begin};
        let scope = format!("{user_id}:checkout");
        let now = self.clock.now_ms();
        match idempotency::begin(&self.db, &scope, key, &idempotency::fingerprint(&[b"checkout"]), now).await {
            Ok(Begin::Replay(stored)) => return Ok(CheckoutResult::Replay(stored)),
            Ok(Begin::Proceed) => {}
            Err(p) if p.code == motorpool_platform::problem::Code::IdempotencyInProgress => {
                return Ok(CheckoutResult::Refused(CheckoutRefusal::InProgress));
            }
            Err(p) => return Err(ShopError::Internal(p.to_string())),
        }
        // A takeover of an attempt that died after creating its order drives that order on.
        let order = match store::order_by_key(&self.db, &scope, key).await? {
            Some(o) => o,
            None => match self.open_order(user_id, &scope, key).await {
                Ok(Ok(o)) => o,
                Ok(Err(refusal)) => {
                    idempotency::abandon(&self.db, &scope, key).await;
                    return Ok(CheckoutResult::Refused(refusal));
                }
                Err(e) => {
                    idempotency::abandon(&self.db, &scope, key).await;
                    return Err(e);
                }
            },
        };
        self.drive(order).await
    }

    /// Renews the cart's holds and records the order, freezing the cart.
    async fn open_order(&self, user_id: &str, scope: &str, key: &str) -> Result<Result<OrderRow, CheckoutRefusal>, ShopError> {
        self.with_cart(user_id, async |cart: &CartRow| {
            if cart.checkout_order_id.is_some() {
                return Ok(Err(CheckoutRefusal::InProgress));
            }
            if store::lines(&self.db, &cart.id).await?.is_empty() {
                return Ok(Err(CheckoutRefusal::CartEmpty));
            }
            // Long enough to charge and commit, and never shorter than a cart line's own, so a
            // refused payment leaves the cart as held as it was.
            let ttl = self.cfg.checkout_hold_ttl_secs.max(self.cfg.cart_hold_ttl_secs);
            let short = self.renew_holds(cart, ttl).await?;
            if let Some((product_code, available)) = short.into_iter().next() {
                return Ok(Err(CheckoutRefusal::OutOfStock { product_code, available }));
            }
            let lines = store::lines(&self.db, &cart.id).await?;
            let currency = lines.first().map_or_else(|| self.cfg.currency.clone(), |l| l.currency.clone());
            let now = self.clock.now_ms();
            let order = OrderRow {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user_id.to_owned(),
                cart_id: cart.id.clone(),
                status: "pending".into(),
                total_minor: lines.iter().map(|l| l.quantity * l.price_minor).sum(),
                currency,
                charge_id: None,
                failure: None,
                idempotency_scope: scope.to_owned(),
                idempotency_key: key.to_owned(),
                created_at: now,
                updated_at: now,
            };
            let order_lines: Vec<OrderLineRow> = lines
                .iter()
                .map(|l| OrderLineRow {
                    product_code: l.product_code.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.price_minor,
                    hold_id: l.hold_id.clone(),
                })
                .collect();
            let mut tx = self.db.begin_write().await?;
            if !store::insert_order(&mut tx, &order, &order_lines).await? {
                tx.rollback().await?;
                return Ok(Err(CheckoutRefusal::InProgress));
            }
            tx.commit().await?;
            Ok(Ok(order))
        })
        .await
    }

    /// Takes a pending order as far as it can go: charge (idempotent by order id), commit the
    /// holds (idempotent by hold), and place it — or refund and fail it. Safe to run again at
    /// any point, by any replica.
    pub async fn drive(&self, order: OrderRow) -> Result<CheckoutResult, ShopError> {
        let lines = store::order_lines(&self.db, &order.id).await?;
        let charge = ChargeRequest {
            idempotency_key: format!("shop-order:{}", order.id),
            user_id: order.user_id.clone(),
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            reference: format!("order:{}", order.id),
            description: describe(&lines),
        };
        let charge = self.payments(charge, |mut c, r| async move { c.charge(r).await }).await;
        let charge = match charge {
            Ok(c) => c,
            Err(s) if s.code() == Grpc::FailedPrecondition && s.message().starts_with("insufficient_funds") => {
                return self.fail(&order, "insufficient_funds", CheckoutRefusal::InsufficientFunds, &[]).await;
            }
            Err(s) if s.code() == Grpc::FailedPrecondition && s.message().starts_with("payment_declined") => {
                let reason = s.message().trim_start_matches("payment_declined: ").to_owned();
                return self.fail(&order, "payment_declined", CheckoutRefusal::Declined(reason), &[]).await;
            }
            Err(s) => {
                peer_error("payments", &s);
                return Ok(CheckoutResult::Refused(CheckoutRefusal::Unfinished));
            }
        };
        store::set_charge(&self.db, &order.id, &charge.charge_id, self.clock.now_ms()).await?;
        let hold_ids: Vec<String> = lines.iter().map(|l| l.hold_id.clone()).collect();
        let commit =
            inv::CommitRequest { hold_ids: hold_ids.clone(), owner: owner(&order.cart_id), reference: format!("order:{}", order.id) };
        let committed = self.inventory(Retry::Safe, commit, |mut c, r| async move { c.commit(r).await }).await;
        let Ok(committed) = committed else {
            return Ok(CheckoutResult::Refused(CheckoutRefusal::Unfinished));
        };
        if committed.committed {
            return self.place(order, charge.charge_id, &hold_ids).await;
        }
        // Money taken, goods gone: give the money back before saying no.
        let refund = RefundRequest {
            idempotency_key: format!("shop-order-refund:{}", order.id),
            charge_id: charge.charge_id.clone(),
            amount_minor: order.total_minor,
            reason: "parts no longer held".into(),
        };
        let refund = self.payments(refund, |mut c, r| async move { c.refund(r).await }).await;
        if let Err(s) = refund {
            peer_error("payments", &s);
            return Ok(CheckoutResult::Refused(CheckoutRefusal::Unfinished));
        }
        self.metrics.refunded.add(1);
        self.fail(&order, "holds_lost", CheckoutRefusal::HoldsLost, &committed.missing_hold_ids).await
    }

    async fn place(&self, mut order: OrderRow, charge_id: String, hold_ids: &[String]) -> Result<CheckoutResult, ShopError> {
        let now = self.clock.now_ms();
        order.charge_id = Some(charge_id);
        let lines = store::order_lines(&self.db, &order.id).await?;
        let mut placed = order.clone();
        placed.status = "placed".into();
        placed.updated_at = now;
        let body = serde_json::to_vec(&crate::routes::OrderView::new(&placed, &lines)).map_err(|e| ShopError::Internal(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        if store::finish_order(&mut tx, &order, "placed", None, now).await? {
            store::delete_lines_with_holds(&mut tx, &order.cart_id, hold_ids, now).await?;
            let data = events::OrderPlaced::new(&placed, &lines);
            self.outbox.add(&mut tx, events::ORDER_PLACED, &order.id, &data).await?;
            motorpool_platform::idempotency::complete(&mut tx, &order.idempotency_scope, &order.idempotency_key, 201, &body).await?;
            tx.commit().await?;
            self.outbox.wake();
            self.metrics.placed.add(1);
        } else {
            tx.rollback().await?;
        }
        let now_order = store::find_order(&self.db, &order.id).await?.unwrap_or(placed);
        Ok(CheckoutResult::Placed(Box::new(now_order)))
    }

    async fn fail(&self, order: &OrderRow, failure: &str, refusal: CheckoutRefusal, gone: &[String]) -> Result<CheckoutResult, ShopError> {
        let now = self.clock.now_ms();
        let problem = crate::routes::refusal_problem(&refusal);
        let body = serde_json::to_vec(&problem.body()).map_err(|e| ShopError::Internal(e.to_string()))?;
        let mut tx = self.db.begin_write().await?;
        if store::finish_order(&mut tx, order, "failed", Some(failure), now).await? {
            if !gone.is_empty() {
                // Those lines' units are gone; the cart should not pretend otherwise.
                store::delete_lines_with_holds(&mut tx, &order.cart_id, gone, now).await?;
            }
            let data = events::OrderFailed { order_id: order.id.clone(), user_id: order.user_id.clone(), reason: failure.to_owned() };
            self.outbox.add(&mut tx, events::ORDER_FAILED, &order.id, &data).await?;
            let status = problem.code.status().as_u16();
            motorpool_platform::idempotency::complete(&mut tx, &order.idempotency_scope, &order.idempotency_key, status, &body).await?;
            tx.commit().await?;
            self.outbox.wake();
            self.metrics.failed.add(1);
        } else {
            tx.rollback().await?;
        }
        Ok(CheckoutResult::Refused(refusal))
    }

    /// Sends queued hold releases to inventory until `shutdown`.
    pub async fn run_releases(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = Duration::from_millis(self.cfg.retry_interval_ms);
        loop {
            if let Err(e) = self.release_due().await {
                tracing::debug!(error = %e, "hold releases wait for inventory");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                // Removals right behind this one join its batch.
                () = self.releases.notified() => tokio::time::sleep(Duration::from_millis(2)).await,
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    async fn release_due(&self) -> Result<(), ShopError> {
        loop {
            let due = store::due_releases(&self.db, self.clock.now_ms(), RELEASE_ROUND as i64).await?;
            if due.is_empty() {
                return Ok(());
            }
            // A few batches at once, each one ReleaseMany that inventory takes in one statement
            // (they lock stock rows in one order, so they queue rather than deadlock).
            let calls = due.chunks(RELEASE_BATCH).map(|batch| {
                let holds: Vec<inv::OwnedHold> =
                    batch.iter().map(|(hold_id, owner, _)| inv::OwnedHold { hold_id: hold_id.clone(), owner: owner.clone() }).collect();
                async move {
                    let released = self
                        .inventory(Retry::Safe, inv::ReleaseManyRequest { holds }, |mut c, r| async move { c.release_many(r).await })
                        .await;
                    (batch, released)
                }
            });
            let mut done = Vec::with_capacity(due.len());
            let mut failed = None;
            for (batch, outcome) in futures::future::join_all(calls).await {
                match outcome {
                    Ok(reply) => {
                        for r in reply.rejected {
                            tracing::warn!(hold_id = r.hold_id, owner = r.owner, "inventory refused a release as malformed; dropped");
                        }
                        done.extend(batch.iter().map(|(hold_id, _, _)| hold_id.clone()));
                    }
                    Err(e) => {
                        // Tried again later, backing off; releasing an id no longer held is a no-op.
                        for (hold_id, _, attempts) in batch {
                            let backoff = (self.cfg.retry_interval_ms as i64) << (*attempts).clamp(0, 6);
                            store::release_later(&self.db, hold_id, self.clock.now_ms() + backoff).await?;
                        }
                        failed = Some(e);
                    }
                }
            }
            // One statement forgets every released hold of the round.
            store::releases_done(&self.db, &done).await?;
            if let Some(e) = failed {
                return Err(e);
            }
            if due.len() < RELEASE_ROUND {
                return Ok(());
            }
        }
    }

    /// Finishes checkouts a crash or an outage left pending, and prunes old cart requests,
    /// until `shutdown`.
    pub async fn run_recovery(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = Duration::from_millis(self.cfg.retry_interval_ms.max(1000));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let now = self.clock.now_ms();
            match store::stale_orders(&self.db, now - STALE_ORDER_MS, 20).await {
                Ok(orders) => {
                    for o in orders {
                        match store::claim_order(&self.db, &o, now).await {
                            Ok(true) => {
                                let id = o.id.clone();
                                if let Err(e) = self.drive(o).await {
                                    tracing::warn!(order = %id, error = %e, "pending order not finished yet");
                                }
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "claiming a pending order"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading pending orders"),
            }
            // A request still pending after a minute was cut off by a crash; settled requests
            // are kept a day for replays of their request id.
            if let Err(e) = store::expire_pending_requests(&self.db, now - 60_000, now).await {
                tracing::warn!(error = %e, "settling interrupted cart requests");
            }
            if let Err(e) = store::prune_requests(&self.db, now - 86_400_000).await {
                tracing::warn!(error = %e, "pruning cart requests");
            }
        }
    }

    /// Puts every catalog part in stock once (demo data), retrying until inventory answers.
    pub async fn seed_demo_stock(self: Arc<Self>, codes: Vec<String>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            match self.try_seed_stock(&codes).await {
                Ok(()) => {
                    tracing::info!(parts = codes.len(), "demo stock in place");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "demo stock waits for inventory"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn try_seed_stock(&self, codes: &[String]) -> Result<(), ShopError> {
        for (i, code) in codes.iter().enumerate() {
            // A few scarce parts, so the demo shows "only N left" and out-of-stock answers.
            let quantity = if i % 37 == 5 { 2 } else { self.cfg.demo_stock_per_part };
            let set = inv::SetStockRequest { sku: code.clone(), quantity, only_if_absent: true };
            self.inventory(Retry::Safe, set, |mut c, r| async move { c.set_stock(r).await }).await?;
        }
        Ok(())
    }
}

fn describe(lines: &[OrderLineRow]) -> String {
    let units: i64 = lines.iter().map(|l| l.quantity).sum();
    match lines {
        [one] => format!("{} × {}", one.quantity, one.name),
        _ => format!("Parts order: {units} items"),
    }
    .chars()
    .take(200)
    .collect()
}
