//! The command line (DESIGN.md, "Command line").

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Deploy dockerised apps from a declarative TOML plan"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a plan; with --plan-only, show what it would do and change nothing.
    Apply {
        /// The plan file.
        plan: PathBuf,
        /// Preview every step (commands, order, rollback hooks); execute nothing.
        #[arg(long)]
        plan_only: bool,
        /// Set or override a variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// How many steps may run at once (overrides `[plan] jobs`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        jobs: Option<u32>,
        /// Output format: text (a live view on a terminal), or json (one event per line).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Write the run's JSON record here (default: .`runner/runs/RUN_ID.json` beside the plan).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Check a plan: print its diagnostics, exit 0 if it is valid, 2 if not.
    Validate {
        plan: PathBuf,
        /// Set or override a variable (repeatable).
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
        request: crate::maintenance::Request,
        plan: PathBuf,
        /// Set or override a variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Print the JSON Schema of the plan format, for editor completion.
    Schema,
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
        #[arg(long, value_enum, default_value_t = crate::history::ShowFormat::Text)]
        format: crate::history::ShowFormat,
    },
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
