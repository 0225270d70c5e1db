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
            run,
        } => {
            let output = run.output;
            commands::apply::run(&plan, &vars, plan_only, jobs, output, &run.options())
        }
        Command::Rollback {
            plan,
            to,
            plan_only,
            vars,
            run,
        } => {
            let output = run.output;
            commands::rollback::run(
                &plan,
                &vars,
                to.as_deref(),
                plan_only,
                output,
                &run.options(),
            )
        }
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
        Command::Recover { plan, vars, run } => {
            commands::recover::run(&plan, &vars, &run.options())
        }
        Command::Runs { plan, output } => commands::runs::runs(&plan, output),
        Command::Show { plan, run, format } => commands::runs::show(&plan, &run, format),
        Command::Completions { shell } => Ok(commands::manual::completions(shell)),
        Command::Man { command } => commands::manual::man(command.as_deref()),
        Command::Schema => Ok(commands::validate::schema()),
    }
}
