//! The seam between a service and the platform: a service describes itself with
//! [`ServiceDef`], receives a [`ServiceContext`] with every backend already connected, and
//! returns its routes, consumers and background tasks as [`ServiceParts`]. [`start`] does the
//! rest the same way for every service: migrations, listener, router, outbox relay,
//! consumers, discovery registration and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{IdentityKeys, Verifier};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::InfraConfig;
use crate::db::{Db, Migrations};
use crate::discovery::Discovery;
use crate::events::{Bus, Consumer, EventSpec, Outbox};
use crate::grpc::Peers;
use crate::http::{Front, Ops, ReadyProbe};
use crate::metrics::Metrics;

/// Token settings every verifier shares.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
}

/// What all services of one process share.
#[derive(Clone)]
pub struct Shared {
    pub infra: InfraConfig,
    pub bus: Arc<dyn Bus>,
    pub cache: Cache,
    pub discovery: Discovery,
    pub clock: Clock,
    pub tokens: TokenSettings,
    pub shutdown: CancellationToken,
}

/// Everything a service gets from the platform.
#[derive(Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub infra: InfraConfig,
    /// Present when the service declared migrations.
    pub db: Option<Db>,
    pub bus: Arc<dyn Bus>,
    pub outbox: Outbox,
    pub cache: Cache,
    pub discovery: Discovery,
    pub peers: Peers,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Verifies access tokens against identity's keys.
    pub verifier: Verifier,
    pub tokens: TokenSettings,
    /// Cancelled when the process shuts down.
    pub shutdown: CancellationToken,
    /// The address this service listens on.
    pub addr: SocketAddr,
}

impl ServiceContext {
    /// The service's database; only call from a service that declared migrations.
    pub fn db(&self) -> anyhow::Result<Db> {
        self.db.clone().ok_or_else(|| anyhow::anyhow!("service {} has no database", self.name))
    }
}

/// What a service hands back to the platform.
pub struct ServiceParts {
    pub rest: Router,
    pub grpc: Option<Router>,
    pub consumers: Vec<Consumer>,
    /// Long-running work (sweepers, schedulers); each must stop at `ctx.shutdown`.
    pub tasks: Vec<BoxFuture<'static, ()>>,
    pub openapi: utoipa::openapi::OpenApi,
    /// Peers that must be reachable for this service to be ready.
    pub required_peers: Vec<&'static str>,
    /// Extra readiness checks.
    pub probes: Vec<(&'static str, ReadyProbe)>,
    /// Takes requests before the router does (the gateway's proxy).
    pub front: Option<Arc<dyn Front>>,
}

impl ServiceParts {
    pub fn new(rest: Router, openapi: utoipa::openapi::OpenApi) -> Self {
        Self {
            rest,
            grpc: None,
            consumers: Vec::new(),
            tasks: Vec::new(),
            openapi,
            required_peers: Vec::new(),
            probes: Vec::new(),
            front: None,
        }
    }
}

/// A service the platform can run.
pub trait ServiceDef: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The service's schema, if it has a database.
    fn migrations(&self) -> Option<Migrations>;
    /// The events it publishes, for the event catalog.
    fn events(&self) -> &'static [EventSpec] {
        &[]
    }
    fn build(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>>;
}

/// A running service.
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub handle: JoinHandle<()>,
}

/// Connects the shared backends named by the configuration.
pub async fn connect_shared(
    infra: &InfraConfig,
    tokens: TokenSettings,
    clock: Clock,
    shutdown: CancellationToken,
) -> anyhow::Result<Shared> {
    let bus = crate::events::connect_bus(infra).await?;
    let cache = Cache::connect(&infra.cache).await?;
    let discovery = Discovery::connect(infra).await?;
    Ok(Shared { infra: infra.clone(), bus, cache, discovery, clock, tokens, shutdown })
}

/// Opens the service's database (if any) and applies its migrations.
pub async fn open_database(def: &dyn ServiceDef, infra: &InfraConfig) -> anyhow::Result<Option<Db>> {
    match def.migrations() {
        Some(migrations) => {
            let db = Db::connect(def.name(), infra).await?;
            db.migrate(&migrations).await?;
            Ok(Some(db))
        }
        None => Ok(None),
    }
}

/// Starts one service on `listen` and returns once it serves and is registered.
pub async fn start(shared: &Shared, def: Box<dyn ServiceDef>, listen: SocketAddr) -> anyhow::Result<Running> {
    let name = def.name();
    let infra = &shared.infra;
    let db = open_database(def.as_ref(), infra).await?;
    if db.is_some()
        && let Err(e) = shared.bus.ensure_source(name).await
    {
        tracing::warn!(service = name, error = %e, "bus not ready yet; events wait in the outbox");
    }
    let listener = TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("{name}: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let metrics = Metrics::new(name);
    let peers = Peers::new(shared.discovery.clone());
    let verifier = Verifier::new(
        &shared.tokens.issuer,
        &shared.tokens.audience,
        Arc::new(IdentityKeys(peers.clone())),
        shared.cache.clone(),
        &metrics,
    );
    let outbox = Outbox::new(name, &infra.events.namespace, shared.clock.clone());
    let ctx = ServiceContext {
        name,
        infra: infra.clone(),
        db: db.clone(),
        bus: shared.bus.clone(),
        outbox: outbox.clone(),
        cache: shared.cache.clone(),
        discovery: shared.discovery.clone(),
        peers,
        clock: shared.clock.clone(),
        metrics: metrics.clone(),
        verifier,
        tokens: shared.tokens.clone(),
        shutdown: shared.shutdown.clone(),
        addr,
    };
    let parts = def.build(ctx).await?;

    let probes = readiness_probes(shared, db.clone(), &parts);
    let openapi = Arc::new(serde_json::to_value(&parts.openapi)?);
    let ops = Ops { service: name, metrics: metrics.clone(), probes, openapi };
    let router = crate::http::service_router(parts.rest, parts.grpc, ops, infra.http.body_limit_bytes, infra.http.request_timeout());

    let front = parts.front;
    let shutdown = shared.shutdown.clone();
    if let Some(db) = &db {
        let interval = std::time::Duration::from_millis(infra.events.relay_interval_ms);
        tokio::spawn(crate::events::relay(db.clone(), shared.bus.clone(), outbox, interval, metrics.clone(), shutdown.clone()));
        for consumer in parts.consumers {
            let ns = infra.events.namespace.clone();
            tokio::spawn(crate::events::run_consumer(
                db.clone(),
                shared.bus.clone(),
                ns,
                consumer,
                shared.clock.clone(),
                metrics.clone(),
                shutdown.clone(),
            ));
        }
    } else if !parts.consumers.is_empty() {
        anyhow::bail!("{name} consumes events but has no database for its inbox");
    }
    for task in parts.tasks {
        tokio::spawn(task);
    }

    let advertised = advertise(addr, infra);
    let registration = shared.discovery.announce(name, &advertised, shutdown.clone()).await?;
    let propagation = shared.discovery.propagation_delay();
    let drain = infra.http.shutdown_timeout();
    let server_stop = CancellationToken::new();
    let stop = server_stop.clone();
    let handle = tokio::spawn(async move {
        let serving = tokio::spawn(crate::http::serve(listener, router, front, stop.clone(), drain));
        shutdown.cancelled().await;
        // Leave discovery first, and keep serving until no one can still be routing here from
        // a cached resolution; then stop accepting and let in-flight work drain.
        registration.withdraw().await;
        tokio::time::sleep(propagation).await;
        stop.cancel();
        let _ = serving.await;
        if let Some(db) = db {
            db.close().await;
        }
        tracing::info!(service = name, "stopped");
    });
    tracing::info!(service = name, %addr, "serving");
    Ok(Running { name, addr, handle })
}

fn advertise(addr: SocketAddr, infra: &InfraConfig) -> String {
    match (&infra.discovery.advertise_host, addr.ip().is_unspecified()) {
        (Some(host), _) => format!("{host}:{}", addr.port()),
        (None, true) => format!("127.0.0.1:{}", addr.port()),
        (None, false) => addr.to_string(),
    }
}

fn readiness_probes(shared: &Shared, db: Option<Db>, parts: &ServiceParts) -> Vec<(&'static str, ReadyProbe)> {
    let mut probes: Vec<(&'static str, ReadyProbe)> = Vec::new();
    if let Some(db) = db {
        probes.push((
            "database",
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
            }),
        ));
        let bus = shared.bus.clone();
        probes.push((
            "bus",
            Arc::new(move || {
                let bus = bus.clone();
                Box::pin(async move { bus.ping().await.map_err(|e| e.to_string()) })
            }),
        ));
    }
    let cache = shared.cache.clone();
    probes.push((
        "cache",
        Arc::new(move || {
            let cache = cache.clone();
            Box::pin(async move { cache.ping().await.map_err(|e| e.to_string()) })
        }),
    ));
    for peer in &parts.required_peers {
        let discovery = shared.discovery.clone();
        let peer: &'static str = peer;
        probes.push((
            peer,
            Arc::new(move || {
                let discovery = discovery.clone();
                Box::pin(async move {
                    match discovery.resolve(peer).await {
                        Ok(addrs) if !addrs.is_empty() => Ok(()),
                        Ok(_) => Err(format!("no live instance of {peer}")),
                        Err(e) => Err(e.to_string()),
                    }
                })
            }),
        ));
    }
    probes.extend(parts.probes.iter().cloned());
    probes
}
