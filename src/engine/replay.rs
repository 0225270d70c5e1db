//! A dead run's journal, replayed: the reports of what its tasks did (for the
//! record), and the inputs its core had, in order, so that the core that
//! `runner recover` feeds them reaches the state the dead run's had, then
//! decides from there (see [`super::core::Input::Died`]).

use std::collections::HashMap;
use std::time::Duration;

use super::core::Input;
use super::{AttemptRecord, Event, Phase, Task, TaskReport, Unit, millis};

/// What a recovery takes over from a run that died.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    pub(super) skipped: Vec<Option<String>>,
    pub(super) runs: Vec<Option<TaskReport>>,
    pub(super) hooks: Vec<Option<TaskReport>>,
    /// What the dead run's core was told, in order.
    pub(super) inputs: Vec<Input>,
    /// Tasks that had begun and not ended when runner died.
    pub(super) started: Vec<Task>,
    /// Captured outputs the journal has whole (none held a secret).
    pub(super) outputs: HashMap<String, String>,
    /// Steps whose captured output held a secret: the journal has it masked,
    /// so what templates it cannot run again.
    pub(crate) lost_outputs: Vec<String>,
    /// From the start of the run to its last journaled event.
    pub(crate) last_event: Duration,
    /// From the start of the run to now: where the recovery's clock starts.
    pub(crate) since: Duration,
}

/// Why a step or hook that was running when runner died has no end.
const KILLED: &str = "runner died while it ran (its journal ends there)";

/// Replays a journal's events (each with its offset from the start of the
/// run) over the run's units.
pub(crate) fn replay(units: &[Unit], events: &[(Duration, Event)]) -> Resume {
    let n = units.len();
    let index: HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id.as_str(), i))
        .collect();
    let mut r = Resume {
        skipped: vec![None; n],
        runs: (0..n).map(|_| None).collect(),
        hooks: (0..n).map(|_| None).collect(),
        ..Resume::default()
    };
    for (at, event) in events {
        let at = *at;
        if let Event::Recovering { .. } = event {
            // An earlier recover took over here: the run had died then.
            let started = cut(&mut r);
            r.inputs.push(Input::Died { started });
        }
        r.last_event = r.last_event.max(at);
        let Some(i) = event_step(event).and_then(|s| index.get(s).copied()) else {
            continue;
        };
        match event {
            Event::StepStarted { phase, command, .. } => {
                // A later attempt (of a hook too) goes on the same report.
                let (slot, task) = if *phase == Phase::Rollback {
                    (&mut r.hooks[i], Task::Hook(i))
                } else {
                    (&mut r.runs[i], Task::Step(i))
                };
                slot.get_or_insert_with(|| report(command, at));
                if !r.started.contains(&task) {
                    r.started.push(task);
                }
            }
            Event::RollbackStarted { command, .. } => {
                r.hooks[i] = Some(report(command, at));
                if !r.started.contains(&Task::Hook(i)) {
                    r.started.push(Task::Hook(i));
                }
            }
            Event::AttemptFailed {
                phase,
                attempt,
                reason,
                exit_code,
                ..
            } => {
                let slot = if *phase == Phase::Rollback {
                    &mut r.hooks[i]
                } else {
                    &mut r.runs[i]
                };
                if let Some(report) = slot {
                    report.attempts.push(attempt_record(
                        *attempt,
                        *exit_code,
                        Some(reason.clone()),
                        0,
                    ));
                }
            }
            Event::StepFinished {
                status,
                attempts,
                never_started,
                ..
            } => {
                let succeeded = *status == super::Status::Succeeded;
                if let Some(report) = &mut r.runs[i] {
                    end(report, at, *attempts, succeeded, *never_started);
                }
                r.started.retain(|&t| t != Task::Step(i));
                r.inputs.push(Input::Finished {
                    task: Task::Step(i),
                    succeeded,
                    never_started: *never_started,
                });
            }
            Event::RollbackFinished {
                succeeded,
                attempts,
                ..
            } => {
                if let Some(report) = &mut r.hooks[i] {
                    end(report, at, *attempts, *succeeded, false);
                }
                r.started.retain(|&t| t != Task::Hook(i));
                r.inputs.push(Input::Finished {
                    task: Task::Hook(i),
                    succeeded: *succeeded,
                    never_started: false,
                });
            }
            Event::StepSkipped { reason, .. } => {
                r.skipped[i] = Some(reason.clone());
                r.inputs.push(Input::Skipped { unit: i });
            }
            Event::Captured { output, masked, .. } => {
                let id = units[i].id.clone();
                if *masked {
                    r.lost_outputs.push(id);
                } else {
                    r.outputs.insert(id, output.clone());
                }
            }
            _ => {}
        }
    }
    r.started = cut(&mut r);
    r
}

/// runner died: what was running then has no end, its last attempt is cut
/// at the journal's last event. Returns what was running.
fn cut(r: &mut Resume) -> Vec<Task> {
    let started = std::mem::take(&mut r.started);
    for &task in &started {
        let slot = match task {
            Task::Step(i) => &mut r.runs[i],
            Task::Hook(i) => &mut r.hooks[i],
        };
        if let Some(report) = slot {
            report.ended = r.last_event;
            let attempt = u32::try_from(report.attempts.len()).unwrap_or(u32::MAX) + 1;
            let took = millis(r.last_event.saturating_sub(report.started));
            report
                .attempts
                .push(attempt_record(attempt, None, Some(KILLED.to_owned()), took));
        }
    }
    started
}

fn event_step(event: &Event) -> Option<&str> {
    match event {
        Event::StepStarted { step, .. }
        | Event::AttemptFailed { step, .. }
        | Event::StepFinished { step, .. }
        | Event::StepSkipped { step, .. }
        | Event::Captured { step, .. }
        | Event::RollbackStarted { step, .. }
        | Event::RollbackFinished { step, .. } => Some(step),
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
fn end(report: &mut TaskReport, at: Duration, attempts: u32, succeeded: bool, never_started: bool) {
    report.ended = at;
    if succeeded {
        let took = millis(report.duration());
        report
            .attempts
            .push(attempt_record(attempts.max(1), Some(0), None, took));
    }
    if never_started {
        for a in &mut report.attempts {
            a.never_started = true;
        }
    }
}

/// An attempt as the journal tells it: failed with `reason`, or succeeded
/// without one.
fn attempt_record(
    attempt: u32,
    exit_code: Option<i32>,
    reason: Option<String>,
    duration_ms: u64,
) -> AttemptRecord {
    AttemptRecord {
        attempt,
        succeeded: reason.is_none(),
        exit_code,
        reason,
        duration_ms,
        transport: None,
        never_started: false,
    }
}
