//! The JSON record every run leaves behind: what ran, how each attempt ended,
//! what the rollback did, and the exit code. Secrets are masked before they get here.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;

use super::event::{Phase, RunStatus, Status};

#[derive(Debug, Serialize)]
pub struct Record {
    pub run_id: String,
    pub plan: String,
    pub plan_file: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub status: RunStatus,
    pub exit_code: i32,
    /// Why the run stopped early (a failed step, an interrupt), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub jobs: u32,
    pub docker: DockerRecord,
    /// Variables, secrets as `***`.
    pub vars: IndexMap<String, String>,
    /// Every step, in declaration order.
    pub steps: Vec<StepRecord>,
    /// Rollback hooks in the order they ran.
    pub rollback: Vec<String>,
    /// Hooks held back because an earlier hook failed (turning maintenance off
    /// over a half-undone system would expose it to users).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback_held: Vec<HeldHook>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldHook {
    pub step: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct DockerRecord {
    pub command: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct StepRecord {
    pub id: String,
    pub kind: &'static str,
    pub phase: Phase,
    pub status: Status,
    /// The command as run, secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub duration_ms: u64,
    /// The last lines of output (`[stdout] …`, `[stderr] …`).
    pub output_tail: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<HookRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub succeeded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
    /// For a probe: the transport that decided, and the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HookRecord {
    pub command: String,
    pub succeeded: bool,
    pub attempts: Vec<AttemptRecord>,
    pub output_tail: Vec<String>,
}

/// Writes the record atomically: a reader never sees half a record.
pub fn write(record: &Record, path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)? + "\n";
    let tmp = temp_path(path);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}
