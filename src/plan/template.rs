//! `{{ name }}` templates in plan strings.
//!
//! A template is parsed once, when the plan is loaded, into literal text and
//! references. A value goes into an argv element or a plain value as it is
//! ([`Template::render`]); into a string that `sh -c` reads, never: there the
//! reference becomes the expansion of an environment variable that carries the
//! value ([`Template::script`], see `shell.rs`), so no value can become a command.
//! Text such as docker's Go templates (`{{.State.Status}}`, `{{json .}}`) is not a
//! reference and passes through untouched.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::diagnostic::Span;
pub use super::shell::Insert;
use super::shell::{self, Place, Tok};

/// What a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A `[vars]` entry or a `--var`.
    Var(String),
    /// `{{ run.id }}`: the id of the run.
    RunId,
    /// `{{ run.kind }}`: `deploy`, or `rollback` for `runner rollback`.
    RunKind,
    /// `{{ plan.dir }}`: the absolute folder of the plan file.
    PlanDir,
    /// `{{ docker }}`: the docker command, e.g. `docker` or `sudo -n docker`.
    Docker,
    /// `{{ compose }}`: the compose command, `docker compose` or `docker-compose`,
    /// through sudo when docker needs it.
    Compose,
    /// `{{ steps.ID.output }}`: the captured, trimmed stdout of an earlier step.
    StepOutput(String),
    /// `{{ host.name }}`: the host a per-host step's instance runs for.
    HostName,
}

impl Name {
    fn parse(text: &str) -> Self {
        match text {
            "run.id" => Name::RunId,
            "run.kind" => Name::RunKind,
            "plan.dir" => Name::PlanDir,
            "docker" => Name::Docker,
            "compose" => Name::Compose,
            "host.name" => Name::HostName,
            _ => match text
                .strip_prefix("steps.")
                .and_then(|rest| rest.strip_suffix(".output"))
            {
                Some(id) if !id.is_empty() => Name::StepOutput(id.to_owned()),
                _ => Name::Var(text.to_owned()),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Ref {
        name: Name,
        /// The name as written, e.g. `steps.rev.output`.
        text: String,
        /// Where the whole `{{ … }}` stands in the plan.
        span: Span,
    },
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub raw: String,
    pub parts: Vec<Part>,
}

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        "Template".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Text that may use {{ var }}, {{ run.id }}, {{ run.kind }}, {{ plan.dir }}, {{ docker }}, {{ compose }}, {{ steps.ID.output }} and, in a per-host step, {{ host.name }}."
        })
    }
}

/// A value a reference resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// A command of several words (`{{ docker }}`, `{{ compose }}`): each word is quoted on its own.
    Words(Vec<String>),
}

impl Template {
    /// Parses `raw`. `origin` is the byte offset of `raw`'s first character in the
    /// plan when the TOML string maps one-to-one onto its source (no escapes); else
    /// references point at `whole`, the span of the entire value.
    pub fn parse(raw: &str, origin: Option<usize>, whole: &Span) -> Self {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                break;
            };
            let inner = &rest[open + 2..open + 2 + close];
            let name = inner.trim();
            let end = open + 2 + close + 2;
            if is_reference(name) {
                text.push_str(&rest[..open]);
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                let span =
                    origin.map_or_else(|| whole.clone(), |o| o + offset + open..o + offset + end);
                parts.push(Part::Ref {
                    name: Name::parse(name),
                    text: name.to_owned(),
                    span,
                });
            } else {
                text.push_str(&rest[..end]);
            }
            rest = &rest[end..];
            offset += end;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Self {
            raw: raw.to_owned(),
            parts,
        }
    }

    pub fn refs(&self) -> impl Iterator<Item = (&Name, &str, &Span)> {
        self.parts.iter().filter_map(|part| match part {
            Part::Ref { name, text, span } => Some((name, text.as_str(), span)),
            Part::Text(_) => None,
        })
    }

    /// The template is exactly one reference, e.g. `"{{ docker }}"`.
    pub fn as_single_ref(&self) -> Option<&Name> {
        match self.parts.as_slice() {
            [Part::Ref { name, .. }] => Some(name),
            _ => None,
        }
    }

    /// Renders with values from `lookup`, each inserted as it is: for an argv
    /// element or a plain value. References were checked when the plan was
    /// loaded, so a name `lookup` does not know is a bug; it is kept as written.
    pub fn render(&self, lookup: &dyn Fn(&Name) -> Option<Value>) -> String {
        let mut out = String::with_capacity(self.raw.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Ref { name, text, .. } => match lookup(name) {
                    Some(Value::Text(value)) => out.push_str(&value),
                    Some(Value::Words(words)) => out.push_str(&words.join(" ")),
                    None => {
                        out.push_str("{{ ");
                        out.push_str(text);
                        out.push_str(" }}");
                    }
                },
            }
        }
        out
    }

    /// The text a shell reads, its references replaced by what `insert` says:
    /// the expansion of an environment variable (in the form the reference's place
    /// needs), or runner's own words. No value is ever part of it.
    pub fn script<'a>(&self, insert: &dyn Fn(&Name) -> Insert<'a>) -> String {
        let (toks, names) = self.toks();
        shell::write(&toks, &shell::lex(&toks), &|n| insert(names[n]))
    }

    /// Why a path built from this template with `value`s climbs out of where the
    /// plan's text puts it: a `..` made with a value, or a control character.
    /// A value that starts the path may make it absolute: the plan's text then
    /// leaves the folder to it.
    pub fn path_climbs(&self, value: &dyn Fn(&Name) -> Option<String>) -> Option<String> {
        // Each character of the path, and whether a value put it there.
        let mut path: Vec<(char, bool)> = Vec::with_capacity(self.raw.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => path.extend(text.chars().map(|c| (c, false))),
                Part::Ref { name, .. } => {
                    let text = value(name).unwrap_or_default();
                    path.extend(text.chars().map(|c| (c, true)));
                }
            }
        }
        if path.iter().any(|(c, _)| c.is_control()) {
            return Some("it holds control characters".to_owned());
        }
        path.split(|(c, _)| *c == '/')
            .any(|part| {
                part.len() == 2
                    && part.iter().all(|(c, _)| *c == '.')
                    && part.iter().any(|(_, from_value)| *from_value)
            })
            .then(|| "a value makes it climb out of its folder with `..`".to_owned())
    }

    /// Where each reference stands in the text a shell reads, in order.
    pub(crate) fn places(&self) -> Vec<Place> {
        shell::lex(&self.toks().0).places
    }

    fn toks(&self) -> (Vec<Tok>, Vec<&Name>) {
        let mut toks = Vec::with_capacity(self.raw.len());
        let mut names = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => toks.extend(text.chars().map(Tok::Char)),
                Part::Ref { name, .. } => {
                    toks.push(Tok::Ref(names.len()));
                    names.push(name);
                }
            }
        }
        (toks, names)
    }
}

fn is_reference(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Quotes one word for `sh`. Plan values cannot hold NUL (the loader rejects it), the
/// only thing shlex refuses; should one slip through, it is dropped, never unquoted.
pub fn shell_quote(word: &str) -> Cow<'_, str> {
    match shlex::try_quote(word) {
        Ok(quoted) => quoted,
        Err(_) => Cow::Owned(
            shlex::try_quote(&word.replace('\0', ""))
                .map_or_else(|_| "''".to_owned(), Cow::into_owned),
        ),
    }
}

/// Joins words into one shell command line, each quoted.
pub fn shell_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &Name) -> Option<Value> {
        match name {
            Name::Var(v) if v == "app" => Some(Value::Text("x; rm -rf /".into())),
            Name::Docker => Some(Value::Words(vec![
                "sudo".into(),
                "-n".into(),
                "docker".into(),
            ])),
            _ => None,
        }
    }

    #[test]
    fn parses_references_and_keeps_go_templates() {
        let t = Template::parse(
            "a {{ app }} {{.State.Status}} {{json .}} {{docker}}",
            Some(10),
            &(0..1),
        );
        let refs: Vec<_> = t.refs().map(|(n, _, s)| (n.clone(), s.clone())).collect();
        assert_eq!(
            refs,
            vec![(Name::Var("app".into()), 12..21), (Name::Docker, 51..61)]
        );
        assert_eq!(
            t.render(&lookup),
            "a x; rm -rf / {{.State.Status}} {{json .}} sudo -n docker"
        );
    }

    #[test]
    fn a_script_refers_to_values_and_holds_none() {
        let words = vec!["sudo".to_owned(), "-n".to_owned(), "docker".to_owned()];
        let insert = |name: &Name| match name {
            Name::Docker => Insert::Words(&words),
            _ => Insert::Env("RUNNER_VAR_app"),
        };
        let t = Template::parse(
            "echo {{ app }} 'deploy {{ app }}' \"{{ app }}\" && {{ docker }} ps",
            None,
            &(0..1),
        );
        assert_eq!(
            t.script(&insert),
            "echo \"${RUNNER_VAR_app}\" 'deploy '\"${RUNNER_VAR_app}\"'' \"${RUNNER_VAR_app}\" && sudo -n docker ps"
        );
    }

    #[test]
    fn builtin_names() {
        assert_eq!(
            Name::parse("steps.rev.output"),
            Name::StepOutput("rev".into())
        );
        assert_eq!(
            Name::parse("steps..output"),
            Name::Var("steps..output".into())
        );
        assert_eq!(Name::parse("run.id"), Name::RunId);
        assert_eq!(
            Name::parse("steps.output"),
            Name::Var("steps.output".into())
        );
    }
}
