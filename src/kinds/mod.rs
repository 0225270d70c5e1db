//! Step kinds. Each kind turns its plan fields into the concrete operations it
//! performs; the engine schedules, the kinds never do.

mod docker_exec;
mod http_probe;
mod maintenance;
pub use docker_exec::exec_command;
pub use http_probe::{REQUEST_TIMEOUT_SECS, probe_argv};
pub use maintenance::{ToggleCommands, expected_status, toggle_commands};
mod shell;

use indexmap::IndexMap;
use serde::Serialize;

use crate::plan::Plan;
use crate::plan::model::{Action, Command};
use crate::plan::template::{Context, Name, Template, Value};

/// What templates resolve to for one run (or one preview).
pub struct Scope<'a> {
    pub plan: &'a Plan,
    pub docker: &'a [String],
    /// Secrets render as `***` (preview, reports); the run itself sees real values.
    pub mask_secrets: bool,
    /// The run id; `None` in a preview, where it is not chosen yet.
    pub run_id: Option<&'a str>,
    /// Captured step outputs; `None` for a step not run (yet).
    pub output: &'a dyn Fn(&str) -> Option<String>,
}

pub const MASK: &str = "***";

impl Scope<'_> {
    pub fn value(&self, name: &Name) -> Option<Value> {
        Some(match name {
            Name::Var(var) => {
                let var = self.plan.vars.get(var)?;
                Value::Text(if var.secret && self.mask_secrets {
                    MASK.to_owned()
                } else {
                    var.value.clone()
                })
            }
            Name::RunId => Value::Text(
                self.run_id
                    .map_or_else(|| "<run.id>".to_owned(), str::to_owned),
            ),
            Name::PlanDir => Value::Text(self.plan.dir.display().to_string()),
            Name::Docker => Value::Words(self.docker.to_vec()),
            Name::StepOutput(id) => {
                Value::Text((self.output)(id).unwrap_or_else(|| format!("<steps.{id}.output>")))
            }
        })
    }

    pub fn render(&self, template: &Template, context: Context) -> String {
        template.render(context, &|name| self.value(name))
    }

    /// A command as argv: an array element by element (an element that is exactly
    /// `{{ docker }}` becomes the docker words), a string through `sh -c`.
    pub fn argv(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Argv(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.value.as_single_ref() {
                        Some(Name::Docker) => out.extend(self.docker.iter().cloned()),
                        _ => out.push(self.render(&item.value, Context::Verbatim)),
                    }
                }
                out
            }
            Command::Shell(script) => vec![
                "sh".to_owned(),
                "-c".to_owned(),
                self.render(&script.value, Context::Shell),
            ],
        }
    }

    /// The step's own environment, values rendered.
    pub fn env(&self, env: &IndexMap<String, Template>) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| (k.clone(), self.render(v, Context::Verbatim)))
            .collect()
    }
}

/// One thing a step does, as the preview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// What this operation is, e.g. `run`, `confirm`, `curl in the container`.
    pub label: String,
    /// The exact argv, when it runs a process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// The operation as one line an operator could paste into a shell.
    pub display: String,
    /// Further facts: working directory, environment, expectations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Operation {
    pub fn process(label: &str, argv: Vec<String>) -> Self {
        Self {
            label: label.to_owned(),
            display: crate::plan::template::shell_join(&argv),
            argv,
            notes: Vec::new(),
        }
    }

    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// A step kind: how its fields become operations.
pub trait StepKind {
    /// The operations the step performs, in order, with templates resolved.
    fn operations(&self, env: &[(String, String)], scope: &Scope<'_>) -> Vec<Operation>;
}

pub fn kind_of(action: &Action) -> &dyn StepKind {
    match action {
        Action::Shell(a) => a,
        Action::DockerExec(a) => a,
        Action::HttpProbe(a) => a,
        Action::MaintenanceToggle(a) => a,
    }
}

/// The operations of an action with its environment.
pub fn operations(
    action: &Action,
    env: &IndexMap<String, Template>,
    scope: &Scope<'_>,
) -> Vec<Operation> {
    kind_of(action).operations(&scope.env(env), scope)
}

/// `env: A=1, B=***` for the preview.
fn env_note(env: &[(String, String)]) -> Option<String> {
    (!env.is_empty()).then(|| {
        format!(
            "env: {}",
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
