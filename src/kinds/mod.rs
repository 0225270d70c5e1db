//! Step kinds. Each kind lives in one file: its fields (the plan model's variant),
//! how they are read from the plan, the templates it uses, its preview, its
//! properties, and one attempt of its work. The engine schedules; kinds never do.
//!
//! Adding a kind is one new file, one line in [`KINDS`], and its variant of
//! [`Action`]; [`Action::as_kind`] has no fallback arm, so the compiler finds every
//! place a new kind must be handled.

pub(crate) mod docker_exec;
pub(crate) mod http_probe;
pub(crate) mod image_ship;
pub(crate) mod maintenance_toggle;
mod need;
pub(crate) mod release;
pub(crate) mod shell;

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;

use crate::docker::Docker;
use crate::engine::{HookRole, Work};
use crate::mask::MASK;
use crate::plan::Plan;
use crate::plan::model::{Action, Command, Sp};
use crate::plan::reader::Fields;
use crate::plan::template::{Insert, Name, Template, Value};
use crate::process::Spec;
pub(crate) use need::{Known, Need};

/// A kind as the plan reader knows it.
pub(crate) struct Entry {
    /// Its `kind = "…"`.
    pub(crate) name: &'static str,
    /// The fields it takes besides those of every step.
    pub(crate) fields: &'static [&'static str],
    /// Reads those fields; every problem is reported, `None` if one was fatal.
    pub(crate) read: fn(&mut Fields<'_, '_, '_, '_>) -> Option<Action>,
}

/// The registry: the only list of kinds.
pub(crate) const KINDS: &[Entry] = &[
    shell::ENTRY,
    docker_exec::ENTRY,
    http_probe::ENTRY,
    maintenance_toggle::ENTRY,
    image_ship::ENTRY,
    release::ENTRY,
];

/// What a kind does with its fields.
pub(crate) trait StepKind: Send + Sync {
    fn name(&self) -> &'static str;

    /// Every template among its fields, for the plan's checks.
    fn templates(&self) -> Vec<&Sp<Template>>;

    /// The templates that `sh -c` reads (their values travel in the environment).
    fn scripts(&self) -> Vec<&Sp<Template>> {
        Vec::new()
    }

    /// The fields whose value stands on a command line or a path runner builds,
    /// and the rule the value must follow.
    fn values(&self) -> Vec<Field<'_>> {
        Vec::new()
    }

    /// Whether it talks to docker (a plan where nothing does skips the probe).
    fn uses_docker(&self) -> bool;

    /// Whether it runs compose itself (not through `{{ compose }}` in a
    /// template): the run then decides the compose command.
    fn uses_compose(&self) -> bool {
        false
    }

    /// Whether it also uses this machine's engine when it runs for a host.
    fn uses_local_docker(&self) -> bool {
        false
    }

    /// Whether it only makes sense for a host (it needs `on`).
    fn per_host(&self) -> bool {
        false
    }

    /// Whether it runs the plan's `[maintenance]` commands (which must then exist).
    fn uses_maintenance(&self) -> bool {
        false
    }

    /// Whether it turns maintenance on (`Some(true)`) or off (`Some(false)`).
    fn toggles(&self) -> Option<bool> {
        None
    }

    /// Whether its stdout is kept for `{{ steps.ID.output }}`.
    fn captures(&self) -> bool {
        false
    }

    /// What it does to the system's users as a rollback hook.
    fn hook_role(&self) -> HookRole {
        HookRole::Undo
    }

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

impl Action {
    /// The kind behind the action.
    pub(crate) fn as_kind(&self) -> &dyn StepKind {
        match self {
            Action::Shell(kind) => kind,
            Action::DockerExec(kind) => kind,
            Action::HttpProbe(kind) => kind,
            Action::MaintenanceToggle(kind) => kind,
            Action::ImageShip(kind) => kind,
            Action::Release(kind) => kind.as_ref(),
        }
    }

    /// `shell`, `docker-exec`, …
    pub(crate) fn name(&self) -> &'static str {
        self.as_kind().name()
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

/// A field whose value stands on a command line or in a path: its name, its
/// template, its rule.
pub(crate) type Field<'a> = (&'static str, &'a Sp<Template>, Rule);

/// What a value must be where it stands. A value is checked when the plan is
/// loaded (from `[vars]`, `--var`, the environment), or when its step starts (a
/// step's output); a value that breaks its rule is refused, never passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A container's name or id, as docker allows them.
    Container,
    /// A user in a container: a name or id, and a group.
    User,
    /// An absolute path in a container.
    Workdir,
    /// An `http://` or `https://` URL.
    Url,
    /// A host path: no value climbs out of where the plan's text puts it.
    Path,
    /// An argument of a command in a container: anything but a secret.
    Argument,
    /// A TCP port, 1 to 65535.
    Port,
    /// An image reference: `name[:tag]`, `repo/name@sha256:…`.
    Image,
    /// Text runner shows when a check fails (`expect_body`, `expect_output`):
    /// anything but a secret.
    Shown,
    /// A volume as `docker run -v` takes it: `name:/path[:ro]`.
    Volume,
}

impl Rule {
    /// Why `value` breaks the rule, if it does. (`Path` is checked with the
    /// template, see `plan::validate`; here only what one value may not hold.)
    pub(crate) fn check(self, value: &str) -> Result<(), String> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        let name = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.chars().all(name_char)
        };
        let ok = match self {
            Rule::Container => {
                value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                    && value.chars().all(name_char)
            }
            Rule::User => {
                let mut parts = value.splitn(2, ':');
                parts.next().is_some_and(name) && parts.next().is_none_or(name)
            }
            Rule::Workdir => value.starts_with('/') && !value.chars().any(char::is_control),
            Rule::Url => url_ok(value),
            Rule::Path => !value.chars().any(char::is_control),
            Rule::Argument | Rule::Shown => true,
            Rule::Volume => {
                !value.starts_with('-')
                    && value.contains(':')
                    && !value.chars().any(|c| c.is_control() || c.is_whitespace())
            }
            Rule::Port => value.parse::<u16>().is_ok_and(|p| p > 0),
            Rule::Image => {
                value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Rule::Container => "not a container name: letters, digits, `_`, `.` and `-`, starting with a letter or a digit",
            Rule::User => "not a user: a name or id (letters, digits, `_`, `.`, `-`), and `:group` if any",
            Rule::Workdir => "not an absolute path in the container",
            Rule::Url => "not an http:// or https:// URL",
            Rule::Path => "not a path: it holds control characters",
            Rule::Argument | Rule::Shown => "",
            Rule::Volume => "not a volume: `name:/path` or `/host/path:/path`, with no space, not starting with `-`",
            Rule::Port => "not a TCP port (1 to 65535)",
            Rule::Image => "not an image reference: letters, digits, `.`, `_`, `-`, `/`, `:` and `@`, starting with a letter or a digit",
        }
        .to_owned())
    }
}

/// An `http://` or `https://` URL with a host, and nothing a command line could
/// misread (it cannot start with `-`: it starts with the scheme).
fn url_ok(value: &str) -> bool {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    let Some(rest) = rest else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
        && value.parse::<ureq::http::Uri>().is_ok()
}

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

/// Whether a template of the step or its hook (fields or `env`) refers to
/// `name`, or its text names the environment variable `var`.
pub(crate) fn step_mentions(step: &crate::plan::Step, name: &Name, var: &str) -> bool {
    let in_template = |t: &Template| t.raw.contains(var) || t.refs().any(|(n, ..)| n == name);
    let in_action = |action: &crate::plan::model::Action,
                     env: &indexmap::IndexMap<String, Template>| {
        (*name == Name::Compose && action.as_kind().uses_compose())
            || action
                .as_kind()
                .templates()
                .into_iter()
                .any(|t| in_template(&t.value))
            || env.values().any(in_template)
    };
    in_action(&step.action, &step.env)
        || step
            .rollback
            .as_ref()
            .is_some_and(|h| in_action(&h.action, &h.env))
}
