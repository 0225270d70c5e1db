//! The table and verdict printed at the end of a run.

use std::fmt::Write as _;
use std::path::Path;

use std::time::Duration;

use super::console::duration;
use super::record::Record;
use crate::engine::RunStatus;
use crate::engine::Status;
use crate::plan::template::shell_join;
use crate::plan::{Plan, VarOrigin};

/// The table and the verdict of a run, from its record: printed when the run
/// ends, and by `runner show`.
pub(crate) fn text(record: &Record) -> String {
    let mut out = steps_table(record);
    out.push_str(&hooks_text(record));
    out.push_str(&hosts_table(record));
    out.push_str(&notes(record));
    let _ = writeln!(
        out,
        "\nrun {} ({}): {} (exit {})",
        record.run_id,
        duration(Duration::from_millis(record.duration_ms)),
        verdict(record),
        record.exit_code
    );
    out
}

/// Each step's outcome, attempts and time, then why those skipped were.
fn steps_table(record: &Record) -> String {
    let width = record
        .steps
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<19}  {:>8}  {:>8}",
        "step", "status", "attempts", "duration"
    );
    for step in &record.steps {
        let (attempts, took) = if step.attempts.is_empty() {
            (0, "-".to_owned())
        } else {
            (
                step.attempts.len(),
                duration(Duration::from_millis(step.duration_ms)),
            )
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<19}  {:>8}  {:>8}",
            step.id,
            step.outcome().as_str(),
            attempts,
            took
        );
    }
    for step in &record.steps {
        if let Some(why) = &step.skipped {
            let _ = writeln!(out, "  {} skipped: {why}", step.id);
        }
    }
    out
}

/// Each host's batch and status, when the run had hosts.
fn hosts_table(record: &Record) -> String {
    let mut out = String::new();
    if !record.hosts.is_empty() {
        let width = record
            .hosts
            .iter()
            .map(|h| h.name.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(out, "\n{:<width$}  {:>5}  status", "host", "batch");
        for host in &record.hosts {
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {}",
                host.name,
                host.batch
                    .map_or_else(|| "-".to_owned(), |b| (b + 1).to_string()),
                host.status
            );
        }
    }
    out
}

/// The run's outcome in a sentence.
fn verdict(record: &Record) -> String {
    let stopped = record.stopped.as_deref();
    match record.status {
        RunStatus::Succeeded => match &record.killed {
            Some(k) => format!(
                "succeeded: runner (pid {}) died after the plan's last step succeeded, so the run is finished and `runner recover` undid nothing",
                k.pid
            ),
            None => "succeeded".to_owned(),
        },
        RunStatus::Recovered => format!(
            "KILLED, RECOVERED: {}; `runner recover` ran the rollback it owed, and every rollback hook succeeded",
            stopped.unwrap_or("runner died")
        ),
        RunStatus::Failed => match stopped {
            Some(why) => format!("FAILED: {why}; every rollback hook succeeded"),
            None => "FAILED: the plan succeeded, then a step after it failed".to_owned(),
        },
        RunStatus::Interrupted => "INTERRUPTED; every rollback hook succeeded".to_owned(),
        RunStatus::Partial => {
            let failed: Vec<&str> = record
                .hosts
                .iter()
                .filter(|h| h.failed)
                .map(|h| h.name.as_str())
                .collect();
            let deployed = record.hosts.iter().filter(|h| h.deployed).count();
            format!(
                "PARTLY DEPLOYED: host {} failed and was rolled back (within `max_fail`); {deployed} of {} hosts run the new release",
                failed.join(", "),
                record.hosts.iter().filter(|h| h.batch.is_some()).count()
            )
        }
        RunStatus::RollbackIncomplete => {
            let failed: Vec<&str> = record
                .steps
                .iter()
                .filter(|s| s.rollback.as_ref().is_some_and(|h| !h.succeeded))
                .map(|s| s.id.as_str())
                .collect();
            format!(
                "FAILED: {}, and the ROLLBACK IS INCOMPLETE: the hook of {} failed; the system needs a human",
                stopped.unwrap_or("a step failed"),
                failed.join(", ")
            )
        }
    }
}

/// What the operator must know beyond the tables: maintenance left on, a
/// runner that died, the maintenance window.
fn notes(record: &Record) -> String {
    let mut out = String::new();
    if !record.rollback_held.is_empty() {
        let held: Vec<String> = record
            .rollback_held
            .iter()
            .map(|h| format!("`{}`", h.step))
            .collect();
        let _ = writeln!(
            out,
            "\nMAINTENANCE IS LEFT ON: the rollback is incomplete, so the hook of {} (maintenance off) was not run. \
             Repair the system, then run, as it stands:\n  {}",
            held.join(", "),
            record
                .repair
                .as_deref()
                .unwrap_or("runner maintenance off PLAN")
        );
    }
    if let Some(k) = &record.killed {
        let _ = writeln!(
            out,
            "\nrunner (pid {}) died {} into the run (its journal's last event); `runner recover` took over at {} ({}){}",
            k.pid,
            duration(Duration::from_millis(k.last_event_ms)),
            k.recovered_at,
            k.recovered_by,
            if k.finished {
                ": the plan's last step had succeeded, so nothing was undone"
            } else {
                ""
            }
        );
    }
    if let Some(to) = &record.rollback_of {
        let _ = writeln!(
            out,
            "\nrollback: this run went back to the release of run {to}"
        );
    }
    if let Some(line) = maintenance_line(record) {
        let _ = writeln!(out, "\n{line}");
    }
    out
}

/// The rollback hooks that ran, in the order they ran, each named by its
/// step and command, and what it did: a failed step whose own hook undid it
/// is told, not hidden behind `failed`.
fn hooks_text(record: &Record) -> String {
    let mut out = String::new();
    let ran: Vec<_> = record
        .rollback
        .iter()
        .filter_map(|id| {
            let step = record.steps.iter().find(|s| &s.id == id)?;
            Some((step, step.rollback.as_ref()?))
        })
        .collect();
    let not_run: Vec<_> = record
        .steps
        .iter()
        .filter_map(|s| Some((s, s.rollback_not_run.as_ref()?)))
        .collect();
    if ran.is_empty() && not_run.is_empty() {
        return out;
    }
    for (step, why) in not_run {
        let _ = writeln!(
            out,
            "\n`{}` failed before it changed anything; its rollback hook was not run: {why}",
            step.id
        );
    }
    if ran.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nrollback, in the order the hooks ran:");
    for (n, (step, hook)) in ran.into_iter().enumerate() {
        let partway = step.status == Status::Failed;
        let what = match (hook.succeeded, partway) {
            (true, true) => format!("undid `{}`, which had failed partway", step.id),
            (true, false) => format!("undid `{}`", step.id),
            (false, true) => format!("FAILED to undo `{}`, which had failed partway", step.id),
            (false, false) => format!("FAILED to undo `{}`", step.id),
        };
        let why = hook
            .attempts
            .last()
            .and_then(|a| a.reason.as_deref())
            .filter(|_| !hook.succeeded)
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}. rollback of {}: {what} ({}){why}",
            n + 1,
            step.id,
            duration(Duration::from_millis(hook.duration_ms)),
        );
    }
    out
}

/// How long users had the maintenance page, in one line.
fn maintenance_line(record: &Record) -> Option<String> {
    let windows = &record.maintenance;
    if windows.is_empty() {
        return None;
    }
    let total: u64 = windows.iter().fold(0, |sum, w| {
        sum.saturating_add(
            w.to_ms
                .unwrap_or(record.duration_ms)
                .saturating_sub(w.from_ms),
        )
    });
    let left_on = windows.last().is_some_and(|w| w.to_ms.is_none());
    Some(format!(
        "maintenance page: {}{}{}",
        duration(Duration::from_millis(total)),
        if windows.len() > 1 {
            format!(" in {} windows", windows.len())
        } else {
            String::new()
        },
        if left_on { ", and it is still on" } else { "" }
    ))
}

/// Where the record went, or why it could not be written.
pub(crate) fn record_line(path: &Path, write_error: Option<&std::io::Error>) -> String {
    match write_error {
        None => format!("record: {}\n", path.display()),
        Some(e) => format!("record: NOT WRITTEN to {}: {e}\n", path.display()),
    }
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
