//! What the core was given, as a journal keeps it: each [`Input`] with its
//! units named by id (a journal is read back over the units of the plan as
//! it stands), so that `runner recover` feeds a dead run's core exactly what
//! it had, in order, rather than a reconstruction from what it said.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::core::Input;
use super::{Task, Unit};

/// An [`Input`] with its units named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub(crate) enum Given {
    Start,
    Finished {
        step: String,
        /// The step's rollback hook, not the step, finished.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        hook: bool,
        succeeded: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        never_started: bool,
    },
    Skipped {
        step: String,
    },
    Interrupt {
        signal: String,
        at_once: bool,
    },
    Died {
        /// Steps whose command had begun.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<String>,
        /// Steps whose rollback hook had begun.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hooks: Vec<String>,
    },
}

impl Given {
    pub(crate) fn of(input: &Input, units: &[Unit]) -> Self {
        let id = |i: usize| units[i].id.clone();
        match input {
            Input::Start => Self::Start,
            Input::Finished {
                task,
                succeeded,
                never_started,
            } => Self::Finished {
                step: id(task.unit()),
                hook: matches!(task, Task::Hook(_)),
                succeeded: *succeeded,
                never_started: *never_started,
            },
            Input::Skipped { unit } => Self::Skipped { step: id(*unit) },
            Input::Interrupt { signal, at_once } => Self::Interrupt {
                signal: signal.clone(),
                at_once: *at_once,
            },
            Input::Died { started } => {
                let (hooks, steps): (Vec<&Task>, Vec<&Task>) =
                    started.iter().partition(|t| matches!(t, Task::Hook(_)));
                Self::Died {
                    steps: steps.iter().map(|t| id(t.unit())).collect(),
                    hooks: hooks.iter().map(|t| id(t.unit())).collect(),
                }
            }
        }
    }

    /// The input over `units` (by id: `index`); `None` when it names a step
    /// the plan no longer has.
    pub(crate) fn input(&self, index: &HashMap<&str, usize>) -> Option<Input> {
        let unit = |step: &String| index.get(step.as_str()).copied();
        Some(match self {
            Self::Start => Input::Start,
            Self::Finished {
                step,
                hook,
                succeeded,
                never_started,
            } => {
                let i = unit(step)?;
                Input::Finished {
                    task: if *hook { Task::Hook(i) } else { Task::Step(i) },
                    succeeded: *succeeded,
                    never_started: *never_started,
                }
            }
            Self::Skipped { step } => Input::Skipped { unit: unit(step)? },
            Self::Interrupt { signal, at_once } => Input::Interrupt {
                signal: signal.clone(),
                at_once: *at_once,
            },
            Self::Died { steps, hooks } => Input::Died {
                started: steps
                    .iter()
                    .filter_map(|s| unit(s).map(Task::Step))
                    .chain(hooks.iter().filter_map(|s| unit(s).map(Task::Hook)))
                    .collect(),
            },
        })
    }
}
