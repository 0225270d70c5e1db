//! Turns a command line into an exit code: parse, dispatch, print an error once.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use clap::Parser;

use crate::cli::{Cli, Command, GraphFormat, Output};
use crate::error::Error;
use crate::error::exit_code;
use crate::plan::{self, Inputs, LoadError, Loaded};
use crate::report;
use crate::report::console::{STALL, print_err, print_out};

/// Runs one command line; returns the exit code. Nothing it prints can fail it:
/// a closed stdout or stderr changes no exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let logs = report::logs::init();
    let code = match command(args) {
        Ok(code) => code,
        Err(e) => {
            crate::report::failure::print(&e, stderr_color());
            e.code()
        }
    };
    if let Some(logs) = logs {
        logs.finish(STALL);
    }
    code
}

/// Colour on a terminal unless `NO_COLOR` is set.
fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && crate::apply::color_allowed()
}

/// Loads a plan, printing its warnings.
fn load(path: &Path, vars: &[(String, String)]) -> Result<Loaded, Error> {
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
                print_err(&loaded.warnings.render(stderr_color()));
            }
            Ok(loaded)
        }
        Err(LoadError::Invalid(diagnostics)) => Err(Error::Plan(diagnostics)),
        Err(LoadError::Io { path, source }) => Err(Error::PlanRead { path, source }),
    }
}

fn command(args: impl IntoIterator<Item = OsString>) -> Result<i32, Error> {
    let cli = Cli::try_parse_from(args).map_err(Error::Usage)?;
    match cli.command {
        Command::Validate { plan, vars } => {
            let loaded = load(&plan, &vars)?;
            Ok(crate::commands::validate::run(&loaded))
        }
        Command::Graph { plan, format } => {
            let loaded = load(&plan, &[])?;
            print_out(&match format {
                GraphFormat::Dot => report::graph::dot(&loaded.plan),
                GraphFormat::Mermaid => report::graph::mermaid(&loaded.plan),
            });
            Ok(exit_code::SUCCESS)
        }
        Command::Maintenance {
            request,
            plan,
            vars,
        } => {
            let loaded = load(&plan, &vars)?;
            loaded.plan.runnable().map_err(Error::Plan)?;
            crate::maintenance::run(&loaded.plan, request)
        }
        Command::Recover {
            plan,
            vars,
            output,
            report,
        } => {
            let options = crate::apply::Options {
                json: output == Output::Json,
                report,
            };
            crate::recover::recover(&plan, &vars, &options)
        }
        Command::Runs { plan, output } => crate::history::runs(&plan, output == Output::Json),
        Command::Show { plan, run, format } => crate::history::show(&plan, &run, format),
        Command::Completions { shell } => Ok(crate::commands::manual::completions(shell)),
        Command::Man { command } => crate::commands::manual::man(command.as_deref()),
        Command::Schema => Ok(crate::commands::validate::schema()),
        Command::Apply {
            plan,
            plan_only,
            vars,
            jobs,
            output,
            report,
        } => {
            let mut loaded = load(&plan, &vars)?;
            if let Some(jobs) = jobs {
                loaded.plan.jobs = jobs;
            }
            if !plan_only {
                let options = crate::apply::Options {
                    json: output == Output::Json,
                    report,
                };
                return crate::apply::apply(&loaded.plan, &options);
            }
            Ok(crate::commands::preview::run(&loaded.plan, output))
        }
    }
}
