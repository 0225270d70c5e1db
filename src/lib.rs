//! runner: deploy dockerised apps from a declarative TOML plan.
//!
//! The binary is `run`. The library also exports what its benchmarks and property
//! tests drive directly: the plan loader and the preview.

mod apply;
mod cli;
mod commands;
pub mod docker;
mod engine;
mod error;
mod graph;
mod journal;
mod kinds;
mod layout;
mod lock;
mod mask;
mod parallel;
pub mod plan;
mod preflight;
mod process;
mod remote;
pub mod report;
mod run;
mod schema;

pub use kinds::KINDS;
pub use run::run;
