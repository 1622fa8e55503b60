//! The shop through the gateway: the public catalog, carts whose lines are inventory holds,
//! live replies over WebSocket, checkout paid from the wallet exactly once per key, orders
//! only their owner sees — and no overselling however many customers race for the last units,
//! in one process or with replicas in separate processes.

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use motorpool::testkit::{Backend, cleanup_config, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::processes::{Child, free_addr, serve};

/// The public API at one gateway address: what the in-process and the multi-process tests
/// share.
#[derive(Clone)]
pub struct Edge {
    pub http: reqwest::Client,
    pub gw: String,
}

impl Edge {
    pub fn of(app: &App) -> Self {
        Self { http: app.http.clone(), gw: app.gw.clone() }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.gw));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Value {
        let r = self.send(Method::GET, path, token, None).await;
        let status = r.status();
        let body = r.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.send(Method::POST, "/api/auth/login", None, Some(json!({"email": email, "password": password}))).await;
        assert_eq!(r.status(), 200, "login {email}");
        let t: Value = r.json().await.expect("json");
        t["accessToken"].as_str().expect("token").to_owned()
    }

    /// Registers and logs in a fresh customer; the access token.
    pub async fn customer(&self, tag: &str) -> String {
        let email = unique_email(tag);
        let body = json!({"email": email, "password": PASSWORD, "fullName": "Shop Test"});
        let r = self.send(Method::POST, "/api/auth/register", None, Some(body)).await;
        assert_eq!(r.status(), 201, "register {email}");
        self.login(&email, PASSWORD).await
    }

    /// `n` fresh customers, registered and logged in 25 at a time.
    pub async fn customers(&self, tag: &str, n: usize) -> Vec<String> {
        futures::stream::iter(0..n).map(|i| async move { self.customer(&format!("{tag}{i}")).await }).buffer_unordered(25).collect().await
    }

    pub async fn put_stock(&self, admin: &str, sku: &str, quantity: i64) {
        let r = self.send(Method::PUT, &format!("/api/inventory/stock/{sku}"), Some(admin), Some(json!({"quantity": quantity}))).await;
        assert_eq!(r.status(), 200, "PUT stock {sku}");
    }

    /// `(quantity, held, available)` of a SKU.
    pub async fn stock(&self, admin: &str, sku: &str) -> (i64, i64, i64) {
        let s = self.get(&format!("/api/inventory/stock/{sku}"), Some(admin)).await;
        (s["quantity"].as_i64().unwrap(), s["held"].as_i64().unwrap(), s["available"].as_i64().unwrap())
    }

    pub async fn assert_consistent(&self, admin: &str) {
        let c = self.get("/api/inventory/check", Some(admin)).await;
        assert_eq!(c, json!({"consistent": true, "stockMismatches": 0, "ownerMismatches": 0}), "inventory check");
    }

    /// Polls until the SKU's held units are `held` (releases are asynchronous).
    pub async fn wait_held(&self, admin: &str, sku: &str, held: i64) {
        eventually(Duration::from_secs(10), &format!("{sku} to have {held} held"), || async {
            (self.stock(admin, sku).await.1 == held).then_some(())
        })
        .await;
    }

    /// `n` product codes from the catalog (the first page, by code).
    pub async fn product_codes(&self, n: usize) -> Vec<String> {
        let page = self.get(&format!("/api/shop/products?limit={n}"), None).await;
        let codes: Vec<String> = page["items"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect();
        assert_eq!(codes.len(), n, "the catalog has {n} products");
        codes
    }

    pub async fn add(&self, token: &str, code: &str, quantity: i64) -> reqwest::Response {
        self.send(Method::POST, "/api/cart/items", Some(token), Some(json!({"productCode": code, "quantity": quantity}))).await
    }

    pub async fn cart(&self, token: &str) -> Value {
        self.get("/api/cart", Some(token)).await
    }

    pub async fn checkout(&self, token: &str, key: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/cart/checkout", self.gw))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
    }
}

/// Money `{"amount": "12.34", ...}` in minor units.
fn minor(money: &Value) -> i64 {
    cents(money["amount"].as_str().unwrap_or_else(|| panic!("money: {money}")))
}

/// A decimal string `"12.34"` in minor units.
fn cents(s: &str) -> i64 {
    let (units, cents) = s.split_once('.').unwrap_or((s, "00"));
    assert_eq!(cents.len(), 2, "two decimals: {s}");
    units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
}

fn line_of<'a>(cart: &'a Value, code: &str) -> Option<&'a Value> {
    cart["lines"].as_array().unwrap().iter().find(|l| l["productCode"] == code)
}

fn codes(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_catalog_is_public_and_searchable_by_text_model_and_category_with_cursor_paging() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);

    let first = api.get("/api/shop/products", None).await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 24, "24 per page by default");
    assert!(first["nextCursor"].is_string(), "a few hundred parts do not fit one page");
    for p in items {
        assert!(p["code"].is_string() && p["name"].is_string() && p["description"].is_string() && p["category"].is_string(), "{p}");
        assert!(minor(&p["price"]) > 0 && p["price"]["currency"] == "EUR", "{p}");
        assert!(!p["compatibleModels"].as_array().unwrap().is_empty(), "{p}");
    }

    // Text: a word of the name, code, category or models, in any case.
    let brakes = api.get("/api/shop/products?q=brake&limit=100", None).await;
    assert!(!brakes["items"].as_array().unwrap().is_empty());
    for p in brakes["items"].as_array().unwrap() {
        let text = format!("{} {} {} {}", p["code"], p["name"], p["category"], p["compatibleModels"]).to_lowercase();
        assert!(text.contains("brake"), "{p}");
    }
    assert_eq!(codes(&api.get("/api/shop/products?q=BRAKE&limit=100", None).await), codes(&brakes), "case-insensitive");

    // Model: an exact model name.
    let golf = api.get("/api/shop/products?model=VW%20Golf&limit=100", None).await;
    assert!(!golf["items"].as_array().unwrap().is_empty());
    assert!(golf["items"].as_array().unwrap().iter().all(|p| p["compatibleModels"].as_array().unwrap().contains(&json!("VW Golf"))));
    let golf_pads = api.get("/api/shop/products?q=pads&model=VW%20Golf&limit=100", None).await;
    let golf_pads = golf_pads["items"].as_array().unwrap();
    assert!(!golf_pads.is_empty());
    for p in golf_pads {
        assert!(p["compatibleModels"].as_array().unwrap().contains(&json!("VW Golf")), "{p}");
        assert!(p["name"].as_str().unwrap().to_lowercase().contains("pads"), "{p}");
    }
    let none = api.get("/api/shop/products?model=VW%20Gol", None).await;
    assert_eq!(none["items"], json!([]), "the model must match exactly");
    let cat = api.get("/api/shop/products?category=Brakes&limit=100", None).await;
    assert!(!cat["items"].as_array().unwrap().is_empty());
    assert!(cat["items"].as_array().unwrap().iter().all(|p| p["category"] == "Brakes"));

    // Cursor paging walks the same results as one big page, each once.
    let all = api.get("/api/shop/products?category=Brakes&limit=100", None).await;
    assert!(all["nextCursor"].is_null());
    let all = codes(&all);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/shop/products?category=Brakes&limit=7&cursor={c}"),
            None => "/api/shop/products?category=Brakes&limit=7".to_owned(),
        };
        let page = api.get(&path, None).await;
        assert!(page["items"].as_array().unwrap().len() <= 7);
        walked.extend(codes(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, all, "pages in order, nothing twice, nothing missing");
    assert_eq!(walked.iter().collect::<HashSet<_>>().len(), walked.len());

    for bad in ["limit=0", "limit=101"] {
        let r = api.send(Method::GET, &format!("/api/shop/products?{bad}"), None, None).await;
        assert_problem(r, 422, "validation_failed").await;
    }

    // The detail adds what can be held now: 0 without a stock record.
    let code = &all[0];
    let detail = api.get(&format!("/api/shop/products/{code}"), None).await;
    assert_eq!(detail["code"], code.as_str());
    assert_eq!(detail["available"], 0, "{detail}");
    let admin = app.admin_token().await;
    api.put_stock(&admin, code, 7).await;
    assert_eq!(api.get(&format!("/api/shop/products/{code}"), None).await["available"], 7);
    let r = api.send(Method::GET, "/api/shop/products/NO-SUCH-PART", None, None).await;
    assert_problem(r, 404, "not_found").await;

    // The lists for the search form are public too.
    let models: Vec<String> = serde_json::from_value(api.get("/api/shop/models", None).await).unwrap();
    assert!(models.contains(&"VW Golf".to_owned()) && models.contains(&"Audi A3".to_owned()), "{models:?}");
    let categories: Vec<String> = serde_json::from_value(api.get("/api/shop/categories", None).await).unwrap();
    assert!(categories.contains(&"Brakes".to_owned()), "{categories:?}");

    app.cleanup().await;
}

#[tokio::test]
async fn an_admin_adds_a_product_that_customers_find_and_buy_once_it_is_stocked() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let customer = api.customer("catalog").await;
    let code = format!("TEST-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    let path = format!("/api/shop/products/{code}");
    let body = json!({
        "name": "Roof box 420 l", "description": "Lockable roof box.", "category": "Accessories",
        "price": {"amount": "349.90", "currency": "EUR"}, "compatibleModels": ["VW Golf", "Volvo XC60"],
    });

    assert_eq!(api.send(Method::PUT, &path, None, Some(body.clone())).await.status(), 401);
    assert_eq!(api.send(Method::PUT, &path, Some(&customer), Some(body.clone())).await.status(), 403);
    for (bad, field) in [
        (json!({"price": {"amount": "349.90", "currency": "USD"}}), "price.currency"),
        (json!({"price": {"amount": "0", "currency": "EUR"}}), "price.amount"),
        (json!({"name": " padded "}), "name"),
        (json!({"compatibleModels": ["VW|Golf"]}), "compatibleModels"),
    ] {
        let mut b = body.clone();
        b.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let r = api.send(Method::PUT, &path, Some(&admin), Some(b)).await;
        let problem = assert_problem(r, 422, "validation_failed").await;
        assert!(problem.to_string().contains(field), "{field} is named: {problem}");
    }
    assert_eq!(api.send(Method::GET, &path, None, None).await.status(), 404, "nothing was written by refused requests");

    let r = api.send(Method::PUT, &path, Some(&admin), Some(body.clone())).await;
    assert_eq!(r.status(), 201);
    let mut renamed = body.clone();
    renamed["name"] = json!("Roof box 460 l");
    let r = api.send(Method::PUT, &path, Some(&admin), Some(renamed)).await;
    assert_eq!(r.status(), 200, "a second PUT replaces");
    let product = api.get(&path, None).await;
    assert_eq!(
        (&product["name"], &product["price"]["amount"], &product["available"]),
        (&json!("Roof box 460 l"), &json!("349.90"), &json!(0))
    );
    assert_eq!(product["compatibleModels"], json!(["VW Golf", "Volvo XC60"]));
    let found = api.get("/api/shop/products?q=roof+460&model=Volvo%20XC60", None).await;
    assert_eq!(codes(&found), vec![code.clone()]);

    assert_problem(api.add(&customer, &code, 1).await, 409, "out_of_stock").await;
    api.put_stock(&admin, &code, 3).await;
    assert_eq!(api.add(&customer, &code, 2).await.status(), 201);
    assert_eq!(api.stock(&admin, &code).await, (3, 2, 1));
    app.cleanup().await;
}

#[tokio::test]
async fn cart_lines_are_backed_by_inventory_holds() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("cart").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    let product = api.get(&format!("/api/shop/products/{p}"), None).await;
    let price = minor(&product["price"]);

    let empty = api.cart(&token).await;
    assert_eq!(empty["lines"], json!([]));
    assert_eq!(empty["itemCount"], 0);

    let r = api.add(&token, &p, 2).await;
    assert_eq!(r.status(), 201);
    let line: Value = r.json().await.unwrap();
    assert_eq!(line["productCode"], p.as_str());
    assert_eq!(line["name"], product["name"]);
    assert_eq!(line["quantity"], 2);
    assert_eq!(line["unitPrice"], product["price"]);
    assert_eq!(minor(&line["lineTotal"]), 2 * price);
    assert_eq!(line["held"], true);
    assert!(line["holdExpiresAt"].is_string(), "{line}");
    let hold_id = line["holdId"].as_str().expect("a hold id").to_owned();

    let cart = api.cart(&token).await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1);
    assert_eq!(line_of(&cart, &p).unwrap()["holdId"], hold_id.as_str());
    assert_eq!(cart["itemCount"], 2);
    assert_eq!(minor(&cart["total"]), 2 * price);
    assert_eq!(cart["checkoutInProgress"], false);
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8), "the line's units are held in inventory");
    let holds = api.get(&format!("/api/inventory/holds?owner=cart:{}", cart["id"].as_str().unwrap()), Some(&admin)).await;
    assert_eq!(holds.as_array().unwrap().len(), 1, "{holds}");
    assert_eq!((&holds[0]["holdId"], &holds[0]["sku"], &holds[0]["quantity"]), (&json!(hold_id), &json!(p), &json!(2)));

    // Adding again grows the line; PATCH sets it; the hold follows.
    let r = api.add(&token, &p, 1).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["quantity"], 3);
    assert_eq!(api.stock(&admin, &p).await, (10, 3, 7));
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{p}"), Some(&token), Some(json!({"quantity": 5}))).await;
    assert_eq!(r.status(), 200);
    let line: Value = r.json().await.unwrap();
    assert_eq!((line["quantity"].as_i64(), minor(&line["lineTotal"])), (Some(5), 5 * price));
    assert_eq!(api.stock(&admin, &p).await, (10, 5, 5));
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{p}"), Some(&token), Some(json!({"quantity": 1}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(api.stock(&admin, &p).await, (10, 1, 9), "a smaller line holds fewer units");
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{p}"), Some(&token), Some(json!({"quantity": 5}))).await;
    assert_eq!(r.status(), 200);

    // Too much: 409 with what is still available to this cart.
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{p}"), Some(&token), Some(json!({"quantity": 11}))).await;
    let problem = assert_problem(r, 409, "out_of_stock").await;
    assert_eq!(problem["available"], 10, "the line may be set to at most 10: {problem}");
    let r = api.add(&token, &p, 6).await;
    let problem = assert_problem(r, 409, "out_of_stock").await;
    assert_eq!(problem["available"], 5, "at most 5 more can be added: {problem}");
    let other = api.customer("cart-other").await;
    let problem = assert_problem(api.add(&other, &p, 6).await, 409, "out_of_stock").await;
    assert_eq!(problem["available"], 5, "{problem}");
    let problem = assert_problem(api.add(&other, &q, 1).await, 409, "out_of_stock").await;
    assert_eq!(problem["available"], 0, "a part without stock: {problem}");
    assert_eq!(api.stock(&admin, &p).await, (10, 5, 5), "refusals hold nothing");
    assert_eq!(line_of(&api.cart(&token).await, &p).unwrap()["quantity"], 5);

    for body in [json!({"productCode": p, "quantity": 0}), json!({"productCode": p, "quantity": 101})] {
        let r = api.send(Method::POST, "/api/cart/items", Some(&token), Some(body)).await;
        assert_problem(r, 422, "validation_failed").await;
    }
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{p}"), Some(&token), Some(json!({"quantity": 0}))).await;
    assert_problem(r, 422, "validation_failed").await;
    assert_problem(api.add(&token, "NO-SUCH-PART", 1).await, 404, "not_found").await;
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{q}"), Some(&token), Some(json!({"quantity": 1}))).await;
    assert_problem(r, 404, "not_found").await;

    // Removing answers at once; the units come back when the queued release has run.
    let r = api.send(Method::DELETE, &format!("/api/cart/items/{p}"), Some(&token), None).await;
    assert_eq!(r.status(), 204);
    let cart = api.cart(&token).await;
    assert_eq!((cart["lines"].clone(), cart["itemCount"].clone()), (json!([]), json!(0)));
    api.wait_held(&admin, &p, 0).await;
    assert_eq!(api.stock(&admin, &p).await, (10, 0, 10));
    let r = api.send(Method::DELETE, &format!("/api/cart/items/{p}"), Some(&token), None).await;
    assert_problem(r, 404, "not_found").await;
    api.assert_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_cart_cannot_hold_more_than_the_per_cart_cap() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("hoarder").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 500).await;
    api.put_stock(&admin, &q, 500).await;
    assert_eq!(api.add(&token, &p, 100).await.status(), 201);
    assert_problem(api.add(&token, &q, 1).await, 409, "hold_limit_exceeded").await;
    assert_eq!(api.stock(&admin, &q).await, (500, 0, 500));
    assert!(line_of(&api.cart(&token).await, &q).is_none());
    app.cleanup().await;
}

/// One customer's changes racing on one cart (two tabs, a retrying client): the adds that
/// skip the cart's lease and the leased changes never lose a unit or leave a hold behind no
/// line.
#[tokio::test]
async fn concurrent_changes_to_one_cart_keep_its_lines_and_holds_in_step() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("tabs").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 100).await;
    api.put_stock(&admin, &q, 100).await;

    // Twenty adds of one unit of a product the cart does not have yet: all land on one line.
    let adds = (0..20).map(|_| async { api.add(&token, &p, 1).await.status().as_u16() });
    let statuses = futures::future::join_all(adds).await;
    assert!(statuses.iter().all(|s| *s == 201), "every add is taken: {statuses:?}");
    let cart = api.cart(&token).await;
    assert_eq!(line_of(&cart, &p).expect("the line")["quantity"], 20, "{cart}");
    api.wait_held(&admin, &p, 20).await;

    // Adds, removals and quantity changes of another product at once: whatever order they
    // ran in, the product's held units end equal to its line (or to nothing without one).
    let changes = (0..24).map(|i| {
        let (api, token, q) = (&api, &token, &q);
        async move {
            let r = match i % 3 {
                0 => api.add(token, q, 2).await,
                1 => api.send(Method::DELETE, &format!("/api/cart/items/{q}"), Some(token), None).await,
                _ => api.send(Method::PATCH, &format!("/api/cart/items/{q}"), Some(token), Some(json!({"quantity": 3}))).await,
            };
            r.status().as_u16()
        }
    });
    let statuses = futures::future::join_all(changes).await;
    assert!(statuses.iter().all(|s| [200, 201, 204, 404].contains(s)), "only successes and 'not in the cart': {statuses:?}");
    let cart = api.cart(&token).await;
    let in_line = line_of(&cart, &q).map_or(0, |l| l["quantity"].as_i64().unwrap());
    api.wait_held(&admin, &q, in_line).await;
    assert_eq!(line_of(&cart, &p).expect("the first line")["quantity"], 20, "{cart}");
    api.wait_held(&admin, &p, 20).await;
    api.assert_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn many_carts_changed_at_once_each_get_their_own_outcome() {
    // On PostgreSQL concurrent adds and removals of different carts share statements: each
    // cart must still get exactly the answer it would have had alone.
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let tokens = api.customers("crowd", 40).await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 1000).await;
    api.put_stock(&admin, &q, 1000).await;
    // Even customers put `p` in their carts, odd ones `q`, one to three units each.
    let has_p = |i: usize| i.is_multiple_of(2);
    let units = |i: usize| 1 + (i as i64 % 3);
    let held = |want_p: bool| (0..40).filter(|i| has_p(*i) == want_p).map(units).sum::<i64>();

    let adds = tokens.iter().enumerate().map(|(i, t)| {
        let (api, code) = (&api, if has_p(i) { &p } else { &q });
        async move { api.add(t, code, units(i)).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(adds).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    api.wait_held(&admin, &p, held(true)).await;
    api.wait_held(&admin, &q, held(false)).await;

    // Everyone removes `p` at once: half of the carts have it, half do not.
    let removals = tokens.iter().map(|t| {
        let (api, p) = (&api, &p);
        async move { api.send(Method::DELETE, &format!("/api/cart/items/{p}"), Some(t), None).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(removals).await;
    for (i, status) in statuses.iter().enumerate() {
        assert_eq!(*status, if has_p(i) { 204 } else { 404 }, "customer {i}: {statuses:?}");
    }
    for (i, t) in tokens.iter().enumerate() {
        let cart = api.cart(t).await;
        assert!(line_of(&cart, &p).is_none(), "customer {i}: {cart}");
        let q_line = line_of(&cart, &q).map(|l| l["quantity"].as_i64().unwrap());
        assert_eq!(q_line, (!has_p(i)).then_some(units(i)), "customer {i}: {cart}");
    }
    api.wait_held(&admin, &p, 0).await;
    api.wait_held(&admin, &q, held(false)).await;
    api.assert_consistent(&admin).await;
    app.cleanup().await;
}

/// Each token adds `quantity_of(i)` units of `code` at once; `(quantity, response status,
/// body)` per client.
async fn rush(api: &Edge, tokens: &[String], code: &str, quantity_of: impl Fn(usize) -> i64) -> Vec<(i64, u16, Value)> {
    let adds = tokens.iter().enumerate().map(|(i, token)| {
        let quantity = quantity_of(i);
        async move {
            let r = api.add(token, code, quantity).await;
            let status = r.status().as_u16();
            (quantity, status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    futures::future::join_all(adds).await
}

/// Two rounds of 200 customers racing for 10 units: one unit each, then 6 or 5 each.
pub async fn oversell_rounds(api: &Edge, admin: &str, tokens: &[String], first: &str, second: &str) {
    api.put_stock(admin, first, 10).await;
    let results = rush(api, tokens, first, |_| 1).await;
    let won: Vec<usize> = (0..results.len()).filter(|i| results[*i].1 == 201).collect();
    let statuses: Vec<u16> = results.iter().map(|r| r.1).collect();
    assert_eq!(won.len(), 10, "exactly ten winners: {statuses:?}");
    for (_, status, body) in results.iter().filter(|r| r.1 != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["code"], "out_of_stock", "{body}");
        assert_eq!(body["available"], 0, "{body}");
    }
    for (_, _, line) in results.iter().filter(|r| r.1 == 201) {
        assert_eq!((&line["productCode"], &line["quantity"], &line["held"]), (&json!(first), &json!(1), &json!(true)), "{line}");
    }
    assert_eq!(api.stock(admin, first).await, (10, 10, 0));
    for i in &won {
        let cart = api.cart(&tokens[*i]).await;
        assert_eq!(line_of(&cart, first).expect("the winner's line")["quantity"], 1);
    }
    api.assert_consistent(admin).await;

    api.put_stock(admin, second, 10).await;
    let results = rush(api, tokens, second, |i| if i % 2 == 0 { 6 } else { 5 }).await;
    let mut won: Vec<i64> = results.iter().filter(|r| r.1 == 201).map(|r| r.0).collect();
    won.sort_unstable();
    for (quantity, status, body) in results.iter().filter(|r| r.1 != 201) {
        assert_eq!((*status, &body["code"]), (409, &json!("out_of_stock")), "{body}");
        assert!(body["available"].as_i64().unwrap() < *quantity, "a loser could not have had its {quantity}: {body}");
    }
    assert!(won == [6] || won == [5, 5], "one 6 or two 5s fit in 10 units, and then nothing else does: {won:?}");
    let sum: i64 = won.iter().sum();
    let (quantity, held, available) = api.stock(admin, second).await;
    assert_eq!((quantity, held), (10, sum), "held is exactly what the winners got");
    assert!(available >= 0 && available == 10 - sum);
    api.assert_consistent(admin).await;
}

#[tokio::test]
async fn two_hundred_customers_racing_for_ten_units_through_the_gateway_never_oversell() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let tokens = api.customers("rush", 200).await;
    let [first, second]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    oversell_rounds(&api, &admin, &tokens, &first, &second).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_checkout_retried_with_its_key_charges_once() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("buyer").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    api.put_stock(&admin, &q, 10).await;
    app.top_up(&token, "1000.00").await;
    let wallet_before = cents(&app.available(&token).await);
    assert_eq!(api.add(&token, &p, 2).await.status(), 201);
    assert_eq!(api.add(&token, &q, 1).await.status(), 201);
    let total = minor(&api.cart(&token).await["total"]);

    let r = api.checkout(&token, "checkout-1").await;
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["status"], "placed", "{order}");
    assert_eq!(minor(&order["total"]), total);
    assert!(order["chargeId"].is_string() && order["failure"].is_null(), "{order}");
    let mut lines: Vec<(String, i64)> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["productCode"].as_str().unwrap().to_owned(), l["quantity"].as_i64().unwrap()))
        .collect();
    lines.sort();
    let mut expected = vec![(p.clone(), 2), (q.clone(), 1)];
    expected.sort();
    assert_eq!(lines, expected);

    let again = api.checkout(&token, "checkout-1").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(again.json::<Value>().await.unwrap(), order, "a retry gets the first answer");

    assert_eq!(cents(&app.available(&token).await), wallet_before - total, "charged once");
    assert_eq!(api.stock(&admin, &p).await, (8, 0, 8), "sold once");
    assert_eq!(api.stock(&admin, &q).await, (9, 0, 9));
    let cart = api.cart(&token).await;
    assert_eq!((cart["lines"].clone(), cart["itemCount"].clone()), (json!([]), json!(0)), "the cart is empty after checkout");

    let orders = api.get("/api/shop/orders", Some(&token)).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1, "{orders}");
    assert_eq!(orders["items"][0], order);
    assert_eq!(api.get(&format!("/api/shop/orders/{}", order["id"].as_str().unwrap()), Some(&token)).await, order);

    // Two at once with one key: one order, one charge.
    assert_eq!(api.add(&token, &p, 3).await.status(), 201);
    let total2 = minor(&api.cart(&token).await["total"]);
    let (a, b) = tokio::join!(api.checkout(&token, "checkout-2"), api.checkout(&token, "checkout-2"));
    let mut ids = HashSet::new();
    for r in [a, b] {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match status {
            201 => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["code"], "idempotency_in_progress", "{body}"),
            other => panic!("checkout answered {other}: {body}"),
        }
    }
    let r = api.checkout(&token, "checkout-2").await;
    assert_eq!(r.status(), 201);
    let second: Value = r.json().await.unwrap();
    ids.insert(second["id"].as_str().unwrap().to_owned());
    assert_eq!(ids.len(), 1, "every answer names the same order: {ids:?}");
    assert_ne!(second["id"], order["id"]);
    assert_eq!(minor(&second["total"]), total2);
    assert_eq!(cents(&app.available(&token).await), wallet_before - total - total2, "charged once more");
    assert_eq!(api.stock(&admin, &p).await, (5, 0, 5));
    let orders = api.get("/api/shop/orders", Some(&token)).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 2);
    assert_eq!(orders["items"][0]["id"], second["id"], "newest first");

    let r = api.http.post(format!("{}/api/cart/checkout", api.gw)).bearer_auth(&token).json(&json!({})).send().await.unwrap();
    assert_problem(r, 400, "bad_request").await;
    assert_problem(api.checkout(&token, "checkout-3").await, 409, "cart_empty").await;
    api.assert_consistent(&admin).await;
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_checkout_without_enough_money_keeps_the_cart_and_its_holds() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("broke").await;
    let [p]: [String; 1] = api.product_codes(1).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    assert_eq!(api.add(&token, &p, 2).await.status(), 201);
    let before = api.cart(&token).await;

    assert_problem(api.checkout(&token, "poor-1").await, 409, "insufficient_funds").await;
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8), "the holds stay");
    let after = api.cart(&token).await;
    let without_expiry = |cart: &Value| {
        let mut lines = cart["lines"].clone();
        lines.as_array_mut().unwrap().iter_mut().for_each(|l| l.as_object_mut().unwrap().retain(|k, _| k != "holdExpiresAt"));
        lines
    };
    assert_eq!(without_expiry(&after), without_expiry(&before), "the cart is unchanged");
    // RFC 3339 in UTC with the same precision compares as text.
    let (was, now) = (before["lines"][0]["holdExpiresAt"].as_str().unwrap(), after["lines"][0]["holdExpiresAt"].as_str().unwrap());
    assert!(now >= was, "a refused checkout must not shorten the cart's hold: it expired at {was}, now at {now}");
    assert_eq!(after["checkoutInProgress"], false);
    assert_eq!(app.available(&token).await, "0.00");
    assert_eq!(
        api.get("/api/shop/orders", Some(&token)).await["items"].as_array().unwrap().iter().filter(|o| o["status"] == "placed").count(),
        0
    );

    // Topped up, a new checkout goes through with the same holds.
    app.top_up(&token, "1000.00").await;
    let r = api.checkout(&token, "poor-2").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "placed");
    assert_eq!(api.stock(&admin, &p).await, (8, 0, 8));
    api.assert_consistent(&admin).await;
    app.cleanup().await;
}

#[tokio::test]
async fn another_user_cannot_read_or_change_my_cart_or_orders() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let alice = api.customer("alice").await;
    let bob = api.customer("bob").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    api.put_stock(&admin, &q, 10).await;
    app.top_up(&alice, "1000.00").await;
    assert_eq!(api.add(&alice, &p, 1).await.status(), 201);
    let r = api.checkout(&alice, "alice-1").await;
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.unwrap();
    let order_path = format!("/api/shop/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(api.add(&alice, &q, 2).await.status(), 201);
    let alices = api.cart(&alice).await;

    assert_problem(api.send(Method::GET, &order_path, Some(&bob), None).await, 404, "not_found").await;
    assert_eq!(api.get("/api/shop/orders", Some(&bob)).await["items"], json!([]));
    let bobs = api.cart(&bob).await;
    assert_eq!(bobs["lines"], json!([]), "{bobs}");
    assert_ne!(bobs["id"], alices["id"]);
    let r = api.send(Method::DELETE, &format!("/api/cart/items/{q}"), Some(&bob), None).await;
    assert_problem(r, 404, "not_found").await;
    let r = api.send(Method::PATCH, &format!("/api/cart/items/{q}"), Some(&bob), Some(json!({"quantity": 1}))).await;
    assert_problem(r, 404, "not_found").await;
    // Bob's socket changes Bob's cart only.
    let url = format!("{}/cart/update-product?productCode={q}&quantity=0&requestId=bob-1&access_token={bob}", ws_base(&app));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("bob's own socket");
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["requestId"], "bob-1", "{reply}");
    if let Some(lines) = reply["cart"]["lines"].as_array() {
        assert!(lines.is_empty(), "only bob's cart is shown to bob: {reply}");
    }
    assert_eq!(api.cart(&alice).await["lines"], alices["lines"], "alice's line is untouched");
    assert_eq!(api.stock(&admin, &q).await, (10, 2, 8));

    // The admin may read any order; nobody without a token reads anything.
    assert_eq!(api.get(&order_path, Some(&admin)).await["id"], order["id"]);
    for (method, path) in [(Method::GET, "/api/cart"), (Method::GET, "/api/shop/orders"), (Method::GET, order_path.as_str())] {
        assert_problem(api.send(method, path, None, None).await, 401, "unauthorized").await;
    }
    let r = api.send(Method::POST, "/api/cart/items", None, Some(json!({"productCode": p, "quantity": 1}))).await;
    assert_problem(r, 401, "unauthorized").await;
    let r = api.send(Method::DELETE, &format!("/api/cart/items/{q}"), None, None).await;
    assert_problem(r, 401, "unauthorized").await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_cart_survives_a_restart() {
    let mut app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let email = unique_email("keeper");
    app.register(&email).await;
    let token = api.login(&email, PASSWORD).await;
    let [p]: [String; 1] = api.product_codes(1).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    assert_eq!(api.add(&token, &p, 2).await.status(), 201);
    let before = api.cart(&token).await;

    let cfg = app.tp.cfg.clone();
    app.tp.stop().await;
    let app = spawn_with(cfg).await;
    let api = Edge::of(&app);
    let token = api.login(&email, PASSWORD).await;
    let after = api.cart(&token).await;
    assert_eq!(after["id"], before["id"]);
    let line = line_of(&after, &p).expect("the line survived");
    assert_eq!((&line["quantity"], &line["holdId"], &line["held"]), (&json!(2), &before["lines"][0]["holdId"], &json!(true)));
    let admin = app.admin_token().await;
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8), "and so did its hold");
    app.cleanup().await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_base(app: &App) -> String {
    format!("ws://{}", app.tp.addr("gateway"))
}

/// The next text message as JSON (pings skipped), within 10 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap_or_else(|e| panic!("JSON message {t}: {e}")),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends a cart request and returns its final reply, after checking that `pending` came first
/// when `expect_pending`.
async fn request(ws: &mut Ws, message: Value, expect_pending: bool) -> Value {
    let rid = message["requestId"].clone();
    ws.send(Message::Text(message.to_string().into())).await.unwrap();
    let mut saw_pending = false;
    loop {
        let m = next_json(ws).await;
        if m["requestId"] != rid {
            continue;
        }
        assert_eq!(m["type"], "reply", "{m}");
        if m["status"] == "pending" {
            assert!(!saw_pending, "one pending reply: {m}");
            saw_pending = true;
            continue;
        }
        assert!(saw_pending || !expect_pending, "pending comes first: {m}");
        return m;
    }
}

/// The status of a refused WebSocket handshake.
async fn refused(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{url}: unexpected error {e}"),
        Ok(_) => panic!("{url}: the handshake was accepted"),
    }
}

#[tokio::test]
async fn the_cart_socket_replies_pending_then_confirmed_or_rejected() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("live").await;
    let [p, q]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;
    api.put_stock(&admin, &q, 1).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/api/cart/ws?access_token={token}", ws_base(&app))).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "cart", "{hello}");
    assert_eq!(hello["cart"]["lines"], json!([]));

    let r = request(&mut ws, json!({"type": "add", "requestId": "r1", "productCode": p, "quantity": 2}), true).await;
    assert_eq!(r["status"], "confirmed", "{r}");
    assert_eq!(line_of(&r["cart"], &p).expect("the line")["quantity"], 2, "{r}");
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8));

    let r = request(&mut ws, json!({"type": "add", "requestId": "r2", "productCode": q, "quantity": 3}), true).await;
    assert_eq!((&r["status"], &r["reason"], &r["available"]), (&json!("rejected"), &json!("out_of_stock"), &json!(1)), "{r}");
    assert!(line_of(&r["cart"], &q).is_none());

    // A repeated request id gets the stored outcome and has no second effect.
    let r = request(&mut ws, json!({"type": "add", "requestId": "r1", "productCode": p, "quantity": 2}), false).await;
    assert_eq!(r["status"], "confirmed", "{r}");
    assert_eq!(line_of(&r["cart"], &p).unwrap()["quantity"], 2);
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8));

    let r = request(&mut ws, json!({"type": "set", "requestId": "r3", "productCode": p, "quantity": 4}), true).await;
    assert_eq!(r["status"], "confirmed", "{r}");
    assert_eq!(line_of(&r["cart"], &p).unwrap()["quantity"], 4);
    assert_eq!(api.stock(&admin, &p).await, (10, 4, 6));
    let r = request(&mut ws, json!({"type": "check", "requestId": "r4"}), true).await;
    assert_eq!(r["status"], "confirmed", "{r}");
    let r = request(&mut ws, json!({"type": "remove", "requestId": "r5", "productCode": p}), false).await;
    assert_eq!(r["status"], "confirmed", "{r}");
    assert_eq!(r["cart"]["lines"], json!([]));
    api.wait_held(&admin, &p, 0).await;

    ws.send(Message::Text("this is not json".into())).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!((&e["type"], &e["code"]), (&json!("error"), &json!("bad_request")), "{e}");
    assert!(e["detail"].is_string());
    ws.close(None).await.unwrap();

    assert_eq!(refused(&format!("{}/api/cart/ws?access_token=not-a-token", ws_base(&app))).await, 401);
    assert_eq!(refused(&format!("{}/api/cart/ws", ws_base(&app))).await, 401);
    app.cleanup().await;
}

#[tokio::test]
async fn update_product_over_a_websocket_sends_one_reply_and_closes() {
    let app = spawn_admin().await;
    let api = Edge::of(&app);
    let admin = app.admin_token().await;
    let token = api.customer("oneshot").await;
    let [p]: [String; 1] = api.product_codes(1).await.try_into().unwrap();
    api.put_stock(&admin, &p, 10).await;

    let once = |quantity: i64, rid: &str| {
        format!("{}/cart/update-product?productCode={p}&quantity={quantity}&requestId={rid}&access_token={token}", ws_base(&app))
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(once(2, "u1")).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!((&reply["requestId"], &reply["status"]), (&json!("u1"), &json!("confirmed")), "{reply}");
    assert_eq!(line_of(&reply["cart"], &p).expect("the line")["quantity"], 2, "{reply}");
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("closed in time");
    assert!(matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))), "then it closes: {end:?}");
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8));
    assert_eq!(line_of(&api.cart(&token).await, &p).unwrap()["quantity"], 2);

    let (mut ws, _) = tokio_tungstenite::connect_async(once(50, "u2")).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (&reply["status"], &reply["reason"], &reply["available"]),
        (&json!("rejected"), &json!("out_of_stock"), &json!(10)),
        "{reply}"
    );
    assert_eq!(api.stock(&admin, &p).await, (10, 2, 8));

    let (mut ws, _) = tokio_tungstenite::connect_async(once(0, "u3")).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["status"], "confirmed", "{reply}");
    assert_eq!(reply["cart"]["lines"], json!([]));
    api.wait_held(&admin, &p, 0).await;

    let bad = format!("{}/cart/update-product?productCode={p}&quantity=1&access_token=nope", ws_base(&app));
    assert_eq!(refused(&bad).await, 401);
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_shop_and_inventory_replicas_in_separate_processes_never_oversell() {
    let mut cfg = test_config(Backend::Infra);
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.discovery.ttl_secs = 3;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let path = cfg.data_dir.join("motorpool.toml");
    // Written unmasked: the processes need the admin's password.
    std::fs::write(&path, toml::to_string_pretty(&cfg).unwrap()).unwrap();

    // Two replicas each of inventory and shop; one of everything else the test needs.
    let plan: Vec<(&str, String)> =
        ["identity", "payments", "inventory", "inventory", "shop", "shop", "gateway"].into_iter().map(|s| (s, free_addr())).collect();
    let children: Vec<Child> = plan.iter().map(|(service, addr)| serve(&path, service, addr)).collect();
    let http = client();
    for (_, addr) in &plan {
        wait_ready(&http, &format!("http://{addr}")).await;
    }
    let gw = format!("http://{}", plan.iter().find(|(s, _)| *s == "gateway").unwrap().1);
    let api = Edge { http: http.clone(), gw };

    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let tokens = api.customers("replica", 200).await;
    let [first, second]: [String; 2] = api.product_codes(2).await.try_into().unwrap();
    oversell_rounds(&api, &admin, &tokens, &first, &second).await;

    // Both replicas of each served part of the work.
    let metrics = |addr: String| {
        let http = http.clone();
        async move { http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap() }
    };
    for (service, addr) in plan.iter().filter(|(s, _)| *s == "shop") {
        let text = metrics(addr.clone()).await;
        let adds = metric_in(&text, "http_requests_total", "route=\"/api/cart/items\"");
        assert!(adds > 0.0, "{service} at {addr} took cart requests: {adds}");
    }
    for (service, addr) in plan.iter().filter(|(s, _)| *s == "inventory") {
        let text = metrics(addr.clone()).await;
        let holds = metric_in(&text, "inventory_hold_requests_total", "outcome=");
        assert!(holds > 0.0, "{service} at {addr} took holds: {holds}");
    }
    drop(children);
    cleanup_config(&cfg).await;
}
