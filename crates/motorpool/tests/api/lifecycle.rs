//! The platform starts, reports ready, and keeps its data across a restart.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_service_is_healthy_and_ready_after_start() {
    let app = spawn().await;
    let r = app.http.get(format!("{}/health", app.gw)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for service in motorpool::SERVICES {
        let url = app.tp.url(service);
        let r = app.http.get(format!("{url}/ready")).send().await.unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{service} /ready: {body}");
        assert_eq!(body["status"], "ready", "{service}: {body}");
        let v: serde_json::Value = app.http.get(format!("{url}/version")).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["service"], *service);
        let metrics = app.http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("http_requests_total"), "{service} metrics: {metrics}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn register_login_me_through_the_gateway_and_the_user_survives_a_restart() {
    let mut app = spawn().await;
    let email = unique_email("restart");
    let created = app.register(&email).await;
    assert_eq!(created["email"], email.as_str());
    assert_eq!(created["role"], "customer");
    let tokens = app.login(&email, PASSWORD).await;
    assert_eq!(tokens["tokenType"], "Bearer");
    assert_eq!(tokens["expiresIn"], 900);
    let me: serde_json::Value = app.get_auth("/api/auth/me", tokens["accessToken"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["id"], created["id"]);

    let cfg = app.tp.cfg.clone();
    app.tp.stop().await;
    let app2 = spawn_with(cfg).await;
    let tokens = app2.login(&email, PASSWORD).await;
    let me: serde_json::Value = app2.get_auth("/api/auth/me", tokens["accessToken"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["id"], created["id"], "the user exists after a restart");
    // A second registration with the same email is still refused after the restart.
    let r = app2.post("/api/auth/register", json!({"email": email, "password": PASSWORD, "fullName": "Again"})).await;
    assert_problem(r, 409, "email_taken").await;
    app2.cleanup().await;
}

#[tokio::test]
async fn responses_carry_a_request_id_and_continue_the_callers_trace() {
    let app = spawn().await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.gw))
        .header("traceparent", parent)
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let tp = r.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "trace continued: {tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "a new span id: {tp}");
    let jwks: serde_json::Value = r.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    app.cleanup().await;
}
