//! What a kind reads its own fields through ([`Fields`]): each getter reports
//! what is wrong with its field and reading goes on.

use toml::de::{DeTable, DeValue};

use super::diagnostic::{PlanDiagnostic, Span};
use super::model::{Command, Dur, Sp};
use super::reader::{Reader, Value, find};
use super::template::Template;

/// A step's table, as its kind reads its own fields: each getter reports what is
/// wrong with its field (missing, mistyped, out of range) and reading goes on.
pub(crate) struct Fields<'r, 's, 't, 'i> {
    pub(super) reader: &'r mut Reader<'s>,
    pub(super) table: &'t DeTable<'i>,
    /// The step (or hook) table, for a missing field.
    pub(super) at: Span,
    /// "the `shell` step `build`", for messages.
    pub(super) what: &'t str,
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
