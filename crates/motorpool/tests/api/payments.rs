//! Payments through the gateway and over gRPC: idempotent top-ups, charges that never
//! overdraw a wallet under concurrency, refunds that never exceed the capture, a ledger that
//! always balances, and invoices only their owner can read.

use motorpool_proto::payments::v1::payments_client::PaymentsClient;
use motorpool_proto::payments::v1::{CaptureRequest, ChargeIdRequest, ChargeRequest, GetBalanceRequest, RefundRequest};
use serde_json::{Value, json};

use crate::helpers::*;

const CARD: &str = "4242424242424242";

impl App {
    pub async fn post_key(&self, path: &str, token: &str, key: &str, body: Value) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.gw)).bearer_auth(token).header("Idempotency-Key", key).json(&body).send().await.unwrap()
    }

    pub async fn top_up(&self, token: &str, amount: &str) {
        let key = uuid::Uuid::now_v7().to_string();
        let r = self
            .post_key(
                "/api/payments/wallet/top-up",
                token,
                &key,
                json!({"amount": {"amount": amount, "currency": "EUR"}, "cardNumber": CARD}),
            )
            .await;
        assert_eq!(r.status(), 201, "top-up");
    }

    pub async fn available(&self, token: &str) -> String {
        let w: Value = self.get_auth("/api/payments/wallet", token).await.json().await.unwrap();
        w["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == "EUR")
            .map_or("0.00".into(), |b| b["available"]["amount"].as_str().unwrap().to_owned())
    }

    pub async fn assert_ledger_balanced(&self) {
        let admin = self.admin_token().await;
        let l: Value = self.get_auth("/api/admin/payments/ledger", &admin).await.json().await.unwrap();
        assert_eq!(l["balanced"], true, "ledger: {l}");
    }
}

fn eur(amount: &str) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

#[tokio::test]
async fn top_ups_are_idempotent_and_a_declined_card_moves_nothing() {
    let app = spawn_admin().await;
    let (_, token, _) = app.customer("topup").await;
    let body = json!({"amount": eur("50.00"), "cardNumber": CARD});
    let first = app.post_key("/api/payments/wallet/top-up", &token, "k1", body.clone()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["available"], eur("50.00"));
    let again = app.post_key("/api/payments/wallet/top-up", &token, "k1", body.clone()).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first, "a retry gets the original answer");
    assert_eq!(app.available(&token).await, "50.00", "and moves nothing");

    let other = app.post_key("/api/payments/wallet/top-up", &token, "k1", json!({"amount": eur("60.00"), "cardNumber": CARD})).await;
    assert_problem(other, 422, "idempotency_key_reused").await;
    let r = app.http.post(format!("{}/api/payments/wallet/top-up", app.gw)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_problem(r, 400, "bad_request").await;

    let declined = json!({"amount": eur("20.00"), "cardNumber": "4000000000000002"});
    let r = app.post_key("/api/payments/wallet/top-up", &token, "k2", declined.clone()).await;
    assert_problem(r, 402, "payment_declined").await;
    let r = app.post_key("/api/payments/wallet/top-up", &token, "k2", declined).await;
    assert_problem(r, 402, "payment_declined").await;
    let r =
        app.post_key("/api/payments/wallet/top-up", &token, "k3", json!({"amount": eur("20.00"), "cardNumber": "4000000000000119"})).await;
    assert_problem(r, 503, "provider_unavailable").await;
    let r =
        app.post_key("/api/payments/wallet/top-up", &token, "k4", json!({"amount": eur("20.00"), "cardNumber": "4242424242424241"})).await;
    let p = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "cardNumber");
    let r = app.post_key("/api/payments/wallet/top-up", &token, "k5", json!({"amount": eur("20.001"), "cardNumber": CARD})).await;
    assert_problem(r, 422, "validation_failed").await;

    assert_eq!(app.available(&token).await, "50.00", "refusals left no trace in the wallet");
    let txs: Value = app.get_auth("/api/payments/transactions", &token).await.json().await.unwrap();
    assert_eq!(txs["items"].as_array().unwrap().len(), 1, "one transaction: {txs}");
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn parallel_charges_never_overdraw_the_wallet_and_the_ledger_balances() {
    let app = spawn_admin().await;
    let (_, token, _) = app.customer("spender").await;
    app.top_up(&token, "100.00").await;
    let attempts = (0..40).map(|i| {
        let token = token.clone();
        let app = &app;
        async move {
            let body = json!({"amount": eur("7.00"), "reference": format!("order:{i}"), "description": "Brake pads"});
            app.post_key("/api/payments/charges", &token, &format!("pay-{i}"), body).await.status().as_u16()
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts).await;
    let winners = statuses.iter().filter(|s| **s == 201).count();
    let losers = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(winners, 14, "100.00 pays for 14 charges of 7.00: {statuses:?}");
    assert_eq!(losers, 26, "{statuses:?}");
    assert_eq!(app.available(&token).await, "2.00", "the balance dropped by exactly the winners' sum");
    let txs: Value = app.get_auth("/api/payments/transactions?limit=200", &token).await.json().await.unwrap();
    let charges: Vec<&Value> = txs["items"].as_array().unwrap().iter().filter(|t| t["kind"] == "charge").collect();
    assert_eq!(charges.len(), 14);
    assert!(charges.iter().all(|t| t["walletChange"] == eur("-7.00")));
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_requests_sharing_an_idempotency_key_have_one_effect() {
    let app = spawn_admin().await;
    let (_, token, _) = app.customer("samekey").await;
    app.top_up(&token, "100.00").await;
    let body = json!({"amount": eur("30.00"), "reference": "order:once", "description": "One thing"});
    let attempts = (0..12).map(|_| app.post_key("/api/payments/charges", &token, "the-one-key", body.clone()));
    let responses = futures::future::join_all(attempts).await;
    let mut charge_ids = std::collections::HashSet::new();
    for r in responses {
        match r.status().as_u16() {
            201 => {
                let c: Value = r.json().await.unwrap();
                charge_ids.insert(c["id"].as_str().unwrap().to_owned());
            }
            409 => {
                let p: Value = r.json().await.unwrap();
                assert_eq!(p["code"], "idempotency_in_progress");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(charge_ids.len() <= 1, "every success names the same charge: {charge_ids:?}");
    // Whatever raced, a retry now returns the one charge.
    let r = app.post_key("/api/payments/charges", &token, "the-one-key", body).await;
    assert_eq!(r.status(), 201);
    let c: Value = r.json().await.unwrap();
    if let Some(id) = charge_ids.iter().next() {
        assert_eq!(c["id"].as_str().unwrap(), id);
    }
    assert_eq!(app.available(&token).await, "70.00", "charged exactly once");
    let other = app
        .post_key(
            "/api/payments/charges",
            &token,
            "the-one-key",
            json!({"amount": eur("31.00"), "reference": "order:once", "description": "One thing"}),
        )
        .await;
    assert_problem(other, 422, "idempotency_key_reused").await;
    // A key first used for a refused charge replays the refusal, even once the wallet could pay.
    let too_much = json!({"amount": eur("500.00"), "reference": "order:big", "description": "Too much"});
    let r = app.post_key("/api/payments/charges", &token, "big-key", too_much.clone()).await;
    assert_problem(r, 409, "insufficient_funds").await;
    app.top_up(&token, "500.00").await;
    let r = app.post_key("/api/payments/charges", &token, "big-key", too_much).await;
    assert_problem(r, 409, "insufficient_funds").await;
    assert_eq!(app.available(&token).await, "570.00", "refusals moved nothing");
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn refunds_never_exceed_the_capture_even_when_they_race() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("refund").await;
    app.top_up(&token, "100.00").await;
    let r = app
        .post_key("/api/payments/charges", &token, "p1", json!({"amount": eur("30.00"), "reference": "order:r", "description": "Tyres"}))
        .await;
    let charge: Value = r.json().await.unwrap();
    let id = charge["id"].as_str().unwrap();
    let path = format!("/api/admin/payments/charges/{id}/refunds");

    let r = app.post_key(&path, &admin, "r1", json!({"amount": eur("10.00"), "reason": "damaged box"})).await;
    assert_eq!(r.status(), 201);
    let r = app.post_key(&path, &admin, "r2", json!({"amount": eur("25.00"), "reason": "too much"})).await;
    assert_problem(r, 422, "refund_exceeds_capture").await;
    // A customer cannot refund.
    let r = app.post_key(&path, &token, "r3", json!({"amount": eur("1.00"), "reason": "me"})).await;
    assert_problem(r, 403, "forbidden").await;

    let keys: Vec<String> = (0..6).map(|i| format!("race-{i}")).collect();
    let races = keys.iter().map(|k| app.post_key(&path, &admin, k, json!({"amount": eur("20.00"), "reason": "race"})));
    let statuses: Vec<u16> = futures::future::join_all(races).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 422 || *s == 409), "{statuses:?}");

    let c: Value = app.get_auth(&format!("/api/payments/charges/{id}"), &token).await.json().await.unwrap();
    assert_eq!(c["status"], "refunded");
    assert_eq!(c["refunded"], eur("30.00"));
    let r = app.post_key(&path, &admin, "r4", json!({"amount": eur("0.01"), "reason": "one more"})).await;
    assert_problem(r, 409, "invalid_state").await;
    assert_eq!(app.available(&token).await, "100.00", "everything came back, once");
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn peers_authorize_capture_void_and_refund_over_grpc() {
    let app = spawn_admin().await;
    let (_, token, _) = app.customer("grpc").await;
    let me: Value = app.get_auth("/api/auth/me", &token).await.json().await.unwrap();
    let user = me["id"].as_str().unwrap().to_owned();
    app.top_up(&token, "100.00").await;
    let mut client = PaymentsClient::connect(app.tp.url("payments")).await.unwrap();
    let req = |key: &str, amount: i64| ChargeRequest {
        idempotency_key: key.into(),
        user_id: user.clone(),
        amount_minor: amount,
        currency: "EUR".into(),
        reference: "order:grpc".into(),
        description: "Factory deposit".into(),
    };
    let auth = client.authorize(req("a1", 4000)).await.unwrap().into_inner();
    assert_eq!(auth.status, "authorized");
    let bal = client.get_balance(GetBalanceRequest { user_id: user.clone(), currency: "EUR".into() }).await.unwrap().into_inner();
    assert_eq!((bal.available_minor, bal.held_minor), (6000, 4000));

    let cap = client
        .capture(CaptureRequest { idempotency_key: "c1".into(), charge_id: auth.charge_id.clone(), amount_minor: 2500 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cap.status.as_str(), cap.captured_minor), ("captured", 2500));
    let again = client
        .capture(CaptureRequest { idempotency_key: "c1".into(), charge_id: auth.charge_id.clone(), amount_minor: 2500 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, cap, "a retried capture replays");
    let bal = client.get_balance(GetBalanceRequest { user_id: user.clone(), currency: "EUR".into() }).await.unwrap().into_inner();
    assert_eq!((bal.available_minor, bal.held_minor), (7500, 0), "the uncaptured rest went back");

    let err = client.void(ChargeIdRequest { idempotency_key: "v1".into(), charge_id: auth.charge_id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    let hold = client.authorize(req("a2", 1000)).await.unwrap().into_inner();
    let voided = client.void(ChargeIdRequest { idempotency_key: "v2".into(), charge_id: hold.charge_id }).await.unwrap().into_inner();
    assert_eq!(voided.status, "voided");
    let refund = client
        .refund(RefundRequest { idempotency_key: "f1".into(), charge_id: auth.charge_id, amount_minor: 500, reason: "late".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refund.charge.unwrap().status, "partially_refunded");

    let err = client.charge(req("big", 1_000_000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("insufficient_funds"));
    let bal = client.get_balance(GetBalanceRequest { user_id: user, currency: "EUR".into() }).await.unwrap().into_inner();
    assert_eq!((bal.available_minor, bal.held_minor), (8000, 0));
    app.assert_ledger_balanced().await;
    app.cleanup().await;
}

#[tokio::test]
async fn invoices_and_history_belong_to_their_owner() {
    let app = spawn_admin().await;
    let (email, token, _) = app.customer("invoice").await;
    let (_, stranger, _) = app.customer("stranger").await;
    app.top_up(&token, "80.00").await;
    let r = app
        .post_key(
            "/api/payments/charges",
            &token,
            "inv",
            json!({"amount": eur("42.50"), "reference": "order:77", "description": "Oil <change>"}),
        )
        .await;
    let charge: Value = r.json().await.unwrap();
    let invoice_path = format!("/api/payments/invoices/{}", charge["invoiceId"].as_str().unwrap());

    // The customer's name reaches payments through identity's event; wait for it (bounded).
    let mut inv = Value::Null;
    for _ in 0..100 {
        inv = app.get_auth(&invoice_path, &token).await.json().await.unwrap();
        if inv["customerEmail"] == email.as_str() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(inv["customerEmail"], email.as_str(), "{inv}");
    assert_eq!(inv["total"], eur("42.50"));
    let html = app.http.get(format!("{}{invoice_path}", app.gw)).bearer_auth(&token).header("accept", "text/html").send().await.unwrap();
    assert!(html.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = html.text().await.unwrap();
    assert!(html.contains("Invoice MP-") && html.contains("42.50"));
    assert!(html.contains("Oil &lt;change&gt;"), "escaped: {html}");

    let r = app.get_auth(&invoice_path, &stranger).await;
    assert_problem(r, 404, "not_found").await;
    let r = app.get_auth(&format!("/api/payments/charges/{}", charge["id"].as_str().unwrap()), &stranger).await;
    assert_problem(r, 404, "not_found").await;
    let theirs: Value = app.get_auth("/api/payments/transactions", &stranger).await.json().await.unwrap();
    assert!(theirs["items"].as_array().unwrap().is_empty());

    let page: Value = app.get_auth("/api/payments/transactions?limit=1", &token).await.json().await.unwrap();
    assert_eq!(page["items"][0]["kind"], "charge", "newest first");
    let cursor = page["nextCursor"].as_str().unwrap();
    let next: Value = app.get_auth(&format!("/api/payments/transactions?limit=1&cursor={cursor}"), &token).await.json().await.unwrap();
    assert_eq!(next["items"][0]["kind"], "top_up");
    assert!(next["nextCursor"].is_null());
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_wallet_tops_up_lists_transactions_and_shows_an_invoice() {
    use crate::browser::Browser;

    let app = spawn().await;
    let (email, token, _) = app.customer("wallet-page").await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/login.html", app.gw)).await.unwrap();
    browser.fill("login-email", &email).await;
    browser.fill("login-password", PASSWORD).await;
    browser.click("login-submit").await;
    browser.wait_path("/account.html").await;

    browser.click("nav-wallet").await;
    browser.wait_path("/wallet.html").await;
    browser.wait_text("wallet-balance", "0.00 EUR").await;
    browser.fill("topup-amount", "25.00").await;
    browser.click("topup-submit").await;
    browser.wait_text("topup-message", "Added 25.00 EUR").await;
    browser.wait_text("wallet-balance", "25.00 EUR").await;
    browser.wait_text("transactions", "Top-up").await;

    // A declined card shows the problem and changes nothing.
    browser.fill("topup-amount", "10.00").await;
    browser.fill("topup-card", "4000 0000 0000 0002").await;
    browser.click("topup-submit").await;
    browser.wait_text("topup-message", "card_declined").await;
    browser.wait_text("wallet-balance", "25.00 EUR").await;

    // A payment made elsewhere (the shop, later) shows up with its invoice.
    let r = app
        .post_key(
            "/api/payments/charges",
            &token,
            "page-pay",
            json!({"amount": eur("12.30"), "reference": "order:page", "description": "Wiper blades"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    browser.client.refresh().await.unwrap();
    browser.wait_text("transactions", "Wiper blades").await;
    browser.wait_text("wallet-balance", "12.70 EUR").await;
    let link = browser
        .client
        .wait()
        .at_most(std::time::Duration::from_secs(10))
        .for_element(fantoccini::Locator::Css("a.invoice-link"))
        .await
        .unwrap();
    link.click().await.unwrap();
    browser.wait_path("/invoice.html").await;
    browser.wait_text("invoice-number", "MP-").await;
    browser.wait_text("invoice-total", "12.30 EUR").await;
    browser.wait_text("invoice-lines", "Wiper blades").await;
    browser.close().await;
    app.cleanup().await;
}
