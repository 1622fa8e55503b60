//! Motorpool configurator: the car catalog (models, option groups, options, rules, prices) and
//! the solver behind live configuration. For any partial selection it tells which options stay
//! available, which are required or blocked and by which rules, what the selection costs line by
//! line, the cheapest valid way to complete it, and the least to give up when a pick conflicts.
//! The service saves configurations (a signed-in user's are theirs; a share code opens a
//! read-only copy), serves the popular ones from the cache, and runs live sessions over a
//! WebSocket whose state lives in the cache, so any replica can continue one.

mod app;
pub mod config;
pub mod domain;
pub mod events;
mod grpc;
mod routes;
mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::Migrations;
use motorpool_platform::events::EventSpec;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::ConfiguratorConfig;

pub const NAME: &str = "configurator";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        ("0001_configurator.sql", include_str!("../migrations/sqlite/0001_configurator.sql")),
        ("0002_orders.sql", include_str!("../migrations/sqlite/0002_orders.sql")),
    ],
    postgres: &[
        ("0001_configurator.sql", include_str!("../migrations/postgres/0001_configurator.sql")),
        ("0002_orders.sql", include_str!("../migrations/postgres/0002_orders.sql")),
    ],
};

pub struct ConfiguratorService {
    pub config: ConfiguratorConfig,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for ConfiguratorService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> Option<Migrations> {
        Some(MIGRATIONS)
    }

    fn events(&self) -> &'static [EventSpec] {
        events::SPECS
    }

    fn build(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
        async move {
            let db = ctx.db()?;
            // The demo catalog is the first version; a newer stored version wins.
            let engine = app::App::load_catalog(&db, &domain::demo::catalog(), ctx.clock.now_ms()).await?;
            anyhow::ensure!(
                engine.option_id(&self.config.default_model).is_some(),
                "configurator.default_model: the catalog has no model {:?}",
                self.config.default_model
            );
            let app = Arc::new(app::App {
                db,
                outbox: ctx.outbox.clone(),
                cache: ctx.cache.clone(),
                clock: ctx.clock.clone(),
                cfg: self.config,
                engine: std::sync::RwLock::new(Arc::new(engine)),
                past_catalogs: Default::default(),
            });
            let state = routes::AppState { app: app.clone(), verifier: ctx.verifier.clone(), shutdown: ctx.shutdown.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.grpc = Some(motorpool_platform::http::grpc_routes(grpc::server(app.clone())));
            parts.tasks.push(app.clone().watch_catalog(ctx.shutdown.clone()).boxed());
            parts.consumers.push(motorpool_platform::events::Consumer {
                name: "configurator-orders".into(),
                filter: events::FACTORY_ORDER_PLACED.into(),
                handler: Arc::new(events::OrdersCounter { cache: app.cache.clone() }),
            });
            Ok(parts)
        }
        .boxed()
    }
}
