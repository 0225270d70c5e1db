//! The plan reader's steps and hooks: the fields every step has, and the
//! kind's own, handed to the kind its `kind` names.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::action::{Action, Kind};
use super::diagnostic::{PlanDiagnostic, Span};
use super::fields::Fields;
use super::model::{ContainerDef, Creates, HookDef, MadeContainer, On, PortDef, Sp, StepDef, When};
use super::reader::{
    CREATES_FIELDS, HOOK_FIELDS, Key, Reader, STEP_FIELDS, Value, find, list, suggest,
};

impl Reader<'_> {
    /// Reads `kind` and checks it; the caller reads the rest.
    pub(super) fn kind(
        &mut self,
        table: &DeTable<'_>,
        key: &Key<'_>,
        what: &str,
    ) -> Option<Sp<String>> {
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

    pub(super) fn step(&mut self, key: &Key<'_>, value: &Value<'_>) -> Option<StepDef> {
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
    pub(super) fn condition(
        &mut self,
        value: &Value<'_>,
    ) -> Option<Sp<super::condition::Condition>> {
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

    pub(super) fn creates(&mut self, value: &Value<'_>) -> Creates {
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
    pub(super) fn created_container(&mut self, item: &Value<'_>) -> Option<ContainerDef> {
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

    pub(super) fn hook(&mut self, id: &str, value: &Value<'_>) -> Option<HookDef> {
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

    pub(super) fn action(
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
