//! The dispatcher: one loop owns the run. It starts units the moment their needs
//! succeeded and a job slot is free, reads what their tasks tell it (output lines,
//! attempts, their end or their panic), handles interrupts, and reports every
//! event to the sink. A task never decides anything about the rest of the run.
//!
//! The run has three phases: the plan's units; if one failed or an interrupt came,
//! the rollback hooks of the units that succeeded, one at a time; then the
//! `when = "failure"` / `"always"` units.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::{Stops, attempts};
use super::work::{End, Line, Outcome};
use super::{
    AttemptRecord, Event, Held, HookRole, Interrupt, Phase, Report, Run, RunStatus, Sink, Status,
    Task, TaskReport, Tasks, Unit, UnitReport, When, millis,
};
use crate::mask::Masker;

/// Output lines kept per task for the record.
const TAIL_LINES: usize = 40;
/// Messages from tasks waiting for the dispatcher: a task that prints faster than
/// the dispatcher reads waits, so memory stays bounded.
const CHANNEL: usize = 256;

/// What tasks tell the dispatcher.
pub(crate) enum Msg {
    Line(Task, Line),
    AttemptStarted(Task, u32),
    AttemptEnded {
        task: Task,
        attempt: u32,
        outcome: Outcome,
        duration: Duration,
        retry_in: Option<Duration>,
    },
}

/// What a task's attempts came to.
pub(crate) struct Done {
    pub(crate) task: Task,
    pub(crate) succeeded: bool,
    pub(crate) captured: Option<String>,
}

struct Progress {
    report: TaskReport,
    /// The attempt started and not ended yet.
    open: Option<u32>,
}

impl Progress {
    fn line(&mut self, tagged: String) {
        if self.report.tail.len() == TAIL_LINES {
            self.report.tail.pop_front();
        }
        self.report.tail.push_back(tagged);
    }
}

/// A unit is done (or skipped) for the units that need it: one need fewer
/// each; those that need nothing more can start.
fn release(dependents: &[usize], member: &[bool], waiting: &mut [usize]) -> Vec<usize> {
    let mut free = Vec::new();
    for &d in dependents {
        if member[d] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                free.push(d);
            }
        }
    }
    free
}

/// Units that can start: the longest remaining chain first, then the order given,
/// so the critical path never waits behind a short branch.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    height: usize,
    index: std::cmp::Reverse<usize>,
}

pub(super) struct Dispatcher<'a> {
    units: &'a [Unit],
    jobs: usize,
    tasks: &'a dyn Tasks,
    masker: &'a Masker,
    sink: &'a mut dyn Sink,
    interrupts: mpsc::UnboundedReceiver<Interrupt>,
    clock: Instant,
    /// Added to the clock: a recovery goes on on its dead run's timeline.
    base: Duration,
    /// A recovery: whether the dead run had finished its plan.
    resumed: Option<bool>,
    status: Vec<Option<Status>>,
    /// Why a unit was skipped on its condition.
    skipped: Vec<Option<String>>,
    runs: Vec<Option<Progress>>,
    hooks: Vec<Option<Progress>>,
    /// Units that need each unit.
    dependents: Vec<Vec<usize>>,
    /// Units in an order where needs come first.
    order: Vec<usize>,
    /// Captured outputs, by unit id.
    outputs: HashMap<String, String>,
    /// Plan units in order of completion (successes only), for the rollback.
    completed: Vec<usize>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    running: JoinSet<Done>,
    ids: HashMap<Id, Task>,
    stopped: Option<String>,
    held: Vec<Held>,
    rollback: Vec<usize>,
    signals: u32,
    domains: &'a [String],
    budget: usize,
    /// Domains that failed within the budget, in order.
    failed_domains: Vec<usize>,
    /// Whether a domain's rollback had a hook fail.
    domain_hooks_failed: bool,
}

/// A failed domain's rollback, within the plan phase: its hooks one at a time.
struct DomainRollback {
    domain: usize,
    hooks: VecDeque<usize>,
    ok: bool,
}

impl<'a> Dispatcher<'a> {
    pub(super) fn new(run: Run<'a>) -> Self {
        let units = run.units;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let mut dependents = vec![Vec::new(); units.len()];
        for (i, unit) in units.iter().enumerate() {
            for &need in &unit.needs {
                dependents[need].push(i);
            }
        }
        let mut dispatcher = Self {
            order: topological(units, &dependents),
            units,
            jobs: usize::try_from(run.jobs).unwrap_or(1).max(1),
            tasks: run.tasks,
            masker: run.masker,
            sink: run.sink,
            interrupts: run.interrupts,
            clock: Instant::now(),
            status: vec![None; units.len()],
            skipped: vec![None; units.len()],
            runs: units.iter().map(|_| None).collect(),
            hooks: units.iter().map(|_| None).collect(),
            dependents,
            outputs: HashMap::new(),
            completed: Vec::new(),
            tx,
            rx,
            running: JoinSet::new(),
            ids: HashMap::new(),
            stopped: None,
            held: Vec::new(),
            rollback: Vec::new(),
            signals: 0,
            domains: run.domains,
            budget: run.budget,
            failed_domains: Vec::new(),
            domain_hooks_failed: false,
            base: Duration::ZERO,
            resumed: None,
        };
        if let Some(resume) = run.resume {
            dispatcher.resume(resume);
        }
        dispatcher
    }

    /// Takes over from a dead run: its state as its journal tells it.
    fn resume(&mut self, r: super::replay::Resume) {
        let progress =
            |report: Option<TaskReport>| report.map(|report| Progress { report, open: None });
        self.status = r.status;
        self.skipped = r.skipped;
        self.runs = r.runs.into_iter().map(progress).collect();
        self.hooks = r.hooks.into_iter().map(progress).collect();
        self.completed = r.completed;
        self.rollback = r.rollback;
        self.failed_domains = r.failed_domains;
        self.outputs = r.outputs;
        self.base = r.since;
        self.resumed = Some(r.finished);
        if !r.finished {
            let cut = if r.cut_short.is_empty() {
                String::new()
            } else {
                format!(
                    " while {} ran",
                    r.cut_short
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.stopped = Some(format!("runner died{cut}"));
        }
    }

    /// Time since the start of the run.
    fn now(&self) -> Duration {
        self.base + self.clock.elapsed()
    }

    pub(super) async fn run(mut self) -> Report {
        if self.resumed == Some(true) {
            // It died after its plan's last step succeeded: it is finished,
            // and nothing of it is undone.
            return self.report(RunStatus::Succeeded);
        }
        if self.resumed.is_none() {
            let plan = self.members(|w| w == When::Success);
            self.schedule(&plan, Phase::Plan).await;
        }
        let failed = self.stopped.is_some();
        let hooks_ok = !failed || self.roll_back().await;
        // A `failure` step that needs plan steps runs when one of them failed
        // (as in GitHub Actions); without such needs, when the run failed.
        let after: Vec<usize> = self
            .members(|w| w == When::Always || (failed && w == When::Failure))
            .into_iter()
            // A recovery runs what its dead run had not finished.
            .filter(|&i| self.status[i].is_none())
            .filter(|&i| {
                let unit = &self.units[i];
                let mut plan_needs = unit
                    .needs
                    .iter()
                    .filter(|&&n| self.units[n].when == When::Success)
                    .peekable();
                unit.when != When::Failure
                    || plan_needs.peek().is_none()
                    || plan_needs.any(|&n| self.status[n] == Some(Status::Failed))
            })
            .collect();
        self.schedule(&after, Phase::After).await;
        let after_failed = after
            .iter()
            .any(|&i| self.status[i] == Some(Status::Failed));
        let status = if !hooks_ok || self.domain_hooks_failed {
            RunStatus::RollbackIncomplete
        } else if self.resumed.is_some() {
            RunStatus::Recovered
        } else if self.signals > 0 {
            RunStatus::Interrupted
        } else if failed || after_failed {
            RunStatus::Failed
        } else if !self.failed_domains.is_empty() {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        self.report(status)
    }

    fn report(self, status: RunStatus) -> Report {
        let duration = self.now();
        Report {
            status,
            stopped: self.stopped,
            units: self
                .status
                .into_iter()
                .zip(self.runs.into_iter().zip(self.hooks))
                .zip(self.skipped)
                .map(|((status, (run, hook)), skipped)| UnitReport {
                    status: status.unwrap_or(Status::Skipped),
                    run: run.map(|p| p.report),
                    hook: hook.map(|p| p.report),
                    skipped,
                })
                .collect(),
            rollback: self.rollback,
            held: self.held,
            failed_domains: self.failed_domains,
            outputs: self.outputs,
            duration,
        }
    }

    fn members(&self, when: impl Fn(When) -> bool) -> Vec<usize> {
        (0..self.units.len())
            .filter(|&i| when(self.units[i].when))
            .collect()
    }

    /// Runs `members` as a DAG: each starts once its needs (among `members`)
    /// succeeded and a slot is free. In the plan phase a failure stops the
    /// scheduling; after it, a failure only skips the units that need it.
    async fn schedule(&mut self, members: &[usize], phase: Phase) {
        if members.is_empty() {
            return;
        }
        let mut member = vec![false; self.units.len()];
        for &i in members {
            member[i] = true;
        }
        // Longest chain of dependents from each unit, within the phase.
        let mut height = vec![0usize; self.units.len()];
        for &i in self.order.iter().rev() {
            if member[i] {
                height[i] = 1 + self.dependents[i]
                    .iter()
                    .filter(|&&d| member[d])
                    .map(|&d| height[d])
                    .max()
                    .unwrap_or(0);
            }
        }
        let mut waiting: Vec<usize> = (0..self.units.len())
            .map(|i| self.units[i].needs.iter().filter(|&&n| member[n]).count())
            .collect();
        let ready = |i: usize| Ready {
            height: height[i],
            index: std::cmp::Reverse(i),
        };
        let mut queue: BinaryHeap<Ready> = members
            .iter()
            .filter(|&&i| waiting[i] == 0)
            .map(|&i| ready(i))
            .collect();
        let stops = Stops {
            no_retry: CancellationToken::new(),
            kill: CancellationToken::new(),
        };
        let mut running = 0usize;
        // Failure domains: which are dead, how many of their steps still run,
        // which wait for their rollback, and the one rolling back now.
        let mut dead = vec![false; self.domains.len()];
        let mut running_in = vec![0usize; self.domains.len()];
        let mut waiting_rollback: VecDeque<usize> = VecDeque::new();
        let mut rolling: Option<DomainRollback> = None;
        // Whether a unit has let its dependents know it is done.
        let mut released = vec![false; self.units.len()];
        // An interrupt that came before the phase (while the run was set up)
        // stops it before anything starts.
        while let Ok(interrupt) = self.interrupts.try_recv() {
            self.interrupt(interrupt, phase, running, &stops);
        }
        loop {
            if rolling.is_none()
                && !stops.no_retry.is_cancelled()
                && let Some(d) = waiting_rollback.pop_front()
            {
                let hooks = self.domain_hooks(d);
                rolling = Some(DomainRollback {
                    domain: d,
                    hooks,
                    ok: true,
                });
            }
            if let Some(domain) = rolling.as_mut().filter(|_| !stops.no_retry.is_cancelled()) {
                let ongoing = self.ids.values().any(|t| matches!(t, Task::Hook(_)));
                if !ongoing {
                    if let Some(i) = self.next_domain_hook(domain, &stops) {
                        tracing::debug!(step = %self.units[i].id, "domain hook");
                        running += 1;
                    } else {
                        let d = domain.domain;
                        rolling = None;
                        // The domain is settled: what needed it elsewhere goes on.
                        for u in 0..self.units.len() {
                            if self.units[u].domain == Some(d) && member[u] && !released[u] {
                                released[u] = true;
                                for &dd in &self.dependents[u] {
                                    if member[dd] && self.units[dd].domain != Some(d) {
                                        waiting[dd] -= 1;
                                        if waiting[dd] == 0 {
                                            queue.push(ready(dd));
                                        }
                                    }
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            while !stops.no_retry.is_cancelled() && running < self.jobs {
                let Some(Ready {
                    index: std::cmp::Reverse(i),
                    ..
                }) = queue.pop()
                else {
                    break;
                };
                if let Some(why) = self.tasks.skip(i, &self.outputs) {
                    // Its condition does not hold: it changes nothing, and
                    // what needs it goes on.
                    let why = self.masker.mask(&why);
                    self.status[i] = Some(Status::Skipped);
                    self.sink.event(Event::StepSkipped {
                        step: self.units[i].id.clone(),
                        phase,
                        reason: why.clone(),
                    });
                    self.skipped[i] = Some(why);
                    released[i] = true;
                    let free = release(&self.dependents[i], &member, &mut waiting);
                    queue.extend(free.into_iter().map(ready));
                    continue;
                }
                if let Some(d) = self.units[i].domain {
                    if dead[d] {
                        continue;
                    }
                    running_in[d] += 1;
                }
                tracing::debug!(step = %self.units[i].id, height = height[i], running, "start");
                let command = self.launch(Task::Step(i), &stops);
                self.sink.event(Event::StepStarted {
                    step: self.units[i].id.clone(),
                    phase,
                    attempt: 1,
                    command,
                });
                running += 1;
            }
            if running == 0 {
                if rolling.is_some() || !waiting_rollback.is_empty() {
                    if stops.no_retry.is_cancelled() {
                        // The run's own rollback takes over the hooks not run.
                        rolling = None;
                        waiting_rollback.clear();
                    }
                    continue;
                }
                break;
            }
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg, phase),
                Some(joined) = self.running.join_next_with_id() => {
                    let (task, succeeded) = self.finish(joined, phase);
                    running -= 1;
                    let i = task.unit();
                    tracing::debug!(step = %self.units[i].id, succeeded, running, "done");
                    if let Task::Hook(_) = task {
                        if let Some(domain) = rolling.as_mut() {
                            domain.ok &= succeeded;
                            self.domain_hooks_failed |= !succeeded;
                        }
                        continue;
                    }
                    let domain = self.units[i].domain;
                    if let Some(d) = domain {
                        running_in[d] -= 1;
                    }
                    let dead_domain = domain.filter(|&d| dead[d]);
                    if succeeded && dead_domain.is_none() {
                        released[i] = true;
                        let free = release(&self.dependents[i], &member, &mut waiting);
                        queue.extend(free.into_iter().map(ready));
                    } else if !succeeded
                        && phase == Phase::Plan
                        && !stops.no_retry.is_cancelled()
                        && let Some(d) = domain
                        && (dead[d] || self.failed_domains.len() < self.budget)
                    {
                        if !dead[d] {
                            dead[d] = true;
                            self.failed_domains.push(d);
                            self.sink.event(Event::DomainFailed {
                                domain: self.domains[d].clone(),
                                step: self.units[i].id.clone(),
                                failed: self.failed_domains.len(),
                                allowed: self.budget,
                            });
                        }
                    } else if !succeeded && phase == Phase::Plan && !stops.no_retry.is_cancelled() {
                        stops.no_retry.cancel();
                        self.stop(format!("step `{}` failed", self.units[i].id), running);
                    }
                    if let Some(d) = dead_domain.or(domain.filter(|&d| dead[d]))
                        && running_in[d] == 0
                        && !waiting_rollback.contains(&d)
                        && rolling.as_ref().is_none_or(|r| r.domain != d)
                    {
                        waiting_rollback.push_back(d);
                    }
                }
                Some(interrupt) = self.interrupts.recv() => {
                    self.interrupt(interrupt, phase, running, &stops);
                }
            }
        }
    }

    /// A failed domain's hooks, as the run's rollback would order them.
    fn domain_hooks(&self, d: usize) -> VecDeque<usize> {
        self.rollback_order()
            .into_iter()
            .filter(|&i| self.units[i].domain == Some(d))
            .collect()
    }

    /// Starts the next hook of a domain's rollback (a reopening hook is held
    /// once one failed); returns its unit, or `None` when none is left.
    fn next_domain_hook(&mut self, domain: &mut DomainRollback, stops: &Stops) -> Option<usize> {
        while let Some(i) = domain.hooks.pop_front() {
            let reopens = self.units[i]
                .hook
                .is_some_and(|h| h.role == HookRole::Reopen);
            self.completed.retain(|&c| c != i);
            if reopens && !domain.ok {
                self.hold(i);
                continue;
            }
            let command = self.launch(Task::Hook(i), stops);
            self.rollback.push(i);
            self.sink.event(Event::RollbackStarted {
                step: self.units[i].id.clone(),
                command,
            });
            return Some(i);
        }
        None
    }

    fn hold(&mut self, i: usize) {
        let reason = "an earlier rollback hook failed, so this hook, which gives the system back to its users, is not run: they keep the closed system instead of a half-undone one".to_owned();
        self.sink.event(Event::RollbackHeld {
            step: self.units[i].id.clone(),
            reason: reason.clone(),
        });
        self.held.push(Held { unit: i, reason });
    }

    /// The completed units with hooks, last completed first; hooks that reopen
    /// the system to users after all others.
    fn rollback_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = self
            .completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.units[i].hook.is_some())
            .collect();
        // Stable: each group keeps the reverse order of completion.
        order.sort_by_key(|&i| {
            self.units[i]
                .hook
                .is_some_and(|h| h.role == HookRole::Reopen)
        });
        order
    }

    fn stop(&mut self, reason: String, running: usize) {
        let then = if running > 0 {
            format!("{running} running step(s) finish, then the rollback runs")
        } else {
            "the rollback runs now".to_owned()
        };
        self.sink.event(Event::Stopping {
            reason: format!("{reason}: nothing new starts; {then}"),
        });
        self.stopped.get_or_insert(reason);
    }

    fn interrupt(&mut self, interrupt: Interrupt, phase: Phase, running: usize, stops: &Stops) {
        let signal = interrupt.signal;
        self.signals += 1;
        if phase == Phase::Plan {
            self.stopped
                .get_or_insert_with(|| format!("interrupted by {signal}"));
        }
        let next = if phase == Phase::Plan {
            "then the rollback runs"
        } else {
            "then the run ends"
        };
        let reason = if interrupt.at_once {
            // Nothing running may go on: as after a second signal.
            stops.no_retry.cancel();
            stops.kill.cancel();
            format!("interrupted by {signal}: killing {running} running step(s), {next}")
        } else if stops.no_retry.is_cancelled() {
            stops.kill.cancel();
            format!("interrupted again by {signal}: killing {running} running step(s), {next}")
        } else {
            stops.no_retry.cancel();
            if running > 0 {
                format!(
                    "interrupted by {signal}: nothing new starts; {running} running step(s) finish (interrupt again to kill them), {next}"
                )
            } else {
                format!("interrupted by {signal}: nothing new starts; {next}")
            }
        };
        self.sink.event(Event::Stopping { reason });
    }

    /// Runs the hooks of the succeeded plan units, last completed first, one at a
    /// time; hooks that reopen the system to users come after all others, and are
    /// held once a hook failed. A failed hook is reported and the others still
    /// run. Interrupts are noted but do not stop a rollback: every hook has its
    /// own timeout, and half a rollback is the worst state to leave.
    async fn roll_back(&mut self) -> bool {
        let order = self.rollback_order();
        let stops = Stops {
            no_retry: CancellationToken::new(),
            kill: CancellationToken::new(),
        };
        let mut all_ok = true;
        for i in order {
            let reopens = self.units[i]
                .hook
                .is_some_and(|h| h.role == HookRole::Reopen);
            if reopens && !all_ok {
                self.hold(i);
                continue;
            }
            let command = self.launch(Task::Hook(i), &stops);
            self.rollback.push(i);
            self.sink.event(Event::RollbackStarted {
                step: self.units[i].id.clone(),
                command,
            });
            loop {
                tokio::select! {
                    Some(msg) = self.rx.recv() => self.handle(msg, Phase::Rollback),
                    Some(joined) = self.running.join_next_with_id() => {
                        let (_, ok) = self.finish(joined, Phase::Rollback);
                        all_ok &= ok;
                        break;
                    }
                    Some(interrupt) = self.interrupts.recv() => {
                        self.signals += 1;
                        self.sink.event(Event::Stopping {
                            reason: format!(
                                "{} during the rollback: the rollback goes on, so the system is not left half undone (each hook has its timeout)",
                                interrupt.signal
                            ),
                        });
                    }
                }
            }
        }
        all_ok
    }

    /// Starts the attempts of a task; returns its command as shown.
    fn launch(&mut self, task: Task, stops: &Stops) -> String {
        let prepared = self.tasks.prepare(task, &self.outputs);
        let unit = &self.units[task.unit()];
        let settings = match (task, unit.hook) {
            (Task::Hook(_), Some(hook)) => hook.settings,
            _ => unit.settings,
        };
        let progress = Progress {
            report: TaskReport {
                command: prepared.command.clone(),
                attempts: Vec::new(),
                started: self.now(),
                ended: self.now(),
                tail: VecDeque::new(),
            },
            open: None,
        };
        *self.progress_slot(task) = Some(progress);
        let handle = self.running.spawn(attempts(
            task,
            prepared.work,
            settings,
            self.tx.clone(),
            stops.clone(),
        ));
        self.ids.insert(handle.id(), task);
        prepared.command
    }

    fn progress_slot(&mut self, task: Task) -> &mut Option<Progress> {
        match task {
            Task::Step(i) => &mut self.runs[i],
            Task::Hook(i) => &mut self.hooks[i],
        }
    }

    fn progress(&mut self, task: Task) -> Option<&mut Progress> {
        self.progress_slot(task).as_mut()
    }

    fn phase_of(task: Task, phase: Phase) -> Phase {
        match task {
            Task::Step(_) => phase,
            Task::Hook(_) => Phase::Rollback,
        }
    }

    /// Records what a task said.
    fn handle(&mut self, msg: Msg, phase: Phase) {
        match msg {
            Msg::Line(task, line) => {
                let text = self.masker.mask(&line.text);
                if let Some(progress) = self.progress(task) {
                    progress.line(format!("[{}] {text}", line.stream.tag()));
                }
                self.sink.event(Event::Output {
                    step: self.units[task.unit()].id.clone(),
                    phase: Self::phase_of(task, phase),
                    stream: line.stream,
                    line: text,
                });
            }
            Msg::AttemptStarted(task, attempt) => {
                let Some(progress) = self.progress(task) else {
                    return;
                };
                progress.open = Some(attempt);
                let command = progress.report.command.clone();
                if attempt > 1 {
                    self.sink.event(Event::StepStarted {
                        step: self.units[task.unit()].id.clone(),
                        phase: Self::phase_of(task, phase),
                        attempt,
                        command,
                    });
                }
            }
            Msg::AttemptEnded {
                task,
                attempt,
                outcome,
                duration,
                retry_in,
            } => self.attempt_ended(task, attempt, &outcome, duration, retry_in, phase),
        }
    }

    fn attempt_ended(
        &mut self,
        task: Task,
        attempt: u32,
        outcome: &Outcome,
        duration: Duration,
        retry_in: Option<Duration>,
        phase: Phase,
    ) {
        let unit = &self.units[task.unit()];
        let attempts = match (task, unit.hook) {
            (Task::Hook(_), Some(hook)) => hook.settings.retries,
            _ => unit.settings.retries,
        } + 1;
        let id = unit.id.clone();
        let succeeded = outcome.end.success();
        let reason = (!succeeded).then(|| {
            let reason = match &outcome.detail {
                Some(detail) => format!("{}; {detail}", outcome.end.reason()),
                None => outcome.end.reason(),
            };
            self.masker.mask(&reason)
        });
        let transport = outcome.transport.as_deref().map(|t| self.masker.mask(t));
        if let Some(progress) = self.progress(task) {
            progress.open = None;
            progress.report.attempts.push(AttemptRecord {
                attempt,
                succeeded,
                exit_code: outcome.end.exit_code(),
                reason: reason.clone(),
                duration_ms: millis(duration),
                transport,
                never_started: outcome.end.never_started(),
            });
        }
        if let Some(reason) = reason {
            self.sink.event(Event::AttemptFailed {
                step: id,
                phase: Self::phase_of(task, phase),
                attempt,
                attempts,
                reason,
                exit_code: outcome.end.exit_code(),
                retry_in_ms: retry_in.map(millis),
            });
        }
    }

    /// A task is done, or its task panicked: records its end after every message
    /// it sent, and returns `(task, succeeded)`.
    fn finish(&mut self, joined: Result<(Id, Done), JoinError>, phase: Phase) -> (Task, bool) {
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, phase);
        }
        let done = match joined {
            Ok((id, done)) => {
                self.ids.remove(&id);
                done
            }
            Err(error) => {
                let task = self.ids.remove(&error.id());
                let Some(task) = task else {
                    unreachable!("a task the dispatcher did not start")
                };
                let why = panic_message(error);
                tracing::debug!(?task, %why, "task failed");
                let attempt = self.progress(task).map_or(1, |p| {
                    p.open.unwrap_or_else(|| {
                        u32::try_from(p.report.attempts.len())
                            .unwrap_or(u32::MAX)
                            .saturating_add(1)
                    })
                });
                let outcome = Outcome::new(End::Internal(why));
                self.attempt_ended(task, attempt, &outcome, Duration::ZERO, None, phase);
                Done {
                    task,
                    succeeded: false,
                    captured: None,
                }
            }
        };
        let task = done.task;
        let i = task.unit();
        let id = self.units[i].id.clone();
        let now = self.now();
        let (attempts, duration_ms, reason) = match self.progress(task) {
            Some(progress) => {
                progress.report.ended = now;
                (
                    u32::try_from(progress.report.attempts.len()).unwrap_or(u32::MAX),
                    millis(progress.report.duration()),
                    progress
                        .report
                        .attempts
                        .last()
                        .and_then(|a| a.reason.clone()),
                )
            }
            None => (0, 0, None),
        };
        let reason = (!done.succeeded).then_some(reason).flatten();
        match task {
            Task::Step(_) => {
                let status = if done.succeeded {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                self.status[i] = Some(status);
                // A step that failed partway is rolled back too when its hook
                // asks for it: it counts as completed now, its hook first. One
                // whose command never started changed nothing: no hook.
                let never_started = self
                    .progress(task)
                    .is_some_and(|p| p.report.never_started());
                let partway = !done.succeeded
                    && !never_started
                    && self.units[i].hook.is_some_and(|h| h.also_if_failed);
                if phase == Phase::Plan && (done.succeeded || partway) {
                    self.completed.push(i);
                }
                if done.succeeded
                    && let Some(text) = done.captured
                {
                    let output = self.masker.mask(&text);
                    self.sink.event(Event::Captured {
                        step: id.clone(),
                        masked: output != text,
                        output,
                    });
                    self.outputs.insert(id.clone(), text);
                }
                self.sink.event(Event::StepFinished {
                    step: id,
                    phase,
                    status,
                    attempts,
                    duration_ms,
                    reason,
                    never_started: !done.succeeded && never_started,
                });
            }
            Task::Hook(_) => {
                // A failed step stays failed; its hook's result is its own.
                if self.status[i] != Some(Status::Failed) {
                    self.status[i] = Some(if done.succeeded {
                        Status::RolledBack
                    } else {
                        Status::RollbackFailed
                    });
                }
                self.sink.event(Event::RollbackFinished {
                    step: id,
                    succeeded: done.succeeded,
                    attempts,
                    duration_ms,
                    reason,
                });
            }
        }
        (task, done.succeeded)
    }
}

fn panic_message(error: JoinError) -> String {
    if !error.is_panic() {
        return "its task was cancelled".to_owned();
    }
    let payload = error.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("its task panicked: {text}")
}

/// Units in an order where every unit comes after its needs (Kahn).
fn topological(units: &[Unit], dependents: &[Vec<usize>]) -> Vec<usize> {
    let mut waiting: Vec<usize> = units.iter().map(|u| u.needs.len()).collect();
    let mut queue: VecDeque<usize> = (0..units.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(units.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                queue.push_back(d);
            }
        }
    }
    order
}
