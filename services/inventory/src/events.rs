//! The events inventory publishes. Holds are owned by carts and orders, not people, so none of
//! these is user-facing; analytics, the shop and the factory are their readers.

use motorpool_platform::events::EventSpec;
use serde::{Deserialize, Serialize};

pub const HOLD_CREATED: &str = "inventory.hold.created.v1";
pub const HOLD_ADJUSTED: &str = "inventory.hold.adjusted.v1";
pub const HOLD_RELEASED: &str = "inventory.hold.released.v1";
pub const HOLD_COMMITTED: &str = "inventory.hold.committed.v1";
pub const HOLD_EXPIRED: &str = "inventory.hold.expired.v1";
pub const STOCK_LOW: &str = "inventory.stock.low.v1";

pub const SPECS: &[EventSpec] = &[
    EventSpec {
        kind: HOLD_CREATED,
        description: "Units of a SKU were put on hold for an owner (a cart, an order).",
        example: r#"{"holdId":"…","owner":"cart:…","sku":"BRK-PAD-GOLF-F","quantity":2,"expiresAt":"2026-11-23T10:15:00.000Z"}"#,
    },
    EventSpec {
        kind: HOLD_ADJUSTED,
        description: "A hold's quantity changed.",
        example: r#"{"holdId":"…","owner":"cart:…","sku":"BRK-PAD-GOLF-F","quantity":3,"previousQuantity":2}"#,
    },
    EventSpec {
        kind: HOLD_RELEASED,
        description: "A hold was given back by its owner.",
        example: r#"{"holdId":"…","owner":"cart:…","sku":"BRK-PAD-GOLF-F","quantity":2}"#,
    },
    EventSpec {
        kind: HOLD_COMMITTED,
        description: "A hold became a sale: the SKU's quantity went down by it.",
        example: r#"{"holdId":"…","owner":"cart:…","sku":"BRK-PAD-GOLF-F","quantity":2,"reference":"order:…"}"#,
    },
    EventSpec {
        kind: HOLD_EXPIRED,
        description: "A hold ran out before it was committed or released.",
        example: r#"{"holdId":"…","owner":"cart:…","sku":"BRK-PAD-GOLF-F","quantity":2}"#,
    },
    EventSpec {
        kind: STOCK_LOW,
        description: "Available stock of a SKU fell below the low-stock threshold.",
        example: r#"{"sku":"BRK-PAD-GOLF-F","quantity":40,"held":37,"available":3,"threshold":5}"#,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldCreated {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldAdjusted {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub previous_quantity: i64,
}

/// Released and expired holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldEnded {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldCommitted {
    pub hold_id: String,
    pub owner: String,
    pub sku: String,
    pub quantity: i64,
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StockLow {
    pub sku: String,
    pub quantity: i64,
    pub held: i64,
    pub available: i64,
    pub threshold: i64,
}
