//! A dead run's journal, replayed: the reports of what its tasks did (for the
//! record), from its events, and the inputs its core had, in order, as the
//! journal kept them (see [`Given`]), so that the core that `runner recover`
//! feeds them reaches the state the dead run's had, then decides from there
//! (see [`super::core::Input::Died`]).

use std::collections::HashMap;
use std::time::Duration;

use super::core::Input;
use super::{AttemptRecord, Event, Given, Phase, Task, TaskReport, Unit, millis};

/// A line of a journal: what the run said, or what its core was given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    /// What the run said (its record is made again from these).
    Event(Event),
    /// What the core was given (a recovery feeds it these).
    Given(Given),
}

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

/// Replays a journal's lines (each with its offset from the start of the
/// run) over the run's units.
pub(crate) fn replay(units: &[Unit], lines: &[(Duration, &Line)]) -> Resume {
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
    // Ends the core was given whose event the journal does not have (runner
    // died between the two lines), and the ends it has.
    let mut given_ends = Vec::new();
    let mut told_ends = Vec::new();
    for &(at, line) in lines {
        let event = match line {
            Line::Given(given) => {
                let Some(input) = given.input(&index) else {
                    continue;
                };
                if let Input::Finished { task, .. } = input {
                    // Running no more, as the core knows it.
                    r.started.retain(|&t| t != task);
                    given_ends.push((at, input.clone()));
                }
                r.inputs.push(input);
                continue;
            }
            Line::Event(event) => event,
        };
        if let Event::Recovering { .. } = event {
            // An earlier recover took over here: what ran then has no end.
            cut(&mut r);
        }
        r.last_event = r.last_event.max(at);
        let Some(i) = event_step(event).and_then(|s| index.get(s).copied()) else {
            continue;
        };
        told(&mut r, units, i, at, event, &mut told_ends);
    }
    end_as_given(&mut r, given_ends, &told_ends);
    r.started = cut(&mut r);
    r
}

/// What an event of unit `i` tells of its reports; an end goes on
/// `told_ends`.
fn told(
    r: &mut Resume,
    units: &[Unit],
    i: usize,
    at: Duration,
    event: &Event,
    told_ends: &mut Vec<Task>,
) {
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
            told_ends.push(Task::Step(i));
        }
        Event::RollbackFinished {
            succeeded,
            attempts,
            ..
        } => {
            if let Some(report) = &mut r.hooks[i] {
                end(report, at, *attempts, *succeeded, false);
            }
            told_ends.push(Task::Hook(i));
        }
        Event::StepSkipped { reason, .. } => {
            r.skipped[i] = Some(reason.clone());
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

/// The reports of the ends the core was given whose event the journal does
/// not have (runner died between the two lines) end as the core was told.
fn end_as_given(r: &mut Resume, given_ends: Vec<(Duration, Input)>, told_ends: &[Task]) {
    for (at, input) in given_ends {
        let Input::Finished {
            task,
            succeeded,
            never_started,
        } = input
        else {
            continue;
        };
        let slot = match task {
            Task::Step(i) => &mut r.runs[i],
            Task::Hook(i) => &mut r.hooks[i],
        };
        if let Some(report) = slot.as_mut().filter(|_| !told_ends.contains(&task)) {
            let attempts = u32::try_from(report.attempts.len()).unwrap_or(u32::MAX) + 1;
            end(report, at, attempts, succeeded, never_started);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::Input;
    use crate::engine::{Settings, When};

    fn unit(id: &str) -> Unit {
        Unit {
            id: id.to_owned(),
            needs: Vec::new(),
            when: When::Success,
            settings: Settings {
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_delay: Duration::ZERO,
                backoff: 1.0,
            },
            hook: None,
            domain: None,
        }
    }

    fn started(step: &str) -> Line {
        Line::Event(Event::StepStarted {
            step: step.to_owned(),
            phase: Phase::Plan,
            attempt: 1,
            command: "true".to_owned(),
        })
    }

    #[test]
    fn the_core_is_fed_what_the_journal_says_it_was_given_in_order() {
        let units = [unit("a"), unit("b")];
        let interrupt = Given::Interrupt {
            signal: "SIGINT".to_owned(),
            at_once: false,
        };
        let finished = Given::Finished {
            step: "a".to_owned(),
            hook: false,
            succeeded: true,
            never_started: false,
        };
        let gone = Given::Skipped {
            step: "a step the plan no longer has".to_owned(),
        };
        let lines = [
            Line::Given(interrupt),
            Line::Given(Given::Start),
            started("a"),
            started("b"),
            // runner died between the core's input and the event telling it.
            Line::Given(finished),
            Line::Given(gone),
        ];
        let lines: Vec<(Duration, &Line)> = lines
            .iter()
            .zip(0..)
            .map(|(l, ms)| (Duration::from_millis(ms), l))
            .collect();
        let r = replay(&units, &lines);
        assert_eq!(
            r.inputs,
            [
                Input::Interrupt {
                    signal: "SIGINT".to_owned(),
                    at_once: false
                },
                Input::Start,
                Input::Finished {
                    task: Task::Step(0),
                    succeeded: true,
                    never_started: false
                },
            ]
        );
        // Running when runner died, as its core knew it: what began and
        // was not given an end; its report is cut there.
        assert_eq!(r.started, [Task::Step(1)]);
        let b = r.runs[1].as_ref().expect("b's report");
        assert_eq!(b.attempts[0].reason.as_deref(), Some(KILLED));
        // The end the core was given is the report's end too.
        let a = r.runs[0].as_ref().expect("a's report");
        assert!(a.attempts[0].succeeded, "{a:?}");
    }
}
