//! The dispatcher: one loop owns the run's tasks. It carries out what the
//! engine's core decides ([`Core`]: which step or hook starts, when the run
//! stops), and feeds the core what happens, from one `select!`: a task's end,
//! an interrupt. On the way it reads what the tasks tell it (output lines,
//! attempts) and reports every event to the sink. A task never decides
//! anything about the rest of the run, nor does this loop.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::{Stops, attempts};
use super::core::{Command, Core, Input};
use super::work::{End, Line, Outcome};
use super::{
    AttemptRecord, Event, Interrupts, Phase, Report, Run, RunStatus, Sink, Status, Task,
    TaskReport, Tasks, Unit, UnitReport, millis,
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

pub(super) struct Progress {
    pub(super) report: TaskReport,
    /// The attempt started and not ended yet.
    open: Option<u32>,
}

impl Progress {
    pub(super) fn of(report: TaskReport) -> Self {
        Self { report, open: None }
    }

    fn line(&mut self, tagged: String) {
        if self.report.tail.len() == TAIL_LINES {
            self.report.tail.pop_front();
        }
        self.report.tail.push_back(tagged);
    }
}

fn stops() -> Stops {
    Stops {
        no_retry: CancellationToken::new(),
        kill: CancellationToken::new(),
    }
}

pub(super) struct Dispatcher<'a> {
    core: Core<'a>,
    units: &'a [Unit],
    tasks: &'a dyn Tasks,
    masker: &'a Masker,
    sink: &'a mut dyn Sink,
    interrupts: Interrupts,
    clock: Instant,
    /// Added to the clock: a recovery goes on on its dead run's timeline.
    base: Duration,
    /// The phase the core is in: what its commands belong to.
    phase: Phase,
    /// The phase's cancellation, as its tasks see it.
    stops: Stops,
    /// Why a unit was skipped on its condition.
    skipped: Vec<Option<String>>,
    runs: Vec<Option<Progress>>,
    hooks: Vec<Option<Progress>>,
    /// Captured outputs, by unit id.
    outputs: HashMap<String, String>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    running: JoinSet<Done>,
    ids: HashMap<Id, Task>,
    /// What the core decided and the loop has not carried out yet.
    todo: VecDeque<Command>,
    /// The sink said it cannot keep up (see [`Sink::broken`]).
    broken: Option<String>,
}

impl<'a> Dispatcher<'a> {
    pub(super) fn new(run: Run<'a>) -> Self {
        let units = run.units;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let jobs = usize::try_from(run.jobs).unwrap_or(1);
        let mut dispatcher = Self {
            core: Core::new(units, jobs, run.domains, run.budget),
            units,
            tasks: run.tasks,
            masker: run.masker,
            sink: run.sink,
            interrupts: run.interrupts,
            clock: Instant::now(),
            base: Duration::ZERO,
            phase: Phase::Plan,
            stops: stops(),
            skipped: vec![None; units.len()],
            runs: units.iter().map(|_| None).collect(),
            hooks: units.iter().map(|_| None).collect(),
            outputs: HashMap::new(),
            tx,
            rx,
            running: JoinSet::new(),
            ids: HashMap::new(),
            todo: VecDeque::new(),
            broken: None,
        };
        if let Some(resume) = run.resume {
            dispatcher.resume(resume);
        } else {
            // An interrupt that came while the run was set up stops it
            // before anything starts.
            while let Ok(interrupt) = dispatcher.interrupts.try_recv() {
                dispatcher.feed(Input::Interrupt {
                    signal: interrupt.signal.into_owned(),
                    at_once: interrupt.at_once,
                });
            }
            dispatcher.feed(Input::Start);
        }
        dispatcher
    }

    /// Takes over from a dead run: what its journal says it did, replayed
    /// into the core (its commands then were carried out by the dead run),
    /// then the run's death; what follows from it is carried out here.
    fn resume(&mut self, r: super::replay::Resume) {
        self.skipped = r.skipped;
        self.runs = r.runs.into_iter().map(|p| p.map(Progress::of)).collect();
        self.hooks = r.hooks.into_iter().map(|p| p.map(Progress::of)).collect();
        self.outputs = r.outputs;
        self.base = r.since;
        let replayed = r
            .inputs
            .into_iter()
            .map(|input| self.core.handle(input))
            .collect::<Vec<_>>();
        for command in replayed.into_iter().flatten() {
            if let Command::Enter(phase) = command {
                self.phase = phase;
            }
        }
        self.feed(Input::Died { started: r.started });
    }

    /// Gives the core an input (the sink keeps it first), and queues what it
    /// decides.
    fn feed(&mut self, input: Input) {
        self.sink.input(&input, self.units);
        self.decide(input);
    }

    /// Gives the core an input the sink has already, and queues what it decides.
    fn decide(&mut self, input: Input) {
        let next = self.core.handle(input);
        self.todo.extend(next);
    }

    /// Reports an event. The first time the sink says it is broken (the
    /// journal cannot be written), the run stops as on an interrupt: no step
    /// acts ahead of its journal (see `carry_out`).
    fn say(&mut self, event: Event) {
        self.sink.event(event);
        if self.broken.is_none()
            && let Some(why) = self.sink.broken()
        {
            self.broken = Some(why.clone());
            self.feed(Input::Interrupt {
                signal: why,
                at_once: false,
            });
        }
    }

    /// Time since the start of the run.
    fn now(&self) -> Duration {
        self.base + self.clock.elapsed()
    }

    pub(super) async fn run(mut self) -> Report {
        loop {
            while let Some(command) = self.todo.pop_front() {
                if let Some(status) = self.carry_out(command) {
                    return self.report(status);
                }
            }
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg),
                Some(joined) = self.running.join_next_with_id() => {
                    // The sink has it already (see `finished`).
                    let input = self.finish(joined);
                    self.decide(input);
                }
                Some(interrupt) = self.interrupts.recv() => {
                    self.feed(Input::Interrupt {
                        signal: interrupt.signal.into_owned(),
                        at_once: interrupt.at_once,
                    });
                }
            }
        }
    }

    /// Carries out one of the core's commands; the run's end gives its status.
    fn carry_out(&mut self, command: Command) -> Option<RunStatus> {
        match command {
            Command::Start(i) => {
                if let Some(why) = self.tasks.skip(i, &self.outputs) {
                    // Its condition does not hold: it changes nothing, and
                    // what needs it goes on.
                    let why = self.masker.mask(&why);
                    self.say(Event::StepSkipped {
                        step: self.units[i].id.clone(),
                        phase: self.phase,
                        reason: why.clone(),
                    });
                    self.skipped[i] = Some(why);
                    self.feed(Input::Skipped { unit: i });
                } else {
                    tracing::debug!(step = %self.units[i].id, "start");
                    self.launch(Task::Step(i));
                }
            }
            Command::Undo(i) => self.launch(Task::Hook(i)),
            Command::Enter(phase) => {
                self.phase = phase;
                self.stops = stops();
            }
            Command::NoRetry => self.stops.no_retry.cancel(),
            Command::Kill => self.stops.kill.cancel(),
            Command::Say(event) => self.say(event),
            Command::End(status) => return Some(status),
        }
        None
    }

    fn report(self, status: RunStatus) -> Report {
        let duration = self.now();
        let core = self.core;
        Report {
            status,
            stopped: core.stopped,
            units: core
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
            rollback: core.rollback,
            held: core.held,
            failed_domains: core.failed_domains,
            outputs: self.outputs,
            duration,
        }
    }

    /// Starts the attempts of a task, once its start is reported (and so
    /// journaled). A step does not start when the journal cannot be written:
    /// it fails as never started, and the run is stopping already. A hook
    /// still runs: half a rollback is the worst state to leave.
    fn launch(&mut self, task: Task) {
        let prepared = self.tasks.prepare(task, &self.outputs);
        let unit = &self.units[task.unit()];
        let step = unit.id.clone();
        let settings = match (task, unit.hook) {
            (Task::Hook(_), Some(hook)) => hook.settings,
            _ => unit.settings,
        };
        let now = self.now();
        *self.progress_slot(task) = Some(Progress::of(TaskReport {
            command: prepared.command.clone(),
            attempts: Vec::new(),
            started: now,
            ended: now,
            tail: VecDeque::new(),
        }));
        let command = prepared.command;
        self.say(match task {
            Task::Step(_) => Event::StepStarted {
                step,
                phase: self.phase,
                attempt: 1,
                command,
            },
            Task::Hook(_) => Event::RollbackStarted { step, command },
        });
        if let (Task::Step(_), Some(why)) = (task, self.broken.clone()) {
            let outcome = Outcome::new(End::Refused(why));
            self.attempt_ended(task, 1, &outcome, Duration::ZERO, None);
            let input = self.finished(Done {
                task,
                succeeded: false,
                captured: None,
            });
            self.decide(input);
            return;
        }
        let handle = self.running.spawn(attempts(
            task,
            prepared.work,
            settings,
            self.tx.clone(),
            self.stops.clone(),
        ));
        self.ids.insert(handle.id(), task);
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

    fn phase_of(&self, task: Task) -> Phase {
        match task {
            Task::Step(_) => self.phase,
            Task::Hook(_) => Phase::Rollback,
        }
    }

    /// Records what a task said.
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(task, line) => {
                let text = self.masker.mask(&line.text);
                if let Some(progress) = self.progress(task) {
                    progress.line(format!("[{}] {text}", line.stream.tag()));
                }
                self.say(Event::Output {
                    step: self.units[task.unit()].id.clone(),
                    phase: self.phase_of(task),
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
                    self.say(Event::StepStarted {
                        step: self.units[task.unit()].id.clone(),
                        phase: self.phase_of(task),
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
            } => self.attempt_ended(task, attempt, &outcome, duration, retry_in),
        }
    }

    fn attempt_ended(
        &mut self,
        task: Task,
        attempt: u32,
        outcome: &Outcome,
        duration: Duration,
        retry_in: Option<Duration>,
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
            self.say(Event::AttemptFailed {
                step: id,
                phase: self.phase_of(task),
                attempt,
                attempts,
                reason,
                exit_code: outcome.end.exit_code(),
                retry_in_ms: retry_in.map(millis),
            });
        }
    }

    /// A task is done, or its task panicked: records and reports its end
    /// after every message it sent; what the core is told.
    fn finish(&mut self, joined: Result<(Id, Done), JoinError>) -> Input {
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
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
                self.attempt_ended(task, attempt, &outcome, Duration::ZERO, None);
                Done {
                    task,
                    succeeded: false,
                    captured: None,
                }
            }
        };
        self.finished(done)
    }

    /// Records and reports a task's end; what the core is told.
    fn finished(&mut self, done: Done) -> Input {
        let task = done.task;
        let id = self.units[task.unit()].id.clone();
        let now = self.now();
        let (attempts, duration_ms, reason, never_started) = match self.progress(task) {
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
                    progress.report.never_started(),
                )
            }
            None => (0, 0, None, false),
        };
        let reason = (!done.succeeded).then_some(reason).flatten();
        let never_started = !done.succeeded && never_started;
        let input = Input::Finished {
            task,
            succeeded: done.succeeded,
            never_started,
        };
        match task {
            Task::Step(_) => {
                if done.succeeded
                    && let Some(text) = done.captured
                {
                    let output = self.masker.mask(&text);
                    self.say(Event::Captured {
                        step: id.clone(),
                        masked: output != text,
                        output,
                    });
                    self.outputs.insert(id.clone(), text);
                }
                // What the core is given is kept before the end is told: a
                // journal never tells an end its core was not given.
                self.sink.input(&input, self.units);
                self.say(Event::StepFinished {
                    step: id,
                    phase: self.phase,
                    status: if done.succeeded {
                        Status::Succeeded
                    } else {
                        Status::Failed
                    },
                    attempts,
                    duration_ms,
                    reason,
                    never_started,
                });
            }
            Task::Hook(_) => {
                self.sink.input(&input, self.units);
                self.say(Event::RollbackFinished {
                    step: id,
                    succeeded: done.succeeded,
                    attempts,
                    duration_ms,
                    reason,
                });
            }
        }
        input
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
