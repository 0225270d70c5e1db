//! What a step does, as the plan knows it: a kind's value, opaque to the plan.
//!
//! The plan reads the fields every step has and hands the rest to the kind its
//! `kind = "…"` names, from the registry it is given ([`Kind`]); the kind reads
//! its own fields into its own type and returns it as an [`Action`]. The plan
//! then asks the action only what its checks need ([`Body`]): its templates,
//! the values that stand on a command line, whether it talks to docker. What a
//! kind previews and runs is the kinds' business (`src/kinds/`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use schemars::{Schema, SchemaGenerator};

use super::fields::Fields;
use super::model::Sp;
use super::rule::Field;
use super::template::Template;
use crate::engine::HookRole;

/// A kind as the plan reader knows it: one entry of the registry the loader is
/// given.
pub struct Kind {
    /// Its `kind = "…"`.
    pub(crate) name: &'static str,
    /// One line for the schema: what a step of this kind does.
    pub(crate) about: &'static str,
    /// The fields it takes besides those of every step.
    pub(crate) fields: &'static [&'static str],
    /// Reads those fields; every problem is reported, `None` if one was fatal.
    pub(crate) read: fn(&mut Fields<'_, '_, '_, '_>) -> Option<Action>,
    /// The JSON Schema of its fields (see [`schema_of`]).
    pub(crate) schema: fn(&mut SchemaGenerator) -> Schema,
}

/// The schema of a kind's fields, as a reference into the plan's definitions.
pub fn schema_of<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What the plan's checks ask of a step's action.
pub(crate) trait Body: Any + Send + Sync + fmt::Debug {
    /// `shell`, `docker-exec`, …
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

    /// Whether its kind can keep its stdout (`capture = true`).
    fn can_capture(&self) -> bool {
        false
    }

    /// What it does to the system's users as a rollback hook.
    fn hook_role(&self) -> HookRole {
        HookRole::Undo
    }

    /// The hook that undoes it when the plan names none (a release undoes
    /// itself, also when it failed partway).
    fn undo(&self) -> Option<Action> {
        None
    }
}

/// A step's or hook's action: the kind's value, seen by the plan through
/// [`Body`], and by the kinds through what they stored beside it.
#[derive(Clone)]
pub(crate) struct Action {
    body: Arc<dyn Body>,
    /// What the kinds keep to run it (their own view of the same value).
    runs: Arc<dyn Any + Send + Sync>,
}

impl Action {
    /// An action from the kind's value and what the kinds keep to run it.
    pub(crate) fn new(body: Arc<dyn Body>, runs: Arc<dyn Any + Send + Sync>) -> Self {
        Self { body, runs }
    }

    /// What the kinds stored beside the value.
    pub(crate) fn runs(&self) -> &(dyn Any + Send + Sync) {
        self.runs.as_ref()
    }
}

impl std::ops::Deref for Action {
    type Target = dyn Body;

    fn deref(&self) -> &Self::Target {
        self.body.as_ref()
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.body.fmt(f)
    }
}

/// An action adds nothing to its step's schema by itself: `runner schema`
/// adds one variant per kind of the registry (see `src/schema.rs`).
impl schemars::JsonSchema for Action {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Action".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({ "type": "object" })
    }
}
