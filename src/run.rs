//! Turns a command line into an exit code: parse, dispatch to the command's
//! file (`src/commands/`), print an error once.

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands;
use crate::error::Error;
use crate::report;

/// Runs one command line; returns the exit code. Nothing it prints can fail it:
/// a closed stdout or stderr changes no exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let logs = report::logs::init();
    let code = match command(args) {
        Ok(code) => code,
        Err(e) => {
            report::failure::print(&e, report::console::stderr_color());
            e.code()
        }
    };
    if let Some(logs) = logs {
        logs.finish(report::console::STALL);
    }
    code
}

fn command(args: impl IntoIterator<Item = OsString>) -> Result<i32, Error> {
    let cli = Cli::try_parse_from(args).map_err(Error::Usage)?;
    match cli.command {
        Command::Apply {
            plan,
            plan_only,
            vars,
            jobs,
            output,
            report,
            lock_wait,
        } => commands::apply::run(
            &plan,
            &vars,
            plan_only,
            jobs,
            output,
            &crate::apply::Options {
                json: output == crate::cli::Output::Json,
                report,
                lock_wait: lock_wait.unwrap_or_default(),
            },
        ),
        Command::Rollback {
            plan,
            to,
            plan_only,
            vars,
            output,
            report,
            lock_wait,
        } => commands::rollback::run(
            &plan,
            &vars,
            to.as_deref(),
            plan_only,
            output,
            &crate::apply::Options {
                json: output == crate::cli::Output::Json,
                report,
                lock_wait: lock_wait.unwrap_or_default(),
            },
        ),
        Command::Prune {
            plan,
            plan_only,
            vars,
        } => commands::prune::run(&plan, &vars, plan_only),
        Command::Validate { plan, vars } => commands::validate::run(&plan, &vars),
        Command::Graph { plan, format } => commands::graph::run(&plan, format),
        Command::Maintenance {
            request,
            plan,
            vars,
        } => commands::maintenance::run(&plan, &vars, request),
        Command::Recover {
            plan,
            vars,
            output,
            report,
            lock_wait,
        } => commands::recover::run(
            &plan,
            &vars,
            &crate::apply::Options {
                json: output == crate::cli::Output::Json,
                report,
                lock_wait: lock_wait.unwrap_or_default(),
            },
        ),
        Command::Runs { plan, output } => commands::runs::runs(&plan, output),
        Command::Show { plan, run, format } => commands::runs::show(&plan, &run, format),
        Command::Completions { shell } => Ok(commands::manual::completions(shell)),
        Command::Man { command } => commands::manual::man(command.as_deref()),
        Command::Schema => Ok(commands::validate::schema()),
    }
}
