//! Inventory's use cases: hold, adjust, extend, release, commit, sweep, set stock.
//!
//! Every change is one database transaction that keeps the counters, the hold rows and the
//! events together (see `store`). On PostgreSQL the two hot operations, a one-line hold and a
//! one-hold release, are a single autocommit statement each; anything unusual about them
//! (too little stock, an unknown SKU, the owner's cap, a race) falls back to the general
//! transaction, which also gives back the units of expired holds before it refuses anyone.

use std::collections::BTreeMap;

use motorpool_platform::clock::{Clock, rfc3339_ms};
use motorpool_platform::db::{Db, Dialect, Tx};
use motorpool_platform::events::Outbox;
use motorpool_platform::metrics::{Counter, Metrics};

use crate::config::InventoryConfig;
use crate::domain::{self, Line, MAX_LINES};
use crate::events;
use crate::store::{self, Counters, HoldRow, Level, SaleRow, SetOutcome};

/// Why a request could not be served at all (refusals are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

/// What a hold or adjust request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Held(Vec<HoldRow>),
    OutOfStock(Vec<Shortage>),
    UnknownSku(Vec<Shortage>),
    OwnerCapExceeded { cap: i64, held: i64 },
    HoldNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    pub committed: bool,
    pub sales: Vec<SaleRow>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    pub holds: Vec<HoldRow>,
    pub missing: Vec<String>,
}

/// Domain counters, registered once.
#[derive(Clone)]
pub struct InventoryMetrics {
    held: Counter,
    out_of_stock: Counter,
    cap_exceeded: Counter,
    released: Counter,
    committed: Counter,
    expired: Counter,
    lazily_expired: Counter,
    /// `ReleaseMany` statements that released something, and the holds they released: their
    /// ratio is the batch size the callers' queues reach.
    release_batches: Counter,
    batch_released: Counter,
}

impl InventoryMetrics {
    pub fn new(m: &Metrics) -> Self {
        let holds = |outcome| m.counter("inventory_hold_requests_total", "Hold requests by outcome", &[("outcome", outcome)]);
        let ended = |how| m.counter("inventory_holds_ended_total", "Holds that ended, by how", &[("how", how)]);
        Self {
            held: holds("held"),
            out_of_stock: holds("out_of_stock"),
            cap_exceeded: holds("owner_cap_exceeded"),
            released: ended("released"),
            committed: ended("committed"),
            expired: ended("expired_by_sweeper"),
            lazily_expired: ended("expired_on_demand"),
            release_batches: m.counter("inventory_release_batches_total", "ReleaseMany calls that released at least one hold", &[]),
            batch_released: m.counter("inventory_release_batch_holds_total", "Holds released by ReleaseMany calls", &[]),
        }
    }
}

pub struct Inventory {
    pub db: Db,
    pub outbox: Outbox,
    pub clock: Clock,
    pub metrics: InventoryMetrics,
    pub cfg: InventoryConfig,
}

/// Attempts of a transaction that PostgreSQL aborted as a deadlock victim or serialization
/// failure.
const ATTEMPTS: usize = 4;

fn created(h: &HoldRow) -> events::HoldCreated {
    events::HoldCreated {
        hold_id: h.id.clone(),
        owner: h.owner.clone(),
        sku: h.sku.clone(),
        quantity: h.quantity,
        expires_at: rfc3339_ms(h.expires_at),
    }
}

fn crossed_low(before_available: i64, after: Counters, threshold: i64) -> bool {
    let after_available = after.quantity - after.held;
    after_available < threshold && before_available >= threshold
}

impl Inventory {
    fn ttl_ms(&self, ttl_secs: i64) -> Result<i64, InventoryError> {
        let ttl = if ttl_secs == 0 { self.cfg.hold_ttl_secs as i64 } else { ttl_secs };
        if ttl < 1 || ttl as u64 > self.cfg.max_hold_ttl_secs {
            return Err(InventoryError::Invalid(format!("ttl_seconds must be between 1 and {}", self.cfg.max_hold_ttl_secs)));
        }
        Ok(ttl * 1000)
    }

    async fn add_low_event(&self, tx: &mut Tx, sku: &str, c: Counters) -> Result<(), sqlx::Error> {
        let data = events::StockLow {
            sku: sku.to_owned(),
            quantity: c.quantity,
            held: c.held,
            available: c.quantity - c.held,
            threshold: self.cfg.low_stock_threshold,
        };
        self.outbox.add(tx, events::STOCK_LOW, sku, &data).await?;
        Ok(())
    }

    /// Gives back the units of deleted holds (to their SKUs, then their owners, each in key
    /// order) and records why they ended.
    async fn return_units(&self, tx: &mut Tx, rows: &[HoldRow], kind: &'static str, now: i64) -> Result<(), sqlx::Error> {
        let mut by_sku: BTreeMap<&str, i64> = BTreeMap::new();
        let mut by_owner: BTreeMap<&str, i64> = BTreeMap::new();
        for h in rows {
            *by_sku.entry(&h.sku).or_default() += h.quantity;
            *by_owner.entry(&h.owner).or_default() += h.quantity;
        }
        for (sku, q) in by_sku {
            store::give_back(tx, sku, q, now).await?;
        }
        for (owner, q) in by_owner {
            store::owner_sub(tx, owner, q).await?;
        }
        for h in rows {
            let data = events::HoldEnded { hold_id: h.id.clone(), owner: h.owner.clone(), sku: h.sku.clone(), quantity: h.quantity };
            self.outbox.add(tx, kind, &h.id, &data).await?;
        }
        Ok(())
    }

    /// Deletes the expired holds of `sku` and gives their units back; how many there were.
    async fn expire_sku(&self, tx: &mut Tx, sku: &str, now: i64) -> Result<usize, sqlx::Error> {
        let rows = store::delete_expired_of_sku(tx, sku, now).await?;
        if !rows.is_empty() {
            self.return_units(tx, &rows, events::HOLD_EXPIRED, now).await?;
            self.metrics.lazily_expired.add(rows.len() as u64);
        }
        Ok(rows.len())
    }

    /// Holds every line for `owner`, or none.
    pub async fn hold(&self, owner: &str, lines: Vec<Line>, ttl_secs: i64) -> Result<HoldOutcome, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        let lines = domain::normalize_lines(lines, self.cfg.owner_cap_units).map_err(InventoryError::Invalid)?;
        let ttl = self.ttl_ms(ttl_secs)?;
        if self.db.dialect() == Dialect::Postgres
            && let [line] = lines.as_slice()
            && let Some(outcome) = self.hold_fast(owner, line, ttl).await?
        {
            return Ok(outcome);
        }
        // A refusal by the owner's cap is checked once more with the owner's expired holds
        // gone, since those no longer count.
        let mut expire_owner = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.hold_tx(owner, &lines, ttl, expire_owner).await {
                Ok(HoldOutcome::OwnerCapExceeded { .. }) if !expire_owner => expire_owner = true,
                Ok(outcome) => return Ok(self.count(outcome)),
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn count(&self, outcome: HoldOutcome) -> HoldOutcome {
        match &outcome {
            HoldOutcome::Held(_) => self.metrics.held.add(1),
            HoldOutcome::OutOfStock(_) | HoldOutcome::UnknownSku(_) => self.metrics.out_of_stock.add(1),
            HoldOutcome::OwnerCapExceeded { .. } => self.metrics.cap_exceeded.add(1),
            HoldOutcome::HoldNotFound => {}
        }
        outcome
    }

    /// PostgreSQL's one-statement hold; `None` when the general path must decide.
    async fn hold_fast(&self, owner: &str, line: &Line, ttl: i64) -> Result<Option<HoldOutcome>, InventoryError> {
        let now = self.clock.now_ms();
        let hold = HoldRow {
            id: uuid::Uuid::now_v7().to_string(),
            owner: owner.to_owned(),
            sku: line.sku.clone(),
            quantity: line.quantity,
            created_at: now,
            expires_at: now + ttl,
        };
        let (_, created_row) = self.outbox.prepare(events::HOLD_CREATED, &hold.id, &created(&hold))?;
        let (_, low_row) = self.outbox.prepare(
            events::STOCK_LOW,
            &hold.sku,
            &events::StockLow { sku: hold.sku.clone(), quantity: 0, held: 0, available: 0, threshold: self.cfg.low_stock_threshold },
        )?;
        match store::hold_one_statement(&self.db, &hold, self.cfg.owner_cap_units, &created_row, &low_row, self.cfg.low_stock_threshold)
            .await
        {
            Ok(Some(_)) => {
                self.outbox.wake();
                self.metrics.held.add(1);
                Ok(Some(HoldOutcome::Held(vec![hold])))
            }
            Ok(None) => Ok(None),
            Err(e) if store::is_check_violation(&e, "owner_holds_cap") || store::is_retryable(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn hold_tx(&self, owner: &str, lines: &[Line], ttl: i64, expire_owner: bool) -> Result<HoldOutcome, sqlx::Error> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin_write().await?;
        if expire_owner {
            let rows = store::delete_expired_of_owner(&mut tx, owner, now).await?;
            if !rows.is_empty() {
                self.return_units(&mut tx, &rows, events::HOLD_EXPIRED, now).await?;
                self.metrics.lazily_expired.add(rows.len() as u64);
            }
        }
        let mut shortages = Vec::new();
        let mut unknown = false;
        let mut taken: Vec<(&Line, Counters)> = Vec::with_capacity(lines.len());
        for line in lines {
            // Once one line is refused nothing more is taken; the rest is only checked, so the
            // answer lists every short line.
            let taking = shortages.is_empty();
            let mut got = None;
            if taking {
                got = store::try_take(&mut tx, &line.sku, line.quantity, now).await?;
                if got.is_none() && self.expire_sku(&mut tx, &line.sku, now).await? > 0 {
                    got = store::try_take(&mut tx, &line.sku, line.quantity, now).await?;
                }
            }
            if let Some(c) = got {
                taken.push((line, c));
                continue;
            }
            // A refused take is looked at again under the row's lock: stock that arrived since
            // (a restock committed between the statements) is taken now, never skipped.
            let counters =
                if taking { store::lock_counters(&mut tx, &line.sku).await? } else { store::counters(&mut tx, &line.sku).await? };
            let available = match counters {
                Some(c) if c.quantity - c.held >= line.quantity && taking => {
                    match store::try_take(&mut tx, &line.sku, line.quantity, now).await? {
                        Some(c) => {
                            taken.push((line, c));
                            continue;
                        }
                        None => c.quantity - c.held,
                    }
                }
                Some(c) if c.quantity - c.held >= line.quantity => continue,
                Some(c) => c.quantity - c.held,
                None => {
                    unknown = true;
                    0
                }
            };
            shortages.push(Shortage { sku: line.sku.clone(), requested: line.quantity, available });
        }
        debug_assert!(!shortages.is_empty() || taken.len() == lines.len(), "a granted hold covers every line");
        if !shortages.is_empty() {
            tx.rollback().await?;
            return Ok(if unknown { HoldOutcome::UnknownSku(shortages) } else { HoldOutcome::OutOfStock(shortages) });
        }
        let total: i64 = taken.iter().map(|(l, _)| l.quantity).sum();
        let cap = self.cfg.owner_cap_units;
        match store::owner_add(&mut tx, owner, total, cap).await {
            Ok(_) => {}
            Err(e) if store::is_check_violation(&e, "owner_holds_cap") => {
                tx.rollback().await?;
                let held = store::owner_live_held(&self.db, owner, now).await?;
                return Ok(HoldOutcome::OwnerCapExceeded { cap, held });
            }
            Err(e) => return Err(e),
        }
        let mut holds = Vec::with_capacity(taken.len());
        for (line, after) in taken {
            let hold = HoldRow {
                id: uuid::Uuid::now_v7().to_string(),
                owner: owner.to_owned(),
                sku: line.sku.clone(),
                quantity: line.quantity,
                created_at: now,
                expires_at: now + ttl,
            };
            store::insert_hold(&mut tx, &hold).await?;
            self.outbox.add(&mut tx, events::HOLD_CREATED, &hold.id, &created(&hold)).await?;
            if crossed_low(after.quantity - after.held + line.quantity, after, self.cfg.low_stock_threshold) {
                self.add_low_event(&mut tx, &line.sku, after).await?;
            }
            holds.push(hold);
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(HoldOutcome::Held(holds))
    }

    /// Sets one hold's quantity (and, with `ttl_secs` > 0, its expiry).
    pub async fn adjust(&self, id: &str, owner: &str, quantity: i64, ttl_secs: i64) -> Result<HoldOutcome, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        if !(1..=self.cfg.owner_cap_units).contains(&quantity) {
            return Err(InventoryError::Invalid(format!("quantity must be between 1 and {}", self.cfg.owner_cap_units)));
        }
        let ttl = if ttl_secs > 0 { Some(self.ttl_ms(ttl_secs)?) } else { None };
        for attempt in 1..=ATTEMPTS {
            match self.adjust_tx(id, owner, quantity, ttl).await {
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => continue,
                r => return Ok(r?),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn adjust_tx(&self, id: &str, owner: &str, quantity: i64, ttl: Option<i64>) -> Result<HoldOutcome, sqlx::Error> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin_write().await?;
        let Some(mut hold) = store::lock_live_hold(&mut tx, id, owner, now).await? else {
            tx.rollback().await?;
            return Ok(HoldOutcome::HoldNotFound);
        };
        let delta = quantity - hold.quantity;
        if delta > 0 {
            let mut got = store::try_take(&mut tx, &hold.sku, delta, now).await?;
            if got.is_none() && self.expire_sku(&mut tx, &hold.sku, now).await? > 0 {
                got = store::try_take(&mut tx, &hold.sku, delta, now).await?;
            }
            let Some(after) = got else {
                let c = store::counters(&mut tx, &hold.sku).await?.unwrap_or(Counters { quantity: 0, held: 0 });
                tx.rollback().await?;
                let available = c.quantity - c.held + hold.quantity;
                return Ok(HoldOutcome::OutOfStock(vec![Shortage { sku: hold.sku, requested: quantity, available }]));
            };
            match store::owner_add(&mut tx, owner, delta, self.cfg.owner_cap_units).await {
                Ok(_) => {}
                Err(e) if store::is_check_violation(&e, "owner_holds_cap") => {
                    tx.rollback().await?;
                    let held = store::owner_live_held(&self.db, owner, now).await?;
                    return Ok(HoldOutcome::OwnerCapExceeded { cap: self.cfg.owner_cap_units, held });
                }
                Err(e) => return Err(e),
            }
            if crossed_low(after.quantity - after.held + delta, after, self.cfg.low_stock_threshold) {
                self.add_low_event(&mut tx, &hold.sku, after).await?;
            }
        } else if delta < 0 {
            store::give_back(&mut tx, &hold.sku, -delta, now).await?;
            store::owner_sub(&mut tx, owner, -delta).await?;
        }
        let previous = hold.quantity;
        hold.quantity = quantity;
        if let Some(ttl) = ttl {
            hold.expires_at = now + ttl;
        }
        store::update_hold(&mut tx, &hold.id, hold.quantity, hold.expires_at).await?;
        if delta != 0 {
            let data = events::HoldAdjusted {
                hold_id: hold.id.clone(),
                owner: hold.owner.clone(),
                sku: hold.sku.clone(),
                quantity,
                previous_quantity: previous,
            };
            self.outbox.add(&mut tx, events::HOLD_ADJUSTED, &hold.id, &data).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(HoldOutcome::Held(vec![hold]))
    }

    /// Moves the expiry of the owner's live holds among `ids` to `ttl_secs` from now.
    pub async fn extend(&self, ids: &[String], owner: &str, ttl_secs: i64) -> Result<Extended, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        let ids = domain::normalize_ids(ids)?;
        let ttl = self.ttl_ms(ttl_secs)?;
        for attempt in 1..=ATTEMPTS {
            let r: Result<Extended, sqlx::Error> = async {
                let now = self.clock.now_ms();
                let mut tx = self.db.begin_write().await?;
                let mut out = Extended { holds: Vec::new(), missing: Vec::new() };
                for id in &ids {
                    match store::lock_live_hold(&mut tx, id, owner, now).await? {
                        Some(mut h) => {
                            h.expires_at = now + ttl;
                            store::update_hold(&mut tx, &h.id, h.quantity, h.expires_at).await?;
                            out.holds.push(h);
                        }
                        None => out.missing.push(id.clone()),
                    }
                }
                tx.commit().await?;
                Ok(out)
            }
            .await;
            match r {
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => continue,
                r => return Ok(r?),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Releases the owner's holds among `ids`; how many there were.
    pub async fn release(&self, ids: &[String], owner: &str) -> Result<i64, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        let ids = domain::normalize_ids(ids)?;
        if self.db.dialect() == Dialect::Postgres
            && let [id] = ids.as_slice()
        {
            let data = events::HoldEnded { hold_id: id.clone(), owner: owner.to_owned(), sku: String::new(), quantity: 0 };
            let (_, row) = self.outbox.prepare(events::HOLD_RELEASED, id, &data)?;
            match store::release_one_statement(&self.db, id, owner, self.clock.now_ms(), &row).await {
                Ok(done) => {
                    if done {
                        self.outbox.wake();
                        self.metrics.released.add(1);
                    }
                    return Ok(i64::from(done));
                }
                Err(e) if store::is_retryable(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for attempt in 1..=ATTEMPTS {
            let r: Result<i64, sqlx::Error> = async {
                let now = self.clock.now_ms();
                let mut tx = self.db.begin_write().await?;
                let mut rows = Vec::new();
                for id in &ids {
                    if let Some(h) = store::delete_hold(&mut tx, id, owner).await? {
                        rows.push(h);
                    }
                }
                self.return_units(&mut tx, &rows, events::HOLD_RELEASED, now).await?;
                tx.commit().await?;
                if !rows.is_empty() {
                    self.outbox.wake();
                }
                Ok(rows.len() as i64)
            }
            .await;
            match r {
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => continue,
                Ok(n) => {
                    self.metrics.released.add(n as u64);
                    return Ok(n);
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Releases every hold of `owner`; how many there were.
    pub async fn release_owner(&self, owner: &str) -> Result<i64, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        let mut released = 0;
        loop {
            // Expired holds too: they still count until the sweeper takes them.
            let ids: Vec<String> = store::holds_of(&self.db, owner, i64::MIN).await?.into_iter().map(|h| h.id).take(MAX_LINES).collect();
            if ids.is_empty() {
                return Ok(released);
            }
            let n = self.release(&ids, owner).await?;
            if n == 0 {
                return Ok(released);
            }
            released += n;
        }
    }

    /// Releases holds of many owners, as a caller's release queue gathers them: how many were
    /// released, and the entries refused as malformed (retrying those cannot help).
    pub async fn release_many(&self, entries: Vec<(String, String)>) -> Result<(i64, Vec<(String, String)>), InventoryError> {
        if entries.len() > MAX_LINES {
            return Err(InventoryError::Invalid(format!("give at most {MAX_LINES} holds")));
        }
        let (mut good, rejected): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(id, owner)| domain::check_owner(owner).is_ok() && domain::normalize_ids(std::slice::from_ref(id)).is_ok());
        good.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        good.dedup();
        if good.is_empty() {
            return Ok((0, rejected));
        }
        if self.db.dialect() != Dialect::Postgres {
            // SQLite writes one transaction at a time anyway: one release per owner.
            let mut released = 0;
            for chunk in good.chunk_by(|a, b| a.1 == b.1) {
                let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
                released += self.release(&ids, &chunk[0].1).await?;
            }
            if released > 0 {
                self.metrics.release_batches.add(1);
                self.metrics.batch_released.add(released as u64);
            }
            return Ok((released, rejected));
        }
        let mut rows = Vec::with_capacity(good.len());
        for (id, owner) in &good {
            let data = events::HoldEnded { hold_id: id.clone(), owner: owner.clone(), sku: String::new(), quantity: 0 };
            rows.push(self.outbox.prepare(events::HOLD_RELEASED, id, &data)?.1);
        }
        for attempt in 1..=ATTEMPTS {
            match store::release_many_one_statement(&self.db, &good, self.clock.now_ms(), &rows).await {
                Ok(ids) => {
                    if !ids.is_empty() {
                        self.outbox.wake();
                        self.metrics.released.add(ids.len() as u64);
                        self.metrics.release_batches.add(1);
                        self.metrics.batch_released.add(ids.len() as u64);
                    }
                    return Ok((ids.len() as i64, rejected));
                }
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Turns the owner's holds among `ids` into sales, all or none. Holds sold by an earlier
    /// commit count as committed, so a retry succeeds without selling twice.
    pub async fn commit(&self, ids: &[String], owner: &str, reference: &str) -> Result<CommitOutcome, InventoryError> {
        domain::check_owner(owner).map_err(InventoryError::Invalid)?;
        let ids = domain::normalize_ids(ids)?;
        let reference = reference.trim();
        if reference.is_empty() || reference.len() > 200 {
            return Err(InventoryError::Invalid("reference must be 1 to 200 characters".into()));
        }
        for attempt in 1..=ATTEMPTS {
            match self.commit_tx(&ids, owner, reference).await {
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => continue,
                r => return Ok(r?),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn commit_tx(&self, ids: &[String], owner: &str, reference: &str) -> Result<CommitOutcome, sqlx::Error> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin_write().await?;
        let mut fresh = Vec::new();
        let mut earlier = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            if let Some(h) = store::delete_live_hold(&mut tx, id, owner, now).await? {
                fresh.push(h);
            } else if let Some(sale) = store::find_sale(&mut tx, id, owner).await? {
                earlier.push(sale);
            } else {
                missing.push(id.clone());
            }
        }
        if !missing.is_empty() {
            tx.rollback().await?;
            return Ok(CommitOutcome { committed: false, sales: Vec::new(), missing });
        }
        let mut by_sku: BTreeMap<&str, i64> = BTreeMap::new();
        let mut by_owner: i64 = 0;
        for h in &fresh {
            *by_sku.entry(&h.sku).or_default() += h.quantity;
            by_owner += h.quantity;
        }
        for (sku, q) in by_sku {
            let after = store::sell(&mut tx, sku, q, now).await?;
            // Selling held units leaves `available` as it was; only a count that already sat
            // below the threshold stays there, so no low-stock event is due here.
            debug_assert!(after.held >= 0);
        }
        if by_owner > 0 {
            store::owner_sub(&mut tx, owner, by_owner).await?;
        }
        let mut sales = earlier;
        for h in &fresh {
            let sale = SaleRow {
                hold_id: h.id.clone(),
                owner: h.owner.clone(),
                sku: h.sku.clone(),
                quantity: h.quantity,
                reference: reference.to_owned(),
                committed_at: now,
            };
            store::insert_sale(&mut tx, &sale).await?;
            let data = events::HoldCommitted {
                hold_id: h.id.clone(),
                owner: h.owner.clone(),
                sku: h.sku.clone(),
                quantity: h.quantity,
                reference: reference.to_owned(),
            };
            self.outbox.add(&mut tx, events::HOLD_COMMITTED, &h.id, &data).await?;
            sales.push(sale);
        }
        tx.commit().await?;
        if !fresh.is_empty() {
            self.outbox.wake();
            self.metrics.committed.add(fresh.len() as u64);
        }
        Ok(CommitOutcome { committed: true, sales, missing })
    }

    /// Stock levels of `skus` that exist, in the order asked.
    pub async fn availability(&self, skus: &[String]) -> Result<Vec<(String, Level)>, InventoryError> {
        if skus.len() > 500 {
            return Err(InventoryError::Invalid("at most 500 SKUs per request".into()));
        }
        let found = store::levels(&self.db, skus, self.clock.now_ms()).await?;
        let map: BTreeMap<String, Level> = found.into_iter().collect();
        Ok(skus.iter().filter_map(|s| map.get(s).map(|l| (s.clone(), *l))).collect())
    }

    /// Creates a SKU or sets its quantity.
    pub async fn set_stock(&self, sku: &str, quantity: i64, only_if_absent: bool) -> Result<SetOutcome, InventoryError> {
        domain::check_sku(sku).map_err(InventoryError::Invalid)?;
        if !(0..=1_000_000_000).contains(&quantity) {
            return Err(InventoryError::Invalid("quantity must be between 0 and 1000000000".into()));
        }
        for attempt in 1..=ATTEMPTS {
            let r: Result<SetOutcome, sqlx::Error> = async {
                let now = self.clock.now_ms();
                let mut tx = self.db.begin_write().await?;
                if !only_if_absent {
                    self.expire_sku(&mut tx, sku, now).await?;
                }
                let outcome = store::set_stock(&mut tx, sku, quantity, only_if_absent, now).await?;
                if let SetOutcome::Set { before, after } = outcome {
                    let before_available = before.map_or(i64::MAX, |b| b.quantity - b.held);
                    if crossed_low(before_available, after, self.cfg.low_stock_threshold) {
                        self.add_low_event(&mut tx, sku, after).await?;
                    }
                }
                tx.commit().await?;
                self.outbox.wake();
                Ok(outcome)
            }
            .await;
            match r {
                Err(e) if store::is_retryable(&e) && attempt < ATTEMPTS => continue,
                // Two first-time creations raced: the loser sets the row the winner made.
                Err(e) if motorpool_platform::db::is_unique_violation(&e) && attempt < ATTEMPTS => continue,
                r => return Ok(r?),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Deletes expired holds in batches and gives their units back; how many there were.
    pub async fn sweep(&self) -> Result<usize, sqlx::Error> {
        const BATCH: i64 = 500;
        let mut total = 0;
        loop {
            let now = self.clock.now_ms();
            let mut tx = self.db.begin_write().await?;
            let rows = store::delete_expired_batch(&mut tx, now, BATCH).await?;
            if rows.is_empty() {
                tx.rollback().await?;
                break;
            }
            self.return_units(&mut tx, &rows, events::HOLD_EXPIRED, now).await?;
            tx.commit().await?;
            self.outbox.wake();
            self.metrics.expired.add(rows.len() as u64);
            total += rows.len();
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
        if total > 0 {
            store::prune_idle_owners(&self.db).await?;
        }
        Ok(total)
    }

    /// Runs [`Inventory::sweep`] every `sweep_interval_ms` until `shutdown`.
    pub async fn run_sweeper(self: std::sync::Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = std::time::Duration::from_millis(self.cfg.sweep_interval_ms);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "swept expired holds"),
                // Deadlock victims and the like: the next round takes them.
                Err(e) if store::is_retryable(&e) => {}
                Err(e) => tracing::warn!(error = %e, "hold sweeper"),
            }
        }
    }
}
