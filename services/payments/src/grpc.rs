//! Payments' gRPC adapter for its peers (shop, factory, rental, rides).

use std::sync::Arc;

use motorpool_platform::money::{Currency, Money};
use motorpool_proto::payments::v1::payments_server::{Payments as PaymentsRpc, PaymentsServer};
use motorpool_proto::payments::v1::{
    Balance, CaptureRequest, ChargeIdRequest, ChargeReply, ChargeRequest, GetBalanceRequest, RefundReply, RefundRequest,
};
use tonic::{Request, Response, Status};

use crate::app::{ChargeCmd, Key, PaymentError, Payments};
use crate::store::{self, ChargeRow};

pub struct Rpc(pub Arc<Payments>);

pub fn server(p: Arc<Payments>) -> PaymentsServer<Rpc> {
    PaymentsServer::new(Rpc(p))
}

fn status(e: PaymentError) -> Status {
    match e {
        PaymentError::InsufficientFunds => Status::failed_precondition("insufficient_funds"),
        PaymentError::Declined { reason } => Status::failed_precondition(format!("payment_declined: {reason}")),
        PaymentError::ProviderUnavailable => Status::unavailable("provider_unavailable"),
        PaymentError::ChargeNotFound => Status::not_found("charge not found"),
        PaymentError::InvalidState { status } => Status::failed_precondition(format!("invalid_state: {status}")),
        PaymentError::RefundExceedsCapture { refundable } => Status::failed_precondition(format!("refund_exceeds_capture: {refundable}")),
        PaymentError::CaptureExceedsAuthorization { authorized } => {
            Status::invalid_argument(format!("capture exceeds authorization of {authorized}"))
        }
        PaymentError::Invalid(m) => Status::invalid_argument(m),
        PaymentError::KeyReused => Status::invalid_argument("idempotency_key_reused"),
        PaymentError::KeyInProgress => Status::aborted("idempotency_in_progress"),
        PaymentError::DatabaseUnavailable => Status::unavailable("database_unavailable"),
        PaymentError::Internal => Status::internal("internal error"),
    }
}

fn reply(c: &ChargeRow) -> ChargeReply {
    ChargeReply {
        charge_id: c.id.clone(),
        status: c.status.clone(),
        authorized_minor: c.authorized,
        captured_minor: c.captured,
        refunded_minor: c.refunded,
        currency: c.currency.clone(),
    }
}

fn key(op: &str, owner: &str, k: &str) -> Result<Key, Status> {
    if k.is_empty() || k.len() > 255 {
        return Err(Status::invalid_argument("idempotency_key must be 1 to 255 characters"));
    }
    Ok(Key { scope: format!("peer:{op}:{owner}"), key: k.to_owned() })
}

fn cmd(r: &ChargeRequest) -> Result<ChargeCmd, Status> {
    let currency = Currency::parse(&r.currency).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if r.amount_minor <= 0 {
        return Err(Status::invalid_argument("amount_minor must be positive"));
    }
    if r.user_id.is_empty() || r.reference.is_empty() {
        return Err(Status::invalid_argument("user_id and reference are required"));
    }
    Ok(ChargeCmd {
        user_id: r.user_id.clone(),
        amount: Money::new(r.amount_minor, currency),
        reference: r.reference.clone(),
        description: r.description.clone(),
    })
}

#[tonic::async_trait]
impl PaymentsRpc for Rpc {
    async fn authorize(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeReply>, Status> {
        let r = request.into_inner();
        let k = key("authorize", &r.user_id, &r.idempotency_key)?;
        let c = self.0.charge(cmd(&r)?, false, k).await.map_err(status)?;
        Ok(Response::new(reply(&c)))
    }

    async fn capture(&self, request: Request<CaptureRequest>) -> Result<Response<ChargeReply>, Status> {
        let r = request.into_inner();
        let k = key("capture", &r.charge_id, &r.idempotency_key)?;
        let c = self.0.capture(&r.charge_id, r.amount_minor, k).await.map_err(status)?;
        Ok(Response::new(reply(&c)))
    }

    async fn void(&self, request: Request<ChargeIdRequest>) -> Result<Response<ChargeReply>, Status> {
        let r = request.into_inner();
        let k = key("void", &r.charge_id, &r.idempotency_key)?;
        let c = self.0.void(&r.charge_id, k).await.map_err(status)?;
        Ok(Response::new(reply(&c)))
    }

    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeReply>, Status> {
        let r = request.into_inner();
        let k = key("charge", &r.user_id, &r.idempotency_key)?;
        let c = self.0.charge(cmd(&r)?, true, k).await.map_err(status)?;
        Ok(Response::new(reply(&c)))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundReply>, Status> {
        let r = request.into_inner();
        let k = key("refund", &r.charge_id, &r.idempotency_key)?;
        let reason = if r.reason.is_empty() { "refund".to_owned() } else { r.reason.clone() };
        let done = self.0.refund(&r.charge_id, r.amount_minor, &reason, k).await.map_err(status)?;
        Ok(Response::new(RefundReply { refund_id: done.refund_id, charge: Some(reply(&done.charge)) }))
    }

    async fn get_balance(&self, request: Request<GetBalanceRequest>) -> Result<Response<Balance>, Status> {
        let r = request.into_inner();
        let currency = Currency::parse(&r.currency).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rows = store::balances(&self.0.db, &r.user_id).await.map_err(|e| {
            tracing::error!(error = %e, "get_balance");
            Status::internal("internal error")
        })?;
        let (available, held) = rows.iter().find(|(c, _, _)| c == currency.code()).map_or((0, 0), |(_, a, h)| (*a, *h));
        Ok(Response::new(Balance {
            user_id: r.user_id,
            currency: currency.code().to_owned(),
            available_minor: available,
            held_minor: held,
        }))
    }
}
