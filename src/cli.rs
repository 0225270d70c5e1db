//! The command line (DESIGN.md, "Command line").

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Deploy dockerised apps from a declarative TOML plan",
    after_long_help = EXIT_CODES
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How a command that runs the plan shows itself, where its record goes,
/// and how long it waits for a held lock: `apply`, `rollback`, `recover`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Output format: text (a live view on a terminal), or json (one event per line).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Write the run's JSON record here (default: .`runner/runs/RUN_ID.json` beside the plan).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Wait up to this long (`90s`, `5m`) for a run that holds the plan's
    /// lock or a host's to end, instead of exiting 4 at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub(crate) lock_wait: Option<std::time::Duration>,
}

impl RunArgs {
    pub(crate) fn options(self) -> crate::apply::Options {
        crate::apply::Options {
            json: self.output == Output::Json,
            report: self.report,
            lock_wait: self.lock_wait.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a plan; with --plan-only, show what it would do and change nothing.
    Apply {
        /// The plan file.
        plan: PathBuf,
        /// Preview every step (commands, order, rollback hooks); execute nothing.
        /// Exits 4 when apply would stop before its first step, else 0.
        #[arg(long)]
        plan_only: bool,
        /// Set a variable declared in the plan's `[vars]` (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// How many steps may run at once (overrides `[plan] jobs`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        jobs: Option<u32>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Undo what a run of the plan did before runner died (`kill -9`, the OOM
    /// killer, a reboot), from its journal: the rollback it owed, as the run
    /// would have run it. Exits 0 when the app is back whole (or the run had
    /// finished), 3 when a hook failed.
    Recover {
        /// The plan file of the run that died.
        plan: PathBuf,
        /// Set a variable (repeatable): the run's own values come from its
        /// journal; its secrets, never written, come from here or the
        /// environment, as for apply.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Deploy again what an earlier successful run deployed (its values and
    /// images), through the plan: by default the release before the running
    /// one. `{{ run.kind }}` is `rollback` in such a run.
    Rollback {
        plan: PathBuf,
        /// The run to go back to: its id, or the start of it (`runner runs`
        /// marks those one can go back to).
        #[arg(long, value_name = "RUN")]
        to: Option<String>,
        /// Preview the rollback; change nothing.
        #[arg(long)]
        plan_only: bool,
        /// Set a variable (repeatable): the run's own values come from its
        /// record; its secrets, never written, come from here or the
        /// environment.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Remove the images of releases older than the plan's `keep` (default
    /// 3), as a successful run does; never one a container uses.
    Prune {
        plan: PathBuf,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        plan_only: bool,
        /// Set a variable declared in the plan's `[vars]` (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Check a plan: print its diagnostics, exit 0 if it is valid, 2 if not.
    Validate {
        plan: PathBuf,
        /// Set a variable declared in the plan's `[vars]` (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Print the step graph.
    Graph {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Turn the plan's maintenance mode on or off (confirmed by its `status`), or print it.
    Maintenance {
        #[arg(value_enum)]
        request: Request,
        plan: PathBuf,
        /// Set a variable declared in the plan's `[vars]` (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Print the JSON Schema of the plan format, for editor completion.
    Schema,
    /// Print a shell completion script: `runner completions bash > /etc/bash_completion.d/runner`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of runner, or of one of its commands:
    /// `runner man > ~/.local/share/man/man1/runner.1`.
    Man {
        /// A command (`apply`, `validate`…); without it, runner's own page.
        command: Option<String>,
    },
    /// List the plan's past runs: id, start, who, status, duration.
    Runs {
        plan: PathBuf,
        /// text (a table) or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show one past run: its summary, then a timeline of its steps and hooks
    /// with the maintenance window marked.
    Show {
        plan: PathBuf,
        /// A run id, the start of one, or `last`.
        #[arg(default_value = "last")]
        run: String,
        /// text, svg (the timeline as a picture, on stdout) or json (the record).
        #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
        format: ShowFormat,
    },
}

/// The exit codes, at the end of `runner --help` and of the manual page.
const EXIT_CODES: &str = "\
Exit codes:
  0    success (or: the plan is valid; or: --plan-only found nothing that stops apply)
  1    a step failed and every rollback hook succeeded (or some hosts failed within max_fail)
  2    invalid plan or usage (an unknown --var included)
  3    rollback incomplete: a hook failed, the system needs a human
  4    could not start: docker unreachable, sudo needs a password, the lock held, a host
       unusable, the preflight found a problem, a run of the plan died and was not
       recovered (`runner recover PLAN`) (--plan-only exits 4 for the same)
  130  interrupted (after rollback)";

/// The command line as clap sees it: for completions and manual pages.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
}

fn parse_wait(arg: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(arg)
        .map_err(|e| format!("`{arg}` is not a duration such as 90s or 5m: {e}"))
}

fn parse_var(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not KEY=VALUE"))?;
    if !crate::plan::reader::is_plain_name(key) {
        return Err(format!(
            "`{key}` is not a variable name (letters, digits, `-`, `_`)"
        ));
    }
    if crate::plan::reader::RESERVED_NAMES.contains(&key) {
        return Err(format!("`{key}` is a built-in template name"));
    }
    if value.contains('\0') {
        return Err("a value cannot hold a NUL byte".into());
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// How `runner show` prints a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ShowFormat {
    /// The summary, then the timeline.
    Text,
    /// The timeline as an SVG picture, on stdout.
    Svg,
    /// The record itself.
    Json,
}

/// What `runner maintenance` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Request {
    On,
    Off,
    Status,
}
