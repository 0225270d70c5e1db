//! `maintenance-toggle`: `[maintenance]` `on`/`off` in its container, confirmed by `status`.

use super::{Operation, Scope, StepKind};
use crate::docker::{ExecOptions, exec_argv};
use crate::plan::model::{MaintenanceSection, Toggle, ToggleAction};
use crate::plan::template::Context;

/// What `status` prints in each state unless `[maintenance]` says otherwise.
pub const STATUS_ON: &str = "true";
pub const STATUS_OFF: &str = "false";

pub fn expected_status(maintenance: &MaintenanceSection, state: Toggle) -> &str {
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

/// What a toggle runs: its container, the `on`/`off` argv and the `status` argv.
pub struct ToggleCommands {
    pub container: String,
    pub toggle: Vec<String>,
    pub status: Vec<String>,
}

/// The toggle's commands, for the preview and the run alike. `env_file`: where
/// runner's variables go through sudo (`None` in a preview).
pub fn toggle_commands(
    m: &MaintenanceSection,
    scope: &Scope<'_>,
    state: Toggle,
    env_file: Option<&str>,
) -> ToggleCommands {
    let container = scope.render(&m.container.value, Context::Verbatim);
    let user = m
        .user
        .as_ref()
        .map(|u| scope.render(&u.value, Context::Verbatim));
    let options = ExecOptions {
        user: user.as_deref(),
        runner_env: true,
        env_file,
        ..ExecOptions::default()
    };
    let command = match state {
        Toggle::On => &m.on.value,
        Toggle::Off => &m.off.value,
    };
    let exec = |command| exec_argv(scope.docker, &container, &options, &scope.argv(command));
    ToggleCommands {
        toggle: exec(command),
        status: exec(&m.status.value),
        container: container.clone(),
    }
}

impl StepKind for ToggleAction {
    fn operations(&self, _env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        // Validation guarantees [maintenance] exists when a toggle does.
        let Some(m) = &scope.plan.maintenance else {
            return Vec::new();
        };
        let state = self.state.value;
        let ToggleCommands { toggle, status, .. } = toggle_commands(m, scope, state, None);
        vec![
            Operation::process(&format!("maintenance {}", state.as_str()), toggle),
            Operation::process("confirm", status).note(format!(
                "passes when it prints \"{}\"",
                expected_status(m, state)
            )),
        ]
    }
}
