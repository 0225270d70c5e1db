//! The JSON record every run leaves behind: what ran, how each attempt ended,
//! what the rollback did, and the exit code. Secrets are masked before they get here.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::engine::{AttemptRecord, Phase, Report, RunStatus, Status, millis};
use crate::mask::{MASK, Masker};
use crate::plan::model::When;
use crate::plan::{Plan, PlanUnit};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) run_id: String,
    pub(crate) plan: String,
    pub(crate) plan_file: String,
    /// The plan file, links resolved: `runner runs` and `runner show` list
    /// only this plan's records when several plans share a folder.
    #[serde(default)]
    pub(crate) plan_path: String,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) duration_ms: u64,
    /// Who ran it, and where.
    #[serde(default)]
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) host: String,
    pub(crate) status: RunStatus,
    pub(crate) exit_code: i32,
    /// Why the run stopped early (a failed step, an interrupt), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stopped: Option<String>,
    pub(crate) jobs: u32,
    pub(crate) docker: DockerRecord,
    /// The compose command, when the plan uses `{{ compose }}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) compose: Option<DockerRecord>,
    /// The hosts of a plan with `[hosts]`: how each was reached and how it
    /// ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) hosts: Vec<HostRecord>,
    /// Variables, secrets as `***`.
    pub(crate) vars: IndexMap<String, String>,
    /// Every step, in declaration order.
    pub(crate) steps: Vec<StepRecord>,
    /// Rollback hooks in the order they ran.
    pub(crate) rollback: Vec<String>,
    /// Hooks held back because an earlier hook failed (turning maintenance off
    /// over a half-undone system would expose it to users).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) rollback_held: Vec<HeldHook>,
    /// When users had the maintenance page: from the start of a step or hook
    /// that turned it on to the end of one that turned it off (`to_ms` absent:
    /// left on), in milliseconds from the start of the run.
    #[serde(default)]
    pub(crate) maintenance: Vec<Window>,
    /// With hooks held: the command that turns maintenance off for this run's
    /// app once the system is repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repair: Option<String>,
    /// runner died during this run; `runner recover` wrote this record from
    /// its journal, and what it did after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) killed: Option<Killed>,
    /// A successful run: the images its steps name, with their ids here
    /// (what `runner rollback` goes back to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) images: Vec<ImageRecord>,
    /// A run of `runner rollback`: the run it went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_of: Option<String>,
}

/// An image a run deployed, and its id on the engine of the machine that ran
/// it (`None`: it had none there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub(crate) image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
}

/// A run whose runner died, and its recovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Killed {
    /// The pid of the runner that died.
    pub(crate) pid: u32,
    /// Its journal's last event, in milliseconds from the start of the run.
    pub(crate) last_event_ms: u64,
    /// When `runner recover` took over, and who ran it where.
    pub(crate) recovered_at: String,
    pub(crate) recovered_by: String,
    /// The plan's last step had succeeded: nothing was undone.
    pub(crate) finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window {
    pub(crate) from_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HeldHook {
    pub(crate) step: String,
    pub(crate) reason: String,
}

/// A host of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostRecord {
    pub(crate) name: String,
    /// Its engine as the plan gives it (`ssh://…`, a context).
    pub(crate) engine: String,
    /// The docker decision on that host.
    pub(crate) docker: String,
    pub(crate) reason: String,
    /// Its batch; absent when no step runs on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<usize>,
    /// Every one of its steps succeeded and none was rolled back.
    pub(crate) deployed: bool,
    /// One of its steps failed.
    pub(crate) failed: bool,
    /// How it ended, in words: `deployed`, `failed, rolled back`, …
    #[serde(default)]
    pub(crate) status: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DockerRecord {
    pub(crate) command: String,
    pub(crate) reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StepRecord {
    pub(crate) id: String,
    /// The host of a per-host instance (`restart-app@web1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    pub(crate) kind: String,
    pub(crate) phase: Phase,
    pub(crate) status: Status,
    /// The command as run, secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<String>,
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) duration_ms: u64,
    /// When it started and ended, in milliseconds from the start of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ended_ms: Option<u64>,
    /// The last lines of output (`[stdout] …`, `[stderr] …`).
    pub(crate) output_tail: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollback: Option<HookRecord>,
    /// Why its hook did not run though it runs also when its step fails
    /// (`also_if_failed`): the step's command never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_not_run: Option<String>,
    /// Why it was skipped when it was ready: its condition (`if`) did not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<String>,
}

/// How a step ended, all told: its own status and, for a failed step whose
/// hook ran (`also_if_failed`), what that hook did. The summary, `runner show`
/// and the SVG all say this, so none hides an undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Skipped,
    Succeeded,
    /// Succeeded, then undone by its hook.
    RolledBack,
    /// Succeeded, then its hook failed.
    RollbackFailed,
    /// Failed, and no hook ran for it.
    Failed,
    /// Failed partway, then its own hook undid it.
    FailedUndone,
    /// Failed partway, then its own hook failed too.
    FailedUndoFailed,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled back",
            Outcome::RollbackFailed => "rollback failed",
            Outcome::Failed => "failed",
            Outcome::FailedUndone => "failed, undone",
            Outcome::FailedUndoFailed => "failed, undo failed",
        }
    }
}

impl StepRecord {
    pub(crate) fn outcome(&self) -> Outcome {
        let hook = self.rollback.as_ref().map(|h| h.succeeded);
        match (self.status, hook) {
            (Status::Skipped, _) => Outcome::Skipped,
            (Status::Succeeded, _) => Outcome::Succeeded,
            (Status::RolledBack, _) => Outcome::RolledBack,
            (Status::RollbackFailed, _) => Outcome::RollbackFailed,
            (Status::Failed, None) => Outcome::Failed,
            (Status::Failed, Some(true)) => Outcome::FailedUndone,
            (Status::Failed, Some(false)) => Outcome::FailedUndoFailed,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HookRecord {
    pub(crate) command: String,
    pub(crate) succeeded: bool,
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) duration_ms: u64,
    /// When it started and ended, in milliseconds from the start of the run.
    pub(crate) started_ms: u64,
    pub(crate) ended_ms: u64,
    pub(crate) output_tail: Vec<String>,
}

/// What a record is made from.
pub(crate) struct Parts<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) run_id: &'a str,
    pub(crate) started_at: SystemTime,
    pub(crate) docker: DockerRecord,
    pub(crate) compose: Option<DockerRecord>,
    pub(crate) hosts: Vec<HostRecord>,
    pub(crate) masker: &'a Masker,
    pub(crate) report: &'a Report,
    /// A recovery: who ran the run that died, and the recovery.
    pub(crate) killed: Option<(Killed, crate::journal::Header)>,
    /// What a successful run deployed.
    pub(crate) images: Vec<ImageRecord>,
}

impl Record {
    /// Who ran it: `user@machine` (`user` in a record that has no machine).
    pub(crate) fn who(&self) -> String {
        if self.host.is_empty() {
            self.user.clone()
        } else {
            format!("{}@{}", self.user, self.host)
        }
    }

    pub(crate) fn new(run: Parts<'_>) -> Self {
        let Parts {
            plan,
            report,
            masker,
            ..
        } = run;
        let finished = SystemTime::now();
        // The engine's units: the steps, or their per-host instances.
        let units = plan.units();
        Record {
            run_id: run.run_id.to_owned(),
            plan: plan.name.clone(),
            plan_file: plan.path.display().to_string(),
            plan_path: plan.real_path().display().to_string(),
            started_at: humantime::format_rfc3339_millis(run.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(finished).to_string(),
            duration_ms: millis(report.duration),
            user: run
                .killed
                .as_ref()
                .map_or_else(crate::lock::user_name, |(_, h)| h.user.clone()),
            host: run
                .killed
                .as_ref()
                .map_or_else(crate::lock::host_name, |(_, h)| h.host.clone()),
            status: report.status,
            exit_code: crate::error::of_run(report.status),
            stopped: report.stopped.clone(),
            jobs: plan.jobs,
            docker: run.docker,
            compose: run.compose,
            hosts: run.hosts,
            vars: vars(plan, masker),
            steps: units
                .iter()
                .zip(&report.units)
                .map(|(u, unit)| StepRecord::new(plan, u, unit))
                .collect(),
            rollback: report
                .rollback
                .iter()
                .map(|&i| units[i].id.clone())
                .collect(),
            repair: (!report.held.is_empty()).then(|| super::summary::repair(plan)),
            killed: run.killed.map(|(k, _)| k),
            images: run.images,
            rollback_of: plan.rollback_of.clone(),
            maintenance: windows(plan, &units, report),
            rollback_held: report
                .held
                .iter()
                .map(|h| HeldHook {
                    step: units[h.unit].id.clone(),
                    reason: h.reason.clone(),
                })
                .collect(),
        }
    }
}

impl StepRecord {
    /// A unit's record: the step it is an instance of, how it ran and its hook.
    fn new(plan: &Plan, u: &PlanUnit, unit: &crate::engine::UnitReport) -> Self {
        let step = &plan.steps[u.step];
        StepRecord {
            id: u.id.clone(),
            host: u.host.map(|h| plan.hosts[h].name.clone()),
            kind: step.action.name().to_owned(),
            phase: if step.when == When::Success {
                Phase::Plan
            } else {
                Phase::After
            },
            status: unit.status,
            command: unit.run.as_ref().map(|r| r.command.clone()),
            attempts: unit
                .run
                .as_ref()
                .map(|r| r.attempts.clone())
                .unwrap_or_default(),
            duration_ms: unit.run.as_ref().map_or(0, |r| millis(r.duration())),
            started_ms: unit.run.as_ref().map(|r| millis(r.started)),
            ended_ms: unit.run.as_ref().map(|r| millis(r.ended)),
            output_tail: unit
                .run
                .as_ref()
                .map(|r| r.tail.iter().cloned().collect())
                .unwrap_or_default(),
            skipped: unit.skipped.clone(),
            rollback_not_run: (unit.status == Status::Failed
                && unit.hook.is_none()
                && step.rollback.as_ref().is_some_and(|h| h.also_if_failed)
                && unit
                    .run
                    .as_ref()
                    .is_some_and(crate::engine::TaskReport::never_started))
            .then(|| {
                "its command never started (nothing was changed), so there was nothing to undo"
                    .to_owned()
            }),
            rollback: unit.hook.as_ref().map(|hook| HookRecord {
                command: hook.command.clone(),
                succeeded: hook.succeeded(),
                attempts: hook.attempts.clone(),
                duration_ms: millis(hook.duration()),
                started_ms: millis(hook.started),
                ended_ms: millis(hook.ended),
                output_tail: hook.tail.iter().cloned().collect(),
            }),
        }
    }
}

/// The plan's variables as the record keeps them: secrets masked.
fn vars(plan: &Plan, masker: &Masker) -> IndexMap<String, String> {
    plan.vars
        .iter()
        .map(|(k, v)| {
            let value = if v.secret {
                MASK.to_owned()
            } else {
                masker.mask(&v.value)
            };
            (k.clone(), value)
        })
        .collect()
}

/// The maintenance windows of a run, from the toggles that succeeded: a
/// window opens when a toggle that turns maintenance on starts, and closes
/// when one that turns it off ends.
fn windows(plan: &Plan, units: &[PlanUnit], report: &Report) -> Vec<Window> {
    let mut toggles: Vec<(u64, bool)> = Vec::new();
    for (u, unit) in units.iter().zip(&report.units) {
        let step = &plan.steps[u.step];
        if let (Some(on), Some(run)) = (step.action.toggles(), &unit.run)
            && run.succeeded()
        {
            toggles.push((millis(if on { run.started } else { run.ended }), on));
        }
        if let (Some(hook), Some(ran)) = (&step.rollback, &unit.hook)
            && let Some(on) = hook.action.toggles()
            && ran.succeeded()
        {
            toggles.push((millis(if on { ran.started } else { ran.ended }), on));
        }
    }
    toggles.sort_by_key(|&(at, on)| (at, !on));
    let mut out: Vec<Window> = Vec::new();
    for (at, on) in toggles {
        match (out.last_mut(), on) {
            (Some(open @ Window { to_ms: None, .. }), false) => open.to_ms = Some(at),
            (Some(Window { to_ms: None, .. }), true) | (None | Some(_), false) => {}
            (_, true) => out.push(Window {
                from_ms: at,
                to_ms: None,
            }),
        }
    }
    out
}

/// Writes the record: a regular file atomically (a reader never sees half a
/// record). Into something that is not a regular file (`--report /dev/stdout`, a device,
/// a pipe, a link to one), the record is written through, never replacing it;
/// through a link to a regular file, the file is replaced and the link stays.
pub(crate) fn write(record: &Record, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)? + "\n";
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return write_through(path, text.as_bytes()),
        Ok(_) => return atomic(&std::fs::canonicalize(path)?, &text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    atomic(path, &text)
}

/// Whether the record goes into something that is not a regular file, such as
/// runner's own stdout.
pub(crate) fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| !meta.is_file())
}

/// Writes into an existing non-regular file. A pipe nobody reads is an error at
/// once, not a wait forever.
fn write_through(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    // Opened: now writes may wait for a slow reader, as on any terminal.
    fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).map_err(std::io::Error::from)?;
    file.write_all(bytes)?;
    file.flush()
}

/// Whether a record can be written at `path`, tried before the run changes
/// anything: a file is made beside it (as the atomic write does) and removed.
/// Into what is not a regular file (`--report /dev/stdout`) the record is
/// written through, at the end.
pub(crate) fn writable(path: &Path) -> std::io::Result<()> {
    if is_stream(path) {
        return Ok(());
    }
    // The folder the record goes to, or the nearest one that exists (what the
    // run would make below it is made only when the record is written).
    let mut folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    while !folder.exists() && folder != Path::new(".") {
        folder = folder
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
    }
    let probe = folder.join(format!(".runner-probe.{}", std::process::id()));
    new_file(&probe)?;
    std::fs::remove_file(&probe)
}

/// A file made here and now: never one that stands there already, nor the
/// target of a link planted in its place.
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Writes a regular file atomically: a reader never sees half a record.
fn atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = temp_path(path);
    new_file(&tmp).and_then(|mut file| file.write_all(text.as_bytes()))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}
