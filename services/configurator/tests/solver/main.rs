//! The solver against the demo catalog, and against brute force on random small catalogs.

mod brute_force;
mod demo;
mod properties;
mod small_catalogs;
