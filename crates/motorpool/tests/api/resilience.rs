//! Replicas that die, hang or all fail, as separate processes on PostgreSQL + NATS + Redis:
//! the gateway's active readiness checks and circuit breaker, and the services' peer calls
//! (balanced, retried where safe, bounded by the request's deadline).

use std::time::{Duration, Instant};

use motorpool::Config;
use motorpool::testkit::{Backend, cleanup_config, test_config};
use serde_json::Value;

use crate::helpers::*;
use crate::processes::{Child, free_addr, serve};
use crate::shop::Edge;

/// A set of `motorpool serve` processes on one configuration, each on its own port.
struct Cluster {
    cfg: Config,
    path: std::path::PathBuf,
    plan: Vec<(&'static str, String)>,
    children: Vec<Child>,
    api: Edge,
}

impl Cluster {
    async fn start(mut cfg: Config, services: &[&'static str]) -> Self {
        cfg.identity.bootstrap_admin_email = Some(ADMIN_EMAIL.into());
        cfg.identity.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
        std::fs::create_dir_all(&cfg.data_dir).unwrap();
        let path = cfg.data_dir.join("motorpool.toml");
        // Written unmasked: identity needs the admin's password.
        std::fs::write(&path, toml::to_string_pretty(&cfg).unwrap()).unwrap();
        let plan: Vec<(&'static str, String)> = services.iter().map(|s| (*s, free_addr())).collect();
        let children = plan.iter().map(|(service, addr)| serve(&path, service, addr)).collect();
        let http = client();
        for (_, addr) in &plan {
            wait_ready(&http, &format!("http://{addr}")).await;
        }
        let gw = format!("http://{}", plan.iter().find(|(s, _)| *s == "gateway").expect("a gateway").1);
        Self { cfg, path, plan, children, api: Edge { http, gw } }
    }

    /// Indexes of `service`'s processes in the plan.
    fn of(&self, service: &str) -> Vec<usize> {
        self.plan.iter().enumerate().filter(|(_, (s, _))| *s == service).map(|(i, _)| i).collect()
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i].0.id().expect("running");
        assert!(std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
    }

    async fn kill(&mut self, i: usize) {
        self.children[i].0.start_kill().unwrap();
        self.children[i].0.wait().await.unwrap();
    }

    /// Requests `route` served by process `i`, from its metrics.
    async fn served(&self, i: usize, route: &str) -> f64 {
        let text = self.api.http.get(format!("http://{}/metrics", self.plan[i].1)).send().await.unwrap().text().await.unwrap();
        metric_in(&text, "http_requests_total", &format!("route=\"{route}\""))
    }

    async fn stop(self) {
        drop(self.children);
        cleanup_config(&self.cfg).await;
    }
}

/// The infra test configuration, without the gateway's rate limit (these tests send many
/// requests from one address).
fn infra_config() -> Config {
    let mut cfg = test_config(Backend::Infra);
    cfg.gateway.rate_limit_enabled = false;
    cfg
}

/// A 2xx answer, or what went wrong with `what`.
async fn outcome(what: &str, sent: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{what}: {} {}", r.status(), r.text().await.unwrap_or_default())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// A product with plenty of stock, and an admin token.
async fn stocked_product(api: &Edge) -> (String, String) {
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let [code]: [String; 1] = api.product_codes(1).await.try_into().unwrap();
    api.put_stock(&admin, &code, 1_000).await;
    (admin, code)
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_an_inventory_replica_killed_costs_the_shop_nothing_its_calls_go_to_the_other() {
    let mut cfg = infra_config();
    // Long enough that discovery lists the dead replica for the whole test.
    cfg.discovery.ttl_secs = 30;
    let mut c = Cluster::start(cfg, &["identity", "payments", "inventory", "inventory", "shop", "gateway"]).await;
    let (admin, code) = stocked_product(&c.api).await;
    let tokens = c.api.customers("peerkill", 24).await;
    let victim = c.of("inventory")[0];
    c.kill(victim).await;

    // Every add needs an inventory hold (sent once: only retried because the dead replica
    // refused the connection) and every cart read asks inventory for availability (retried).
    let (api, code) = (&c.api, code.as_str());
    let outcomes: Vec<(u16, u16)> = futures::future::join_all(tokens.iter().map(|t| async move {
        let added = api.add(t, code, 1).await.status().as_u16();
        let read = api.send(reqwest::Method::GET, "/api/cart", Some(t), None).await.status().as_u16();
        (added, read)
    }))
    .await;
    let failed: Vec<&(u16, u16)> = outcomes.iter().filter(|o| **o != (201, 200)).collect();
    assert!(failed.is_empty(), "{} of {} customers saw a failure: {failed:?}", failed.len(), outcomes.len());
    assert_eq!(c.api.stock(&admin, code).await, (1_000, 24, 976), "one hold per add, none twice");
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_a_hanging_inventory_costs_a_cart_request_the_gateways_deadline_and_a_504_that_names_it() {
    let mut cfg = infra_config();
    cfg.discovery.ttl_secs = 30;
    cfg.gateway.upstream_timeout_ms = 2_000;
    // Without active checks or ejection in the way, the hanging replica is called.
    cfg.gateway.ready_check_ms = 0;
    let c = Cluster::start(cfg, &["identity", "payments", "inventory", "shop", "gateway"]).await;
    let (_admin, code) = stocked_product(&c.api).await;
    let token = c.api.customer("deadline").await;
    let inventory = c.of("inventory")[0];
    c.signal(inventory, "-STOP");

    let started = Instant::now();
    let r = c.api.add(&token, &code, 1).await;
    let took = started.elapsed();
    c.signal(inventory, "-CONT");
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!((status.as_u16(), body["code"].as_str()), (504, Some("peer_timeout")), "{body}");
    // The shop gave up on inventory within the time the gateway gave it (its own default for
    // a peer call is 5 s), so the answer is the shop's, naming the peer.
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("inventory")), "{body}");
    assert!(took < Duration::from_millis(2_000) && took > Duration::from_millis(1_500), "took {took:?}");
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_a_paused_replica_fails_its_ready_checks_and_gets_no_requests_until_it_resumes() {
    let mut cfg = infra_config();
    cfg.discovery.ttl_secs = 30;
    cfg.gateway.ready_check_ms = 300;
    let c = Cluster::start(cfg, &["identity", "payments", "inventory", "shop", "shop", "gateway"]).await;
    let route = "/api/shop/products";
    let [paused, other]: [usize; 2] = c.of("shop").try_into().unwrap();
    c.signal(paused, "-STOP");
    // Two check periods: the paused replica's check times out and it is taken out of rotation
    // before any request had to fail on it.
    tokio::time::sleep(Duration::from_millis(900)).await;

    let quick = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let url = format!("{}{route}?q=brake&limit=5", c.api.gw);
    let statuses: Vec<u16> = futures::future::join_all((0..40).map(|_| {
        let (quick, url) = (quick.clone(), url.clone());
        async move { quick.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "every read answered in time: {statuses:?}");

    // Resumed, it passes its checks and takes requests again (on new connections: a client
    // connection stays with the replica it was given while that one is live).
    c.signal(paused, "-CONT");
    let before = c.served(paused, route).await;
    eventually(Duration::from_secs(10), "the resumed replica serves again", || async {
        for _ in 0..10 {
            assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
        }
        (c.served(paused, route).await > before).then_some(())
    })
    .await;
    assert!(c.served(other, route).await >= 40.0, "the other replica took the reads while one was paused");
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_with_every_shop_replica_down_the_gateway_opens_the_circuit_and_a_probe_closes_it_when_one_is_back() {
    let mut cfg = infra_config();
    cfg.discovery.ttl_secs = 30;
    cfg.gateway.ready_check_ms = 0;
    cfg.gateway.breaker_failures = 3;
    cfg.gateway.breaker_open_ms = 1_000;
    let mut c = Cluster::start(cfg, &["identity", "payments", "inventory", "shop", "gateway"]).await;
    let url = format!("{}/api/shop/products?limit=1", c.api.gw);
    assert_eq!(c.api.http.get(&url).send().await.unwrap().status(), 200);
    let shop = c.of("shop")[0];
    c.kill(shop).await;

    // Three refused connections in a row open the circuit; then the gateway answers at once.
    for _ in 0..3 {
        assert_problem(c.api.http.get(&url).send().await.unwrap(), 503, "peer_unavailable").await;
    }
    let r = c.api.http.get(&url).send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let body: Value = assert_problem(r, 503, "circuit_open").await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("shop")), "{body}");

    // A replica comes back: once the circuit's time is up, the probe reaches it and closes it.
    let addr = free_addr();
    c.children.push(serve(&c.path, "shop", &addr));
    wait_ready(&c.api.http, &format!("http://{addr}")).await;
    eventually(Duration::from_secs(5), "the circuit closes", || async {
        (c.api.http.get(&url).send().await.unwrap().status() == 200).then_some(())
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.api.http.get(&url).send().await.unwrap().status(), 200, "closed: every request goes through");
    }
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_a_live_configuration_pinned_to_a_replica_that_dies_resumes_on_the_other_through_the_gateway() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
    async fn next(ws: &mut Ws) -> Option<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("in time") {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
    async fn pick(ws: &mut Ws, option: &str) -> Option<Value> {
        ws.send(Message::Text(serde_json::json!({"type": "pick", "option": option}).to_string().into())).await.ok()?;
        next(ws).await
    }

    let mut cfg = infra_config();
    cfg.discovery.ttl_secs = 30;
    let mut c = Cluster::start(cfg, &["identity", "configurator", "configurator", "gateway"]).await;
    let ws_url = format!("{}/api/configure/ws", c.api.gw.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.expect("socket through the gateway");
    let session = next(&mut ws).await.expect("the session")["session"].as_str().unwrap().to_owned();
    assert_eq!(pick(&mut ws, "volt-s").await.expect("a reply")["picks"], serde_json::json!(["volt-s"]));

    // The socket is pinned to one replica for its whole life: that one is killed.
    let replicas = c.of("configurator");
    let mut pinned = None;
    for i in &replicas {
        if c.served(*i, "/api/configure/ws").await > 0.0 {
            assert!(pinned.replace(*i).is_none(), "one replica holds the socket");
        }
    }
    let pinned = pinned.expect("a replica holds the socket");
    c.kill(pinned).await;
    assert!(pick(&mut ws, "pkg-sport").await.is_none(), "the socket ends with its replica");

    // The client opens it again with its session: the gateway sends it to the live replica
    // (the dead one refuses the connection and is ejected), which resumes from the cache.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}?session={session}")).await.expect("socket again");
    let state = next(&mut ws).await.expect("the resumed session");
    assert_eq!((state["session"].as_str(), &state["picks"]), (Some(session.as_str()), &serde_json::json!(["volt-s"])), "{state}");
    assert_eq!(pick(&mut ws, "pkg-sport").await.expect("a reply")["picks"], serde_json::json!(["volt-s", "pkg-sport"]));
    let other = replicas.into_iter().find(|i| *i != pinned).unwrap();
    assert!(c.served(other, "/api/configure/ws").await > 0.0, "the other replica took it");
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_a_shop_replica_stopped_gracefully_under_load_loses_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut cfg = infra_config();
    cfg.discovery.ttl_secs = 30;
    let mut c = Cluster::start(cfg, &["identity", "payments", "inventory", "shop", "shop", "gateway"]).await;
    let (admin, code) = stocked_product(&c.api).await;
    let tokens = c.api.customers("drain", 4).await;
    let [stopped, other]: [usize; 2] = c.of("shop").try_into().unwrap();

    // Eight readers search the catalog and four shoppers add a part and take it out again, on
    // keep-alive connections, for three seconds; one second in, one shop replica gets SIGTERM.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, url, stop) = (client(), format!("{}/api/shop/products?q=brake&limit=5", c.api.gw), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                outcomes.push(outcome("search", http.get(&url).send().await).await);
            }
            outcomes
        }));
    }
    for token in tokens {
        let (api, code, stop) = (Edge { http: client(), gw: c.api.gw.clone() }, code.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                outcomes.push(outcome("add", Ok(api.add(&token, &code, 1).await)).await);
                let removed = api.send(reqwest::Method::DELETE, &format!("/api/cart/items/{code}"), Some(&token), None).await;
                outcomes.push(outcome("remove", Ok(removed)).await);
            }
            outcomes
        }));
    }
    // Stop it once it is taking part in the load (under a loaded machine a replica can miss a
    // ready check and sit out a second or two before it gets requests).
    tokio::time::sleep(Duration::from_secs(1)).await;
    eventually(Duration::from_secs(15), "both replicas serve before the stop", || async {
        (c.served(stopped, "/api/shop/products").await > 0.0).then_some(())
    })
    .await;
    c.signal(stopped, "-TERM");
    let exited = tokio::time::timeout(Duration::from_secs(15), c.children[stopped].0.wait()).await.expect("exits after SIGTERM").unwrap();
    assert!(exited.success(), "a graceful exit: {exited}");
    let other_at_stop = c.served(other, "/api/shop/products").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(outcomes.len() > 100, "the load went on: {}", outcomes.len());
    assert!(failed.is_empty(), "no request lost: {} of {} failed ({:?})", failed.len(), outcomes.len(), &failed[..failed.len().min(10)]);
    assert!(c.served(other, "/api/shop/products").await > other_at_stop, "the other replica took the load");
    c.api.wait_held(&admin, &code, 0).await;
    c.stop().await;
}

/// A private `redis-server` on a free port (so cutting it disturbs no other test), stopped
/// when dropped.
struct PrivateRedis {
    child: std::process::Child,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian: redis-server)");
        // Dropped (killed and reaped) if it never comes up.
        let redis = Self { child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {port} did not start");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_with_redis_cut_requests_go_on_quickly_from_the_last_known_replicas_and_registrations_return_with_it() {
    let port: u16 = free_addr().rsplit_once(':').unwrap().1.parse().unwrap();
    let mut redis = PrivateRedis::start_on(port);
    let mut cfg = infra_config();
    cfg.cache.redis_url = format!("redis://127.0.0.1:{port}");
    cfg.discovery.ttl_secs = 3;
    // The rate limiter keeps its buckets in Redis: on, with room for the test's requests.
    cfg.gateway.rate_limit_enabled = true;
    cfg.gateway.rate_limit_per_sec = 1_000.0;
    cfg.gateway.rate_limit_burst = 1_000;
    let c = Cluster::start(cfg, &["identity", "payments", "inventory", "shop", "gateway"]).await;
    let (admin, code) = stocked_product(&c.api).await;
    let token = c.api.customer("redisless").await;
    // Warm, as a running platform is: the shop has verified a token and found inventory.
    assert_eq!(c.api.add(&token, &code, 1).await.status(), 201);

    redis.stop();
    // Reads and cart changes go on: discovery answers from the last addresses it saw, the rate
    // limiter and the caches fail open, and none of them waits on Redis for each request.
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let url = format!("{}/api/shop/products?q=brake&limit=5", c.api.gw);
    let started = Instant::now();
    for i in 0..20 {
        let r = quick.get(&url).send().await.unwrap_or_else(|e| panic!("read {i} during the outage: {e}"));
        assert_eq!(r.status(), 200, "read {i} during the outage");
        let r = quick
            .post(format!("{}/api/cart/items", c.api.gw))
            .bearer_auth(&token)
            .json(&serde_json::json!({"productCode": code, "quantity": 1}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("add {i} during the outage: {e}"));
        let status = r.status();
        assert!(status.is_success(), "add {i} during the outage: {status} {}", r.text().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "forty requests and two seconds of pauses took {took:?}");
    // The outage outlasts a registration's lifetime (3 s): the addresses last seen must stand
    // for the replicas' grace from the end of the outage, not from before it.
    let outage = Duration::from_secs(4);
    if let Some(rest) = outage.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert_eq!(quick.get(&url).send().await.unwrap().status(), 200, "a read at the end of a {outage:?} outage");

    // Redis comes back empty: until every process registers again with its next heartbeat,
    // the addresses last seen stand, so nothing fails meanwhile.
    let _redis = PrivateRedis::start_on(port);
    for i in 0..10 {
        let r = quick.get(&url).send().await.unwrap_or_else(|e| panic!("read {i} after Redis came back: {e}"));
        let status = r.status();
        assert_eq!(status, 200, "read {i} after Redis came back empty: {}", r.text().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    eventually(Duration::from_secs(10), "the gateway finds shop again through Redis", || async {
        let stock = c.api.send(reqwest::Method::GET, &format!("/api/inventory/stock/{code}"), Some(&admin), None).await;
        let held = if stock.status() == 200 { stock.json::<Value>().await.unwrap()["held"].as_i64() } else { None };
        (quick.get(&url).send().await.is_ok_and(|r| r.status() == 200) && held == Some(21)).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL, NATS and Redis; run by the infra suite"]
async fn infra_sessions_the_database_drops_answer_503_database_unavailable_never_500_and_the_service_recovers() {
    let app = spawn_with(infra_config()).await;
    let api = Edge { http: app.http.clone(), gw: app.gw.clone() };
    let url = "/api/shop/products?q=brake&limit=5";
    let reads = |n: usize| {
        let api = &api;
        futures::future::join_all((0..n).map(move |_| async move { api.send(reqwest::Method::GET, url, None, None).await }))
    };
    // Many reads at once leave the shop's pool with many open sessions.
    for r in reads(16).await {
        assert_eq!(r.status(), 200);
    }

    // What a PostgreSQL restart or failover does to a pool: every session ends under it.
    let shop_db = format!("{}_shop", app.tp.cfg.storage.database_prefix);
    let server = format!("{}/postgres", app.tp.cfg.storage.postgres_url.trim_end_matches('/'));
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server).await.unwrap();
    let (ended,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(&shop_db)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ended >= 2, "the shop had sessions open ({ended})");

    // Each dead session fails the one statement sent on it: a 503 the client may retry, with
    // a stable code and Retry-After, never a 500.
    let mut unavailable = 0;
    for r in reads(16).await {
        match r.status().as_u16() {
            200 => {}
            503 => {
                assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["code"], "database_unavailable", "{body}");
                unavailable += 1;
            }
            other => panic!("a read on a dropped session answered {other}: {}", r.text().await.unwrap_or_default()),
        }
    }
    assert!(unavailable >= 1, "reads on the dropped sessions were refused as unavailable");
    // The pool discards the dead sessions and opens new ones: the service needs no restart.
    eventually(Duration::from_secs(10), "every read succeeds again", || async {
        reads(16).await.iter().all(|r| r.status() == 200).then_some(())
    })
    .await;
    app.cleanup().await;
}
