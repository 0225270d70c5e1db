//! `runner apply PLAN`: runs the plan, or with `--plan-only` previews it.

use std::path::Path;

use crate::cli::Output;
use crate::error::Error;

pub(crate) fn run(
    path: &Path,
    vars: &[(String, String)],
    plan_only: bool,
    jobs: Option<u32>,
    output: Output,
    options: &crate::apply::Options,
) -> Result<i32, Error> {
    let mut loaded = super::load::load(path, vars)?;
    if let Some(jobs) = jobs {
        loaded.plan.jobs = jobs;
    }
    if plan_only {
        return Ok(super::preview::run(&loaded.plan, output));
    }
    crate::apply::apply(&loaded.plan, options)
}
