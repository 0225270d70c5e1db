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
    let inputs = Inputs { vars, env: &env };
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
            print_out(&format!("{}\n", validated(&loaded)));
            Ok(exit_code::SUCCESS)
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
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut crate::cli::command(), "runner", &mut out);
            print_out(&String::from_utf8_lossy(&out));
            Ok(exit_code::SUCCESS)
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Schema => {
            let schema = crate::schema::json_schema();
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            ));
            Ok(exit_code::SUCCESS)
        }
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
            let docker = crate::apply::docker_for(&loaded.plan);
            let masker = crate::apply::masker(&loaded.plan);
            let checked = crate::preflight::run(&loaded.plan, &docker, &masker);
            let locked = crate::lock::held(&crate::apply::lock_path(&loaded.plan));
            // A journal beside a held lock is of the run that holds it.
            let dead = locked.is_none().then(|| {
                crate::journal::unfinished(&loaded.plan.dir, &loaded.plan.real_path())
                    .first()
                    .map(|u| format!("{} (started {})", u.header.run_id, u.header.started_at))
            });
            let preview = report::preview::build(&loaded.plan, docker)
                .checked(checked)
                .locked(locked)
                .unfinished(dead.flatten());
            print_out(&match output {
                Output::Text => preview.to_text(),
                Output::Json => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&preview).unwrap_or_default()
                ),
            });
            // The code apply would exit with before its first step, so that a CI
            // job can gate on the preview.
            Ok(preview.exit_code)
        }
    }
}

/// The one line `validate` prints on success: what was checked.
fn validated(loaded: &Loaded) -> String {
    use crate::plan::diagnostic::plural;
    let plan = &loaded.plan;
    let hooks = plan.steps.iter().filter(|s| s.rollback.is_some()).count();
    let mut parts = vec![
        plural(plan.steps.len(), "step"),
        plural(hooks, "rollback hook"),
        plural(plan.vars.len(), "variable"),
    ];
    if !plan.hosts.is_empty() {
        parts.push(plural(plan.hosts.len(), "host"));
    }
    let warnings = loaded.warnings.items.len();
    format!(
        "{}: valid ({}; needs, order, templates, values and secrets checked{})",
        plan.path.display(),
        parts.join(", "),
        if warnings == 0 {
            String::new()
        } else {
            format!("; {} above", plural(warnings, "warning"))
        }
    )
}

/// `runner man [COMMAND]`: the manual page, in roff, on stdout.
fn man(command: Option<&str>) -> Result<i32, Error> {
    let mut root = crate::cli::command().disable_help_subcommand(true);
    root.build();
    let page = match command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name).cloned() else {
                let names: Vec<&str> = root
                    .get_subcommands()
                    .map(clap::Command::get_name)
                    .collect();
                return Err(Error::Usage(root.error(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "runner has no command `{name}`; one of: {}",
                        names.join(", ")
                    ),
                )));
            };
            sub
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Error::Start(format!("cannot render the manual page: {e}")))?;
    print_out(&String::from_utf8_lossy(&out));
    Ok(exit_code::SUCCESS)
}
