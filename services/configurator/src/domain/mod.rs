//! The configurator's rules, free of I/O: the catalog and its validation, the solver that
//! judges selections against it, pricing, the demo catalog and a generator of large catalogs
//! for benchmarks. Selections travel as option codes at the edges and as bitsets of dense option
//! indices inside.

mod bits;
pub mod catalog;
mod cheapest;
mod constraints;
pub mod demo;
mod fix;
pub mod generate;
mod pricing;
mod search;
mod solver;
mod states;

pub use catalog::{Catalog, CatalogOption, CatalogProblem, Choice, Group, InvalidCatalog, MODEL_GROUP, Rule, RuleKind};
pub use pricing::{LineKind, Price, PriceLine};
pub use solver::{
    Because, Change, Completion, Configurator, Evaluation, Fix, OptionId, OptionReport, OptionState, RuleRef, Selection, SelectionError,
};
