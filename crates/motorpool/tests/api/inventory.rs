//! Inventory: the admin's stock API through the gateway, and holds over gRPC as the shop and
//! the factory use them — all-or-nothing, capped per owner, expiring, committed exactly once,
//! and never more than the stock however many callers race.

use std::time::Duration;

use motorpool_proto::inventory::v1::inventory_client::InventoryClient;
use motorpool_proto::inventory::v1::{
    AdjustRequest, CommitRequest, ExtendRequest, Hold, HoldReply, HoldRequest, Line, Outcome, OwnedHold, ReleaseManyRequest,
    ReleaseRequest, Shortage,
};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::helpers::*;

type Client = InventoryClient<Channel>;

/// A gRPC client straight to the inventory service (not through the gateway).
pub async fn grpc(app: &App) -> Client {
    InventoryClient::connect(app.tp.url("inventory")).await.expect("connect to inventory")
}

pub fn owner(tag: &str) -> String {
    format!("cart:{tag}-{}", uuid::Uuid::now_v7().simple())
}

fn line(sku: &str, quantity: i64) -> Line {
    Line { sku: sku.into(), quantity }
}

pub async fn hold(client: &mut Client, owner: &str, lines: Vec<Line>, ttl_seconds: i64) -> HoldReply {
    client.hold(HoldRequest { owner: owner.into(), lines, ttl_seconds }).await.expect("hold").into_inner()
}

async fn hold_one(client: &mut Client, owner: &str, sku: &str, quantity: i64) -> Hold {
    let r = hold(client, owner, vec![line(sku, quantity)], 0).await;
    assert_eq!(r.outcome(), Outcome::Held, "hold {quantity} of {sku}: {r:?}");
    r.holds.into_iter().next().expect("one hold")
}

async fn release(client: &mut Client, owner: &str, ids: &[&str]) -> i64 {
    let req = ReleaseRequest { hold_ids: ids.iter().map(|s| (*s).to_owned()).collect(), owner: owner.into() };
    client.release(req).await.expect("release").into_inner().released
}

/// `(quantity, held, available)` of a SKU, as the admin sees it.
async fn levels(app: &App, admin: &str, sku: &str) -> (i64, i64, i64) {
    let s = app.stock(admin, sku).await;
    (s["quantity"].as_i64().unwrap(), s["held"].as_i64().unwrap(), s["available"].as_i64().unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn admins_set_and_read_stock_and_everyone_else_is_refused() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (_, customer, _) = app.customer("stock-nosy").await;

    let put = app.send(Method::PUT, "/api/inventory/stock/BRK-100", Some(&admin), Some(json!({"quantity": 12}))).await;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put, json!({"sku": "BRK-100", "quantity": 12, "held": 0, "available": 12}));
    assert_eq!(app.stock(&admin, "BRK-100").await, put);
    app.put_stock(&admin, "AAA-1", 3).await;
    assert_eq!(app.put_stock(&admin, "BRK-100", 7).await, json!({"sku": "BRK-100", "quantity": 7, "held": 0, "available": 7}));

    let page: Value = app.get_auth("/api/inventory/stock?limit=1", &admin).await.json().await.unwrap();
    assert_eq!(page["items"], json!([{"sku": "AAA-1", "quantity": 3, "held": 0, "available": 3}]), "by SKU: {page}");
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let next: Value = app.get_auth(&format!("/api/inventory/stock?limit=1&cursor={cursor}"), &admin).await.json().await.unwrap();
    assert_eq!(next["items"][0]["sku"], "BRK-100");
    assert!(next["nextCursor"].is_null(), "{next}");

    // Customers and anonymous callers are stopped at the gateway.
    let r = app.send(Method::PUT, "/api/inventory/stock/BRK-100", Some(&customer), Some(json!({"quantity": 1000}))).await;
    assert_problem(r, 403, "forbidden").await;
    assert_problem(app.get_auth("/api/inventory/stock/BRK-100", &customer).await, 403, "forbidden").await;
    assert_problem(app.get_auth("/api/inventory/check", &customer).await, 403, "forbidden").await;
    assert_problem(app.send(Method::GET, "/api/inventory/stock/BRK-100", None, None).await, 401, "unauthorized").await;
    assert_eq!(app.stock(&admin, "BRK-100").await["quantity"], 7, "the refused PUT changed nothing");

    let r = app.send(Method::PUT, "/api/inventory/stock/BRK-100", Some(&admin), Some(json!({"quantity": -1}))).await;
    let p = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "quantity", "{p}");
    let r = app.send(Method::PUT, "/api/inventory/stock/bad%20sku!", Some(&admin), Some(json!({"quantity": 1}))).await;
    let p = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "sku", "{p}");
    let r = app.send(Method::PUT, &format!("/api/inventory/stock/{}", "X".repeat(65)), Some(&admin), Some(json!({"quantity": 1}))).await;
    assert_problem(r, 422, "validation_failed").await;
    let r = app.send(Method::PUT, "/api/inventory/stock/BRK-100", Some(&admin), Some(json!({"quantity": 1, "price": 3}))).await;
    assert_problem(r, 422, "invalid_body").await;
    assert_problem(app.get_auth("/api/inventory/stock/NO-SUCH-SKU", &admin).await, 404, "not_found").await;

    // Stock never goes below what is held.
    let mut client = grpc(&app).await;
    let cart = owner("below");
    hold_one(&mut client, &cart, "BRK-100", 5).await;
    let r = app.send(Method::PUT, "/api/inventory/stock/BRK-100", Some(&admin), Some(json!({"quantity": 4}))).await;
    assert_problem(r, 409, "stock_below_held").await;
    assert_eq!(app.put_stock(&admin, "BRK-100", 5).await, json!({"sku": "BRK-100", "quantity": 5, "held": 5, "available": 0}));
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_multi_line_hold_is_all_or_nothing() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "PAD-1", 5).await;
    app.put_stock(&admin, "DISC-2", 2).await;
    let mut client = grpc(&app).await;
    let cart = owner("multi");

    let r = hold(&mut client, &cart, vec![line("PAD-1", 3), line("DISC-2", 3)], 0).await;
    assert_eq!(r.outcome(), Outcome::OutOfStock, "{r:?}");
    assert!(r.holds.is_empty(), "{r:?}");
    assert_eq!(r.shortages, vec![Shortage { sku: "DISC-2".into(), requested: 3, available: 2 }]);
    assert_eq!(levels(&app, &admin, "PAD-1").await, (5, 0, 5), "the line that fitted was not held either");
    assert_eq!(levels(&app, &admin, "DISC-2").await, (2, 0, 2));

    let r = hold(&mut client, &cart, vec![line("PAD-1", 1), line("NOPE-9", 1)], 0).await;
    assert_eq!(r.outcome(), Outcome::UnknownSku, "{r:?}");
    assert!(r.holds.is_empty());
    assert_eq!(r.shortages, vec![Shortage { sku: "NOPE-9".into(), requested: 1, available: 0 }]);
    assert_eq!(levels(&app, &admin, "PAD-1").await, (5, 0, 5));
    let listed: Value = app.get_auth(&format!("/api/inventory/holds?owner={cart}"), &admin).await.json().await.unwrap();
    assert_eq!(listed, json!([]), "nothing is held after two refusals");

    let r = hold(&mut client, &cart, vec![line("PAD-1", 3), line("DISC-2", 2)], 0).await;
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    let mut held: Vec<(String, i64)> = r.holds.iter().map(|h| (h.sku.clone(), h.quantity)).collect();
    held.sort();
    assert_eq!(held, vec![("DISC-2".into(), 2), ("PAD-1".into(), 3)]);
    assert!(r.holds.iter().all(|h| h.owner == cart && h.expires_at_ms > h.created_at_ms));
    assert_eq!(levels(&app, &admin, "PAD-1").await, (5, 3, 2));
    assert_eq!(levels(&app, &admin, "DISC-2").await, (2, 2, 0));

    let listed: Value = app.get_auth(&format!("/api/inventory/holds?owner={cart}"), &admin).await.json().await.unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for h in listed {
        assert_eq!(h["owner"], cart.as_str());
        assert!(r.holds.iter().any(|g| g.hold_id == h["holdId"].as_str().unwrap() && g.quantity == h["quantity"]));
        assert!(h["createdAt"].as_str().unwrap().ends_with('Z') && h["expiresAt"].as_str().unwrap() > h["createdAt"].as_str().unwrap());
    }
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn an_owner_cannot_hold_more_than_its_cap() {
    let mut cfg = config();
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.inventory.owner_cap_units = 5;
    let app = spawn_with(cfg).await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "OIL-5W30", 100).await;
    app.put_stock(&admin, "FILTER-7", 100).await;
    let mut client = grpc(&app).await;
    let greedy = owner("greedy");

    hold_one(&mut client, &greedy, "OIL-5W30", 3).await;
    // The cap counts every SKU of the owner.
    let r = hold(&mut client, &greedy, vec![line("FILTER-7", 3)], 0).await;
    assert_eq!(r.outcome(), Outcome::OwnerCapExceeded, "{r:?}");
    assert_eq!((r.owner_cap, r.owner_held), (5, 3));
    assert!(r.holds.is_empty());
    assert_eq!(levels(&app, &admin, "FILTER-7").await, (100, 0, 100), "a refused hold takes nothing");

    // Up to the cap is fine, and another owner has a cap of its own.
    hold_one(&mut client, &greedy, "FILTER-7", 2).await;
    hold_one(&mut client, &owner("other"), "FILTER-7", 5).await;
    let r = hold(&mut client, &greedy, vec![line("OIL-5W30", 1)], 0).await;
    assert_eq!(r.outcome(), Outcome::OwnerCapExceeded, "{r:?}");
    assert_eq!((r.owner_cap, r.owner_held), (5, 5));
    assert_eq!(levels(&app, &admin, "OIL-5W30").await, (100, 3, 97));
    assert_eq!(levels(&app, &admin, "FILTER-7").await, (100, 7, 93));
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn holds_adjust_extend_and_release_idempotently() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "WIPER-1", 10).await;
    let mut client = grpc(&app).await;
    let cart = owner("adjust");
    let h = hold_one(&mut client, &cart, "WIPER-1", 4).await;
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 4, 6));

    let adjust = |quantity: i64, owner: &str| AdjustRequest { hold_id: h.hold_id.clone(), owner: owner.into(), quantity, ttl_seconds: 0 };
    let r = client.adjust(adjust(7, &cart)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    assert_eq!((r.holds[0].hold_id.as_str(), r.holds[0].quantity), (h.hold_id.as_str(), 7));
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 7, 3));
    let r = client.adjust(adjust(2, &cart)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Held);
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 2, 8));
    let r = client.adjust(adjust(11, &cart)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::OutOfStock, "{r:?}");
    assert_eq!(r.shortages, vec![Shortage { sku: "WIPER-1".into(), requested: 11, available: 10 }], "its own 2 units count as available");
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 2, 8), "a refused adjustment keeps the hold as it was");
    let r = client.adjust(adjust(3, &owner("thief"))).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::HoldNotFound, "only the owner may adjust: {r:?}");
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 2, 8));

    let before = now_ms();
    let r = client
        .extend(ExtendRequest { hold_ids: vec![h.hold_id.clone(), "no-such-hold".into()], owner: cart.clone(), ttl_seconds: 3600 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.missing_hold_ids, vec!["no-such-hold".to_owned()]);
    assert_eq!(r.holds.len(), 1);
    let expires = r.holds[0].expires_at_ms;
    assert!(expires >= before + 3_600_000 && expires <= now_ms() + 3_600_000, "expires an hour from now: {expires}");
    let listed: Value = app.get_auth(&format!("/api/inventory/holds?owner={cart}"), &admin).await.json().await.unwrap();
    assert_eq!(listed[0]["quantity"], 2);
    let other = client
        .extend(ExtendRequest { hold_ids: vec![h.hold_id.clone()], owner: owner("thief"), ttl_seconds: 3600 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.missing_hold_ids, vec![h.hold_id.clone()], "another owner cannot extend it");

    assert_eq!(release(&mut client, &owner("thief"), &[&h.hold_id]).await, 0, "only the owner may release");
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 2, 8));
    assert_eq!(release(&mut client, &cart, &[&h.hold_id]).await, 1);
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 0, 10));
    assert_eq!(release(&mut client, &cart, &[&h.hold_id]).await, 0, "a second release releases nothing");
    assert_eq!(levels(&app, &admin, "WIPER-1").await, (10, 0, 10));
    let r = client.adjust(adjust(1, &cart)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::HoldNotFound, "a released hold cannot be adjusted");
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_committed_hold_reduces_quantity_exactly_once_even_when_the_commit_is_retried() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "BULB-H7", 10).await;
    let mut client = grpc(&app).await;
    let cart = owner("commit");
    let h = hold_one(&mut client, &cart, "BULB-H7", 3).await;
    let commit = |ids: Vec<String>, owner: &str| CommitRequest { hold_ids: ids, owner: owner.into(), reference: "order:one".into() };

    let first = client.commit(commit(vec![h.hold_id.clone()], &cart)).await.unwrap().into_inner();
    assert!(first.committed, "{first:?}");
    assert_eq!(first.sales.len(), 1);
    assert_eq!((first.sales[0].hold_id.as_str(), first.sales[0].sku.as_str(), first.sales[0].quantity), (h.hold_id.as_str(), "BULB-H7", 3));
    assert_eq!(levels(&app, &admin, "BULB-H7").await, (7, 0, 7), "sold units leave the shelf and the holds");

    let again = client.commit(commit(vec![h.hold_id.clone()], &cart)).await.unwrap().into_inner();
    assert!(again.committed, "a retried commit succeeds again: {again:?}");
    assert_eq!(again.sales, first.sales, "with the same sale");
    assert_eq!(levels(&app, &admin, "BULB-H7").await, (7, 0, 7), "and takes no stock twice");

    // Two commits of one hold racing each other also sell it once.
    let h2 = hold_one(&mut client, &cart, "BULB-H7", 2).await;
    let (a, b) = {
        let (mut c1, mut c2) = (client.clone(), client.clone());
        tokio::join!(c1.commit(commit(vec![h2.hold_id.clone()], &cart)), c2.commit(commit(vec![h2.hold_id.clone()], &cart)))
    };
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    assert!(a.committed && b.committed, "{a:?} {b:?}");
    assert_eq!(levels(&app, &admin, "BULB-H7").await, (5, 0, 5));

    // A released hold cannot be sold, and a commit is all or none.
    let gone = hold_one(&mut client, &cart, "BULB-H7", 1).await;
    assert_eq!(release(&mut client, &cart, &[&gone.hold_id]).await, 1);
    let live = hold_one(&mut client, &cart, "BULB-H7", 2).await;
    let r = client.commit(commit(vec![gone.hold_id.clone(), live.hold_id.clone()], &cart)).await.unwrap().into_inner();
    assert!(!r.committed, "{r:?}");
    assert_eq!(r.missing_hold_ids, vec![gone.hold_id.clone()]);
    assert!(r.sales.is_empty());
    assert_eq!(levels(&app, &admin, "BULB-H7").await, (5, 2, 3), "the live hold was not sold either");
    let r = client.commit(commit(vec![live.hold_id.clone()], &owner("thief"))).await.unwrap().into_inner();
    assert!(!r.committed, "another owner cannot sell it");
    assert_eq!(r.missing_hold_ids, vec![live.hold_id.clone()]);
    assert_eq!(levels(&app, &admin, "BULB-H7").await, (5, 2, 3));
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn expired_holds_stop_counting_at_once_even_before_the_sweeper_runs() {
    let mut cfg = config();
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.inventory.sweep_interval_ms = 3_600_000;
    cfg.inventory.owner_cap_units = 5;
    let app = spawn_with(cfg).await;
    let admin = app.admin_token().await;
    for sku in ["BELT-9", "CHAIN-2", "PULLEY-4"] {
        app.put_stock(&admin, sku, 5).await;
    }
    let mut client = grpc(&app).await;
    let early = owner("early");
    let capped = owner("capped");
    let r = hold(&mut client, &capped, vec![line("CHAIN-2", 5)], 1).await;
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    let r = hold(&mut client, &early, vec![line("BELT-9", 5)], 1).await;
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    let h = &r.holds[0];
    assert_eq!(h.expires_at_ms - h.created_at_ms, 1000);
    assert_eq!(levels(&app, &admin, "BELT-9").await, (5, 5, 0));
    let r = hold(&mut client, &owner("late"), vec![line("BELT-9", 1)], 0).await;
    assert_eq!(r.outcome(), Outcome::OutOfStock, "while the hold lives, nothing is left: {r:?}");

    // Real time: the hold lives one second.
    let wait = Duration::from_millis((h.expires_at_ms - now_ms()).max(0) as u64 + 200);
    tokio::time::sleep(wait).await;
    assert_eq!(levels(&app, &admin, "BELT-9").await, (5, 0, 5), "an expired hold no longer counts");
    let listed: Value = app.get_auth(&format!("/api/inventory/holds?owner={early}"), &admin).await.json().await.unwrap();
    assert_eq!(listed, json!([]), "and is no longer listed");
    assert_eq!(app.metric("inventory", "inventory_holds_ended_total", "how=\"expired_by_sweeper\"").await, 0.0, "the sweeper did not run");
    let commit = CommitRequest { hold_ids: vec![h.hold_id.clone()], owner: early.clone(), reference: "order:late".into() };
    let r = client.commit(commit).await.unwrap().into_inner();
    assert!(!r.committed, "an expired hold cannot be sold");
    assert_eq!(r.missing_hold_ids, vec![h.hold_id.clone()]);
    let r = client.adjust(AdjustRequest { hold_id: h.hold_id.clone(), owner: early.clone(), quantity: 1, ttl_seconds: 0 }).await.unwrap();
    assert_eq!(r.into_inner().outcome(), Outcome::HoldNotFound, "nor adjusted");

    // A new hold gets the units the expired one kept.
    let late = owner("late");
    let r = hold(&mut client, &late, vec![line("BELT-9", 5)], 0).await;
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    assert_eq!(levels(&app, &admin, "BELT-9").await, (5, 5, 0));
    assert_eq!(app.metric("inventory", "inventory_holds_ended_total", "how=\"expired_on_demand\"").await, 1.0, "the hold made room itself");
    // Nor does it count against its owner's cap.
    let r = hold(&mut client, &capped, vec![line("PULLEY-4", 5)], 0).await;
    assert_eq!(r.outcome(), Outcome::Held, "{r:?}");
    assert_eq!(levels(&app, &admin, "CHAIN-2").await, (5, 0, 5));
    assert_eq!(levels(&app, &admin, "PULLEY-4").await, (5, 5, 0));
    assert_eq!(app.metric("inventory", "inventory_holds_ended_total", "how=\"expired_on_demand\"").await, 2.0);
    assert_eq!(app.metric("inventory", "inventory_holds_ended_total", "how=\"expired_by_sweeper\"").await, 0.0);
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn the_sweeper_deletes_expired_holds_and_gives_their_units_back() {
    let mut cfg = config();
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.inventory.sweep_interval_ms = 50;
    let app = spawn_with(cfg).await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "HOSE-3", 5).await;
    let mut client = grpc(&app).await;
    let cart = owner("swept");
    let short = hold(&mut client, &cart, vec![line("HOSE-3", 3)], 1).await;
    assert_eq!(short.outcome(), Outcome::Held);
    let lasting = hold_one(&mut client, &cart, "HOSE-3", 1).await;
    assert_eq!(levels(&app, &admin, "HOSE-3").await, (5, 4, 1));

    eventually(Duration::from_secs(10), "the sweeper to delete the expired hold", || async {
        (app.metric("inventory", "inventory_holds_ended_total", "how=\"expired_by_sweeper\"").await == 1.0).then_some(())
    })
    .await;
    // The row is gone: releasing it finds nothing, while the live hold is untouched.
    assert_eq!(release(&mut client, &cart, &[&short.holds[0].hold_id]).await, 0);
    let listed: Value = app.get_auth(&format!("/api/inventory/holds?owner={cart}"), &admin).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["holdId"], lasting.hold_id.as_str());
    assert_eq!(levels(&app, &admin, "HOSE-3").await, (5, 1, 4));
    app.assert_inventory_consistent(&admin).await;
    assert_eq!(release(&mut client, &cart, &[&lasting.hold_id]).await, 1);
    assert_eq!(levels(&app, &admin, "HOSE-3").await, (5, 0, 5));
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_release_frees_exactly_the_listed_holds_of_many_owners_even_while_racing_holds() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let skus = ["BATCH-A", "BATCH-B", "BATCH-C"];
    for sku in skus {
        app.put_stock(&admin, sku, 1_000).await;
    }
    let mut client = grpc(&app).await;
    // Six owners, each holding 2 units of every SKU.
    let owners: Vec<String> = (0..6).map(|i| owner(&format!("batch{i}"))).collect();
    let mut holds: Vec<(String, String)> = Vec::new();
    for o in &owners {
        for sku in skus {
            holds.push((hold_one(&mut client, o, sku, 2).await.hold_id, o.clone()));
        }
    }
    let entry = |id: &str, owner: &str| OwnedHold { hold_id: id.into(), owner: owner.into() };
    // The first four owners' holds, one listed twice, one under the wrong owner, one unknown
    // and one with a malformed owner.
    let mut batch: Vec<OwnedHold> = holds[..12].iter().map(|(id, o)| entry(id, o)).collect();
    batch.push(entry(&holds[0].0, &holds[0].1));
    batch.push(entry(&holds[12].0, &owners[0]));
    batch.push(entry("no-such-hold", &owners[1]));
    batch.push(entry(&holds[13].0, "not an owner"));
    let r = client.release_many(ReleaseManyRequest { holds: batch }).await.expect("release many").into_inner();
    assert_eq!(r.released, 12, "four owners' twelve holds, the duplicate once, the others not: {r:?}");
    assert_eq!(r.rejected, vec![entry(&holds[13].0, "not an owner")]);
    for sku in skus {
        assert_eq!(levels(&app, &admin, sku).await, (1_000, 4, 996), "{sku}: only the last two owners' units stay held");
    }
    let again = client.release_many(ReleaseManyRequest { holds: vec![entry(&holds[0].0, &holds[0].1)] }).await.unwrap().into_inner();
    assert_eq!(again.released, 0, "a second release releases nothing");
    app.assert_inventory_consistent(&admin).await;

    // Batches over the same SKUs, listed in different orders, race each other and fresh holds.
    let racers: Vec<String> = (0..24).map(|i| owner(&format!("racer{i}"))).collect();
    let mut held: Vec<(String, String)> = Vec::new();
    for (i, o) in racers.iter().enumerate() {
        held.push((hold_one(&mut client, o, skus[i % 3], 1).await.hold_id, o.clone()));
    }
    let batches = held.chunks(4).enumerate().map(|(i, chunk)| {
        let mut c = client.clone();
        let mut list: Vec<OwnedHold> = chunk.iter().map(|(id, o)| entry(id, o)).collect();
        if i % 2 == 1 {
            list.reverse();
        }
        async move { c.release_many(ReleaseManyRequest { holds: list }).await.expect("release many").into_inner().released }
    });
    let newcomers: Vec<String> = (0..12).map(|i| owner(&format!("late{i}"))).collect();
    let fresh = newcomers.iter().enumerate().map(|(i, o)| {
        let mut c = client.clone();
        let req = HoldRequest { owner: o.clone(), lines: vec![line(skus[2 - i % 3], 1), line(skus[i % 3], 1)], ttl_seconds: 0 };
        async move { c.hold(req).await.expect("hold").into_inner() }
    });
    let (released, replies) = futures::future::join(futures::future::join_all(batches), futures::future::join_all(fresh)).await;
    assert_eq!(released.iter().sum::<i64>(), 24, "every racer's hold released once: {released:?}");
    assert!(replies.iter().all(|r| r.outcome() == Outcome::Held), "{replies:?}");
    let mut late_units = [0i64; 3];
    for i in 0..12 {
        late_units[2 - i % 3] += 1;
        late_units[i % 3] += 1;
    }
    for (sku, late) in skus.iter().zip(late_units) {
        assert_eq!(levels(&app, &admin, sku).await, (1_000, 4 + late, 996 - late), "{sku}");
    }
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

/// Fires one gRPC hold per `(owner, quantity)` at once; the replies in the same order.
async fn race(client: &Client, sku: &str, requests: &[(String, i64)]) -> Vec<HoldReply> {
    let calls = requests.iter().map(|(owner, quantity)| {
        let mut client = client.clone();
        let req = HoldRequest { owner: owner.clone(), lines: vec![line(sku, *quantity)], ttl_seconds: 0 };
        async move { client.hold(req).await.expect("hold").into_inner() }
    });
    futures::future::join_all(calls).await
}

#[tokio::test]
async fn two_hundred_concurrent_holds_of_ten_units_have_exactly_ten_winners() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "RARE-1", 10).await;
    let client = grpc(&app).await;

    let requests: Vec<(String, i64)> = (0..200).map(|i| (owner(&format!("race{i}")), 1)).collect();
    let replies = race(&client, "RARE-1", &requests).await;
    let winners: Vec<(&(String, i64), &HoldReply)> = requests.iter().zip(&replies).filter(|(_, r)| r.outcome() == Outcome::Held).collect();
    let losers = replies.iter().filter(|r| r.outcome() == Outcome::OutOfStock).count();
    assert_eq!(winners.len(), 10, "{:?}", replies.iter().map(|r| r.outcome()).collect::<Vec<_>>());
    assert_eq!(losers, 190);
    assert!(replies.iter().filter(|r| r.outcome() == Outcome::OutOfStock).all(|r| r.holds.is_empty() && r.shortages[0].available == 0));
    assert_eq!(levels(&app, &admin, "RARE-1").await, (10, 10, 0));
    app.assert_inventory_consistent(&admin).await;

    // Give everything back, then race holds of 6 and 5 for the same 10 units.
    let mut releasing = client.clone();
    for ((owner, _), reply) in &winners {
        assert_eq!(release(&mut releasing, owner, &[&reply.holds[0].hold_id]).await, 1);
    }
    assert_eq!(levels(&app, &admin, "RARE-1").await, (10, 0, 10));
    let requests: Vec<(String, i64)> = (0..200).map(|i| (owner(&format!("mix{i}")), if i % 2 == 0 { 6 } else { 5 })).collect();
    let replies = race(&client, "RARE-1", &requests).await;
    let mut won: Vec<i64> = requests.iter().zip(&replies).filter(|(_, r)| r.outcome() == Outcome::Held).map(|((_, q), _)| *q).collect();
    won.sort_unstable();
    assert!(replies.iter().all(|r| matches!(r.outcome(), Outcome::Held | Outcome::OutOfStock)), "{replies:?}");
    assert!(won == [6] || won == [5, 5], "one 6 or two 5s fit in 10 units, and then nothing else does: {won:?}");
    let sum: i64 = won.iter().sum();
    let (quantity, held, available) = levels(&app, &admin, "RARE-1").await;
    assert_eq!((quantity, held, available), (10, sum, 10 - sum));
    assert!(available >= 0);
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_multi_line_hold_racing_a_restock_holds_every_line_or_none() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    app.put_stock(&admin, "RESTOCK-A", 10_000).await;
    let client = grpc(&app).await;
    let mut winners_total = 0;
    for round in 0..16u64 {
        let b = format!("RESTOCK-B{round}");
        app.put_stock(&admin, &b, 0).await;
        // Eight callers ask for one of each until told to stop; the B part arrives while their
        // holds are being refused for it, at a different moment each round.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let callers = (0..8).map(|i| {
            let (mut c, b, stop) = (client.clone(), b.clone(), stop.clone());
            let o = owner(&format!("restock{round}-{i}"));
            async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = hold(&mut c, &o, vec![line("RESTOCK-A", 1), line(&b, 1)], 0).await;
                    if r.outcome() == Outcome::Held {
                        return Some(r);
                    }
                    assert_eq!(r.outcome(), Outcome::OutOfStock, "{r:?}");
                }
                None
            }
        });
        let restock = async {
            tokio::time::sleep(Duration::from_micros(700 * round)).await;
            app.put_stock(&admin, &b, 3).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let (replies, ()) = futures::future::join(futures::future::join_all(callers), restock).await;
        let won: Vec<HoldReply> = replies.into_iter().flatten().collect();
        for r in &won {
            assert_eq!(r.holds.len(), 2, "a hold granted is a hold of every line: {r:?}");
        }
        assert_eq!(won.len(), 3, "round {round}: the three units that arrived, one per winner");
        assert_eq!(levels(&app, &admin, &b).await, (3, 3, 0), "round {round}");
        winners_total += won.len() as i64;
    }
    assert_eq!(levels(&app, &admin, "RESTOCK-A").await, (10_000, winners_total, 10_000 - winners_total));
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}
