//! The plan file format, as read from TOML.
//!
//! These types are what the loader produces, and `runner schema` derives the JSON
//! Schema from them, so editors complete exactly what the loader accepts. Values keep
//! the span they came from ([`Sp`]) so later checks can point at them.

use std::borrow::Cow;
use std::time::Duration;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::action::Action;
use super::diagnostic::Span;
use super::template::Template;

/// A value and where it stands in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A duration such as `"30s"`, `"10m"` or `"1h30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (ms, s, m, h), e.g. \"30s\", \"10m\", \"1h30m\".",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+\\s*)+$",
            "examples": ["30s", "10m", "1h30m"]
        })
    }
}

/// A whole plan file.
#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner plan", description = "A deploy plan for runner.")]
pub struct PlanFile {
    pub plan: PlanSection,
    /// Variables for `{{ name }}` templates: a literal, or read from the environment.
    #[serde(default)]
    pub vars: IndexMap<String, VarDef>,
    /// Where each variable name stands (its key in `[vars]`), also for a
    /// variable that could not be read.
    #[serde(skip)]
    pub var_spans: IndexMap<String, Span>,
    /// Where `[vars]` stands, when the plan has it.
    #[serde(skip)]
    pub vars_span: Option<Span>,
    #[serde(default)]
    pub docker: DockerSection,
    /// Settings every step gets unless it sets its own.
    #[serde(default)]
    pub defaults: Policy,
    /// How this app enters and leaves maintenance mode.
    pub maintenance: Option<MaintenanceSection>,
    /// The hosts of a plan that deploys to several, each through its own Docker
    /// engine, keyed by name. Without them, the local docker.
    #[serde(default)]
    pub hosts: IndexMap<String, HostDef>,
    /// Where each host name stands (the `[hosts.NAME]` key).
    #[serde(skip)]
    pub host_spans: IndexMap<String, Span>,
    /// How per-host steps move through the hosts.
    pub rollout: Option<RolloutSection>,
    /// The steps, keyed by id.
    pub steps: IndexMap<String, StepDef>,
    /// Where each step id stands (the `[steps.ID]` key).
    #[serde(skip)]
    pub step_spans: IndexMap<String, Span>,
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// The plan's name, shown in every report.
    pub name: Sp<String>,
    /// How many steps may run at once (`--jobs` overrides). Default 4.
    #[schemars(range(min = 1, max = 1024))]
    pub jobs: Option<Sp<u32>>,
    /// How many successful releases keep their images (`runner rollback`
    /// goes back to them); older ones a run made are pruned. Default 3.
    #[schemars(range(min = 1, max = 1000))]
    pub keep: Option<Sp<u32>>,
}

/// A variable: a literal value, or a value read from the environment.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum VarDef {
    Literal(Sp<String>),
    Env(EnvVar),
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// The environment variable to read.
    pub env: Sp<String>,
    /// Redact the value as `***` everywhere runner prints or records it.
    #[serde(default)]
    pub secret: bool,
    /// The value when the environment variable is unset.
    pub default: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    #[serde(default)]
    pub sudo: SudoMode,
}

/// Whether docker runs through `sudo -n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SudoMode {
    /// `docker` if the daemon answers, else `sudo -n docker` if that answers.
    #[default]
    Auto,
    /// Always `sudo -n docker`.
    Always,
    /// Never sudo.
    Never,
}

/// A host: its Docker engine, reached remotely, and its roles.
#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    /// Its Docker engine: `ssh://user@host[:port]`, `unix:///path` or
    /// `tcp://host:port` (what `DOCKER_HOST` takes). Or `context`.
    #[schemars(regex(pattern = r"^(ssh|unix|tcp)://"))]
    pub docker: Option<Sp<String>>,
    /// A docker context that reaches its engine, instead of `docker`.
    pub context: Option<Sp<String>>,
    /// The roles a step's `on` may name, e.g. `["web"]`.
    #[serde(default)]
    pub roles: Vec<Sp<String>>,
}

/// How per-host steps move through the hosts.
#[derive(Debug, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    /// Hosts per batch: a count, or a share such as "25%". Default: all at once.
    pub serial: Option<Sp<Share>>,
    /// Hosts that may fail before the deploy stops and rolls back: a count, or
    /// a share such as "10%". Default 0.
    pub max_fail: Option<Sp<Share>>,
}

/// A number of hosts, or a share of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Count(u32),
    /// A percentage, from 0 to 100.
    Percent(u32),
}

impl Share {
    /// How many hosts of `total` this is: a share rounds down, but a batch of
    /// a non-zero share is at least one host.
    pub fn of(self, total: usize, at_least_one: bool) -> usize {
        let n = match self {
            Self::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Self::Percent(p) => total * usize::try_from(p).unwrap_or(100) / 100,
        };
        let n = n.min(total);
        if at_least_one && n == 0 && total > 0 && self != Self::Percent(0) {
            1
        } else {
            n
        }
    }
}

impl JsonSchema for Share {
    fn schema_name() -> Cow<'static, str> {
        "Share".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of hosts, or a share of them such as \"25%\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^(100|[1-9]?[0-9])%$" }
            ]
        })
    }
}

/// Where a per-host step runs: a role or a host name, or a list of host names.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum On {
    One(Sp<String>),
    Hosts(Vec<Sp<String>>),
}

/// Retry and timeout settings.
#[derive(Debug, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Kill the step (its whole process tree) after this long. Default "10m".
    pub timeout: Option<Sp<Dur>>,
    /// How many times a failed attempt is retried. Default 0.
    #[schemars(range(max = 1000))]
    pub retries: Option<Sp<u32>>,
    /// The wait before the first retry. Default "2s".
    pub retry_delay: Option<Sp<Dur>>,
    /// The wait is multiplied by this after each retry. Default 2.0.
    #[schemars(range(min = 1.0))]
    pub backoff: Option<Sp<f64>>,
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSection {
    /// The container the maintenance commands run in.
    pub container: Sp<Template>,
    /// Turns maintenance mode on.
    pub on: Sp<Command>,
    /// Turns maintenance mode off.
    pub off: Sp<Command>,
    /// Prints the maintenance state.
    pub status: Sp<Command>,
    /// What `status` prints (trimmed) while maintenance is on. Default "true".
    pub status_on: Option<Sp<String>>,
    /// What `status` prints (trimmed) while maintenance is off. Default "false".
    pub status_off: Option<Sp<String>>,
    /// The user the commands run as in the container.
    pub user: Option<Sp<Template>>,
}

/// A TCP port: a number, or a template that gives one.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum PortDef {
    Number(#[schemars(range(min = 1, max = 65535))] Sp<u16>),
    Template(Sp<Template>),
}

/// A command: an array runs as argv; a string runs with `sh -c`.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Command {
    /// Run as is, each element one argument; templates are inserted verbatim.
    Argv(Vec<Sp<Template>>),
    /// Run with `sh -c`; template values are shell-quoted.
    Shell(Sp<Template>),
}

/// When a step runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// In the plan, once its needs succeeded.
    #[default]
    Success,
    /// After a failed run (and its rollback).
    Failure,
    /// After the run, failed or not.
    Always,
}

impl From<When> for crate::engine::When {
    fn from(when: When) -> Self {
        match when {
            When::Success => Self::Success,
            When::Failure => Self::Failure,
            When::Always => Self::Always,
        }
    }
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Success => "success",
            When::Failure => "failure",
            When::Always => "always",
        }
    }
}

/// A step: `kind` says what it does.
#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    #[serde(flatten)]
    pub(crate) action: Action,
    /// Steps that must succeed before this one starts.
    #[serde(default)]
    pub needs: Vec<Sp<String>>,
    /// One line shown in the preview and reports.
    pub description: Option<Sp<String>>,
    #[serde(flatten)]
    pub policy: Policy,
    /// Undoes this step if the run fails after it succeeded.
    pub rollback: Option<Box<HookDef>>,
    /// When the step runs. Default "success".
    pub when: Option<Sp<When>>,
    /// Run it only when this holds, decided when it is ready (as GitHub
    /// Actions' `if:`): `"steps.pending.output != '0'"`. A step skipped on its
    /// condition changed nothing (no hook) and does not hold back the steps
    /// that need it.
    #[serde(rename = "if")]
    pub condition: Option<Sp<super::condition::Condition>>,
    /// Extra environment for the step's process; values may use templates.
    #[serde(default)]
    pub env: IndexMap<String, Sp<Template>>,
    /// What this step makes that later steps use: the preflight does not look
    /// for these before the run on behalf of the steps that need this one.
    #[serde(default)]
    pub creates: Creates,
    /// Run once per host: a role, a host name, or a list of host names
    /// (`restart-app@web1`, `restart-app@web2`…). Needs `[hosts]`.
    pub on: Option<On>,
    #[serde(skip)]
    pub kind_span: Span,
}

/// What a step makes (or makes anew) for the steps after it.
#[derive(Debug, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Creates {
    /// Containers it starts or recreates, e.g. `["{{ app }}"]`: what later steps
    /// run there is not looked for in the container running now. Name the image
    /// a container is made from (`[{ name = "{{ app }}", image = "app:{{ version }}" }]`)
    /// and the preflight looks for it in that image instead.
    #[serde(default)]
    pub containers: Vec<ContainerDef>,
    /// Images it builds or pulls, e.g. `["app:{{ version }}"]`: a program missing
    /// from such an image as it is before the run is left to the run.
    #[serde(default)]
    pub images: Vec<Sp<Template>>,
    /// Host programs it installs, e.g. `["jq"]`.
    #[serde(default)]
    pub programs: Vec<Sp<String>>,
    /// Host TCP ports it publishes, e.g. `[8080]` or `["{{ port }}"]`.
    #[serde(default)]
    pub ports: Vec<PortDef>,
}

/// A container a step makes: its name, and the image it is made from when the
/// plan says which.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum ContainerDef {
    /// Its name alone.
    Name(Sp<Template>),
    /// Its name and its image.
    Made(MadeContainer),
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MadeContainer {
    pub name: Sp<Template>,
    /// The image the step makes it from, e.g. `"app:{{ version }}"`.
    pub image: Option<Sp<Template>>,
}

impl ContainerDef {
    pub fn name(&self) -> &Sp<Template> {
        match self {
            ContainerDef::Name(name) | ContainerDef::Made(MadeContainer { name, .. }) => name,
        }
    }

    pub fn image(&self) -> Option<&Sp<Template>> {
        match self {
            ContainerDef::Name(_) => None,
            ContainerDef::Made(made) => made.image.as_ref(),
        }
    }
}

/// A rollback hook: a step without `needs`, `rollback` or `when`.
#[derive(Debug, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookDef {
    #[serde(flatten)]
    pub(crate) action: Action,
    /// Also run the hook when its own step failed: for a step that can fail
    /// partway (a migration that applied one of two), so the hook undoes what it
    /// did. The hook must then cope with a step that did nothing.
    #[serde(default)]
    pub also_if_failed: bool,
    pub description: Option<Sp<String>>,
    #[serde(flatten)]
    pub policy: Policy,
    #[serde(default)]
    pub env: IndexMap<String, Sp<Template>>,
    #[serde(skip)]
    pub kind_span: Span,
    /// The whole hook, for labels.
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    On,
    Off,
}

impl Toggle {
    pub fn as_str(self) -> &'static str {
        match self {
            Toggle::On => "on",
            Toggle::Off => "off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Share;

    #[test]
    fn a_share_of_hosts_rounds_down_and_a_batch_is_never_empty() {
        assert_eq!(Share::Count(2).of(5, true), 2);
        assert_eq!(Share::Count(9).of(5, true), 5);
        assert_eq!(Share::Percent(25).of(10, true), 2);
        assert_eq!(Share::Percent(25).of(3, true), 1, "a batch has a host");
        assert_eq!(Share::Percent(10).of(3, false), 0, "a budget may be none");
        assert_eq!(Share::Percent(0).of(3, true), 0);
        assert_eq!(Share::Percent(100).of(3, true), 3);
        assert_eq!(Share::Count(0).of(3, false), 0);
    }
}
