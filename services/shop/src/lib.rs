//! Shop: the parts catalog, carts whose lines are backed by inventory holds, live replies over
//! WebSocket, checkout through payments, and orders.

mod app;
pub mod config;
pub mod domain;
pub mod events;
mod grouped;
mod live;
mod routes;
mod store;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::Migrations;
use motorpool_platform::events::EventSpec;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::ShopConfig;

pub const NAME: &str = "shop";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_shop.sql", include_str!("../migrations/sqlite/0001_shop.sql"))],
    postgres: &[("0001_shop.sql", include_str!("../migrations/postgres/0001_shop.sql"))],
};

pub struct ShopService {
    pub config: ShopConfig,
    /// Put the catalog's parts in stock at start.
    pub demo_data: bool,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for ShopService {
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
            // The catalog is the shop's own reference data: always there, like a schema.
            let demo = domain::catalog::demo_parts();
            store::seed_catalog(&db, &demo, &self.config.currency).await?;
            let shop = Arc::new(app::Shop {
                db: db.clone(),
                outbox: ctx.outbox.clone(),
                clock: ctx.clock.clone(),
                peers: ctx.peers.clone(),
                metrics: app::ShopMetrics::new(&ctx.metrics),
                cfg: self.config,
                releases: Arc::default(),
                cart: grouped::CartStatements::start(&db, &ctx.clock, &ctx.metrics),
            });
            let state = routes::AppState { shop: shop.clone(), verifier: ctx.verifier.clone(), shutdown: ctx.shutdown.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.required_peers = vec!["inventory", "payments"];
            parts.tasks.push(shop.clone().run_releases(ctx.shutdown.clone()).boxed());
            parts.tasks.push(shop.clone().run_recovery(ctx.shutdown.clone()).boxed());
            if self.demo_data {
                let codes = demo.iter().map(|p| p.code.clone()).collect();
                parts.tasks.push(shop.clone().seed_demo_stock(codes, ctx.shutdown.clone()).boxed());
            }
            Ok(parts)
        }
        .boxed()
    }
}
