//! The events payments publishes. Every payload names the `userId` it concerns, which makes
//! it user-facing: notifications tells that user.

use motorpool_platform::events::EventSpec;
use motorpool_platform::money::MoneyView;
use serde::{Deserialize, Serialize};

use crate::store::ChargeRow;

pub const WALLET_TOPPED_UP: &str = "payments.wallet.topped_up.v1";
pub const CHARGE_SUCCEEDED: &str = "payments.charge.succeeded.v1";
pub const CHARGE_FAILED: &str = "payments.charge.failed.v1";
pub const REFUND_COMPLETED: &str = "payments.refund.completed.v1";
pub const AUTHORIZATION_CREATED: &str = "payments.authorization.created.v1";
pub const AUTHORIZATION_VOIDED: &str = "payments.authorization.voided.v1";

const M: &str = r#"{"amount":"25.00","currency":"EUR"}"#;

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: WALLET_TOPPED_UP,
        description: "Money came into a wallet from a card.",
        example: r#"{"transactionId":"…","userId":"…","amount":{"amount":"50.00","currency":"EUR"},"balance":{"amount":"75.00","currency":"EUR"}}"#,
    },
    EventSpec {
        kind: CHARGE_SUCCEEDED,
        description: "Money was captured from a wallet (a direct charge or a capture).",
        example: r#"{"chargeId":"…","userId":"…","amount":{"amount":"25.00","currency":"EUR"},"reference":"order:…","description":"Brake pads","invoiceId":"…"}"#,
    },
    EventSpec {
        kind: CHARGE_FAILED,
        description: "A charge or top-up was refused (insufficient funds, card declined).",
        example: r#"{"userId":"…","amount":{"amount":"25.00","currency":"EUR"},"reference":"order:…","reason":"insufficient_funds"}"#,
    },
    EventSpec {
        kind: REFUND_COMPLETED,
        description: "Captured money went back to the wallet.",
        example: r#"{"refundId":"…","chargeId":"…","userId":"…","amount":{"amount":"10.00","currency":"EUR"},"reference":"order:…"}"#,
    },
    EventSpec { kind: AUTHORIZATION_CREATED, description: "Money was put on hold for a later capture.", example: M },
    EventSpec {
        kind: AUTHORIZATION_VOIDED,
        description: "A hold was released back to the wallet.",
        example: r#"{"chargeId":"…","userId":"…","amount":{"amount":"25.00","currency":"EUR"},"reference":"order:…"}"#,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WalletToppedUp {
    pub transaction_id: String,
    pub user_id: String,
    pub amount: MoneyView,
    pub balance: MoneyView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChargeSucceeded {
    pub charge_id: String,
    pub user_id: String,
    pub amount: MoneyView,
    pub reference: String,
    pub description: String,
    pub invoice_id: String,
}

impl From<&ChargeRow> for ChargeSucceeded {
    fn from(c: &ChargeRow) -> Self {
        Self {
            charge_id: c.id.clone(),
            user_id: c.user_id.clone(),
            amount: MoneyView::from_minor(c.captured, &c.currency),
            reference: c.reference.clone(),
            description: c.description.clone(),
            invoice_id: c.id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChargeFailed {
    pub user_id: String,
    pub amount: MoneyView,
    pub reference: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefundCompleted {
    pub refund_id: String,
    pub charge_id: String,
    pub user_id: String,
    pub amount: MoneyView,
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRef {
    pub charge_id: String,
    pub user_id: String,
    pub amount: MoneyView,
    pub reference: String,
}

impl From<&ChargeRow> for ChargeRef {
    fn from(c: &ChargeRow) -> Self {
        Self {
            charge_id: c.id.clone(),
            user_id: c.user_id.clone(),
            amount: MoneyView::from_minor(c.authorized, &c.currency),
            reference: c.reference.clone(),
        }
    }
}
