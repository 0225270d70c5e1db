//! The commands that are a file each: what one command line does, once the
//! plan is loaded. `runner apply`, `recover`, `runs`/`show` and `maintenance`
//! are still the top-level files of src/ (apply.rs, recover.rs, history.rs,
//! maintenance.rs).

pub(crate) mod manual;
pub(crate) mod preview;
pub(crate) mod validate;
