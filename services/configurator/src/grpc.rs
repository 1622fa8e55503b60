//! The configurator's gRPC adapter for its peers (the factory).

use std::sync::Arc;

use motorpool_proto::configurator::v1::configurator_server::{Configurator as ConfiguratorRpc, ConfiguratorServer};
use motorpool_proto::configurator::v1::{Configuration, GetConfigurationRequest};
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::store;

pub struct Rpc(pub Arc<App>);

pub fn server(app: Arc<App>) -> ConfiguratorServer<Rpc> {
    ConfiguratorServer::new(Rpc(app))
}

#[tonic::async_trait]
impl ConfiguratorRpc for Rpc {
    async fn get_configuration(&self, request: Request<GetConfigurationRequest>) -> Result<Response<Configuration>, Status> {
        let id = request.into_inner().config_id;
        let row = store::find_configuration(&self.0.db, &id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "configurator database error");
                Status::internal("internal error")
            })?
            .ok_or_else(|| Status::not_found(format!("no configuration {id}")))?;
        Ok(Response::new(Configuration {
            config_id: row.id,
            owner_id: row.owner_id.unwrap_or_default(),
            catalog_version: row.catalog_version,
            model: row.model,
            options: serde_json::from_str(&row.options).unwrap_or_default(),
            price_minor: row.price,
            currency: row.currency,
        }))
    }
}
