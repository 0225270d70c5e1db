//! Turns a command line into an exit code: parse, dispatch, print errors once.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use clap::Parser;

use crate::cli::{Cli, Command, GraphFormat, Output};
use crate::exit_code;
use crate::plan::{self, Diagnostics, Inputs, LoadError, Loaded};
use crate::report;

/// Colour on a terminal unless `NO_COLOR` is set.
fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn print_diagnostics(diagnostics: &Diagnostics) {
    if !diagnostics.items.is_empty() {
        eprint!("{}", diagnostics.render(stderr_color()));
    }
}

/// Loads a plan, printing its diagnostics; `Err` carries the exit code.
fn load(path: &Path, vars: &[(String, String)]) -> Result<Loaded, i32> {
    let env = |name: &str| std::env::var(name).ok();
    let inputs = Inputs { vars, env: &env };
    match plan::load(path, &inputs) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            Ok(loaded)
        }
        Err(LoadError::Invalid(diagnostics)) => {
            print_diagnostics(&diagnostics);
            Err(exit_code::INVALID)
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!("error: {e}");
            eprintln!("help: check the path; plans are TOML files such as plans/production.toml");
            Err(exit_code::INVALID)
        }
    }
}

fn print_stdout(text: &str) -> i32 {
    crate::exec::output::print_out(text);
    exit_code::SUCCESS
}

pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_code::INVALID
            } else {
                exit_code::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate { plan, vars } => match load(&plan, &vars) {
            Ok(_) => exit_code::SUCCESS,
            Err(code) => code,
        },
        Command::Graph { plan, format } => match load(&plan, &[]) {
            Ok(loaded) => print_stdout(&match format {
                GraphFormat::Dot => report::graph::dot(&loaded.plan),
                GraphFormat::Mermaid => report::graph::mermaid(&loaded.plan),
            }),
            Err(code) => code,
        },
        Command::Maintenance {
            request,
            plan,
            vars,
        } => match load(&plan, &vars) {
            Ok(loaded) => crate::exec::maintenance::run(&loaded.plan, request),
            Err(code) => code,
        },
        Command::Schema => {
            let schema = crate::schema::json_schema();
            print_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            ))
        }
        Command::Apply {
            plan,
            plan_only,
            vars,
            jobs,
            output,
            report,
        } => {
            let mut loaded = match load(&plan, &vars) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            if let Some(jobs) = jobs {
                loaded.plan.jobs = jobs;
            }
            if !plan_only {
                let options = crate::exec::Options {
                    json: output == Output::Json,
                    report,
                };
                return crate::exec::apply(&loaded.plan, &options);
            }
            let docker =
                crate::docker::discover(loaded.plan.sudo, std::env::var("DOCKER_CMD").ok());
            let preview = report::preview::build(&loaded.plan, docker);
            match output {
                Output::Text => print_stdout(&preview.to_text()),
                Output::Json => print_stdout(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&preview).unwrap_or_default()
                )),
            }
        }
    }
}
