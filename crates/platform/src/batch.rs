//! Group execution of one kind of statement: while a statement of the kind runs, the calls
//! that arrive queue, and the next statement takes all of them at once (up to a limit), the
//! way a database groups commits. A lone call goes at once, on its own, so an idle service
//! pays no latency for it; under load one statement does the work of many calls, which saves
//! the database a round trip, a plan execution and a commit per call.
//!
//! The kind says how to run one item and how to run many in one statement, which must give
//! each item the outcome it would have had alone. Items with equal keys never share a
//! statement (a later one waits for the next), so the many-statement never has to decide
//! between two changes of one row.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Counter;

/// One kind of statement that can run for many items at once.
pub trait Group: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// Items with equal keys go in different statements, in the order they came.
    fn key(item: &Self::Item) -> &str;
    /// Runs one item alone.
    fn one(&self, item: &Self::Item) -> impl Future<Output = Result<Self::Output, sqlx::Error>> + Send;
    /// Runs several items (distinct keys) in one statement: an output per item, in order.
    fn many(&self, items: &[Self::Item]) -> impl Future<Output = Result<Vec<Self::Output>, sqlx::Error>> + Send;
}

struct Job<G: Group> {
    item: G::Item,
    done: oneshot::Sender<Result<G::Output, sqlx::Error>>,
}

/// How many statements ran and how many items they carried.
#[derive(Clone)]
pub struct GroupCounters {
    pub statements: Counter,
    pub items: Counter,
}

/// Runs a [`Group`]'s items, at most `max` per statement and `in_flight` statements at once
/// (or each on its own, if made with [`Grouped::direct`]).
pub struct Grouped<G: Group> {
    group: Arc<G>,
    /// `None`: every item runs alone, at once.
    queue: Option<mpsc::UnboundedSender<Job<G>>>,
}

impl<G: Group> Grouped<G> {
    /// Starts the task that composes and runs the statements (on the current Tokio runtime).
    pub fn start(group: G, max: usize, in_flight: usize, counters: GroupCounters) -> Self {
        let group = Arc::new(group);
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(compose(group.clone(), jobs, max.max(1), in_flight.max(1), counters));
        Self { group, queue: Some(queue) }
    }

    /// Runs every item on its own, at once: for a database that gains nothing from grouping
    /// (SQLite takes one writer at a time anyway).
    pub fn direct(group: G) -> Self {
        Self { group: Arc::new(group), queue: None }
    }

    /// Runs `item` in the next statement of its kind.
    pub async fn run(&self, item: G::Item) -> Result<G::Output, sqlx::Error> {
        let Some(queue) = &self.queue else { return self.group.one(&item).await };
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = queue.send(Job { item, done }) {
            // The task is gone (its runtime is shutting down): run it here.
            return self.group.one(&job.item).await;
        }
        // A dropped sender means the task ended with the job unrun, which is possible only at
        // shutdown; nothing was written for it.
        outcome.await.unwrap_or_else(|_| Err(sqlx::Error::PoolClosed))
    }
}

async fn compose<G: Group>(
    group: Arc<G>,
    mut jobs: mpsc::UnboundedReceiver<Job<G>>,
    max: usize,
    in_flight: usize,
    counters: GroupCounters,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut waiting: VecDeque<Job<G>> = VecDeque::new();
    loop {
        // Only with a free slot is a statement composed: while every slot is busy, calls queue
        // and the next statement carries them all.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if waiting.is_empty() {
            match jobs.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
            // Calls made ready by the same wake-up join this one.
            tokio::task::yield_now().await;
        }
        while let Ok(job) = jobs.try_recv() {
            waiting.push_back(job);
        }
        let mut batch = Vec::with_capacity(max.min(waiting.len()));
        let mut later = VecDeque::new();
        let mut keys = HashSet::new();
        while let Some(job) = waiting.pop_front() {
            if batch.len() < max && keys.insert(G::key(&job.item).to_owned()) {
                batch.push(job);
            } else {
                later.push_back(job);
            }
        }
        waiting = later;
        counters.statements.add(1);
        counters.items.add(batch.len() as u64);
        let group = group.clone();
        tokio::spawn(async move {
            execute(&*group, batch).await;
            drop(slot);
        });
    }
}

async fn execute<G: Group>(group: &G, batch: Vec<Job<G>>) {
    if let [job] = &batch[..] {
        let outcome = group.one(&job.item).await;
        let job = batch.into_iter().next().expect("one job");
        let _ = job.done.send(outcome);
        return;
    }
    let items: Vec<G::Item>;
    let dones: Vec<oneshot::Sender<_>>;
    (items, dones) = batch.into_iter().map(|j| (j.item, j.done)).unzip();
    match group.many(&items).await {
        Ok(outputs) if outputs.len() == items.len() => {
            for (done, output) in dones.into_iter().zip(outputs) {
                let _ = done.send(Ok(output));
            }
        }
        Ok(outputs) => {
            let e = format!("a grouped statement gave {} outputs for {} items", outputs.len(), items.len());
            for done in dones {
                let _ = done.send(Err(sqlx::Error::Protocol(e.clone())));
            }
        }
        // The database refused the statement, so it wrote nothing: each item alone gets the
        // outcome (or the error) it would have had without the others.
        Err(sqlx::Error::Database(e)) => {
            tracing::debug!(error = %e, items = items.len(), "a grouped statement failed; its items run one by one");
            let alone = items.iter().map(|item| group.one(item));
            for (done, outcome) in dones.into_iter().zip(futures::future::join_all(alone).await) {
                let _ = done.send(outcome);
            }
        }
        // Unreachable or dropped mid-statement: whether it committed is unknown, so nothing is
        // run again; every caller gets an error of the same class.
        Err(e) => {
            for done in dones {
                let _ = done.send(Err(same_class(&e)));
            }
        }
    }
}

/// An error that [`crate::db::is_unavailable`] classifies as it does `e`, for each of the
/// callers that shared the failed statement.
fn same_class(e: &sqlx::Error) -> sqlx::Error {
    if crate::db::is_unavailable(e) { sqlx::Error::Io(std::io::Error::other(e.to_string())) } else { sqlx::Error::Protocol(e.to_string()) }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;

    /// Records which items ran together; item `fail` makes its statement fail as the database
    /// would (`Database`) or as a dropped connection would (`Io`).
    #[derive(Default)]
    struct Recorder {
        statements: Mutex<Vec<Vec<String>>>,
        fail_many: Mutex<Option<fn() -> sqlx::Error>>,
    }

    impl Group for Recorder {
        type Item = (String, u32);
        type Output = u32;
        fn key(item: &Self::Item) -> &str {
            &item.0
        }
        async fn one(&self, item: &Self::Item) -> Result<u32, sqlx::Error> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.statements.lock().unwrap().push(vec![item.0.clone()]);
            Ok(item.1 * 10)
        }
        async fn many(&self, items: &[Self::Item]) -> Result<Vec<u32>, sqlx::Error> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(fail) = *self.fail_many.lock().unwrap() {
                return Err(fail());
            }
            self.statements.lock().unwrap().push(items.iter().map(|i| i.0.clone()).collect());
            Ok(items.iter().map(|i| i.1 * 10).collect())
        }
    }

    fn counters(m: &Metrics) -> GroupCounters {
        GroupCounters { statements: m.counter("t_statements", "t", &[]), items: m.counter("t_items", "t", &[]) }
    }

    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("deadlock detected")
        }
    }
    impl std::error::Error for Refused {}
    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "deadlock detected"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[tokio::test]
    async fn concurrent_calls_share_statements_and_each_gets_its_own_output() {
        let m = Metrics::new("t");
        let grouped = Arc::new(Grouped::start(Recorder::default(), 8, 1, counters(&m)));
        let calls = (0..40u32).map(|i| {
            let grouped = grouped.clone();
            tokio::spawn(async move { (i, grouped.run((format!("k{i}"), i)).await.unwrap()) })
        });
        for call in futures::future::join_all(calls).await {
            let (i, out) = call.unwrap();
            assert_eq!(out, i * 10, "each call gets the output of its own item");
        }
        let statements = grouped.group.statements.lock().unwrap().clone();
        assert_eq!(statements.iter().map(Vec::len).sum::<usize>(), 40, "every item ran exactly once");
        assert!(statements.iter().all(|s| s.len() <= 8), "no statement is over the limit: {statements:?}");
        assert!(statements.len() < 40, "calls made at once shared statements: {statements:?}");
    }

    #[tokio::test]
    async fn items_with_one_key_never_share_a_statement_and_keep_their_order() {
        let m = Metrics::new("t");
        let grouped = Arc::new(Grouped::start(Recorder::default(), 64, 1, counters(&m)));
        // A first call occupies the only slot, so the next thirty queue together.
        let first = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.run(("first".into(), 0)).await })
        };
        tokio::task::yield_now().await;
        let calls = (0..30u32).map(|i| {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.run((format!("cart{}", i % 3), i)).await.unwrap() })
        });
        let outs: Vec<u32> = futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        first.await.unwrap().unwrap();
        assert_eq!(outs, (0..30).map(|i| i * 10).collect::<Vec<_>>());
        let statements = grouped.group.statements.lock().unwrap().clone();
        for s in &statements {
            let distinct: HashSet<&String> = s.iter().collect();
            assert_eq!(distinct.len(), s.len(), "a key twice in one statement: {s:?}");
        }
        assert!(statements.iter().any(|s| s.len() == 3), "the three keys went together: {statements:?}");
    }

    #[tokio::test]
    async fn a_direct_group_runs_each_item_alone() {
        let grouped = Arc::new(Grouped::direct(Recorder::default()));
        let calls = (0..5u32).map(|i| {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.run((format!("k{i}"), i)).await.unwrap() })
        });
        let outs: Vec<u32> = futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outs, vec![0, 10, 20, 30, 40]);
        let statements = grouped.group.statements.lock().unwrap().clone();
        assert!(statements.len() == 5 && statements.iter().all(|s| s.len() == 1), "{statements:?}");
    }

    /// Six calls queued behind a first one, with every many-item statement failing with
    /// `fail`: the six outcomes, the first call's and the statements that ran.
    async fn six_behind_one(fail: fn() -> sqlx::Error) -> (Vec<Result<u32, sqlx::Error>>, u32, Vec<Vec<String>>) {
        let m = Metrics::new("t");
        let recorder = Recorder::default();
        *recorder.fail_many.lock().unwrap() = Some(fail);
        let grouped = Arc::new(Grouped::start(recorder, 8, 1, counters(&m)));
        // The first call occupies the only slot, so the next six queue together.
        let first = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.run(("first".into(), 1)).await })
        };
        tokio::task::yield_now().await;
        let calls = (0..6u32).map(|i| {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.run((format!("k{i}"), i)).await })
        });
        let outcomes = futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        let first = first.await.unwrap().unwrap();
        let statements = grouped.group.statements.lock().unwrap().clone();
        (outcomes, first, statements)
    }

    #[tokio::test]
    async fn a_statement_the_database_refused_runs_its_items_one_by_one() {
        let (outcomes, first, statements) = six_behind_one(|| sqlx::Error::Database(Box::new(Refused))).await;
        let outs: Vec<u32> = outcomes.into_iter().map(Result::unwrap).collect();
        assert_eq!(outs, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(first, 10);
        assert!(statements.iter().all(|s| s.len() == 1), "every item ran alone: {statements:?}");
        assert_eq!(statements.len(), 7);
    }

    #[tokio::test]
    async fn a_statement_lost_with_its_connection_is_not_run_again() {
        let (outcomes, _, statements) = six_behind_one(|| sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))).await;
        for outcome in outcomes {
            let e = outcome.expect_err("the shared statement failed");
            assert!(crate::db::is_unavailable(&e), "still classed as the database being away: {e}");
        }
        assert_eq!(statements, vec![vec!["first".to_string()]], "nothing ran again after the lost statement");
    }
}
