//! `runner apply`: runs a checked plan.
//!
//! One dispatcher loop owns the run: it starts steps the moment their needs have
//! succeeded and a job slot is free, receives their events (output lines, attempts,
//! ends), handles signals, and reports. Each step's attempts run in a task of their
//! own; a task never decides anything about the rest of the run.
//!
//! The run has three phases: the plan's steps; on failure, the rollback hooks of the
//! steps that succeeded, in reverse order of completion; then the `when = "failure"`
//! / `"always"` steps.

pub mod event;
pub mod lock;
pub mod maintenance;
pub(crate) mod output;
pub mod process;
pub mod record;
pub mod work;

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use indexmap::IndexMap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::docker::{Docker, RUNNER_ENV};
use crate::exit_code;
use crate::kinds::Scope;
use crate::plan::model::{Action, Toggle, When};
use crate::plan::template::{Context, Name, Template, shell_join};
use crate::plan::{Plan, Settings};
use event::{Event, Masker, Phase, RunStatus, Status};
use output::Reporter;
use process::{End, Line, Spec, Stream};
use record::{AttemptRecord, HeldHook, HookRecord, Record, StepRecord};
use work::{Target, Work};

/// Output lines kept per step for the record.
const TAIL_LINES: usize = 40;
/// The longest wait between two attempts, whatever the backoff says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// What the command line adds to the plan.
#[derive(Debug, Clone)]
pub struct Options {
    pub json: bool,
    /// Where the record goes; default `.runner/runs/<run-id>.json` beside the plan.
    pub report: Option<PathBuf>,
}

/// Runs the plan and returns the exit code.
pub fn apply(plan: &Plan, options: &Options) -> i32 {
    let started_at = SystemTime::now();
    let run_id = run_id(started_at);
    let state_dir = plan.dir.join(".runner");
    let prepared = lock_plan(plan, &run_id, started_at)
        .and_then(|lock| Ok((lock, usable(docker_for(plan))?, runtime()?)));
    let (_lock, docker, runtime) = match prepared {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let report_path = options
        .report
        .clone()
        .unwrap_or_else(|| state_dir.join("runs").join(format!("{run_id}.json")));
    let reporter = if options.json {
        Reporter::Json
    } else {
        let live = std::io::stdout().is_terminal();
        let color = live && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let width = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        Reporter::text(width, live, color)
    };
    let dispatcher = Dispatcher::new(plan, docker, run_id, started_at, reporter);
    runtime.block_on(dispatcher.run(report_path))
}

/// Takes the plan's lock for this process's lifetime, or says who holds it.
pub(crate) fn lock_plan(
    plan: &Plan,
    run_id: &str,
    started_at: SystemTime,
) -> Result<lock::Lock, i32> {
    let file_name = plan.path.file_name().unwrap_or_default().to_string_lossy();
    let holder = lock::Holder {
        pid: std::process::id(),
        user: lock::user_name(),
        host: lock::host_name(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        run_id: run_id.to_owned(),
    };
    let path = plan.dir.join(".runner").join(format!("{file_name}.lock"));
    lock::acquire(&path, &holder).map_err(|e| {
        eprintln!("error: {e}");
        eprintln!("help: {}", e.help());
        exit_code::CANNOT_START
    })
}

/// The docker command, or exit 4 saying what was tried and how to fix it.
pub(crate) fn usable(docker: Docker) -> Result<Docker, i32> {
    if docker.available {
        return Ok(docker);
    }
    eprintln!(
        "error: docker is not reachable, and this plan needs it: {}",
        docker.reason
    );
    for probe in &docker.tried {
        eprintln!("  tried `{}`: {}", probe.command, probe.result);
    }
    if let Some(help) = &docker.help {
        eprintln!("help: {help}");
    }
    Err(exit_code::CANNOT_START)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            exit_code::CANNOT_START
        })
}

/// A sortable, unique run id: `20261125T101500Z-1f3a`.
pub(crate) fn run_id(at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{stamp}-{:04x}",
        (nanos ^ std::process::id().rotate_left(16)) & 0xffff
    )
}

/// Whether anything in the plan talks to docker: a docker kind, `{{ docker }}`, or
/// `$DOCKER_CMD` in a shell command.
fn uses_docker(plan: &Plan) -> bool {
    let template = |t: &Template| {
        t.raw.contains("DOCKER_CMD") || t.refs().any(|(name, ..)| *name == Name::Docker)
    };
    let action = |a: &Action, env: &IndexMap<String, Template>| {
        env.values().any(template)
            || match a {
                Action::Shell(s) => {
                    template(&s.run.value) || s.dir.as_ref().is_some_and(|d| template(&d.value))
                }
                _ => true,
            }
    };
    plan.steps.iter().any(|s| {
        action(&s.action, &s.env)
            || s.rollback
                .as_ref()
                .is_some_and(|h| action(&h.action, &h.env))
    })
}

/// The docker command for the run. A plan that never talks to docker is not made to
/// wait for a probe; its steps still get `DOCKER_CMD`.
fn docker_for(plan: &Plan) -> Docker {
    let from_env = std::env::var("DOCKER_CMD").ok();
    if !uses_docker(plan) {
        return crate::docker::unprobed(from_env, "not probed: no step of this plan uses docker");
    }
    crate::docker::discover(plan.sudo, from_env)
}

/// Which task an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Task {
    Step(usize),
    /// The rollback hook of a step.
    Hook(usize),
}

/// What tasks tell the dispatcher.
#[derive(Debug)]
enum Msg {
    Line(Task, Line),
    AttemptStarted(Task, u32),
    AttemptEnded {
        task: Task,
        attempt: u32,
        end: End,
        duration: Duration,
        retry_in: Option<Duration>,
        detail: Option<String>,
        transport: Option<String>,
    },
    Done {
        task: Task,
        succeeded: bool,
        captured: Option<String>,
    },
}

/// Signals from the dispatcher to the running tasks of one phase.
struct Control {
    /// No new attempt starts (an interrupt came).
    no_retry: watch::Sender<bool>,
    /// End running processes now (a second interrupt came).
    kill: watch::Sender<bool>,
}

impl Control {
    fn new() -> Self {
        Self {
            no_retry: watch::Sender::new(false),
            kill: watch::Sender::new(false),
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    /// The command as shown (secrets masked).
    command: Option<String>,
    attempts: Vec<AttemptRecord>,
    started: Option<Instant>,
    duration: Duration,
    tail: VecDeque<String>,
}

impl Progress {
    fn line(&mut self, line: &str, stream: Stream) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        let tag = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Info => "runner",
        };
        self.tail.push_back(format!("[{tag}] {line}"));
    }
}

struct StepState {
    status: Option<Status>,
    progress: Progress,
    /// The rollback hook's progress, once it started.
    hook: Option<Progress>,
}

struct Dispatcher<'p> {
    plan: &'p Plan,
    docker: Docker,
    run_id: String,
    started_at: SystemTime,
    clock: Instant,
    reporter: Reporter,
    masker: Masker,
    steps: Vec<StepState>,
    /// Steps that needed each step, by index.
    dependents: Vec<Vec<usize>>,
    captured: HashMap<String, String>,
    /// Plan steps in order of completion (successes only), for the rollback.
    completed: Vec<usize>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Why the plan phase stopped early.
    stopped: Option<String>,
    /// Rollback hooks held back (maintenance stays on after a failed hook).
    held: Vec<HeldHook>,
    interrupts: u32,
    /// `sh`, resolved on PATH once: a child that searches PATH for it pays a failed
    /// exec per PATH entry, every step.
    sh: String,
}

impl<'p> Dispatcher<'p> {
    fn new(
        plan: &'p Plan,
        docker: Docker,
        run_id: String,
        started_at: SystemTime,
        reporter: Reporter,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut dependents = vec![Vec::new(); plan.steps.len()];
        for (i, step) in plan.steps.iter().enumerate() {
            for &need in &step.needs {
                dependents[need].push(i);
            }
        }
        let masker = Masker::new(
            plan.vars
                .values()
                .filter(|v| v.secret)
                .map(|v| v.value.clone()),
        );
        Self {
            plan,
            docker,
            run_id,
            started_at,
            clock: Instant::now(),
            reporter,
            masker,
            steps: plan
                .steps
                .iter()
                .map(|_| StepState {
                    status: None,
                    progress: Progress::default(),
                    hook: None,
                })
                .collect(),
            dependents,
            captured: HashMap::new(),
            completed: Vec::new(),
            tx,
            rx,
            stopped: None,
            held: Vec::new(),
            interrupts: 0,
            sh: which::which("sh").map_or_else(|_| "sh".to_owned(), |p| p.display().to_string()),
        }
    }

    async fn run(mut self, report_path: PathBuf) -> i32 {
        let (mut sigint, mut sigterm) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(i), Ok(t)) => (i, t),
            _ => {
                eprintln!("error: cannot install the signal handlers");
                return exit_code::CANNOT_START;
            }
        };
        self.reporter.event(&Event::RunStarted {
            run_id: self.run_id.clone(),
            plan: self.plan.name.clone(),
            plan_file: self.plan.path.display().to_string(),
            steps: self.plan.steps.len(),
            jobs: self.plan.jobs,
            docker: self.masker.mask(&shell_join(&self.docker.command)),
            docker_reason: self.docker.reason.clone(),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
        });

        let main: Vec<usize> = self.members(|w| w == When::Success);
        self.schedule(&main, Phase::Plan, &mut sigint, &mut sigterm)
            .await;
        let failed = self.stopped.is_some();
        let mut hooks_ok = true;
        if failed {
            hooks_ok = self.roll_back(&mut sigint, &mut sigterm).await;
        }
        let after = self.members(|w| w == When::Always || (failed && w == When::Failure));
        self.schedule(&after, Phase::After, &mut sigint, &mut sigterm)
            .await;
        let after_failed = after
            .iter()
            .any(|&i| self.steps[i].status == Some(Status::Failed));
        for state in &mut self.steps {
            state.status.get_or_insert(Status::Skipped);
        }

        let interrupted = self.interrupts > 0;
        let (status, code) = if !hooks_ok {
            (
                RunStatus::RollbackIncomplete,
                exit_code::ROLLBACK_INCOMPLETE,
            )
        } else if interrupted {
            (RunStatus::Interrupted, exit_code::INTERRUPTED)
        } else if failed || after_failed {
            (RunStatus::Failed, exit_code::STEP_FAILED)
        } else {
            (RunStatus::Succeeded, exit_code::SUCCESS)
        };
        let record = self.record(status, code);
        let written = record::write(&record, &report_path);
        self.reporter.event(&Event::RunFinished {
            run_id: self.run_id.clone(),
            status,
            exit_code: code,
            duration_ms: millis(self.clock.elapsed()),
            record: report_path.display().to_string(),
        });
        let summary = self.summary(status, code, &report_path, written.as_ref().err());
        self.reporter.finish(&summary);
        if let Err(e) = written {
            eprintln!(
                "error: cannot write the run record {}: {e}",
                report_path.display()
            );
        }
        code
    }

    fn members(&self, when: impl Fn(When) -> bool) -> Vec<usize> {
        (0..self.plan.steps.len())
            .filter(|&i| when(self.plan.steps[i].when))
            .collect()
    }
}

/// Steps that can start: the longest remaining chain first, then declaration order,
/// so the critical path never waits behind a short branch.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    height: usize,
    index: std::cmp::Reverse<usize>,
}

impl Dispatcher<'_> {
    /// Runs `members` as a DAG: each starts once its needs (among `members`)
    /// succeeded and a slot is free. In the plan phase a failure stops the
    /// scheduling; after it, a failure only skips the steps that need the failed one.
    async fn schedule(
        &mut self,
        members: &[usize],
        phase: Phase,
        sigint: &mut tokio::signal::unix::Signal,
        sigterm: &mut tokio::signal::unix::Signal,
    ) {
        if members.is_empty() {
            return;
        }
        let mut member = vec![false; self.plan.steps.len()];
        for &i in members {
            member[i] = true;
        }
        // Longest chain of dependents from each step, within the phase.
        let mut height = vec![0usize; self.plan.steps.len()];
        for &i in self.plan.dag.order.iter().rev() {
            if member[i] {
                height[i] = 1 + self.dependents[i]
                    .iter()
                    .filter(|&&d| member[d])
                    .map(|&d| height[d])
                    .max()
                    .unwrap_or(0);
            }
        }
        let mut waiting: Vec<usize> = (0..self.plan.steps.len())
            .map(|i| {
                self.plan.steps[i]
                    .needs
                    .iter()
                    .filter(|&&n| member[n])
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Ready> = members
            .iter()
            .filter(|&&i| waiting[i] == 0)
            .map(|&i| Ready {
                height: height[i],
                index: std::cmp::Reverse(i),
            })
            .collect();
        let control = Control::new();
        let mut running = 0usize;
        let mut stopping = false;
        let jobs = usize::try_from(self.plan.jobs).unwrap_or(1).max(1);
        loop {
            while !stopping && running < jobs {
                let Some(Ready {
                    index: std::cmp::Reverse(i),
                    ..
                }) = ready.pop()
                else {
                    break;
                };
                tracing::debug!(step = %self.plan.steps[i].id, height = height[i], running, "start");
                self.start(i, phase, &control);
                running += 1;
            }
            if running == 0 {
                break;
            }
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    if let Some((i, succeeded)) = self.handle(msg, phase) {
                        running -= 1;
                        tracing::debug!(step = %self.plan.steps[i].id, succeeded, running, ready = ready.len(), "done");
                        if succeeded {
                            for &d in &self.dependents[i] {
                                if member[d] {
                                    waiting[d] -= 1;
                                    if waiting[d] == 0 {
                                        ready.push(Ready { height: height[d], index: std::cmp::Reverse(d) });
                                    }
                                }
                            }
                        } else if phase == Phase::Plan && !stopping {
                            stopping = true;
                            let reason = format!("step `{}` failed", self.plan.steps[i].id);
                            self.stop(reason, running);
                        }
                    }
                }
                _ = sigint.recv() => {
                    stopping = true;
                    self.interrupt("SIGINT", phase, running, &control);
                }
                _ = sigterm.recv() => {
                    stopping = true;
                    self.interrupt("SIGTERM", phase, running, &control);
                }
            }
        }
    }

    fn stop(&mut self, reason: String, running: usize) {
        let then = if running > 0 {
            format!("{running} running step(s) finish, then the rollback runs")
        } else {
            "the rollback runs now".to_owned()
        };
        self.reporter.event(&Event::Stopping {
            reason: format!("{reason}: nothing new starts; {then}"),
        });
        self.stopped.get_or_insert(reason);
    }

    fn interrupt(&mut self, signal: &str, phase: Phase, running: usize, control: &Control) {
        self.interrupts += 1;
        if phase == Phase::Plan {
            self.stopped
                .get_or_insert_with(|| format!("interrupted by {signal}"));
        }
        if !*control.no_retry.borrow() {
            control.no_retry.send_replace(true);
            let then = if running > 0 {
                format!(
                    "{running} running step(s) finish (interrupt again to kill them), then the rollback runs"
                )
            } else {
                "the rollback runs now".to_owned()
            };
            self.reporter.event(&Event::Stopping {
                reason: format!("interrupted by {signal}: nothing new starts; {then}"),
            });
        } else {
            control.kill.send_replace(true);
            self.reporter.event(&Event::Stopping {
                reason: format!(
                    "interrupted again by {signal}: killing {running} running step(s), then the rollback runs"
                ),
            });
        }
    }

    /// The scope templates resolve in; `masked` for what is shown.
    fn scope<'s>(&'s self, masked: bool, output: &'s dyn Fn(&str) -> Option<String>) -> Scope<'s> {
        Scope {
            plan: self.plan,
            docker: &self.docker.command,
            mask_secrets: masked,
            run_id: Some(&self.run_id),
            output,
        }
    }

    /// The work of a step or hook, its command as shown, and its settings.
    fn work(&self, task: Task) -> (Work, String, Settings) {
        let step = &self.plan.steps[self.index(task)];
        let (action, env, settings) = match (task, &step.rollback) {
            (Task::Hook(_), Some(hook)) => (&hook.action, &hook.env, hook.settings),
            _ => (&step.action, &step.env, step.settings),
        };
        let output = |id: &str| self.captured.get(id).cloned();
        let real = self.scope(false, &output);
        let shown = self.scope(true, &output);
        let docker = &self.docker.command;
        let mut vars = vec![
            ("DOCKER_CMD".to_owned(), docker.join(" ")),
            ("RUNNER_RUN_ID".to_owned(), self.run_id.clone()),
            ("RUNNER_STEP".to_owned(), step.id.clone()),
        ];
        let step_env = real.env(env);
        vars.extend(step_env.iter().cloned());
        let base = Spec {
            argv: Vec::new(),
            dir: self.plan.dir.clone(),
            env: vars,
            capture: false,
            stdout_file: None,
            env_file: None,
            timeout: settings.timeout,
        };
        // Commands in a container carry a marker, to find them there on timeout.
        let hook = if matches!(task, Task::Hook(_)) {
            "/rollback"
        } else {
            ""
        };
        let marker = format!("{}/{}{hook}", self.run_id, step.id);
        let target = |container: String| Target {
            docker: docker.clone(),
            container,
            marker: marker.clone(),
        };
        let shown_ops = || crate::kinds::operations(action, env, &shown);
        let joined = |separator: &str| {
            shown_ops()
                .iter()
                .map(|op| op.display.as_str())
                .collect::<Vec<_>>()
                .join(separator)
        };
        let (work, display) = match action {
            Action::Shell(shell) => {
                let dir = shell.dir.as_ref().map_or_else(
                    || self.plan.dir.clone(),
                    |d| self.plan.dir.join(real.render(&d.value, Context::Verbatim)),
                );
                let spec = Spec {
                    argv: vec![
                        self.sh.clone(),
                        "-c".into(),
                        real.render(&shell.run.value, Context::Shell),
                    ],
                    dir,
                    capture: matches!(task, Task::Step(_)) && shell.capture,
                    ..base.clone()
                };
                (
                    Work::Process(spec),
                    shown.render(&shell.run.value, Context::Shell),
                )
            }
            Action::DockerExec(exec) => {
                let names = step_env.iter().map(|(k, _)| k.as_str());
                let file = env_file(docker, &marker, names.chain(RUNNER_ENV).collect());
                let path = file.as_ref().and_then(|f| f.path.to_str());
                let (container, argv) = crate::kinds::exec_command(exec, &step_env, &real, path);
                let target = target(container);
                let work = work::Exec {
                    spec: container_spec(&base, &target, argv, file.clone()),
                    stdout_file: exec
                        .stdout
                        .as_ref()
                        .map(|f| self.plan.dir.join(real.render(&f.value, Context::Verbatim))),
                    // The plan reader rejects an invalid pattern, so this always compiles.
                    expect_output: exec
                        .expect_output
                        .as_ref()
                        .and_then(|p| regex::Regex::new(&p.value).ok()),
                    target,
                };
                (Work::Exec(work), joined(" && "))
            }
            Action::MaintenanceToggle(toggle) => {
                let work =
                    toggle_work(self.plan, &real, &base, target, &marker, toggle.state.value);
                (Work::Toggle(work), joined(" && "))
            }
            Action::HttpProbe(probe) => {
                let render =
                    |t: &crate::plan::model::Sp<Template>| real.render(&t.value, Context::Verbatim);
                let work = work::Probe {
                    docker: docker.clone(),
                    container: probe.container.as_ref().map(render),
                    url: render(&probe.url),
                    host_url: probe.host_url.as_ref().map(render),
                    expect_status: probe.expect_status.as_ref().map_or(200, |s| s.value),
                    expect_body: probe.expect_body.as_ref().map(|b| b.value.clone()),
                    dir: self.plan.dir.clone(),
                    timeout: settings.timeout,
                };
                (Work::Probe(work), joined(" || "))
            }
        };
        (work, self.masker.mask(&display), settings)
    }

    fn index(&self, task: Task) -> usize {
        match task {
            Task::Step(i) | Task::Hook(i) => i,
        }
    }

    fn start(&mut self, i: usize, phase: Phase, control: &Control) {
        let command = self.launch(Task::Step(i), phase, control);
        self.reporter.event(&Event::StepStarted {
            step: self.plan.steps[i].id.clone(),
            phase,
            attempt: 1,
            command,
        });
    }

    /// Starts the attempts of a step or hook; returns its command as shown.
    fn launch(&mut self, task: Task, phase: Phase, control: &Control) -> String {
        let (work, display, settings) = self.work(task);
        let (_, progress) = self.progress(task, phase);
        progress.command = Some(display.clone());
        progress.started = Some(Instant::now());
        tokio::spawn(attempts(
            task,
            work,
            settings,
            self.tx.clone(),
            control.no_retry.subscribe(),
            control.kill.subscribe(),
        ));
        display
    }

    /// Records a message; returns `(step, succeeded)` when a task is done.
    fn handle(&mut self, msg: Msg, phase: Phase) -> Option<(usize, bool)> {
        match msg {
            Msg::Line(task, line) => {
                let text = self.masker.mask(&line.text);
                let i = self.index(task);
                let (phase, progress) = self.progress(task, phase);
                progress.line(&text, line.stream);
                self.reporter.event(&Event::Output {
                    step: self.plan.steps[i].id.clone(),
                    phase,
                    stream: line.stream,
                    line: text,
                });
                None
            }
            Msg::AttemptStarted(task, attempt) => {
                let i = self.index(task);
                let (phase, progress) = self.progress(task, phase);
                let command = progress.command.clone().unwrap_or_default();
                if attempt > 1 {
                    self.reporter.event(&Event::StepStarted {
                        step: self.plan.steps[i].id.clone(),
                        phase,
                        attempt,
                        command,
                    });
                }
                None
            }
            Msg::AttemptEnded {
                task,
                attempt,
                end,
                duration,
                retry_in,
                detail,
                transport,
            } => {
                let i = self.index(task);
                let attempts = match task {
                    Task::Step(_) => self.plan.steps[i].settings.retries + 1,
                    Task::Hook(_) => self.plan.steps[i]
                        .rollback
                        .as_ref()
                        .map_or(1, |h| h.settings.retries + 1),
                };
                let reason = (!end.success()).then(|| {
                    let reason = match &detail {
                        Some(detail) => format!("{}; {detail}", end.reason()),
                        None => end.reason(),
                    };
                    self.masker.mask(&reason)
                });
                let transport = transport.map(|t| self.masker.mask(&t));
                let (phase, progress) = self.progress(task, phase);
                progress.attempts.push(AttemptRecord {
                    attempt,
                    succeeded: end.success(),
                    exit_code: end.exit_code(),
                    reason: reason.clone(),
                    duration_ms: millis(duration),
                    transport,
                });
                if let Some(reason) = reason {
                    self.reporter.event(&Event::AttemptFailed {
                        step: self.plan.steps[i].id.clone(),
                        phase,
                        attempt,
                        attempts,
                        reason,
                        exit_code: end.exit_code(),
                        retry_in_ms: retry_in.map(millis),
                    });
                }
                None
            }
            Msg::Done {
                task,
                succeeded,
                captured,
            } => {
                let i = self.index(task);
                let id = self.plan.steps[i].id.clone();
                let (phase, progress) = self.progress(task, phase);
                progress.duration = progress.started.map_or(Duration::ZERO, |s| s.elapsed());
                let attempts = u32::try_from(progress.attempts.len()).unwrap_or(u32::MAX);
                let duration_ms = millis(progress.duration);
                let reason = progress.attempts.last().and_then(|a| a.reason.clone());
                match task {
                    Task::Step(_) => {
                        let status = if succeeded {
                            Status::Succeeded
                        } else {
                            Status::Failed
                        };
                        self.steps[i].status = Some(status);
                        if succeeded {
                            if phase == Phase::Plan {
                                self.completed.push(i);
                            }
                            if let Some(text) = captured {
                                self.captured.insert(id.clone(), text);
                            }
                        }
                        self.reporter.event(&Event::StepFinished {
                            step: id,
                            phase,
                            status,
                            attempts,
                            duration_ms,
                            reason: (!succeeded).then_some(reason).flatten(),
                        });
                    }
                    Task::Hook(_) => {
                        self.steps[i].status = Some(if succeeded {
                            Status::RolledBack
                        } else {
                            Status::RollbackFailed
                        });
                        self.reporter.event(&Event::RollbackFinished {
                            step: id,
                            succeeded,
                            attempts,
                            duration_ms,
                            reason: (!succeeded).then_some(reason).flatten(),
                        });
                    }
                }
                Some((i, succeeded))
            }
        }
    }

    fn progress(&mut self, task: Task, phase: Phase) -> (Phase, &mut Progress) {
        match task {
            Task::Step(i) => (phase, &mut self.steps[i].progress),
            Task::Hook(i) => (
                Phase::Rollback,
                self.steps[i].hook.get_or_insert_with(Progress::default),
            ),
        }
    }

    /// Runs the hooks of the succeeded plan steps, last completed first, one at a
    /// time. A failed hook is reported and the others still run. Interrupts are
    /// noted but do not stop a rollback: every hook has its own timeout.
    async fn roll_back(
        &mut self,
        sigint: &mut tokio::signal::unix::Signal,
        sigterm: &mut tokio::signal::unix::Signal,
    ) -> bool {
        let mut all_ok = true;
        let control = Control::new();
        let order: Vec<usize> = self.completed.iter().rev().copied().collect();
        for i in order {
            let Some(hook) = &self.plan.steps[i].rollback else {
                continue;
            };
            let maintenance_off = matches!(&hook.action,
                Action::MaintenanceToggle(t) if t.state.value == Toggle::Off);
            if !all_ok && maintenance_off {
                let held = HeldHook {
                    step: self.plan.steps[i].id.clone(),
                    reason: "an earlier rollback hook failed, so maintenance stays ON: users keep the maintenance page instead of a half-undone app".to_owned(),
                };
                self.reporter.event(&Event::RollbackHeld {
                    step: held.step.clone(),
                    reason: held.reason.clone(),
                });
                self.held.push(held);
                continue;
            }
            let command = self.launch(Task::Hook(i), Phase::Rollback, &control);
            self.reporter.event(&Event::RollbackStarted {
                step: self.plan.steps[i].id.clone(),
                command,
            });
            loop {
                tokio::select! {
                    msg = self.rx.recv() => {
                        let Some(msg) = msg else { break };
                        if let Some((_, ok)) = self.handle(msg, Phase::Rollback) {
                            all_ok &= ok;
                            break;
                        }
                    }
                    _ = sigint.recv() => self.rollback_notice("SIGINT"),
                    _ = sigterm.recv() => self.rollback_notice("SIGTERM"),
                }
            }
        }
        all_ok
    }

    fn rollback_notice(&mut self, signal: &str) {
        self.interrupts += 1;
        self.reporter.event(&Event::Stopping {
            reason: format!(
                "{signal} during the rollback: the rollback goes on, so the system is not left half undone (each hook has its timeout)"
            ),
        });
    }

    fn record(&self, status: RunStatus, code: i32) -> Record {
        let finished = SystemTime::now();
        Record {
            run_id: self.run_id.clone(),
            plan: self.plan.name.clone(),
            plan_file: self.plan.path.display().to_string(),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(finished).to_string(),
            duration_ms: millis(self.clock.elapsed()),
            status,
            exit_code: code,
            stopped: self.stopped.clone(),
            jobs: self.plan.jobs,
            docker: record::DockerRecord {
                command: self.masker.mask(&shell_join(&self.docker.command)),
                reason: self.docker.reason.clone(),
            },
            vars: self
                .plan
                .vars
                .iter()
                .map(|(k, v)| {
                    let value = if v.secret {
                        crate::kinds::MASK.to_owned()
                    } else {
                        self.masker.mask(&v.value)
                    };
                    (k.clone(), value)
                })
                .collect(),
            steps: self
                .plan
                .steps
                .iter()
                .zip(&self.steps)
                .map(|(step, state)| StepRecord {
                    id: step.id.clone(),
                    kind: step.action.kind(),
                    phase: if step.when == When::Success {
                        Phase::Plan
                    } else {
                        Phase::After
                    },
                    status: state.status.unwrap_or(Status::Skipped),
                    command: state.progress.command.clone(),
                    attempts: state.progress.attempts.clone(),
                    duration_ms: millis(state.progress.duration),
                    output_tail: state.progress.tail.iter().cloned().collect(),
                    rollback: state.hook.as_ref().map(|p| HookRecord {
                        command: p.command.clone().unwrap_or_default(),
                        succeeded: state.status == Some(Status::RolledBack),
                        attempts: p.attempts.clone(),
                        output_tail: p.tail.iter().cloned().collect(),
                    }),
                })
                .collect(),
            // Hooks ran in reverse order of completion, each once.
            rollback: self
                .completed
                .iter()
                .rev()
                .filter(|&&i| self.steps[i].hook.is_some())
                .map(|&i| self.plan.steps[i].id.clone())
                .collect(),
            rollback_held: self.held.clone(),
        }
    }

    fn summary(
        &self,
        status: RunStatus,
        code: i32,
        record: &std::path::Path,
        write_error: Option<&std::io::Error>,
    ) -> String {
        use std::fmt::Write as _;
        let width = self
            .plan
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
        for (step, state) in self.plan.steps.iter().zip(&self.steps) {
            let status = state.status.unwrap_or(Status::Skipped);
            let attempts = state.progress.attempts.len();
            let duration = if attempts == 0 {
                "-".to_owned()
            } else {
                output::duration(state.progress.duration)
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:<15}  {:>8}  {:>8}",
                step.id,
                status.as_str(),
                attempts,
                duration
            );
        }
        let verdict = match status {
            RunStatus::Succeeded => "succeeded".to_owned(),
            RunStatus::Failed => match &self.stopped {
                Some(why) => format!("FAILED: {why}; every rollback hook succeeded"),
                None => "FAILED: the plan succeeded, then a step after it failed".to_owned(),
            },
            RunStatus::Interrupted => "INTERRUPTED; every rollback hook succeeded".to_owned(),
            RunStatus::RollbackIncomplete => {
                let failed: Vec<&str> = self
                    .plan
                    .steps
                    .iter()
                    .zip(&self.steps)
                    .filter(|(_, s)| s.status == Some(Status::RollbackFailed))
                    .map(|(step, _)| step.id.as_str())
                    .collect();
                format!(
                    "FAILED: {}, and the ROLLBACK IS INCOMPLETE: the hook of {} failed; the system needs a human",
                    self.stopped.as_deref().unwrap_or("a step failed"),
                    failed.join(", ")
                )
            }
        };
        if !self.held.is_empty() {
            let _ = writeln!(
                out,
                "\nMAINTENANCE IS LEFT ON: the rollback is incomplete, so the hook of {} (maintenance off) was not run. \
                 Repair the system, then: runner maintenance off {}",
                self.held
                    .iter()
                    .map(|h| format!("`{}`", h.step))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.plan.path.display()
            );
        }
        let _ = writeln!(
            out,
            "\nrun {} ({}): {verdict} (exit {code})",
            self.run_id,
            output::duration(self.clock.elapsed())
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
}

/// Through sudo, the private file that carries the values of the variables
/// `names` into the container (sudo would drop them from the environment).
fn env_file(docker: &[String], marker: &str, names: Vec<&str>) -> Option<process::EnvFile> {
    (crate::docker::is_sudo(docker) && !names.is_empty()).then(|| process::EnvFile {
        path: std::env::temp_dir().join(format!(
            "runner-{}-{}.env",
            std::process::id(),
            marker.replace('/', "-")
        )),
        names: names.into_iter().map(str::to_owned).collect(),
    })
}

/// A `docker exec` process: the base spec with `argv`, and the target's marker in
/// its environment (passed into the container by `--env RUNNER_EXEC_ID`).
fn container_spec(
    base: &Spec,
    target: &Target,
    argv: Vec<String>,
    env_file: Option<process::EnvFile>,
) -> Spec {
    let mut spec = Spec {
        argv,
        env_file,
        ..base.clone()
    };
    spec.env
        .push(("RUNNER_EXEC_ID".to_owned(), target.marker.clone()));
    spec
}

/// `[maintenance]` `on`/`off` and `status` in its container, templates resolved.
pub(crate) fn toggle_work(
    plan: &Plan,
    scope: &Scope<'_>,
    base: &Spec,
    target: impl FnOnce(String) -> Target,
    marker: &str,
    state: Toggle,
) -> work::Toggle {
    // The plan reader requires [maintenance] wherever a toggle is.
    let Some(m) = &plan.maintenance else {
        unreachable!("a maintenance toggle without [maintenance] was accepted")
    };
    let file = env_file(scope.docker, marker, RUNNER_ENV.to_vec());
    let path = file.as_ref().and_then(|f| f.path.to_str());
    let commands = crate::kinds::toggle_commands(m, scope, state, path);
    let target = target(commands.container);
    work::Toggle {
        toggle: container_spec(base, &target, commands.toggle, file.clone()),
        status: container_spec(base, &target, commands.status, file),
        state: state.as_str(),
        expected: crate::kinds::expected_status(m, state).to_owned(),
        target: target.clone(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wait before attempt `failed + 1`: `retry_delay × backoff^(failed-1)`.
pub fn retry_delay(settings: &Settings, failed: u32) -> Duration {
    let factor = settings
        .backoff
        .powi(i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX));
    let secs = settings.retry_delay.as_secs_f64() * factor;
    if secs.is_finite() && secs < MAX_RETRY_DELAY.as_secs_f64() {
        Duration::from_secs_f64(secs)
    } else {
        MAX_RETRY_DELAY
    }
}

/// Every attempt of one step or hook, retries and waits included.
async fn attempts(
    task: Task,
    mut work: Work,
    settings: Settings,
    tx: mpsc::UnboundedSender<Msg>,
    mut no_retry: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) {
    let total = settings.retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        work.set_attempt(attempt);
        let _ = tx.send(Msg::AttemptStarted(task, attempt));
        let lines = tx.clone();
        let outcome = work
            .perform(
                move |line| {
                    let _ = lines.send(Msg::Line(task, line));
                },
                kill.clone(),
            )
            .await;
        let succeeded = outcome.end.success();
        let again =
            !succeeded && attempt < total && outcome.end != End::Killed && !*no_retry.borrow();
        let wait = again.then(|| retry_delay(&settings, attempt));
        let _ = tx.send(Msg::AttemptEnded {
            task,
            attempt,
            end: outcome.end,
            duration: outcome.duration,
            retry_in: wait,
            detail: outcome.detail,
            transport: outcome.transport,
        });
        let Some(wait) = wait else {
            let _ = tx.send(Msg::Done {
                task,
                succeeded,
                captured: outcome.captured,
            });
            return;
        };
        // An interrupt during the wait cancels the retry.
        let interrupted = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = no_retry.wait_for(|stop| *stop) => true,
        };
        if interrupted {
            let _ = tx.send(Msg::Done {
                task,
                succeeded: false,
                captured: None,
            });
            return;
        }
        attempt += 1;
    }
}
