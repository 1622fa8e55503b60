//! Shop: the parts catalog, carts whose lines are backed by inventory holds, live replies over
//! WebSocket, checkout through payments, and orders.

pub mod config;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::Migrations;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};

pub use config::ShopConfig;

pub const NAME: &str = "shop";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_shop.sql", include_str!("../migrations/sqlite/0001_shop.sql"))],
    postgres: &[("0001_shop.sql", include_str!("../migrations/postgres/0001_shop.sql"))],
};

pub struct ShopService {
    pub config: ShopConfig,
    pub demo_data: bool,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}

impl ServiceDef for ShopService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> Option<Migrations> {
        Some(MIGRATIONS)
    }

    fn build(self: Box<Self>, _ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
        async move { Ok(ServiceParts::new(axum::Router::new(), openapi())) }.boxed()
    }
}
