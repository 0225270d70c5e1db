//! Step kinds. Each kind lives in one file: its fields (its own type), how they
//! are read from the plan, what the plan's checks ask of them
//! ([`Body`](crate::plan::action::Body)), its preview, what it needs from the
//! machine, and one attempt of its work. The engine schedules; kinds never do.
//! The plan knows no kind: it is given [`KINDS`] and asks each action only
//! through `Body`.
//!
//! Adding a kind is one new file and one line in [`KINDS`].

pub(crate) mod docker_exec;
pub(crate) mod http_probe;
pub(crate) mod image_ship;
pub(crate) mod maintenance_toggle;
pub(crate) mod release;
pub(crate) mod shell;

// What every kind is made with.
pub(crate) mod kind;
mod need;
pub(crate) mod scope;

use crate::plan::action::Kind;
pub(crate) use kind::{AsKind, Operation, StepKind, action, join};
pub(crate) use need::{Known, Need};
pub(crate) use scope::{Launch, Scope};

/// The registry: the only list of kinds, given to the plan loader.
pub const KINDS: &[Kind] = &[
    shell::ENTRY,
    docker_exec::ENTRY,
    http_probe::ENTRY,
    maintenance_toggle::ENTRY,
    image_ship::ENTRY,
    release::ENTRY,
];
