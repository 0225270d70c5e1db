//! Reads the spanned TOML tree into the plan model.
//!
//! serde stops at the first error; an operator fixing a plan wants all of them at
//! once. So the loader walks toml's spanned document itself: every section, step and
//! field is read on its own, each problem becomes a diagnostic, and reading goes on.

use std::borrow::Cow;
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::action::{Action, Kind};
use super::diagnostic::{PlanDiagnostic, Span};
use super::model::{
    Command, ContainerDef, Creates, DockerSection, Dur, EnvVar, HookDef, HostDef, MadeContainer,
    MaintenanceSection, On, PlanFile, PlanSection, Policy, PortDef, RolloutSection, Share, Sp,
    StepDef, SudoMode, VarDef, When,
};
use super::template::Template;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<Cow<'i, str>>;

/// Fields every step takes.
pub const STEP_FIELDS: &[&str] = &[
    "kind",
    "needs",
    "if",
    "description",
    "timeout",
    "retries",
    "retry_delay",
    "backoff",
    "rollback",
    "when",
    "env",
    "creates",
    "on",
];
/// Fields a rollback hook takes besides its kind's.
pub const HOOK_FIELDS: &[&str] = &[
    "kind",
    "also_if_failed",
    "description",
    "timeout",
    "retries",
    "retry_delay",
    "backoff",
    "env",
];
const ROOT_FIELDS: &[&str] = &[
    "plan",
    "vars",
    "docker",
    "defaults",
    "maintenance",
    "hosts",
    "rollout",
    "steps",
];
const POLICY_FIELDS: &[&str] = &["timeout", "retries", "retry_delay", "backoff"];
const CREATES_FIELDS: &[&str] = &["containers", "images", "programs", "ports"];
const MAINTENANCE_FIELDS: &[&str] = &[
    "container",
    "on",
    "off",
    "status",
    "status_on",
    "status_off",
    "user",
];
/// Names templates reserve; no variable may take them.
pub const RESERVED_NAMES: &[&str] = &["docker", "compose", "run", "plan", "steps"];

/// Parses and reads a plan. Returns the model when the file could be read (possibly
/// with problems already reported), and every diagnostic found.
/// `kinds` is the registry: the kinds a step may name, each reading its own fields.
pub fn read(src: &str, kinds: &[Kind]) -> (Option<PlanFile>, Vec<PlanDiagnostic>) {
    let mut reader = Reader {
        src,
        kinds,
        diags: Vec::new(),
    };
    let (root, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        // Reading a tree that the parser had to patch up would report problems
        // that are not there; syntax errors come first.
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            reader.diags.push(
                PlanDiagnostic::error(
                    "runner::toml-syntax",
                    format!("invalid TOML: {}", error.message().trim_end()),
                )
                .label(span, "here")
                .help("fix the TOML syntax; https://toml.io shows the format"),
            );
        }
        return (None, reader.diags);
    }
    let plan = reader.root(root.get_ref(), root.span());
    (plan, reader.diags)
}

struct Reader<'s> {
    src: &'s str,
    kinds: &'s [Kind],
    diags: Vec<PlanDiagnostic>,
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn find<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Value<'i>> {
    table.get(key)
}

/// The allowed name closest to `name`, if it is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plain name: letters, digits, `-` and `_`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Reader<'_> {
    fn error(&mut self, diagnostic: PlanDiagnostic) {
        self.diags.push(diagnostic);
    }

    fn wrong_type(&mut self, value: &Value<'_>, field: &str, expected: &str, example: &str) {
        let found = type_name(value.get_ref());
        self.error(
            PlanDiagnostic::error(
                "runner::wrong-type",
                format!("`{field}` must be {expected}, not {found}"),
            )
            .label(value.span(), found)
            .help(format!("write it like {example}")),
        );
    }

    fn missing(&mut self, span: Span, what: &str, field: &str, hint: &str) {
        self.error(
            PlanDiagnostic::error("runner::missing-field", format!("{what} has no `{field}`"))
                .label(span, format!("`{field}` missing here"))
                .help(format!("add `{field} = {hint}`")),
        );
    }

    /// Reports every key of `table` not in `allowed`. `elsewhere` may explain a key
    /// that is valid somewhere else (another kind's field, a hook restriction).
    fn check_keys(
        &mut self,
        table: &DeTable<'_>,
        allowed: &[&str],
        context: &str,
        elsewhere: &dyn Fn(&str) -> Option<(&'static str, String)>,
    ) {
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            if let Some((code, message)) = elsewhere(name) {
                let help = format!("{context} takes {}", list(allowed));
                self.error(
                    PlanDiagnostic::error(code, message)
                        .label(key.span(), "not allowed here")
                        .help(help),
                );
                continue;
            }
            let help = match suggest(name, allowed.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("{context} takes {}", list(allowed)),
            };
            self.error(
                PlanDiagnostic::error(
                    "runner::unknown-field",
                    format!("unknown field `{name}` in {context}"),
                )
                .label(key.span(), "unknown field")
                .help(help),
            );
        }
    }

    fn table<'t, 'i>(
        &mut self,
        value: &'t Value<'i>,
        field: &str,
        example: &str,
    ) -> Option<&'t DeTable<'i>> {
        if let DeValue::Table(table) = value.get_ref() {
            Some(table)
        } else {
            self.wrong_type(value, field, "a table", example);
            None
        }
    }

    /// A plain string: one that is not a template. A `{{ name }}` in it is
    /// refused at its span, never kept as literal text: every string a plan
    /// holds either renders templates or says it does not.
    fn string(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<String>> {
        let s = self.raw_string(value, field)?;
        let parsed = Template::parse(&s.value, self.string_origin(&s.span, &s.value), &s.span);
        if let Some((_, text, span)) = parsed.refs().next() {
            self.error(
                PlanDiagnostic::error(
                    "runner::not-a-template",
                    format!("`{field}` does not take templates, and holds `{{{{ {text} }}}}`"),
                )
                .label(span.clone(), "not rendered here")
                .help(format!(
                    "write `{field}` itself; templates are read in commands, scripts, containers, users, folders, URLs, images, files, `env`, `expect_body` and `expect_output`"
                )),
            );
            return None;
        }
        Some(s)
    }

    /// A string as written, templates and all.
    fn raw_string(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<String>> {
        if let DeValue::String(s) = value.get_ref() {
            if s.contains('\0') {
                self.error(
                    PlanDiagnostic::error(
                        "runner::nul-byte",
                        format!("`{field}` contains a NUL byte"),
                    )
                    .label(value.span(), "NUL byte in here")
                    .help("no command argument can carry a NUL byte; remove it"),
                );
                return None;
            }
            Some(Sp::new(s.to_string(), value.span()))
        } else {
            self.wrong_type(value, field, "a string", &format!("`{field} = \"...\"`"));
            None
        }
    }

    fn template(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Template>> {
        let s = self.raw_string(value, field)?;
        let origin = self.string_origin(&s.span, &s.value);
        Some(Sp::new(Template::parse(&s.value, origin, &s.span), s.span))
    }

    /// Where the first character of a string's content stands, when the TOML string
    /// maps character for character onto its source (no escapes).
    fn string_origin(&self, span: &Span, value: &str) -> Option<usize> {
        let raw = self.src.get(span.clone())?;
        let delimiter = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let inner = raw.get(delimiter..raw.len().checked_sub(delimiter)?)?;
        if inner == value {
            Some(span.start + delimiter)
        } else if delimiter == 3 && inner.strip_prefix('\n') == Some(value) {
            Some(span.start + delimiter + 1)
        } else {
            None
        }
    }

    fn integer(&mut self, value: &Value<'_>, field: &str, range: (i64, i64)) -> Option<Sp<i64>> {
        let parsed = if let DeValue::Integer(i) = value.get_ref() {
            i64::from_str_radix(i.as_str(), i.radix()).ok()
        } else {
            self.wrong_type(
                value,
                field,
                "an integer",
                &format!("`{field} = {}`", range.0.max(1)),
            );
            return None;
        };
        match parsed {
            Some(n) if (range.0..=range.1).contains(&n) => Some(Sp::new(n, value.span())),
            _ => {
                self.error(
                    PlanDiagnostic::error(
                        "runner::out-of-range",
                        format!("`{field}` must be between {} and {}", range.0, range.1),
                    )
                    .label(value.span(), "out of range")
                    .help(format!("pick a value from {} to {}", range.0, range.1)),
                );
                None
            }
        }
    }

    fn u32(&mut self, value: &Value<'_>, field: &str, range: (i64, i64)) -> Option<Sp<u32>> {
        let n = self.integer(value, field, range)?;
        u32::try_from(n.value).ok().map(|v| Sp::new(v, n.span))
    }

    fn boolean(&mut self, value: &Value<'_>, field: &str) -> Option<bool> {
        if let DeValue::Boolean(b) = value.get_ref() {
            Some(*b)
        } else {
            self.wrong_type(value, field, "a boolean", &format!("`{field} = true`"));
            None
        }
    }

    fn backoff(&mut self, value: &Value<'_>) -> Option<Sp<f64>> {
        let n = match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(|n| i32::try_from(n).ok())
                .map(f64::from),
            _ => {
                self.wrong_type(value, "backoff", "a number", "`backoff = 2.0`");
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() && (1.0..=100.0).contains(&n) => {
                Some(Sp::new(n, value.span()))
            }
            _ => {
                self.error(
                    PlanDiagnostic::error(
                        "runner::out-of-range",
                        "`backoff` must be a number from 1.0 to 100.0",
                    )
                    .label(value.span(), "out of range")
                    .help("1.0 keeps the delay constant; 2.0 doubles it after each retry"),
                );
                None
            }
        }
    }

    fn duration(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Dur>> {
        let s = self.string(value, field)?;
        match humantime::parse_duration(&s.value) {
            Ok(d) if d > Duration::ZERO || field == "retry_delay" => Some(Sp::new(Dur(d), s.span)),
            Ok(_) => {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-duration",
                        format!("`{field}` must be longer than zero"),
                    )
                    .label(s.span, "zero")
                    .help(format!(
                        "write a positive duration, e.g. `{field} = \"30s\"`"
                    )),
                );
                None
            }
            Err(e) => {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-duration",
                        format!("`{field}` is not a duration: {e}"),
                    )
                    .label(s.span, "not a duration")
                    .help("write a number and a unit: \"500ms\", \"30s\", \"10m\", \"1h30m\""),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        value: &Value<'_>,
        field: &str,
        options: &[(&str, T)],
    ) -> Option<Sp<T>> {
        let s = self.string(value, field)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s.value) {
            return Some(Sp::new(*v, s.span));
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let help = match suggest(&s.value, names.iter().copied()) {
            Some(close) => format!(
                "did you mean `{close}`? `{field}` is one of {}",
                list(&names)
            ),
            None => format!("`{field}` is one of {}", list(&names)),
        };
        self.error(
            PlanDiagnostic::error(
                "runner::bad-value",
                format!("`{}` is not a valid `{field}`", s.value),
            )
            .label(s.span, "not valid")
            .help(help),
        );
        None
    }

    fn strings(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<Sp<String>>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                value,
                field,
                "an array of strings",
                &format!("`{field} = [\"build\", \"backup\"]`"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, field) {
                out.push(s);
            }
        }
        Some(out)
    }

    fn command(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Command>> {
        match value.get_ref() {
            DeValue::String(_) => {
                let t = self.template(value, field)?;
                if t.value.raw.trim().is_empty() {
                    self.error(
                        PlanDiagnostic::error(
                            "runner::empty-command",
                            format!("`{field}` is empty"),
                        )
                        .label(value.span(), "empty")
                        .help("give the command to run"),
                    );
                    return None;
                }
                Some(Sp::new(Command::Shell(t), value.span()))
            }
            DeValue::Array(items) if !items.is_empty() => {
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    argv.push(self.template(item, field)?);
                }
                Some(Sp::new(Command::Argv(argv), value.span()))
            }
            DeValue::Array(_) => {
                self.error(
                    PlanDiagnostic::error("runner::empty-command", format!("`{field}` is an empty array"))
                        .label(value.span(), "empty")
                        .help(format!("give the program and its arguments, e.g. `{field} = [\"bin/rails\", \"db:migrate\"]`")),
                );
                None
            }
            _ => {
                self.wrong_type(
                    value,
                    field,
                    "an array (argv) or a string (run with sh -c)",
                    &format!("`{field} = [\"bin/rails\", \"db:migrate\"]`"),
                );
                None
            }
        }
    }

    fn env(&mut self, value: &Value<'_>) -> IndexMap<String, Sp<Template>> {
        let mut out = IndexMap::new();
        let Some(table) = self.table(value, "env", "`env = { RAILS_ENV = \"production\" }`") else {
            return out;
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-name",
                        format!("`{name}` is not a valid environment variable name"),
                    )
                    .label(key.span(), "invalid name")
                    .help("use letters, digits and `_`, not starting with a digit"),
                );
                continue;
            }
            if let Some(t) = self.template(value, name) {
                out.insert(name.to_owned(), t);
            }
        }
        out
    }

    fn root(&mut self, root: &DeTable<'_>, span: Span) -> Option<PlanFile> {
        self.check_keys(root, ROOT_FIELDS, "a plan", &|_| None);

        let plan = if let Some(v) = find(root, "plan") {
            self.plan_section(v)
        } else {
            self.error(
                PlanDiagnostic::error("runner::missing-field", "the plan has no `[plan]` section")
                    .label(span.start..span.start, "`[plan]` expected in this file")
                    .help("add `[plan]` with `name = \"my app production\"`"),
            );
            None
        };
        let vars_span = find(root, "vars").map(Value::span);
        let (vars, var_spans) = find(root, "vars").map(|v| self.vars(v)).unwrap_or_default();
        let docker = find(root, "docker")
            .map(|v| self.docker(v))
            .unwrap_or_default();
        let defaults = find(root, "defaults")
            .and_then(|v| {
                let t = self.table(v, "defaults", "`[defaults]`")?;
                self.check_keys(t, POLICY_FIELDS, "[defaults]", &|_| None);
                Some(self.policy(t))
            })
            .unwrap_or_default();
        let maintenance = find(root, "maintenance").and_then(|v| self.maintenance(v));
        let (hosts, host_spans) = find(root, "hosts")
            .map(|v| self.hosts(v))
            .unwrap_or_default();
        let rollout = find(root, "rollout").and_then(|v| self.rollout(v));
        if let (Some(v), true) = (find(root, "rollout"), hosts.is_empty()) {
            self.error(
                PlanDiagnostic::error(
                    "runner::rollout-without-hosts",
                    "`[rollout]` without `[hosts]`",
                )
                .label(v.span(), "there are no hosts to roll out to")
                .help("add `[hosts.NAME]` sections, or remove `[rollout]`"),
            );
        }

        let count = find(root, "steps")
            .and_then(|v| v.get_ref().as_table())
            .map_or(0, toml::map::Map::len);
        let mut steps = IndexMap::with_capacity(count);
        let mut step_spans = IndexMap::with_capacity(count);
        match find(root, "steps") {
            Some(v) => {
                if let Some(table) = self.table(v, "steps", "`[steps.build]`") {
                    if table.is_empty() {
                        self.error(
                            PlanDiagnostic::error("runner::no-steps", "the plan has no steps")
                                .label(v.span(), "empty")
                                .help("add a step: `[steps.build]` with a `kind`"),
                        );
                    }
                    for (key, value) in table {
                        let id = key.get_ref().as_ref();
                        if !is_plain_name(id) {
                            self.error(
                                PlanDiagnostic::error("runner::bad-name", format!("`{id}` is not a valid step id"))
                                    .label(key.span(), "invalid id")
                                    .help("step ids use letters, digits, `-` and `_` (they appear in `{{ steps.ID.output }}`)"),
                            );
                        }
                        step_spans.insert(id.to_owned(), key.span());
                        if let Some(step) = self.step(key, value) {
                            steps.insert(id.to_owned(), step);
                        }
                    }
                }
            }
            None => self.error(
                PlanDiagnostic::error("runner::no-steps", "the plan has no `[steps]`")
                    .label(span.start..span.start, "steps expected in this file")
                    .help("add a step: `[steps.build]` with a `kind`"),
            ),
        }
        for step in steps.values() {
            if let Some(on) = &step.on {
                self.check_on(on, &hosts, find(root, "hosts").is_some());
            }
        }
        Some(PlanFile {
            plan: plan?,
            vars,
            var_spans,
            vars_span,
            docker,
            defaults,
            maintenance,
            hosts,
            host_spans,
            rollout,
            steps,
            step_spans,
        })
    }

    fn hosts(&mut self, value: &Value<'_>) -> (IndexMap<String, HostDef>, IndexMap<String, Span>) {
        let mut hosts = IndexMap::new();
        let mut spans = IndexMap::new();
        let Some(table) = self.table(
            value,
            "hosts",
            "`[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"`",
        ) else {
            return (hosts, spans);
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if !is_plain_name(name) {
                self.error(
                    PlanDiagnostic::error("runner::bad-name", format!("`{name}` is not a valid host name"))
                        .label(key.span(), "invalid name")
                        .help("host names use letters, digits, `-` and `_` (they appear in step ids: `restart-app@web1`)"),
                );
            }
            if let Some(host) = self.host(name, key.span(), value) {
                spans.insert(name.to_owned(), key.span());
                hosts.insert(name.to_owned(), host);
            }
        }
        (hosts, spans)
    }

    fn host(&mut self, name: &str, key: Span, value: &Value<'_>) -> Option<HostDef> {
        let table = self.table(
            value,
            name,
            "`[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"`",
        )?;
        self.check_keys(
            table,
            &["docker", "context", "roles"],
            &format!("host `{name}`"),
            &|_| None,
        );
        let docker = find(table, "docker").and_then(|v| self.string(v, "docker"));
        let context = find(table, "context").and_then(|v| self.string(v, "context"));
        let roles = find(table, "roles")
            .and_then(|v| self.strings(v, "roles"))
            .unwrap_or_default();
        for role in &roles {
            if !is_plain_name(&role.value) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-name",
                        format!("`{}` is not a valid role", role.value),
                    )
                    .label(role.span.clone(), "invalid role")
                    .help("roles use letters, digits, `-` and `_`"),
                );
            }
        }
        match (&docker, &context) {
            (Some(_), Some(c)) => self.error(
                PlanDiagnostic::error(
                    "runner::host-engine",
                    format!("host `{name}` has both `docker` and `context`"),
                )
                .label(c.span.clone(), "one of the two")
                .help("keep `docker` (what DOCKER_HOST takes) or `context` (a docker context), not both"),
            ),
            (None, None) => self.missing(key, &format!("host `{name}`"), "docker", "\"ssh://deploy@10.0.0.11\""),
            (Some(d), None) => {
                if let Err(why) = engine_address(&d.value) {
                    self.error(
                        PlanDiagnostic::error(
                            "runner::host-engine",
                            format!("host `{name}`: `{}` is not a Docker engine address: {why}", d.value),
                        )
                        .label(d.span.clone(), "not an engine address")
                        .help("write `ssh://user@host`, `ssh://user@host:2222`, `unix:///var/run/docker.sock` or `tcp://host:2376`"),
                    );
                }
            }
            (None, Some(c)) => {
                if !is_context_name(&c.value) {
                    self.error(
                        PlanDiagnostic::error(
                            "runner::host-engine",
                            format!("host `{name}`: `{}` is not a docker context name", c.value),
                        )
                        .label(c.span.clone(), "not a context name")
                        .help("context names use letters, digits, `_`, `.` and `-`, and start with a letter or digit"),
                    );
                }
            }
        }
        Some(HostDef {
            docker,
            context,
            roles,
        })
    }

    fn rollout(&mut self, value: &Value<'_>) -> Option<RolloutSection> {
        let table = self.table(value, "rollout", "`[rollout]` with `serial = 1`")?;
        self.check_keys(table, &["serial", "max_fail"], "[rollout]", &|_| None);
        let serial = find(table, "serial").and_then(|v| self.share(v, "serial", 1));
        let max_fail = find(table, "max_fail").and_then(|v| self.share(v, "max_fail", 0));
        Some(RolloutSection { serial, max_fail })
    }

    /// A count of hosts (at least `min`) or a share such as `"25%"`.
    fn share(&mut self, value: &Value<'_>, field: &str, min: i64) -> Option<Sp<Share>> {
        let bad = |this: &mut Self, why: &str| {
            this.error(
                PlanDiagnostic::error(
                    "runner::bad-share",
                    format!("`{field}` must be a number of hosts (at least {min}) or a share such as \"25%\": {why}"),
                )
                .label(value.span(), why.to_owned())
                .help(format!("write `{field} = {}` or `{field} = \"25%\"`", min.max(1))),
            );
        };
        match value.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(value, field, (min, 100_000))?;
                Some(Sp::new(Share::Count(u32::try_from(n.value).ok()?), n.span))
            }
            DeValue::String(text) => {
                let Some(number) = text.strip_suffix('%') else {
                    bad(self, "a share ends with `%`");
                    return None;
                };
                match number.parse::<u32>() {
                    Ok(p) if p <= 100 && (min == 0 || p > 0) => {
                        Some(Sp::new(Share::Percent(p), value.span()))
                    }
                    _ => {
                        bad(self, "a share is a whole percentage in range");
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(
                    value,
                    field,
                    "a number or a share",
                    &format!("`{field} = 1`"),
                );
                None
            }
        }
    }

    /// `on` names a role or a host; a list names hosts.
    fn check_on(&mut self, on: &On, hosts: &IndexMap<String, HostDef>, declared: bool) {
        let names: Vec<&Sp<String>> = match on {
            On::One(name) => vec![name],
            On::Hosts(names) => names.iter().collect(),
        };
        if !declared {
            if let Some(first) = names.first() {
                self.error(
                    PlanDiagnostic::error("runner::on-without-hosts", "`on` without `[hosts]`")
                        .label(first.span.clone(), "no host has this name or role")
                        .help("declare the hosts: `[hosts.web1]` with `docker = \"ssh://deploy@10.0.0.11\"` and `roles = [\"web\"]`"),
                );
            }
            return;
        }
        let mut roles: Vec<&str> = hosts
            .values()
            .flat_map(|h| h.roles.iter().map(|r| r.value.as_str()))
            .collect();
        roles.sort_unstable();
        roles.dedup();
        for name in names {
            let is_host = hosts.contains_key(&name.value);
            let is_role = matches!(on, On::One(_)) && roles.contains(&name.value.as_str());
            if is_host || is_role {
                continue;
            }
            let candidates: Vec<&str> = if matches!(on, On::One(_)) {
                hosts
                    .keys()
                    .map(String::as_str)
                    .chain(roles.iter().copied())
                    .collect()
            } else {
                hosts.keys().map(String::as_str).collect()
            };
            let what = if matches!(on, On::One(_)) {
                "host or role"
            } else {
                "host"
            };
            let help = match suggest(&name.value, candidates.iter().copied()) {
                _ if roles.contains(&name.value.as_str()) => format!(
                    "`{0}` is a role, and a list names hosts: write `on = \"{0}\"` for every host of the role",
                    name.value
                ),
                Some(close) => format!("did you mean `{close}`?"),
                None => format!(
                    "`on` takes a role or a host name, or a list of host names; this plan has {}",
                    list(&candidates)
                ),
            };
            self.error(
                PlanDiagnostic::error(
                    "runner::unknown-host",
                    format!("no {what} is named `{}`", name.value),
                )
                .label(name.span.clone(), format!("unknown {what}"))
                .help(help),
            );
        }
    }

    fn plan_section(&mut self, value: &Value<'_>) -> Option<PlanSection> {
        let table = self.table(value, "plan", "`[plan]` with `name = \"...\"`")?;
        self.check_keys(table, &["name", "jobs"], "[plan]", &|_| None);
        let jobs = find(table, "jobs").and_then(|v| self.u32(v, "jobs", (1, 1024)));
        let Some(name) = find(table, "name") else {
            self.missing(value.span(), "[plan]", "name", "\"my app production\"");
            return None;
        };
        let name = self.string(name, "name")?;
        Some(PlanSection { name, jobs })
    }

    fn vars(&mut self, value: &Value<'_>) -> (IndexMap<String, VarDef>, IndexMap<String, Span>) {
        let mut out = IndexMap::new();
        let mut spans = IndexMap::new();
        let Some(table) = self.table(value, "vars", "`[vars]` with `app = \"my-app\"`") else {
            return (out, spans);
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            spans.insert(name.to_owned(), key.span());
            if !is_plain_name(name) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::bad-name",
                        format!("`{name}` is not a valid variable name"),
                    )
                    .label(key.span(), "invalid name")
                    .help("variable names use letters, digits, `-` and `_`"),
                );
                continue;
            }
            if RESERVED_NAMES.contains(&name) {
                self.error(
                    PlanDiagnostic::error(
                        "runner::reserved-name",
                        format!("`{name}` is a built-in template name"),
                    )
                    .label(key.span(), "reserved")
                    .help(format!(
                        "rename the variable; {} are built in",
                        list(RESERVED_NAMES)
                    )),
                );
                continue;
            }
            let var = match value.get_ref() {
                DeValue::String(_) => self.string(value, name).map(VarDef::Literal),
                DeValue::Integer(i) => Some(VarDef::Literal(Sp::new(i.to_string(), value.span()))),
                DeValue::Float(f) => Some(VarDef::Literal(Sp::new(
                    f.as_str().to_owned(),
                    value.span(),
                ))),
                DeValue::Boolean(b) => Some(VarDef::Literal(Sp::new(b.to_string(), value.span()))),
                DeValue::Table(t) => self.env_var(t, key),
                DeValue::Array(_) | DeValue::Datetime(_) => {
                    self.wrong_type(
                        value,
                        name,
                        "a string, a number, a boolean or `{ env = \"NAME\" }`",
                        &format!(
                            "`{name} = \"value\"` or `{name} = {{ env = \"NAME\", secret = true }}`"
                        ),
                    );
                    None
                }
            };
            if let Some(var) = var {
                out.insert(name.to_owned(), var);
            }
        }
        (out, spans)
    }

    fn env_var(&mut self, table: &DeTable<'_>, key: &Key<'_>) -> Option<VarDef> {
        let name = key.get_ref().as_ref();
        self.check_keys(
            table,
            &["env", "secret", "default"],
            &format!("variable `{name}`"),
            &|_| None,
        );
        let secret = find(table, "secret")
            .and_then(|v| self.boolean(v, "secret"))
            .unwrap_or(false);
        let default = find(table, "default").and_then(|v| self.string(v, "default"));
        let Some(env) = find(table, "env") else {
            self.missing(key.span(), &format!("variable `{name}`"), "env", "\"NAME\"");
            return None;
        };
        let env = self.string(env, "env")?;
        Some(VarDef::Env(EnvVar {
            env,
            secret,
            default,
        }))
    }

    fn docker(&mut self, value: &Value<'_>) -> DockerSection {
        let Some(table) = self.table(value, "docker", "`[docker]` with `sudo = \"auto\"`") else {
            return DockerSection::default();
        };
        self.check_keys(table, &["sudo"], "[docker]", &|_| None);
        let sudo = find(table, "sudo")
            .and_then(|v| {
                self.choice(
                    v,
                    "sudo",
                    &[
                        ("auto", SudoMode::Auto),
                        ("always", SudoMode::Always),
                        ("never", SudoMode::Never),
                    ],
                )
            })
            .map_or(SudoMode::Auto, |s| s.value);
        DockerSection { sudo }
    }

    fn policy(&mut self, table: &DeTable<'_>) -> Policy {
        Policy {
            timeout: find(table, "timeout").and_then(|v| self.duration(v, "timeout")),
            retries: find(table, "retries").and_then(|v| self.u32(v, "retries", (0, 1000))),
            retry_delay: find(table, "retry_delay").and_then(|v| self.duration(v, "retry_delay")),
            backoff: find(table, "backoff").and_then(|v| self.backoff(v)),
        }
    }

    fn maintenance(&mut self, value: &Value<'_>) -> Option<MaintenanceSection> {
        let table = self.table(
            value,
            "maintenance",
            "`[maintenance]` with `container`, `on`, `off`, `status`",
        )?;
        self.check_keys(table, MAINTENANCE_FIELDS, "[maintenance]", &|_| None);
        let required = |reader: &mut Self, field: &str, hint: &str| {
            let v = find(table, field);
            if v.is_none() {
                reader.missing(value.span(), "[maintenance]", field, hint);
            }
            v
        };
        let container = required(self, "container", "\"{{ app }}\"");
        let on = required(self, "on", "[\"bin/maintenance\", \"on\"]");
        let off = required(self, "off", "[\"bin/maintenance\", \"off\"]");
        let status = required(self, "status", "[\"bin/maintenance\", \"status\"]");
        let container = container.and_then(|v| self.template(v, "container"));
        let on = on.and_then(|v| self.command(v, "on"));
        let off = off.and_then(|v| self.command(v, "off"));
        let status = status.and_then(|v| self.command(v, "status"));
        let status_on = find(table, "status_on").and_then(|v| self.string(v, "status_on"));
        let status_off = find(table, "status_off").and_then(|v| self.string(v, "status_off"));
        let user = find(table, "user").and_then(|v| self.template(v, "user"));
        Some(MaintenanceSection {
            container: container?,
            on: on?,
            off: off?,
            status: status?,
            status_on,
            status_off,
            user,
        })
    }

    /// Reads `kind` and checks it; the caller reads the rest.
    fn kind(&mut self, table: &DeTable<'_>, key: &Key<'_>, what: &str) -> Option<Sp<String>> {
        let Some(kind) = find(table, "kind") else {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name).collect();
            self.error(
                PlanDiagnostic::error("runner::missing-field", format!("{what} has no `kind`"))
                    .label(key.span(), "`kind` missing here")
                    .help(format!("add `kind = ...`, one of {}", list(&kinds))),
            );
            return None;
        };
        let kind = self.string(kind, "kind")?;
        if self.kinds.iter().any(|k| k.name == kind.value) {
            return Some(kind);
        }
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name).collect();
        let help = match suggest(&kind.value, kinds.iter().copied()) {
            Some(close) => format!("did you mean `{close}`? The kinds are {}", list(&kinds)),
            None => format!("the kinds are {}", list(&kinds)),
        };
        self.error(
            PlanDiagnostic::error(
                "runner::unknown-kind",
                format!("unknown step kind `{}`", kind.value),
            )
            .label(kind.span, "unknown kind")
            .help(help),
        );
        None
    }

    fn step(&mut self, key: &Key<'_>, value: &Value<'_>) -> Option<StepDef> {
        let id = key.get_ref().as_ref();
        let table = self.table(value, id, "`[steps.build]` followed by `kind = \"shell\"`")?;
        let what = format!("step `{id}`");
        let kind = self.kind(table, key, &what)?;
        let kinds = self.kinds;
        let fields = kind_fields(kinds, &kind.value);
        let allowed: Vec<&str> = STEP_FIELDS.iter().chain(fields).copied().collect();
        let kind_name = kind.value.clone();
        self.check_keys(
            table,
            &allowed,
            &format!("a `{kind_name}` step"),
            &|field| other_kind_field(kinds, field, &kind_name),
        );
        let needs = find(table, "needs")
            .and_then(|v| self.strings(v, "needs"))
            .unwrap_or_default();
        let when = find(table, "when").and_then(|v| {
            self.choice(
                v,
                "when",
                &[
                    ("success", When::Success),
                    ("failure", When::Failure),
                    ("always", When::Always),
                ],
            )
        });
        let condition = find(table, "if").and_then(|v| self.condition(v));
        let rollback = find(table, "rollback")
            .and_then(|v| self.hook(id, v))
            .map(Box::new);
        let description = find(table, "description").and_then(|v| self.string(v, "description"));
        let policy = self.policy(table);
        let env = find(table, "env").map(|v| self.env(v)).unwrap_or_default();
        let creates = find(table, "creates")
            .map(|v| self.creates(v))
            .unwrap_or_default();
        let on = find(table, "on").and_then(|v| match v.get_ref() {
            DeValue::String(_) => self.string(v, "on").map(On::One),
            DeValue::Array(_) => self.strings(v, "on").map(On::Hosts),
            _ => {
                self.wrong_type(
                    v,
                    "on",
                    "a role or host name, or a list of host names",
                    "`on = \"web\"`",
                );
                None
            }
        });
        let action = self.action(
            table,
            &kind,
            key.span(),
            &format!("the `{}` step `{id}`", kind.value),
        )?;
        Some(StepDef {
            action,
            needs,
            description,
            policy,
            rollback,
            when,
            condition,
            env,
            creates,
            on,
            kind_span: kind.span,
        })
    }

    /// `if = "…"`: a condition, its mistakes pointed at where they stand.
    fn condition(&mut self, value: &Value<'_>) -> Option<Sp<super::condition::Condition>> {
        let s = self.raw_string(value, "if")?;
        let origin = self.string_origin(&s.span, &s.value);
        match super::condition::Condition::parse(&s.value, origin, &s.span) {
            Ok(condition) => Some(Sp::new(condition, s.span)),
            Err((why, span)) => {
                self.error(
                    PlanDiagnostic::error("runner::bad-condition", format!("`if` does not read: {why}"))
                        .label(span, why)
                        .help("write a condition such as `if = \"steps.pending.output != '0' && expand_only != 'yes'\"`: names, 'text', numbers, ==, !=, !, &&, ||, parentheses"),
                );
                None
            }
        }
    }

    fn creates(&mut self, value: &Value<'_>) -> Creates {
        let mut out = Creates::default();
        let Some(table) = self.table(
            value,
            "creates",
            "`creates = { containers = [\"{{ app }}\"] }`",
        ) else {
            return out;
        };
        self.check_keys(table, CREATES_FIELDS, "`creates`", &|_| None);
        let array = |this: &mut Self, field: &str, example: &str| {
            let v = find(table, field)?;
            if let DeValue::Array(items) = v.get_ref() {
                Some(items.iter().collect::<Vec<_>>())
            } else {
                this.wrong_type(v, field, "an array", example);
                None
            }
        };
        for item in array(self, "containers", "`containers = [\"{{ app }}\"]`").unwrap_or_default()
        {
            if let Some(c) = self.created_container(item) {
                out.containers.push(c);
            }
        }
        for item in array(self, "images", "`images = [\"app:{{ version }}\"]`").unwrap_or_default()
        {
            if let Some(t) = self.template(item, "images") {
                out.images.push(t);
            }
        }
        for item in array(self, "programs", "`programs = [\"jq\"]`").unwrap_or_default() {
            if let Some(s) = self.string(item, "programs") {
                out.programs.push(s);
            }
        }
        for item in array(self, "ports", "`ports = [8080]`").unwrap_or_default() {
            if let DeValue::String(_) = item.get_ref() {
                if let Some(t) = self.template(item, "ports") {
                    out.ports.push(PortDef::Template(t));
                }
            } else if let Some(port) = self.integer(item, "ports", (1, 65535)) {
                let number = u16::try_from(port.value).unwrap_or(0);
                out.ports.push(PortDef::Number(Sp::new(number, port.span)));
            }
        }
        out
    }

    /// A container of `creates`: `"{{ app }}"`, or `{ name = "{{ app }}", image = "app:v2" }`.
    fn created_container(&mut self, item: &Value<'_>) -> Option<ContainerDef> {
        let DeValue::Table(table) = item.get_ref() else {
            return self.template(item, "containers").map(ContainerDef::Name);
        };
        self.check_keys(
            table,
            &["name", "image"],
            "a container of `creates`",
            &|_| None,
        );
        let Some(name) = find(table, "name") else {
            self.missing(
                item.span(),
                "a container of `creates`",
                "name",
                "\"{{ app }}\"",
            );
            return None;
        };
        let name = self.template(name, "name")?;
        let image = find(table, "image").and_then(|v| self.template(v, "image"));
        Some(ContainerDef::Made(MadeContainer { name, image }))
    }

    fn hook(&mut self, id: &str, value: &Value<'_>) -> Option<HookDef> {
        let table = self.table(
            value,
            "rollback",
            "`rollback = { kind = \"shell\", run = \"...\" }`",
        )?;
        let key = Spanned::new(value.span(), Cow::Borrowed("rollback"));
        let kind = self.kind(table, &key, &format!("the rollback hook of `{id}`"))?;
        let kinds = self.kinds;
        let allowed: Vec<&str> = HOOK_FIELDS
            .iter()
            .chain(kind_fields(kinds, &kind.value))
            .copied()
            .collect();
        let kind_name = kind.value.clone();
        self.check_keys(table, &allowed, &format!("a `{kind_name}` rollback hook"), &|field| match field {
            "needs" => Some((
                "runner::hook-needs",
                "a rollback hook cannot have `needs`: hooks run in reverse order of completion".to_owned(),
            )),
            "rollback" => Some((
                "runner::hook-rollback",
                "a rollback hook cannot have its own `rollback`".to_owned(),
            )),
            "when" => Some((
                "runner::hook-when",
                "a rollback hook cannot have `when`: it runs when the run fails after its step succeeded (or also when its own step failed, with `also_if_failed = true`)"
                    .to_owned(),
            )),
            _ => other_kind_field(kinds, field, &kind_name),
        });
        let description = find(table, "description").and_then(|v| self.string(v, "description"));
        let also_if_failed = find(table, "also_if_failed")
            .and_then(|v| self.boolean(v, "also_if_failed"))
            .unwrap_or(false);
        let policy = self.policy(table);
        let env = find(table, "env").map(|v| self.env(v)).unwrap_or_default();
        let action = self.action(
            table,
            &kind,
            value.span(),
            &format!("the rollback hook of `{id}`"),
        )?;
        Some(HookDef {
            action,
            also_if_failed,
            description,
            policy,
            env,
            kind_span: kind.span,
            span: value.span(),
        })
    }

    fn action(
        &mut self,
        table: &DeTable<'_>,
        kind: &Sp<String>,
        at: Span,
        what: &str,
    ) -> Option<Action> {
        let entry = self.kinds.iter().find(|k| k.name == kind.value)?;
        let mut fields = Fields {
            reader: self,
            table,
            at,
            what,
        };
        (entry.read)(&mut fields)
    }

    /// A regular expression that may use templates: their values are matched
    /// as plain text (escaped), so only the plan's own text is the pattern.
    fn regex(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Template>> {
        let s = self.template(value, field)?;
        let pattern = s
            .value
            .render(&|_| Some(super::template::Value::Text("x".into())));
        if let Err(e) = regex::Regex::new(&pattern) {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("invalid").trim().to_owned();
            self.error(
                PlanDiagnostic::error("runner::bad-regex", format!("`{field}` is not a valid regular expression"))
                    .label(s.span, last)
                    .help("see https://docs.rs/regex/latest/regex/#syntax; escape special characters with `\\\\`"),
            );
            return None;
        }
        Some(s)
    }
}

fn kind_fields(kinds: &[Kind], kind: &str) -> &'static [&'static str] {
    kinds
        .iter()
        .find(|k| k.name == kind)
        .map_or(&[], |k| k.fields)
}

/// Explains a field that belongs to another kind than the step's.
fn other_kind_field(kinds: &[Kind], field: &str, kind: &str) -> Option<(&'static str, String)> {
    let owners: Vec<&str> = kinds
        .iter()
        .filter(|k| k.fields.contains(&field))
        .map(|k| k.name)
        .collect();
    if owners.is_empty() {
        return None;
    }
    Some((
        "runner::wrong-kind-field",
        format!(
            "`{field}` is not a field of a `{kind}` step (it belongs to {})",
            owners
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    ))
}

/// A step's table, as its kind reads its own fields: each getter reports what is
/// wrong with its field (missing, mistyped, out of range) and reading goes on.
pub(crate) struct Fields<'r, 's, 't, 'i> {
    reader: &'r mut Reader<'s>,
    table: &'t DeTable<'i>,
    /// The step (or hook) table, for a missing field.
    at: Span,
    /// "the `shell` step `build`", for messages.
    what: &'t str,
}

impl<'t, 'i> Fields<'_, '_, 't, 'i> {
    fn get(&self, field: &str) -> Option<&'t Value<'i>> {
        find(self.table, field)
    }

    fn required(&mut self, field: &str, example: &str) -> Option<&'t Value<'i>> {
        let value = find(self.table, field);
        if value.is_none() {
            self.reader
                .missing(self.at.clone(), self.what, field, example);
        }
        value
    }

    /// An optional template string.
    pub(crate) fn template(&mut self, field: &str) -> Option<Sp<Template>> {
        let value = self.get(field)?;
        self.reader.template(value, field)
    }

    pub(crate) fn required_template(&mut self, field: &str, example: &str) -> Option<Sp<Template>> {
        let value = self.required(field, example)?;
        self.reader.template(value, field)
    }

    /// A command: an array (argv) or a string (`sh -c`).
    pub(crate) fn required_command(&mut self, field: &str, example: &str) -> Option<Sp<Command>> {
        let value = self.required(field, example)?;
        self.reader.command(value, field)
    }

    pub(crate) fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = self.get(field)?;
        self.reader.boolean(value, field)
    }

    pub(crate) fn integer(&mut self, field: &str, range: (i64, i64)) -> Option<Sp<i64>> {
        let value = self.get(field)?;
        self.reader.integer(value, field, range)
    }

    /// A regular expression, checked.
    pub(crate) fn regex(&mut self, field: &str) -> Option<Sp<Template>> {
        let value = self.get(field)?;
        self.reader.regex(value, field)
    }

    pub(crate) fn required_choice<T: Copy>(
        &mut self,
        field: &str,
        example: &str,
        options: &[(&str, T)],
    ) -> Option<Sp<T>> {
        let value = self.required(field, example)?;
        self.reader.choice(value, field, options)
    }

    /// Reports `field` missing, with `example` as the fix.
    pub(crate) fn missing(&mut self, field: &str, example: &str) {
        self.reader
            .missing(self.at.clone(), self.what, field, example);
    }

    /// Reports `field`, when the step has it, as not allowed here: `why` says
    /// what gives it instead. Whether the step is whole without it.
    pub(crate) fn refuse(&mut self, field: &str, why: &str) -> bool {
        let Some(value) = self.get(field) else {
            return true;
        };
        let message = format!("{} cannot have `{field}`: {why}", self.what);
        self.reader.error(
            PlanDiagnostic::error("runner::field-not-here", message)
                .label(value.span(), "not allowed here")
                .help(format!("remove `{field}`")),
        );
        false
    }

    /// An optional command: an array (argv) or a string (`sh -c`).
    pub(crate) fn command(&mut self, field: &str) -> Option<Sp<Command>> {
        let value = self.get(field)?;
        self.reader.command(value, field)
    }

    /// An optional array of template strings (empty when absent).
    pub(crate) fn templates(&mut self, field: &str, example: &str) -> Vec<Sp<Template>> {
        let Some(value) = self.get(field) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.reader
                .wrong_type(value, field, "an array of strings", example);
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.reader.template(item, field))
            .collect()
    }

    /// An optional duration (`"30s"`).
    pub(crate) fn duration(&mut self, field: &str) -> Option<Sp<Dur>> {
        let value = self.get(field)?;
        self.reader.duration(value, field)
    }
}

/// Checks a `DOCKER_HOST`-style address: `ssh://[user@]host[:port]`,
/// `unix:///path` or `tcp://host:port`. Nothing in it may be read as an
/// option by ssh or docker.
fn engine_address(address: &str) -> Result<(), &'static str> {
    super::address::parse(address).map(|_| ())
}

/// A docker context name: what `docker context create` accepts.
fn is_context_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::is_context_name;

    #[test]
    fn every_string_field_renders_templates_or_refuses_them() {
        use std::fmt::Write as _;

        use crate::kinds::KINDS;
        // A plan around one step of `kind`, its field `field` set to a value
        // that holds a template; every other field as the kind needs it.
        let base = |kind: &str| -> (&str, Vec<(&str, &str)>) {
            match kind {
                "shell" => ("", vec![("run", "\"true\"")]),
                "docker-exec" => ("", vec![("container", "\"c\""), ("command", "[\"true\"]")]),
                "http-probe" => ("", vec![("url", "\"http://localhost/\"")]),
                "maintenance-toggle" => (
                    "[maintenance]\ncontainer = \"c\"\non = [\"on\"]\noff = [\"off\"]\nstatus = [\"s\"]\n\n",
                    vec![("state", "\"on\"")],
                ),
                "image-ship" => (
                    "[hosts.h1]\ndocker = \"ssh://h1\"\nroles = [\"web\"]\n\n",
                    vec![("image", "\"app:v1\""), ("on", "\"web\"")],
                ),
                "release" => (
                    "",
                    vec![
                        ("stage", "\"start\""),
                        ("container", "\"app\""),
                        ("image", "\"app:v2\""),
                        ("network", "\"app-net\""),
                        ("health", "\"http://localhost:3000/up\""),
                    ],
                ),
                other => panic!("kind `{other}` has no base here: add one"),
            }
        };
        let templated = "x {{ v }} y";
        let mut walked = 0;
        // A compose release: `service` instead of `image` and `network`.
        let compose_release = vec![
            ("stage", "\"start\""),
            ("container", "\"app\""),
            ("service", "\"web\""),
            ("health", "\"http://localhost:3000/up\""),
        ];
        for entry in KINDS {
            for field in entry.fields.iter().chain(["description"].iter()) {
                let (head, fields) = match (entry.name, *field) {
                    ("release", "service" | "dir") => ("", compose_release.clone()),
                    _ => base(entry.name),
                };
                let mut step = format!("[steps.a]\nkind = \"{}\"\n", entry.name);
                for (name, value) in &fields {
                    if name != field {
                        let _ = writeln!(step, "{name} = {value}");
                    }
                }
                let line = format!("{field} = \"{templated}\"\n");
                step.push_str(&line);
                let text = format!("[plan]\nname = \"t\"\n\n[vars]\nv = \"1\"\n\n{head}{step}");
                let at = text.find(&line).expect("the field's line");
                let span = at..at + line.len();
                let (file, diags) = super::read(&text, KINDS);
                let refused = diags.iter().any(|d| {
                    d.severity == miette::Severity::Error
                        && d.labels
                            .iter()
                            .any(|(s, _)| s.start < span.end && span.start < s.end)
                });
                let rendered = file
                    .as_ref()
                    .and_then(|f| f.steps.get("a"))
                    .is_some_and(|step| {
                        step.action
                            .templates()
                            .iter()
                            .any(|t| t.value.raw == templated)
                    });
                assert!(
                    refused != rendered,
                    "`{field}` of `{}` must render templates or refuse them (refused: {refused}, rendered: {rendered}): {diags:?}",
                    entry.name
                );
                walked += 1;
            }
        }
        assert!(walked > 15, "{walked}");
    }

    #[test]
    fn context_names_are_plain() {
        assert!(is_context_name("web1.prod_a-b"));
        assert!(!is_context_name("-web1"));
        assert!(!is_context_name(""));
    }
}
