//! The table and verdict printed at the end of a run.

use std::fmt::Write as _;
use std::path::Path;

use super::console::duration;
use crate::engine::{Report, RunStatus};
use crate::plan::template::shell_join;
use crate::plan::{Plan, VarOrigin};

pub(crate) fn text(
    plan: &Plan,
    report: &Report,
    run_id: &str,
    record: &Path,
    write_error: Option<&std::io::Error>,
) -> String {
    let width = plan
        .steps
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<15}  {:>8}  {:>8}",
        "step", "status", "attempts", "duration"
    );
    for (step, unit) in plan.steps.iter().zip(&report.units) {
        let (attempts, took) = match &unit.run {
            Some(run) if !run.attempts.is_empty() => (run.attempts.len(), duration(run.duration())),
            _ => (0, "-".to_owned()),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<15}  {:>8}  {:>8}",
            step.id,
            unit.status.as_str(),
            attempts,
            took
        );
    }
    let stopped = report.stopped.as_deref();
    let verdict = match report.status {
        RunStatus::Succeeded => "succeeded".to_owned(),
        RunStatus::Failed => match stopped {
            Some(why) => format!("FAILED: {why}; every rollback hook succeeded"),
            None => "FAILED: the plan succeeded, then a step after it failed".to_owned(),
        },
        RunStatus::Interrupted => "INTERRUPTED; every rollback hook succeeded".to_owned(),
        RunStatus::RollbackIncomplete => {
            let failed: Vec<&str> = plan
                .steps
                .iter()
                .zip(&report.units)
                .filter(|(_, u)| u.hook.as_ref().is_some_and(|h| !h.succeeded()))
                .map(|(step, _)| step.id.as_str())
                .collect();
            format!(
                "FAILED: {}, and the ROLLBACK IS INCOMPLETE: the hook of {} failed; the system needs a human",
                stopped.unwrap_or("a step failed"),
                failed.join(", ")
            )
        }
    };
    if !report.held.is_empty() {
        let held: Vec<String> = report
            .held
            .iter()
            .map(|h| format!("`{}`", plan.steps[h.unit].id))
            .collect();
        let _ = writeln!(
            out,
            "\nMAINTENANCE IS LEFT ON: the rollback is incomplete, so the hook of {} (maintenance off) was not run. \
             Repair the system, then run, as it stands:\n  {}",
            held.join(", "),
            repair(plan)
        );
    }
    let _ = writeln!(
        out,
        "\nrun {run_id} ({}): {verdict} (exit {})",
        duration(report.duration),
        report.status.exit_code()
    );
    match write_error {
        None => {
            let _ = writeln!(out, "record: {}", record.display());
        }
        Some(e) => {
            let _ = writeln!(out, "record: NOT WRITTEN to {}: {e}", record.display());
        }
    }
    out
}

/// The command that turns maintenance off for the same app as the run: the
/// plan by its absolute path, and every value that did not come from the plan's
/// own text pinned with `--var`. A secret is never shown: the command says which
/// environment variable must hold it, as during the run.
pub(crate) fn repair(plan: &Plan) -> String {
    let runner = std::env::args()
        .next()
        .filter(|arg0| arg0.contains('/'))
        .and_then(|arg0| std::path::absolute(arg0).ok())
        .map_or_else(|| "runner".to_owned(), |p| p.display().to_string());
    let path = std::path::absolute(&plan.path).unwrap_or_else(|_| plan.path.clone());
    let mut words = vec![
        runner,
        "maintenance".to_owned(),
        "off".to_owned(),
        path.display().to_string(),
    ];
    let mut secrets = Vec::new();
    for (name, var) in &plan.vars {
        match (&var.origin, var.secret) {
            (VarOrigin::Plan, _) => {}
            (VarOrigin::Env(env) | VarOrigin::EnvDefault(env), true) => {
                secrets.push(format!("${env}"));
            }
            (VarOrigin::CommandLine, true) => secrets.push(format!("--var {name}=…")),
            (_, false) => {
                words.push("--var".to_owned());
                words.push(format!("{name}={}", var.value));
            }
        }
    }
    let mut command = shell_join(&words);
    if !secrets.is_empty() {
        let _ = write!(
            command,
            "  (with the secret {} given as during the run)",
            secrets.join(", ")
        );
    }
    command
}
