//! `runner recover PLAN`: undoes what a run did before runner died, from the
//! journal it left (see [`crate::journal`]).
//!
//! Under the plan's lock, the oldest journal of the plan is taken over: the
//! plan is loaded with the values the run used (its secrets, never written,
//! come from the command line or the environment, as for apply), the journal
//! is replayed into the engine's state, and the engine runs the rollback the
//! run owed under the live rules (see [`crate::engine::replay`]). Its events
//! go to the same journal, so a recover that dies too is taken over by the
//! next one. The record it writes is the dead run's, marked killed.

use std::path::Path;

use super::load::load_with;
use crate::apply::{Options, Recovery};
use crate::error::{Error, exit_code};
use crate::journal::Unfinished;
use crate::report::console::print_out;

/// `runner recover PLAN`.
pub(crate) fn run(path: &Path, vars: &[(String, String)], options: &Options) -> Result<i32, Error> {
    // The plan as it stands: where its lock and journals are, what it declares.
    let current = load_with(path, vars, true)?;
    let plan = &current.plan;
    let now = std::time::SystemTime::now();
    let lock = crate::apply::lock_plan(
        plan,
        &format!("recover-{}", std::process::id()),
        now,
        options.lock_wait,
    )?;
    let mut dead = crate::journal::unfinished(&plan.dir, &plan.real_path());
    if dead.is_empty() && from_hosts(plan) {
        dead = crate::journal::unfinished(&plan.dir, &plan.real_path());
    }
    if dead.is_empty() {
        print_out(&format!(
            "nothing to recover: no run of {} left a journal (each finished and wrote its record)\n",
            path.display()
        ));
        return Ok(exit_code::SUCCESS);
    }
    let run = dead.remove(0);
    if !dead.is_empty() {
        print_out(&format!(
            "{} more run(s) of this plan died too; `runner recover {}` again takes the next\n",
            dead.len(),
            path.display()
        ));
    }
    if let Some(code) = recorded(plan, &run, options)? {
        return Ok(code);
    }
    if run.header.journal != crate::journal::VERSION {
        return Err(Error::JournalFormat {
            run: run.header.run_id.clone(),
            format: run.header.journal,
            journal: run.path.clone(),
        });
    }
    let vars = run_vars(&run, plan, vars);
    let loaded = load_with(path, &vars, false)?;
    crate::apply::deploy(&loaded.plan, options, Some(Recovery { dead: run, lock }))
}

/// With no journal here: a journal the plan's hosts keep of a run whose
/// machine died (see `remote::state`) is brought here, to be recovered as if
/// the run had been this machine's. Whether one was.
fn from_hosts(plan: &crate::plan::Plan) -> bool {
    if plan.hosts.is_empty() {
        return false;
    }
    let (kept, unread) = crate::remote::state::kept_journals(plan);
    for (host, why) in unread {
        eprintln!("runner: host {host}: its journals could not be read: {why}");
    }
    // Each run's longest copy (the hosts may have it to different points).
    let mut best: std::collections::BTreeMap<String, (String, String)> =
        std::collections::BTreeMap::new();
    for (host, files) in kept {
        for (_, text) in files {
            let Some((first, rest)) = text.split_once('\n') else {
                continue;
            };
            let Ok(header) = serde_json::from_str::<crate::journal::Header>(first) else {
                continue;
            };
            if header.plan != plan.name {
                continue;
            }
            let longer = best
                .get(&header.run_id)
                .is_none_or(|(_, kept)| kept.len() < rest.len());
            if longer {
                best.insert(header.run_id.clone(), (host.clone(), text.clone()));
            }
        }
    }
    let mut brought = false;
    for (run_id, (host, text)) in best {
        let Some((first, rest)) = text.split_once('\n') else {
            continue;
        };
        let Ok(mut header) = serde_json::from_str::<crate::journal::Header>(first) else {
            continue;
        };
        let record = crate::layout::record(&plan.dir, &run_id);
        if record.exists() {
            continue; // it finished, and this machine has its record
        }
        let machine = header.host.clone();
        header.plan_path = plan.real_path().display().to_string();
        header.plan_file = plan.path.display().to_string();
        header.sockets = None;
        match crate::journal::Journal::import(&plan.dir, &header, rest) {
            Ok(path) => {
                brought = true;
                eprintln!(
                    "runner: run {run_id} died on {machine}; its journal, as host {host} kept it, is recovered from here ({})",
                    path.display()
                );
            }
            Err(e) => eprintln!(
                "runner: run {run_id}'s journal from host {host} cannot be kept here: {e}"
            ),
        }
    }
    brought
}

/// A run whose record was written before it died (only its journal's removal
/// was left): it finished; its journal goes.
fn recorded(
    plan: &crate::plan::Plan,
    run: &Unfinished,
    options: &Options,
) -> Result<Option<i32>, Error> {
    let record = options
        .report
        .clone()
        .unwrap_or_else(|| crate::layout::record(&plan.dir, &run.header.run_id));
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(None);
    };
    let Ok(found) = serde_json::from_str::<crate::report::record::Record>(&text) else {
        return Ok(None);
    };
    if found.run_id != run.header.run_id {
        return Ok(None);
    }
    crate::journal::remove(&run.path).map_err(|source| Error::Journal {
        path: run.path.clone(),
        source,
    })?;
    print_out(&format!(
        "run {} finished and wrote its record {} ({}); only its journal was left, and is removed\n",
        found.run_id,
        record.display(),
        found.status.as_str()
    ));
    Ok(Some(exit_code::SUCCESS))
}

/// The variables to undo the run with: the values it ran with (those the plan
/// still declares), then the command line's for the rest (its secrets).
fn run_vars(
    run: &Unfinished,
    plan: &crate::plan::Plan,
    given: &[(String, String)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = run
        .header
        .vars
        .iter()
        .filter(|(k, _)| plan.vars.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in given {
        if !vars.iter().any(|(known, _)| known == k) {
            vars.push((k.clone(), v.clone()));
        }
    }
    vars
}
