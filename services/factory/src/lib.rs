//! Factory: new-car orders. Placing one is a saga with compensation (parts held in inventory,
//! a deposit through payments, the earliest production slot with capacity); a scheduler moves
//! orders along the production plan by the clock, and an order may be cancelled with a refund
//! until production starts.

mod app;
pub mod config;
pub mod domain;
pub mod events;
mod routes;
mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::Migrations;
use motorpool_platform::events::EventSpec;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::FactoryConfig;

pub const NAME: &str = "factory";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        ("0001_factory.sql", include_str!("../migrations/sqlite/0001_factory.sql")),
        ("0002_order_keys.sql", include_str!("../migrations/sqlite/0002_order_keys.sql")),
    ],
    postgres: &[
        ("0001_factory.sql", include_str!("../migrations/postgres/0001_factory.sql")),
        ("0002_order_keys.sql", include_str!("../migrations/postgres/0002_order_keys.sql")),
    ],
};

pub struct FactoryService {
    pub config: FactoryConfig,
    /// Put the demo catalog's parts in stock at start.
    pub demo_data: bool,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for FactoryService {
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
            let factory = Arc::new(app::Factory::new(ctx.db()?, ctx.outbox.clone(), ctx.clock.clone(), ctx.peers.clone(), self.config));
            let state = routes::AppState { factory: factory.clone(), verifier: ctx.verifier.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.required_peers = vec!["configurator", "inventory", "payments"];
            parts.tasks.push(factory.clone().run(ctx.shutdown.clone()).boxed());
            if self.demo_data {
                let catalog = motorpool_configurator::domain::demo::catalog();
                let skus = catalog.options.iter().map(|o| domain::sku(&o.code)).collect();
                parts.tasks.push(factory.clone().seed_demo_stock(skus, ctx.shutdown.clone()).boxed());
            }
            Ok(parts)
        }
        .boxed()
    }
}
