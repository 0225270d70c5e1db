//! What a run reports, as it happens. The text view, `--output json` (one event per
//! line) and the record are all built from these events, after masking.

use serde::{Deserialize, Serialize};

use super::work::Stream;

/// The status of a step at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Never started: an earlier failure or an interrupt stopped the run first, or
    /// its `when` did not apply.
    Skipped,
    Succeeded,
    Failed,
    /// Succeeded, then undone by its rollback hook.
    RolledBack,
    /// Succeeded, then its rollback hook failed: the system needs a human.
    RollbackFailed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Skipped => "skipped",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::RolledBack => "rolled back",
            Status::RollbackFailed => "rollback failed",
        }
    }
}

/// How the whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Succeeded,
    /// A step failed; every rollback hook succeeded.
    Failed,
    /// A rollback hook failed.
    RollbackIncomplete,
    /// An interrupt (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT); every rollback hook succeeded.
    Interrupted,
    /// Some hosts failed within the failure budget and were rolled back; the
    /// others were deployed.
    Partial,
    /// runner died during the run; `runner recover` undid what it had done.
    Recovered,
}

impl RunStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::RollbackIncomplete => "rollback incomplete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Partial => "partly deployed",
            RunStatus::Recovered => "killed, recovered",
        }
    }
}

/// Which part of the run a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// The plan's steps (`when = "success"`).
    Plan,
    /// A rollback hook.
    Rollback,
    /// `when = "failure"` / `"always"` steps, after the plan and its rollback.
    After,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    RunStarted {
        run_id: String,
        plan: String,
        plan_file: String,
        steps: usize,
        jobs: u32,
        docker: String,
        docker_reason: String,
        started_at: String,
    },
    StepStarted {
        step: String,
        phase: Phase,
        attempt: u32,
        command: String,
    },
    Output {
        step: String,
        phase: Phase,
        stream: Stream,
        line: String,
    },
    AttemptFailed {
        step: String,
        phase: Phase,
        attempt: u32,
        attempts: u32,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The wait before the next attempt; absent when there is none.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    StepFinished {
        step: String,
        phase: Phase,
        status: Status,
        attempts: u32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// A failed step whose command never started: it changed nothing,
        /// so its hook does not run even with `also_if_failed`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        never_started: bool,
    },
    /// What a step that captures its stdout printed, secrets masked: the
    /// hooks that template `steps.ID.output` need it to run again.
    Captured {
        step: String,
        output: String,
        /// The output held a secret, masked here: what templates it cannot
        /// be made again from this event.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        masked: bool,
    },
    /// A step was ready and did not run: its condition does not hold.
    StepSkipped {
        step: String,
        phase: Phase,
        reason: String,
    },
    /// The run stops scheduling: a step failed for good, or an interrupt came.
    Stopping {
        reason: String,
    },
    /// `runner recover` takes over a run whose runner died: what ran then
    /// was cut short, and what the run owed follows.
    Recovering {
        reason: String,
    },
    /// A host is reached, locked, and its docker decided.
    HostReady {
        host: String,
        engine: String,
        docker: String,
        /// What the host said of a run before: whose lease ran out.
        #[serde(skip_serializing_if = "Option::is_none")]
        lease: Option<String>,
    },
    /// A failure domain (a host) failed within the failure budget: its units
    /// roll back and the others go on.
    DomainFailed {
        domain: String,
        step: String,
        /// Domains failed so far, this one included.
        failed: usize,
        /// Domains that may fail.
        allowed: usize,
    },
    RollbackStarted {
        step: String,
        command: String,
    },
    /// A hook not run: maintenance stays on because an earlier hook failed.
    RollbackHeld {
        step: String,
        reason: String,
    },
    RollbackFinished {
        step: String,
        succeeded: bool,
        attempts: u32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        exit_code: i32,
        duration_ms: u64,
        record: String,
    },
}
