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

/// The real binary: `motorpool up` with the test's backend, demo data, then SIGTERM.
#[tokio::test]
async fn the_binary_comes_up_with_demo_data_and_stops_gracefully_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    let mut cfg = config();
    for service in motorpool::SERVICES {
        cfg.listen.insert((*service).to_owned(), "127.0.0.1:0".parse().unwrap());
    }
    cfg.log.level = "warn".into();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let path = cfg.data_dir.join("motorpool.toml");
    std::fs::write(&path, cfg.to_masked_toml().unwrap()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_motorpool"))
        .arg("--config")
        .arg(&path)
        .arg("up")
        .env_remove("MOTORPOOL_TEST_BACKEND")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let gateway = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Motorpool is up: ") {
                return rest.split_whitespace().next().unwrap().trim_end_matches('/').to_owned();
            }
        }
        panic!("motorpool up exited before it was up");
    })
    .await
    .expect("motorpool up announces itself");
    // Keep draining its log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = client();
    wait_ready(&http, &gateway).await;
    let r = http
        .post(format!("{gateway}/api/auth/login"))
        .json(&json!({"email": "demo@motorpool.local", "password": "motorpool-demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the demo customer exists");
    let r = http
        .post(format!("{gateway}/api/auth/login"))
        .json(&json!({"email": "admin@motorpool.local", "password": "motorpool-admin"}))
        .send()
        .await
        .unwrap();
    let admin: serde_json::Value = r.json().await.unwrap();
    let overview: serde_json::Value = http
        .get(format!("{gateway}/api/admin/overview"))
        .bearer_auth(admin["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Every service behind the gateway is listed, and ready.
    let services = overview["services"].as_array().unwrap();
    for name in motorpool::SERVICES.iter().filter(|s| **s != "gateway") {
        let entry = services.iter().find(|s| s["service"] == *name).unwrap_or_else(|| panic!("{name} in {overview}"));
        assert_eq!(entry["ready"], true, "{overview}");
    }

    let pid = child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await.expect("stops after SIGTERM").unwrap();
    assert!(status.success(), "clean exit: {status}");
    motorpool::testkit::cleanup_config(&cfg).await;
}
