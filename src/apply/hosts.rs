//! How each host of a run ended, for the record and the summary.

use crate::engine;
use crate::mask::Masker;
use crate::plan::Plan;
use crate::plan::model::When;
use crate::plan::template::shell_join;
use crate::report::record;

/// How each host ended, for the record and the summary.
pub(super) fn host_records(
    plan: &Plan,
    hosts: Option<&crate::remote::Hosts>,
    plan_units: &[crate::plan::PlanUnit],
    report: &engine::Report,
    masker: &Masker,
) -> Vec<record::HostRecord> {
    let Some(hosts) = hosts else {
        return Vec::new();
    };
    let batch = |h: usize| plan.instances.as_ref().and_then(|x| x.batch[h]);
    hosts
        .list
        .iter()
        .enumerate()
        .map(|(h, host)| {
            // Its instances, and whether each is of the plan (not after it).
            let (mine, of_plan): (Vec<&engine::UnitReport>, Vec<bool>) = plan_units
                .iter()
                .zip(&report.units)
                .filter(|(u, _)| u.host == Some(h))
                .map(|(u, r)| (r, plan.steps[u.step].when == When::Success))
                .unzip();
            let failed = report.failed_domains.contains(&h)
                || mine.iter().any(|r| r.status == engine::Status::Failed);
            let deployed = batch(h).is_some()
                && !failed
                && mine.iter().zip(&of_plan).all(|(r, &plan_step)| {
                    // A step whose condition did not hold is done too.
                    !plan_step || r.status == engine::Status::Succeeded || r.skipped.is_some()
                });
            let rolled_back = mine.iter().any(|r| r.hook.is_some());
            let hooks_ok = mine
                .iter()
                .filter_map(|r| r.hook.as_ref())
                .all(engine::TaskReport::succeeded);
            let status = match (deployed, failed, rolled_back, hooks_ok) {
                (true, ..) => "deployed",
                (_, _, true, false) => "ROLLBACK INCOMPLETE",
                (_, true, true, true) => "failed, rolled back",
                (_, true, false, _) => "failed, nothing to roll back",
                (_, false, true, true) => "rolled back",
                _ if mine.iter().all(|r| r.run.is_none()) => "not started",
                _ => "not deployed",
            };
            record::HostRecord {
                name: host.name.clone(),
                engine: masker.mask(&host.engine),
                docker: masker.mask(&shell_join(&host.docker.command)),
                reason: masker.mask(&host.docker.reason),
                batch: batch(h),
                deployed,
                failed,
                status: status.to_owned(),
            }
        })
        .collect()
}
