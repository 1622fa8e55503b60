//! The events the shop publishes. Their data names the `userId`, so notifications tells the
//! customer.

use motorpool_platform::events::EventSpec;
use motorpool_platform::money::MoneyView;
use serde::{Deserialize, Serialize};

use crate::store::{OrderLineRow, OrderRow};

pub const ORDER_PLACED: &str = "shop.order.placed.v1";
pub const ORDER_FAILED: &str = "shop.order.failed.v1";

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: ORDER_PLACED,
        description: "A parts order was paid and its stock committed.",
        example: r#"{"orderId":"…","userId":"…","total":{"amount":"59.90","currency":"EUR"},"lines":[{"productCode":"BPF-VWGOLF","quantity":1}]}"#,
    },
    EventSpec {
        kind: ORDER_FAILED,
        description: "A checkout did not complete (insufficient funds, declined, or the parts were no longer held; any charge was refunded).",
        example: r#"{"orderId":"…","userId":"…","reason":"insufficient_funds"}"#,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderedLine {
    pub product_code: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: String,
    pub user_id: String,
    pub total: MoneyView,
    pub lines: Vec<OrderedLine>,
}

impl OrderPlaced {
    pub fn new(o: &OrderRow, lines: &[OrderLineRow]) -> Self {
        Self {
            order_id: o.id.clone(),
            user_id: o.user_id.clone(),
            total: MoneyView::from_minor(o.total_minor, &o.currency),
            lines: lines.iter().map(|l| OrderedLine { product_code: l.product_code.clone(), quantity: l.quantity }).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderFailed {
    pub order_id: String,
    pub user_id: String,
    pub reason: String,
}
