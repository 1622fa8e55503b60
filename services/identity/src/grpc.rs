//! Identity's gRPC adapter for its peers.

use std::sync::Arc;

use motorpool_proto::identity::v1::identity_server::{Identity as IdentityRpc, IdentityServer};
use motorpool_proto::identity::v1::{GetSigningKeysRequest, GetUserRequest, SigningKey, SigningKeys, User};
use tonic::{Request, Response, Status};

use crate::app::Identity;
use crate::store;

pub struct Rpc(pub Arc<Identity>);

pub fn server(identity: Arc<Identity>) -> IdentityServer<Rpc> {
    IdentityServer::new(Rpc(identity))
}

#[tonic::async_trait]
impl IdentityRpc for Rpc {
    async fn get_signing_keys(&self, _: Request<GetSigningKeysRequest>) -> Result<Response<SigningKeys>, Status> {
        let keys = self.0.keys.public_keys().into_iter().map(|k| SigningKey { kid: k.kid, x: k.x }).collect();
        Ok(Response::new(SigningKeys { keys }))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        let user = store::find_user(&self.0.db, &id).await.map_err(|e| {
            tracing::error!(error = %e, "get_user");
            Status::internal("internal error")
        })?;
        let user = user.ok_or_else(|| Status::not_found("no such user"))?;
        Ok(Response::new(User {
            id: user.id,
            email: user.email,
            full_name: user.full_name,
            role: user.role.as_str().to_owned(),
            disabled: user.disabled_at.is_some(),
        }))
    }
}
