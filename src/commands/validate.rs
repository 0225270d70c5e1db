//! `runner validate` and `runner schema`: the plan format, checked and described.

use std::path::Path;

use crate::error::{Error, exit_code};
use crate::plan::Loaded;
use crate::report::console::print_out;

/// `runner validate PLAN`: prints what was checked in a valid plan (the
/// loader printed its warnings).
pub(crate) fn run(path: &Path, vars: &[(String, String)]) -> Result<i32, Error> {
    let loaded = super::load::load(path, vars)?;
    print_out(&format!("{}\n", validated(&loaded)));
    Ok(exit_code::SUCCESS)
}

/// Prints the JSON Schema of the plan format.
pub(crate) fn schema() -> i32 {
    let schema = crate::schema::json_schema(crate::kinds::KINDS);
    print_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    ));
    exit_code::SUCCESS
}

/// The one line `validate` prints on success: what was checked.
fn validated(loaded: &Loaded) -> String {
    use crate::plan::diagnostic::plural;
    let plan = &loaded.plan;
    let hooks = plan.steps.iter().filter(|s| s.rollback.is_some()).count();
    let mut parts = vec![
        plural(plan.steps.len(), "step"),
        plural(hooks, "rollback hook"),
        plural(plan.vars.len(), "variable"),
    ];
    if !plan.hosts.is_empty() {
        parts.push(plural(plan.hosts.len(), "host"));
    }
    let warnings = loaded.warnings.items.len();
    format!(
        "{}: valid ({}; needs, order, templates, values and secrets checked{})",
        plan.path.display(),
        parts.join(", "),
        if warnings == 0 {
            String::new()
        } else {
            format!("; {} above", plural(warnings, "warning"))
        }
    )
}
