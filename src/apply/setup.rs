//! What a run is set up with before it acts: its masker, its lock, its docker.

use std::time::SystemTime;

use crate::docker::{self, Docker};
use crate::error::Error;
use crate::lock::{self, Lock};
use crate::mask::Masker;
use crate::plan::template::Name;
use crate::plan::{Plan, Step};

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

/// The plan's lock file: `.runner/PLAN-FILE.lock` beside the plan.
pub(crate) fn lock_path(plan: &Plan) -> std::path::PathBuf {
    crate::layout::lock_file(&plan.dir, plan.file_name.as_deref().unwrap_or_default())
}

/// Takes the plan's lock, waiting up to `wait` for a run that holds it (the
/// wait told on stderr: whose lock, and how long it took).
pub(crate) fn lock_plan(
    plan: &Plan,
    run_id: &str,
    started_at: SystemTime,
    wait: std::time::Duration,
) -> Result<Lock, Error> {
    let holder = lock::Holder {
        pid: std::process::id(),
        user: lock::user_name(),
        host: lock::host_name(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        run_id: run_id.to_owned(),
    };
    let say = |line: String| eprintln!("runner: {line}");
    Ok(lock::acquire_within(&lock_path(plan), &holder, wait, say)?)
}

/// The docker command, or exit 4 saying what was tried and how to fix it.
pub(crate) fn usable(docker: Docker) -> Result<Docker, Error> {
    if docker.available {
        Ok(docker)
    } else {
        Err(Error::Docker(Box::new(docker)))
    }
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
pub(super) fn hosts_use_compose(plan: &Plan) -> bool {
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
