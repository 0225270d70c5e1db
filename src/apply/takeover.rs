//! A run that died: refused under a new run, taken over by `runner recover`.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::engine::{self, Event, Unit};
use crate::error::Error;
use crate::journal::Line;
use crate::lock;
use crate::plan::Plan;
use crate::process;

/// The refusal of a new run while one of the plan's died unrecovered.
pub(super) fn unfinished_error(plan: &Plan, dead: &crate::journal::Unfinished) -> Error {
    Error::Unfinished {
        run: Box::new(dead.header.clone()),
        journal: dead.path.clone(),
        plan: plan.path.clone(),
    }
}

/// `runner recover` takes over a dead run: it ends what the run left running
/// here (a step must not go on while it is undone), says so in the journal,
/// and replays the journal into the state the engine goes on from.
pub(super) fn take_over(
    dead: &crate::journal::Unfinished,
    units: &[Unit],
    started_at: SystemTime,
    sink: &mut dyn engine::Sink,
) -> engine::replay::Resume {
    let start = crate::journal::epoch_ms(started_at);
    let lines: Vec<(std::time::Duration, &Line)> = dead
        .lines
        .iter()
        .map(|e| {
            (
                std::time::Duration::from_millis(e.at.saturating_sub(start)),
                &e.line,
            )
        })
        .collect();
    let mut resume = engine::replay::replay(units, &lines);
    resume.since = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default()
        .max(resume.last_event);
    let left = process::end_leftovers(&dead.header.run_id, LEFTOVER_GRACE);
    let mut leftovers = if left > 0 {
        format!("; {left} process(es) it left running here were ended first")
    } else {
        String::new()
    };
    // Its ssh connections died with it; the folder of their sockets did not.
    if let Some(sockets) = dead.header.sockets.as_deref()
        && crate::remote::remove_sockets(std::path::Path::new(sockets))
    {
        let _ = write!(leftovers, "; its ssh sockets' folder {sockets} was removed");
    }
    sink.event(Event::Recovering {
        reason: format!(
            "runner recover (pid {}, {}@{}) takes over run {}, whose runner (pid {}) died{leftovers}",
            std::process::id(),
            lock::user_name(),
            lock::host_name(),
            dead.header.run_id,
            dead.header.pid,
        ),
    });
    resume
}

/// How long what a dead run left running has to end on SIGTERM.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
