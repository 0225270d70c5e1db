//! Where runner keeps its own files beside a plan: the one owner of the
//! `.runner/` folder's layout.
//!
//! ```text
//! .runner/PLAN-FILE.lock      the plan's lock (held while a run or a toggle runs)
//! .runner/journal/RUN.jsonl   a run's write-ahead journal, removed once it ends
//! .runner/runs/RUN.json       a run's record
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// runner's private folder beside the plan.
fn private(plan_dir: &Path) -> PathBuf {
    plan_dir.join(".runner")
}

/// The lock file of the plan `file_name` in `plan_dir`.
pub(crate) fn lock_file(plan_dir: &Path, file_name: &OsStr) -> PathBuf {
    private(plan_dir).join(format!("{}.lock", file_name.to_string_lossy()))
}

/// The folder of a plan's journals.
pub(crate) fn journals(plan_dir: &Path) -> PathBuf {
    private(plan_dir).join("journal")
}

/// The folder of a plan's records.
pub(crate) fn records(plan_dir: &Path) -> PathBuf {
    private(plan_dir).join("runs")
}

/// The record of the run `run_id`, unless `--report` names another file.
pub(crate) fn record(plan_dir: &Path, run_id: &str) -> PathBuf {
    records(plan_dir).join(format!("{run_id}.json"))
}
