//! Identity: accounts, passwords (argon2id), EdDSA access tokens with rotating refresh
//! tokens, roles, signing keys and the admin's user management.

mod app;
pub mod config;
mod domain;
pub mod events;
mod grpc;
mod keys;
mod routes;
mod store;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use motorpool_platform::auth::Verifier;
use motorpool_platform::db::Migrations;
use motorpool_platform::events::EventSpec;
use motorpool_platform::service::{ServiceContext, ServiceDef, ServiceParts};
use utoipa::OpenApi;

pub use config::IdentityConfig;

pub const NAME: &str = "identity";

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[("0001_init.sql", include_str!("../migrations/sqlite/0001_init.sql"))],
    postgres: &[("0001_init.sql", include_str!("../migrations/postgres/0001_init.sql"))],
};

/// Identity as the platform runs it.
pub struct IdentityService {
    pub config: IdentityConfig,
    /// Seed the demo accounts (see [`DEMO_USERS`]).
    pub demo_data: bool,
}

/// Demo accounts seeded by `motorpool up`: (email, password, name, role).
pub const DEMO_USERS: &[(&str, &str, &str, motorpool_platform::auth::Role)] = &[
    ("admin@motorpool.local", "motorpool-admin", "Demo Admin", motorpool_platform::auth::Role::Admin),
    ("demo@motorpool.local", "motorpool-demo", "Demo Customer", motorpool_platform::auth::Role::Customer),
    ("mechanic@motorpool.local", "motorpool-mechanic", "Demo Mechanic", motorpool_platform::auth::Role::Mechanic),
];

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

impl ServiceDef for IdentityService {
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
            let cfg = self.config;
            let db = ctx.db()?;
            // Retired keys stay published for a token lifetime plus the reload interval and
            // the verifiers' leeway, so no token outlives the key that verifies it.
            let publish_retired_for = Duration::from_secs(cfg.access_ttl_secs + cfg.key_reload_secs + 60);
            let keys = keys::SigningKeys::load_or_create(db.clone(), ctx.clock.clone(), publish_retired_for).await?;
            let verifier = Verifier::new(
                &ctx.tokens.issuer,
                &ctx.tokens.audience,
                Arc::new(keys::LocalKeys(keys.clone())),
                ctx.cache.clone(),
                &ctx.metrics,
            );
            let reload_every = Duration::from_secs(cfg.key_reload_secs.max(1));
            let admin = cfg.bootstrap_admin_email.clone().zip(cfg.bootstrap_admin_password.clone());
            let identity = Arc::new(app::Identity::new(&ctx, keys.clone(), cfg).await?);
            if let Some((email, password)) = admin {
                identity.ensure_admin(&email, &password).await?;
            }
            if self.demo_data {
                for (email, password, name, role) in DEMO_USERS {
                    identity.ensure_user(email, password, name, *role).await?;
                }
            }
            let state = routes::AppState { identity: identity.clone(), verifier };
            let mut parts = ServiceParts::new(routes::router(state), routes::ApiDoc::openapi());
            parts.grpc = Some(motorpool_platform::http::grpc_routes(grpc::server(identity)));
            let shutdown = ctx.shutdown.clone();
            parts.tasks.push(
                async move {
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(reload_every) => {}
                        }
                        if let Err(e) = keys.reload().await {
                            tracing::warn!(error = %e, "reloading signing keys failed");
                        }
                    }
                }
                .boxed(),
            );
            Ok(parts)
        }
        .boxed()
    }
}
