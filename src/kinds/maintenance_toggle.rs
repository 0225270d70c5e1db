//! `maintenance-toggle`: `[maintenance]` `on`/`off` in its container, confirmed by
//! `status`, both within one attempt's deadline.

use std::sync::Arc;

use schemars::JsonSchema;

use super::kind::{Operation, StepKind, excerpt, values_note};
use super::need::Need;
use super::scope::{Launch, Scope, attempt_spec};
use crate::docker::{Docker, ExecOptions};
use crate::engine::{Attempt, Attempted, End, HookRole, Outcome, Work};
use crate::plan::action::{Action, Body, Kind, schema_of};
use crate::plan::fields::Fields;
use crate::plan::model::{MaintenanceSection, Sp, Toggle};
use crate::plan::template::Template;
use crate::process::{Pipe, Spec};

const NAME: &str = "maintenance-toggle";

pub(crate) const ENTRY: Kind = Kind {
    name: NAME,
    about: "Runs `[maintenance]` `on` or `off`, then confirms with `status`.",
    schema: schema_of::<MaintenanceToggle>,
    fields: &["state"],
    read,
};

/// What `status` prints in each state unless `[maintenance]` says otherwise.
const STATUS_ON: &str = "true";
const STATUS_OFF: &str = "false";

#[derive(Debug, Clone, JsonSchema)]
pub(crate) struct MaintenanceToggle {
    /// The maintenance state to reach.
    pub state: Sp<Toggle>,
}

fn read(fields: &mut Fields<'_, '_, '_, '_>) -> Option<Action> {
    let state = fields.required_choice(
        "state",
        "\"on\"",
        &[("on", Toggle::On), ("off", Toggle::Off)],
    );
    Some(crate::kinds::action(MaintenanceToggle { state: state? }))
}

/// What `status` prints once maintenance is in `state`.
pub(crate) fn expected_status(maintenance: &MaintenanceSection, state: Toggle) -> &str {
    match state {
        Toggle::On => maintenance
            .status_on
            .as_ref()
            .map_or(STATUS_ON, |s| s.value.as_str()),
        Toggle::Off => maintenance
            .status_off
            .as_ref()
            .map_or(STATUS_OFF, |s| s.value.as_str()),
    }
}

/// The `[maintenance]` commands, templates resolved.
struct Commands {
    container: String,
    user: Option<String>,
    /// `on` or `off`, and the values it binds (a string command).
    toggle: (Vec<String>, Vec<(String, String)>),
    status: (Vec<String>, Vec<(String, String)>),
}

impl Commands {
    fn new(m: &MaintenanceSection, scope: &Scope<'_>, state: Toggle) -> Self {
        let command = match state {
            Toggle::On => &m.on.value,
            Toggle::Off => &m.off.value,
        };
        Self {
            container: scope.text(&m.container),
            user: m.user.as_ref().map(|u| scope.text(u)),
            toggle: scope.argv(command),
            status: scope.argv(&m.status.value),
        }
    }

    fn options(&self) -> ExecOptions<'_> {
        ExecOptions {
            user: self.user.as_deref(),
            runner_env: true,
            ..ExecOptions::default()
        }
    }

    /// The `docker exec` of `command`, as the preview shows it.
    fn shown(
        &self,
        docker: &crate::docker::Docker,
        command: &(Vec<String>, Vec<(String, String)>),
    ) -> Operation {
        let options = self.options().carrying(&command.1);
        let op = Operation::process("", docker.exec_argv(&self.container, &options, &command.0));
        match values_note(&command.1) {
            Some(note) => op.note(note),
            None => op,
        }
    }

    fn spec(&self, launch: &Launch<'_>, command: &(Vec<String>, Vec<(String, String)>)) -> Spec {
        launch.exec(&self.container, self.options(), &command.0, &command.1)
    }
}

/// The plan reader requires `[maintenance]` wherever a toggle is.
fn section<'p>(scope: &Scope<'p>) -> &'p MaintenanceSection {
    let Some(m) = &scope.plan.maintenance else {
        unreachable!("a maintenance toggle without [maintenance] was accepted")
    };
    m
}

impl Body for MaintenanceToggle {
    fn name(&self) -> &'static str {
        NAME
    }

    fn templates(&self) -> Vec<&Sp<Template>> {
        // `[maintenance]`'s own templates are checked with the section.
        Vec::new()
    }

    fn uses_docker(&self) -> bool {
        true
    }

    fn uses_maintenance(&self) -> bool {
        true
    }

    fn toggles(&self) -> Option<bool> {
        Some(self.state.value == Toggle::On)
    }

    /// Turning maintenance off gives the system back to its users: as a hook,
    /// it runs last, and not at all after a failed hook. Turning it on closes
    /// the system: as a hook (of a step that reopened it), it runs first, so
    /// that the rest of the rollback happens behind the maintenance page.
    fn hook_role(&self) -> HookRole {
        match self.state.value {
            Toggle::Off => HookRole::Reopen,
            Toggle::On => HookRole::Close,
        }
    }
}

impl StepKind for MaintenanceToggle {
    fn needs(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Need> {
        let m = section(scope);
        let toggle = match self.state.value {
            Toggle::On => &m.on.value,
            Toggle::Off => &m.off.value,
        };
        let mut programs = scope.programs(toggle);
        for p in scope.programs(&m.status.value) {
            if !programs.contains(&p) {
                programs.push(p);
            }
        }
        vec![Need::Container {
            container: scope.known(&m.container),
            user: m.user.as_ref().map(|u| scope.text(u)),
            workdir: None,
            programs,
        }]
    }

    fn operations(&self, scope: &Scope<'_>, _env: &[(String, String)]) -> Vec<Operation> {
        let m = section(scope);
        let state = self.state.value;
        let c = Commands::new(m, scope, state);
        let mut toggle = c.shown(scope.docker, &c.toggle);
        toggle.label = format!("maintenance {}", state.as_str());
        let mut confirm = c.shown(scope.docker, &c.status).note(format!(
            "passes when it prints \"{}\"",
            expected_status(m, state)
        ));
        "confirm".clone_into(&mut confirm.label);
        vec![toggle, confirm]
    }

    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work> {
        Arc::new(toggle(launch, self.state.value))
    }
}

/// `[maintenance]` `on` or `off`, confirmed by `status`.
pub(crate) fn toggle(launch: &Launch<'_>, state: Toggle) -> Switch {
    let m = section(launch.scope);
    let c = Commands::new(m, launch.scope, state);
    let mut status = c.spec(launch, &c.status);
    status.stdout = Pipe {
        keep: true,
        ..Pipe::shown()
    };
    Switch {
        toggle: Some(c.spec(launch, &c.toggle)),
        status,
        state: state.as_str(),
        expected: Some(expected_status(m, state).to_owned()),
        container: c.container,
        marker: launch.marker.clone(),
        docker: Arc::clone(&launch.docker),
    }
}

/// `[maintenance]` `status` alone: what it prints (trimmed) is the attempt's
/// captured output.
pub(crate) fn status(launch: &Launch<'_>) -> Switch {
    let m = section(launch.scope);
    let c = Commands::new(m, launch.scope, Toggle::On);
    let mut status = c.spec(launch, &c.status);
    status.stdout = Pipe::kept();
    Switch {
        toggle: None,
        status,
        state: "status",
        expected: None,
        container: c.container,
        marker: launch.marker.clone(),
        docker: Arc::clone(&launch.docker),
    }
}

/// A toggle and its confirmation, or the confirmation alone.
pub(crate) struct Switch {
    toggle: Option<Spec>,
    status: Spec,
    /// `on`, `off`, or `status`.
    state: &'static str,
    /// What `status` prints (trimmed) once the toggle took effect.
    expected: Option<String>,
    container: String,
    marker: String,
    docker: Arc<Docker>,
}

impl Work for Switch {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_> {
        Box::pin(async move {
            let exec = |spec: &Spec| {
                let spec = attempt_spec(spec, attempt.number);
                let attempt = &attempt;
                async move {
                    self.docker
                        .exec(&spec, &self.container, &self.marker, attempt)
                        .await
                }
            };
            if let Some(toggle) = &self.toggle {
                let (ran, detail) = exec(toggle).await;
                if detail.is_some() || !ran.end.success() {
                    return Outcome {
                        detail,
                        ..Outcome::new(ran.end)
                    };
                }
            }
            let (ran, detail) = exec(&self.status).await;
            if detail.is_some() {
                return Outcome {
                    detail,
                    ..Outcome::new(ran.end)
                };
            }
            let printed = ran.stdout.trim().to_owned();
            let Some(expected) = &self.expected else {
                return Outcome {
                    captured: Some(printed),
                    ..Outcome::new(ran.end)
                };
            };
            let state = self.state;
            let end = if !ran.end.success() {
                End::Failed(format!(
                    "maintenance {state} ran, but `status` failed: {}",
                    ran.end.reason()
                ))
            } else if printed != *expected {
                End::Failed(format!(
                    "maintenance {state} did not take effect: `status` printed {:?}, expected {expected:?}",
                    excerpt(&printed)
                ))
            } else {
                ran.end
            };
            Outcome::new(end)
        })
    }
}
