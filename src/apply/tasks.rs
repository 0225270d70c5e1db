//! The plan's steps as the engine's units, and the work each one's kind makes
//! when it starts ([`PlanTasks`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::docker::Docker;
use crate::engine::{self, Prepared, Task, Tasks, Unit, Work};
use crate::kinds::{AsKind, Launch, Scope, StepKind};
use crate::mask::Masker;
use crate::plan::Plan;
use crate::plan::rule::Rule;
use crate::plan::template::{Name, Template, Value};
use crate::process::MARKER;

/// The plan's steps (or their per-host instances) as the engine sees them.
pub(super) fn units(plan: &Plan, plan_units: &[crate::plan::PlanUnit]) -> Vec<Unit> {
    plan_units
        .iter()
        .map(|u| {
            let step = &plan.steps[u.step];
            Unit {
                id: u.id.clone(),
                needs: u.needs.clone(),
                when: step.when.into(),
                settings: step.settings,
                hook: step.rollback.as_ref().map(|hook| engine::Hook {
                    settings: hook.settings,
                    role: hook.action.hook_role(),
                    also_if_failed: hook.also_if_failed,
                }),
                domain: u.host,
            }
        })
        .collect()
}

/// Prepares each step's and hook's work when it starts, templates resolved with
/// the outputs captured so far.
pub(crate) struct PlanTasks<'p> {
    plan: &'p Plan,
    /// The local docker: for steps that run once.
    docker: Arc<Docker>,
    /// Each host's docker, by host index; empty without `[hosts]`.
    hosts: Vec<Arc<Docker>>,
    /// The engine's units: steps, or their per-host instances.
    units: Vec<crate::plan::PlanUnit>,
    run_id: String,
    masker: &'p Masker,
    /// `sh`, resolved on PATH once: a child that searches PATH for it pays a
    /// failed exec per PATH entry, every step.
    sh: String,
    /// In a recovery, the steps whose captured output held a secret: the
    /// journal has it masked, so a task whose template needs it is refused.
    lost_outputs: Vec<String>,
}

impl<'p> PlanTasks<'p> {
    pub(crate) fn new(
        plan: &'p Plan,
        docker: Arc<Docker>,
        hosts: Vec<Arc<Docker>>,
        run_id: &str,
        masker: &'p Masker,
    ) -> Self {
        Self {
            plan,
            docker,
            hosts,
            units: plan.units(),
            run_id: run_id.to_owned(),
            masker,
            sh: which::which("sh").map_or_else(|_| "sh".to_owned(), |p| p.display().to_string()),
            lost_outputs: Vec::new(),
        }
    }

    /// Steps whose output a recovery does not have (see `lost_outputs`).
    pub(crate) fn with_lost_outputs(self, lost_outputs: Vec<String>) -> Self {
        Self {
            lost_outputs,
            ..self
        }
    }

    /// The docker of a host, or the local one.
    fn docker_of(&self, host: Option<usize>) -> &Arc<Docker> {
        host.and_then(|h| self.hosts.get(h)).unwrap_or(&self.docker)
    }

    /// What a task's work is made from, with `scope` (real values).
    pub(crate) fn launch<'s>(
        &'s self,
        scope: &'s Scope<'s>,
        id: &str,
        env: Vec<(String, String)>,
        task: Task,
    ) -> Launch<'s> {
        let hook = if matches!(task, Task::Hook(_)) {
            "/rollback"
        } else {
            ""
        };
        // Commands carry a marker, to find their processes on the host and in a
        // container when they must end.
        let marker = format!("{}/{id}{hook}", self.run_id);
        let docker = scope.docker;
        let mut base = vec![
            ("DOCKER_CMD".to_owned(), docker.command.join(" ")),
            ("COMPOSE_CMD".to_owned(), docker.compose_command().join(" ")),
            ("RUNNER_RUN_ID".to_owned(), self.run_id.clone()),
            ("RUNNER_STEP".to_owned(), id.to_owned()),
            (MARKER.to_owned(), marker.clone()),
        ];
        base.extend(docker.env.iter().cloned());
        if let Some(host) = scope.host {
            base.push(("RUNNER_HOST_NAME".to_owned(), host.to_owned()));
        }
        Launch {
            scope,
            docker: Arc::clone(self.docker_of(scope.host_index)),
            local: Arc::clone(&self.docker),
            env,
            base,
            marker,
            capture: matches!(task, Task::Step(_)),
            sh: &self.sh,
        }
    }

    /// The scope of the local docker (steps that run once).
    pub(crate) fn scope<'s>(
        &'s self,
        masked: bool,
        output: &'s dyn Fn(&str) -> Option<String>,
    ) -> Scope<'s> {
        self.scope_on(None, masked, output)
    }

    /// The scope of a step's instance on `host`.
    pub(crate) fn scope_on<'s>(
        &'s self,
        host: Option<usize>,
        masked: bool,
        output: &'s dyn Fn(&str) -> Option<String>,
    ) -> Scope<'s> {
        Scope {
            plan: self.plan,
            docker: self.docker_of(host),
            host: host.map(|h| self.plan.hosts[h].name.as_str()),
            host_index: host,
            mask_secrets: masked,
            run_id: Some(&self.run_id),
            output,
        }
    }
}

impl Tasks for PlanTasks<'_> {
    fn prepare(&self, task: Task, outputs: &HashMap<String, String>) -> Prepared {
        let unit = &self.units[task.unit()];
        let step = &self.plan.steps[unit.step];
        let (action, env) = match (task, &step.rollback) {
            (Task::Hook(_), Some(hook)) => (&hook.action, &hook.env),
            _ => (&step.action, &step.env),
        };
        let kind = action.as_kind();
        // An output the journal has masked, asked for by this task's templates.
        let lost = std::cell::RefCell::new(None::<String>);
        let output = |id: &str| {
            if self.lost_outputs.iter().any(|l| l == id) {
                lost.borrow_mut().get_or_insert_with(|| id.to_owned());
            }
            outputs.get(id).cloned()
        };
        let real = self.scope_on(unit.host, false, &output);
        let shown = self.scope_on(unit.host, true, &output);
        let launch = self.launch(&real, &unit.id, real.env(env), task);
        let operations = kind.operations(&shown, &shown.env(env));
        let refusal = refused(kind, &real).or_else(|| {
            lost.borrow().as_ref().map(|id| {
                format!(
                    "it needs the output of `{id}`, which held a secret: runner never writes a secret, so the run's journal has it masked and this cannot be run as the run would have run it; do it by hand"
                )
            })
        });
        let work = match refusal {
            Some(why) => Arc::new(Refused(self.masker.mask(&why))) as Arc<dyn Work>,
            None => kind.work(&launch),
        };
        Prepared {
            work,
            command: self.masker.mask(&kind.summary(&operations)),
        }
    }

    fn skip(&self, unit: usize, outputs: &HashMap<String, String>) -> Option<String> {
        let unit = &self.units[unit];
        let condition = self.plan.steps[unit.step].condition.as_ref()?;
        let output = |id: &str| outputs.get(id).cloned();
        let scope = self.scope_on(unit.host, false, &output);
        let value = |t: &Template| scope.render(t);
        (!condition.holds(&value)).then(|| {
            format!(
                "its condition `{}` does not hold ({})",
                condition.text,
                condition.values(&value)
            )
        })
    }
}

/// Why a value that a step's output gives breaks the rule of its field (the
/// others were checked when the plan was loaded).
fn refused(kind: &dyn StepKind, scope: &Scope<'_>) -> Option<String> {
    for (field, template, rule) in kind.values() {
        let from_output = template
            .value
            .refs()
            .any(|(name, ..)| matches!(name, Name::StepOutput(_)));
        if !from_output {
            continue;
        }
        let why = if rule == Rule::Path {
            template.value.path_climbs(&|name| match scope.value(name) {
                Some(Value::Text(text)) => Some(text),
                _ => None,
            })
        } else {
            let value = scope.text(template);
            rule.check(&value)
                .err()
                .map(|why| format!("{value:?} is {why}"))
        };
        if let Some(why) = why {
            return Some(format!(
                "`{field}` cannot take the value a step's output gives it: {why}"
            ));
        }
    }
    None
}

/// The work of a step refused before it starts.
struct Refused(String);

impl Work for Refused {
    fn attempt(&self, _: engine::Attempt) -> engine::Attempted<'_> {
        Box::pin(async move { engine::Outcome::new(engine::End::Failed(self.0.clone())) })
    }
}
