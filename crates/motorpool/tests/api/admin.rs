//! The admin's user management: listing, role changes, disabling.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn only_admins_manage_users_and_a_disabled_user_is_locked_out_at_once() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (email, access, refresh) = app.customer("victim").await;

    // A customer cannot list users.
    let r = app.get_auth("/api/admin/users", &access).await;
    assert_problem(r, 403, "forbidden").await;
    // Without a token: 401.
    let r = app.http.get(format!("{}/api/admin/users", app.gw)).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;

    // The admin finds the user, paginated and filtered.
    let page: serde_json::Value = app.get_auth(&format!("/api/admin/users?q={}", &email[..12]), &admin).await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let page: serde_json::Value = app.get_auth("/api/admin/users?limit=1", &admin).await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let next: serde_json::Value = app.get_auth(&format!("/api/admin/users?limit=1&cursor={cursor}"), &admin).await.json().await.unwrap();
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    let r = app.get_auth("/api/admin/users?limit=0", &admin).await;
    assert_problem(r, 422, "validation_failed").await;

    // Promote to mechanic: the next login carries the role.
    let r = app
        .http
        .patch(format!("{}/api/admin/users/{id}", app.gw))
        .bearer_auth(&admin)
        .json(&json!({"role": "mechanic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: serde_json::Value =
        app.get_auth("/api/auth/me", app.login(&email, PASSWORD).await["accessToken"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["role"], "mechanic");

    // Disable: the still-unexpired access token is refused, refresh and login too.
    let r = app
        .http
        .patch(format!("{}/api/admin/users/{id}", app.gw))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app.get_auth("/api/auth/me", &access).await;
    assert_problem(r, 403, "account_disabled").await;
    let r = app.post("/api/auth/refresh", json!({"refreshToken": refresh})).await;
    assert_eq!(r.status(), 401);
    let r = app.post("/api/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_problem(r, 403, "account_disabled").await;

    // Enable again: login works.
    let r = app
        .http
        .patch(format!("{}/api/admin/users/{id}", app.gw))
        .bearer_auth(&admin)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.login(&email, PASSWORD).await;

    // Unknown user, unknown field.
    let r = app
        .http
        .patch(format!("{}/api/admin/users/nope", app.gw))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = app
        .http
        .patch(format!("{}/api/admin/users/{id}", app.gw))
        .bearer_auth(&admin)
        .json(&json!({"roles": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid_body").await;
    app.cleanup().await;
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (email, old_access, _) = app.customer("rotate").await;
    let r = app.http.post(format!("{}/api/admin/keys/rotate", app.gw)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let kid = r.json::<serde_json::Value>().await.unwrap()["kid"].as_str().unwrap().to_owned();
    // Old token still accepted (nobody is logged out)...
    assert_eq!(app.get_auth("/api/auth/me", &old_access).await.status(), 200);
    // ...and new tokens carry the new kid and are accepted by the gateway, which has to
    // fetch the new key.
    let new_access = app.login(&email, PASSWORD).await["accessToken"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&new_access).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    assert_eq!(app.get_auth("/api/auth/me", &new_access).await.status(), 200);
    let jwks: serde_json::Value = app.http.get(format!("{}/.well-known/jwks.json", app.gw)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "old and new key published: {jwks}");
    app.cleanup().await;
}
