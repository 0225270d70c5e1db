//! The commands, one a file (as cargo's `src/bin/cargo/commands/`): what one
//! command line does, from its arguments to its exit code. Running a plan is
//! `crate::apply`'s; a command loads the plan ([`load`]) and says what to run.

pub(crate) mod apply;
pub(crate) mod graph;
mod load;
pub(crate) mod maintenance;
pub(crate) mod manual;
mod preview;
pub(crate) mod prune;
pub(crate) mod recover;
pub(crate) mod rollback;
pub(crate) mod runs;
pub(crate) mod validate;
