//! `runner apply`: a checked plan, run by the engine.
//!
//! This is where the plan meets the engine: each step becomes a [`Unit`], its kind
//! makes its work when it starts ([`PlanTasks`]), and the engine's report becomes
//! the record and the summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::docker::{self, Docker};
use crate::engine::{self, Event, Prepared, Task, Tasks, Unit, Work, millis};
use crate::error::Error;
use crate::kinds::{AsKind, Launch, Scope, StepKind};
use crate::lock::{self, Lock};
use crate::mask::Masker;
use crate::plan::model::When;
use crate::plan::rule::Rule;
use crate::plan::template::{Name, Template, Value, shell_join};
use crate::plan::{Plan, Step};
use crate::process::{self, MARKER};
use crate::report::console::{Console, Style};
use crate::report::{record, summary};

/// What the command line adds to the plan.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) json: bool,
    /// Where the record goes; default `.runner/runs/<run-id>.json` beside the plan.
    pub(crate) report: Option<PathBuf>,
}

/// Runs the plan; the exit code says how the run ended.
pub(crate) fn apply(plan: &Plan, options: &Options) -> Result<i32, Error> {
    deploy(plan, options, None)
}

/// A run that died, taken over by `runner recover` under the plan's lock.
pub(crate) struct Recovery {
    pub(crate) dead: crate::journal::Unfinished,
    pub(crate) lock: Lock,
}

/// A new run of the plan, or the recovery of one that died: the same set-up
/// (lock, record, docker, hosts, journal), then the engine.
pub(crate) fn deploy(
    plan: &Plan,
    options: &Options,
    recovery: Option<Recovery>,
) -> Result<i32, Error> {
    let session = Session::start()?;
    let (lock, dead) = if let Some(Recovery { dead, lock }) = recovery {
        (lock, Some(dead))
    } else {
        let lock = lock_plan(plan, &session.run_id, session.started_at)?;
        // A run that died and was not recovered: nothing new on top of it.
        if let Some(dead) = crate::journal::unfinished(&plan.dir, &plan.real_path()).pop() {
            return Err(unfinished_error(plan, &dead));
        }
        (lock, None)
    };
    let (started_at, run_id) = match &dead {
        Some(dead) => (
            humantime::parse_rfc3339(&dead.header.started_at).unwrap_or(session.started_at),
            dead.header.run_id.clone(),
        ),
        None => (session.started_at, session.run_id.clone()),
    };
    let report_path = options
        .report
        .clone()
        .unwrap_or_else(|| crate::layout::record(&plan.dir, &run_id));
    // No record, no deploy: a run that could not say what it did must not start.
    record::writable(&report_path).map_err(|source| Error::Record {
        path: report_path.clone(),
        source,
    })?;
    let docker = usable(docker_for(plan))?;
    // Each host reached, locked and its docker decided, before anything changes.
    let hosts = if plan.hosts.is_empty() {
        None
    } else {
        let holder = format!(
            "run {run_id} of {}@{} (pid {}), since {}",
            lock::user_name(),
            lock::host_name(),
            std::process::id(),
            humantime::format_rfc3339_seconds(started_at)
        );
        let mut hosts = crate::remote::connect(plan, &holder, Some(&session.interrupter))
            .map_err(Error::Hosts)?;
        if hosts_use_compose(plan) {
            // compose runs here, as docker does, with the host's DOCKER_HOST.
            for host in &mut hosts.list {
                let compose = docker::discover_compose(
                    &host.docker,
                    std::env::var("COMPOSE_CMD").ok().as_deref(),
                );
                Arc::make_mut(&mut host.docker).compose = Some(compose);
            }
        }
        Some(hosts)
    };
    let host_dockers: Vec<Arc<Docker>> = hosts
        .as_ref()
        .map(|h| h.list.iter().map(|c| Arc::clone(&c.docker)).collect())
        .unwrap_or_default();
    let masker = masker(plan);
    // A recovery undoes what was done: the preflight's checks are of a run
    // about to start, and must not stand in its way.
    if dead.is_none() {
        let host_engines: Vec<&Docker> = host_dockers.iter().map(AsRef::as_ref).collect();
        let checked = crate::preflight::run_all(plan, &docker, &host_engines, &masker);
        if !checked.findings.is_empty() {
            return Err(Error::Preflight(Box::new(checked)));
        }
    }
    let plan_units = plan.units();
    let style = if options.json {
        Style::Json
    } else {
        let live = std::io::stdout().is_terminal();
        Style::Text {
            width: plan_units.iter().map(|u| u.id.len()).max().unwrap_or(0),
            live,
            color: live && crate::report::console::color_allowed(),
        }
    };
    // From here on the run acts: its journal first (nothing runs without it).
    let mut journal = match &dead {
        None => crate::journal::Journal::create(
            &plan.dir,
            &crate::journal::Header::new(&run_id, plan, started_at),
        )
        .map_err(|source| Error::Journal {
            path: crate::journal::folder(&plan.dir),
            source,
        })?,
        Some(dead) => {
            crate::journal::Journal::reopen(&dead.path).map_err(|source| Error::Journal {
                path: dead.path.clone(),
                source,
            })?
        }
    };
    let mut console = Console::new(&style)
        .map_err(|e| Error::Start(format!("cannot start the output thread: {e}")))?;
    let docker_shown = masker.mask(&shell_join(&docker.command));
    engine::Sink::event(
        &mut console,
        Event::RunStarted {
            run_id: run_id.clone(),
            plan: plan.name.clone(),
            plan_file: plan.path.display().to_string(),
            steps: plan_units.len(),
            jobs: plan.jobs,
            docker: docker_shown.clone(),
            docker_reason: docker.reason.clone(),
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        },
    );
    let mut journaled = crate::journal::Journaled {
        journal: &mut journal,
        inner: &mut console,
        undoable: plan_units
            .iter()
            .filter(|u| plan.steps[u.step].rollback.is_some())
            .map(|u| u.id.clone())
            .collect(),
    };
    if let Some(hosts) = &hosts {
        for host in &hosts.list {
            engine::Sink::event(
                &mut journaled,
                Event::HostReady {
                    host: host.name.clone(),
                    engine: masker.mask(&host.engine),
                    docker: masker.mask(&host.docker.reason),
                    lease: host.note.as_deref().map(|n| masker.mask(n)),
                },
            );
        }
    }
    let docker = Arc::new(docker);
    let tasks = PlanTasks::new(plan, Arc::clone(&docker), host_dockers, &run_id, &masker);
    let units = units(plan, &plan_units);
    let domains: Vec<String> = plan.hosts.iter().map(|h| h.name.clone()).collect();
    let used = plan
        .instances
        .as_ref()
        .map_or(0, |x| x.batch.iter().flatten().count());
    let budget = plan.max_fail.map_or(0, |share| share.of(used, false));
    let resume = dead
        .as_ref()
        .map(|dead| take_over(dead, &units, started_at, &mut journaled));
    let tasks = match &resume {
        Some(resume) => tasks.with_lost_outputs(resume.lost_outputs.clone()),
        None => tasks,
    };
    let died_at = resume.as_ref().map(|r| r.last_event);
    let recovered_at = humantime::format_rfc3339_seconds(session.started_at).to_string();
    let report = session.run(|interrupts| engine::Run {
        units: &units,
        jobs: plan.jobs,
        tasks: &tasks,
        masker: &masker,
        sink: &mut journaled,
        interrupts,
        domains: &domains,
        budget,
        resume,
    });
    let code = crate::error::of_run(report.status);
    let record = record::Record::new(record::Parts {
        plan,
        run_id: &run_id,
        started_at,
        docker: record::DockerRecord {
            command: docker_shown,
            reason: docker.reason.clone(),
        },
        compose: docker.compose.as_ref().map(|c| record::DockerRecord {
            command: masker.mask(&shell_join(&c.command)),
            reason: c.reason.clone(),
        }),
        hosts: host_records(plan, hosts.as_ref(), &plan_units, &report, &masker),
        masker: &masker,
        report: &report,
        killed: dead.as_ref().zip(died_at).map(|(dead, died_at)| {
            (
                record::Killed {
                    pid: dead.header.pid,
                    last_event_ms: millis(died_at),
                    recovered_at,
                    recovered_by: format!("{}@{}", lock::user_name(), lock::host_name()),
                    finished: report.status == engine::RunStatus::Succeeded,
                },
                dead.header.clone(),
            )
        }),
    });
    if record::is_stream(&report_path) {
        // `--report /dev/stdout`: the events written first, then the record.
        console.drain();
    }
    let written = record::write(&record, &report_path);
    // The record says it all now: the journal goes (kept when the record
    // could not be written, as the run's only account).
    let journal_path = journal.path().to_owned();
    let journal_note = if written.is_ok() {
        journal.remove().err().map(|e| {
            format!(
                "warning: the run's journal {} could not be removed ({e}): the next runs see an unfinished run; remove it\n",
                journal_path.display()
            )
        })
    } else {
        Some(format!(
            "the run's journal stays, as its only account: {}\n",
            journal_path.display()
        ))
    };
    engine::Sink::event(
        &mut console,
        Event::RunFinished {
            run_id: run_id.clone(),
            status: report.status,
            exit_code: code,
            duration_ms: millis(report.duration),
            record: report_path.display().to_string(),
        },
    );
    console.text(
        summary::text(&record)
            + &summary::record_line(&report_path, written.as_ref().err())
            + journal_note.as_deref().unwrap_or(""),
    );
    // Released before waiting for a slow reader of stdout: the run is over.
    drop(hosts);
    drop(lock);
    console.finish();
    match written {
        Ok(()) => Ok(code),
        Err(source) => Err(Error::RecordLost {
            path: report_path,
            source,
            run_code: code,
        }),
    }
}

/// The refusal of a new run while one of the plan's died unrecovered.
fn unfinished_error(plan: &Plan, dead: &crate::journal::Unfinished) -> Error {
    Error::Unfinished {
        run: Box::new(dead.header.clone()),
        journal: dead.path.clone(),
        plan: plan.path.clone(),
    }
}

/// `runner recover` takes over a dead run: it ends what the run left running
/// here (a step must not go on while it is undone), says so in the journal,
/// and replays the journal into the state the engine goes on from.
fn take_over(
    dead: &crate::journal::Unfinished,
    units: &[Unit],
    started_at: SystemTime,
    sink: &mut dyn engine::Sink,
) -> engine::replay::Resume {
    let start = crate::journal::epoch_ms(started_at);
    let events: Vec<(std::time::Duration, Event)> = dead
        .events
        .iter()
        .map(|e| {
            (
                std::time::Duration::from_millis(e.at.saturating_sub(start)),
                e.event.clone(),
            )
        })
        .collect();
    let mut resume = engine::replay::replay(units, &events);
    resume.since = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default()
        .max(resume.last_event);
    let left = process::end_leftovers(&dead.header.run_id, LEFTOVER_GRACE);
    let leftovers = if left > 0 {
        format!("; {left} process(es) it left running here were ended first")
    } else {
        String::new()
    };
    sink.event(Event::Recovering {
        reason: format!(
            "runner recover (pid {}, {}@{}) takes over run {}, whose runner (pid {}) died{leftovers}",
            std::process::id(),
            lock::user_name(),
            lock::host_name(),
            dead.header.run_id,
            dead.header.pid,
        ),
    });
    resume
}

/// How long what a dead run left running has to end on SIGTERM.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How each host ended, for the record and the summary.
fn host_records(
    plan: &Plan,
    hosts: Option<&crate::remote::Hosts>,
    plan_units: &[crate::plan::PlanUnit],
    report: &engine::Report,
    masker: &Masker,
) -> Vec<record::HostRecord> {
    let Some(hosts) = hosts else {
        return Vec::new();
    };
    let batch = |h: usize| plan.instances.as_ref().and_then(|x| x.batch[h]);
    hosts
        .list
        .iter()
        .enumerate()
        .map(|(h, host)| {
            // Its instances, and whether each is of the plan (not after it).
            let (mine, of_plan): (Vec<&engine::UnitReport>, Vec<bool>) = plan_units
                .iter()
                .zip(&report.units)
                .filter(|(u, _)| u.host == Some(h))
                .map(|(u, r)| (r, plan.steps[u.step].when == When::Success))
                .unzip();
            let failed = report.failed_domains.contains(&h)
                || mine.iter().any(|r| r.status == engine::Status::Failed);
            let deployed = batch(h).is_some()
                && !failed
                && mine.iter().zip(&of_plan).all(|(r, &plan_step)| {
                    // A step whose condition did not hold is done too.
                    !plan_step || r.status == engine::Status::Succeeded || r.skipped.is_some()
                });
            let rolled_back = mine.iter().any(|r| r.hook.is_some());
            let hooks_ok = mine
                .iter()
                .filter_map(|r| r.hook.as_ref())
                .all(engine::TaskReport::succeeded);
            let status = match (deployed, failed, rolled_back, hooks_ok) {
                (true, ..) => "deployed",
                (_, _, true, false) => "ROLLBACK INCOMPLETE",
                (_, true, true, true) => "failed, rolled back",
                (_, true, false, _) => "failed, nothing to roll back",
                (_, false, true, true) => "rolled back",
                _ if mine.iter().all(|r| r.run.is_none()) => "not started",
                _ => "not deployed",
            };
            record::HostRecord {
                name: host.name.clone(),
                engine: masker.mask(&host.engine),
                docker: masker.mask(&shell_join(&host.docker.command)),
                reason: masker.mask(&host.docker.reason),
                batch: batch(h),
                deployed,
                failed,
                status: status.to_owned(),
            }
        })
        .collect()
}

/// A command that runs units through the engine: its id and start, the async
/// runtime, and the interrupts, listened to before anything else happens.
pub(crate) struct Session {
    pub(crate) started_at: SystemTime,
    pub(crate) run_id: String,
    runtime: tokio::runtime::Runtime,
    interrupts: engine::Interrupts,
    /// Sends what stops the run as a signal does (a host's lock lost).
    pub(crate) interrupter: engine::signals::Sender,
}

impl Session {
    pub(crate) fn start() -> Result<Self, Error> {
        let started_at = SystemTime::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Start(format!("cannot start the async runtime: {e}")))?;
        let (interrupter, interrupts) = {
            let _context = runtime.enter();
            engine::signals::listen()
                .map_err(|e| Error::Start(format!("cannot install the signal handlers: {e}")))?
        };
        Ok(Self {
            started_at,
            run_id: run_id(started_at),
            runtime,
            interrupts,
            interrupter,
        })
    }

    /// Runs the engine to the end of the run (`run` is given the session's
    /// interrupts); nothing the units started outlives it.
    pub(crate) fn run<'a>(
        self,
        run: impl FnOnce(engine::Interrupts) -> engine::Run<'a>,
    ) -> engine::Report {
        process::adopt_orphans();
        let report = self.runtime.block_on(async {
            let report = engine::run(run(self.interrupts)).await;
            process::end_adopted().await;
            report
        });
        // A host probe's request may still be finishing on a blocking thread; it
        // ends by its own limit, and runner does not wait for it.
        self.runtime.shutdown_background();
        report
    }
}

/// The plan's steps (or their per-host instances) as the engine sees them.
fn units(plan: &Plan, plan_units: &[crate::plan::PlanUnit]) -> Vec<Unit> {
    plan_units
        .iter()
        .map(|u| {
            let step = &plan.steps[u.step];
            Unit {
                id: u.id.clone(),
                needs: u.needs.clone(),
                when: step.when.into(),
                settings: step.settings,
                hook: step.rollback.as_ref().map(|hook| engine::Hook {
                    settings: hook.settings,
                    role: hook.action.hook_role(),
                    also_if_failed: hook.also_if_failed,
                }),
                domain: u.host,
            }
        })
        .collect()
}

/// Prepares each step's and hook's work when it starts, templates resolved with
/// the outputs captured so far.
pub(crate) struct PlanTasks<'p> {
    plan: &'p Plan,
    /// The local docker: for steps that run once.
    docker: Arc<Docker>,
    /// Each host's docker, by host index; empty without `[hosts]`.
    hosts: Vec<Arc<Docker>>,
    /// The engine's units: steps, or their per-host instances.
    units: Vec<crate::plan::PlanUnit>,
    run_id: String,
    masker: &'p Masker,
    /// `sh`, resolved on PATH once: a child that searches PATH for it pays a
    /// failed exec per PATH entry, every step.
    sh: String,
    /// In a recovery, the steps whose captured output held a secret: the
    /// journal has it masked, so a task whose template needs it is refused.
    lost_outputs: Vec<String>,
}

impl<'p> PlanTasks<'p> {
    pub(crate) fn new(
        plan: &'p Plan,
        docker: Arc<Docker>,
        hosts: Vec<Arc<Docker>>,
        run_id: &str,
        masker: &'p Masker,
    ) -> Self {
        Self {
            plan,
            docker,
            hosts,
            units: plan.units(),
            run_id: run_id.to_owned(),
            masker,
            sh: which::which("sh").map_or_else(|_| "sh".to_owned(), |p| p.display().to_string()),
            lost_outputs: Vec::new(),
        }
    }

    /// Steps whose output a recovery does not have (see `lost_outputs`).
    pub(crate) fn with_lost_outputs(self, lost_outputs: Vec<String>) -> Self {
        Self {
            lost_outputs,
            ..self
        }
    }

    /// The docker of a host, or the local one.
    fn docker_of(&self, host: Option<usize>) -> &Arc<Docker> {
        host.and_then(|h| self.hosts.get(h)).unwrap_or(&self.docker)
    }

    /// What a task's work is made from, with `scope` (real values).
    pub(crate) fn launch<'s>(
        &'s self,
        scope: &'s Scope<'s>,
        id: &str,
        env: Vec<(String, String)>,
        task: Task,
    ) -> Launch<'s> {
        let hook = if matches!(task, Task::Hook(_)) {
            "/rollback"
        } else {
            ""
        };
        // Commands carry a marker, to find their processes on the host and in a
        // container when they must end.
        let marker = format!("{}/{id}{hook}", self.run_id);
        let docker = scope.docker;
        let mut base = vec![
            ("DOCKER_CMD".to_owned(), docker.command.join(" ")),
            ("COMPOSE_CMD".to_owned(), docker.compose_command().join(" ")),
            ("RUNNER_RUN_ID".to_owned(), self.run_id.clone()),
            ("RUNNER_STEP".to_owned(), id.to_owned()),
            (MARKER.to_owned(), marker.clone()),
        ];
        base.extend(docker.env.iter().cloned());
        if let Some(host) = scope.host {
            base.push(("RUNNER_HOST_NAME".to_owned(), host.to_owned()));
        }
        Launch {
            scope,
            docker: Arc::clone(self.docker_of(scope.host_index)),
            local: Arc::clone(&self.docker),
            env,
            base,
            marker,
            capture: matches!(task, Task::Step(_)),
            sh: &self.sh,
        }
    }

    /// The scope of the local docker (steps that run once).
    pub(crate) fn scope<'s>(
        &'s self,
        masked: bool,
        output: &'s dyn Fn(&str) -> Option<String>,
    ) -> Scope<'s> {
        self.scope_on(None, masked, output)
    }

    /// The scope of a step's instance on `host`.
    pub(crate) fn scope_on<'s>(
        &'s self,
        host: Option<usize>,
        masked: bool,
        output: &'s dyn Fn(&str) -> Option<String>,
    ) -> Scope<'s> {
        Scope {
            plan: self.plan,
            docker: self.docker_of(host),
            host: host.map(|h| self.plan.hosts[h].name.as_str()),
            host_index: host,
            mask_secrets: masked,
            run_id: Some(&self.run_id),
            output,
        }
    }
}

impl Tasks for PlanTasks<'_> {
    fn prepare(&self, task: Task, outputs: &HashMap<String, String>) -> Prepared {
        let unit = &self.units[task.unit()];
        let step = &self.plan.steps[unit.step];
        let (action, env) = match (task, &step.rollback) {
            (Task::Hook(_), Some(hook)) => (&hook.action, &hook.env),
            _ => (&step.action, &step.env),
        };
        let kind = action.as_kind();
        // An output the journal has masked, asked for by this task's templates.
        let lost = std::cell::RefCell::new(None::<String>);
        let output = |id: &str| {
            if self.lost_outputs.iter().any(|l| l == id) {
                lost.borrow_mut().get_or_insert_with(|| id.to_owned());
            }
            outputs.get(id).cloned()
        };
        let real = self.scope_on(unit.host, false, &output);
        let shown = self.scope_on(unit.host, true, &output);
        let launch = self.launch(&real, &unit.id, real.env(env), task);
        let operations = kind.operations(&shown, &shown.env(env));
        let refusal = refused(kind, &real).or_else(|| {
            lost.borrow().as_ref().map(|id| {
                format!(
                    "it needs the output of `{id}`, which held a secret: runner never writes a secret, so the run's journal has it masked and this cannot be run as the run would have run it; do it by hand"
                )
            })
        });
        let work = match refusal {
            Some(why) => Arc::new(Refused(self.masker.mask(&why))) as Arc<dyn Work>,
            None => kind.work(&launch),
        };
        Prepared {
            work,
            command: self.masker.mask(&kind.summary(&operations)),
        }
    }

    fn skip(&self, unit: usize, outputs: &HashMap<String, String>) -> Option<String> {
        let unit = &self.units[unit];
        let condition = self.plan.steps[unit.step].condition.as_ref()?;
        let output = |id: &str| outputs.get(id).cloned();
        let scope = self.scope_on(unit.host, false, &output);
        let value = |t: &Template| scope.render(t);
        (!condition.holds(&value)).then(|| {
            format!(
                "its condition `{}` does not hold ({})",
                condition.text,
                condition.values(&value)
            )
        })
    }
}

/// Why a value that a step's output gives breaks the rule of its field (the
/// others were checked when the plan was loaded).
fn refused(kind: &dyn StepKind, scope: &Scope<'_>) -> Option<String> {
    for (field, template, rule) in kind.values() {
        let from_output = template
            .value
            .refs()
            .any(|(name, ..)| matches!(name, Name::StepOutput(_)));
        if !from_output {
            continue;
        }
        let why = if rule == Rule::Path {
            template.value.path_climbs(&|name| match scope.value(name) {
                Some(Value::Text(text)) => Some(text),
                _ => None,
            })
        } else {
            let value = scope.text(template);
            rule.check(&value)
                .err()
                .map(|why| format!("{value:?} is {why}"))
        };
        if let Some(why) = why {
            return Some(format!(
                "`{field}` cannot take the value a step's output gives it: {why}"
            ));
        }
    }
    None
}

/// The work of a step refused before it starts.
struct Refused(String);

impl Work for Refused {
    fn attempt(&self, _: engine::Attempt) -> engine::Attempted<'_> {
        Box::pin(async move { engine::Outcome::new(engine::End::Failed(self.0.clone())) })
    }
}

/// Replaces the plan's secret values with `***`, in what runner prints and
/// records and in its debug log.
pub(crate) fn masker(plan: &Plan) -> Masker {
    let masker = Masker::new(
        plan.vars
            .values()
            .filter(|v| v.secret)
            .map(|v| v.value.clone()),
    );
    crate::report::logs::mask_with(&masker);
    masker
}

/// Takes the plan's lock for this process's lifetime, or says who holds it.
/// The plan's lock file: `.runner/PLAN-FILE.lock` beside the plan.
pub(crate) fn lock_path(plan: &Plan) -> std::path::PathBuf {
    lock_file(&plan.dir, plan.file_name.as_deref().unwrap_or_default())
}

/// The lock file of the plan `file_name` in `dir` (links resolved).
pub(crate) fn lock_file(dir: &std::path::Path, file_name: &std::ffi::OsStr) -> std::path::PathBuf {
    crate::layout::lock_file(dir, file_name)
}

pub(crate) fn lock_plan(plan: &Plan, run_id: &str, started_at: SystemTime) -> Result<Lock, Error> {
    let holder = lock::Holder {
        pid: std::process::id(),
        user: lock::user_name(),
        host: lock::host_name(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        run_id: run_id.to_owned(),
    };
    Ok(lock::acquire(&lock_path(plan), &holder)?)
}

/// The docker command, or exit 4 saying what was tried and how to fix it.
pub(crate) fn usable(docker: Docker) -> Result<Docker, Error> {
    if docker.available {
        Ok(docker)
    } else {
        Err(Error::Docker(Box::new(docker)))
    }
}

/// A sortable, unique run id: `20261125T101500Z-1f3a`.
fn run_id(at: SystemTime) -> String {
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

/// Whether anything in the plan talks to docker: a kind that does, or
/// `{{ docker }}` / `$DOCKER_CMD` in a step's environment.
fn uses_docker(plan: &Plan) -> bool {
    let step = |s: &Step| {
        s.action.uses_docker() || s.rollback.as_ref().is_some_and(|h| h.action.uses_docker())
    };
    let local = |s: &Step| {
        s.action.uses_local_docker()
            || s.rollback
                .as_ref()
                .is_some_and(|h| h.action.uses_local_docker())
    };
    plan.steps.iter().filter(|s| s.on.is_empty()).any(step)
        || plan.steps.iter().any(local)
        || mentions(plan, &Name::Docker, "DOCKER_CMD")
        || uses_compose(plan)
}

/// Whether a step or hook that runs once uses `{{ compose }}` or `$COMPOSE_CMD`.
pub(crate) fn uses_compose(plan: &Plan) -> bool {
    mentions(plan, &Name::Compose, "COMPOSE_CMD")
}

/// Whether a per-host step or hook uses `{{ compose }}` or `$COMPOSE_CMD`.
fn hosts_use_compose(plan: &Plan) -> bool {
    plan.steps
        .iter()
        .filter(|s| !s.on.is_empty())
        .any(|s| s.mentions(&Name::Compose, "COMPOSE_CMD"))
}

/// Whether a template of a step or hook (its fields or its `env`) refers to
/// `name`, or its text names the environment variable `var`.
fn mentions(plan: &Plan, name: &Name, var: &str) -> bool {
    plan.steps
        .iter()
        .filter(|s| s.on.is_empty())
        .any(|s| s.mentions(name, var))
}

/// The docker command for the run, and the compose command when the plan uses
/// it. A plan that never talks to docker is not made to wait for a probe; its
/// steps still get `DOCKER_CMD`.
pub(crate) fn docker_for(plan: &Plan) -> Docker {
    let from_env = std::env::var("DOCKER_CMD").ok();
    if !uses_docker(plan) {
        return docker::unprobed(
            from_env.as_deref(),
            if plan.hosts.is_empty() {
                "not probed: no step of this plan uses docker"
            } else {
                "not probed: no step that runs here uses this machine's docker; per-host steps use their host's"
            },
        );
    }
    let mut docker = docker::discover(plan.sudo, from_env.as_deref());
    if uses_compose(plan) {
        docker.compose = Some(docker::discover_compose(
            &docker,
            std::env::var("COMPOSE_CMD").ok().as_deref(),
        ));
    }
    docker
}
