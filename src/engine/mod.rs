//! The engine: runs a DAG of units of work with retries, one deadline per attempt,
//! rollback and interrupts. It knows no step kind and nothing of what kinds run:
//! a unit's work is a [`Work`] that [`Tasks`] prepares when the unit starts, and
//! the rules that depend on a kind come in as properties ([`HookRole`]).
//!
//! One dispatcher loop owns the run (see [`dispatcher`]); each unit's attempts run
//! in a task of their own ([`attempt`]); everything that happens becomes an
//! [`Event`] for a [`Sink`], and the run ends in a [`Report`].

mod attempt;
pub(crate) mod core;
mod dispatcher;
mod event;
mod given;
pub(crate) mod replay;
mod retry;
pub(crate) mod signals;
#[cfg(test)]
mod tests;
pub(crate) mod work;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub(crate) use event::{Event, Phase, RunStatus, Status};
pub(crate) use given::Given;
pub(crate) use signals::Interrupt;
pub(crate) use work::{Attempt, Attempted, End, Outcome, Output, Stream, Work};

use crate::mask::Masker;

/// Retry and timeout settings of a unit or a hook, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub backoff: f64,
}

/// When a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// In the plan, once its needs succeeded.
    Success,
    /// After a failed run (and its rollback).
    Failure,
    /// After the run, failed or not.
    Always,
}

/// A step as the engine sees it.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) id: String,
    /// Indices of the units it needs.
    pub(crate) needs: Vec<usize>,
    pub(crate) when: When,
    pub(crate) settings: Settings,
    pub(crate) hook: Option<Hook>,
    /// The failure domain it belongs to (a host), if any: see [`Run::budget`].
    pub(crate) domain: Option<usize>,
}

/// A rollback hook as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hook {
    pub(crate) settings: Settings,
    pub(crate) role: HookRole,
    /// Runs also when its own step failed (it may have done part of its work).
    pub(crate) also_if_failed: bool,
}

/// What a hook does to the system's users, which decides when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookRole {
    /// Closes the system to its users (turns maintenance on): it runs before
    /// every other hook, so that nothing is undone while users can reach it.
    Close,
    /// Undoes its step.
    Undo,
    /// Gives the system back to its users: it runs after every other hook, and
    /// not at all once one failed, so users keep the closed system rather than a
    /// half-undone one.
    Reopen,
}

/// A unit's run, or its rollback hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Task {
    Step(usize),
    Hook(usize),
}

impl Task {
    pub(crate) fn unit(self) -> usize {
        match self {
            Task::Step(i) | Task::Hook(i) => i,
        }
    }
}

/// Prepares a task's work when it starts, with the step outputs captured so far.
pub(crate) trait Tasks {
    fn prepare(&self, task: Task, outputs: &HashMap<String, String>) -> Prepared;

    /// Why unit `unit`, ready to start, does not run (its condition does not
    /// hold), with the outputs captured so far; `None`: it runs.
    fn skip(&self, unit: usize, outputs: &HashMap<String, String>) -> Option<String> {
        let _ = (unit, outputs);
        None
    }
}

/// A task ready to run.
pub(crate) struct Prepared {
    pub(crate) work: Arc<dyn Work>,
    /// What it runs, as shown (secrets masked).
    pub(crate) command: String,
}

/// Where events go. It must not block: the dispatcher calls it between timers
/// and signals.
pub(crate) trait Sink {
    fn event(&mut self, event: Event);

    /// What the core is given, before it decides from it: the journal keeps
    /// it, so that a recovery feeds a dead run's core exactly that.
    fn input(&mut self, _input: &core::Input, _units: &[Unit]) {}

    /// Why the sink cannot keep what the run must keep before it acts (its
    /// journal cannot be written): no step starts then, and the run stops.
    fn broken(&self) -> Option<String> {
        None
    }
}

/// Where interrupts come from: signals, a host's lock lost, the journal.
pub(crate) type Interrupts = mpsc::UnboundedReceiver<Interrupt>;

/// What the engine needs besides the units.
pub(crate) struct Run<'a> {
    pub(crate) units: &'a [Unit],
    pub(crate) jobs: u32,
    pub(crate) tasks: &'a dyn Tasks,
    pub(crate) masker: &'a Masker,
    pub(crate) sink: &'a mut dyn Sink,
    pub(crate) interrupts: Interrupts,
    /// The failure domains' names, indexed by [`Unit::domain`].
    pub(crate) domains: &'a [String],
    /// How many domains may fail: a failure in a domain within this budget rolls
    /// back that domain's units (its hooks in reverse) and the rest goes on; its
    /// dependents outside the domain start once that rollback is done. Any other
    /// failure stops the run.
    pub(crate) budget: usize,
    /// A recovery: the dead run's state, replayed from its journal; the
    /// rollback it owed runs, then what was to run after it.
    pub(crate) resume: Option<replay::Resume>,
}

/// Runs the units: the plan, its rollback if it failed, then the after-phase.
pub(crate) async fn run(run: Run<'_>) -> Report {
    dispatcher::Dispatcher::new(run).run().await
}

/// How a run went, for the record and the summary.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) status: RunStatus,
    /// Why the plan stopped early (a failed step, an interrupt), if it did.
    pub(crate) stopped: Option<String>,
    /// Per unit, in the order given.
    pub(crate) units: Vec<UnitReport>,
    /// Units whose hooks ran, in the order they ran.
    pub(crate) rollback: Vec<usize>,
    /// Hooks not run, and why.
    pub(crate) held: Vec<Held>,
    /// Domains that failed within the budget, in the order they failed.
    pub(crate) failed_domains: Vec<usize>,
    /// What steps that capture their stdout printed, by id.
    pub(crate) outputs: HashMap<String, String>,
    pub(crate) duration: Duration,
}

#[derive(Debug)]
pub(crate) struct UnitReport {
    pub(crate) status: Status,
    pub(crate) run: Option<TaskReport>,
    pub(crate) hook: Option<TaskReport>,
    /// Why it was skipped though it was ready: its condition did not hold.
    pub(crate) skipped: Option<String>,
}

/// A step's or a hook's run.
#[derive(Debug)]
pub(crate) struct TaskReport {
    /// What it ran, as shown.
    pub(crate) command: String,
    pub(crate) attempts: Vec<AttemptRecord>,
    /// Offsets from the start of the run.
    pub(crate) started: Duration,
    pub(crate) ended: Duration,
    /// The last lines of its output, `[stdout] …`.
    pub(crate) tail: VecDeque<String>,
}

impl TaskReport {
    pub(crate) fn duration(&self) -> Duration {
        self.ended.saturating_sub(self.started)
    }

    pub(crate) fn succeeded(&self) -> bool {
        self.attempts.last().is_some_and(|a| a.succeeded)
    }

    /// Whether no attempt's command ever started: it changed nothing.
    pub(crate) fn never_started(&self) -> bool {
        !self.attempts.is_empty() && self.attempts.iter().all(|a| a.never_started)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptRecord {
    pub(crate) attempt: u32,
    pub(crate) succeeded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) duration_ms: u64,
    /// The way the attempt went, when its kind has several (which transport).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<String>,
    /// Its command never started (docker refused the exec, or the process
    /// could not start): it changed nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) never_started: bool,
}

/// A hook that was not run.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) unit: usize,
    pub(crate) reason: String,
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
