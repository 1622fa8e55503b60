//! Payments: wallets per user and currency, a double-entry ledger, top-ups through a
//! payment provider, charges, authorisations with capture and void, refunds, invoices.

mod app;
pub mod config;
mod domain;
pub mod events;
mod grpc;
mod provider;
mod routes;
mod store;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::db::{Migrations, Tx};
use motorpool_platform::events::{Consumer, Envelope, EventHandler, EventSpec, HandlerError};
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::PaymentsConfig;

pub const NAME: &str = "payments";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_ledger.sql", include_str!("../migrations/sqlite/0001_ledger.sql"))],
    postgres: &[("0001_ledger.sql", include_str!("../migrations/postgres/0001_ledger.sql"))],
};

pub struct PaymentsService {
    pub config: PaymentsConfig,
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

/// Keeps customers' names and emails for invoices, from identity's registrations.
struct Customers;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registered {
    user_id: String,
    email: String,
    full_name: String,
}

impl EventHandler for Customers {
    fn handle<'a>(&'a self, tx: &'a mut Tx, event: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            if event.kind != "identity.user.registered.v1" {
                return Ok(());
            }
            let r: Registered = event.data().map_err(|e| HandlerError::Other(e.to_string()))?;
            store::upsert_customer(tx, &r.user_id, &r.email, &r.full_name).await?;
            Ok(())
        }
        .boxed()
    }
}

impl ServiceDef for PaymentsService {
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
            let provider = provider::SimulatedCardProcessor::new(
                Duration::from_millis(self.config.provider_delay_ms),
                &self.config.provider_declined_cards,
            );
            let payments = Arc::new(app::Payments {
                db: ctx.db()?,
                outbox: ctx.outbox.clone(),
                clock: ctx.clock.clone(),
                metrics: ctx.metrics.clone(),
                provider: Arc::new(provider),
            });
            payments.init().await?;
            let state = routes::AppState { payments: payments.clone(), verifier: ctx.verifier.clone() };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.grpc = Some(motorpool_platform::http::grpc_routes(grpc::server(payments)));
            parts.consumers.push(Consumer {
                name: "payments-customers".into(),
                filter: "identity.user.registered.v1".into(),
                handler: Arc::new(Customers),
            });
            Ok(parts)
        }
        .boxed()
    }
}
