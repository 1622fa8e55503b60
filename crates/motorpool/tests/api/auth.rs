//! Registration, login, refresh rotation and its reuse detection, logout, throttling, and
//! bad input answered with problem+json.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn registration_validates_every_field_and_refuses_duplicates() {
    let app = spawn().await;
    let r = app.post("/api/auth/register", json!({"email": "not-an-email", "password": "short", "fullName": " "})).await;
    let body = assert_problem(r, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password", "fullName"]);

    let email = unique_email("dup");
    app.register(&email).await;
    let r = app.post("/api/auth/register", json!({"email": email.to_uppercase(), "password": PASSWORD, "fullName": "X"})).await;
    assert_problem(r, 409, "email_taken").await;
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_have_exactly_one_winner() {
    let app = spawn().await;
    let email = unique_email("race");
    let attempts = (0..20).map(|_| app.post("/api/auth/register", json!({"email": email, "password": PASSWORD, "fullName": "Racer"})));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 19, "{statuses:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn bad_bodies_get_problems_not_server_errors() {
    let app = spawn().await;
    let url = format!("{}/api/auth/register", app.gw);
    // Unknown field.
    let r =
        app.post("/api/auth/register", json!({"email": unique_email("x"), "password": PASSWORD, "fullName": "X", "role": "admin"})).await;
    let body = assert_problem(r, 422, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("role"), "{body}");
    // Malformed JSON.
    let r = app.http.post(&url).header("content-type", "application/json").body("{\"email\": ").send().await.unwrap();
    assert_problem(r, 400, "malformed_json").await;
    // Wrong content type.
    let r = app.http.post(&url).header("content-type", "text/plain").body("hello").send().await.unwrap();
    assert_problem(r, 415, "unsupported_media_type").await;
    // Oversized body, refused by the gateway from its declared length.
    let huge = json!({"email": "a@example.com", "password": "x".repeat(300 * 1024), "fullName": "X"});
    let r = app.http.post(&url).json(&huge).send().await.unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    // Oversized body sent straight to identity is refused there too.
    let r = app.http.post(format!("{}/api/auth/register", app.tp.url("identity"))).json(&huge).send().await.unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    // Wrong method on a known route.
    let r = app.http.delete(format!("{}/api/auth/login", app.tp.url("identity"))).send().await.unwrap();
    assert_problem(r, 405, "method_not_allowed").await;
    app.cleanup().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = spawn().await;
    let email = unique_email("who");
    app.register(&email).await;
    let r = app.post("/api/auth/login", json!({"email": email, "password": "wrong password!"})).await;
    let a = assert_problem(r, 401, "invalid_credentials").await;
    let r = app.post("/api/auth/login", json!({"email": unique_email("nobody"), "password": "wrong password!"})).await;
    let b = assert_problem(r, 401, "invalid_credentials").await;
    assert_eq!(a, b);
    app.cleanup().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_account_out() {
    let app = spawn().await;
    let email = unique_email("locked");
    app.register(&email).await;
    for _ in 0..5 {
        let r = app.post("/api/auth/login", json!({"email": email, "password": "wrong password!"})).await;
        assert_problem(r, 401, "invalid_credentials").await;
    }
    // Even the right password is refused while the lockout lasts.
    let r = app.post("/api/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 429, "too_many_attempts").await;
    // Another account from the same client is not locked by this one's failures.
    let other = unique_email("free");
    app.register(&other).await;
    app.login(&other, PASSWORD).await;
    app.cleanup().await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let app = spawn().await;
    let (_, access, first) = app.customer("rot").await;
    assert_eq!(app.get_auth("/api/auth/me", &access).await.status(), 200);

    let r = app.post("/api/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(r.status(), 200);
    let second: serde_json::Value = r.json().await.unwrap();
    let second_refresh = second["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first);
    assert_eq!(app.get_auth("/api/auth/me", second["accessToken"].as_str().unwrap()).await.status(), 200);

    // The first token again: reuse. The whole family goes, including the second token.
    let r = app.post("/api/auth/refresh", json!({"refreshToken": first})).await;
    assert_problem(r, 401, "refresh_token_reused").await;
    let r = app.post("/api/auth/refresh", json!({"refreshToken": second_refresh})).await;
    assert_problem(r, 401, "invalid_refresh_token").await;

    // Garbage is simply invalid.
    let r = app.post("/api/auth/refresh", json!({"refreshToken": "not-a-token"})).await;
    assert_problem(r, 401, "invalid_refresh_token").await;
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_exactly_one_through() {
    let app = spawn().await;
    let (_, _, refresh) = app.customer("race-refresh").await;
    let attempts = (0..10).map(|_| app.post("/api/auth/refresh", json!({"refreshToken": refresh})));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 9, "{statuses:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = spawn().await;
    let (_, _, refresh) = app.customer("bye").await;
    let r = app.post("/api/auth/logout", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status(), 204);
    let r = app.post("/api/auth/refresh", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status(), 401);
    // Logging out twice is fine.
    let r = app.post("/api/auth/logout", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status(), 204);
    app.cleanup().await;
}
