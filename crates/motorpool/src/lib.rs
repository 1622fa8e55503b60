//! Wiring only: which services exist, how one process starts some or all of them, and the
//! documents generated from the code (OpenAPI, event catalog). The services' logic lives in
//! their own crates.

pub mod config;
pub mod testkit;

use std::net::SocketAddr;

use motorpool_platform::clock::Clock;
use motorpool_platform::service::{self, Running, ServiceDef, Shared, TokenSettings};
use tokio_util::sync::CancellationToken;

pub use config::{Config, SERVICES};

/// The definition of service `name`, configured from `cfg`.
pub fn service_def(name: &str, cfg: &Config) -> Option<Box<dyn ServiceDef>> {
    match name {
        motorpool_identity::NAME => {
            Some(Box::new(motorpool_identity::IdentityService { config: cfg.identity.clone(), demo_data: cfg.demo_data }))
        }
        motorpool_payments::NAME => Some(Box::new(motorpool_payments::PaymentsService { config: cfg.payments.clone() })),
        motorpool_inventory::NAME => Some(Box::new(motorpool_inventory::InventoryService { config: cfg.inventory.clone() })),
        motorpool_shop::NAME => Some(Box::new(motorpool_shop::ShopService { config: cfg.shop.clone(), demo_data: cfg.demo_data })),
        motorpool_configurator::NAME => Some(Box::new(motorpool_configurator::ConfiguratorService { config: cfg.configurator.clone() })),
        motorpool_factory::NAME => {
            Some(Box::new(motorpool_factory::FactoryService { config: cfg.factory.clone(), demo_data: cfg.demo_data }))
        }
        motorpool_notifications::NAME => {
            Some(Box::new(motorpool_notifications::NotificationsService { config: cfg.notifications.clone() }))
        }
        motorpool_gateway::NAME => Some(Box::new(motorpool_gateway::GatewayService { config: cfg.gateway.clone() })),
        _ => None,
    }
}

pub fn token_settings(cfg: &Config) -> TokenSettings {
    TokenSettings { issuer: cfg.auth.issuer.clone(), audience: cfg.auth.audience.clone() }
}

/// Services started by one process.
pub struct Platform {
    pub services: Vec<Running>,
    pub shutdown: CancellationToken,
}

impl Platform {
    pub fn addr(&self, service: &str) -> Option<SocketAddr> {
        self.services.iter().find(|s| s.name == service).map(|s| s.addr)
    }

    /// Signals shutdown and waits until every service has drained and stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for s in self.services {
            let _ = s.handle.await;
        }
    }
}

/// Starts `names` (in the binary's start order) in this process.
pub async fn start(cfg: &Config, names: &[String], clock: Clock, shutdown: CancellationToken) -> anyhow::Result<Platform> {
    for name in names {
        anyhow::ensure!(SERVICES.contains(&name.as_str()), "no such service: {name} (known: {})", SERVICES.join(", "));
    }
    let shared: Shared = service::connect_shared(&cfg.infra(), token_settings(cfg), clock, shutdown.clone()).await?;
    let mut services = Vec::new();
    for name in SERVICES.iter().filter(|s| names.iter().any(|n| n == *s)) {
        let def = service_def(name, cfg).ok_or_else(|| anyhow::anyhow!("no such service: {name}"))?;
        let listen = cfg.listen[*name];
        let started = if *name == motorpool_gateway::NAME && names.len() > 1 {
            // The edge gets its own threads, so no service's work can starve it (and the
            // hop from the gateway to a service in this process crosses threads, as it
            // would across processes).
            let shared = shared.clone();
            match edge_runtime(cfg.worker_threads) {
                Ok(rt) => rt.spawn(async move { service::start(&shared, def, listen).await }).await.unwrap_or_else(|e| Err(e.into())),
                Err(e) => Err(e),
            }
        } else {
            service::start(&shared, def, listen).await
        };
        match started {
            Ok(running) => services.push(running),
            Err(e) => {
                shutdown.cancel();
                for s in services {
                    let _ = s.handle.await;
                }
                return Err(e);
            }
        }
    }
    Ok(Platform { services, shutdown })
}

/// The gateway's runtime when it shares the process with services: `worker_threads` threads
/// (0: one per core) of its own, created once and kept for the life of the process.
fn edge_runtime(worker_threads: usize) -> anyhow::Result<&'static tokio::runtime::Runtime> {
    // Built inside `get_or_init`, so concurrent first callers never build (and then drop,
    // inside an async context) a second one.
    static EDGE: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> = std::sync::OnceLock::new();
    let built = EDGE.get_or_init(|| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.thread_name("motorpool-edge").enable_all();
        if worker_threads > 0 {
            builder.worker_threads(worker_threads);
        }
        builder.build().map_err(|e| e.to_string())
    });
    built.as_ref().map_err(|e| anyhow::anyhow!("cannot start the gateway's runtime: {e}"))
}

/// Applies every named service's migrations and exits.
pub async fn migrate(cfg: &Config, names: &[String]) -> anyhow::Result<()> {
    let infra = cfg.infra();
    for name in names {
        let def = service_def(name, cfg).ok_or_else(|| anyhow::anyhow!("no such service: {name}"))?;
        if let Some(db) = service::open_database(def.as_ref(), &infra).await? {
            tracing::info!(service = %name, database = db.name(), "migrated");
            db.close().await;
        }
    }
    Ok(())
}

/// The OpenAPI document of every service, merged (what the gateway serves at `/docs`).
pub fn openapi() -> serde_json::Value {
    let parts = [
        motorpool_identity::openapi(),
        motorpool_payments::openapi(),
        motorpool_inventory::openapi(),
        motorpool_shop::openapi(),
        motorpool_configurator::openapi(),
        motorpool_factory::openapi(),
        motorpool_notifications::openapi(),
    ];
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for part in parts {
        let part = serde_json::to_value(part).unwrap_or_default();
        if let Some(p) = part["paths"].as_object() {
            paths.extend(p.clone());
        }
        if let Some(s) = part["components"]["schemas"].as_object() {
            schemas.extend(s.clone());
        }
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Motorpool API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}

/// Every event type the platform publishes, AsyncAPI-style.
pub fn event_catalog(cfg: &Config) -> serde_json::Value {
    let mut channels = serde_json::Map::new();
    for name in SERVICES {
        if let Some(def) = service_def(name, cfg) {
            for spec in def.events() {
                let example: serde_json::Value = serde_json::from_str(spec.example).unwrap_or_default();
                channels.insert(
                    format!("{}.{}", cfg.events.namespace, spec.kind),
                    serde_json::json!({
                        "description": spec.description,
                        "publish": {"message": {
                            "name": spec.kind,
                            "headers": {"Nats-Msg-Id": "the event id"},
                            "payload": {"id": "uuid", "type": spec.kind, "source": name, "time": "RFC 3339", "subject": "entity id", "traceparent": "W3C trace context", "data": example}
                        }}
                    }),
                );
            }
        }
    }
    serde_json::json!({"asyncapi": "2.6.0", "info": {"title": "Motorpool events", "version": env!("CARGO_PKG_VERSION")}, "channels": channels})
}
