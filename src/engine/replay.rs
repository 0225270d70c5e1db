//! A dead run's journal, replayed: the state its dispatcher had when it died
//! (what ran, what finished, which hooks already ran), from which `runner
//! recover` carries out the rollback that run owed, under the live rules.

use std::collections::HashMap;
use std::time::Duration;

use super::{AttemptRecord, Event, Phase, Status, TaskReport, Unit, When, millis};

/// Where a recovery takes over from a run that died.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    pub(super) status: Vec<Option<Status>>,
    pub(super) skipped: Vec<Option<String>>,
    pub(super) runs: Vec<Option<TaskReport>>,
    pub(super) hooks: Vec<Option<TaskReport>>,
    /// Plan units whose hooks are owed, in order of completion.
    pub(super) completed: Vec<usize>,
    /// Units whose hooks ran before, in the order they ran.
    pub(super) rollback: Vec<usize>,
    pub(super) failed_domains: Vec<usize>,
    /// Captured outputs the journal has whole (none held a secret).
    pub(super) outputs: HashMap<String, String>,
    /// Steps whose captured output held a secret: the journal has it masked,
    /// so what templates it cannot run again.
    pub(crate) lost_outputs: Vec<String>,
    /// From the start of the run to its last journaled event.
    pub(crate) last_event: Duration,
    /// From the start of the run to now: where the recovery's clock starts.
    pub(crate) since: Duration,
    /// The plan's last step had succeeded: the run is finished, not undone.
    pub(crate) finished: bool,
    /// Steps that were running when runner died.
    pub(crate) cut_short: Vec<String>,
}

/// Why a step that was running when runner died failed.
const KILLED: &str = "runner died while it ran (its journal ends there)";

/// Replays a journal's events (each with its offset from the start of the
/// run) over the run's units; `domains` names the failure domains.
pub(crate) fn replay(units: &[Unit], domains: &[String], events: &[(Duration, Event)]) -> Resume {
    let n = units.len();
    let index: HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id.as_str(), i))
        .collect();
    let mut r = Resume {
        status: vec![None; n],
        skipped: vec![None; n],
        runs: (0..n).map(|_| None).collect(),
        hooks: (0..n).map(|_| None).collect(),
        ..Resume::default()
    };
    let mut failed_in_plan = false;
    for (at, event) in events {
        r.last_event = r.last_event.max(*at);
        let at = *at;
        let unit = event_step(event).and_then(|s| index.get(s).copied());
        match (event, unit) {
            (Event::StepStarted { phase, command, .. }, Some(i)) => {
                let slot = if *phase == Phase::Rollback {
                    &mut r.hooks[i]
                } else {
                    &mut r.runs[i]
                };
                slot.get_or_insert_with(|| report(command, at));
            }
            (
                Event::AttemptFailed {
                    phase,
                    attempt,
                    reason,
                    exit_code,
                    ..
                },
                Some(i),
            ) => {
                let slot = if *phase == Phase::Rollback {
                    &mut r.hooks[i]
                } else {
                    &mut r.runs[i]
                };
                if let Some(report) = slot {
                    report.attempts.push(AttemptRecord {
                        attempt: *attempt,
                        succeeded: false,
                        exit_code: *exit_code,
                        reason: Some(reason.clone()),
                        duration_ms: 0,
                        transport: None,
                        never_started: false,
                    });
                }
            }
            (
                Event::StepFinished {
                    phase,
                    status,
                    attempts,
                    never_started,
                    ..
                },
                Some(i),
            ) => {
                r.status[i] = Some(*status);
                let succeeded = *status == Status::Succeeded;
                if let Some(report) = &mut r.runs[i] {
                    report.ended = at;
                    end_attempts(report, *attempts, succeeded, *never_started);
                }
                let partway =
                    !succeeded && !never_started && units[i].hook.is_some_and(|h| h.also_if_failed);
                if *phase == Phase::Plan {
                    failed_in_plan |= !succeeded;
                    if succeeded || partway {
                        r.completed.push(i);
                    }
                }
            }
            (Event::StepSkipped { reason, .. }, Some(i)) => {
                r.status[i] = Some(Status::Skipped);
                r.skipped[i] = Some(reason.clone());
            }
            (Event::Captured { output, masked, .. }, Some(i)) => {
                let id = units[i].id.clone();
                if *masked {
                    r.lost_outputs.push(id);
                } else {
                    r.outputs.insert(id, output.clone());
                }
            }
            (Event::RollbackStarted { command, .. }, Some(i)) => {
                r.hooks[i] = Some(report(command, at));
                r.rollback.push(i);
            }
            (
                Event::RollbackFinished {
                    succeeded,
                    attempts,
                    ..
                },
                Some(i),
            ) => {
                if let Some(report) = &mut r.hooks[i] {
                    report.ended = at;
                    end_attempts(report, *attempts, *succeeded, false);
                }
                if r.status[i] != Some(Status::Failed) {
                    r.status[i] = Some(if *succeeded {
                        Status::RolledBack
                    } else {
                        Status::RollbackFailed
                    });
                }
                // A hook that succeeded is done; one that failed is owed
                // still, and runs again.
                if *succeeded {
                    r.completed.retain(|&c| c != i);
                }
            }
            (Event::DomainFailed { domain, .. }, _) => {
                if let Some(d) = domains.iter().position(|name| name == domain)
                    && !r.failed_domains.contains(&d)
                {
                    r.failed_domains.push(d);
                }
            }
            _ => {}
        }
    }
    // What was running when runner died failed then: its hook is owed when
    // it runs also for a failed step, as in a live run.
    let mut running: Vec<usize> = (0..n)
        .filter(|&i| r.status[i].is_none() && r.runs[i].is_some())
        .collect();
    running.sort_by_key(|&i| r.runs[i].as_ref().map(|p| p.started));
    for i in running {
        r.status[i] = Some(Status::Failed);
        r.cut_short.push(units[i].id.clone());
        if let Some(report) = &mut r.runs[i] {
            report.ended = r.last_event;
            let attempt = u32::try_from(report.attempts.len()).unwrap_or(u32::MAX) + 1;
            report.attempts.push(AttemptRecord {
                attempt,
                succeeded: false,
                exit_code: None,
                reason: Some(KILLED.to_owned()),
                duration_ms: millis(r.last_event.saturating_sub(report.started)),
                transport: None,
                never_started: false,
            });
        }
        if units[i].when == When::Success {
            failed_in_plan = true;
            if units[i].hook.is_some_and(|h| h.also_if_failed) {
                r.completed.push(i);
            }
        }
    }
    r.finished = !failed_in_plan
        && r.failed_domains.is_empty()
        && r.rollback.is_empty()
        && units
            .iter()
            .zip(&r.status)
            .filter(|(u, _)| u.when == When::Success)
            .all(|(_, s)| matches!(s, Some(Status::Succeeded | Status::Skipped)));
    r
}

fn event_step(event: &Event) -> Option<&str> {
    match event {
        Event::StepStarted { step, .. }
        | Event::AttemptFailed { step, .. }
        | Event::StepFinished { step, .. }
        | Event::StepSkipped { step, .. }
        | Event::Captured { step, .. }
        | Event::RollbackStarted { step, .. }
        | Event::RollbackHeld { step, .. }
        | Event::RollbackFinished { step, .. }
        | Event::DomainFailed { step, .. } => Some(step),
        _ => None,
    }
}

fn report(command: &str, at: Duration) -> TaskReport {
    TaskReport {
        command: command.to_owned(),
        attempts: Vec::new(),
        started: at,
        ended: at,
        tail: std::collections::VecDeque::new(),
    }
}

/// A task's end: its last attempt succeeded (the journal keeps only failed
/// attempts one by one), or failed, never started.
fn end_attempts(report: &mut TaskReport, attempts: u32, succeeded: bool, never_started: bool) {
    if succeeded {
        report.attempts.push(AttemptRecord {
            attempt: attempts.max(1),
            succeeded: true,
            exit_code: Some(0),
            reason: None,
            duration_ms: millis(report.duration()),
            transport: None,
            never_started: false,
        });
    }
    if never_started {
        for a in &mut report.attempts {
            a.never_started = true;
        }
    }
}
