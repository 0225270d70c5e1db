//! Everything that stops a command before (or outside) a run, with its exit code
//! and what to do about it. It prints nothing: `report::failure` does, once.
//!
//! How a run itself ended (a failed step, an incomplete rollback, an interrupt)
//! is not an error of runner: it is the run's status and exit code.

use std::path::{Path, PathBuf};

use crate::docker::Docker;
use crate::engine::RunStatus;
use crate::lock::LockError;
use crate::plan::Diagnostics;

/// The exit codes of `runner`, in one place (the README's "Exit codes").
pub(crate) mod exit_code {
    /// The run succeeded, or the plan is valid.
    pub(crate) const SUCCESS: i32 = 0;
    /// A step failed and every rollback hook succeeded.
    pub(crate) const STEP_FAILED: i32 = 1;
    /// The plan or the command line is invalid.
    pub(crate) const INVALID: i32 = 2;
    /// A rollback hook failed: the system needs a human.
    pub(crate) const ROLLBACK_INCOMPLETE: i32 = 3;
    /// The run could not start: docker unreachable, sudo needs a password, lock held.
    pub(crate) const CANNOT_START: i32 = 4;
    /// The run was interrupted (after rollback).
    pub(crate) const INTERRUPTED: i32 = 130;
}

/// The exit code of a run that ended so.
pub(crate) fn of_run(status: RunStatus) -> i32 {
    match status {
        RunStatus::Succeeded | RunStatus::Recovered => exit_code::SUCCESS,
        RunStatus::Failed | RunStatus::Partial => exit_code::STEP_FAILED,
        RunStatus::RollbackIncomplete => exit_code::ROLLBACK_INCOMPLETE,
        RunStatus::Interrupted => exit_code::INTERRUPTED,
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The command line is wrong; clap says how.
    #[error("{0}")]
    Usage(clap::Error),
    /// The plan is invalid: its diagnostics.
    #[error("the plan is invalid")]
    Plan(Diagnostics),
    #[error("cannot read the plan {}: {source}", path.display())]
    PlanRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} has no [maintenance] section, so runner does not know how this app enters maintenance",
        path.display()
    )]
    NoMaintenance { path: PathBuf },
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("docker is not reachable, and this plan needs it: {}", .0.reason)]
    Docker(Box<Docker>),
    /// Hosts that cannot be reached, locked or driven: nothing was run.
    #[error(
        "{} of the plan cannot be used; nothing was run",
        crate::plan::diagnostic::plural(.0.len(), "host")
    )]
    Hosts(Vec<crate::remote::Problem>),
    /// The preflight found what would fail: nothing was run.
    #[error(
        "the preflight found {} before any change; nothing was run",
        crate::plan::diagnostic::plural(.0.findings.len(), "problem")
    )]
    Preflight(Box<crate::preflight::Report>),
    /// The run's record cannot be written: no run without its record.
    #[error("cannot write the run's record to {}: {source}; nothing was run", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A run of this plan died and was not recovered: a new one would start
    /// from a half-done system.
    #[error(
        "run {} of this plan did not finish (started {} by {} on {}, runner pid {}): runner died before the end and left its journal {}; nothing was run",
        run.run_id, run.started_at, run.user, run.host, run.pid, journal.display()
    )]
    Unfinished {
        run: Box<crate::journal::Header>,
        journal: PathBuf,
        plan: PathBuf,
    },
    /// The run's journal cannot be made (or a dead run's taken over): no act
    /// without its journal.
    #[error("cannot write the run's journal in {}: {source}; nothing was run", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `runner rollback` has no run to go back to, or not that one.
    #[error("{message}")]
    Rollback { message: String, help: String },
    /// A dead run's journal is of a format this runner does not replay.
    #[error(
        "run {run}'s journal {} is of format {format}, written by another version of runner; this one replays format {}; nothing was run",
        journal.display(), crate::journal::VERSION
    )]
    JournalFormat {
        run: String,
        format: u32,
        journal: PathBuf,
    },
    /// The run ended, but its record could not be written: the run's own
    /// exit code stands.
    #[error("cannot write the run record {}: {source}", path.display())]
    RecordLost {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        run_code: i32,
    },
    /// `maintenance on|off|status` ran and did not get what it asked for.
    #[error("{message}")]
    Maintenance { message: String, interrupted: bool },
    /// A past run cannot be found or read.
    #[error("{message}")]
    History {
        message: String,
        help: Option<String>,
    },
    /// runner cannot set itself up (async runtime, signal handlers, threads).
    #[error("cannot start: {0}")]
    Start(String),
}

impl Error {
    pub(crate) fn code(&self) -> i32 {
        match self {
            Error::Usage(e) if !e.use_stderr() => exit_code::SUCCESS,
            Error::Usage(_)
            | Error::Plan(_)
            | Error::PlanRead { .. }
            | Error::NoMaintenance { .. }
            | Error::History { .. } => exit_code::INVALID,
            Error::Lock(_)
            | Error::Docker(_)
            | Error::Hosts(_)
            | Error::Preflight(_)
            | Error::Record { .. }
            | Error::Unfinished { .. }
            | Error::Journal { .. }
            | Error::JournalFormat { .. }
            | Error::Rollback { .. }
            | Error::Start(_) => exit_code::CANNOT_START,
            Error::RecordLost { run_code, .. } => *run_code,
            Error::Maintenance { interrupted, .. } => {
                if *interrupted {
                    exit_code::INTERRUPTED
                } else {
                    exit_code::STEP_FAILED
                }
            }
        }
    }

    /// What the operator can do about it.
    pub(crate) fn help(&self) -> Option<String> {
        match self {
            Error::Usage(_)
            | Error::Plan(_)
            | Error::Start(_)
            | Error::Hosts(_)
            | Error::RecordLost { .. }
            | Error::Maintenance { .. } => None,
            Error::PlanRead { .. } => Some(
                "check the path; plans are TOML files such as plans/production.toml".to_owned(),
            ),
            Error::NoMaintenance { .. } => Some(
                "add [maintenance] with `container`, `on`, `off` and `status` commands (see plans/production.toml)"
                    .to_owned(),
            ),
            Error::Lock(e) => Some(e.help()),
            Error::Unfinished { plan, run, .. } => Some(format!(
                "run `runner recover {}`: it undoes what run {} did (its rollback, as the run would have done it), or finds it finished; `runner show {} {}` tells what its journal says",
                plan.display(),
                run.run_id,
                plan.display(),
                run.run_id
            )),
            Error::Journal { path, .. } => Some(format!(
                "runner journals each run in {}, a folder of this user's alone: make {} writable for this user",
                path.display(),
                path.parent().and_then(Path::parent).unwrap_or(path).display()
            )),
            Error::JournalFormat { journal, .. } => Some(format!(
                "recover it with the version of runner that ran it; or check by hand what the run changed, then remove {}",
                journal.display()
            )),
            Error::Record { path, .. } => Some(format!(
                "runner keeps each run's record in {}: make it writable for this user, or give `--report FILE` in a folder it can write",
                path.parent().unwrap_or(path).display()
            )),
            Error::Docker(docker) => docker.help.clone(),
            Error::History { help, .. } => help.clone(),
            Error::Rollback { help, .. } => Some(help.clone()),
            Error::Preflight(_) => Some(
                "fix each problem above; `runner apply PLAN --plan-only` runs the same checks and changes nothing"
                    .to_owned(),
            ),
        }
    }
}
