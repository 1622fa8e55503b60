use std::time::Duration;

use motorpool::Config;
use motorpool::testkit::{Backend, TestPlatform, test_config};
use motorpool_platform::clock::Clock;
use serde_json::{Value, json};

pub struct App {
    pub tp: TestPlatform,
    pub gw: String,
    pub http: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("http client")
}

pub fn config() -> Config {
    test_config(Backend::from_env())
}

pub async fn spawn() -> App {
    spawn_with(config()).await
}

pub async fn spawn_with(cfg: Config) -> App {
    spawn_with_clock(cfg, Clock::system()).await
}

/// A platform whose services all read `clock` (a manual one moves only when told).
pub async fn spawn_with_clock(cfg: Config, clock: Clock) -> App {
    let tp = TestPlatform::start(cfg, &[], clock).await.expect("platform starts");
    let gw = tp.url("gateway");
    let app = App { tp, gw, http: client() };
    wait_ready(&app.http, &app.gw).await;
    app
}

/// Polls `/ready` until it answers 200 (bounded): readiness is a signal, not a sleep.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became ready");
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::now_v7().simple())
}

pub const PASSWORD: &str = "correct horse battery staple";

impl App {
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.gw)).json(&body).send().await.expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.gw)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn register(&self, email: &str) -> Value {
        let r = self.post("/api/auth/register", json!({"email": email, "password": PASSWORD, "fullName": "Test User"})).await;
        assert_eq!(r.status(), 201, "register {email}");
        r.json().await.expect("json")
    }

    /// Logs in and returns the token response.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let r = self.post("/api/auth/login", json!({"email": email, "password": password})).await;
        assert_eq!(r.status(), 200, "login {email}");
        r.json().await.expect("json")
    }

    /// Registers a fresh customer and returns (email, access token, refresh token).
    pub async fn customer(&self, tag: &str) -> (String, String, String) {
        let email = unique_email(tag);
        self.register(&email).await;
        let t = self.login(&email, PASSWORD).await;
        (email, t["accessToken"].as_str().expect("token").to_owned(), t["refreshToken"].as_str().expect("token").to_owned())
    }

    /// An admin's access token (the bootstrap admin configured by `spawn_admin`).
    pub async fn admin_token(&self) -> String {
        let t = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        t["accessToken"].as_str().expect("token").to_owned()
    }

    pub async fn cleanup(self) {
        self.tp.cleanup().await;
    }
}

pub const ADMIN_EMAIL: &str = "root@motorpool.test";
pub const ADMIN_PASSWORD: &str = "admin password for tests";

/// A platform with a bootstrap admin account.
pub async fn spawn_admin() -> App {
    let mut cfg = config();
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    spawn_with(cfg).await
}

/// Asserts a problem+json answer with `status` and `code`, and returns its body.
pub async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "status");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: Value = r.json().await.expect("problem body");
    assert_eq!(body["code"], code, "problem code in {body}");
    assert_eq!(body["status"], status);
    body
}

impl App {
    /// `method path` through the gateway, with a bearer token and a JSON body when given.
    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.gw));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    /// Sets a SKU's stock as the admin; the stock view.
    pub async fn put_stock(&self, admin: &str, sku: &str, quantity: i64) -> Value {
        let r =
            self.send(reqwest::Method::PUT, &format!("/api/inventory/stock/{sku}"), Some(admin), Some(json!({"quantity": quantity}))).await;
        assert_eq!(r.status(), 200, "PUT stock {sku}");
        r.json().await.expect("json")
    }

    /// A SKU's stock view `{sku, quantity, held, available}` as the admin sees it.
    pub async fn stock(&self, admin: &str, sku: &str) -> Value {
        let r = self.get_auth(&format!("/api/inventory/stock/{sku}"), admin).await;
        assert_eq!(r.status(), 200, "GET stock {sku}");
        r.json().await.expect("json")
    }

    /// Asserts that inventory's held counters match its hold rows.
    pub async fn assert_inventory_consistent(&self, admin: &str) {
        let c: Value = self.get_auth("/api/inventory/check", admin).await.json().await.expect("json");
        assert_eq!(c, json!({"consistent": true, "stockMismatches": 0, "ownerMismatches": 0}), "inventory check");
    }

    /// The value of one counter of `service`'s `/metrics` whose labels include `label`
    /// (e.g. `how="expired_by_sweeper"`); 0 when it has not been counted yet.
    pub async fn metric(&self, service: &str, name: &str, label: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.tp.url(service))).send().await.expect("metrics").text().await.expect("text");
        metric_in(&text, name, label)
    }
}

/// The sum of the samples of `name` in a Prometheus text whose labels include `label`.
pub fn metric_in(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` otherwise.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
