//! Plans: load a TOML file, check it, and hand the engine a plan it can trust.
//!
//! Pure apart from reading the file: the environment is passed in, so checks are
//! repeatable and testable.

pub mod action;
pub mod address;
mod check_values;
pub mod condition;
pub mod diagnostic;
pub(crate) mod fields;
pub mod model;
mod read_section;
mod read_step;
mod read_value;
pub mod reader;
pub mod rollout;
pub mod rule;
pub(crate) mod script;
mod shell;
pub mod template;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use action::Action;
pub use diagnostic::{Diagnostics, PlanDiagnostic, Source, Span};
use model::{HookDef, MaintenanceSection, SudoMode, When};
use template::{Name, Template};

use crate::graph::Dag;

/// Built-in settings when neither the step nor `[defaults]` gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(2);
pub const DEFAULT_BACKOFF: f64 = 2.0;
pub const DEFAULT_JOBS: u32 = 4;
/// How many successful releases keep their images when the plan does not say.
pub const DEFAULT_KEEP: u32 = 3;

/// A checked plan: every reference resolved, the graph acyclic.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    /// The plan file as given on the command line.
    pub path: PathBuf,
    /// The plan's folder, absolute, links resolved: `{{ plan.dir }}`, the base of
    /// relative paths, and where its state is kept.
    pub dir: PathBuf,
    /// The plan file's own name, links resolved: its lock's name.
    pub(crate) file_name: Option<std::ffi::OsString>,
    pub name: String,
    pub jobs: u32,
    /// How many successful releases keep their images.
    pub keep: u32,
    pub sudo: SudoMode,
    pub vars: IndexMap<String, Var>,
    pub maintenance: Option<MaintenanceSection>,
    /// In declaration order; `Dag` indices point here.
    pub steps: Vec<Step>,
    pub dag: Dag,
    /// Where the first `[hosts.NAME]` stands, when the plan names hosts.
    pub hosts_span: Option<Span>,
    /// The hosts, in declaration order; empty for a plan on the local docker.
    pub hosts: Vec<Host>,
    /// The steps as per-host instances in batches; `None` without hosts.
    pub instances: Option<rollout::Instances>,
    /// Hosts that may fail.
    pub max_fail: Option<model::Share>,
    /// The environment variables that carry values into scripts.
    pub(crate) carriers: Carriers,
    /// The run this one goes back to (`runner rollback`); `None` for a deploy.
    pub rollback_of: Option<String>,
}

/// The environment variable that carries each value a script refers to: the
/// script holds `"${RUNNER_VAR_app}"`, never the value of `app`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carriers {
    vars: std::collections::HashMap<String, String>,
    outputs: std::collections::HashMap<String, String>,
}

impl Carriers {
    fn new<'a>(vars: impl Iterator<Item = &'a str>, steps: impl Iterator<Item = &'a str>) -> Self {
        let mut taken = std::collections::HashSet::new();
        let mut names = |prefix: &str, ids: &mut dyn Iterator<Item = &'a str>| {
            ids.map(|id| {
                let base: String = format!("{prefix}{id}")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                // `a-b` and `a_b` would meet: the second gets a number.
                let mut name = base.clone();
                let mut n = 1;
                while !taken.insert(name.clone()) {
                    n += 1;
                    name = format!("{base}_{n}");
                }
                (id.to_owned(), name)
            })
            .collect()
        };
        Self {
            vars: names("RUNNER_VAR_", &mut { vars }),
            outputs: names("RUNNER_OUTPUT_", &mut { steps }),
        }
    }

    /// The variable that carries `name`'s value; `None` for `{{ docker }}` and
    /// `{{ compose }}`, runner's own commands, written as words.
    pub(crate) fn of(&self, name: &template::Name) -> Option<&str> {
        use template::Name;
        match name {
            Name::Var(var) => self.vars.get(var).map(String::as_str),
            Name::StepOutput(id) => self.outputs.get(id).map(String::as_str),
            Name::RunId => Some("RUNNER_RUN_ID"),
            Name::RunKind => Some("RUNNER_RUN_KIND"),
            Name::PlanDir => Some("RUNNER_PLAN_DIR"),
            Name::HostName => Some("RUNNER_HOST_NAME"),
            Name::Docker | Name::Compose => None,
        }
    }
}

/// A unit the engine runs: a step, or one of its per-host instances.
#[derive(Debug, Clone)]
pub struct PlanUnit {
    /// `restart-app`, or `restart-app@web1`.
    pub id: String,
    pub step: usize,
    pub host: Option<usize>,
    pub needs: Vec<usize>,
}

impl Plan {
    /// `{{ run.kind }}`: `rollback` when the run goes back to an earlier
    /// one, else `deploy`.
    pub fn run_kind(&self) -> &'static str {
        if self.rollback_of.is_some() {
            "rollback"
        } else {
            "deploy"
        }
    }

    /// The plan file, links resolved: what tells its runs from another plan's
    /// in a shared folder.
    pub fn real_path(&self) -> PathBuf {
        std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
    }

    /// The units of the run: the steps, or with `[hosts]` their instances.
    pub fn units(&self) -> Vec<PlanUnit> {
        match &self.instances {
            Some(x) => x
                .list
                .iter()
                .zip(&x.needs)
                .map(|(instance, needs)| PlanUnit {
                    id: rollout::instance_id(&self.steps, &self.hosts, instance),
                    step: instance.step,
                    host: instance.host,
                    needs: needs.clone(),
                })
                .collect(),
            None => self
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| PlanUnit {
                    id: step.id.clone(),
                    step: i,
                    host: None,
                    needs: step.needs.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Var {
    pub value: String,
    pub secret: bool,
    pub origin: VarOrigin,
}

/// Where a variable's value came from, for the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarOrigin {
    Plan,
    Env(String),
    EnvDefault(String),
    CommandLine,
}

/// Retry and timeout settings, with defaults applied: the engine's own.
pub use crate::engine::Settings;

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub description: Option<String>,
    pub(crate) action: Action,
    pub needs: Vec<usize>,
    pub settings: Settings,
    pub when: When,
    /// Run only when it holds (`if`), decided when the step is ready.
    pub condition: Option<condition::Condition>,
    pub env: IndexMap<String, Template>,
    /// What it makes for the steps after it (see the preflight).
    pub creates: Creates,
    pub rollback: Option<Box<Hook>>,
    /// The hosts it runs on, one instance each (indices into `Plan::hosts`);
    /// empty for a step that runs once.
    pub on: Vec<usize>,
}

impl Step {
    /// Whether a template of the step or its hook (fields or `env`) refers to
    /// `name`, or its text names the environment variable `var`.
    pub(crate) fn mentions(&self, name: &Name, var: &str) -> bool {
        let in_template = |t: &Template| t.raw.contains(var) || t.refs().any(|(n, ..)| n == name);
        let in_action = |action: &Action, env: &IndexMap<String, Template>| {
            (*name == Name::Compose && action.uses_compose())
                || action
                    .templates()
                    .into_iter()
                    .any(|t| in_template(&t.value))
                || env.values().any(in_template)
        };
        in_action(&self.action, &self.env)
            || self
                .rollback
                .as_ref()
                .is_some_and(|h| in_action(&h.action, &h.env))
    }
}

/// A host of a plan with several.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Its engine: what `DOCKER_HOST` takes, or a docker context.
    pub engine: Engine,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    Address(String),
    Context(String),
}

/// A TCP port: a number, or a template that gives one.
#[derive(Debug, Clone)]
pub enum Port {
    Number(u16),
    Template(Template),
}

/// What a step makes for the steps after it, templates unresolved.
#[derive(Debug, Clone, Default)]
pub struct Creates {
    pub containers: Vec<MadeContainer>,
    pub images: Vec<Template>,
    pub programs: Vec<String>,
    pub ports: Vec<Port>,
}

/// A container a step makes, and the image it makes it from when the plan
/// says which.
#[derive(Debug, Clone)]
pub struct MadeContainer {
    pub name: Template,
    pub image: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub description: Option<String>,
    pub(crate) action: Action,
    /// Runs also when its own step failed partway (or was cut short by
    /// runner's death). Always so for a hook that gives the system back to
    /// its users (maintenance off): its step may have closed it before it
    /// failed, and opening what is open changes nothing.
    pub also_if_failed: bool,
    pub settings: Settings,
    pub env: IndexMap<String, Template>,
}

impl Hook {
    fn from_def(def: HookDef, settings: Settings) -> Self {
        let reopens = def.action.hook_role() == crate::engine::HookRole::Reopen;
        Self {
            description: def.description.map(|d| d.value),
            also_if_failed: def.also_if_failed || reopens,
            action: def.action,
            settings,
            env: def.env.into_iter().map(|(k, v)| (k, v.value)).collect(),
        }
    }
}

/// What the caller knows beyond the file: `--var` values, the environment,
/// and the kinds a step may name.
pub struct Inputs<'a> {
    pub vars: &'a [(String, String)],
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The registry of kinds (`runner::KINDS`): the plan knows none itself.
    pub kinds: &'a [action::Kind],
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the plan {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the plan is invalid")]
    Invalid(Diagnostics),
}

/// A plan and the warnings found while checking it.
#[derive(Debug)]
pub struct Loaded {
    pub plan: Plan,
    pub warnings: Diagnostics,
}

/// Reads and checks the plan at `path`.
pub fn load(path: &Path, inputs: &Inputs<'_>) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    // The plan's real folder, links resolved: its scripts are there, and so are
    // its lock and records, whatever link the plan is reached through.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = real
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let mut loaded = load_str(path, dir, text, inputs).map_err(LoadError::Invalid)?;
    loaded.plan.file_name = real.file_name().map(std::ffi::OsStr::to_os_string);
    Ok(loaded)
}

/// Checks plan text; `path` names it in diagnostics, `dir` is `{{ plan.dir }}`.
pub fn load_str(
    path: &Path,
    dir: PathBuf,
    text: String,
    inputs: &Inputs<'_>,
) -> Result<Loaded, Diagnostics> {
    let source = Source::new(path.display().to_string(), text);
    let (file, mut items) = reader::read(&source.text, inputs.kinds);
    let checked = file.and_then(|file| validate::check(file, inputs, &dir, &mut items));
    let mut diagnostics = Diagnostics { source, items };
    diagnostics.sort();
    match checked {
        Some(parts) if !diagnostics.has_errors() => Ok(Loaded {
            plan: Plan {
                carriers: Carriers::new(
                    parts.vars.keys().map(String::as_str),
                    parts.steps.iter().map(|s| s.id.as_str()),
                ),
                source: diagnostics.source.clone(),
                file_name: path.file_name().map(std::ffi::OsStr::to_os_string),
                path: path.to_owned(),
                dir,
                name: parts.name,
                jobs: parts.jobs,
                keep: parts.keep,
                sudo: parts.sudo,
                vars: parts.vars,
                maintenance: parts.maintenance,
                steps: parts.steps,
                dag: parts.dag,
                hosts_span: parts.hosts_span,
                hosts: parts.hosts,
                instances: parts.instances,
                max_fail: parts.max_fail,
                rollback_of: None,
            },
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

impl Plan {
    /// Refuses a plan with `[hosts]` for `runner maintenance`, which acts on
    /// one engine: toggling the local docker's container instead would act on
    /// the wrong place.
    pub fn runnable(&self) -> Result<(), Diagnostics> {
        let Some(span) = &self.hosts_span else {
            return Ok(());
        };
        Err(Diagnostics {
            source: self.source.clone(),
            items: vec![
                diagnostic::PlanDiagnostic::error(
                    "runner::hosts-not-runnable",
                    "`runner maintenance` acts on one engine, and this plan names several hosts",
                )
                .label(span.clone(), "hosts are declared here")
                .help("a plan with `[hosts]` turns maintenance on and off in its own steps (`on` a role or hosts)"),
            ],
        })
    }
}
