//! What a kind does besides what the plan asks of it ([`StepKind`]), how a
//! kind's value becomes the plan's action, and the preview's operations.

use std::sync::Arc;

use serde::Serialize;

use super::need::Need;
use super::scope::{Launch, Scope};
use crate::engine::Work;
use crate::plan::action::{Action, Body};

/// What a kind does besides what the plan asks of it: its preview, its needs,
/// its work.
pub(crate) trait StepKind: Body {
    /// What it does, as the preview shows it: templates resolved in `scope`,
    /// `env` the step's own variables.
    fn operations(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Operation>;

    /// What it needs from the machine before the run, for the preflight:
    /// templates resolved in `scope`, `env` the step's own variables.
    fn needs(&self, scope: &Scope<'_>, env: &[(String, String)]) -> Vec<Need> {
        let _ = (scope, env);
        Vec::new()
    }

    /// Its operations as the one line a run shows when the step starts.
    fn summary(&self, operations: &[Operation]) -> String {
        join(operations, " && ")
    }

    /// The work of one step or hook: what each attempt does.
    fn work(&self, launch: &Launch<'_>) -> Arc<dyn Work>;
}

/// A kind's value as the plan's action: the plan sees it as a [`Body`], the
/// kinds keep it as a [`StepKind`] beside.
pub(crate) fn action<K: StepKind>(kind: K) -> Action {
    let kind: Arc<dyn StepKind> = Arc::new(kind);
    Action::new(kind.clone(), Arc::new(kind))
}

/// The kind behind an action.
pub(crate) trait AsKind {
    fn as_kind(&self) -> &dyn StepKind;
}

impl AsKind for Action {
    fn as_kind(&self) -> &dyn StepKind {
        // Every action is made by [`action`], which stores the kind beside it.
        self.runs()
            .downcast_ref::<Arc<dyn StepKind>>()
            .expect("an action made by kinds::action")
            .as_ref()
    }
}

/// The operations' lines joined, for a one-line summary.
pub(crate) fn join(operations: &[Operation], separator: &str) -> String {
    operations
        .iter()
        .map(|op| op.display.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

/// One thing a step does, as the preview shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Operation {
    /// What this operation is, e.g. `run`, `confirm`, `curl in the container`.
    pub(crate) label: String,
    /// The exact argv, when it runs a process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) argv: Vec<String>,
    /// The operation as one line an operator could paste into a shell.
    pub(crate) display: String,
    /// Further facts: working directory, environment, expectations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
}

impl Operation {
    pub(crate) fn process(label: &str, argv: Vec<String>) -> Self {
        Self {
            label: label.to_owned(),
            display: crate::plan::template::shell_join(&argv),
            argv,
            notes: Vec::new(),
        }
    }

    #[must_use]
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The values a script refers to, for the preview: the script holds none of them.
pub(crate) fn values_note(bound: &[(String, String)]) -> Option<String> {
    (!bound.is_empty()).then(|| {
        format!(
            "values bound: {}",
            bound
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::plan::template::shell_quote(v)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `env: A=1, B=***` for the preview.
pub(crate) fn env_note(env: &[(String, String)]) -> Option<String> {
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

/// The first `MAX` characters of `text`, for a reason.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(no output)".to_owned(),
        None => text.to_owned(),
    }
}
