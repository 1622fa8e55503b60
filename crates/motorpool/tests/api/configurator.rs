//! The configurator through the gateway: the seed's requests as written, rules that refuse a
//! configuration with the rule named, saved configurations that belong to their user, share
//! codes, popular configurations, and live sessions over WebSocket that continue on a new
//! socket.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(app: &App, query: &str) -> Ws {
    let url = format!("ws://{}/api/configure/ws{query}", app.tp.addr("gateway"));
    tokio_tungstenite::connect_async(&url).await.expect("configurator socket").0
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message in time").expect("open").expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn say(ws: &mut Ws, msg: Value) -> Value {
    ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    next_json(ws).await
}

fn state_of<'a>(evaluation: &'a Value, option: &str) -> &'a Value {
    evaluation["options"].as_array().unwrap().iter().find(|o| o["option"] == option).unwrap_or_else(|| panic!("{option} in {evaluation}"))
}

#[tokio::test]
async fn the_seeds_configure_requests_work_as_written() {
    let app = spawn().await;
    // Exactly the seed's body: values by name, no model.
    let r =
        app.post("/api/configure", json!({"engine": "V6", "color": "Red", "interior": "Leather", "features": ["Sunroof", "GPS"]})).await;
    assert_eq!(r.status(), 201);
    let saved: Value = r.json().await.unwrap();
    assert_eq!(saved["message"], "Configuration saved successfully.");
    let id = saved["configId"].as_str().unwrap().to_owned();

    let r = app.send(Method::GET, &format!("/api/configure/{id}"), None, None).await;
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["engine"], "3.0 V6 petrol, 340 hp");
    assert_eq!(got["color"], "Racing red");
    assert_eq!(got["interior"], "Nappa leather");
    assert_eq!(got["features"], json!(["Sunroof", "GPS navigation"]));
    // The V6 is a Tundra engine: the model was chosen to fit, and the rest completed cheapest.
    assert_eq!(got["model"], "tundra");
    // 45,500 base + 6,900 V6 + 650 red + 2,400 leather + 800 18" wheels + 1,100 + 900.
    assert_eq!(got["price"], "58250.00");
    assert_eq!(got["currency"], "EUR");
    assert_eq!(saved["price"], got["price"]);
    assert_eq!(got["catalogVersion"], 1);
    assert!(got["options"].as_array().unwrap().contains(&json!("wheels-18")), "{got}");

    // Unknown values and broken rules are refused, naming what is wrong.
    let r = app.post("/api/configure", json!({"engine": "Warp drive", "color": "Red"})).await;
    let p = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "engine", "{p}");
    let r = app.post("/api/configure", json!({"model": "volt-s", "engine": "V6"})).await;
    let p = assert_problem(r, 422, "invalid_configuration").await;
    assert!(p["violatedRules"].as_array().unwrap().iter().any(|r| r["id"] == "v6-models"), "{p}");
    let r = app.post("/api/configure", json!({"model": "aurora", "engine": "petrol-1.2", "options": ["pkg-towing"]})).await;
    let p = assert_problem(r, 422, "invalid_configuration").await;
    assert!(p["violatedRules"].as_array().unwrap().iter().any(|r| r["id"] == "towing-not-small-engine"), "{p}");
    let r = app.post("/api/configure", json!({"engine": "V6", "colour": "Red"})).await;
    assert_problem(r, 422, "invalid_body").await;
    assert_problem(app.send(Method::GET, "/api/configure/no-such-config", None, None).await, 404, "not_found").await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_users_configurations_are_theirs_and_a_share_code_opens_a_read_only_copy() {
    let app = spawn().await;
    let (_, alice, _) = app.customer("alice-cfg").await;
    let (_, bob, _) = app.customer("bob-cfg").await;
    let body = json!({"model": "aurora", "engine": "hybrid-2.5", "color": "blue-metallic", "features": ["sunroof"]});
    let r = app.send(Method::POST, "/api/configure", Some(&alice), Some(body)).await;
    assert_eq!(r.status(), 201);
    let saved: Value = r.json().await.unwrap();
    let id = saved["configId"].as_str().unwrap();
    let code = saved["shareCode"].as_str().unwrap();

    let own: Value = app.get_auth(&format!("/api/configure/{id}"), &alice).await.json().await.unwrap();
    assert_eq!((own["model"].as_str(), own["shareCode"].as_str(), &own["readOnly"]), (Some("aurora"), Some(code), &json!(false)));
    for token in [Some(bob.as_str()), None] {
        let r = app.send(Method::GET, &format!("/api/configure/{id}"), token, None).await;
        assert_problem(r, 404, "not_found").await;
    }
    let copy: Value = app.send(Method::GET, &format!("/api/configure/shared/{code}"), None, None).await.json().await.unwrap();
    assert_eq!((&copy["readOnly"], &copy["options"], &copy["price"]), (&json!(true), &own["options"], &own["price"]));
    assert!(copy.get("shareCode").is_none() && copy["configId"] == "", "a copy leads nowhere: {copy}");

    let mine: Value = app.get_auth("/api/configure/mine", &alice).await.json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let theirs: Value = app.get_auth("/api/configure/mine", &bob).await.json().await.unwrap();
    assert_eq!(theirs["items"], json!([]));
    assert_problem(app.send(Method::GET, "/api/configure/mine", None, None).await, 401, "unauthorized").await;
    let r = app.send(Method::POST, "/api/configure", Some("not-a-token"), Some(json!({"engine": "V6"}))).await;
    assert_eq!(r.status(), 401, "a bad token is refused, not ignored");
    app.cleanup().await;
}

#[tokio::test]
async fn the_most_saved_configurations_count_saves_and_refresh_after_a_save() {
    let app = spawn().await;
    let common = json!({"model": "volt-s", "engine": "electric-82", "color": "white"});
    for _ in 0..3 {
        assert_eq!(app.post("/api/configure", common.clone()).await.status(), 201);
    }
    assert_eq!(app.post("/api/configure", json!({"model": "tundra", "engine": "diesel-2.0"})).await.status(), 201);
    let lists: Value = app.send(Method::GET, "/api/configure/popular", None, None).await.json().await.unwrap();
    let popular = &lists["mostSaved"];
    assert_eq!(popular[0]["saves"], 3, "{lists}");
    assert_eq!(popular[0]["model"], "volt-s");
    assert_eq!(popular[1]["saves"], 1);
    assert_eq!(lists["mostOrdered"], json!([]), "nothing ordered yet");
    // Served from the cache now; two more saves of the diesel must show at once all the same.
    for _ in 0..3 {
        assert_eq!(app.post("/api/configure", json!({"model": "tundra", "engine": "diesel-2.0"})).await.status(), 201);
    }
    let lists: Value = app.send(Method::GET, "/api/configure/popular", None, None).await.json().await.unwrap();
    let popular = &lists["mostSaved"];
    assert_eq!((&popular[0]["model"], &popular[0]["saves"]), (&json!("tundra"), &json!(4)), "{lists}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_live_session_answers_each_pick_offers_the_least_change_and_continues_on_a_new_socket() {
    let app = spawn().await;
    let (_, token, _) = app.customer("live-cfg").await;
    let mut ws = socket(&app, &format!("?access_token={token}")).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "state");
    let session = first["session"].as_str().unwrap().to_owned();

    let s = say(&mut ws, json!({"type": "pick", "option": "volt-s"})).await;
    assert_eq!(s["picks"], json!(["volt-s"]));
    assert_eq!(state_of(&s, "sport-exhaust")["state"], "unavailable", "an EV has no exhaust");
    assert_eq!(state_of(&s, "sport-exhaust")["because"]["rules"][0]["id"], "ev-no-sport-exhaust");
    let s = say(&mut ws, json!({"type": "pick", "option": "pkg-sport"})).await;
    assert_eq!(state_of(&s, "sport-seats")["state"], "required");
    let base = s["price"]["total"].as_i64().unwrap();
    assert_eq!(base, 4_199_000 + 350_000, "picks priced as they are: {}", s["price"]);

    // A pick that breaks a rule is not applied; the least change is offered.
    let c = say(&mut ws, json!({"type": "pick", "option": "v6-3.0"})).await;
    assert_eq!(c["type"], "conflict", "{c}");
    assert_eq!(c["fix"]["outcome"], "change");
    assert!(
        c["fix"]["dropped"].as_array().unwrap().contains(&json!("volt-s"))
            || c["fix"]["replaced"].as_array().unwrap().contains(&json!("volt-s")),
        "{c}"
    );

    // A new socket continues the session where this one stopped.
    drop(ws);
    let mut again = socket(&app, &format!("?session={session}&access_token={token}")).await;
    let s = next_json(&mut again).await;
    assert_eq!((s["session"].as_str(), &s["picks"]), (Some(session.as_str()), &json!(["volt-s", "pkg-sport"])));
    let s = say(&mut again, json!({"type": "pick", "option": "v6-3.0", "resolve": true})).await;
    assert_eq!(s["type"], "state");
    assert!(s["picks"].as_array().unwrap().contains(&json!("v6-3.0")), "{s}");
    assert!(s["isConsistent"].as_bool().unwrap());
    let saved = say(&mut again, json!({"type": "save"})).await;
    assert_eq!(saved["type"], "saved", "{saved}");
    let id = saved["configId"].as_str().unwrap();
    let got: Value = app.get_auth(&format!("/api/configure/{id}"), &token).await.json().await.unwrap();
    assert_eq!(got["engine"], "3.0 V6 petrol, 340 hp");
    let e = say(&mut again, json!({"type": "pick", "option": "no-such-option"})).await;
    assert_eq!(e["type"], "error");
    let e = say(&mut again, json!({"type": "teleport"})).await;
    assert_eq!(e["type"], "error");
    app.cleanup().await;
}

/// The served catalog with `edit` applied and the version after it.
async fn next_catalog(app: &App, edit: impl FnOnce(&mut Value)) -> Value {
    let mut catalog: Value = app.send(Method::GET, "/api/configure/catalog", None, None).await.json().await.unwrap();
    catalog["version"] = json!(catalog["version"].as_i64().unwrap() + 1);
    edit(&mut catalog);
    catalog
}

fn option_mut<'a>(catalog: &'a mut Value, code: &str) -> &'a mut Value {
    catalog["options"].as_array_mut().unwrap().iter_mut().find(|o| o["code"] == code).unwrap_or_else(|| panic!("option {code}"))
}

#[tokio::test]
async fn a_published_catalog_version_prices_new_configurations_and_saved_ones_keep_theirs() {
    let app = spawn_admin().await;
    let admin = app.admin_token().await;
    let (_, token, _) = app.customer("catalog").await;
    let seed = json!({"engine": "V6", "color": "Red", "interior": "Leather", "features": ["Sunroof", "GPS"]});
    let saved: Value = app.send(Method::POST, "/api/configure", Some(&token), Some(seed.clone())).await.json().await.unwrap();
    let before = saved["configId"].as_str().unwrap().to_owned();
    assert_eq!(saved["price"], "58250.00");

    // Red costs 150.00 more from version 2 on, under a new name.
    let v2 = next_catalog(&app, |c| {
        let red = option_mut(c, "red");
        red["price"] = json!(red["price"].as_i64().unwrap() + 15_000);
        red["name"] = json!("Signal red");
    })
    .await;
    assert_eq!(v2["version"], 2);
    let put = |token: Option<String>, body: Value| {
        let app = &app;
        async move { app.send(Method::PUT, "/api/configure/catalog", token.as_deref(), Some(body)).await }
    };
    let (as_admin, as_user) = (Some(admin.clone()), Some(token.clone()));
    assert_eq!(put(None, v2.clone()).await.status(), 401);
    assert_problem(put(as_user.clone(), v2.clone()).await, 403, "forbidden").await;
    let mut skipping = v2.clone();
    skipping["version"] = json!(5);
    let p = assert_problem(put(as_admin.clone(), skipping).await, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("next catalog version is 2"), "{p}");
    let mut broken = v2.clone();
    broken["options"]
        .as_array_mut()
        .unwrap()
        .push(json!({"code": "red", "name": "Red again", "group": "color", "price": 1, "is_default": false}));
    let p = assert_problem(put(as_admin.clone(), broken).await, 422, "validation_failed").await;
    assert!(p["detail"].as_str().unwrap().contains("\"red\" is used more than once"), "{p}");
    assert_eq!(
        app.send(Method::GET, "/api/configure/catalog", None, None).await.json::<Value>().await.unwrap()["version"],
        1,
        "nothing published"
    );

    let r = put(as_admin.clone(), v2.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    assert_problem(put(as_admin.clone(), v2).await, 409, "conflict").await;
    assert_eq!(app.send(Method::GET, "/api/configure/catalog", None, None).await.json::<Value>().await.unwrap()["version"], 2);

    // The earlier configuration keeps the version, price and names it was made with.
    let old: Value = app.get_auth(&format!("/api/configure/{before}"), &token).await.json().await.unwrap();
    assert_eq!((&old["catalogVersion"], &old["price"], &old["color"]), (&json!(1), &json!("58250.00"), &json!("Racing red")), "{old}");
    // A new one is made with the new version.
    let saved: Value = app.send(Method::POST, "/api/configure", Some(&token), Some(seed)).await.json().await.unwrap();
    assert_eq!(saved["price"], "58400.00");
    let new: Value = app.get_auth(&format!("/api/configure/{}", saved["configId"].as_str().unwrap()), &token).await.json().await.unwrap();
    assert_eq!((&new["catalogVersion"], &new["color"]), (&json!(2), &json!("Signal red")), "{new}");
    let mine: Value = app.get_auth("/api/configure/mine", &token).await.json().await.unwrap();
    let versions: Vec<&Value> = mine["items"].as_array().unwrap().iter().map(|c| &c["catalogVersion"]).collect();
    assert_eq!(versions, [&json!(2), &json!(1)], "newest first, each with its own version");

    // Admins publishing the same next version at once: exactly one wins, the rest get 409.
    let v3 = next_catalog(&app, |_| {}).await;
    let racers = (0..8).map(|_| put(as_admin.clone(), v3.clone()));
    let statuses: Vec<u16> = futures::future::join_all(racers).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "one winner: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    assert_eq!(app.send(Method::GET, "/api/configure/catalog", None, None).await.json::<Value>().await.unwrap()["version"], 3);
    app.cleanup().await;
}
