//! The deployment files against the binary, so they cannot drift: every service a manifest
//! runs exists, listens where the manifest's port says, answers the probes the manifest
//! names, and every configuration key and environment variable the manifests set is one the
//! binary's own loader accepts (unknown keys are errors there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use motorpool::{Config, SERVICES};
use serde_yaml_ng::Value;

use crate::helpers::*;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// Every document of a YAML file, with `<<` merge keys applied.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = <Value as serde::Deserialize>::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}"));
            v.apply_merge().unwrap_or_else(|e| panic!("{path}: {e}"));
            v
        })
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string, not {v:?}"))
}

fn port_of(v: &Value) -> u16 {
    v.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("a port, not {v:?}"))
}

/// `MOTORPOOL_SECTION__KEY=value` as the loader's `--set section.key=value`.
fn env_as_set(name: &str, value: &str) -> String {
    let key = name.strip_prefix("MOTORPOOL_").unwrap_or_else(|| panic!("{name} is not a MOTORPOOL_ variable"));
    format!("{}={value}", key.to_ascii_lowercase().replace("__", "."))
}

/// Loads the configuration a container gets: `file` (if any) plus its environment.
fn load(file: Option<&Path>, env: &BTreeMap<String, String>, what: &str) -> Config {
    let sets: Vec<String> = env.iter().map(|(k, v)| env_as_set(k, v)).collect();
    Config::load(file.or(Some(Path::new("/dev/null"))), &sets)
        .unwrap_or_else(|e| panic!("{what}: the binary refuses its configuration: {e:#}"))
}

#[tokio::test]
async fn the_kubernetes_manifests_run_real_services_on_their_ports_with_probes_and_keys_the_binary_accepts() {
    let config_docs = yaml_docs("deploy/k8s/config.yaml");
    let by_kind = |docs: &[Value], kind: &str| -> Vec<Value> { docs.iter().filter(|d| d["kind"] == kind).cloned().collect() };
    let config_map = by_kind(&config_docs, "ConfigMap").pop().expect("a ConfigMap");
    let secret = by_kind(&config_docs, "Secret").pop().expect("a Secret");
    let toml_text = str_of(&config_map["data"]["motorpool.toml"]);
    let dir = std::env::temp_dir().join(format!("mp-deploy-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("motorpool.toml");
    std::fs::write(&toml_path, toml_text).unwrap();

    let docs = yaml_docs("deploy/k8s/motorpool.yaml");
    let deployments = by_kind(&docs, "Deployment");
    let services = by_kind(&docs, "Service");
    let mut seen = Vec::new();
    for d in &deployments {
        let name = str_of(&d["metadata"]["name"]);
        assert!(SERVICES.contains(&name), "Deployment {name}: no such service");
        let containers = d["spec"]["template"]["spec"]["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "{name}: one container");
        let c = &containers[0];
        let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(str_of).collect();
        assert_eq!(args, ["--config", "/etc/motorpool/motorpool.toml", "serve", name], "{name}: serves itself with the ConfigMap");
        let mounts = c["volumeMounts"].as_sequence().unwrap();
        let config_volume =
            d["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap().iter().find(|v| v["configMap"]["name"] == "motorpool");
        let config_volume = str_of(&config_volume.unwrap_or_else(|| panic!("{name}: mounts the ConfigMap"))["name"]);
        assert!(
            mounts.iter().any(|m| m["name"] == config_volume && m["mountPath"] == "/etc/motorpool"),
            "{name}: ConfigMap at /etc/motorpool"
        );

        // The environment, with what the cluster fills in: the pod IP and the Secret's values.
        let mut env = BTreeMap::new();
        for e in c["env"].as_sequence().unwrap() {
            let key = str_of(&e["name"]).to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
                "10.1.2.3".to_owned()
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                assert_eq!(r["name"], "motorpool", "{name}: {key} from the Secret");
                str_of(&secret["stringData"][str_of(&r["key"])]).to_owned()
            };
            env.insert(key, value);
        }
        let cfg = load(Some(&toml_path), &env, &format!("Deployment {name}"));
        let listen = cfg.listen[name];
        assert!(listen.ip().is_unspecified(), "{name} listens on every interface: {listen}");
        let port = listen.port();
        let ports = c["ports"].as_sequence().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(port_of(&ports[0]["containerPort"]), port, "{name}: containerPort is where it listens");
        for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
            let get = &c[probe]["httpGet"];
            assert_eq!((str_of(&get["path"]), port_of(&get["port"])), (path, port), "{name}: {probe}");
        }
        let svc = services.iter().find(|s| s["metadata"]["name"] == name).unwrap_or_else(|| panic!("a Service for {name}"));
        assert_eq!(svc["spec"]["selector"], d["spec"]["selector"]["matchLabels"], "{name}: the Service selects the pods");
        let sp = &svc["spec"]["ports"][0];
        assert_eq!((port_of(&sp["port"]), port_of(&sp["targetPort"])), (port, port), "{name}: Service ports");
        seen.push(name);
    }
    seen.sort_unstable();
    let mut all = SERVICES.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all, "one Deployment per service");

    for hpa in by_kind(&yaml_docs("deploy/k8s/autoscaling.yaml"), "HorizontalPodAutoscaler") {
        let target = str_of(&hpa["spec"]["scaleTargetRef"]["name"]);
        assert!(deployments.iter().any(|d| d["metadata"]["name"] == target), "the autoscaler's target {target} is deployed");
    }
    let backing = yaml_docs("deploy/k8s/backing.yaml");
    let cfg = load(Some(&toml_path), &BTreeMap::new(), "the ConfigMap alone");
    for (url, service) in [(&cfg.events.nats_url, "nats"), (&cfg.cache.redis_url, "redis")] {
        assert!(url.contains(&format!("//{service}:")), "{url} names the {service} Service");
        assert!(by_kind(&backing, "Service").iter().any(|s| s["metadata"]["name"] == service), "a {service} Service");
    }
    std::fs::remove_dir_all(&dir).ok();

    // The probes the manifests name answer 200 on every service of a running platform.
    let app = spawn().await;
    let http = client();
    for name in SERVICES {
        for path in ["/health", "/ready"] {
            let r = http.get(format!("{}{path}", app.tp.url(name))).send().await.unwrap();
            assert_eq!(r.status(), 200, "{name}{path}");
        }
    }
    app.cleanup().await;
}

#[test]
fn the_compose_file_runs_every_service_with_environment_the_binary_accepts() {
    let doc = yaml_docs("deploy/docker-compose.yml").pop().expect("a compose document");
    let services = doc["services"].as_mapping().unwrap();
    let mut seen = Vec::new();
    for (key, svc) in services {
        let name = str_of(key);
        if ["postgres", "nats", "redis"].contains(&name) {
            continue;
        }
        assert!(SERVICES.contains(&name), "compose service {name}: no such motorpool service");
        let command: Vec<&str> = svc["command"].as_sequence().unwrap().iter().map(str_of).collect();
        assert_eq!(command, ["serve", name]);
        let env: BTreeMap<String, String> = svc["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (str_of(k).to_owned(), v.as_str().map(str::to_owned).unwrap_or_else(|| format!("{}", v.as_u64().unwrap()))))
            .collect();
        let cfg = load(None, &env, &format!("compose service {name}"));
        assert!(cfg.listen[name].ip().is_unspecified(), "{name} listens on every interface");
        assert_eq!(cfg.discovery.advertise_host.as_deref(), Some(name), "{name} is reached by its compose name");
        assert!(cfg.storage.postgres_url.contains("@postgres:"), "{name}: the compose PostgreSQL");
        assert!(cfg.events.nats_url.contains("//nats:") && cfg.cache.redis_url.contains("//redis:"), "{name}: the compose NATS and Redis");
        if name == "gateway" {
            let ports: Vec<&str> = svc["ports"].as_sequence().unwrap().iter().map(str_of).collect();
            assert_eq!(ports, [format!("8080:{}", cfg.listen[name].port())], "the gateway is published on 8080");
        }
        seen.push(name);
    }
    seen.sort_unstable();
    let mut all = SERVICES.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all, "one compose service per motorpool service");
}

#[test]
fn the_dockerfile_builds_the_binary_and_its_environment_is_accepted() {
    let text = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    assert!(text.contains("cargo build --release --locked -p motorpool"), "builds the motorpool package");
    assert!(text.contains("ENTRYPOINT [\"motorpool\"]"), "runs the binary");
    // ENV lines (continued with backslashes) as key=value pairs.
    let joined = text.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in joined.lines().filter_map(|l| l.trim().strip_prefix("ENV ")) {
        for pair in line.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: key=value"));
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    assert!(!env.is_empty(), "the image sets its defaults");
    let cfg = load(None, &env, "the image's environment");
    let exposed: Vec<u16> = text.lines().filter_map(|l| l.strip_prefix("EXPOSE ")).map(|p| p.trim().parse().unwrap()).collect();
    assert_eq!(exposed, [cfg.listen["gateway"].port()], "the exposed port is the gateway's");
    assert!(cfg.listen["gateway"].ip().is_unspecified());
}
