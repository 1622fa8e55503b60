//! Notifications end to end: events from identity and payments become in-app notifications
//! (listed, marked read, pushed live over SSE on every replica), emails through a real SMTP
//! server, and signed, retried webhooks; each event has one effect however often it arrives,
//! also when it was published while notifications was down; and nobody sees another user's
//! notifications or reaches internal addresses with a webhook.

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use motorpool::testkit::TestPlatform;
use motorpool_platform::clock::Clock;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{EventStream, Publisher, SmtpSink, WebhookReceiver, eventually};

use crate::helpers::*;

const WELCOME: &str = "identity.user.registered.v1";
const CHARGE_SUCCEEDED: &str = "payments.charge.succeeded.v1";

fn eur(amount: &str) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

fn charge(user_id: &str, amount: &str) -> Value {
    json!({"chargeId": uuid::Uuid::now_v7().to_string(), "userId": user_id, "amount": eur(amount), "reference": "ride-42",
           "description": "Ride to Lyon", "invoiceId": null})
}

async fn user_id(app: &App, token: &str) -> String {
    let me: Value = app.get_auth("/api/auth/me", token).await.json().await.unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// `GET /api/notifications<query>` as `token`, which must answer 200.
async fn list(app: &App, token: &str, query: &str) -> Value {
    let r = app.get_auth(&format!("/api/notifications{query}"), token).await;
    assert_eq!(r.status(), 200, "list notifications{query}");
    r.json().await.unwrap()
}

fn of_type<'a>(page: &'a Value, kind: &str) -> Vec<&'a Value> {
    page["items"].as_array().unwrap().iter().filter(|n| n["eventType"] == kind).collect()
}

/// Waits until the user has a notification of `kind` and returns it.
async fn wait_notification(app: &App, token: &str, kind: &str) -> Value {
    eventually(&format!("a {kind} notification"), Duration::from_secs(15), || async {
        let page = list(app, token, "?limit=100").await;
        of_type(&page, kind).first().map(|n| (*n).clone())
    })
    .await
}

async fn send(app: &App, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.http.request(method, format!("{}{path}", app.gw)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn create_webhook(app: &App, token: &str, url: &str) -> Value {
    let r = send(app, reqwest::Method::POST, "/api/notifications/webhooks", token, Some(json!({"url": url}))).await;
    assert_eq!(r.status(), 201, "create webhook {url}");
    r.json().await.unwrap()
}

async fn set_channels(app: &App, token: &str, event_type: &str, channels: &[&str]) -> Value {
    let r = send(
        app,
        reqwest::Method::PUT,
        "/api/notifications/preferences",
        token,
        Some(json!({"eventType": event_type, "channels": channels})),
    )
    .await;
    assert_eq!(r.status(), 200, "set preferences");
    r.json().await.unwrap()
}

async fn metrics(app: &App) -> String {
    app.http.get(format!("{}/metrics", app.tp.url("notifications"))).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn registration_brings_a_welcome_notification_that_can_be_listed_and_marked_read() {
    let app = spawn().await;
    let (_, token, _) = app.customer("welcome").await;
    let welcome = wait_notification(&app, &token, WELCOME).await;
    assert_eq!(welcome["title"], "Welcome to Motorpool");
    assert!(welcome["body"].as_str().unwrap().starts_with("Hi Test User, your account is ready."), "{welcome}");
    assert!(welcome["readAt"].is_null());
    assert!(welcome["createdAt"].as_str().unwrap().ends_with('Z'));
    let page = list(&app, &token, "").await;
    assert_eq!(page["unreadCount"], 1);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_null());

    let id = welcome["id"].as_str().unwrap();
    let r = send(&app, reqwest::Method::POST, &format!("/api/notifications/{id}/read"), &token, None).await;
    assert_eq!(r.status(), 204);
    let page = list(&app, &token, "").await;
    assert_eq!(page["unreadCount"], 0);
    assert!(page["items"][0]["readAt"].is_string());
    assert_eq!(list(&app, &token, "?unread=true").await["items"].as_array().unwrap().len(), 0);
    // Marking read again changes nothing and is fine.
    let r = send(&app, reqwest::Method::POST, &format!("/api/notifications/{id}/read"), &token, None).await;
    assert_eq!(r.status(), 204);

    // Newer notifications come first, page by page.
    let user = user_id(&app, &token).await;
    let publisher = Publisher::connect(&app.tp.cfg).await;
    for amount in ["1.00", "2.00", "3.00"] {
        publisher.publish(CHARGE_SUCCEEDED, charge(&user, amount)).await;
    }
    eventually("three unread payments", Duration::from_secs(15), || async {
        (list(&app, &token, "").await["unreadCount"] == 3).then_some(())
    })
    .await;
    let first = list(&app, &token, "?limit=2").await;
    let titles =
        |page: &Value| page["items"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(titles(&first), ["Payment of 3.00 EUR received", "Payment of 2.00 EUR received"]);
    assert_eq!(first["items"][0]["body"], "We charged 3.00 EUR for Ride to Lyon. Reference ride-42.");
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = list(&app, &token, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&second), ["Payment of 1.00 EUR received", "Welcome to Motorpool"]);
    assert!(second["nextCursor"].is_null());
    assert_eq!(list(&app, &token, "?unread=true").await["items"].as_array().unwrap().len(), 3);

    let r = send(&app, reqwest::Method::POST, "/api/notifications/read-all", &token, None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(list(&app, &token, "").await["unreadCount"], 0);

    assert_problem(app.get_auth("/api/notifications?limit=0", &token).await, 422, "validation_failed").await;
    assert_problem(app.get_auth("/api/notifications?cursor=nope", &token).await, 422, "validation_failed").await;
    assert_problem(app.get_auth("/api/notifications?color=red", &token).await, 400, "bad_request").await;

    let docs: Value = app.http.get(format!("{}/docs/openapi.json", app.gw)).send().await.unwrap().json().await.unwrap();
    for path in ["/api/notifications", "/api/notifications/stream", "/api/notifications/preferences", "/api/notifications/webhooks"] {
        assert!(docs["paths"].get(path).is_some(), "{path} is documented");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn nobody_can_see_mark_or_delete_another_users_notifications_and_webhooks() {
    let app = spawn().await;
    let (_, ann, _) = app.customer("ann").await;
    let (_, bob, _) = app.customer("bob").await;
    let anns = wait_notification(&app, &ann, WELCOME).await;
    let bobs = wait_notification(&app, &bob, WELCOME).await;
    let id = anns["id"].as_str().unwrap();

    assert_problem(app.get_auth(&format!("/api/notifications/{id}"), &bob).await, 404, "not_found").await;
    let r = send(&app, reqwest::Method::POST, &format!("/api/notifications/{id}/read"), &bob, None).await;
    assert_problem(r, 404, "not_found").await;
    let page = list(&app, &bob, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], bobs["id"]);
    // Bob's read-all does not touch Ann's.
    assert_eq!(send(&app, reqwest::Method::POST, "/api/notifications/read-all", &bob, None).await.status(), 204);

    let mine: Value = app.get_auth(&format!("/api/notifications/{id}"), &ann).await.json().await.unwrap();
    assert_eq!(mine["id"], id);
    assert!(mine["readAt"].is_null());
    assert_eq!(list(&app, &ann, "").await["unreadCount"], 1);

    let receiver = WebhookReceiver::start(0).await;
    let hook = create_webhook(&app, &ann, &receiver.url).await;
    let hook_id = hook["id"].as_str().unwrap();
    let r = send(&app, reqwest::Method::DELETE, &format!("/api/notifications/webhooks/{hook_id}"), &bob, None).await;
    assert_problem(r, 404, "not_found").await;
    let bobs_hooks: Value = app.get_auth("/api/notifications/webhooks", &bob).await.json().await.unwrap();
    assert_eq!(bobs_hooks["items"], json!([]));
    let anns_hooks: Value = app.get_auth("/api/notifications/webhooks", &ann).await.json().await.unwrap();
    assert_eq!(anns_hooks["items"][0]["id"], hook_id);

    let r = app.http.get(format!("{}/api/notifications", app.gw)).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    app.cleanup().await;
}

#[tokio::test]
async fn the_live_stream_pushes_only_notifications_made_after_it_connected_and_outlives_the_request_timeout() {
    let mut cfg = config();
    // A stream lives far longer than any request may take.
    cfg.http.request_timeout_ms = 1000;
    let app = spawn_with(cfg).await;
    let (_, token, _) = app.customer("live").await;
    wait_notification(&app, &token, WELCOME).await;
    let user = user_id(&app, &token).await;

    let stream_url = format!("{}/api/notifications/stream", app.gw);
    assert_problem(app.http.get(&stream_url).send().await.unwrap(), 401, "unauthorized").await;
    assert_problem(app.http.get(format!("{stream_url}?access_token=not-a-token")).send().await.unwrap(), 401, "invalid_token").await;

    // As a browser's EventSource connects: the token in the query string.
    let r = app.http.get(format!("{stream_url}?access_token={token}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut events = EventStream::new(r);
    // Nothing old is replayed (the welcome is), and the stream is still open after the
    // request timeout has passed.
    assert!(events.next(Duration::from_millis(1500)).await.is_none(), "no event before something new happens");

    let publisher = Publisher::connect(&app.tp.cfg).await;
    publisher.publish(CHARGE_SUCCEEDED, charge(&user, "12.50")).await;
    let event = events.next(Duration::from_secs(10)).await.expect("the new notification is pushed");
    assert_eq!(event.name, "notification");
    let pushed: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(pushed["eventType"], CHARGE_SUCCEEDED);
    assert_eq!(pushed["title"], "Payment of 12.50 EUR received");
    assert!(pushed["readAt"].is_null());
    let listed = wait_notification(&app, &token, CHARGE_SUCCEEDED).await;
    assert_eq!(listed["id"], pushed["id"]);
    assert!(events.next(Duration::from_millis(300)).await.is_none(), "pushed once");
    app.cleanup().await;
}

#[tokio::test]
async fn streams_on_every_replica_receive_a_new_notification() {
    let app = spawn().await;
    // A second process of the same deployment: its own identity (same keys, same database)
    // and a second notifications replica.
    let mut second = TestPlatform::start(app.tp.cfg.clone(), &["identity", "notifications"], Clock::system()).await.unwrap();
    wait_ready(&app.http, &second.url("notifications")).await;
    let (_, token, _) = app.customer("replicas").await;
    wait_notification(&app, &token, WELCOME).await;
    let user = user_id(&app, &token).await;

    let mut streams = Vec::new();
    for base in [app.tp.url("notifications"), second.url("notifications")] {
        let r = app.http.get(format!("{base}/api/notifications/stream")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "stream on {base}");
        streams.push(EventStream::new(r));
    }
    let publisher = Publisher::connect(&app.tp.cfg).await;
    publisher.publish(CHARGE_SUCCEEDED, charge(&user, "7.00")).await;
    let mut ids = Vec::new();
    for stream in &mut streams {
        let event = stream.next(Duration::from_secs(10)).await.expect("every replica's stream gets it");
        let pushed: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(pushed["title"], "Payment of 7.00 EUR received");
        ids.push(pushed["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "the same notification on both");
    // Both replicas consume, yet the user has it once.
    let page = list(&app, &token, "?limit=100").await;
    assert_eq!(of_type(&page, CHARGE_SUCCEEDED).len(), 1);
    drop(streams);
    second.stop().await;
    app.cleanup().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn email_goes_out_over_smtp_and_waits_while_the_server_is_down() {
    let port = free_port();
    let mut cfg = config();
    cfg.notifications.email_enabled = true;
    cfg.notifications.smtp_port = port;
    let app = spawn_with(cfg).await;
    let (email, token, _) = app.customer("mail").await;
    wait_notification(&app, &token, WELCOME).await;
    // No SMTP server yet: the attempt fails and is scheduled again.
    eventually("a failed email attempt", Duration::from_secs(10), || async {
        metrics(&app).await.contains(r#"channel="email",outcome="retry""#).then_some(())
    })
    .await;

    let sink = SmtpSink::start_on(port).await;
    let mail = sink.wait_for(&email, Duration::from_secs(20)).await;
    assert_eq!(mail.to, std::slice::from_ref(&email));
    assert_eq!(mail.from, "no-reply@motorpool.local");
    assert_eq!(mail.header("Subject").as_deref(), Some("Welcome to Motorpool"));
    assert!(mail.header("From").unwrap().contains("no-reply@motorpool.local"));
    assert!(mail.header("To").unwrap().contains(&email));
    assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"), "{}", mail.data);
    assert!(mail.data.contains("Hi Test User,"), "{}", mail.data);

    // With the server up, the next one goes out at once.
    let user = user_id(&app, &token).await;
    Publisher::connect(&app.tp.cfg).await.publish(CHARGE_SUCCEEDED, charge(&user, "12.50")).await;
    let payment = eventually("the payment email", Duration::from_secs(10), || async {
        sink.mails().into_iter().find(|m| m.header("Subject").is_some_and(|s| s == "Payment received: 12.50 EUR"))
    })
    .await;
    assert_eq!(payment.to, [email]);
    assert_eq!(sink.mails().len(), 2, "one email per notification");
    app.cleanup().await;
}

fn verify_signature(secret: &str, header: &str, body: &[u8]) -> i64 {
    let (t, v1) = header.split_once(',').unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "signature of {}", String::from_utf8_lossy(body));
    t
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_the_receiver_accepts() {
    let app = spawn().await;
    let (_, token, _) = app.customer("hook").await;
    let user = user_id(&app, &token).await;
    let receiver = WebhookReceiver::start(2).await;

    let hook = create_webhook(&app, &token, &receiver.url).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(hook["url"], receiver.url.as_str());
    let listed: Value = app.get_auth("/api/notifications/webhooks", &token).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["id"], hook["id"]);
    assert!(listed["items"][0].get("secret").is_none(), "the secret is shown once: {listed}");
    set_channels(&app, &token, CHARGE_SUCCEEDED, &["in_app", "webhook"]).await;

    let event = Publisher::connect(&app.tp.cfg).await.publish(CHARGE_SUCCEEDED, charge(&user, "12.50")).await;
    let hits = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(hits.iter().map(|h| h.status.as_u16()).collect::<Vec<_>>(), [500, 500, 204], "two failures, then accepted");
    let now = motorpool_platform::clock::Clock::system().now().unix_timestamp();
    for hit in &hits {
        let t = verify_signature(&secret, &hit.header("motorpool-signature"), &hit.body);
        assert!((now - t).abs() < 120, "a fresh timestamp: {t}");
        assert_eq!(hit.header("motorpool-event"), CHARGE_SUCCEEDED);
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("motorpool-delivery"), hits[0].header("motorpool-delivery"), "one delivery, retried");
        let body = hit.json();
        assert_eq!(body["id"], event.id.as_str());
        assert_eq!(body["type"], CHARGE_SUCCEEDED);
        assert_eq!(body["time"], event.time.as_str());
        assert_eq!(body["data"]["userId"], user.as_str());
        assert_eq!(body["data"]["amount"], eur("12.50"));
    }
    // Accepted: no further attempts (the next would have come 4 s after the last failure).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), 3);

    let path = format!("/api/notifications/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(send(&app, reqwest::Method::DELETE, &path, &token, None).await.status(), 204);
    assert_problem(send(&app, reqwest::Method::DELETE, &path, &token, None).await, 404, "not_found").await;
    app.cleanup().await;
}

#[tokio::test]
async fn webhook_urls_that_lead_to_internal_addresses_are_refused() {
    let mut cfg = config();
    cfg.notifications.webhooks_allow_private = false;
    let app = spawn_with(cfg).await;
    let (_, token, _) = app.customer("ssrf").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://0.0.0.0/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://user:secret@example.com/hook",
        "not a url",
    ] {
        let r = send(&app, reqwest::Method::POST, "/api/notifications/webhooks", &token, Some(json!({"url": url}))).await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
    }
    let listed: Value = app.get_auth("/api/notifications/webhooks", &token).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_notification_and_one_delivery() {
    let app = spawn().await;
    let (_, token, _) = app.customer("twice").await;
    let user = user_id(&app, &token).await;
    let receiver = WebhookReceiver::start(0).await;
    create_webhook(&app, &token, &receiver.url).await;
    set_channels(&app, &token, "*", &["in_app", "webhook"]).await;

    let publisher = Publisher::connect(&app.tp.cfg).await;
    let envelope = Publisher::envelope(CHARGE_SUCCEEDED, charge(&user, "9.99"));
    publisher.publish_as(&envelope, &envelope.id).await;
    // The same event under a new bus message id, so broker de-duplication cannot hide it.
    publisher.publish_as(&envelope, &format!("{}-again", envelope.id)).await;
    // Published after both: once its notification exists, both copies have been handled.
    publisher
        .publish(
            "payments.wallet.topped_up.v1",
            json!({"transactionId": "t-1", "userId": user, "amount": eur("5.00"), "balance": eur("5.00")}),
        )
        .await;
    wait_notification(&app, &token, "payments.wallet.topped_up.v1").await;

    let page = list(&app, &token, "?limit=100").await;
    assert_eq!(of_type(&page, CHARGE_SUCCEEDED).len(), 1, "one notification: {page}");
    receiver.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let charges = receiver.hits().into_iter().filter(|h| h.header("motorpool-event") == CHARGE_SUCCEEDED).count();
    assert_eq!(charges, 1, "one webhook delivery");
    assert_eq!(receiver.hits().len(), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn an_event_published_while_notifications_is_down_arrives_once_it_is_up() {
    let cfg = config();
    let tp = TestPlatform::start(cfg.clone(), &["identity", "gateway"], Clock::system()).await.unwrap();
    let gw = tp.url("gateway");
    let mut app = App { tp, gw, http: client() };
    wait_ready(&app.http, &app.gw).await;
    let (_, token, _) = app.customer("offline").await;
    assert_problem(app.get_auth("/api/notifications", &token).await, 503, "peer_unavailable").await;
    app.tp.stop().await;

    let app = spawn_with(cfg).await;
    wait_notification(&app, &token, WELCOME).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = list(&app, &token, "?limit=100").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "exactly one welcome: {page}");
    app.cleanup().await;
}

#[tokio::test]
async fn preferences_choose_the_channels_of_each_event_type() {
    let app = spawn().await;
    let (_, token, _) = app.customer("prefs").await;
    let user = user_id(&app, &token).await;
    wait_notification(&app, &token, WELCOME).await;

    let prefs: Value = app.get_auth("/api/notifications/preferences", &token).await.json().await.unwrap();
    assert_eq!(prefs, json!({"preferences": [], "defaults": ["in_app", "email"]}));
    for (body, field) in [
        (json!({"eventType": "payments", "channels": ["in_app"]}), "eventType"),
        (json!({"eventType": "*", "channels": ["fax"]}), "channels"),
    ] {
        let r = send(&app, reqwest::Method::PUT, "/api/notifications/preferences", &token, Some(body)).await;
        let problem = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let r =
        send(&app, reqwest::Method::PUT, "/api/notifications/preferences", &token, Some(json!({"eventType": "*", "channels": [], "x": 1})))
            .await;
    assert_problem(r, 422, "invalid_body").await;

    set_channels(&app, &token, "payments.charge.failed.v1", &["email"]).await;
    let prefs = set_channels(&app, &token, "*", &["push", "in_app", "sms"]).await;
    assert_eq!(
        prefs["preferences"],
        json!([{"eventType": "*", "channels": ["in_app", "sms", "push"]}, {"eventType": "payments.charge.failed.v1", "channels": ["email"]}])
    );

    // Without in_app the notification is kept, but as read: it neither counts nor pushes.
    let publisher = Publisher::connect(&app.tp.cfg).await;
    publisher
        .publish(
            "payments.charge.failed.v1",
            json!({"userId": user, "amount": eur("99.00"), "reference": "rental-3", "reason": "insufficient funds"}),
        )
        .await;
    let failed = wait_notification(&app, &token, "payments.charge.failed.v1").await;
    assert!(failed["readAt"].is_string(), "{failed}");
    assert_eq!(failed["title"], "Payment of 99.00 EUR failed");
    assert_eq!(list(&app, &token, "").await["unreadCount"], 1);

    // Everything else follows `*`: in-app, plus SMS and push through their providers.
    publisher.publish(CHARGE_SUCCEEDED, charge(&user, "3.00")).await;
    wait_notification(&app, &token, CHARGE_SUCCEEDED).await;
    assert_eq!(list(&app, &token, "").await["unreadCount"], 2);
    eventually("SMS and push sent", Duration::from_secs(10), || async {
        let m = metrics(&app).await;
        (m.contains(r#"channel="sms",outcome="sent""#) && m.contains(r#"channel="push",outcome="sent""#)).then_some(())
    })
    .await;
    app.cleanup().await;
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver; run by CI"]
async fn browser_notification_bell_shows_the_welcome_message() {
    use crate::browser::Browser;

    let app = spawn().await;
    let browser = Browser::start().await;
    let email = unique_email("bell");
    browser.client.goto(&format!("{}/register.html", app.gw)).await.unwrap();
    browser.fill("register-name", "Bell User").await;
    browser.fill("register-email", &email).await;
    browser.fill("register-password", PASSWORD).await;
    browser.click("register-submit").await;
    browser.wait_path("/account.html").await;
    browser.wait_text("nav-user", &email).await;

    // The welcome arrives (listed or pushed live) and the badge counts it.
    browser.wait_text("nav-bell-count", "1").await;
    browser.click("nav-bell").await;
    browser.wait_text("notification-list", "Welcome to Motorpool").await;
    browser.wait_text("notification-list", "Hi Bell User").await;

    // Marking it read clears the badge.
    browser.click("notification-mark-all").await;
    let mut cleared = false;
    for _ in 0..100 {
        let count = browser.client.find(fantoccini::Locator::Id("nav-bell-count")).await.unwrap();
        if count.text().await.unwrap_or_default().is_empty() {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "the badge is cleared after marking all read");
    browser.close().await;
    app.cleanup().await;
}
