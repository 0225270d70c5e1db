//! The exit codes of `runner`, in one place (DESIGN.md, "Exit codes").

/// The run succeeded, or the plan is valid.
pub(crate) const SUCCESS: i32 = 0;
/// A step failed and every rollback hook succeeded.
pub(crate) const STEP_FAILED: i32 = 1;
/// The plan or the command line is invalid.
pub(crate) const INVALID: i32 = 2;
/// A rollback hook failed: the system needs a human.
pub(crate) const ROLLBACK_INCOMPLETE: i32 = 3;
/// The run could not start: docker unreachable, sudo needs a password, lock held.
pub(crate) const CANNOT_START: i32 = 4;
/// The run was interrupted (after rollback).
pub(crate) const INTERRUPTED: i32 = 130;
