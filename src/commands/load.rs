//! Loading the plan a command names: its warnings printed once, its problems
//! as the command's error.

use std::path::Path;

use crate::error::Error;
use crate::plan::{self, Inputs, LoadError, Loaded};
use crate::report::console::print_err;

/// Loads a plan, printing its warnings.
pub(crate) fn load(path: &Path, vars: &[(String, String)]) -> Result<Loaded, Error> {
    load_with(path, vars, true)
}

/// Loads a plan, printing its warnings if `warn`.
pub(crate) fn load_with(
    path: &Path,
    vars: &[(String, String)],
    warn: bool,
) -> Result<Loaded, Error> {
    let env = |name: &str| std::env::var(name).ok();
    let inputs = Inputs {
        vars,
        env: &env,
        kinds: crate::kinds::KINDS,
    };
    match plan::load(path, &inputs) {
        Ok(loaded) => {
            if warn && !loaded.warnings.items.is_empty() {
                print_err(
                    &loaded
                        .warnings
                        .render(crate::report::console::stderr_color()),
                );
            }
            Ok(loaded)
        }
        Err(LoadError::Invalid(diagnostics)) => Err(Error::Plan(diagnostics)),
        Err(LoadError::Io { path, source }) => Err(Error::PlanRead { path, source }),
    }
}
