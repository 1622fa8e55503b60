//! Inventory's gRPC adapter for its peers (shop, factory).

use std::sync::Arc;

use motorpool_proto::inventory::v1::inventory_server::{Inventory as InventoryRpc, InventoryServer};
use motorpool_proto::inventory::v1::{
    AdjustRequest, AvailabilityReply, AvailabilityRequest, CommitReply, CommitRequest, ExtendReply, ExtendRequest, Hold, HoldReply,
    HoldRequest, Outcome, OwnedHold, ReleaseManyReply, ReleaseManyRequest, ReleaseOwnerRequest, ReleaseReply, ReleaseRequest, Sale,
    SetStockRequest, Shortage, StockLevel,
};
use tonic::{Request, Response, Status};

use crate::app::{HoldOutcome, Inventory, InventoryError};
use crate::domain::Line;
use crate::store::{HoldRow, Level, SetOutcome};

pub struct Rpc(pub Arc<Inventory>);

pub fn server(inv: Arc<Inventory>) -> InventoryServer<Rpc> {
    InventoryServer::new(Rpc(inv))
}

fn status(e: InventoryError) -> Status {
    match e {
        InventoryError::Invalid(m) => Status::invalid_argument(m),
        InventoryError::Db(e) => {
            tracing::error!(error = %e, "inventory database error");
            Status::internal("internal error")
        }
    }
}

fn hold(h: HoldRow) -> Hold {
    Hold { hold_id: h.id, owner: h.owner, sku: h.sku, quantity: h.quantity, created_at_ms: h.created_at, expires_at_ms: h.expires_at }
}

fn level(sku: String, l: Level) -> StockLevel {
    StockLevel { sku, quantity: l.quantity, held: l.held, available: l.available() }
}

fn reply(outcome: HoldOutcome) -> HoldReply {
    let shortages = |v: Vec<crate::app::Shortage>| {
        v.into_iter().map(|s| Shortage { sku: s.sku, requested: s.requested, available: s.available }).collect()
    };
    match outcome {
        HoldOutcome::Held(holds) => {
            HoldReply { outcome: Outcome::Held as i32, holds: holds.into_iter().map(hold).collect(), ..Default::default() }
        }
        HoldOutcome::OutOfStock(v) => HoldReply { outcome: Outcome::OutOfStock as i32, shortages: shortages(v), ..Default::default() },
        HoldOutcome::UnknownSku(v) => HoldReply { outcome: Outcome::UnknownSku as i32, shortages: shortages(v), ..Default::default() },
        HoldOutcome::OwnerCapExceeded { cap, held } => {
            HoldReply { outcome: Outcome::OwnerCapExceeded as i32, owner_cap: cap, owner_held: held, ..Default::default() }
        }
        HoldOutcome::HoldNotFound => HoldReply { outcome: Outcome::HoldNotFound as i32, ..Default::default() },
    }
}

#[tonic::async_trait]
impl InventoryRpc for Rpc {
    async fn hold(&self, request: Request<HoldRequest>) -> Result<Response<HoldReply>, Status> {
        let r = request.into_inner();
        let lines = r.lines.into_iter().map(|l| Line { sku: l.sku, quantity: l.quantity }).collect();
        let outcome = self.0.hold(&r.owner, lines, r.ttl_seconds).await.map_err(status)?;
        Ok(Response::new(reply(outcome)))
    }

    async fn adjust(&self, request: Request<AdjustRequest>) -> Result<Response<HoldReply>, Status> {
        let r = request.into_inner();
        let outcome = self.0.adjust(&r.hold_id, &r.owner, r.quantity, r.ttl_seconds).await.map_err(status)?;
        Ok(Response::new(reply(outcome)))
    }

    async fn extend(&self, request: Request<ExtendRequest>) -> Result<Response<ExtendReply>, Status> {
        let r = request.into_inner();
        let done = self.0.extend(&r.hold_ids, &r.owner, r.ttl_seconds).await.map_err(status)?;
        Ok(Response::new(ExtendReply { holds: done.holds.into_iter().map(hold).collect(), missing_hold_ids: done.missing }))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseReply>, Status> {
        let r = request.into_inner();
        let released = self.0.release(&r.hold_ids, &r.owner).await.map_err(status)?;
        Ok(Response::new(ReleaseReply { released }))
    }

    async fn release_many(&self, request: Request<ReleaseManyRequest>) -> Result<Response<ReleaseManyReply>, Status> {
        let entries = request.into_inner().holds.into_iter().map(|h| (h.hold_id, h.owner)).collect();
        let (released, rejected) = self.0.release_many(entries).await.map_err(status)?;
        let rejected = rejected.into_iter().map(|(hold_id, owner)| OwnedHold { hold_id, owner }).collect();
        Ok(Response::new(ReleaseManyReply { released, rejected }))
    }

    async fn release_owner(&self, request: Request<ReleaseOwnerRequest>) -> Result<Response<ReleaseReply>, Status> {
        let released = self.0.release_owner(&request.into_inner().owner).await.map_err(status)?;
        Ok(Response::new(ReleaseReply { released }))
    }

    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitReply>, Status> {
        let r = request.into_inner();
        let done = self.0.commit(&r.hold_ids, &r.owner, &r.reference).await.map_err(status)?;
        Ok(Response::new(CommitReply {
            committed: done.committed,
            sales: done
                .sales
                .into_iter()
                .map(|s| Sale { hold_id: s.hold_id, sku: s.sku, quantity: s.quantity, committed_at_ms: s.committed_at })
                .collect(),
            missing_hold_ids: done.missing,
        }))
    }

    async fn availability(&self, request: Request<AvailabilityRequest>) -> Result<Response<AvailabilityReply>, Status> {
        let r = request.into_inner();
        let levels = self.0.availability(&r.skus).await.map_err(status)?;
        Ok(Response::new(AvailabilityReply { levels: levels.into_iter().map(|(s, l)| level(s, l)).collect() }))
    }

    async fn set_stock(&self, request: Request<SetStockRequest>) -> Result<Response<StockLevel>, Status> {
        let r = request.into_inner();
        match self.0.set_stock(&r.sku, r.quantity, r.only_if_absent).await.map_err(status)? {
            SetOutcome::Set { after: c, .. } | SetOutcome::Kept(c) => {
                Ok(Response::new(StockLevel { sku: r.sku, quantity: c.quantity, held: c.held, available: c.quantity - c.held }))
            }
            SetOutcome::BelowHeld(c) => Err(Status::failed_precondition(format!("stock_below_held: {} units are held", c.held))),
        }
    }
}
