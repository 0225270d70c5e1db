//! What runner shows: the plan preview, graph renderings, diagnostics output.

pub mod graph;
pub mod preview;
