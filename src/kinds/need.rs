//! What a step or hook needs from the machine before it runs: each kind says
//! it (`StepKind::needs`), the preflight looks.

use std::path::PathBuf;

use crate::plan::script::Unread;

/// A value a check needs: `None` when a step's output decides it during the run.
pub(crate) type Known = Option<String>;

/// What a step or hook needs from the machine before it runs.
#[derive(Debug, Clone)]
pub(crate) enum Need {
    /// Programs that `docker exec` runs in `container`, as `user`, in `workdir`.
    Container {
        container: Known,
        user: Option<String>,
        workdir: Option<String>,
        programs: Vec<String>,
    },
    /// Programs a host script runs by name (or why the script was not read),
    /// from `dir`, with `path` as its `PATH` when the step sets one.
    Host {
        programs: Result<Vec<String>, Unread>,
        dir: PathBuf,
        path: Option<String>,
    },
    /// A request to `url`: from inside `container` with the first of `tools`
    /// found there, else to `host_url` from the host; without a container,
    /// to `url` from the host.
    Probe {
        container: Option<Known>,
        tools: &'static [&'static str],
        url: Known,
        host_url: Option<Known>,
    },
    /// A compose service that must be able to run a second container beside
    /// the first (a release): the compose file in `dir` as it is now.
    Compose { service: Known, dir: PathBuf },
}
