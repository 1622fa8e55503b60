//! The factory's use cases. Placing an order is a saga whose position (`step`) is stored with
//! the order, so a crash resumes it: hold the bill of materials in inventory (owner
//! `order:<id>`), take the deposit through payments (idempotent by the order id), book the
//! earliest production slot with capacity. Parts short: the order waits in `awaiting_parts`
//! and the scheduler books it when they arrive. A refused deposit compensates: the holds are
//! released and the order fails. The scheduler moves booked orders along the plan by the
//! clock, renewing the holds until production starts and committing them then (holds that
//! lapsed while the factory was away are held again, or the order waits for parts again);
//! until then an order may be cancelled and its deposit is refunded.

use std::time::Duration;

use motorpool_platform::clock::Clock;
use motorpool_platform::db::{Db, Tx, is_unique_violation};

use motorpool_platform::events::Outbox;
use motorpool_platform::grpc::{Peers, Retry};
use motorpool_platform::money::MoneyView;
use motorpool_proto::configurator::v1::GetConfigurationRequest;
use motorpool_proto::configurator::v1::configurator_client::ConfiguratorClient;
use motorpool_proto::inventory::v1 as inv;
use motorpool_proto::inventory::v1::inventory_client::InventoryClient;
use motorpool_proto::payments::v1::payments_client::PaymentsClient;
use motorpool_proto::payments::v1::{ChargeRequest, RefundRequest};
use tonic::Code as Grpc;
use tonic::transport::Channel;

use crate::config::FactoryConfig;
use crate::domain::{self, DAY_MS, Status};
use crate::events;
use crate::store::{self, OrderRow};

#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error("no such configuration")]
    ConfigurationNotFound,
    #[error("{0} is unavailable")]
    PeerUnavailable(&'static str),
    #[error("{0} did not answer in time")]
    PeerTimeout(&'static str),
    #[error("the idempotency key placed an order of another configuration")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// An injected crash (`factory.crash_after`): the step's effect happened, its record did not.
    #[error("crashed after the {0} step (fault injection)")]
    Crashed(&'static str),
    #[error("{0}")]
    Internal(String),
}

/// A saga step that stopped on an unavailable peer leaves the order where it is; recovery
/// resumes it.
fn peer(name: &'static str, s: &tonic::Status) -> FactoryError {
    tracing::warn!(peer = name, code = ?s.code(), message = s.message(), "peer call failed");
    match s.code() {
        Grpc::DeadlineExceeded => FactoryError::PeerTimeout(name),
        _ => FactoryError::PeerUnavailable(name),
    }
}

pub struct Factory {
    pub db: Db,
    pub outbox: Outbox,
    pub clock: Clock,
    pub peers: Peers,
    pub cfg: FactoryConfig,
    /// The armed crash points of `factory.crash_after`; each fires once.
    crashes: std::sync::Mutex<Vec<String>>,
}

fn owner(order_id: &str) -> String {
    format!("order:{order_id}")
}

/// The inventory holds an order recorded (none while it has none).
fn hold_ids(order: &OrderRow) -> Result<Vec<String>, FactoryError> {
    let ids = order.holds.as_deref().map(serde_json::from_str).transpose().map_err(|e| FactoryError::Internal(e.to_string()))?;
    Ok(ids.unwrap_or_default())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, FactoryError> {
    serde_json::to_string(v).map_err(|e| FactoryError::Internal(e.to_string()))
}

impl Factory {
    pub fn new(db: Db, outbox: Outbox, clock: Clock, peers: Peers, cfg: FactoryConfig) -> Self {
        let crashes = std::sync::Mutex::new(cfg.crash_after.clone());
        Self { db, outbox, clock, peers, cfg, crashes }
    }

    /// Fails as a crash would, right here, if `step` is an armed crash point (once).
    fn crash_point(&self, step: &'static str) -> Result<(), FactoryError> {
        let mut armed = self.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match armed.iter().position(|p| p == step) {
            Some(i) => {
                armed.remove(i);
                tracing::warn!(step, "injected crash");
                Err(FactoryError::Crashed(step))
            }
            None => Ok(()),
        }
    }

    /// A call to inventory (see [`Peers::call`]).
    async fn inventory<M: Clone, T, Fut>(
        &self,
        retry: Retry,
        message: M,
        call: impl Fn(InventoryClient<Channel>, tonic::Request<M>) -> Fut,
    ) -> Result<T, FactoryError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.peers.call("inventory", retry, message, |ch, req| call(InventoryClient::new(ch), req)).await.map_err(|s| peer("inventory", &s))
    }

    /// Releases every hold of the order (idempotent: what is gone is skipped).
    async fn release_all(&self, order: &OrderRow) -> Result<(), FactoryError> {
        let release = inv::ReleaseOwnerRequest { owner: owner(&order.id) };
        self.inventory(Retry::Safe, release, |mut c, r| async move { c.release_owner(r).await }).await?;
        Ok(())
    }

    /// Places an order for `user_id` of saved configuration `config_id` and runs the saga as
    /// far as it goes now. A configuration another user saved is not found. With an
    /// idempotency key, the order an earlier request with the key placed is returned instead
    /// (as it stands now: recovery finishes its saga), so a retry never places a second one.
    pub async fn place(&self, user_id: &str, config_id: &str, key: Option<&str>) -> Result<OrderRow, FactoryError> {
        if let Some(key) = key
            && let Some(id) = store::order_for_key(&self.db, user_id, key).await?
        {
            return self.keyed(&id, config_id).await;
        }
        let config = self
            .peers
            .call("configurator", Retry::Safe, GetConfigurationRequest { config_id: config_id.to_owned() }, |ch, r| async move {
                ConfiguratorClient::new(ch).get_configuration(r).await
            })
            .await;
        let config = match config {
            Ok(c) => c,
            Err(s) if s.code() == Grpc::NotFound => return Err(FactoryError::ConfigurationNotFound),
            Err(s) => return Err(peer("configurator", &s)),
        };
        if !config.owner_id.is_empty() && config.owner_id != user_id {
            return Err(FactoryError::ConfigurationNotFound);
        }
        let now = self.clock.now_ms();
        let order = OrderRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            config_id: config.config_id.clone(),
            model: config.model.clone(),
            bom: json(&domain::bill_of_materials(&config.model, &config.options))?,
            holds: None,
            price: config.price_minor,
            currency: config.currency.clone(),
            deposit: domain::deposit(config.price_minor, self.cfg.deposit_percent),
            charge_id: None,
            status: Status::Placed.code().into(),
            step: "hold".into(),
            plant: None,
            production_day: None,
            next_at: None,
            failure: None,
            created_at: now,
            updated_at: now,
        };
        let data = events::OrderPlaced {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            config_id: order.config_id.clone(),
            model: order.model.clone(),
            price: MoneyView::from_minor(order.price, &order.currency),
        };
        let mut tx = self.db.begin_write().await?;
        store::insert_order(&mut tx, &order).await?;
        if let Some(key) = key {
            match store::insert_order_key(&mut tx, user_id, key, &order.id).await {
                Ok(()) => {}
                Err(e) if is_unique_violation(&e) => {
                    // A request with the same key placed its order meanwhile: that one stands.
                    drop(tx);
                    let id = store::order_for_key(&self.db, user_id, key).await?.ok_or(FactoryError::Db(e))?;
                    return self.keyed(&id, config_id).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        store::add_timeline(&mut tx, &order.id, Status::Placed.code(), now, None).await?;
        self.outbox.add(&mut tx, events::ORDER_PLACED, &order.id, &data).await?;
        tx.commit().await?;
        self.outbox.wake();
        let id = order.id.clone();
        match self.advance(order).await {
            // Placed all the same: recovery finishes it once the peer is back (or, after a
            // crash, once it is due).
            Err(e @ (FactoryError::PeerUnavailable(_) | FactoryError::PeerTimeout(_) | FactoryError::Crashed(_))) => {
                tracing::warn!(order = %id, error = %e, "order placed; recovery finishes its saga");
                self.reload(&id).await
            }
            r => r,
        }
    }

    /// Whether the placing saga still has steps to run (it stopped on an unavailable peer).
    pub fn is_unfinished(order: &OrderRow) -> bool {
        matches!(order.step.as_str(), "hold" | "deposit" | "book" | "compensate")
    }

    /// Saves `next` over `current` (if nobody moved it meanwhile), with a timeline entry and an
    /// event when the status changed. Whether it was saved.
    async fn save(&self, current: &OrderRow, next: &OrderRow, note: Option<&str>) -> Result<bool, FactoryError> {
        let mut tx = self.db.begin_write().await?;
        if !self.save_in(&mut tx, current, next, note).await? {
            return Ok(false);
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(true)
    }

    /// [`Self::save`] inside the caller's transaction (the caller commits and wakes the outbox).
    async fn save_in(&self, tx: &mut Tx, current: &OrderRow, next: &OrderRow, note: Option<&str>) -> Result<bool, FactoryError> {
        if !store::update_order(tx, next, current).await? {
            return Ok(false);
        }
        if next.status != current.status {
            store::add_timeline(tx, &next.id, &next.status, next.updated_at, note).await?;
            let data = events::StatusChanged {
                order_id: next.id.clone(),
                user_id: next.user_id.clone(),
                status: next.status.clone(),
                label: Status::parse(&next.status).map(Status::label).unwrap_or_default().to_owned(),
                estimated_delivery: next.production_day.map(|d| domain::date(domain::delivery_day(d))),
                reason: next.failure.clone(),
            };
            self.outbox.add(tx, events::kind_for(&next.status), &next.id, &data).await?;
        }
        Ok(true)
    }

    /// Runs the placing saga from the order's step until it is done, waits for parts, or a
    /// peer is unavailable (then recovery resumes it).
    pub async fn advance(&self, mut order: OrderRow) -> Result<OrderRow, FactoryError> {
        loop {
            let mut next = order.clone();
            next.updated_at = self.clock.now_ms();
            let mut note = None;
            match order.step.as_str() {
                "hold" => {
                    // An interrupted earlier attempt may have made holds it never recorded.
                    self.release_all(&order).await?;
                    next.holds = self.hold(&order).await?;
                    self.crash_point("hold")?;
                    next.step = "deposit".into();
                }
                "deposit" => match self.charge_deposit(&order).await? {
                    Ok(charge_id) => {
                        self.crash_point("deposit")?;
                        next.charge_id = charge_id;
                        next.step = "book".into();
                    }
                    Err(reason) => {
                        next.failure = Some(reason);
                        next.step = "compensate".into();
                    }
                },
                "book" if order.holds.is_none() => {
                    next.status = Status::AwaitingParts.code().into();
                    next.step = "await_parts".into();
                    // Due at once: every scheduler tick looks for the parts again.
                    next.next_at = Some(next.updated_at);
                    note = Some("some parts are out of stock; production is booked when they arrive");
                }
                "book" => {
                    self.book(&order, next).await?;
                    return self.reload(&order.id).await;
                }
                "compensate" => {
                    self.undo(&order).await?;
                    self.crash_point("compensate")?;
                    next.holds = None;
                    if order.status != Status::Cancelled.code() {
                        next.status = Status::Failed.code().into();
                    }
                    next.step = "done".into();
                    next.next_at = None;
                    note = next.failure.as_deref().map(|_| "the deposit was not taken; the parts were released");
                }
                _ => return Ok(order),
            }
            if !self.save(&order, &next, note).await? {
                // Someone else moved it on (recovery, a cancellation): show what it is now.
                return self.reload(&order.id).await;
            }
            order = next;
        }
    }

    /// The order an earlier request with the same key placed; the key used for another
    /// configuration is refused.
    async fn keyed(&self, id: &str, config_id: &str) -> Result<OrderRow, FactoryError> {
        let order = self.reload(id).await?;
        if order.config_id != config_id {
            return Err(FactoryError::KeyReused);
        }
        Ok(order)
    }

    async fn reload(&self, id: &str) -> Result<OrderRow, FactoryError> {
        store::find_order(&self.db, id).await?.ok_or_else(|| FactoryError::Internal(format!("order {id} vanished")))
    }

    /// Holds the bill of materials; the hold ids as JSON, or `None` when parts are short.
    /// Sent once: a repeated hold would hold twice (the next attempt releases the owner's
    /// holds first).
    async fn hold(&self, order: &OrderRow) -> Result<Option<String>, FactoryError> {
        let bom: Vec<(String, i64)> = serde_json::from_str(&order.bom).map_err(|e| FactoryError::Internal(e.to_string()))?;
        let lines: Vec<inv::Line> = bom.into_iter().map(|(sku, quantity)| inv::Line { sku, quantity }).collect();
        let line_count = lines.len();
        let hold = inv::HoldRequest { owner: owner(&order.id), lines, ttl_seconds: self.cfg.placing_hold_ttl_secs };
        let reply = self.inventory(Retry::Once, hold, |mut c, r| async move { c.hold(r).await }).await?;
        match reply.outcome() {
            inv::Outcome::Held if reply.holds.len() != line_count => {
                // Never build on a partial hold: give it back and try again later.
                self.release_all(order).await?;
                Err(FactoryError::Internal(format!("inventory held {} of {line_count} parts", reply.holds.len())))
            }
            inv::Outcome::Held => Ok(Some(json(&reply.holds.iter().map(|h| h.hold_id.clone()).collect::<Vec<_>>())?)),
            inv::Outcome::OutOfStock => Ok(None),
            other => Err(FactoryError::Internal(format!("inventory refused the order's hold: {other:?}"))),
        }
    }

    /// The deposit's charge id (`None` when the deposit is zero), or why it was refused.
    async fn charge_deposit(&self, order: &OrderRow) -> Result<Result<Option<String>, String>, FactoryError> {
        if order.deposit == 0 {
            return Ok(Ok(None));
        }
        let charge = ChargeRequest {
            idempotency_key: format!("factory-deposit:{}", order.id),
            user_id: order.user_id.clone(),
            amount_minor: order.deposit,
            currency: order.currency.clone(),
            reference: format!("factory-order:{}", order.id),
            description: format!("Deposit for a new {}", order.model),
        };
        let charge = self.peers.call("payments", Retry::Safe, charge, |ch, r| async move { PaymentsClient::new(ch).charge(r).await }).await;
        match charge {
            Ok(c) => Ok(Ok(Some(c.charge_id))),
            Err(s) if s.code() == Grpc::FailedPrecondition => Ok(Err(s.message().split(':').next().unwrap_or("declined").to_owned())),
            Err(s) => Err(peer("payments", &s)),
        }
    }

    /// Books the earliest day with capacity and schedules the order, in one transaction: a
    /// crash leaves either both or neither, never a slot taken for an order that does not
    /// know it.
    async fn book(&self, order: &OrderRow, mut next: OrderRow) -> Result<(), FactoryError> {
        // Holds live a day at most: renewed now (before a slot is taken, so an unavailable
        // inventory leaves nothing booked), then by the scheduler until production starts.
        if !self.keep_holds(order, &mut next).await? {
            next.status = Status::AwaitingParts.code().into();
            next.step = "await_parts".into();
            next.holds = None;
            next.next_at = Some(next.updated_at);
            self.save(order, &next, Some("the parts' holds lapsed and some are out of stock; production is booked when they arrive"))
                .await?;
            return Ok(());
        }
        let first = domain::earliest_day(next.updated_at, self.cfg.lead_days);
        let mut tx = self.db.begin_write().await?;
        let mut day = store::first_open_day(&mut tx, &self.cfg.plant, first, self.cfg.daily_capacity).await?;
        // A concurrent booking may take the last slot of that day first: look again from it.
        while !store::book_slot(&mut tx, &self.cfg.plant, day, self.cfg.daily_capacity).await? {
            day = store::first_open_day(&mut tx, &self.cfg.plant, day + 1, self.cfg.daily_capacity).await?;
        }
        self.crash_point("book")?;
        next.plant = Some(self.cfg.plant.clone());
        next.production_day = Some(day);
        next.status = Status::Scheduled.code().into();
        next.step = "done".into();
        next.next_at = Some(self.renewal_or_start(next.updated_at, day));
        // Moved meanwhile (a cancellation): dropping the transaction gives the slot back.
        if self.save_in(&mut tx, order, &next, None).await? {
            tx.commit().await?;
            self.outbox.wake();
        }
        Ok(())
    }

    fn renewal_or_start(&self, now: i64, day: i64) -> i64 {
        (now + self.cfg.placing_hold_ttl_secs * 1000 / 2).min(day * DAY_MS)
    }

    /// Renews the order's holds. Any that lapsed (the factory was away longer than their
    /// lifetime) are replaced by holding the whole bill of materials again, recorded in
    /// `next`. False when parts are short now: the order holds nothing.
    async fn keep_holds(&self, order: &OrderRow, next: &mut OrderRow) -> Result<bool, FactoryError> {
        let ids = hold_ids(order)?;
        if ids.is_empty() {
            return Ok(true);
        }
        let extend = inv::ExtendRequest { hold_ids: ids, owner: owner(&order.id), ttl_seconds: self.cfg.placing_hold_ttl_secs };
        let renewed = self.inventory(Retry::Safe, extend, |mut c, r| async move { c.extend(r).await }).await?;
        if renewed.missing_hold_ids.is_empty() {
            return Ok(true);
        }
        tracing::warn!(order = %order.id, lapsed = renewed.missing_hold_ids.len(), "holds lapsed; holding the parts again");
        self.hold_again(order, next).await
    }

    /// Gives back whatever the order still holds and holds its whole bill of materials anew,
    /// recorded in `next`. False when parts are short: it holds nothing.
    async fn hold_again(&self, order: &OrderRow, next: &mut OrderRow) -> Result<bool, FactoryError> {
        self.release_all(order).await?;
        next.holds = self.hold(order).await?;
        Ok(next.holds.is_some())
    }

    /// A booked order whose holds lapsed and whose parts are short now: back to waiting for
    /// them, its production day given back, in one transaction.
    async fn wait_for_parts_again(&self, order: &OrderRow, mut next: OrderRow, day: i64) -> Result<bool, FactoryError> {
        next.status = Status::AwaitingParts.code().into();
        next.step = "await_parts".into();
        next.holds = None;
        next.plant = None;
        next.production_day = None;
        next.next_at = Some(next.updated_at);
        let mut tx = self.db.begin_write().await?;
        let note = Some("the parts' holds lapsed and some are out of stock; production is booked again when they arrive");
        if !self.save_in(&mut tx, order, &next, note).await? {
            return Ok(false);
        }
        if let Some(plant) = &order.plant {
            store::free_slot(&mut tx, plant, day).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(true)
    }

    /// Gives back what an order took: its holds and its deposit.
    async fn undo(&self, order: &OrderRow) -> Result<(), FactoryError> {
        self.release_all(order).await?;
        if let Some(charge_id) = &order.charge_id {
            let refund = RefundRequest {
                idempotency_key: format!("factory-refund:{}", order.id),
                charge_id: charge_id.clone(),
                amount_minor: order.deposit,
                reason: "order cancelled before production".into(),
            };
            self.peers
                .call("payments", Retry::Safe, refund, |ch, r| async move { PaymentsClient::new(ch).refund(r).await })
                .await
                .map_err(|s| peer("payments", &s))?;
        }
        Ok(())
    }

    /// Cancels an order before production: marked cancelled first (so the scheduler cannot
    /// start it meanwhile), then holds released, deposit refunded, slot freed. `None` when it
    /// is past cancelling.
    pub async fn cancel(&self, mut order: OrderRow) -> Result<Option<OrderRow>, FactoryError> {
        let next = loop {
            let status = Status::parse(&order.status);
            if !status.is_some_and(Status::is_cancellable) || !matches!(order.step.as_str(), "done" | "await_parts") {
                return Ok(None);
            }
            let mut next = order.clone();
            next.status = Status::Cancelled.code().into();
            next.step = "compensate".into();
            next.next_at = None;
            next.updated_at = self.clock.now_ms().max(order.updated_at + 1);
            if self.save(&order, &next, Some("cancelled by the buyer; the deposit is refunded")).await? {
                break next;
            }
            // The scheduler wrote first (a renewal, the start of production): look again.
            order = self.reload(&order.id).await?;
        };
        if let (Some(plant), Some(day)) = (&order.plant, order.production_day) {
            let mut tx = self.db.begin_write().await?;
            store::free_slot(&mut tx, plant, day).await?;
            tx.commit().await?;
        }
        Ok(Some(self.advance(next).await?))
    }

    /// Moves every due order one stage on the plan (or renews its holds, or retries its parts).
    pub async fn tick(&self) -> Result<usize, FactoryError> {
        let now = self.clock.now_ms();
        let due = store::due_orders(&self.db, now, 100).await?;
        let mut moved = 0;
        for order in due {
            let result = self.step_on_plan(order, now).await;
            match result {
                Ok(true) => moved += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "an order waits for the next tick"),
            }
        }
        Ok(moved)
    }

    async fn step_on_plan(&self, order: OrderRow, now: i64) -> Result<bool, FactoryError> {
        let Some(status) = Status::parse(&order.status) else { return Ok(false) };
        // Taken first, so of several schedulers (replicas) exactly one works on the order this
        // round: the write moves `updated_at` on, and every later write is conditional on it.
        let mut taken = order.clone();
        taken.updated_at = now.max(order.updated_at + 1);
        if !self.save(&order, &taken, None).await? {
            return Ok(false);
        }
        let order = taken;
        let now = order.updated_at;
        if status == Status::AwaitingParts {
            let mut next = order.clone();
            next.updated_at = now;
            // An attempt a crash cut off after its hold would otherwise keep those parts from
            // this one for as long as they are held.
            self.release_all(&order).await?;
            match self.hold(&order).await? {
                Some(holds) => {
                    self.crash_point("parts_hold")?;
                    next.holds = Some(holds);
                    next.step = "book".into();
                    next.next_at = None;
                    if self.save(&order, &next, None).await? {
                        self.advance(next).await?;
                        return Ok(true);
                    }
                    // Moved meanwhile (cancelled): give the fresh holds back.
                    self.release_all(&order).await?;
                    return Ok(false);
                }
                None => return Ok(false),
            }
        }
        let (Some(day), Some((stage, offset))) = (order.production_day, status.next_on_plan()) else { return Ok(false) };
        let start = day * DAY_MS;
        let starting = stage == Status::InProduction && now >= start + offset;
        // Production starts: marked first (step "starting"), so a cancellation can no longer
        // win once the parts are used; a crash after the mark resumes here on the next tick.
        let order = if starting && order.step != "starting" {
            let mut mark = order.clone();
            mark.step = "starting".into();
            mark.updated_at = now + 1;
            if !self.save(&order, &mark, None).await? {
                return Ok(false);
            }
            mark
        } else {
            order
        };
        let mut next = order.clone();
        next.updated_at = order.updated_at;
        // Until production starts the holds are kept alive.
        if order.holds.is_some() && !starting && !self.keep_holds(&order, &mut next).await? {
            return self.wait_for_parts_again(&order, next, day).await;
        }
        if now < start + offset {
            next.next_at = Some(self.renewal_or_start(now, day));
            self.save_or_give_back(&order, &next).await?;
            return Ok(false);
        }
        if starting {
            let commit = inv::CommitRequest {
                hold_ids: hold_ids(&order)?,
                owner: owner(&order.id),
                reference: format!("factory-order:{}", order.id),
            };
            let done = self.inventory(Retry::Safe, commit, |mut c, r| async move { c.commit(r).await }).await?;
            // A retried commit answers with the earlier sales: only lapsed holds fail it.
            if !done.committed {
                tracing::warn!(order = %order.id, lapsed = ?done.missing_hold_ids, "holds lapsed before production; holding the parts again");
                if !self.hold_again(&order, &mut next).await? {
                    return self.wait_for_parts_again(&order, next, day).await;
                }
                // Recorded first, used on the next tick: a crash in between cannot use them twice.
                next.next_at = Some(now);
                self.save_or_give_back(&order, &next).await?;
                return Ok(false);
            }
            self.crash_point("commit")?;
            next.holds = None;
            next.step = "done".into();
        }
        next.status = stage.code().into();
        next.next_at = stage.next_on_plan().map(|(_, o)| start + o);
        self.save_or_give_back(&order, &next).await
    }

    /// Saves `next` over `order`; when another writer came first (a cancellation), gives back
    /// the holds this attempt made that it never recorded.
    async fn save_or_give_back(&self, order: &OrderRow, next: &OrderRow) -> Result<bool, FactoryError> {
        if self.save(order, next, None).await? {
            return Ok(true);
        }
        let known = hold_ids(order)?;
        let made: Vec<String> = hold_ids(next)?.into_iter().filter(|h| !known.contains(h)).collect();
        if !made.is_empty() {
            let release = inv::ReleaseRequest { hold_ids: made, owner: owner(&order.id) };
            self.inventory(Retry::Safe, release, |mut c, r| async move { c.release(r).await }).await?;
        }
        Ok(false)
    }

    /// Resumes placing sagas a crash or an outage stopped part way.
    pub async fn recover(&self) -> Result<(), FactoryError> {
        for order in store::stalled_orders(&self.db, self.clock.now_ms() - self.cfg.resume_after_ms, 20).await? {
            let id = order.id.clone();
            if let Err(e) = self.advance(order).await {
                tracing::warn!(order = %id, error = %e, "an interrupted order is not finished yet");
            }
        }
        Ok(())
    }

    /// The scheduler and recovery, until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = Duration::from_millis(self.cfg.tick_ms);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            if let Err(e) = self.tick().await {
                tracing::debug!(error = %e, "factory tick failed");
            }
            if let Err(e) = self.recover().await {
                tracing::debug!(error = %e, "factory recovery failed");
            }
        }
    }

    /// Puts every demo catalog option's part in stock once inventory answers.
    pub async fn seed_demo_stock(self: std::sync::Arc<Self>, skus: Vec<String>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            match self.try_seed(&skus).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "factory demo stock waits for inventory"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn try_seed(&self, skus: &[String]) -> Result<(), FactoryError> {
        for sku in skus {
            let set = inv::SetStockRequest { sku: sku.clone(), quantity: self.cfg.demo_stock_per_part, only_if_absent: true };
            self.inventory(Retry::Safe, set, |mut c, r| async move { c.set_stock(r).await }).await?;
        }
        Ok(())
    }
}
