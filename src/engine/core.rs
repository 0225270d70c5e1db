//! The engine's decisions, as a synchronous state machine: what the run does
//! next is [`Core::handle`] of what just happened, a list of [`Command`]s for
//! the loop that owns the tasks (see [`super::dispatcher`]) to carry out. It
//! runs no task, reads no clock and prints nothing, so it is tested without a
//! runtime, and `runner recover` replays a dead run's journal into it (the
//! same inputs in the same order give the same state), tells it the run died
//! ([`Input::Died`]), and carries out what it returns from there.
//!
//! The run has three phases: the plan's units, started the moment their needs
//! succeeded and a job slot is free (a failure in a failure domain within its
//! budget rolls back that domain's units, one hook at a time, and the rest goes
//! on); if the plan stopped (a failure, an interrupt, runner's death), the
//! rollback hooks of the units that completed, last completed first, one at a
//! time; then the `when = "failure"` / `"always"` units.

use std::collections::{BinaryHeap, VecDeque};

use super::{Event, Held, HookRole, Phase, RunStatus, Status, Task, Unit, When};

/// What happened, for the core to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// The run begins: its first units start (see [`Core::start`]).
    Start,
    /// A task's attempts are over. `never_started`: its command never
    /// started (it changed nothing, so its hook has nothing to undo).
    Finished {
        task: Task,
        succeeded: bool,
        never_started: bool,
    },
    /// A step the core started does not run: its condition does not hold.
    Skipped { unit: usize },
    /// A signal (or what stops a run as one does: a host's lock lost, the
    /// journal that cannot be written). `at_once`: nothing may go on running.
    Interrupt { signal: String, at_once: bool },
    /// runner died, and `recover` takes over from the state replayed so far:
    /// of the tasks running then, `started` had begun (the journal says so);
    /// the others never did.
    Died { started: Vec<Task> },
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Start a unit's step: unless its condition does not hold (then the loop
    /// answers [`Input::Skipped`]).
    Start(usize),
    /// Start a unit's rollback hook.
    Undo(usize),
    /// A new phase: what starts from now on belongs to it; nothing runs.
    Enter(Phase),
    /// Running tasks make no further attempt.
    NoRetry,
    /// Running tasks end now.
    Kill,
    /// Tell the run's sink.
    Say(Event),
    /// The run is over.
    End(RunStatus),
}

/// Units that can start: the longest remaining chain first, then the order given,
/// so the critical path never waits behind a short branch.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    height: usize,
    index: std::cmp::Reverse<usize>,
}

/// The units of a phase, as a DAG being run.
#[derive(Debug)]
struct Schedule {
    member: Vec<bool>,
    height: Vec<usize>,
    /// Needs not yet met, per unit.
    waiting: Vec<usize>,
    queue: BinaryHeap<Ready>,
    /// Whether a unit has let its dependents know it is done.
    released: Vec<bool>,
}

/// Hooks run one at a time: a failed domain's, or the run's rollback.
#[derive(Debug)]
struct Rollback {
    /// The domain, for a domain's rollback within the plan phase.
    domain: Option<usize>,
    hooks: VecDeque<usize>,
    /// The hook running now.
    current: Option<usize>,
    ok: bool,
}

#[derive(Debug)]
pub(crate) struct Core<'a> {
    units: &'a [Unit],
    jobs: usize,
    domains: &'a [String],
    budget: usize,
    dependents: Vec<Vec<usize>>,
    /// Units in an order where needs come first.
    order: Vec<usize>,
    phase: Option<Phase>,
    pub(super) status: Vec<Option<Status>>,
    /// Plan units in order of completion (successes, and failures partway
    /// whose hook runs also then), for the rollback.
    completed: Vec<usize>,
    schedule: Option<Schedule>,
    running: Vec<Task>,
    /// Nothing new starts in this phase (a failure, a first interrupt).
    stopping: bool,
    pub(super) stopped: Option<String>,
    pub(super) signals: u32,
    dead: Vec<bool>,
    running_in: Vec<usize>,
    waiting_rollback: VecDeque<usize>,
    rolling: Option<Rollback>,
    pub(super) failed_domains: Vec<usize>,
    /// A rollback hook failed (a domain's, or the run's).
    hooks_failed: bool,
    /// Units whose hooks ran, in the order they ran.
    pub(super) rollback: Vec<usize>,
    pub(super) held: Vec<Held>,
    /// A recovery: whether the dead run had finished its plan.
    resumed: Option<bool>,
    ended: bool,
}

impl<'a> Core<'a> {
    pub(crate) fn new(
        units: &'a [Unit],
        jobs: usize,
        domains: &'a [String],
        budget: usize,
    ) -> Self {
        let mut dependents = vec![Vec::new(); units.len()];
        for (i, unit) in units.iter().enumerate() {
            for &need in &unit.needs {
                dependents[need].push(i);
            }
        }
        Self {
            order: topological(units, &dependents),
            units,
            jobs: jobs.max(1),
            domains,
            budget,
            dependents,
            phase: None,
            status: vec![None; units.len()],
            completed: Vec::new(),
            schedule: None,
            running: Vec::new(),
            stopping: false,
            stopped: None,
            signals: 0,
            dead: vec![false; domains.len()],
            running_in: vec![0; domains.len()],
            waiting_rollback: VecDeque::new(),
            rolling: None,
            failed_domains: Vec::new(),
            hooks_failed: false,
            rollback: Vec::new(),
            held: Vec::new(),
            resumed: None,
            ended: false,
        }
    }

    /// Begins the run: its first commands.
    pub(crate) fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.phase.is_none() {
            self.enter(Phase::Plan, &mut out);
            self.pump(&mut out);
        }
        out
    }

    /// What follows from `input`.
    pub(crate) fn handle(&mut self, input: Input) -> Vec<Command> {
        if input == Input::Start {
            return self.start();
        }
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        if self.phase.is_none() {
            // An input before the start (an interrupt while the run was set
            // up) applies to the plan: it stops it before anything starts.
            self.enter(Phase::Plan, &mut out);
        }
        match input {
            Input::Finished {
                task,
                succeeded,
                never_started,
            } => {
                self.running.retain(|&t| t != task);
                match task {
                    Task::Step(i) => self.step_finished(i, succeeded, never_started, &mut out),
                    Task::Hook(i) => self.hook_finished(i, succeeded),
                }
            }
            Input::Skipped { unit } => {
                self.running.retain(|&t| t != Task::Step(unit));
                self.status[unit] = Some(Status::Skipped);
                if let Some(d) = self.units[unit].domain {
                    self.running_in[d] -= 1;
                }
                self.release(unit);
            }
            Input::Interrupt { signal, at_once } => self.interrupt(&signal, at_once, &mut out),
            Input::Died { started } => self.died(&started, &mut out),
            Input::Start => {}
        }
        self.pump(&mut out);
        out
    }

    fn enter(&mut self, phase: Phase, out: &mut Vec<Command>) {
        self.phase = Some(phase);
        self.stopping = false;
        out.push(Command::Enter(phase));
        match phase {
            Phase::Plan => {
                let members = self.members(|w| w == When::Success);
                self.schedule = Some(self.schedule_of(&members));
            }
            Phase::Rollback => {
                self.schedule = None;
                self.rolling = Some(Rollback {
                    domain: None,
                    hooks: self.rollback_order().into(),
                    current: None,
                    ok: true,
                });
            }
            Phase::After => {
                self.rolling = None;
                let failed = self.stopped.is_some();
                // A `failure` step that needs plan steps runs when one of them
                // failed (as in GitHub Actions); without such needs, when the
                // run failed. A recovery runs what its dead run had not.
                let members: Vec<usize> = self
                    .members(|w| w == When::Always || (failed && w == When::Failure))
                    .into_iter()
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
                self.schedule = Some(self.schedule_of(&members));
            }
        }
    }

    fn members(&self, when: impl Fn(When) -> bool) -> Vec<usize> {
        (0..self.units.len())
            .filter(|&i| when(self.units[i].when))
            .collect()
    }

    fn schedule_of(&self, members: &[usize]) -> Schedule {
        let n = self.units.len();
        let mut member = vec![false; n];
        for &i in members {
            member[i] = true;
        }
        // Longest chain of dependents from each unit, within the phase.
        let mut height = vec![0usize; n];
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
        let waiting: Vec<usize> = (0..n)
            .map(|i| self.units[i].needs.iter().filter(|&&x| member[x]).count())
            .collect();
        let queue = members
            .iter()
            .filter(|&&i| waiting[i] == 0)
            .map(|&i| Ready {
                height: height[i],
                index: std::cmp::Reverse(i),
            })
            .collect();
        Schedule {
            member,
            height,
            waiting,
            queue,
            released: vec![false; n],
        }
    }

    /// A unit is done (or skipped) for the units that need it: one need fewer
    /// each; those that need nothing more can start.
    fn release(&mut self, unit: usize) {
        let Some(s) = self.schedule.as_mut() else {
            return;
        };
        if s.released[unit] {
            return;
        }
        s.released[unit] = true;
        for &d in &self.dependents[unit] {
            if s.member[d] {
                s.waiting[d] -= 1;
                if s.waiting[d] == 0 {
                    s.queue.push(Ready {
                        height: s.height[d],
                        index: std::cmp::Reverse(d),
                    });
                }
            }
        }
    }

    /// Starts what can start, and moves to the next phase when this one is done.
    fn pump(&mut self, out: &mut Vec<Command>) {
        while !self.ended {
            match self.phase {
                None => return,
                Some(Phase::Plan) => {
                    self.domain_rollbacks(out);
                    self.fill(out);
                    if !self.running.is_empty() {
                        return;
                    }
                    if self.rolling.is_some() || !self.waiting_rollback.is_empty() {
                        if !self.stopping {
                            // A domain's next hook starts on the next turn.
                            continue;
                        }
                        // The run's own rollback takes over the hooks not run.
                        self.rolling = None;
                        self.waiting_rollback.clear();
                    }
                    if self.stopped.is_some() {
                        self.enter(Phase::Rollback, out);
                    } else {
                        self.enter(Phase::After, out);
                    }
                }
                Some(Phase::Rollback) => {
                    if !self.running.is_empty() || self.next_hook(out) {
                        return;
                    }
                    self.enter(Phase::After, out);
                }
                Some(Phase::After) => {
                    self.fill(out);
                    if self.running.is_empty() {
                        let status = self.final_status();
                        self.ended = true;
                        out.push(Command::End(status));
                    }
                    return;
                }
            }
        }
    }

    /// Starts ready units while slots are free and nothing stops the phase.
    fn fill(&mut self, out: &mut Vec<Command>) {
        while !self.stopping && self.running.len() < self.jobs {
            let Some(Ready {
                index: std::cmp::Reverse(i),
                ..
            }) = self.schedule.as_mut().and_then(|s| s.queue.pop())
            else {
                break;
            };
            if let Some(d) = self.units[i].domain {
                if self.dead[d] {
                    continue;
                }
                self.running_in[d] += 1;
            }
            self.running.push(Task::Step(i));
            out.push(Command::Start(i));
        }
    }

    /// In the plan phase: a failed domain's rollback, one hook at a time; once
    /// it is done, what needed the domain elsewhere goes on.
    fn domain_rollbacks(&mut self, out: &mut Vec<Command>) {
        if self.stopping {
            return;
        }
        if self.rolling.is_none()
            && let Some(d) = self.waiting_rollback.pop_front()
        {
            let hooks = self
                .rollback_order()
                .into_iter()
                .filter(|&i| self.units[i].domain == Some(d))
                .collect();
            self.rolling = Some(Rollback {
                domain: Some(d),
                hooks,
                current: None,
                ok: true,
            });
        }
        if self.rolling.is_none() || self.next_hook(out) {
            return;
        }
        let Some(Rollback {
            domain: Some(d), ..
        }) = self.rolling.take()
        else {
            return;
        };
        // The domain is settled: what needed it elsewhere goes on.
        for u in 0..self.units.len() {
            if self.units[u].domain == Some(d) {
                self.release(u);
            }
        }
    }

    /// Starts the next hook of the rollback under way, unless one runs:
    /// whether one runs now. A hook that reopens the system to users is held
    /// once one failed.
    fn next_hook(&mut self, out: &mut Vec<Command>) -> bool {
        let Some(rolling) = self.rolling.as_mut() else {
            return false;
        };
        if rolling.current.is_some() {
            return true;
        }
        while let Some(i) = rolling.hooks.pop_front() {
            self.completed.retain(|&c| c != i);
            let reopens = self.units[i]
                .hook
                .is_some_and(|h| h.role == HookRole::Reopen);
            if reopens && !rolling.ok {
                let reason = "an earlier rollback hook failed, so this hook, which gives the system back to its users, is not run: they keep the closed system instead of a half-undone one".to_owned();
                out.push(Command::Say(Event::RollbackHeld {
                    step: self.units[i].id.clone(),
                    reason: reason.clone(),
                }));
                self.held.push(Held { unit: i, reason });
                continue;
            }
            rolling.current = Some(i);
            self.rollback.push(i);
            self.running.push(Task::Hook(i));
            out.push(Command::Undo(i));
            return true;
        }
        false
    }

    /// The completed units with hooks, last completed first; hooks that close
    /// the system to users before all others, hooks that reopen it after.
    fn rollback_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = self
            .completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| self.units[i].hook.is_some())
            .collect();
        // Stable: each group keeps the reverse order of completion.
        order.sort_by_key(|&i| match self.units[i].hook.map(|h| h.role) {
            Some(HookRole::Close) => 0,
            Some(HookRole::Undo) | None => 1,
            Some(HookRole::Reopen) => 2,
        });
        order
    }

    fn step_finished(
        &mut self,
        i: usize,
        succeeded: bool,
        never_started: bool,
        out: &mut Vec<Command>,
    ) {
        let phase = self.phase.unwrap_or(Phase::Plan);
        self.status[i] = Some(if succeeded {
            Status::Succeeded
        } else {
            Status::Failed
        });
        // A step that failed partway is rolled back too when its hook asks
        // for it: it counts as completed now, its hook first. One whose
        // command never started changed nothing: no hook.
        let partway =
            !succeeded && !never_started && self.units[i].hook.is_some_and(|h| h.also_if_failed);
        if phase == Phase::Plan && (succeeded || partway) {
            self.completed.push(i);
        }
        let domain = self.units[i].domain;
        if let Some(d) = domain {
            self.running_in[d] -= 1;
        }
        let dead_domain = domain.filter(|&d| self.dead[d]);
        if succeeded && dead_domain.is_none() {
            self.release(i);
        } else if !succeeded
            && phase == Phase::Plan
            && !self.stopping
            && let Some(d) = domain
            && (self.dead[d] || self.failed_domains.len() < self.budget)
        {
            if !self.dead[d] {
                self.dead[d] = true;
                self.failed_domains.push(d);
                out.push(Command::Say(Event::DomainFailed {
                    domain: self.domains[d].clone(),
                    step: self.units[i].id.clone(),
                    failed: self.failed_domains.len(),
                    allowed: self.budget,
                }));
            }
        } else if !succeeded && phase == Phase::Plan && !self.stopping {
            self.stopping = true;
            out.push(Command::NoRetry);
            self.stop(format!("step `{}` failed", self.units[i].id), out);
        }
        if let Some(d) = domain.filter(|&d| self.dead[d])
            && self.running_in[d] == 0
            && !self.waiting_rollback.contains(&d)
            && self.rolling.as_ref().is_none_or(|r| r.domain != Some(d))
        {
            self.waiting_rollback.push_back(d);
        }
    }

    fn hook_finished(&mut self, i: usize, succeeded: bool) {
        // A failed step stays failed; its hook's result is its own.
        if self.status[i] != Some(Status::Failed) {
            self.status[i] = Some(if succeeded {
                Status::RolledBack
            } else {
                Status::RollbackFailed
            });
        }
        if let Some(rolling) = self.rolling.as_mut()
            && rolling.current == Some(i)
        {
            rolling.current = None;
            rolling.ok &= succeeded;
            self.hooks_failed |= !succeeded;
        }
    }

    fn stop(&mut self, reason: String, out: &mut Vec<Command>) {
        let running = self.running.len();
        let then = if running > 0 {
            format!("{running} running step(s) finish, then the rollback runs")
        } else {
            "the rollback runs now".to_owned()
        };
        out.push(Command::Say(Event::Stopping {
            reason: format!("{reason}: nothing new starts; {then}"),
        }));
        self.stopped.get_or_insert(reason);
    }

    fn interrupt(&mut self, signal: &str, at_once: bool, out: &mut Vec<Command>) {
        self.signals += 1;
        let phase = self.phase.unwrap_or(Phase::Plan);
        if phase == Phase::Rollback {
            // Half a rollback is the worst state to leave: it goes on (each
            // hook has its own timeout).
            out.push(Command::Say(Event::Stopping {
                reason: format!(
                    "{signal} during the rollback: the rollback goes on, so the system is not left half undone (each hook has its timeout)"
                ),
            }));
            return;
        }
        if phase == Phase::Plan {
            self.stopped
                .get_or_insert_with(|| format!("interrupted by {signal}"));
        }
        let next = if phase == Phase::Plan {
            "then the rollback runs"
        } else {
            "then the run ends"
        };
        let running = self.running.len();
        let reason = if at_once || self.stopping {
            let again = if self.stopping && !at_once {
                " again"
            } else {
                ""
            };
            self.stopping = true;
            out.push(Command::NoRetry);
            out.push(Command::Kill);
            format!("interrupted{again} by {signal}: killing {running} running step(s), {next}")
        } else {
            self.stopping = true;
            out.push(Command::NoRetry);
            if running > 0 {
                format!(
                    "interrupted by {signal}: nothing new starts; {running} running step(s) finish (interrupt again to kill them), {next}"
                )
            } else {
                format!("interrupted by {signal}: nothing new starts; {next}")
            }
        };
        out.push(Command::Say(Event::Stopping { reason }));
    }

    /// runner died: what ran then was cut short. A step whose command had
    /// begun failed (its hook runs when it runs also for a failed step); one
    /// that had not, never ran. A hook cut short runs again. A plan whose
    /// last step had succeeded is finished, and nothing of it is undone.
    fn died(&mut self, started: &[Task], out: &mut Vec<Command>) {
        let running = std::mem::take(&mut self.running);
        let mut cut = Vec::new();
        for task in running {
            match task {
                Task::Step(i) => {
                    if let Some(d) = self.units[i].domain {
                        self.running_in[d] -= 1;
                    }
                    if started.contains(&task) {
                        cut.push(format!("`{}`", self.units[i].id));
                        self.status[i] = Some(Status::Failed);
                        let plan = self.units[i].when == When::Success;
                        if plan && self.units[i].hook.is_some_and(|h| h.also_if_failed) {
                            self.completed.push(i);
                        }
                    }
                }
                Task::Hook(i) => {
                    self.rollback.retain(|&r| r != i);
                    if let Some(rolling) = self.rolling.as_mut().filter(|r| r.current == Some(i)) {
                        rolling.current = None;
                        rolling.hooks.push_front(i);
                        if rolling.domain.is_some() {
                            // The run's rollback takes it over.
                            self.completed.push(i);
                        }
                    }
                }
            }
        }
        let plan_done = self
            .units
            .iter()
            .zip(&self.status)
            .filter(|(u, _)| u.when == When::Success)
            .all(|(_, s)| matches!(s, Some(Status::Succeeded | Status::Skipped)));
        let finished = plan_done && self.stopped.is_none() && self.failed_domains.is_empty();
        self.resumed = Some(finished);
        let died = if cut.is_empty() {
            "runner died".to_owned()
        } else {
            format!("runner died while {} ran", cut.join(", "))
        };
        if finished {
            out.push(Command::Say(Event::Stopping {
                reason: format!(
                    "{died}, after the plan's last step succeeded: the run is finished, and nothing of it is undone"
                ),
            }));
            self.ended = true;
            out.push(Command::End(RunStatus::Succeeded));
            return;
        }
        let next = match self.phase {
            Some(Phase::After) => "the steps that run after the plan go on",
            _ => "the rollback it owed runs now, as the run would have run it",
        };
        out.push(Command::Say(Event::Stopping {
            reason: format!("{died}: {next}"),
        }));
        if self.phase == Some(Phase::Plan) {
            self.stopping = true;
            self.stopped.get_or_insert(died);
        }
    }

    fn final_status(&self) -> RunStatus {
        let after_failed = self
            .units
            .iter()
            .zip(&self.status)
            .any(|(u, s)| u.when != When::Success && *s == Some(Status::Failed));
        if self.hooks_failed {
            RunStatus::RollbackIncomplete
        } else if self.resumed.is_some() {
            RunStatus::Recovered
        } else if self.signals > 0 {
            RunStatus::Interrupted
        } else if self.stopped.is_some() || after_failed {
            RunStatus::Failed
        } else if !self.failed_domains.is_empty() {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
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

#[cfg(test)]
mod tests {
    //! The core alone: inputs in, commands out, no runtime, no clock.

    use std::time::Duration;

    use super::*;
    use crate::engine::{Hook, Settings};

    const SETTINGS: Settings = Settings {
        timeout: Duration::from_secs(1),
        retries: 0,
        retry_delay: Duration::ZERO,
        backoff: 1.0,
    };

    fn unit(id: &str, needs: &[usize]) -> Unit {
        Unit {
            id: id.to_owned(),
            needs: needs.to_vec(),
            when: When::Success,
            settings: SETTINGS,
            hook: None,
            domain: None,
        }
    }

    fn with_hook(mut u: Unit, role: HookRole, also_if_failed: bool) -> Unit {
        u.hook = Some(Hook {
            settings: SETTINGS,
            role,
            also_if_failed,
        });
        u
    }

    fn done(task: Task, succeeded: bool) -> Input {
        Input::Finished {
            task,
            succeeded,
            never_started: false,
        }
    }

    /// The tasks the commands start, in order.
    fn started(commands: &[Command]) -> Vec<Task> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Start(i) => Some(Task::Step(*i)),
                Command::Undo(i) => Some(Task::Hook(*i)),
                _ => None,
            })
            .collect()
    }

    fn end(commands: &[Command]) -> Option<RunStatus> {
        commands.iter().find_map(|c| match c {
            Command::End(status) => Some(*status),
            _ => None,
        })
    }

    #[test]
    fn units_start_when_their_needs_succeeded_and_a_slot_is_free() {
        // a -> c, b -> c; one job: the longer chain first, c last.
        let units = [unit("a", &[]), unit("b", &[]), unit("c", &[0, 1])];
        let mut core = Core::new(&units, 1, &[], 0);
        let first = core.start();
        assert_eq!(first[0], Command::Enter(Phase::Plan));
        assert_eq!(started(&first), [Task::Step(0)]);
        assert_eq!(
            started(&core.handle(done(Task::Step(0), true))),
            [Task::Step(1)]
        );
        assert_eq!(
            started(&core.handle(done(Task::Step(1), true))),
            [Task::Step(2)]
        );
        let last = core.handle(done(Task::Step(2), true));
        assert_eq!(end(&last), Some(RunStatus::Succeeded));
    }

    #[test]
    fn a_failure_stops_the_plan_and_hooks_run_last_completed_first_reopen_last() {
        // open (reopens), a, b run; c fails: b's hook, a's, then open's.
        let units = [
            with_hook(unit("open", &[]), HookRole::Reopen, false),
            with_hook(unit("a", &[0]), HookRole::Undo, false),
            with_hook(unit("b", &[1]), HookRole::Undo, false),
            unit("c", &[2]),
        ];
        let mut core = Core::new(&units, 4, &[], 0);
        core.start();
        for i in 0..3 {
            core.handle(done(Task::Step(i), true));
        }
        let failed = core.handle(done(Task::Step(3), false));
        assert!(failed.contains(&Command::NoRetry), "{failed:?}");
        assert!(
            failed.contains(&Command::Enter(Phase::Rollback)),
            "{failed:?}"
        );
        assert_eq!(started(&failed), [Task::Hook(2)]);
        assert_eq!(
            started(&core.handle(done(Task::Hook(2), true))),
            [Task::Hook(1)]
        );
        assert_eq!(
            started(&core.handle(done(Task::Hook(1), true))),
            [Task::Hook(0)]
        );
        let last = core.handle(done(Task::Hook(0), true));
        assert_eq!(end(&last), Some(RunStatus::Failed));
    }

    #[test]
    fn a_hook_that_closes_the_system_runs_before_every_other() {
        // The shape of a deploy whose window closed before a later check
        // failed: on (hook: off), switch, off (hook: on), services; check
        // fails. The site is open, so `off`'s hook (maintenance on) runs
        // first, then services' and switch's, and `on`'s hook (off) last.
        let units = [
            with_hook(unit("on", &[]), HookRole::Reopen, false),
            with_hook(unit("switch", &[0]), HookRole::Undo, false),
            with_hook(unit("off", &[1]), HookRole::Close, false),
            with_hook(unit("services", &[1]), HookRole::Undo, false),
            unit("check", &[2, 3]),
        ];
        let mut core = Core::new(&units, 1, &[], 0);
        core.start();
        for i in [0, 1, 2, 3] {
            core.handle(done(Task::Step(i), true));
        }
        let mut order = started(&core.handle(done(Task::Step(4), false)));
        for _ in 0..3 {
            let Some(&Task::Hook(i)) = order.last() else {
                panic!("{order:?}")
            };
            order.extend(started(&core.handle(done(Task::Hook(i), true))));
        }
        assert_eq!(
            order,
            [Task::Hook(2), Task::Hook(3), Task::Hook(1), Task::Hook(0)]
        );
    }

    #[test]
    fn after_a_failed_hook_the_reopening_hook_is_held() {
        let units = [
            with_hook(unit("open", &[]), HookRole::Reopen, false),
            with_hook(unit("a", &[0]), HookRole::Undo, false),
            unit("c", &[1]),
        ];
        let mut core = Core::new(&units, 4, &[], 0);
        core.start();
        core.handle(done(Task::Step(0), true));
        core.handle(done(Task::Step(1), true));
        core.handle(done(Task::Step(2), false));
        let next = core.handle(done(Task::Hook(1), false));
        assert!(started(&next).is_empty(), "{next:?}");
        assert!(
            next.iter().any(
                |c| matches!(c, Command::Say(Event::RollbackHeld { step, .. }) if step == "open")
            ),
            "{next:?}"
        );
        assert_eq!(end(&next), Some(RunStatus::RollbackIncomplete));
    }

    #[test]
    fn a_first_interrupt_stops_new_starts_and_a_second_kills() {
        let units = [unit("a", &[]), unit("b", &[0])];
        let mut core = Core::new(&units, 4, &[], 0);
        core.start();
        let first = core.handle(Input::Interrupt {
            signal: "SIGINT".into(),
            at_once: false,
        });
        assert!(first.contains(&Command::NoRetry) && !first.contains(&Command::Kill));
        let second = core.handle(Input::Interrupt {
            signal: "SIGINT".into(),
            at_once: false,
        });
        assert!(second.contains(&Command::Kill), "{second:?}");
        let last = core.handle(done(Task::Step(0), false));
        assert!(started(&last).is_empty(), "b never starts: {last:?}");
        assert_eq!(end(&last), Some(RunStatus::Interrupted));
    }

    #[test]
    fn a_failure_in_a_domain_within_the_budget_rolls_back_that_domain_alone() {
        let domains = ["h1".to_owned(), "h2".to_owned()];
        let mut units = [
            with_hook(unit("a@h1", &[]), HookRole::Undo, false),
            unit("b@h1", &[0]),
            with_hook(unit("a@h2", &[]), HookRole::Undo, false),
            unit("b@h2", &[2]),
        ];
        for (i, u) in units.iter_mut().enumerate() {
            u.domain = Some(i / 2);
        }
        let mut core = Core::new(&units, 4, &domains, 1);
        assert_eq!(started(&core.start()), [Task::Step(0), Task::Step(2)]);
        core.handle(done(Task::Step(0), true));
        let failed = core.handle(done(Task::Step(1), false));
        assert!(
            failed.iter().any(
                |c| matches!(c, Command::Say(Event::DomainFailed { domain, .. }) if domain == "h1")
            ),
            "{failed:?}"
        );
        assert_eq!(started(&failed), [Task::Hook(0)]);
        core.handle(done(Task::Hook(0), true));
        assert_eq!(
            started(&core.handle(done(Task::Step(2), true))),
            [Task::Step(3)]
        );
        let last = core.handle(done(Task::Step(3), true));
        assert_eq!(end(&last), Some(RunStatus::Partial));
    }

    #[test]
    fn runner_s_death_cuts_short_what_ran_and_the_owed_rollback_follows() {
        // a done; b (hook also if failed) and c (hook only on success) run
        // when runner dies; d had been started by the core but never began.
        let units = [
            with_hook(unit("a", &[]), HookRole::Undo, false),
            with_hook(unit("b", &[0]), HookRole::Undo, true),
            with_hook(unit("c", &[0]), HookRole::Undo, false),
            unit("d", &[0]),
        ];
        let mut core = Core::new(&units, 4, &[], 0);
        core.start();
        let next = core.handle(done(Task::Step(0), true));
        assert_eq!(
            started(&next),
            [Task::Step(1), Task::Step(2), Task::Step(3)]
        );
        let after = core.handle(Input::Died {
            started: vec![Task::Step(1), Task::Step(2)],
        });
        // b's hook (cut short, also if failed), then a's; not c's, not d.
        assert_eq!(started(&after), [Task::Hook(1)]);
        assert_eq!(core.status[3], None);
        assert_eq!(
            core.stopped.as_deref(),
            Some("runner died while `b`, `c` ran")
        );
        assert_eq!(
            started(&core.handle(done(Task::Hook(1), true))),
            [Task::Hook(0)]
        );
        let last = core.handle(done(Task::Hook(0), true));
        assert_eq!(end(&last), Some(RunStatus::Recovered));
    }

    #[test]
    fn a_run_that_died_after_its_plan_succeeded_is_finished() {
        let mut always = unit("notify", &[]);
        always.when = When::Always;
        let units = [with_hook(unit("a", &[]), HookRole::Undo, false), always];
        let mut core = Core::new(&units, 4, &[], 0);
        core.start();
        let next = core.handle(done(Task::Step(0), true));
        assert_eq!(started(&next), [Task::Step(1)]);
        let after = core.handle(Input::Died {
            started: vec![Task::Step(1)],
        });
        assert!(started(&after).is_empty(), "{after:?}");
        assert_eq!(end(&after), Some(RunStatus::Succeeded));
    }

    #[test]
    fn a_replayed_journal_leaves_the_core_where_the_live_run_left_it() {
        // A hook cut short by a first death runs again after the second.
        let units = [
            with_hook(unit("a", &[]), HookRole::Undo, false),
            with_hook(unit("b", &[0]), HookRole::Undo, false),
            unit("c", &[1]),
        ];
        let inputs = [
            done(Task::Step(0), true),
            done(Task::Step(1), true),
            Input::Died {
                started: vec![Task::Step(2)],
            },
        ];
        let mut live = Core::new(&units, 4, &[], 0);
        live.start();
        let mut last = Vec::new();
        for input in inputs.clone() {
            last = live.handle(input);
        }
        // The first recover started b's hook, then died.
        assert_eq!(started(&last), [Task::Hook(1)]);
        let mut replayed = Core::new(&units, 4, &[], 0);
        replayed.start();
        for input in inputs {
            replayed.handle(input);
        }
        let again = replayed.handle(Input::Died {
            started: vec![Task::Hook(1)],
        });
        assert_eq!(started(&again), [Task::Hook(1)]);
        assert_eq!(
            started(&replayed.handle(done(Task::Hook(1), true))),
            [Task::Hook(0)]
        );
    }
}
