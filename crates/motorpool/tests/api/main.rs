//! Black-box tests of the whole platform through the gateway, on the backend chosen by
//! `MOTORPOOL_TEST_BACKEND` (embedded by default, `infra` for PostgreSQL + NATS + Redis).

// In tests a panic is the failure report, helpers included.
#![allow(clippy::unwrap_used)]

mod admin;
mod auth;
mod browser;
mod configurator;
mod deploy;
mod events;
mod factory;
mod gateway;
mod helpers;
mod inventory;
mod lifecycle;
mod notifications;
mod payments;
mod processes;
mod resilience;
mod shop;
mod tokens;
