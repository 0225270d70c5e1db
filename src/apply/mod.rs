//! Running a checked plan through the engine: `runner apply`, and the rollback
//! `runner recover` owes a run that died.
//!
//! This is where the plan meets the engine: each step becomes a [`Unit`], its kind
//! makes its work when it starts ([`PlanTasks`]), and the engine's report becomes
//! the record and the summary. A run goes through named stages ([`deploy`]):
//! claim the plan, set up (record, docker, hosts, preflight), open the journal,
//! execute, record, finish.

mod hosts;
pub(crate) mod images;
pub(crate) mod prune;
pub(crate) mod releases;
mod session;
mod setup;
mod takeover;
mod tasks;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::docker::{self, Docker};
use crate::engine::{self, Event, Report, Unit, millis};
use crate::error::Error;
use crate::journal::{Journal, Journaled, Unfinished};
use crate::lock::{self, Lock};
use crate::mask::Masker;
use crate::plan::template::shell_join;
use crate::plan::{Plan, PlanUnit};
use crate::remote::Hosts;
use crate::report::console::{Console, Style};
use crate::report::record::{self, Record};
use crate::report::summary;
pub(crate) use session::Session;
pub(crate) use setup::{docker_for, lock_path, lock_plan, masker, usable};
pub(crate) use tasks::PlanTasks;

/// What the command line adds to the plan.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) json: bool,
    /// Where the record goes; default `.runner/runs/<run-id>.json` beside the plan.
    pub(crate) report: Option<PathBuf>,
    /// How long a held lock (the plan's, a host's) is waited for.
    pub(crate) lock_wait: std::time::Duration,
}

/// Runs the plan; the exit code says how the run ended.
pub(crate) fn apply(plan: &Plan, options: &Options) -> Result<i32, Error> {
    deploy(plan, options, None)
}

/// A run that died, taken over by `runner recover` under the plan's lock.
pub(crate) struct Recovery {
    pub(crate) dead: Unfinished,
    pub(crate) lock: Lock,
}

/// A new run of the plan, or the recovery of one that died: the same stages.
/// Nothing acts before the journal is open; nothing changes before every
/// check passed.
pub(crate) fn deploy(
    plan: &Plan,
    options: &Options,
    recovery: Option<Recovery>,
) -> Result<i32, Error> {
    let session = Session::start()?;
    let claim = claim(plan, &session, recovery, options.lock_wait)?;
    let run = set_up(plan, options, claim, &session)?;
    // From here on the run acts: its journal first (nothing runs without it).
    let mut journal = run.open_journal()?;
    run.copy_journal_to_hosts(&mut journal);
    let mut console = run.console(options)?;
    let recovered_at = humantime::format_rfc3339_seconds(session.started_at).to_string();
    let (report, died_at) = run.execute(session, &mut journal, &mut console);
    let record = run.record(&report, died_at, recovered_at);
    run.finish(&record, &report, journal, console)
}

/// Whose run it is: a new one under the plan's lock, or the dead one that a
/// recovery takes over (its id and start).
struct Claim {
    /// The plan's lock, held until the run is over.
    lock: Lock,
    dead: Option<Unfinished>,
    run_id: String,
    started_at: SystemTime,
}

/// Takes the plan's lock (a recovery holds it already); a run that died and
/// was not recovered lets nothing new start on top of it.
fn claim(
    plan: &Plan,
    session: &Session,
    recovery: Option<Recovery>,
    lock_wait: std::time::Duration,
) -> Result<Claim, Error> {
    let Some(Recovery { dead, lock }) = recovery else {
        let lock = lock_plan(plan, &session.run_id, session.started_at, lock_wait)?;
        if let Some(dead) = crate::journal::unfinished(&plan.dir, &plan.real_path()).pop() {
            return Err(takeover::unfinished_error(plan, &dead));
        }
        return Ok(Claim {
            lock,
            dead: None,
            run_id: session.run_id.clone(),
            started_at: session.started_at,
        });
    };
    Ok(Claim {
        started_at: humantime::parse_rfc3339(&dead.header.started_at).unwrap_or(session.started_at),
        run_id: dead.header.run_id.clone(),
        lock,
        dead: Some(dead),
    })
}

/// A run set up: everything it needs, checked, before it acts.
struct Run<'p> {
    plan: &'p Plan,
    claim: Claim,
    report_path: PathBuf,
    docker: Arc<Docker>,
    hosts: Option<Hosts>,
    masker: Masker,
    units: Vec<PlanUnit>,
}

/// The record's place (writable), the docker command, each host reached and
/// locked, and the preflight (but in a recovery, which undoes what was done).
fn set_up<'p>(
    plan: &'p Plan,
    options: &Options,
    claim: Claim,
    session: &Session,
) -> Result<Run<'p>, Error> {
    let report_path = options
        .report
        .clone()
        .unwrap_or_else(|| crate::layout::record(&plan.dir, &claim.run_id));
    // No record, no deploy: a run that could not say what it did must not start.
    record::writable(&report_path).map_err(|source| Error::Record {
        path: report_path.clone(),
        source,
    })?;
    let docker = usable(docker_for(plan))?;
    let hosts = reach_hosts(plan, &claim, session, options.lock_wait)?;
    let masker = masker(plan);
    let run = Run {
        plan,
        claim,
        report_path,
        docker: Arc::new(docker),
        hosts,
        masker,
        units: plan.units(),
    };
    if run.claim.dead.is_none() {
        let dockers = run.host_dockers();
        let engines: Vec<&Docker> = dockers.iter().map(AsRef::as_ref).collect();
        let checked = crate::preflight::run_all(plan, &run.docker, &engines, &run.masker);
        if !checked.findings.is_empty() {
            return Err(Error::Preflight(Box::new(checked)));
        }
    }
    Ok(run)
}

/// Each host reached, locked and its docker decided, before anything changes.
fn reach_hosts(
    plan: &Plan,
    claim: &Claim,
    session: &Session,
    lock_wait: std::time::Duration,
) -> Result<Option<Hosts>, Error> {
    if plan.hosts.is_empty() {
        return Ok(None);
    }
    let holder = format!(
        "run {} of {}@{} (pid {}), since {}",
        claim.run_id,
        lock::user_name(),
        lock::host_name(),
        std::process::id(),
        humantime::format_rfc3339_seconds(claim.started_at)
    );
    let mut hosts = crate::remote::connect(plan, &holder, Some(&session.interrupter), lock_wait)
        .map_err(Error::Hosts)?;
    if setup::hosts_use_compose(plan) {
        // compose runs here, as docker does, with the host's DOCKER_HOST.
        for host in &mut hosts.list {
            let compose = docker::discover_compose(
                &host.docker,
                std::env::var("COMPOSE_CMD").ok().as_deref(),
            );
            Arc::make_mut(&mut host.docker).compose = Some(compose);
        }
    }
    Ok(Some(hosts))
}

impl Run<'_> {
    fn host_dockers(&self) -> Vec<Arc<Docker>> {
        self.hosts
            .as_ref()
            .map(|h| h.list.iter().map(|c| Arc::clone(&c.docker)).collect())
            .unwrap_or_default()
    }

    /// The docker command as the run shows it.
    fn docker_shown(&self) -> String {
        self.masker.mask(&shell_join(&self.docker.command))
    }

    /// The run's journal: a new one, or the dead run's, taken over.
    fn open_journal(&self) -> Result<Journal, Error> {
        match &self.claim.dead {
            None => Journal::create(&self.plan.dir, &{
                let mut header = crate::journal::Header::new(
                    &self.claim.run_id,
                    self.plan,
                    self.claim.started_at,
                );
                header.sockets = self
                    .hosts
                    .as_ref()
                    .map(|h| h.sockets().display().to_string());
                header
            })
            .map_err(|source| Error::Journal {
                path: crate::journal::folder(&self.plan.dir),
                source,
            }),
            Some(dead) => Journal::reopen(&dead.path).map_err(|source| Error::Journal {
                path: dead.path.clone(),
                source,
            }),
        }
    }

    /// A copy of the journal on each host the run reached over ssh, so that
    /// another machine can recover the run should this one die.
    fn copy_journal_to_hosts(&self, journal: &mut Journal) {
        let Some(hosts) = &self.hosts else { return };
        for mirror in hosts.mirror_journal(&self.plan.name, &self.claim.run_id) {
            journal.copy_to(Box::new(mirror));
        }
    }

    /// The console the run shows itself on, its start announced.
    fn console(&self, options: &Options) -> Result<Console, Error> {
        let style = if options.json {
            Style::Json
        } else {
            let live = std::io::stdout().is_terminal();
            Style::Text {
                width: self.units.iter().map(|u| u.id.len()).max().unwrap_or(0),
                live,
                color: live && crate::report::console::color_allowed(),
            }
        };
        let mut console = Console::new(&style)
            .map_err(|e| Error::Start(format!("cannot start the output thread: {e}")))?;
        engine::Sink::event(
            &mut console,
            Event::RunStarted {
                run_id: self.claim.run_id.clone(),
                plan: self.plan.name.clone(),
                plan_file: self.plan.path.display().to_string(),
                steps: self.units.len(),
                jobs: self.plan.jobs,
                docker: self.docker_shown(),
                docker_reason: self.docker.reason.clone(),
                started_at: humantime::format_rfc3339_millis(self.claim.started_at).to_string(),
            },
        );
        Ok(console)
    }

    /// The engine runs the units (a recovery from where the dead run was),
    /// every event journaled; when the dead run's last event was, if any.
    fn execute(
        &self,
        session: Session,
        journal: &mut Journal,
        console: &mut Console,
    ) -> (Report, Option<Duration>) {
        let plan = self.plan;
        let mut journaled = Journaled {
            journal,
            inner: console,
            undoable: self
                .units
                .iter()
                .filter(|u| plan.steps[u.step].rollback.is_some())
                .map(|u| u.id.clone())
                .collect(),
        };
        for host in self.hosts.iter().flat_map(|h| &h.list) {
            engine::Sink::event(
                &mut journaled,
                Event::HostReady {
                    host: host.name.clone(),
                    engine: self.masker.mask(&host.engine),
                    docker: self.masker.mask(&host.docker.reason),
                    lease: host.note.as_deref().map(|n| self.masker.mask(n)),
                },
            );
        }
        let units: Vec<Unit> = tasks::units(plan, &self.units);
        let resume =
            self.claim.dead.as_ref().map(|dead| {
                takeover::take_over(dead, &units, self.claim.started_at, &mut journaled)
            });
        let died_at = resume.as_ref().map(|r| r.last_event);
        let mut tasks = PlanTasks::new(
            plan,
            Arc::clone(&self.docker),
            self.host_dockers(),
            &self.claim.run_id,
            &self.masker,
        );
        if let Some(resume) = &resume {
            tasks = tasks.with_lost_outputs(resume.lost_outputs.clone());
        }
        let domains: Vec<String> = plan.hosts.iter().map(|h| h.name.clone()).collect();
        let used = plan
            .instances
            .as_ref()
            .map_or(0, |x| x.batch.iter().flatten().count());
        let report = session.run(|interrupts| engine::Run {
            units: &units,
            jobs: plan.jobs,
            tasks: &tasks,
            masker: &self.masker,
            sink: &mut journaled,
            interrupts,
            domains: &domains,
            budget: plan.max_fail.map_or(0, |share| share.of(used, false)),
            resume,
        });
        (report, died_at)
    }

    /// The run's record; a recovery's says whose run died, and when.
    fn record(&self, report: &Report, died_at: Option<Duration>, recovered_at: String) -> Record {
        let killed = self
            .claim
            .dead
            .as_ref()
            .zip(died_at)
            .map(|(dead, died_at)| {
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
            });
        let images = if report.status == engine::RunStatus::Succeeded {
            images::deployed(self.plan, &self.docker, &self.claim.run_id)
        } else {
            Vec::new()
        };
        Record::new(record::Parts {
            images,
            plan: self.plan,
            run_id: &self.claim.run_id,
            started_at: self.claim.started_at,
            docker: record::DockerRecord {
                command: self.docker_shown(),
                reason: self.docker.reason.clone(),
            },
            compose: self.docker.compose.as_ref().map(|c| record::DockerRecord {
                command: self.masker.mask(&shell_join(&c.command)),
                reason: c.reason.clone(),
            }),
            hosts: hosts::host_records(
                self.plan,
                self.hosts.as_ref(),
                &self.units,
                report,
                &self.masker,
            ),
            masker: &self.masker,
            report,
            killed,
        })
    }

    /// Writes the record, removes the journal (kept when the record could not
    /// be written, as the run's only account), shows the summary, and lets
    /// the locks go; the exit code says how the run ended.
    /// The run's record and an audit line on every host it reached (see
    /// `remote::state`); a host that cannot keep them is told on stderr.
    fn keep_on_hosts(&self, record: &Record) {
        let Some(hosts) = &self.hosts else { return };
        let audit = serde_json::json!({
            "run": record.run_id,
            "plan": record.plan,
            "by": record.who(),
            "started": record.started_at,
            "finished": record.finished_at,
            "status": record.status.as_str(),
            "exit": record.exit_code,
            "vars": record.vars,
            "images": record.images,
            "rollback_of": record.rollback_of,
        })
        .to_string();
        let text = serde_json::to_string(record).unwrap_or_default();
        for (host, kept) in hosts.keep_state(&self.plan.name, &record.run_id, &audit, &text) {
            if let Err(why) = kept {
                eprintln!("runner: host {host} could not keep the run's record: {why}");
            }
        }
    }

    /// Once a run succeeded: the images of releases older than the plan's
    /// `keep` go (see [`prune`]), each told on stderr.
    fn prune_old_releases(&self, record: &Record) {
        if record.images.is_empty() {
            return;
        }
        let Ok(releases) = releases::Releases::of(&self.plan.path, &self.docker) else {
            return;
        };
        let keep = usize::try_from(self.plan.keep).unwrap_or(usize::MAX);
        let pruned = prune::prune(&releases, keep, &self.docker, false);
        for line in prune::lines(&pruned, keep, false) {
            eprintln!("runner: {line}");
        }
        // And on each host: its images are the ones shipped there (the same
        // ids), or made there by its steps.
        for host in self.hosts.iter().flat_map(|h| &h.list) {
            let pruned = prune::prune(&releases, keep, &host.docker, false);
            for line in prune::lines(&pruned, keep, false) {
                eprintln!("runner: host {}: {line}", host.name);
            }
        }
    }

    fn finish(
        self,
        record: &Record,
        report: &Report,
        journal: Journal,
        mut console: Console,
    ) -> Result<i32, Error> {
        let code = crate::error::of_run(report.status);
        if record::is_stream(&self.report_path) {
            // `--report /dev/stdout`: the events written first, then the record.
            console.drain();
        }
        let written = record::write(record, &self.report_path);
        if written.is_ok() && report.status == engine::RunStatus::Succeeded {
            self.prune_old_releases(record);
        }
        self.keep_on_hosts(record);
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
                run_id: self.claim.run_id.clone(),
                status: report.status,
                exit_code: code,
                duration_ms: millis(report.duration),
                record: self.report_path.display().to_string(),
            },
        );
        console.text(
            summary::text(record)
                + &summary::record_line(&self.report_path, written.as_ref().err())
                + journal_note.as_deref().unwrap_or(""),
        );
        // Released before waiting for a slow reader of stdout: the run is over.
        let Run {
            hosts,
            claim,
            report_path,
            ..
        } = self;
        drop(hosts);
        drop(claim.lock);
        console.finish();
        written.map(|()| code).map_err(|source| Error::RecordLost {
            path: report_path,
            source,
            run_code: code,
        })
    }
}
