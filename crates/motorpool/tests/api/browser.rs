//! The web pages in a real browser: Debian's headless Chromium driven through chromedriver
//! (no driver or browser downloads). Tests here are named `browser_*` and ignored by a plain
//! `cargo test`, because they need `chromium` and `chromium-driver` installed; CI runs them.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::*;

/// A chromedriver process and one headless Chromium session.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    profile: std::path::PathBuf,
}

impl Browser {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver must be installed (Debian: chromium-driver)");
        let profile = std::env::temp_dir().join(format!("motorpool-chrome-{}", uuid::Uuid::now_v7().simple()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display()), "--window-size=1280,900"]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Self { client, driver, profile },
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot start a browser session: {last_err:?}");
    }

    pub async fn fill(&self, id: &str, text: &str) {
        let el =
            self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, id: &str) {
        // A page that re-renders (a live update) can replace the element between finding and
        // clicking it: then the new one is clicked, as a person would.
        for attempt in 1.. {
            let el = self
                .client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Id(id))
                .await
                .unwrap_or_else(|e| panic!("#{id}: {e}"));
            // The driver scrolls only elements out of the viewport, and the sticky navigation bar
            // can cover one that is in it: centre it first.
            let arg = serde_json::to_value(&el).unwrap();
            let clicked = match self.client.execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg]).await {
                Ok(_) => el.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(e) if attempt < 5 && is_stale(&e) => continue,
                Err(e) => panic!("click #{id}: {e}"),
            }
        }
    }

    /// Waits until element `id` shows `expected` (bounded).
    pub async fn wait_text(&self, id: &str, expected: &str) {
        let mut seen = String::new();
        for _ in 0..100 {
            if let Ok(el) = self.client.find(Locator::Id(id)).await {
                seen = el.text().await.unwrap_or_default();
                if seen.contains(expected) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        panic!("#{id} shows {seen:?}, expected {expected:?} (at {url})");
    }

    pub async fn wait_path(&self, path: &str) {
        for _ in 0..100 {
            if self.client.current_url().await.is_ok_and(|u| u.path() == path) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {path}");
    }

    /// Logs in through the login page and waits to be sent on to `next`.
    pub async fn log_in(&self, gw: &str, email: &str, next: &str) {
        self.client.goto(&format!("{gw}/login.html?next={next}")).await.unwrap();
        self.fill("login-email", email).await;
        self.fill("login-password", PASSWORD).await;
        self.click("login-submit").await;
        self.wait_path(next).await;
    }

    /// Types a new quantity over a cart line's and leaves the field, so the page sends it.
    async fn set_cart_quantity(&self, code: &str, quantity: u32) {
        // Control+A selects the old quantity (a number input keeps the caret at its start),
        // NULL releases Control, Tab leaves the field and fires `change`.
        const SELECT_ALL: &str = "\u{E009}a\u{E000}";
        const TAB: &str = "\u{E004}";
        let id = format!("qty-{code}");
        let el = self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(&id)).await.unwrap();
        el.send_keys(&format!("{SELECT_ALL}{quantity}{TAB}")).await.unwrap();
    }

    /// Waits until element `id`'s attribute `name` is `expected` (bounded).
    pub async fn wait_attr(&self, id: &str, name: &str, expected: &str) {
        let mut seen = None;
        for _ in 0..100 {
            if let Ok(el) = self.client.find(Locator::Id(id)).await {
                seen = el.attr(name).await.unwrap_or_default();
                if seen.as_deref() == Some(expected) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("#{id}[{name}] is {seen:?}, expected {expected:?}");
    }

    /// Element `id`'s attribute `name`, which must be present.
    async fn attr(&self, id: &str, name: &str) -> String {
        let el = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
        el.attr(name).await.unwrap().unwrap_or_else(|| panic!("#{id} has no {name}"))
    }

    /// Whether element `id` is currently hidden.
    async fn is_hidden(&self, id: &str) -> bool {
        self.client.find(Locator::Id(id)).await.unwrap().attr("hidden").await.unwrap().is_some()
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_register_log_out_and_log_in_through_the_pages() {
    let app = spawn().await;
    let browser = Browser::start().await;
    let email = unique_email("browser");

    browser.client.goto(&format!("{}/", app.gw)).await.unwrap();
    browser.wait_text("areas", "Rentals").await;

    browser.client.goto(&format!("{}/register.html", app.gw)).await.unwrap();
    browser.fill("register-name", "Browser User").await;
    browser.fill("register-email", &email).await;
    browser.fill("register-password", PASSWORD).await;
    browser.click("register-submit").await;
    browser.wait_path("/account.html").await;
    browser.wait_text("me-email", &email).await;
    browser.wait_text("me-role", "customer").await;
    browser.wait_text("nav-user", &email).await;

    browser.click("logout-button").await;
    browser.wait_path("/").await;

    // A wrong password shows the problem on the page.
    browser.client.goto(&format!("{}/login.html", app.gw)).await.unwrap();
    browser.fill("login-email", &email).await;
    browser.fill("login-password", "not the password").await;
    browser.click("login-submit").await;
    browser.wait_text("login-message", "Wrong email or password").await;

    browser.fill("login-password", PASSWORD).await;
    browser.click("login-submit").await;
    browser.wait_path("/account.html").await;
    browser.wait_text("me-name", "Browser User").await;

    // The server saw exactly one account with that email.
    let r = app.post("/api/auth/register", json!({"email": email, "password": PASSWORD, "fullName": "Dup"})).await;
    assert_eq!(r.status(), 409);
    browser.close().await;
    app.cleanup().await;
}

/// The first `n` catalog products that fit at least one model.
async fn catalog_products(app: &App, n: usize) -> Vec<Value> {
    let r = app.http.get(format!("{}/api/shop/products?limit=100", app.gw)).send().await.unwrap();
    assert_eq!(r.status(), 200, "catalog");
    let page: Value = r.json().await.unwrap();
    let items: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["compatibleModels"].as_array().is_some_and(|m| !m.is_empty()))
        .cloned()
        .collect();
    assert!(items.len() >= n, "the catalog has at least {n} parts that fit a model");
    items.into_iter().take(n).collect()
}

/// A decimal money string in minor units ("12.30" -> 1230).
fn minor(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, "0"));
    units.parse::<i64>().unwrap() * 100 + format!("{fraction:0<2}")[..2].parse::<i64>().unwrap()
}

/// Minor units as a decimal money string (1230 -> "12.30").
fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_shop_search_add_to_cart_live_and_checkout() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let product = catalog_products(&app, 1).await.remove(0);
    let code = product["code"].as_str().unwrap();
    let name = product["name"].as_str().unwrap();
    let price = product["price"]["amount"].as_str().unwrap();
    let model = product["compatibleModels"][0].as_str().unwrap();
    app.put_stock(&admin, code, 5).await;
    let (email, token, _) = app.customer("shop-page").await;
    app.top_up(&token, "500.00").await;

    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/", app.gw)).await.unwrap();
    browser.wait_text("areas", "Shop").await;
    browser.log_in(&app.gw, &email, "/shop.html").await;
    browser.wait_text("live-connection", "Live updates on").await;

    // Search by model and text; the product view shows what is in stock.
    let option = format!("#shop-model option[value=\"{model}\"]");
    browser.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(&option)).await.unwrap();
    browser.client.find(Locator::Id("shop-model")).await.unwrap().select_by_value(model).await.unwrap();
    browser.fill("shop-search", code).await;
    browser.click("shop-search-submit").await;
    browser.wait_text("shop-results", name).await;
    browser.click(&format!("view-{code}")).await;
    browser.wait_text("product-code", code).await;
    browser.wait_text("product-models", model).await;
    browser.wait_text("product-price", price).await;
    browser.wait_text("product-available", "5 in stock").await;

    // Adding is confirmed live, and the cart and the availability follow.
    browser.click(&format!("add-{code}")).await;
    browser.wait_text("live-status", &format!("Added 1 × {name}")).await;
    browser.wait_text("live-log", "Confirmed").await;
    browser.wait_text("cart-lines", name).await;
    browser.wait_text("cart-total", &format!("{price} EUR")).await;
    browser.wait_text("cart-status", "held until").await;
    browser.wait_text("product-available", "4 in stock").await;

    browser.set_cart_quantity(code, 2).await;
    browser.wait_text("live-status", &format!("Changed {name} to 2")).await;
    let total = decimal(minor(price) * 2);
    browser.wait_text("cart-total", &format!("{total} EUR")).await;

    browser.click("checkout").await;
    browser.wait_text("checkout-message", "Order placed").await;
    browser.wait_text("orders", &format!("2 × {name}")).await;
    browser.wait_text("orders", "Placed").await;
    browser.wait_text("cart-total", "0.00 EUR").await;
    assert!(!browser.is_hidden("cart-empty").await, "the cart is empty after checkout");

    // The server agrees: one placed order, the wallet charged once, the stock committed.
    let orders: Value = app.get_auth("/api/shop/orders", &token).await.json().await.unwrap();
    let orders = orders["items"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["status"], "placed");
    assert_eq!(orders[0]["total"]["amount"], total.as_str());
    assert_eq!(app.available(&token).await, decimal(minor("500.00") - minor(price) * 2), "charged once");
    let stock = app.stock(&admin, code).await;
    assert_eq!(stock["quantity"], 3, "{stock}");
    assert_eq!(stock["held"], 0, "{stock}");
    app.assert_inventory_consistent(&admin).await;
    browser.close().await;
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_shop_rejects_out_of_stock_live_and_sends_to_the_wallet_when_funds_are_short() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let products = catalog_products(&app, 2).await;
    let (gone, last) = (&products[0], &products[1]);
    let gone_code = gone["code"].as_str().unwrap();
    let last_code = last["code"].as_str().unwrap();
    let last_name = last["name"].as_str().unwrap();
    app.put_stock(&admin, gone_code, 0).await;
    app.put_stock(&admin, last_code, 1).await;
    let (email, token, _) = app.customer("shop-short").await;

    // Browsing needs no account; adding asks to log in and comes back to the search.
    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/shop.html?q={gone_code}", app.gw)).await.unwrap();
    browser.wait_text("shop-results", gone["name"].as_str().unwrap()).await;
    browser.click(&format!("add-{gone_code}")).await;
    browser.wait_text("live-status", "Log in to add parts").await;
    browser.click("shop-login-link").await;
    browser.wait_path("/login.html").await;
    browser.fill("login-email", &email).await;
    browser.fill("login-password", PASSWORD).await;
    browser.click("login-submit").await;
    browser.wait_path("/shop.html").await;
    browser.wait_text("live-connection", "Live updates on").await;

    // Out of stock: rejected live, nothing in the cart.
    browser.click(&format!("add-{gone_code}")).await;
    browser.wait_text("live-status", "out of stock").await;
    browser.wait_text("live-log", "Rejected").await;
    assert!(!browser.is_hidden("cart-empty").await, "nothing was added");

    // The last unit can be had, a second one cannot.
    browser.fill("shop-search", last_code).await;
    browser.click("shop-search-submit").await;
    browser.click(&format!("add-{last_code}")).await;
    browser.wait_text("live-status", &format!("Added 1 × {last_name}")).await;
    browser.wait_text("cart-lines", last_name).await;
    browser.set_cart_quantity(last_code, 2).await;
    browser.wait_text("live-status", "not changed").await;
    let cart: Value = app.get_auth("/api/cart", &token).await.json().await.unwrap();
    assert_eq!(cart["lines"][0]["quantity"], 1, "{cart}");

    // An empty wallet: checkout points to the wallet page; after a top-up it goes through.
    browser.click("checkout").await;
    browser.wait_text("checkout-message", "not enough money").await;
    browser.wait_text("orders", "Failed").await;
    browser.click("checkout-wallet-link").await;
    browser.wait_path("/wallet.html").await;
    browser.fill("topup-amount", "500.00").await;
    browser.click("topup-submit").await;
    browser.wait_text("topup-message", "Added 500.00 EUR").await;
    browser.client.goto(&format!("{}/shop.html", app.gw)).await.unwrap();
    browser.wait_text("cart-lines", last_name).await;
    browser.click("checkout").await;
    browser.wait_text("checkout-message", "Order placed").await;
    browser.wait_text("orders", "Placed").await;
    assert_eq!(app.stock(&admin, last_code).await["quantity"], 0, "the last unit was sold");
    app.assert_inventory_consistent(&admin).await;
    browser.close().await;
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_configurator_greys_out_blocked_options_resolves_a_conflict_and_saves() {
    let app = spawn().await;
    let browser = Browser::start().await;

    // The home page offers the configurator; anonymous visitors may use it.
    browser.client.goto(&format!("{}/", app.gw)).await.unwrap();
    browser.wait_text("areas", "Configure").await;
    let card = browser.client.find(Locator::Css("#areas a[href=\"/configure.html\"]")).await.unwrap();
    assert_eq!(card.attr("class").await.unwrap().as_deref(), Some("card"), "the configurator card is not marked coming soon");
    card.click().await.unwrap();
    browser.wait_path("/configure.html").await;
    browser.wait_text("live-connection", "Live prices on").await;

    // The Volt S rules out the exhaust, with the rule's message as the reason.
    browser.click("opt-volt-s").await;
    browser.wait_attr("opt-volt-s", "aria-pressed", "true").await;
    browser.wait_attr("opt-sport-exhaust", "data-state", "unavailable").await;
    let title = browser.attr("opt-sport-exhaust", "title").await;
    assert!(title.contains("An electric car has no exhaust to tune."), "{title}");
    browser.wait_text("opt-sport-exhaust", "Not available").await;
    browser.wait_text("price-total", "41,990.00 €").await;

    // The sport package adds its price and brings its seats, marked as included.
    browser.click("opt-pkg-sport").await;
    browser.wait_text("price-total", "45,490.00 €").await;
    browser.wait_text("price-lines", "Sport package").await;
    browser.wait_attr("opt-sport-seats", "data-state", "required").await;
    browser.wait_text("opt-sport-seats", "Included").await;
    browser.wait_text("cheapest-total", "45,490.00 €").await;

    // A reload continues the same session.
    browser.client.refresh().await.unwrap();
    browser.wait_text("live-connection", "Live prices on").await;
    browser.wait_attr("opt-pkg-sport", "data-state", "selected").await;
    browser.wait_attr("opt-volt-s", "data-state", "selected").await;
    browser.wait_text("price-total", "45,490.00 €").await;

    // The V6 is a Tundra engine: the page names the least change, and applying it takes it.
    browser.wait_attr("opt-v6-3.0", "data-state", "unavailable").await;
    browser.click("opt-v6-3.0").await;
    browser.wait_text("conflict", "To have “3.0 V6 petrol, 340 hp”").await;
    browser.wait_text("conflict-changes", "Removes Volt S electric").await;
    browser.wait_text("conflict-changes", "Removes Sport package").await;
    browser.wait_text("conflict-changes", "Brings in Tundra SUV").await;
    assert_eq!(browser.attr("opt-volt-s", "data-state").await, "selected", "a conflicting pick changes nothing by itself");
    browser.click("conflict-apply").await;
    browser.wait_attr("opt-v6-3.0", "data-state", "selected").await;
    browser.wait_attr("opt-volt-s", "aria-pressed", "false").await;
    assert_ne!(browser.attr("opt-volt-s", "data-state").await, "selected");
    browser.wait_attr("opt-tundra", "data-state", "required").await;
    assert!(browser.is_hidden("conflict").await, "the conflict panel closes once applied");
    browser.wait_text("price-total", "6,900.00 €").await;
    browser.wait_text("cheapest-total", "53,200.00 €").await;

    // Saving completes the car cheapest; the id and the share link are shown.
    browser.click("save").await;
    browser.wait_text("saved", "Saved as configuration").await;
    let id = browser.client.find(Locator::Id("saved-id")).await.unwrap().text().await.unwrap();
    uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("a configuration id, not {id:?}: {e}"));
    browser.wait_text("saved-price", "53,200.00 €").await;
    let saved: Value = app.http.get(format!("{}/api/configure/{id}", app.gw)).send().await.unwrap().json().await.unwrap();
    assert_eq!(saved["model"], "tundra", "{saved}");
    assert_eq!(saved["engine"], "3.0 V6 petrol, 340 hp", "{saved}");
    let code = saved["shareCode"].as_str().unwrap();
    assert_eq!(browser.attr("share-link", "href").await, format!("/configure.html?share={code}"));

    // The share link opens a read-only copy, without the live configurator.
    browser.click("share-link").await;
    browser.wait_text("shared-engine", "3.0 V6 petrol, 340 hp").await;
    browser.wait_text("shared-model", "Tundra SUV").await;
    browser.wait_text("shared-price", "53,200.00 €").await;
    browser.wait_text("shared-options", "18\" alloy wheels").await;
    assert!(browser.is_hidden("configurator").await, "a shared copy cannot be changed");
    browser.close().await;
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_order_a_configured_car_and_track_it() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (email, token, _) = app.customer("factory-page").await;
    let browser = Browser::start().await;

    // The tracking page is private: anonymous visitors are sent to log in.
    browser.client.goto(&format!("{}/factory.html", app.gw)).await.unwrap();
    browser.wait_path("/login.html").await;

    // Anonymous: the car can be configured and saved, but ordering asks to log in first.
    browser.client.goto(&format!("{}/configure.html", app.gw)).await.unwrap();
    browser.wait_text("live-connection", "Live prices on").await;
    browser.click("opt-tundra").await;
    browser.wait_attr("opt-tundra", "data-state", "selected").await;
    browser.click("opt-v6-3.0").await;
    browser.wait_attr("opt-v6-3.0", "data-state", "selected").await;
    browser.click("save").await;
    browser.wait_text("saved", "Saved as configuration").await;
    browser.wait_text("order-hint", "Log in and save again to order this car").await;
    assert!(browser.is_hidden("order").await, "no order button without an account");

    // Logged in, the same session continues; saved again, the car can be ordered.
    browser.click("order-login-link").await;
    browser.wait_path("/login.html").await;
    browser.fill("login-email", &email).await;
    browser.fill("login-password", PASSWORD).await;
    browser.click("login-submit").await;
    browser.wait_path("/configure.html").await;
    browser.wait_text("live-connection", "Live prices on").await;
    browser.wait_attr("opt-v6-3.0", "data-state", "selected").await;
    browser.click("save").await;
    browser.wait_text("saved", "Saved as configuration").await;
    browser.wait_text("saved-price", "53,200.00 €").await;
    assert!(!browser.is_hidden("order").await, "the order button shows once logged in");
    assert!(browser.is_hidden("order-hint").await);
    let config_id = browser.client.find(Locator::Id("saved-id")).await.unwrap().text().await.unwrap();

    // The admin stocks the bill of materials: one part per option of the saved car.
    let saved: Value = app.get_auth(&format!("/api/configure/{config_id}"), &token).await.json().await.unwrap();
    assert_eq!(saved["model"], "tundra", "{saved}");
    let options = saved["options"].as_array().unwrap_or_else(|| panic!("options: {saved}"));
    assert!(options.len() >= 2, "{saved}");
    for option in options {
        app.put_stock(&admin, &crate::factory::sku(option.as_str().unwrap()), 1).await;
    }

    // An empty wallet: the deposit is refused, with the reason and the way to the wallet.
    browser.click("order").await;
    browser.wait_text("order-error", "not enough money in your wallet for the deposit").await;
    browser.wait_text("order-error", "insufficient_funds").await;
    let wallet_link = browser.client.find(Locator::Id("order-wallet-link")).await.unwrap();
    assert_eq!(wallet_link.attr("href").await.unwrap().as_deref(), Some("/wallet.html"));
    assert_eq!(app.available(&token).await, "0.00", "nothing was taken");

    // Topped up, the order goes through and the page follows it on the tracking page.
    app.top_up(&token, "10000.00").await;
    browser.click("order").await;
    browser.wait_path("/factory.html").await;
    browser.wait_text("order-status", "Scheduled").await;
    let orders: Value = app.get_auth("/api/factory/orders", &token).await.json().await.unwrap();
    let order = orders.as_array().unwrap().iter().find(|o| o["statusCode"] == "scheduled").unwrap_or_else(|| panic!("{orders}")).clone();
    let order_id = order["orderId"].as_str().unwrap();
    assert_eq!(order["configId"], config_id.as_str(), "{order}");
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some(format!("order={order_id}").as_str()));
    let delivery = order["estimatedDelivery"].as_str().unwrap_or_else(|| panic!("a delivery date: {order}"));
    let is_day = delivery.len() == 10 && delivery.char_indices().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
    assert!(is_day, "a YYYY-MM-DD date, not {delivery:?}");
    browser.wait_text("order-delivery", delivery).await;
    browser.wait_text("order-production", order["productionDate"].as_str().unwrap()).await;
    browser.wait_text("order-price", "53,200.00 €").await;
    browser.wait_text("order-deposit", "5,320.00 €").await;
    browser.wait_text("order-timeline", "Placed").await;
    browser.wait_text("order-timeline", "Scheduled").await;
    let steps = browser.client.find_all(Locator::Css("#order-timeline li")).await.unwrap();
    assert_eq!(steps.len(), order["timeline"].as_array().unwrap().len(), "one line per step");
    browser.wait_text("orders", "Scheduled").await;
    browser.wait_text("orders", "Failed").await;
    browser.wait_text("nav", "Factory").await;
    assert_eq!(app.available(&token).await, "4680.00", "the 10 % deposit was taken");

    // Cancelling before production: the status says so and the deposit is back.
    assert!(!browser.is_hidden("cancel-box").await, "a scheduled order can be cancelled");
    browser.click("cancel").await;
    browser.wait_text("order-status", "Cancelled").await;
    browser.wait_text("order-timeline", "Cancelled").await;
    browser.wait_text("cancel-message", "Order cancelled").await;
    assert!(browser.is_hidden("cancel-box").await, "a cancelled order cannot be cancelled again");
    assert_eq!(app.available(&token).await, "10000.00", "the deposit was refunded");
    let order: Value = app.get_auth(&format!("/api/factory/order/{order_id}"), &token).await.json().await.unwrap();
    assert_eq!(order["statusCode"], "cancelled", "{order}");

    // A reload reads it fresh.
    browser.client.refresh().await.unwrap();
    browser.wait_text("order-status", "Cancelled").await;
    app.assert_inventory_consistent(&admin).await;
    browser.close().await;
    app.cleanup().await;
}

/// The element was replaced by a re-render after it was found.
fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    matches!(e, fantoccini::error::CmdError::Standard(w) if w.error == fantoccini::error::ErrorStatus::StaleElementReference)
}
