//! The images a run deployed, as its record keeps them: each image a step
//! names (a field whose rule is [`Rule::Image`]), with its id on this
//! machine's engine, read once the run succeeded. `runner rollback` goes back
//! to those ids, and refuses a run whose images are gone.

use std::collections::BTreeSet;

use crate::docker::Docker;
use crate::kinds::scope::Scope;
use crate::plan::Plan;
use crate::plan::rule::Rule;
use crate::report::record::ImageRecord;

/// The images the plan's steps name, as this run's values make them (those a
/// step's output decides are left out), each with its id here.
pub(crate) fn deployed(plan: &Plan, docker: &Docker, run_id: &str) -> Vec<ImageRecord> {
    let no_output = |_: &str| None;
    let scope = Scope {
        plan,
        docker,
        host: None,
        host_index: None,
        mask_secrets: true,
        run_id: Some(run_id),
        output: &no_output,
    };
    let images: BTreeSet<String> = plan
        .steps
        .iter()
        .flat_map(|step| step.action.values())
        .filter(|(_, _, rule)| *rule == Rule::Image)
        .filter_map(|(_, template, _)| scope.known(template))
        .collect();
    images
        .into_iter()
        .map(|image| ImageRecord {
            id: image_id(docker, &image),
            image,
        })
        .collect()
}

/// Which of `ids` `docker`'s engine has: one `docker image inspect` for all.
pub(crate) fn present<'i>(
    docker: &Docker,
    ids: impl IntoIterator<Item = &'i str>,
) -> std::collections::HashSet<String> {
    let ids: Vec<&str> = ids.into_iter().collect();
    if ids.is_empty() {
        return std::collections::HashSet::new();
    }
    let mut argv = docker.command.clone();
    argv.extend(["image", "inspect", "--format", "{{.Id}}", "--"].map(str::to_owned));
    argv.extend(ids.iter().map(|&id| id.to_owned()));
    // Missing ones are errors on stderr (and exit 1); the others are printed.
    let Ok(out) =
        crate::docker::briefly_with(&argv, &docker.env, std::time::Duration::from_secs(30))
    else {
        return std::collections::HashSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|id| ids.contains(id))
        .map(str::to_owned)
        .collect()
}

/// An image's id on `docker`'s engine (`sha256:…`); `None` when it has none.
pub(crate) fn image_id(docker: &Docker, image: &str) -> Option<String> {
    let mut argv = docker.command.clone();
    argv.extend(["image", "inspect", "--format", "{{.Id}}", "--", image].map(str::to_owned));
    let out =
        crate::docker::briefly_with(&argv, &docker.env, std::time::Duration::from_secs(10)).ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && id.starts_with("sha256:")).then_some(id)
}
