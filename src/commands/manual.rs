//! `runner completions` and `runner man`: generated from the parser's own
//! definitions.

use crate::error::{Error, exit_code};
use crate::report::console::print_out;

/// Prints a completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> i32 {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), "runner", &mut out);
    print_out(&String::from_utf8_lossy(&out));
    exit_code::SUCCESS
}

/// `runner man [COMMAND]`: the manual page, in roff, on stdout.
pub(crate) fn man(command: Option<&str>) -> Result<i32, Error> {
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
