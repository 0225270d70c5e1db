//! `runner graph PLAN`: the plan's steps and needs, as Graphviz or Mermaid.

use std::path::Path;

use crate::cli::GraphFormat;
use crate::error::{Error, exit_code};
use crate::report::console::print_out;

pub(crate) fn run(path: &Path, format: GraphFormat) -> Result<i32, Error> {
    let loaded = super::load::load(path, &[])?;
    print_out(&match format {
        GraphFormat::Dot => crate::report::graph::dot(&loaded.plan),
        GraphFormat::Mermaid => crate::report::graph::mermaid(&loaded.plan),
    });
    Ok(exit_code::SUCCESS)
}
