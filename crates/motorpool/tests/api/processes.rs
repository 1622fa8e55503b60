//! Identity and gateway as two separate `motorpool serve` processes that find each other
//! through Redis, on PostgreSQL + NATS: the distributed deployment in miniature.

use std::process::Stdio;
use std::time::Duration;

use motorpool::testkit::{Backend, cleanup_config, test_config};
use serde_json::json;

use crate::helpers::*;

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn serve(cfg_path: &std::path::Path, service: &str) -> Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_motorpool"))
        .arg("--config")
        .arg(cfg_path)
        .args(["serve", service])
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
    let gw_proc = serve(&path, "gateway");
    // The gateway alone is alive but not ready: identity is not registered yet.
    for _ in 0..200 {
        if http.get(format!("{gw}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.get(format!("{gw}/ready")).send().await.unwrap().status(), 503);

    let id_proc = serve(&path, "identity");
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
    let t: serde_json::Value = http
        .post(format!("{gw}/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http.get(format!("{gw}/api/auth/me")).bearer_auth(t["accessToken"].as_str().unwrap()).send().await.unwrap();
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
