//! The Motorpool platform: what every service needs and nothing any one service owns.
//! Configuration, telemetry, HTTP conventions, storage, events, cache, discovery, replica
//! balancing, gRPC plumbing, token verification and the clock. Services build on it; it knows
//! none of them.

pub mod auth;
pub mod balance;
pub mod batch;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod discovery;
pub mod events;
pub mod grpc;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod money;
pub mod problem;
pub mod service;
pub mod telemetry;

pub use problem::{ApiJson, ApiResult, Code, Problem};
