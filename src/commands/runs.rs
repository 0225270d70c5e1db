//! `runner runs PLAN` and `runner show PLAN [RUN|last]`: the plan's past runs,
//! from the records its runs left in `.runner/runs/` beside it.
//!
//! Only the plan's own records are listed (plans of one folder share it); a
//! record written elsewhere with `--report` is not found here. The plan file
//! is not read: its history stays readable when it no longer loads (a missing
//! environment variable, a change that broke it).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::apply::releases::Releases;
use crate::cli::ShowFormat;
use crate::engine::Event;
use crate::error::Error;
use crate::error::exit_code;
use crate::report::console::{duration, print_out};
use crate::report::history::{Found, found};
use crate::report::record::Record;
use crate::report::{summary, timeline};

/// The records with those the plan's hosts keep (see
/// [`crate::report::history::with_hosts`]); a plan that cannot be loaded
/// (say a value is missing) is read from this machine alone.
fn hosts_too(plan: &Path, found: Vec<Found>) -> Vec<Found> {
    let loaded = super::load::load_with(plan, &[], false).ok();
    crate::report::history::with_hosts(loaded.as_ref().map(|l| &l.plan), found)
}

/// The releases one can go back to, when a run recorded images (their ids
/// are looked up on this machine's engine).
fn releases(plan: &Path, found: &[Found]) -> Result<Option<Releases>, Error> {
    let recorded = found
        .iter()
        .any(|f| f.record.as_ref().is_ok_and(|(r, _)| !r.images.is_empty()));
    if !recorded {
        return Ok(None);
    }
    let docker = crate::docker::discover(
        crate::plan::model::SudoMode::Auto,
        std::env::var("DOCKER_CMD").ok().as_deref(),
    );
    Releases::of(plan, &docker).map(Some)
}

/// What a run is to `runner rollback`: the release running now, one to go
/// back to, or a rollback itself.
fn mark(releases: Option<&Releases>, run: &Record) -> String {
    let mut out = String::new();
    if !run.host.is_empty() && run.host != crate::lock::host_name() {
        let _ = write!(out, "  (from {})", run.who());
    }
    if let Some(to) = &run.rollback_of {
        let _ = write!(out, "  went back to {to}");
    }
    if let Some(releases) = releases {
        if releases
            .current()
            .is_some_and(|now| now.run_id == run.run_id)
        {
            out.push_str("  <- running now");
        } else if run.status == crate::engine::RunStatus::Succeeded && releases.can_go_back_to(run)
        {
            out.push_str("  <- can go back (runner rollback --to)");
        }
    }
    out
}

#[derive(Serialize)]
struct Row<'a> {
    run_id: &'a str,
    started_at: &'a str,
    user: &'a str,
    host: &'a str,
    status: &'a str,
    /// None for a run that did not finish.
    exit_code: Option<i32>,
    duration_ms: Option<u64>,
    /// Its record, or the journal of a run that did not finish.
    record: String,
    /// A rollback: the run it went back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_of: Option<&'a str>,
    /// The release that runs now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    running_now: bool,
    /// A release `runner rollback` can go back to.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    can_go_back: bool,
    /// A run this machine has no record of: the host that keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    kept_on_host: Option<&'a str>,
}

/// The runs of the plan (`real`: its file, links resolved) that did not
/// finish: their journals.
fn unfinished(real: &Path) -> Vec<crate::journal::Unfinished> {
    crate::journal::unfinished(real.parent().unwrap_or(Path::new("/")), real)
}

/// Who holds the plan's lock now (`real`: the plan file, links resolved):
/// a journal of that run is of a run still running.
fn lock_holder(real: &Path) -> Option<String> {
    crate::lock::held(&crate::layout::lock_file(
        real.parent().unwrap_or(Path::new("/")),
        real.file_name().unwrap_or_default(),
    ))
}

/// Whether the run of a journal holds the plan's lock (`holder`): it runs.
fn running(holder: Option<&str>, run: &crate::journal::Unfinished) -> bool {
    holder.is_some_and(|h| h.contains(&run.header.run_id))
}

/// What a run that did not finish did last, from its journal.
fn last_event(run: &crate::journal::Unfinished) -> String {
    run.events().last().map_or_else(
        || "nothing: it died before its first step".to_owned(),
        |(_, event)| journal_line(event),
    )
}

/// `runner runs PLAN`: one line per run, oldest first.
pub(crate) fn runs(plan: &Path, output: crate::cli::Output) -> Result<i32, Error> {
    let (dir, real, found) = found(plan)?;
    let found = hosts_too(plan, found);
    let dead = unfinished(&real);
    let holder = lock_holder(&real);
    let running = |u: &crate::journal::Unfinished| running(holder.as_deref(), u);
    let releases = releases(plan, &found)?;
    if output == crate::cli::Output::Json {
        let rows = rows(&found, &dead, running, releases.as_ref());
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ));
        return Ok(exit_code::SUCCESS);
    }
    if found.is_empty() && dead.is_empty() {
        print_out(&format!(
            "no runs of {} yet (records go to {})\n",
            plan.display(),
            dir.display()
        ));
        return Ok(exit_code::SUCCESS);
    }
    let mark = |r: &Record| mark(releases.as_ref(), r);
    print_out(&table(plan, &found, &dead, running, mark));
    Ok(exit_code::SUCCESS)
}

/// The runs as `--output json` lists them: the recorded, then those that
/// did not finish.
fn rows<'a>(
    found: &'a [Found],
    dead: &'a [crate::journal::Unfinished],
    running: impl Fn(&crate::journal::Unfinished) -> bool,
    releases: Option<&Releases>,
) -> Vec<Row<'a>> {
    found
        .iter()
        .filter_map(|f| {
            let (r, _) = f.record.as_ref().ok()?;
            Some(Row {
                run_id: &r.run_id,
                started_at: &r.started_at,
                user: &r.user,
                host: &r.host,
                status: r.status.as_str(),
                exit_code: Some(r.exit_code),
                duration_ms: Some(r.duration_ms),
                record: f.path.display().to_string(),
                kept_on_host: f.on_host.as_deref(),
                rollback_of: r.rollback_of.as_deref(),
                running_now: releases
                    .and_then(Releases::current)
                    .is_some_and(|now| now.run_id == r.run_id),
                can_go_back: releases.is_some_and(|rel| {
                    r.status == crate::engine::RunStatus::Succeeded && rel.can_go_back_to(r)
                }),
            })
        })
        .chain(dead.iter().map(|u| Row {
            run_id: &u.header.run_id,
            started_at: &u.header.started_at,
            user: &u.header.user,
            host: &u.header.host,
            status: if running(u) {
                "running"
            } else {
                "did not finish"
            },
            exit_code: None,
            duration_ms: None,
            record: u.path.display().to_string(),
            rollback_of: None,
            running_now: false,
            can_go_back: false,
            kept_on_host: None,
        }))
        .collect()
}

/// The runs as a table, then a line for each that did not finish.
fn table(
    plan: &Path,
    found: &[Found],
    dead: &[crate::journal::Unfinished],
    running: impl Fn(&crate::journal::Unfinished) -> bool,
    mark: impl Fn(&Record) -> String,
) -> String {
    let mut out = format!(
        "{:<22}  {:<24}  {:<12}  {:<19}  {:>4}  {:>8}\n",
        "run", "started", "by", "status", "exit", "duration"
    );
    for f in found {
        match &f.record {
            Ok((r, _)) => {
                let who = r.who();
                let _ = writeln!(
                    out,
                    "{:<22}  {:<24}  {:<12}  {:<19}  {:>4}  {:>8}{}",
                    r.run_id,
                    r.started_at,
                    who,
                    r.status.as_str(),
                    r.exit_code,
                    duration(Duration::from_millis(r.duration_ms)),
                    mark(r)
                        + &f.on_host
                            .as_ref()
                            .map_or_else(String::new, |h| format!("  (kept on host {h})"))
                );
            }
            Err(why) => {
                let _ = writeln!(out, "{}: unreadable record: {why}", f.path.display());
            }
        }
    }
    for u in dead {
        let h = &u.header;
        let _ = writeln!(
            out,
            "{:<22}  {:<24}  {:<12}  {:<19}  {:>4}  {:>8}",
            h.run_id,
            h.started_at,
            format!("{}@{}", h.user, h.host),
            if running(u) {
                "RUNNING"
            } else {
                "DID NOT FINISH"
            },
            "-",
            "-"
        );
    }
    for u in dead.iter().filter(|u| !running(u)) {
        let _ = writeln!(
            out,
            "run {} did not finish (pid {} died, or its machine): last, {}; its journal: {}\n  `runner recover {}` undoes what it did; `runner apply` of this plan refuses until then",
            u.header.run_id,
            u.header.pid,
            last_event(u),
            u.path.display(),
            plan.display()
        );
    }
    out
}

/// `runner show PLAN [RUN]`: `RUN` is a run id, a unique start of one, or
/// `last` (the default).
pub(crate) fn show(plan: &Path, wanted: &str, format: ShowFormat) -> Result<i32, Error> {
    let (dir, real, found) = found(plan)?;
    let found = hosts_too(plan, found);
    let dead = unfinished(&real);
    let newest_record = found
        .iter()
        .filter_map(|f| f.record.as_ref().ok())
        .map(|(r, _)| r.started_at.as_str())
        .max()
        .unwrap_or("");
    let dead_one = if wanted == "last" {
        dead.last()
            .filter(|u| u.header.started_at.as_str() > newest_record)
    } else {
        dead.iter().find(|u| u.header.run_id.starts_with(wanted))
    };
    if let Some(run) = dead_one {
        let live = running(lock_holder(&real).as_deref(), run);
        return show_unfinished(run, format, plan, live);
    }
    let readable: Vec<(&Path, &Record, &str)> = found
        .iter()
        .filter_map(|f| {
            f.record
                .as_ref()
                .ok()
                .map(|(r, text)| (f.path.as_path(), r, text.as_str()))
        })
        .collect();
    let chosen = if wanted == "last" {
        readable.last().copied()
    } else {
        let matching: Vec<_> = readable
            .iter()
            .filter(|(_, r, _)| r.run_id.starts_with(wanted))
            .collect();
        match matching.as_slice() {
            [one] => Some(**one),
            [] => None,
            many => {
                return Err(Error::History {
                    message: format!("`{wanted}` is the start of {} run ids", many.len()),
                    help: Some(format!(
                        "give more of it: {}",
                        many.iter()
                            .map(|(_, r, _)| r.run_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                });
            }
        }
    };
    let Some((path, record, text)) = chosen else {
        return Err(Error::History {
            message: if readable.is_empty() {
                format!("no runs of {} yet", plan.display())
            } else {
                format!("no run `{wanted}` of {}", plan.display())
            },
            help: Some(if readable.is_empty() {
                format!("records go to {}", dir.display())
            } else {
                format!(
                    "`runner runs {}` lists them; the last is {}",
                    plan.display(),
                    readable.last().map_or("", |(_, r, _)| r.run_id.as_str())
                )
            }),
        });
    };
    let text = match format {
        ShowFormat::Svg => timeline::svg(record),
        ShowFormat::Json => text.to_owned(),
        ShowFormat::Text => {
            let mut out = format!(
                "run {} of \"{}\" ({})\nstarted {} by {}{}\n",
                record.run_id,
                record.plan,
                record.plan_file,
                record.started_at,
                record.user,
                if record.host.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", record.host)
                }
            );
            out.push_str(&summary::text(record));
            out.push_str(&timeline::text(record));
            let _ = writeln!(out, "\nrecord: {}", path.display());
            out
        }
    };
    print_out(&text);
    Ok(exit_code::SUCCESS)
}

/// `runner show` of a run that did not finish: what its journal says.
fn show_unfinished(
    run: &crate::journal::Unfinished,
    format: ShowFormat,
    plan: &Path,
    live: bool,
) -> Result<i32, Error> {
    let h = &run.header;
    let text = match format {
        ShowFormat::Svg => {
            return Err(Error::History {
                message: format!("run {} did not finish: it has no record to draw", h.run_id),
                help: Some("`--format text` or `--format json` show its journal".to_owned()),
            });
        }
        ShowFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "header": h,
                "events": run
                    .events()
                    .map(|(at, event)| {
                        let mut value = serde_json::to_value(event).unwrap_or_default();
                        if let Some(fields) = value.as_object_mut() {
                            fields.insert("at".to_owned(), at.into());
                        }
                        value
                    })
                    .collect::<Vec<_>>(),
                "journal": run.path.display().to_string(),
            }))
            .unwrap_or_default()
        ),
        ShowFormat::Text => {
            let mut out = format!(
                "run {} of \"{}\" ({})\nstarted {} by {} on {}\n",
                h.run_id, h.plan, h.plan_file, h.started_at, h.user, h.host
            );
            if live {
                let _ = writeln!(
                    out,
                    "RUNNING: runner (pid {}) runs it now. What its journal says so far, in order:",
                    h.pid
                );
            } else {
                let _ = writeln!(
                    out,
                    "DID NOT FINISH: runner (pid {}) died before the end of the run (kill -9, the OOM killer, a reboot), so it wrote no record; `runner recover {}` undoes what it did. What its journal says, in order:",
                    h.pid,
                    plan.display()
                );
            }
            let start = humantime::parse_rfc3339(&h.started_at).map_or_else(
                |_| run.events().next().map_or(0, |(at, _)| at),
                crate::journal::epoch_ms,
            );
            for (at, event) in run.events() {
                let _ = writeln!(
                    out,
                    "  {:>9}  {}",
                    duration(Duration::from_millis(at.saturating_sub(start))),
                    journal_line(event)
                );
            }
            let _ = writeln!(out, "\njournal: {}", run.path.display());
            out
        }
    };
    print_out(&text);
    Ok(exit_code::SUCCESS)
}

/// One event of a journal, in words.
fn journal_line(e: &Event) -> String {
    match e {
        Event::StepStarted { step, attempt, .. } => {
            format!("`{step}` started (attempt {attempt})")
        }
        Event::StepFinished { step, status, .. } => format!("`{step}` {}", status.as_str()),
        Event::StepSkipped { step, reason, .. } => format!("`{step}` skipped: {reason}"),
        Event::AttemptFailed {
            step,
            attempt,
            reason,
            ..
        } => format!("`{step}` attempt {attempt} failed: {reason}"),
        Event::Captured { step, .. } => format!("`{step}` output captured"),
        Event::RollbackStarted { step, .. } => format!("rollback of `{step}` started"),
        Event::RollbackFinished {
            step, succeeded, ..
        } => format!(
            "rollback of `{step}` {}",
            if *succeeded { "succeeded" } else { "failed" }
        ),
        Event::RollbackHeld { step, .. } => format!("rollback of `{step}` held back"),
        Event::Stopping { reason } | Event::Recovering { reason } => reason.clone(),
        Event::HostReady { host, .. } => format!("host {host} ready"),
        Event::DomainFailed { domain, .. } => format!("host {domain} failed"),
        Event::RunStarted { .. } | Event::Output { .. } | Event::RunFinished { .. } => {
            String::new()
        }
    }
}
