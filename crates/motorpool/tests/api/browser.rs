//! The web pages in a real browser: Debian's headless Chromium driven through chromedriver
//! (no driver or browser downloads). Tests here are named `browser_*` and ignored by a plain
//! `cargo test`, because they need `chromium` and `chromium-driver` installed; CI runs them.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

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
        let el =
            self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
        el.click().await.unwrap();
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
