//! What templates resolve to for one run or preview ([`Scope`]), and what a
//! step's work is made from ([`Launch`]).

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;

use super::need::Known;
use crate::docker::Docker;
use crate::mask::MASK;
use crate::plan::Plan;
use crate::plan::model::{Command, Sp};
use crate::plan::template::{Insert, Name, Template, Value};
use crate::process::Spec;

/// What templates resolve to for one run (or one preview).
pub(crate) struct Scope<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) docker: &'a Docker,
    /// The host a step's instance runs for (`{{ host.name }}`).
    pub(crate) host: Option<&'a str>,
    pub(crate) host_index: Option<usize>,
    /// Secrets render as `***` (preview, reports); the run itself sees real values.
    pub(crate) mask_secrets: bool,
    /// The run id; `None` in a preview, where it is not chosen yet.
    pub(crate) run_id: Option<&'a str>,
    /// Captured step outputs; `None` for a step not run (yet).
    pub(crate) output: &'a dyn Fn(&str) -> Option<String>,
}

impl Scope<'_> {
    pub(crate) fn value(&self, name: &Name) -> Option<Value> {
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
            Name::RunKind => Value::Text(self.plan.run_kind().to_owned()),
            Name::PlanDir => Value::Text(self.plan.dir.display().to_string()),
            Name::Docker => Value::Words(self.docker.command.clone()),
            Name::Compose => Value::Words(self.docker.compose_command()),
            Name::StepOutput(id) => {
                Value::Text((self.output)(id).unwrap_or_else(|| format!("<steps.{id}.output>")))
            }
            Name::HostName => Value::Text(self.host.unwrap_or("<host.name>").to_owned()),
        })
    }

    /// A template's value when it is known before the run; `None` when a step's
    /// output decides it.
    pub(crate) fn known(&self, template: &Sp<Template>) -> Known {
        let later = template
            .value
            .refs()
            .any(|(name, ..)| matches!(name, Name::StepOutput(_)));
        (!later).then(|| self.text(template))
    }

    /// The programs a command runs by name: its program, and for `sh -c SCRIPT`
    /// those the script runs. A program that a step's output names is left out.
    pub(crate) fn programs(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Argv(items) => {
                let Some(first) = items.first() else {
                    return Vec::new();
                };
                let Some(program) = self.known(first) else {
                    return Vec::new();
                };
                let mut out = vec![program];
                if let [_, flag, script, ..] = items.as_slice()
                    && flag.value.raw == "-c"
                    && out[0].rsplit('/').next().is_some_and(|p| p.ends_with("sh"))
                    && let Some(script) = self.known(script)
                {
                    out.extend(crate::plan::script::programs(&script).unwrap_or_default());
                }
                out
            }
            Command::Shell(script) => {
                let (script, _) = self.script(&script.value);
                let mut out = vec!["sh".to_owned()];
                out.extend(crate::plan::script::programs(&script).unwrap_or_default());
                out
            }
        }
    }

    /// A template as a plain value (an argv element, a name, a URL).
    pub(crate) fn render(&self, template: &Template) -> String {
        template.render(&|name| self.value(name))
    }

    pub(crate) fn text(&self, template: &Sp<Template>) -> String {
        self.render(&template.value)
    }

    /// A string that `sh -c` reads: the script, which refers to values through
    /// environment variables, and those variables with their values (the
    /// values bound). No value is ever part of the script.
    pub(crate) fn script(&self, template: &Template) -> (String, Vec<(String, String)>) {
        let carriers = &self.plan.carriers;
        let compose = self.docker.compose_command();
        let script = template.script(&|name| match (carriers.of(name), name) {
            (Some(var), _) => Insert::Env(var),
            (None, Name::Compose) => Insert::Words(&compose),
            (None, _) => Insert::Words(&self.docker.command),
        });
        let mut bound: Vec<(String, String)> = Vec::new();
        for (name, ..) in template.refs() {
            if let Some(var) = carriers.of(name)
                && !bound.iter().any(|(k, _)| k == var)
                && let Some(Value::Text(value)) = self.value(name)
            {
                bound.push((var.to_owned(), value));
            }
        }
        (script, bound)
    }

    /// A regular expression whose values match as plain text (escaped): only
    /// the plan's own text is the pattern.
    pub(crate) fn pattern(&self, template: &Template) -> Result<regex::Regex, String> {
        let escaped = template.render(&|name| {
            self.value(name).map(|value| match value {
                Value::Text(text) => Value::Text(regex::escape(&text)),
                Value::Words(words) => Value::Text(regex::escape(&words.join(" "))),
            })
        });
        regex::Regex::new(&escaped)
            .map_err(|e| format!("/{escaped}/ is not a regular expression: {e}"))
    }

    /// A path relative to the plan's folder.
    pub(crate) fn path(&self, template: &Sp<Template>) -> PathBuf {
        self.plan.dir.join(self.text(template))
    }

    /// A command as argv, with the values it binds: an array element by element
    /// (an element that is exactly `{{ docker }}` becomes the docker words), a
    /// string through `sh -c` (see [`Scope::script`]).
    pub(crate) fn argv(&self, command: &Command) -> (Vec<String>, Vec<(String, String)>) {
        match command {
            Command::Argv(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.value.as_single_ref() {
                        Some(Name::Docker) => out.extend(self.docker.command.iter().cloned()),
                        Some(Name::Compose) => out.extend(self.docker.compose_command()),
                        _ => out.push(self.render(&item.value)),
                    }
                }
                (out, Vec::new())
            }
            Command::Shell(script) => {
                let (script, bound) = self.script(&script.value);
                (vec!["sh".to_owned(), "-c".to_owned(), script], bound)
            }
        }
    }

    /// The step's own environment, values rendered.
    pub(crate) fn env(&self, env: &IndexMap<String, Template>) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| (k.clone(), self.render(v)))
            .collect()
    }
}

/// What a step's or hook's work is made from, templates resolved with real values.
pub(crate) struct Launch<'a> {
    pub(crate) scope: &'a Scope<'a>,
    pub(crate) docker: Arc<Docker>,
    /// This machine's docker, when `docker` is a host's.
    pub(crate) local: Arc<Docker>,
    /// The step's `env`, rendered.
    pub(crate) env: Vec<(String, String)>,
    /// runner's own variables: `DOCKER_CMD`, `RUNNER_RUN_ID`, `RUNNER_STEP` and
    /// the marker `RUNNER_EXEC_ID` (`RUNNER_ATTEMPT` is set per attempt).
    pub(crate) base: Vec<(String, String)>,
    /// The value of `RUNNER_EXEC_ID`: finds the command's processes, in a
    /// container too.
    pub(crate) marker: String,
    /// A step (not a hook) that keeps its stdout.
    pub(crate) capture: bool,
    /// `sh`, resolved on PATH once per run.
    pub(crate) sh: &'a str,
}

impl Launch<'_> {
    /// A host process in the plan's folder with runner's variables and the step's.
    pub(crate) fn spec(&self, argv: Vec<String>) -> Spec {
        let mut spec = Spec::new(argv, &self.scope.plan.dir);
        spec.env.extend(self.base.iter().cloned());
        spec.env.extend(self.env.iter().cloned());
        spec
    }

    /// `docker exec` of `argv` in `container`, passing the variables `options`
    /// names, and the values `bound` (a script's), into it the way this docker
    /// carries values.
    pub(crate) fn exec(
        &self,
        container: &str,
        options: crate::docker::ExecOptions<'_>,
        argv: &[String],
        bound: &[(String, String)],
    ) -> Spec {
        let options = options.carrying(bound);
        let mut spec = self.spec(self.docker.exec_argv(container, &options, argv));
        spec.values_on_stdin = self.docker.values_on_stdin(&options.names());
        spec.env.extend(bound.iter().cloned());
        spec
    }
}

/// Sets `RUNNER_ATTEMPT` on a copy of `spec`.
pub(crate) fn attempt_spec(spec: &Spec, number: u32) -> Spec {
    let mut spec = spec.clone();
    spec.set("RUNNER_ATTEMPT", number.to_string());
    spec
}
