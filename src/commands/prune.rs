//! `runner prune PLAN [--plan-only]`: removes the images of releases older
//! than the plan's `keep`, as a successful run does (see
//! [`crate::apply::prune`]); `--plan-only` says what it would remove.

use std::fmt::Write as _;
use std::path::Path;

use crate::apply::{prune, releases::Releases};
use crate::error::{Error, exit_code};
use crate::report::console::print_out;

/// Whether docker refused to remove an image no container uses.
fn refused(pruned: &[prune::Pruned]) -> bool {
    pruned.iter().any(|p| {
        p.kept
            .as_deref()
            .is_some_and(|k| !k.starts_with("container "))
    })
}

/// `runner prune PLAN`.
pub(crate) fn run(path: &Path, vars: &[(String, String)], plan_only: bool) -> Result<i32, Error> {
    let loaded = super::load::load(path, vars)?;
    let plan = &loaded.plan;
    // Not under a deploy: it could be about to run an image pruned here.
    let _lock = if plan_only {
        None
    } else {
        let now = std::time::SystemTime::now();
        let id = format!("prune-{}", std::process::id());
        Some(crate::apply::lock_plan(
            plan,
            &id,
            now,
            std::time::Duration::ZERO,
        )?)
    };
    let docker = crate::docker::discover(plan.sudo, std::env::var("DOCKER_CMD").ok().as_deref());
    let releases = Releases::of(path, &docker)?;
    let keep = usize::try_from(plan.keep).unwrap_or(usize::MAX);
    let pruned = prune::prune(&releases, keep, &docker, plan_only);
    let mut out = String::new();
    if pruned.is_empty() {
        let _ = writeln!(
            out,
            "nothing to prune: the images of the {keep} newest releases stay, and no older one is here"
        );
    }
    for line in prune::lines(&pruned, keep, plan_only) {
        out.push_str(&line);
        out.push('\n');
    }
    let mut failed = !plan_only && refused(&pruned);
    if !plan.hosts.is_empty() {
        if plan_only {
            out.push_str("(the hosts are looked at when the prune runs, not in a preview)\n");
        } else {
            let holder = format!(
                "prune {} of {}@{}",
                std::process::id(),
                crate::lock::user_name(),
                crate::lock::host_name()
            );
            let hosts = crate::remote::connect(plan, &holder, None, std::time::Duration::ZERO)
                .map_err(Error::Hosts)?;
            for host in &hosts.list {
                let pruned = prune::prune(&releases, keep, &host.docker, false);
                failed |= refused(&pruned);
                for line in prune::lines(&pruned, keep, false) {
                    let _ = writeln!(out, "host {}: {line}", host.name);
                }
            }
        }
    }
    print_out(&out);
    Ok(if failed {
        exit_code::STEP_FAILED
    } else {
        exit_code::SUCCESS
    })
}
