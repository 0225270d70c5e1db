//! How an error that stops a command is shown: once, on stderr, with what
//! was tried and what to do.

use std::fmt::Write as _;

use crate::error::Error;
use crate::report::console::print_err;

/// Prints `error` once, on stderr; a closed stderr changes nothing.
pub(crate) fn print(error: &Error, color: bool) {
    match error {
        Error::Usage(e) => {
            let _ = e.print();
        }
        Error::Plan(diagnostics) => print_err(&diagnostics.render(color)),
        _ => {
            let mut text = format!("error: {error}\n");
            if let Error::Docker(docker) = error {
                for probe in &docker.tried {
                    let _ = writeln!(text, "  tried `{}`: {}", probe.command, probe.result);
                }
            }
            if let Error::Hosts(problems) = error {
                for problem in problems {
                    let _ = writeln!(text, "  {problem}");
                    for probe in &problem.tried {
                        let _ = writeln!(text, "    tried `{}`: {}", probe.command, probe.result);
                    }
                    if !problem.help.is_empty() {
                        let _ = writeln!(text, "    help: {}", problem.help);
                    }
                }
            }
            if let Error::Preflight(report) = error {
                text.push_str(&report.findings_text("  "));
            }
            if let Some(help) = error.help() {
                let _ = writeln!(text, "help: {help}");
            }
            print_err(&text);
        }
    }
}
