//! runner: deploy dockerised apps from a declarative TOML plan.

pub mod cli;
pub mod docker;
pub mod exec;
pub mod exit_code;
pub mod graph;
pub mod kinds;
pub mod plan;
pub mod report;
mod run;
pub mod schema;

pub use run::run;
