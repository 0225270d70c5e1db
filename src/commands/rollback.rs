//! `runner rollback PLAN [--to RUN] [--plan-only]`: deploys again what an
//! earlier successful run deployed, through the same plan (so the same
//! preflight, switch, hooks and record): its recorded values, and its images,
//! which must still be here with the ids it recorded. By default, the release
//! before the running one. The plan tells such a run by `{{ run.kind }}`
//! (`rollback`), to step its schema back with a step of its own.

use std::path::Path;

use crate::apply::Options;
use crate::apply::releases::Releases;
use crate::cli::Output;
use crate::error::Error;
use crate::report::record::Record;

/// `runner rollback PLAN`.
pub(crate) fn run(
    path: &Path,
    vars: &[(String, String)],
    to: Option<&str>,
    plan_only: bool,
    output: Output,
    options: &Options,
) -> Result<i32, Error> {
    let current = super::load::load(path, vars)?;
    let docker = crate::docker::discover(
        current.plan.sudo,
        std::env::var("DOCKER_CMD").ok().as_deref(),
    );
    let releases = Releases::of(path, &docker)?;
    let target = chosen(&releases, to)?;
    // Its values, for the variables the plan still declares (its secrets,
    // never recorded, come from --var or the environment), then --var's.
    let mut values: Vec<(String, String)> = target
        .vars
        .iter()
        .filter(|(name, value)| {
            current.plan.vars.get(*name).is_some_and(|v| !v.secret)
                && value.as_str() != crate::mask::MASK
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    values.retain(|(name, _)| !vars.iter().any(|(n, _)| n == name));
    values.extend(vars.iter().cloned());
    let mut loaded = super::load::load(path, &values)?;
    loaded.plan.rollback_of = Some(target.run_id.clone());
    let shown = shown_values(target);
    eprintln!(
        "runner: rollback to run {} (started {} by {}){shown}",
        target.run_id,
        target.started_at,
        target.who()
    );
    if plan_only {
        return Ok(super::preview::run(&loaded.plan, output));
    }
    retag(target, &docker)?;
    crate::apply::apply(&loaded.plan, options)
}

/// Each image of `run` under its name again, where the name now stands for
/// another image (a build since): the run deploys the ids it recorded.
fn retag(run: &Record, docker: &crate::docker::Docker) -> Result<(), Error> {
    for image in &run.images {
        let Some(id) = &image.id else { continue };
        let now = crate::apply::images::image_id(docker, &image.image);
        if now.as_ref() == Some(id) {
            continue;
        }
        let mut argv = docker.command.clone();
        argv.extend(["tag", id, &image.image].map(str::to_owned));
        let tagged =
            crate::docker::briefly_with(&argv, &docker.env, std::time::Duration::from_secs(30))
                .is_ok_and(|out| out.status.success());
        if !tagged {
            return Err(Error::Rollback {
                message: format!(
                    "cannot name {id} {} again; nothing was changed",
                    image.image
                ),
                help: "check that docker works here: `docker image ls`".to_owned(),
            });
        }
        eprintln!(
            "runner: {} is {id} again, as run {} deployed it (it was {})",
            image.image,
            run.run_id,
            now.as_deref().unwrap_or("no image")
        );
    }
    Ok(())
}

/// The run to go back to: `--to RUN` (an id or the start of one), else the
/// newest release before the running one; refused, naming those one can go
/// back to, when its images are gone or there is none.
fn chosen<'r>(releases: &'r Releases, to: Option<&str>) -> Result<&'r Record, Error> {
    let candidates = releases.candidates();
    let names = || {
        if candidates.is_empty() {
            "no run of this plan can be gone back to (a successful run of another release, whose images are still here)".to_owned()
        } else {
            format!(
                "runs one can go back to: {}",
                candidates
                    .iter()
                    .map(|r| format!("{}{}", r.run_id, shown_values(r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let refused = |message: String| Error::Rollback {
        message,
        help: names(),
    };
    let Some(to) = to else {
        return candidates.first().copied().ok_or_else(|| {
            refused(match releases.current() {
                None => {
                    "no run of this plan succeeded: there is no release to go back to".to_owned()
                }
                Some(now) => format!(
                    "nothing to go back to before the running release (run {})",
                    now.run_id
                ),
            })
        });
    };
    let matching: Vec<&Record> = releases
        .runs
        .iter()
        .filter(|r| r.run_id.starts_with(to))
        .collect();
    let run = match matching.as_slice() {
        [run] => *run,
        [] => {
            return Err(refused(format!("no successful run of this plan is `{to}`")));
        }
        _ => {
            return Err(refused(format!(
                "`{to}` is the start of {} runs' ids",
                matching.len()
            )));
        }
    };
    let gone = releases.gone(run);
    if !gone.is_empty() {
        return Err(refused(format!(
            "run {}'s images are gone from this engine (or are other images now): {}; nothing was changed",
            run.run_id,
            gone.join(", ")
        )));
    }
    if !releases.can_go_back_to(run) {
        return Err(refused(format!(
            "run {} deployed the release that runs now",
            run.run_id
        )));
    }
    Ok(run)
}

/// A run's values as a short text: ` (version=v1, …)`, secrets as recorded.
fn shown_values(run: &Record) -> String {
    if run.vars.is_empty() {
        return String::new();
    }
    let values: Vec<String> = run.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" ({})", values.join(", "))
}
