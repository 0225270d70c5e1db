//! `runner apply PLAN --plan-only`: what the run would do, checked, and the
//! code `apply` would exit with before its first step.

use crate::cli::Output;
use crate::plan::Plan;
use crate::report;
use crate::report::console::print_out;

/// Prints the preview of `plan`; its exit code is the one `apply` would exit
/// with before its first step, so that a CI job can gate on it.
pub(crate) fn run(plan: &Plan, output: Output) -> i32 {
    let docker = crate::apply::docker_for(plan);
    let masker = crate::apply::masker(plan);
    let checked = crate::preflight::run(plan, &docker, &masker);
    let locked = crate::lock::held(&crate::apply::lock_path(plan));
    // A journal beside a held lock is of the run that holds it.
    let dead = locked.is_none().then(|| {
        crate::journal::unfinished(&plan.dir, &plan.real_path())
            .first()
            .map(|u| format!("{} (started {})", u.header.run_id, u.header.started_at))
    });
    let preview = report::preview::build(plan, docker)
        .checked(checked)
        .locked(locked)
        .unfinished(dead.flatten());
    print_out(&match output {
        Output::Text => preview.to_text(),
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&preview).unwrap_or_default()
        ),
    });
    preview.exit_code
}
