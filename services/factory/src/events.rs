//! The events the factory publishes: one per status an order reaches. Their data names the
//! `userId`, so notifications tells the buyer.

use motorpool_platform::events::EventSpec;
use motorpool_platform::money::MoneyView;
use serde::{Deserialize, Serialize};

pub const ORDER_PLACED: &str = "factory.order.placed.v1";
pub const ORDER_AWAITING_PARTS: &str = "factory.order.awaiting_parts.v1";
pub const ORDER_SCHEDULED: &str = "factory.order.scheduled.v1";
pub const ORDER_IN_PRODUCTION: &str = "factory.order.in_production.v1";
pub const ORDER_QUALITY_CHECK: &str = "factory.order.quality_checked.v1";
pub const ORDER_SHIPPED: &str = "factory.order.shipped.v1";
pub const ORDER_DELIVERED: &str = "factory.order.delivered.v1";
pub const ORDER_CANCELLED: &str = "factory.order.cancelled.v1";
pub const ORDER_FAILED: &str = "factory.order.failed.v1";

const STATUS_EXAMPLE: &str =
    r#"{"orderId":"…","userId":"…","status":"scheduled","label":"Scheduled","estimatedDelivery":"2026-12-07","reason":null}"#;

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: ORDER_PLACED,
        description: "A new-car order was placed; its parts, deposit and slot follow.",
        example: r#"{"orderId":"…","userId":"…","configId":"…","model":"tundra","price":{"amount":"58250.00","currency":"EUR"}}"#,
    },
    EventSpec { kind: ORDER_AWAITING_PARTS, description: "Parts are short: the order waits for stock.", example: STATUS_EXAMPLE },
    EventSpec { kind: ORDER_SCHEDULED, description: "A production slot was booked.", example: STATUS_EXAMPLE },
    EventSpec { kind: ORDER_IN_PRODUCTION, description: "Production started; the parts were used.", example: STATUS_EXAMPLE },
    EventSpec { kind: ORDER_QUALITY_CHECK, description: "The car is in its quality check.", example: STATUS_EXAMPLE },
    EventSpec { kind: ORDER_SHIPPED, description: "The car left the plant.", example: STATUS_EXAMPLE },
    EventSpec { kind: ORDER_DELIVERED, description: "The car was delivered.", example: STATUS_EXAMPLE },
    EventSpec {
        kind: ORDER_CANCELLED,
        description: "The buyer cancelled before production; the deposit is refunded.",
        example: STATUS_EXAMPLE,
    },
    EventSpec {
        kind: ORDER_FAILED,
        description: "The order could not be placed (the deposit was refused); its parts were released.",
        example: STATUS_EXAMPLE,
    },
];

/// The event kind for reaching `status`.
pub fn kind_for(status: &str) -> &'static str {
    match status {
        "awaiting_parts" => ORDER_AWAITING_PARTS,
        "scheduled" => ORDER_SCHEDULED,
        "in_production" => ORDER_IN_PRODUCTION,
        "quality_check" => ORDER_QUALITY_CHECK,
        "shipped" => ORDER_SHIPPED,
        "delivered" => ORDER_DELIVERED,
        "cancelled" => ORDER_CANCELLED,
        "failed" => ORDER_FAILED,
        _ => ORDER_PLACED,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: String,
    pub user_id: String,
    pub config_id: String,
    pub model: String,
    pub price: MoneyView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusChanged {
    pub order_id: String,
    pub user_id: String,
    pub status: String,
    pub label: String,
    pub estimated_delivery: Option<String>,
    pub reason: Option<String>,
}
