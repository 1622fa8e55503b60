//! Inventory: stock of parts per SKU and holds on it for carts and production orders.
//! Available = quantity − live holds, never negative, enforced by the database; holds expire,
//! and commit turns them into sales exactly once.

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

pub use config::InventoryConfig;

pub const NAME: &str = "inventory";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_stock.sql", include_str!("../migrations/sqlite/0001_stock.sql"))],
    postgres: &[("0001_stock.sql", include_str!("../migrations/postgres/0001_stock.sql"))],
};

pub struct InventoryService {
    pub config: InventoryConfig,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for InventoryService {
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
            let inventory = Arc::new(app::Inventory {
                db: ctx.db()?,
                outbox: ctx.outbox.clone(),
                clock: ctx.clock.clone(),
                metrics: app::InventoryMetrics::new(&ctx.metrics),
                cfg: self.config,
            });
            let state = routes::AppState { inventory: inventory.clone(), verifier: ctx.verifier.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.grpc = Some(motorpool_platform::http::grpc_routes(grpc::server(inventory.clone())));
            parts.tasks.push(inventory.run_sweeper(ctx.shutdown.clone()).boxed());
            Ok(parts)
        }
        .boxed()
    }
}
