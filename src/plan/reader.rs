//! Reads the spanned TOML tree into the plan model.
//!
//! serde stops at the first error; an operator fixing a plan wants all of them at
//! once. So the loader walks toml's spanned document itself: every section, step and
//! field is read on its own, each problem becomes a diagnostic, and reading goes on.

use std::borrow::Cow;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::action::Kind;
use super::diagnostic::{PlanDiagnostic, Span};
use super::model::PlanFile;

pub(super) type Value<'i> = Spanned<DeValue<'i>>;
pub(super) type Key<'i> = Spanned<Cow<'i, str>>;

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
pub(super) const ROOT_FIELDS: &[&str] = &[
    "plan",
    "vars",
    "docker",
    "defaults",
    "maintenance",
    "hosts",
    "rollout",
    "steps",
];
pub(super) const POLICY_FIELDS: &[&str] = &["timeout", "retries", "retry_delay", "backoff"];
pub(super) const CREATES_FIELDS: &[&str] = &["containers", "images", "programs", "ports"];
pub(super) const MAINTENANCE_FIELDS: &[&str] = &[
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

pub(super) struct Reader<'s> {
    pub(super) src: &'s str,
    pub(super) kinds: &'s [Kind],
    pub(super) diags: Vec<PlanDiagnostic>,
}

pub(super) fn type_name(value: &DeValue<'_>) -> &'static str {
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

pub(super) fn find<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Value<'i>> {
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

pub(super) fn list(names: &[&str]) -> String {
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
    pub(super) fn error(&mut self, diagnostic: PlanDiagnostic) {
        self.diags.push(diagnostic);
    }

    pub(super) fn wrong_type(
        &mut self,
        value: &Value<'_>,
        field: &str,
        expected: &str,
        example: &str,
    ) {
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

    pub(super) fn missing(&mut self, span: Span, what: &str, field: &str, hint: &str) {
        self.error(
            PlanDiagnostic::error("runner::missing-field", format!("{what} has no `{field}`"))
                .label(span, format!("`{field}` missing here"))
                .help(format!("add `{field} = {hint}`")),
        );
    }

    /// Reports every key of `table` not in `allowed`. `elsewhere` may explain a key
    /// that is valid somewhere else (another kind's field, a hook restriction).
    pub(super) fn check_keys(
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

    pub(super) fn table<'t, 'i>(
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

    pub(super) fn root(&mut self, root: &DeTable<'_>, span: Span) -> Option<PlanFile> {
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
}

#[cfg(test)]
mod tests {
    use crate::plan::read_section::is_context_name;

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
