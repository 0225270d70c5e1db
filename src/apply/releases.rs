//! A plan's releases: its successful runs, which of them is running, and
//! which one can go back to (`runner rollback`) or keep (pruning).

use std::collections::HashSet;
use std::path::Path;

use crate::error::Error;
use crate::report::record::Record;

/// A plan's successful runs, and which of them one can go back to.
pub(crate) struct Releases {
    /// Successful runs, oldest first.
    pub(crate) runs: Vec<Record>,
    /// Image ids this machine's engine has.
    present: HashSet<String>,
}

impl Releases {
    /// The plan's successful runs, their images looked up on `docker`.
    pub(crate) fn of(plan: &Path, docker: &crate::docker::Docker) -> Result<Self, Error> {
        let runs: Vec<Record> = crate::report::history::records(plan)?
            .into_iter()
            .filter(|r| r.status == crate::engine::RunStatus::Succeeded)
            .collect();
        let ids: HashSet<&str> = runs
            .iter()
            .flat_map(|r| &r.images)
            .filter_map(|i| i.id.as_deref())
            .collect();
        let present = super::images::present(docker, ids);
        Ok(Self { runs, present })
    }

    /// The release running now: the last successful run.
    pub(crate) fn current(&self) -> Option<&Record> {
        self.runs.last()
    }

    /// The images of `run` that are gone from this engine.
    pub(crate) fn gone<'r>(&self, run: &'r Record) -> Vec<&'r str> {
        run.images
            .iter()
            .filter(|i| i.id.as_ref().is_some_and(|id| !self.present.contains(id)))
            .map(|i| i.image.as_str())
            .collect()
    }

    /// Whether `run` is another release than the running one, whose images
    /// are all here: one can go back to it.
    pub(crate) fn can_go_back_to(&self, run: &Record) -> bool {
        self.current()
            .is_some_and(|now| now.run_id != run.run_id && !same_release(now, run))
            && self.gone(run).is_empty()
    }

    /// Runs one can go back to, newest first.
    pub(crate) fn candidates(&self) -> Vec<&Record> {
        self.runs
            .iter()
            .rev()
            .filter(|r| self.can_go_back_to(r))
            .collect()
    }
}

/// Two runs deployed the same release: the same values and the same images.
fn same_release(a: &Record, b: &Record) -> bool {
    a.vars == b.vars && a.images == b.images
}
