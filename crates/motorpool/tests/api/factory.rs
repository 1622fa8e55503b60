//! The factory through the gateway: the seed's order requests, the placing saga (parts held,
//! deposit taken, earliest slot booked) and its compensations (a refused deposit releases the
//! parts; short parts wait for stock), the plan moving on with the clock (parts used when
//! production starts), cancellation with a refund, and strangers kept out.

use std::time::Duration;

use motorpool_platform::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const DAY: Duration = Duration::from_secs(86_400);

/// `YYYY-MM-DD`, `days` after the clock's day.
fn date_after(clock: &Clock, days: i64) -> String {
    let d = (clock.now() + time::Duration::days(days)).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A platform on a manual clock (starting now: tokens are checked against the real time),
/// with a scheduler that looks often.
async fn spawn_factory() -> (App, Clock) {
    spawn_factory_with(|_| {}).await
}

async fn spawn_factory_with(tune: impl FnOnce(&mut motorpool::Config)) -> (App, Clock) {
    let mut cfg = config();
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.factory.tick_ms = 50;
    cfg.factory.resume_after_ms = 1_000;
    // The manual clock jumps days at a time, faster than the scheduler renews day-long holds
    // in real time: the holds here outlive the wait for production.
    cfg.inventory.max_hold_ttl_secs = 30 * 86_400;
    cfg.factory.placing_hold_ttl_secs = 30 * 86_400;
    tune(&mut cfg);
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    (spawn_with_clock(cfg, clock.clone()).await, clock)
}

/// The inventory SKU of a configuration option: `CAR-<CODE>`, as the factory's bill of materials names it.
pub use motorpool_factory::domain::sku;

/// Saves the seed's configuration as `token`'s; its id and bill of materials.
async fn configure(app: &App, token: &str) -> (String, Vec<String>) {
    let body = json!({"engine": "V6", "color": "Red", "interior": "Leather", "features": ["Sunroof", "GPS"]});
    let r = app.send(Method::POST, "/api/configure", Some(token), Some(body)).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["configId"].as_str().unwrap().to_owned();
    let got: Value = app.get_auth(&format!("/api/configure/{id}"), token).await.json().await.unwrap();
    let mut skus: Vec<String> = got["options"].as_array().unwrap().iter().map(|o| sku(o.as_str().unwrap())).collect();
    skus.sort();
    skus.dedup();
    (id, skus)
}

/// A signed-in buyer with `money` in the wallet, the seed's configuration saved, and
/// `stock` units of each of its parts in stock: `(token, the order body, the parts)`.
async fn buyer(app: &App, admin: &str, name: &str, money: &str, stock: i64) -> (String, Value, Vec<String>) {
    let (_, token, _) = app.customer(name).await;
    let user_id = app.get_auth("/api/auth/me", &token).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.top_up(&token, money).await;
    let (config_id, skus) = configure(app, &token).await;
    for s in &skus {
        app.put_stock(admin, s, stock).await;
    }
    (token, json!({"configId": config_id, "userId": user_id}), skus)
}

async fn order(app: &App, token: &str, order_id: &str) -> Value {
    let r = app.get_auth(&format!("/api/factory/order/{order_id}"), token).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn holds_of(app: &App, admin: &str, order_id: &str) -> usize {
    let holds: Value = app.get_auth(&format!("/api/inventory/holds?owner=order:{order_id}"), admin).await.json().await.unwrap();
    holds.as_array().unwrap().len()
}

async fn wait_status(app: &App, token: &str, order_id: &str, code: &str) -> Value {
    eventually(Duration::from_secs(10), code, || async {
        let o = order(app, token, order_id).await;
        (o["statusCode"] == code).then_some(o)
    })
    .await
}

#[tokio::test]
async fn the_seeds_order_requests_work_and_the_order_moves_along_the_plan() {
    let (app, clock) = spawn_factory().await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("buyer").await;
    let me: Value = app.get_auth("/api/auth/me", &token).await.json().await.unwrap();
    assert!(me["id"].is_string(), "{me}");
    let user_id = me["id"].as_str().unwrap().to_owned();
    app.top_up(&token, "10000.00").await;
    let (config_id, skus) = configure(&app, &token).await;
    for s in &skus {
        app.put_stock(&admin, s, 3).await;
    }

    // The seed's request, with the JWT.
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(json!({"configId": config_id, "userId": user_id}))).await;
    assert_eq!(r.status(), 201);
    let placed: Value = r.json().await.unwrap();
    assert_eq!(placed["message"], "Order placed successfully.");
    let id = placed["orderId"].as_str().unwrap().to_owned();
    // The configurator counts the order (from the factory's event): the most ordered list.
    let top = eventually(Duration::from_secs(10), "the order counted", || async {
        let lists: Value = app.send(Method::GET, "/api/configure/popular", None, None).await.json().await.unwrap();
        (lists["mostOrdered"][0]["orders"] == 1).then_some(lists)
    })
    .await;
    assert_eq!(top["mostOrdered"][0]["model"], "tundra", "{top}");
    assert_eq!(top["mostOrdered"].as_array().unwrap().len(), 1);
    // The buyer hears of each step.
    eventually(Duration::from_secs(10), "the scheduled notification", || async {
        let n: Value = app.get_auth("/api/notifications", &token).await.json().await.unwrap();
        n["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["eventType"] == "factory.order.scheduled.v1" && i["title"] == "Your new car: Scheduled")
            .then_some(())
    })
    .await;

    // The seed's read: booked a week out (lead time), delivered five days after production.
    let o = order(&app, &token, &id).await;
    assert_eq!(o["status"], "Scheduled", "{o}");
    assert_eq!(o["productionDate"], date_after(&clock, 7));
    assert_eq!(o["estimatedDelivery"], date_after(&clock, 12));
    assert_eq!(o["deposit"]["amount"], "5825.00", "10 % of 58,250.00");
    assert_eq!(app.available(&token).await, "4175.00", "the deposit was taken once");
    assert_eq!(holds_of(&app, &admin, &id).await, skus.len(), "one hold per part");
    for s in &skus {
        assert_eq!(app.stock(&admin, s).await["held"], 1, "{s}");
    }

    // Strangers and impostors are kept out.
    let (_, other, _) = app.customer("stranger").await;
    assert_problem(app.get_auth(&format!("/api/factory/order/{id}"), &other).await, 404, "not_found").await;
    let r = app.send(Method::POST, "/api/factory/order", Some(&other), Some(json!({"configId": config_id, "userId": user_id}))).await;
    assert_problem(r, 403, "forbidden").await;
    let other_me: Value = app.get_auth("/api/auth/me", &other).await.json().await.unwrap();
    let r =
        app.send(Method::POST, "/api/factory/order", Some(&other), Some(json!({"configId": config_id, "userId": other_me["id"]}))).await;
    assert_problem(r, 404, "not_found").await;
    let r = app.send(Method::POST, "/api/factory/order", None, Some(json!({"configId": config_id, "userId": user_id}))).await;
    assert_eq!(r.status(), 401);
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(json!({"configId": "nope", "userId": user_id}))).await;
    assert_problem(r, 404, "not_found").await;

    // Every read shows the status of the moment: production starts on its day and uses the
    // parts; then the quality check, shipping, delivery.
    clock.advance(7 * DAY);
    let o = wait_status(&app, &token, &id, "in_production").await;
    assert_eq!(o["status"], "In Production");
    for s in &skus {
        let level = app.stock(&admin, s).await;
        assert_eq!((&level["quantity"], &level["held"]), (&json!(2), &json!(0)), "{s} used once");
    }
    assert_eq!(holds_of(&app, &admin, &id).await, 0);
    let r = app.send(Method::POST, &format!("/api/factory/order/{id}/cancel"), Some(&token), None).await;
    assert_problem(r, 409, "invalid_state").await;
    clock.advance(DAY);
    wait_status(&app, &token, &id, "quality_check").await;
    clock.advance(DAY);
    wait_status(&app, &token, &id, "shipped").await;
    clock.advance(3 * DAY);
    let o = wait_status(&app, &token, &id, "delivered").await;
    let timeline: Vec<&str> = o["timeline"].as_array().unwrap().iter().map(|t| t["statusCode"].as_str().unwrap()).collect();
    assert_eq!(timeline, ["placed", "scheduled", "in_production", "quality_check", "shipped", "delivered"]);
    assert_eq!(app.available(&token).await, "4175.00", "nothing else was charged");
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_refused_deposit_releases_the_parts_short_parts_wait_and_a_cancellation_refunds() {
    let (app, _clock) = spawn_factory().await;
    let admin = app.admin_token().await;

    // No money: the deposit is refused, the parts held for it are released, nothing is left.
    let (_, broke, _) = app.customer("broke").await;
    let broke_id = app.get_auth("/api/auth/me", &broke).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (config_id, skus) = configure(&app, &broke).await;
    for s in &skus {
        app.put_stock(&admin, s, 1).await;
    }
    let r = app.send(Method::POST, "/api/factory/order", Some(&broke), Some(json!({"configId": config_id, "userId": broke_id}))).await;
    let p = assert_problem(r, 409, "insufficient_funds").await;
    let failed = p["orderId"].as_str().unwrap().to_owned();
    assert_eq!(order(&app, &broke, &failed).await["status"], "Failed");
    assert_eq!(holds_of(&app, &admin, &failed).await, 0, "no held parts without a live order");
    for s in &skus {
        assert_eq!(app.stock(&admin, s).await["available"], 1, "{s} given back");
    }

    // Parts short: the order waits, deposit taken, and is booked when stock arrives.
    let (_, buyer, _) = app.customer("patient").await;
    let buyer_id = app.get_auth("/api/auth/me", &buyer).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.top_up(&buyer, "10000.00").await;
    let (config_id, skus) = configure(&app, &buyer).await;
    let scarce = skus.iter().find(|s| s.as_str() == "CAR-V6-3.0").expect("the V6 part").clone();
    app.put_stock(&admin, &scarce, 0).await;
    let r = app.send(Method::POST, "/api/factory/order", Some(&buyer), Some(json!({"configId": config_id, "userId": buyer_id}))).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    let o = order(&app, &buyer, &id).await;
    assert_eq!((o["status"].as_str(), &o["estimatedDelivery"]), (Some("Awaiting Parts"), &Value::Null), "{o}");
    assert_eq!(holds_of(&app, &admin, &id).await, 0, "all or nothing: no part held while one is short");
    assert_eq!(app.available(&buyer).await, "4175.00");
    app.put_stock(&admin, &scarce, 1).await;
    let o = wait_status(&app, &buyer, &id, "scheduled").await;
    assert!(o["estimatedDelivery"].is_string(), "{o}");
    let held: Value = app.get_auth(&format!("/api/inventory/holds?owner=order:{id}"), &admin).await.json().await.unwrap();
    assert_eq!(held.as_array().unwrap().len(), skus.len(), "holds {held} for parts {skus:?}, order {o}");

    // Cancelled before production: parts back, deposit back.
    let r = app.send(Method::POST, &format!("/api/factory/order/{id}/cancel"), Some(&buyer), None).await;
    assert_eq!(r.status(), 200);
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["status"], "Cancelled", "{o}");
    assert_eq!(holds_of(&app, &admin, &id).await, 0);
    assert_eq!(app.available(&buyer).await, "10000.00", "the deposit was refunded");
    let r = app.send(Method::POST, &format!("/api/factory/order/{id}/cancel"), Some(&buyer), None).await;
    assert_problem(r, 409, "invalid_state").await;
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn an_order_stopped_between_steps_by_a_payments_outage_and_a_restart_resumes_and_charges_once() {
    let (mut app, clock) = spawn_factory().await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("interrupted").await;
    let user_id = app.get_auth("/api/auth/me", &token).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.top_up(&token, "10000.00").await;
    let (config_id, skus) = configure(&app, &token).await;
    for s in &skus {
        app.put_stock(&admin, s, 2).await;
    }

    // The platform comes back without payments: the parts are held, the deposit cannot be
    // taken; the order is accepted and waits at that step.
    let cfg = app.tp.cfg.clone();
    app.tp.stop().await;
    let others: Vec<&str> = motorpool::SERVICES.iter().copied().filter(|s| *s != "payments").collect();
    let tp = motorpool::testkit::TestPlatform::start(cfg.clone(), &others, clock.clone()).await.expect("starts without payments");
    app = App { gw: tp.url("gateway"), tp, http: client() };
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(json!({"configId": config_id, "userId": user_id}))).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    assert_eq!(order(&app, &token, &id).await["status"], "Placed");
    assert_eq!(holds_of(&app, &admin, &id).await, skus.len(), "held for a live order");

    // The whole platform restarts; recovery resumes the saga where it stopped.
    app.tp.stop().await;
    let app = spawn_with_clock(cfg, clock.clone()).await;
    clock.advance(Duration::from_secs(60));
    let o = wait_status(&app, &token, &id, "scheduled").await;
    assert!(o["estimatedDelivery"].is_string(), "{o}");
    assert_eq!(app.available(&token).await, "4175.00", "the deposit was taken once");
    assert_eq!(holds_of(&app, &admin, &id).await, skus.len(), "the same parts, held once");
    for s in &skus {
        assert_eq!(app.stock(&admin, s).await["held"], 1, "{s}");
    }
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_orders_fill_each_production_day_up_to_its_capacity_and_no_further() {
    let (app, clock) = spawn_factory_with(|cfg| cfg.factory.daily_capacity = 2).await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("fleet").await;
    let user_id = app.get_auth("/api/auth/me", &token).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.top_up(&token, "100000.00").await;
    let (config_id, skus) = configure(&app, &token).await;
    for s in &skus {
        app.put_stock(&admin, s, 20).await;
    }
    let body = json!({"configId": config_id, "userId": user_id});
    let placed =
        futures::future::join_all((0..7).map(|_| app.send(Method::POST, "/api/factory/order", Some(&token), Some(body.clone())))).await;
    let mut days: Vec<String> = Vec::new();
    for r in placed {
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
        days.push(order(&app, &token, &id).await["productionDate"].as_str().unwrap().to_owned());
    }
    days.sort();
    let expected: Vec<String> = [7, 7, 8, 8, 9, 9, 10].iter().map(|d| date_after(&clock, *d)).collect();
    assert_eq!(days, expected, "two a day, from the earliest day on, none skipped");
    app.cleanup().await;
}

#[tokio::test]
async fn an_order_retried_with_its_idempotency_key_is_placed_and_charged_once() {
    let (app, _clock) = spawn_factory().await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("retrier").await;
    let user_id = app.get_auth("/api/auth/me", &token).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.top_up(&token, "10000.00").await;
    let (config_id, skus) = configure(&app, &token).await;
    for s in &skus {
        app.put_stock(&admin, s, 5).await;
    }
    let body = json!({"configId": config_id, "userId": user_id});
    let place = |key: &'static str| {
        app.http.post(format!("{}/api/factory/order", app.gw)).bearer_auth(&token).header("Idempotency-Key", key).json(&body).send()
    };
    let first = place("car-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = place("car-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["orderId"], first["orderId"], "the same order");
    assert_eq!(app.available(&token).await, "4175.00", "one deposit");
    let orders: Value = app.get_auth("/api/factory/orders", &token).await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 1);
    // The same key with another body is refused; nothing is placed.
    let r = app
        .http
        .post(format!("{}/api/factory/order", app.gw))
        .bearer_auth(&token)
        .header("Idempotency-Key", "car-1")
        .json(&json!({"configId": "other-config", "userId": user_id}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "idempotency_key_reused").await;
    assert_eq!(holds_of(&app, &admin, first["orderId"].as_str().unwrap()).await, skus.len());

    // The first request's answer is lost and its record with it (its handler dropped with a
    // timed-out connection, or an error after the commit, frees the key): a retry with the
    // key finds the order the key placed and places nothing again.
    let db = motorpool_platform::db::Db::connect("factory", &app.tp.cfg.infra()).await.unwrap();
    let forgotten = sqlx::query("DELETE FROM idempotency_keys WHERE key = 'car-1'").execute(db.pool()).await.unwrap();
    assert_eq!(forgotten.rows_affected(), 1);
    let retried = place("car-1").await.unwrap();
    assert_eq!(retried.status(), 201);
    assert_eq!(retried.json::<Value>().await.unwrap()["orderId"], first["orderId"], "the order the key placed");
    assert_eq!(app.available(&token).await, "4175.00", "still one deposit");
    let orders: Value = app.get_auth("/api/factory/orders", &token).await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 1, "still one order");
    app.cleanup().await;
}

/// Moves the clock past `factory.resume_after_ms` until recovery has brought the order to
/// `code` with nothing left to run (each injected crash stops it once more on the way).
async fn recover_to(app: &App, clock: &Clock, token: &str, order_id: &str, code: &str) -> Value {
    eventually(Duration::from_secs(15), code, || async {
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = order(app, token, order_id).await;
        (o["statusCode"] == code && o["inProgress"] == false).then_some(o)
    })
    .await
}

#[tokio::test]
async fn a_crash_right_after_any_saga_step_is_resumed_without_a_second_hold_charge_slot_or_use_of_parts() {
    let (app, clock) = spawn_factory_with(|cfg| {
        cfg.factory.daily_capacity = 1;
        cfg.factory.crash_after = motorpool_factory::config::CRASH_POINTS.iter().map(|p| (*p).to_owned()).collect();
    })
    .await;
    let admin = app.admin_token().await;
    let (token, body, skus) = buyer(&app, &admin, "crashy", "20000.00", 3).await;

    // Crash after the hold: the order is accepted, its parts are held, no deposit yet.
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(body.clone())).await;
    assert_eq!(r.status(), 202);
    let first = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    let o = order(&app, &token, &first).await;
    assert_eq!((&o["statusCode"], &o["inProgress"]), (&json!("placed"), &json!(true)), "{o}");
    assert_eq!(holds_of(&app, &admin, &first).await, skus.len());
    assert_eq!(app.available(&token).await, "20000.00");
    // Recovery resumes it through a crash after the deposit (charged, unrecorded) and one
    // inside the booking transaction (slot taken, rolled back) to the earliest free day.
    let o = recover_to(&app, &clock, &token, &first, "scheduled").await;
    assert_eq!(o["productionDate"], date_after(&clock, 7), "the day a rolled-back booking took is free again: {o}");
    assert_eq!(app.available(&token).await, "14175.00", "one deposit of 5,825.00");
    assert_eq!(holds_of(&app, &admin, &first).await, skus.len(), "the parts held once");
    for s in &skus {
        assert_eq!(app.stock(&admin, s).await["held"], 1, "{s}");
    }

    // A second order waits for a part; its hold when the part arrives crashes unrecorded, and
    // the next attempt still gets the parts (the orphaned holds are given back first).
    let scarce = skus.iter().find(|s| s.as_str() == "CAR-V6-3.0").expect("the V6 part").clone();
    app.put_stock(&admin, &scarce, 1).await;
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(body.clone())).await;
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    assert_eq!(order(&app, &token, &second).await["statusCode"], "awaiting_parts");
    app.put_stock(&admin, &scarce, 2).await;
    let o = wait_status(&app, &token, &second, "scheduled").await;
    assert_eq!(o["productionDate"], date_after(&clock, 8), "the next day: capacity 1 a day");
    assert_eq!(holds_of(&app, &admin, &second).await, skus.len());
    assert_eq!(app.stock(&admin, &scarce).await["held"], 2, "one per order");

    // Its cancellation crashes after the refund and release: recovery finishes it, refunding once.
    let r = app.send(Method::POST, &format!("/api/factory/order/{second}/cancel"), Some(&token), None).await;
    assert_problem(r, 503, "service_unavailable").await;
    let o = order(&app, &token, &second).await;
    assert_eq!((&o["statusCode"], &o["inProgress"]), (&json!("cancelled"), &json!(true)), "{o}");
    recover_to(&app, &clock, &token, &second, "cancelled").await;
    assert_eq!(app.available(&token).await, "14175.00", "the second deposit refunded once");
    assert_eq!(holds_of(&app, &admin, &second).await, 0);

    // Production starts; the commit crashes unrecorded and is retried: the parts are used once.
    clock.advance(7 * DAY);
    wait_status(&app, &token, &first, "in_production").await;
    for s in &skus {
        let expected = if *s == scarce { 1 } else { 2 };
        let level = app.stock(&admin, s).await;
        assert_eq!((&level["quantity"], &level["held"]), (&json!(expected), &json!(0)), "{s} used once");
    }
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}

async fn hold_ids_of(app: &App, admin: &str, order_id: &str) -> Vec<String> {
    let holds: Value = app.get_auth(&format!("/api/inventory/holds?owner=order:{order_id}"), admin).await.json().await.unwrap();
    let mut ids: Vec<String> = holds.as_array().unwrap().iter().map(|h| h["holdId"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn holds_are_renewed_until_production_and_ones_that_lapsed_are_held_again_or_the_order_waits_for_parts() {
    let (app, clock) = spawn_factory_with(|cfg| {
        cfg.inventory.max_hold_ttl_secs = 60;
        cfg.factory.placing_hold_ttl_secs = 60;
    })
    .await;
    let admin = app.admin_token().await;
    let (token, body, skus) = buyer(&app, &admin, "lapsing", "20000.00", 2).await;
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(body.clone())).await;
    assert_eq!(r.status(), 201);
    let first = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    let day = order(&app, &token, &first).await["productionDate"].clone();
    let placed = hold_ids_of(&app, &admin, &first).await;
    assert_eq!(placed.len(), skus.len());

    // Minute-long holds outlive two minutes in 20 s steps: the scheduler renews them.
    for _ in 0..6 {
        clock.advance(Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(hold_ids_of(&app, &admin, &first).await, placed, "the same holds, renewed");

    // Away for five minutes, the holds lapse; the parts are there, so they are held anew.
    clock.advance(Duration::from_secs(300));
    let renewed = eventually(Duration::from_secs(10), "new holds", || async {
        let ids = hold_ids_of(&app, &admin, &first).await;
        (ids.len() == skus.len() && ids.iter().all(|id| !placed.contains(id))).then_some(ids)
    })
    .await;
    assert_eq!(renewed.len(), skus.len());
    let o = order(&app, &token, &first).await;
    assert_eq!((&o["statusCode"], &o["productionDate"]), (&json!("scheduled"), &day), "{o}");

    // Lapsed again with one unit of the V6 left: a new order races the scheduler for it. One
    // of the two holds every part and is scheduled; the other holds nothing and waits.
    let scarce = skus.iter().find(|s| s.as_str() == "CAR-V6-3.0").expect("the V6 part").clone();
    app.put_stock(&admin, &scarce, 1).await;
    clock.advance(Duration::from_secs(300));
    let r = app.send(Method::POST, "/api/factory/order", Some(&token), Some(body)).await;
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    let settled = eventually(Duration::from_secs(10), "one scheduled, one waiting", || async {
        let mut st = Vec::new();
        for id in [&first, &second] {
            let o = order(&app, &token, id).await;
            st.push((o["statusCode"].as_str().unwrap().to_owned(), hold_ids_of(&app, &admin, id).await.len()));
        }
        let mut sorted = st.clone();
        sorted.sort();
        (sorted == [("awaiting_parts".to_owned(), 0), ("scheduled".to_owned(), skus.len())]).then_some(st)
    })
    .await;
    let waiting = if settled[0].0 == "awaiting_parts" { &first } else { &second };
    assert_eq!(order(&app, &token, waiting).await["productionDate"], Value::Null, "a waiting order has no production day");
    assert_eq!(app.stock(&admin, &scarce).await["held"], 1);

    // The part arrives: the waiting one is booked too.
    app.put_stock(&admin, &scarce, 2).await;
    wait_status(&app, &token, waiting, "scheduled").await;
    assert_eq!(hold_ids_of(&app, &admin, waiting).await.len(), skus.len());
    app.assert_inventory_consistent(&admin).await;
    app.cleanup().await;
}
