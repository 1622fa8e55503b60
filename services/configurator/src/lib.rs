//! Motorpool configurator: the car catalog (models, option groups, options, rules, prices) and
//! the solver behind live configuration. For any partial selection it tells which options stay
//! available, which are required or blocked and by which rules, what the selection costs line by
//! line, the cheapest valid way to complete it, and the least to give up when a pick conflicts.
//!
//! So far the crate is the pure domain: no I/O, no async, no storage.

pub mod domain;
