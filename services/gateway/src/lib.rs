//! The gateway: Motorpool's single public entry. It routes by path prefix to the owning
//! service, checks tokens and roles declared next to the route table, rate-limits each
//! client, proxies HTTP and WebSocket traffic, and serves the web pages and merged API docs.

pub mod config;
mod fast;
mod proxy;
mod site;
pub mod table;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::auth::Verifier;
use motorpool_platform::db::Migrations;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};

pub use config::GatewayConfig;

pub const NAME: &str = "gateway";

pub struct GatewayService {
    pub config: GatewayConfig,
}

#[derive(Clone)]
struct AdminState(Arc<proxy::Gateway>);

impl FromRef<AdminState> for Verifier {
    fn from_ref(s: &AdminState) -> Verifier {
        s.0.verifier.clone()
    }
}

impl ServiceDef for GatewayService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> Option<Migrations> {
        None
    }

    fn build(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
        async move {
            let gw = Arc::new(proxy::Gateway::new(
                ctx.discovery.clone(),
                ctx.verifier.clone(),
                ctx.cache.clone(),
                self.config,
                ctx.metrics.clone(),
                ctx.infra.http.body_limit_bytes,
            ));
            let docs = Arc::new(site::DocsCache::default());
            let mut pages = Router::new();
            for path in site::asset_table().keys() {
                pages = pages.route(path, get(site::serve_asset));
            }
            let swagger: Router =
                utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/docs/openapi.json"])).into();
            let rest = Router::new()
                .merge(pages)
                .merge(swagger)
                .route("/docs/openapi.json", get(site::merged_openapi).with_state((gw.clone(), docs)))
                .merge(Router::new().route("/api/admin/overview", get(overview)).with_state(AdminState(gw.clone())));
            let mut parts = ServiceParts::new(rest, utoipa::openapi::OpenApi::default());
            parts.tasks.push(gw.clone().check_replicas(ctx.shutdown.clone().cancelled_owned()).boxed());
            parts.front = Some(Arc::new(proxy::Front(gw)));
            parts.required_peers = vec!["identity"];
            Ok(parts)
        }
        .boxed()
    }
}

async fn overview(state: axum::extract::State<AdminState>, admin: motorpool_platform::auth::Admin) -> axum::Json<serde_json::Value> {
    site::overview(axum::extract::State(state.0.0.clone()), admin).await
}
