//! `runner maintenance on|off|status PLAN`: the plan's `[maintenance]` commands
//! from the command line (the post-mortem's `maintenance.sh enable|disable|status`).
//!
//! They run through the engine as a one-step run, so they keep its promises: one
//! deadline, interrupts that let the toggle finish (or end it, the second time,
//! inside the container too), and the plan's lock held until it is over, so a
//! following `off` is never undone by an `on` still running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{self, PlanTasks, Session};
use crate::cli::Request;
use crate::engine::{Prepared, RunStatus, Status, Task, Tasks, Unit, Work};
use crate::error::Error;
use crate::kinds::StepKind;
use crate::kinds::maintenance_toggle::{self, MaintenanceToggle, expected_status};
use crate::plan::model::{Sp, Toggle};
use crate::plan::{Plan, Settings};
use crate::report::console::{Console, Style};

/// How long each maintenance command may take from the command line.
const TIMEOUT: Duration = Duration::from_secs(120);
const ID: &str = "maintenance";

/// `runner maintenance on|off|status PLAN`.
pub(crate) fn run(
    path: &std::path::Path,
    vars: &[(String, String)],
    request: Request,
) -> Result<i32, Error> {
    let loaded = super::load::load(path, vars)?;
    loaded.plan.runnable().map_err(Error::Plan)?;
    toggle(&loaded.plan, request)
}

fn toggle(plan: &Plan, request: Request) -> Result<i32, Error> {
    let Some(section) = &plan.maintenance else {
        return Err(Error::NoMaintenance {
            path: plan.path.clone(),
        });
    };
    let session = Session::start()?;
    let run_id = session.run_id.clone();
    // Toggling under a running deploy would fight it; reading the state would not.
    let lock = match request {
        Request::Status => None,
        Request::On | Request::Off => Some(apply::lock_plan(
            plan,
            &run_id,
            session.started_at,
            Duration::ZERO,
        )?),
    };
    let docker = apply::usable(crate::docker::discover(
        plan.sudo,
        std::env::var("DOCKER_CMD").ok().as_deref(),
    ))?;
    let masker = apply::masker(plan);
    let tasks = Commands {
        tasks: PlanTasks::new(plan, Arc::new(docker), Vec::new(), &run_id, &masker),
        request,
    };
    let units = [unit()];
    let mut console = Console::new(&Style::Lines)
        .map_err(|e| Error::Start(format!("cannot start the output thread: {e}")))?;
    if let Some(state) = tasks.state() {
        console.text(format!(
            "maintenance {}: {}\n",
            state.as_str(),
            tasks.shown()
        ));
    }
    let report = session.run(|interrupts| crate::engine::Run {
        units: &units,
        jobs: 1,
        tasks: &tasks,
        masker: &masker,
        sink: &mut console,
        interrupts,
        domains: &[],
        budget: 0,
        resume: None,
    });
    let interrupted = report.status == RunStatus::Interrupted;
    let error = verdict(section, request, &report, &mut console);
    drop(lock);
    console.finish();
    match error {
        Some(error) => Err(Error::Maintenance {
            message: masker.mask(&error),
            interrupted,
        }),
        None => Ok(crate::error::of_run(report.status)),
    }
}

/// What the toggle's one unit did: the state confirmed (printed), or what
/// went wrong.
fn verdict(
    section: &crate::plan::model::MaintenanceSection,
    request: Request,
    report: &crate::engine::Report,
    console: &mut Console,
) -> Option<String> {
    let unit = &report.units[0];
    let reason = unit
        .run
        .as_ref()
        .and_then(|r| r.attempts.last())
        .and_then(|a| a.reason.clone())
        .unwrap_or_default();
    let mut error = None;
    match (request, unit.status) {
        (_, Status::Failed | Status::Skipped) => {
            error = Some(match request {
                Request::Status => format!("`status` failed: {reason}"),
                Request::On | Request::Off => reason,
            });
        }
        (Request::Status, _) => {
            let printed = report.outputs.get(ID).map_or("", String::as_str);
            let (on, off) = (
                expected_status(section, Toggle::On),
                expected_status(section, Toggle::Off),
            );
            if printed == on {
                console.text("maintenance is on\n".to_owned());
            } else if printed == off {
                console.text("maintenance is off\n".to_owned());
            } else {
                error = Some(format!(
                    "maintenance state unknown: `status` printed {printed:?}, neither {on:?} (on) nor {off:?} (off)"
                ));
            }
        }
        (Request::On | Request::Off, _) => {
            let state = if request == Request::On { "on" } else { "off" };
            console.text(format!("maintenance is {state} (confirmed by `status`)\n"));
        }
    }
    error
}

/// The command's one unit: no retry, [`TIMEOUT`].
fn unit() -> Unit {
    Unit {
        id: ID.to_owned(),
        needs: Vec::new(),
        when: crate::engine::When::Success,
        settings: Settings {
            timeout: TIMEOUT,
            retries: 0,
            retry_delay: Duration::ZERO,
            backoff: 1.0,
        },
        hook: None,
        domain: None,
    }
}

/// The one task of a maintenance command.
struct Commands<'p> {
    tasks: PlanTasks<'p>,
    request: Request,
}

impl Commands<'_> {
    fn state(&self) -> Option<Toggle> {
        match self.request {
            Request::On => Some(Toggle::On),
            Request::Off => Some(Toggle::Off),
            Request::Status => None,
        }
    }

    /// The toggle and its confirmation as shown (secrets masked).
    fn shown(&self) -> String {
        let Some(state) = self.state() else {
            return String::new();
        };
        let none = |_: &str| None;
        let scope = self.tasks.scope(true, &none);
        let kind = MaintenanceToggle {
            state: Sp::new(state, 0..0),
        };
        kind.summary(&kind.operations(&scope, &[]))
    }
}

impl Tasks for Commands<'_> {
    fn prepare(&self, task: Task, _outputs: &HashMap<String, String>) -> Prepared {
        let none = |_: &str| None;
        let scope = self.tasks.scope(false, &none);
        let launch = self.tasks.launch(&scope, ID, Vec::new(), task);
        let work: Arc<dyn Work> = match self.state() {
            Some(state) => Arc::new(maintenance_toggle::toggle(&launch, state)),
            None => Arc::new(maintenance_toggle::status(&launch)),
        };
        Prepared {
            work,
            command: self.shown(),
        }
    }
}
