//! Identity and gateway as two separate `motorpool serve` processes that find each other
//! through Redis, on PostgreSQL + NATS: the distributed deployment in miniature.

use std::process::Stdio;
use std::time::Duration;

use motorpool::testkit::{Backend, cleanup_config, test_config};
use serde_json::json;

use crate::helpers::*;

/// A `motorpool serve` process, killed when dropped.
pub struct Child(pub tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Logs in at the gateway `gw`: the access token.
pub async fn access_token(http: &reqwest::Client, gw: &str, email: &str, password: &str) -> String {
    let r = http.post(format!("{gw}/api/auth/login")).json(&json!({"email": email, "password": password})).send().await.unwrap();
    assert_eq!(r.status(), 200, "log in as {email}");
    r.json::<serde_json::Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned()
}

/// `motorpool --config <path> --set listen.<service>=<addr> serve <service>`.
pub fn serve(cfg_path: &std::path::Path, service: &str, addr: &str) -> Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_motorpool"))
        .arg("--config")
        .arg(cfg_path)
        .args(["--set", &format!("listen.{service}={addr}"), "serve", service])
        .env_remove("MOTORPOOL_TEST_BACKEND")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn motorpool");
    Child(child)
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_identity_and_gateway_as_separate_processes_find_each_other_through_redis() {
    let mut cfg = test_config(Backend::Infra);
    let gateway = free_addr();
    let identity = free_addr();
    cfg.listen.insert("gateway".into(), gateway.parse().unwrap());
    cfg.listen.insert("identity".into(), identity.parse().unwrap());
    cfg.discovery.ttl_secs = 3;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let path = cfg.data_dir.join("motorpool.toml");
    std::fs::write(&path, cfg.to_masked_toml().unwrap()).unwrap();

    let http = client();
    let gw = format!("http://{gateway}");
    let gw_proc = serve(&path, "gateway", &gateway);
    // The gateway alone is alive but not ready: identity is not registered yet.
    for _ in 0..200 {
        if http.get(format!("{gw}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.get(format!("{gw}/ready")).send().await.unwrap().status(), 503);

    let id_proc = serve(&path, "identity", &identity);
    wait_ready(&http, &format!("http://{identity}")).await;
    wait_ready(&http, &gw).await;

    let email = unique_email("procs");
    let r = http
        .post(format!("{gw}/api/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "fullName": "Two Procs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = access_token(&http, &gw, &email, PASSWORD).await;
    let r = http.get(format!("{gw}/api/auth/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the gateway verified a token with keys fetched over gRPC from the other process");

    // Identity stops gracefully: it deregisters, and the gateway stops routing to it.
    let mut id_proc = id_proc;
    let pid = id_proc.0.id().expect("pid");
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), id_proc.0.wait()).await.expect("identity exits after SIGTERM").unwrap();
    assert!(status.success(), "graceful exit: {status}");
    let mut refused = false;
    for _ in 0..40 {
        let r = http.post(format!("{gw}/api/auth/login")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
        if r.status() == 503 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "after deregistration the gateway answers 503 peer_unavailable");
    drop(gw_proc);
    cleanup_config(&cfg).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_configurator_replicas_continue_each_others_live_sessions_and_serve_a_newly_published_catalog() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut cfg = test_config(Backend::Infra);
    cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
    cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
    cfg.discovery.ttl_secs = 3;
    cfg.configurator.catalog_poll_ms = 200;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let path = cfg.data_dir.join("motorpool.toml");
    // Written unmasked: identity needs the admin's password.
    std::fs::write(&path, toml::to_string_pretty(&cfg).unwrap()).unwrap();
    let plan: Vec<(&str, String)> = ["identity", "configurator", "configurator", "gateway"].into_iter().map(|s| (s, free_addr())).collect();
    let _children: Vec<Child> = plan.iter().map(|(service, addr)| serve(&path, service, addr)).collect();
    let http = client();
    for (_, addr) in &plan {
        wait_ready(&http, &format!("http://{addr}")).await;
    }
    let [a, b]: [&String; 2] =
        plan.iter().filter(|(s, _)| *s == "configurator").map(|(_, addr)| addr).collect::<Vec<_>>().try_into().unwrap();

    // A session begun on one replica goes on on the other, and back.
    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
    async fn open(addr: &str, query: &str) -> (Ws, serde_json::Value) {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/configure/ws{query}")).await.expect("socket");
        let first = next(&mut ws).await;
        (ws, first)
    }
    async fn next(ws: &mut Ws) -> serde_json::Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("in time").expect("open").expect("frame") {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                _ => continue,
            }
        }
    }
    async fn pick(ws: &mut Ws, option: &str) -> serde_json::Value {
        ws.send(Message::Text(json!({"type": "pick", "option": option}).to_string().into())).await.unwrap();
        next(ws).await
    }
    let (mut on_a, first) = open(a, "").await;
    let session = first["session"].as_str().unwrap().to_owned();
    assert_eq!(pick(&mut on_a, "volt-s").await["picks"], json!(["volt-s"]));
    drop(on_a);
    let (mut on_b, state) = open(b, &format!("?session={session}")).await;
    assert_eq!((state["session"].as_str(), &state["picks"]), (Some(session.as_str()), &json!(["volt-s"])), "{state}");
    assert_eq!(pick(&mut on_b, "pkg-sport").await["picks"], json!(["volt-s", "pkg-sport"]));
    drop(on_b);
    let (_on_a, state) = open(a, &format!("?session={session}")).await;
    assert_eq!(state["picks"], json!(["volt-s", "pkg-sport"]), "{state}");

    // A catalog published on one replica is served by the other within its poll period.
    let gw = format!("http://{}", plan.iter().find(|(s, _)| *s == "gateway").unwrap().1);
    let admin = access_token(&http, &gw, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let catalog = |addr: &str| {
        let (http, url) = (http.clone(), format!("http://{addr}/api/configure/catalog"));
        async move { http.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let mut next_version = catalog(a).await;
    assert_eq!(next_version["version"], 1);
    next_version["version"] = json!(2);
    let r = http.put(format!("http://{a}/api/configure/catalog")).bearer_auth(&admin).json(&next_version).send().await.unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(5), "the other replica serves version 2", || async { (catalog(b).await["version"] == 2).then_some(()) })
        .await;
    cleanup_config(&cfg).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_a_shop_replica_killed_under_load_is_ejected_at_once_and_no_read_fails() {
    let mut cfg = test_config(Backend::Infra);
    cfg.discovery.ttl_secs = 3;
    cfg.gateway.rate_limit_enabled = false;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let path = cfg.data_dir.join("motorpool.toml");
    std::fs::write(&path, cfg.to_masked_toml().unwrap()).unwrap();
    let plan: Vec<(&str, String)> =
        ["identity", "payments", "inventory", "shop", "shop", "gateway"].into_iter().map(|s| (s, free_addr())).collect();
    let mut children: Vec<Child> = plan.iter().map(|(service, addr)| serve(&path, service, addr)).collect();
    let http = client();
    for (_, addr) in &plan {
        wait_ready(&http, &format!("http://{addr}")).await;
    }
    let gw = format!("http://{}", plan.iter().find(|(s, _)| *s == "gateway").unwrap().1);
    let shops: Vec<usize> = plan.iter().enumerate().filter(|(_, (s, _))| *s == "shop").map(|(i, _)| i).collect();
    let served = |addr: String| {
        let http = http.clone();
        async move {
            let text = http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
            metric_in(&text, "http_requests_total", "route=\"/api/shop/products\"")
        }
    };

    // Eight keep-alive readers search the catalog for three seconds; one second in, one shop
    // replica is killed with SIGKILL (no deregistration: discovery still lists it for its TTL).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, stop) = (client(), format!("{gw}/api/shop/products?q=brake&limit=5"), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    statuses.push(http.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0));
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = shops[0];
    let survivor_addr = plan[shops[1]].1.clone();
    let victim_before = served(plan[victim].1.clone()).await;
    assert!(victim_before > 0.0, "both replicas served before the kill");
    children[victim].0.start_kill().unwrap();
    children[victim].0.wait().await.unwrap();
    let survivor_at_kill = served(survivor_addr.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for r in readers {
        statuses.extend(r.await.unwrap());
    }
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 100, "the readers kept reading: {}", statuses.len());
    assert!(failed.is_empty(), "no read failed: {} of {} did ({:?})", failed.len(), statuses.len(), &failed[..failed.len().min(10)]);
    assert!(served(survivor_addr).await > survivor_at_kill, "the survivor took the reads after the kill");
    drop(children);
    cleanup_config(&cfg).await;
}
