//! The cart's hot statements, grouped on PostgreSQL: concurrent adds read their carts in one
//! statement and write their new lines in another, and concurrent removals go together (see
//! `motorpool_platform::batch`). Each item gets the outcome its own statement would have given.

use motorpool_platform::batch::{Group, GroupCounters, Grouped};
use motorpool_platform::clock::Clock;
use motorpool_platform::db::{Db, Dialect};
use motorpool_platform::metrics::Metrics;

use crate::store::{self, AddView, NewLine, Removal};

/// Most items in one statement.
const MAX_ITEMS: usize = 64;
/// Statements of one kind running at once; calls made while all run queue for the next.
const IN_FLIGHT: usize = 2;

pub struct CartStatements {
    pub views: Grouped<AddViews>,
    pub inserts: Grouped<LineInserts>,
    pub removals: Grouped<LineRemovals>,
}

impl CartStatements {
    /// Grouped on PostgreSQL; on SQLite each statement runs on its own.
    pub fn start(db: &Db, clock: &Clock, metrics: &Metrics) -> Self {
        if db.dialect() != Dialect::Postgres {
            return Self {
                views: Grouped::direct(AddViews { db: db.clone(), clock: clock.clone() }),
                inserts: Grouped::direct(LineInserts { db: db.clone(), clock: clock.clone() }),
                removals: Grouped::direct(LineRemovals { db: db.clone(), clock: clock.clone() }),
            };
        }
        let counters = |kind| GroupCounters {
            statements: metrics.counter("shop_grouped_statements_total", "Grouped cart statements run, by kind", &[("kind", kind)]),
            items: metrics.counter("shop_grouped_items_total", "Cart changes those statements carried, by kind", &[("kind", kind)]),
        };
        let (db, clock) = (db.clone(), clock.clone());
        Self {
            views: Grouped::start(AddViews { db: db.clone(), clock: clock.clone() }, MAX_ITEMS, IN_FLIGHT, counters("add_view")),
            inserts: Grouped::start(LineInserts { db: db.clone(), clock: clock.clone() }, MAX_ITEMS, IN_FLIGHT, counters("line_insert")),
            removals: Grouped::start(LineRemovals { db, clock }, MAX_ITEMS, IN_FLIGHT, counters("line_removal")),
        }
    }
}

/// The read before an add: (user id, product code).
pub struct AddViews {
    db: Db,
    clock: Clock,
}

impl Group for AddViews {
    type Item = (String, String);
    type Output = Option<AddView>;
    fn key(item: &Self::Item) -> &str {
        &item.0
    }
    async fn one(&self, (user, code): &Self::Item) -> Result<Self::Output, sqlx::Error> {
        store::view_for_add(&self.db, user, code, self.clock.now_ms()).await
    }
    async fn many(&self, items: &[Self::Item]) -> Result<Vec<Self::Output>, sqlx::Error> {
        store::views_for_add(&self.db, items, self.clock.now_ms()).await
    }
}

/// The write of a new line after its hold, keyed by cart.
pub struct LineInserts {
    db: Db,
    clock: Clock,
}

impl Group for LineInserts {
    type Item = NewLine;
    type Output = bool;
    fn key(item: &Self::Item) -> &str {
        &item.cart_id
    }
    async fn one(&self, l: &Self::Item) -> Result<bool, sqlx::Error> {
        store::insert_new_line(&self.db, l, self.clock.now_ms()).await
    }
    async fn many(&self, items: &[Self::Item]) -> Result<Vec<bool>, sqlx::Error> {
        store::insert_new_lines(&self.db, items, self.clock.now_ms()).await
    }
}

/// A line's removal: (user id, product code), keyed by user.
pub struct LineRemovals {
    db: Db,
    clock: Clock,
}

impl Group for LineRemovals {
    type Item = (String, String);
    type Output = Removal;
    fn key(item: &Self::Item) -> &str {
        &item.0
    }
    async fn one(&self, (user, code): &Self::Item) -> Result<Removal, sqlx::Error> {
        store::remove_line(&self.db, user, code, self.clock.now_ms()).await
    }
    async fn many(&self, items: &[Self::Item]) -> Result<Vec<Removal>, sqlx::Error> {
        store::remove_lines(&self.db, items, self.clock.now_ms()).await
    }
}
