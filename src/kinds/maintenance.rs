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

impl StepKind for ToggleAction {
    fn operations(&self, _env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation> {
        // Validation guarantees [maintenance] exists when a toggle does.
        let Some(m) = &scope.plan.maintenance else {
            return Vec::new();
        };
        let container = scope.render(&m.container.value, Context::Verbatim);
        let user = m
            .user
            .as_ref()
            .map(|u| scope.render(&u.value, Context::Verbatim));
        let options = ExecOptions {
            user: user.as_deref(),
            runner_env: true,
            ..ExecOptions::default()
        };
        let state = self.state.value;
        let command = match state {
            Toggle::On => &m.on.value,
            Toggle::Off => &m.off.value,
        };
        let toggle = exec_argv(scope.docker, &container, &options, &scope.argv(command));
        let status = exec_argv(
            scope.docker,
            &container,
            &options,
            &scope.argv(&m.status.value),
        );
        vec![
            Operation::process(&format!("maintenance {}", state.as_str()), toggle),
            Operation::process("confirm", status).note(format!(
                "passes when it prints \"{}\"",
                expected_status(m, state)
            )),
        ]
    }
}
