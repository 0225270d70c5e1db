//! The plan reader's typed values: strings, templates, numbers, durations,
//! choices, commands and environments, each problem a diagnostic.

use std::time::Duration;

use indexmap::IndexMap;
use toml::de::DeValue;

use super::diagnostic::{PlanDiagnostic, Span};
use super::model::{Command, Dur, Sp};
use super::reader::{Reader, Value, list, suggest};
use super::template::Template;

impl Reader<'_> {
    /// A plain string: one that is not a template. A `{{ name }}` in it is
    /// refused at its span, never kept as literal text: every string a plan
    /// holds either renders templates or says it does not.
    pub(super) fn string(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<String>> {
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
    pub(super) fn raw_string(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<String>> {
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

    pub(super) fn template(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Template>> {
        let s = self.raw_string(value, field)?;
        let origin = self.string_origin(&s.span, &s.value);
        Some(Sp::new(Template::parse(&s.value, origin, &s.span), s.span))
    }

    /// Where the first character of a string's content stands, when the TOML string
    /// maps character for character onto its source (no escapes).
    pub(super) fn string_origin(&self, span: &Span, value: &str) -> Option<usize> {
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

    pub(super) fn integer(
        &mut self,
        value: &Value<'_>,
        field: &str,
        range: (i64, i64),
    ) -> Option<Sp<i64>> {
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

    pub(super) fn u32(
        &mut self,
        value: &Value<'_>,
        field: &str,
        range: (i64, i64),
    ) -> Option<Sp<u32>> {
        let n = self.integer(value, field, range)?;
        u32::try_from(n.value).ok().map(|v| Sp::new(v, n.span))
    }

    pub(super) fn boolean(&mut self, value: &Value<'_>, field: &str) -> Option<bool> {
        if let DeValue::Boolean(b) = value.get_ref() {
            Some(*b)
        } else {
            self.wrong_type(value, field, "a boolean", &format!("`{field} = true`"));
            None
        }
    }

    pub(super) fn backoff(&mut self, value: &Value<'_>) -> Option<Sp<f64>> {
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

    pub(super) fn duration(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Dur>> {
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

    pub(super) fn choice<T: Copy>(
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

    pub(super) fn strings(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<Sp<String>>> {
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

    pub(super) fn command(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Command>> {
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

    pub(super) fn env(&mut self, value: &Value<'_>) -> IndexMap<String, Sp<Template>> {
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

    /// A regular expression that may use templates: their values are matched
    /// as plain text (escaped), so only the plan's own text is the pattern.
    pub(super) fn regex(&mut self, value: &Value<'_>, field: &str) -> Option<Sp<Template>> {
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
