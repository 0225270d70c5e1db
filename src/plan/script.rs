//! The programs a shell script runs by name, read with a real shell parser
//! (`brush-parser`, in `sh` mode): what the preflight looks for before the run.
//!
//! Only names that are plain in the text count: a command word that comes from
//! an expansion (`"${RUNNER_VAR_app}"`, `$DOCKER_CMD`) is decided when the script
//! runs. Builtins, functions the script defines, and words after `for … in` or
//! in `case` patterns are not programs. Command substitutions (`$( )`, backticks)
//! and subshells are read too: `rev=$(git rev-parse HEAD)` runs `git`.

use brush_parser::ast::{
    AndOr, AssignmentValue, Command, CommandPrefixOrSuffixItem as Item, CompoundCommand,
    CompoundList, Pipeline, SimpleCommand, Word,
};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

/// Commands of the shell itself (POSIX and the common extensions): never
/// looked for on PATH.
const BUILTINS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "builtin", "cd", "command", "continue", "declare",
    "echo", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs",
    "kill", "let", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift",
    "source", "test", "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias",
    "unset", "wait",
];

/// Builtins whose first operand is the program they run.
const RUNS_ITS_OPERAND: &[&str] = &["exec", "command", "builtin"];

/// Why a script's programs were not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unread {
    /// The parser cannot read it (the shell will say what is wrong when it runs).
    Syntax,
    /// Its blocks nest about this deep, past [`MAX_NESTING`]: the parser
    /// recurses, and is not asked.
    TooDeep(usize),
}

/// How deep blocks may nest in a script the preflight reads.
pub(crate) const MAX_NESTING: usize = 100;

/// The stack of the thread that parses: room for [`MAX_NESTING`] levels and
/// more (only the pages the parser touches are used).
const PARSER_STACK: usize = 64 * 1024 * 1024;

/// The programs `script` runs by name, in order of first use.
pub(crate) fn programs(script: &str) -> Result<Vec<String>, Unread> {
    let depth = nesting(script);
    if depth > MAX_NESTING {
        return Err(Unread::TooDeep(depth));
    }
    let walked = if depth <= SHALLOW {
        walk(script)
    } else {
        // Deep enough that the caller's stack might not do: a thread of its own.
        let script = script.to_owned();
        std::thread::Builder::new()
            .name("runner-script".to_owned())
            .stack_size(PARSER_STACK)
            .spawn(move || walk(&script))
            .ok()
            .and_then(|thread| thread.join().ok())
            .flatten()
    };
    walked.ok_or(Unread::Syntax)
}

/// Nesting any thread's stack parses (a spawned thread has 2 MiB).
const SHALLOW: usize = 12;

fn walk(script: &str) -> Option<Vec<String>> {
    let mut walk = Walk::default();
    walk.script(script, 0)?;
    let Walk {
        mut found,
        functions,
    } = walk;
    found.retain(|name| !functions.contains(name));
    Some(found)
}

/// How deep a script's blocks nest, at most: every `(`, `{`, `$(` and
/// `if`/`case`/`while`/`until`/`for` opens a level, every `)`, `}`, `fi`,
/// `esac` and `done` closes one. Quotes and comments are not told apart, so
/// it may count more than the shell would: never less.
fn nesting(script: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut word = String::new();
    let close_word = |word: &mut String, depth: &mut usize, deepest: &mut usize| {
        match word.as_str() {
            "if" | "case" | "while" | "until" | "for" => {
                *depth += 1;
                *deepest = (*deepest).max(*depth);
            }
            "fi" | "esac" | "done" => *depth = depth.saturating_sub(1),
            _ => {}
        }
        word.clear();
    };
    for c in script.chars() {
        match c {
            '(' | '{' => {
                close_word(&mut word, &mut depth, &mut deepest);
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | '}' => {
                close_word(&mut word, &mut depth, &mut deepest);
                depth = depth.saturating_sub(1);
            }
            c if c.is_whitespace() || ";&|<>`".contains(c) => {
                close_word(&mut word, &mut depth, &mut deepest);
            }
            c => word.push(c),
        }
    }
    close_word(&mut word, &mut depth, &mut deepest);
    deepest
}

/// How deep command substitutions may nest before the walk stops reading.
const MAX_DEPTH: usize = 16;

fn options() -> ParserOptions {
    ParserOptions {
        sh_mode: true,
        posix_mode: true,
        enable_extended_globbing: false,
        ..ParserOptions::default()
    }
}

#[derive(Default)]
struct Walk {
    found: Vec<String>,
    functions: Vec<String>,
}

impl Walk {
    fn script(&mut self, script: &str, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return Some(());
        }
        let options = options();
        let mut parser = Parser::new(std::io::BufReader::new(script.as_bytes()), &options);
        let program = parser.parse_program().ok()?;
        for list in &program.complete_commands {
            self.list(list, depth);
        }
        Some(())
    }

    fn list(&mut self, list: &CompoundList, depth: usize) {
        for item in &list.0 {
            let and_or = &item.0;
            self.pipeline(&and_or.first, depth);
            for next in &and_or.additional {
                match next {
                    AndOr::And(p) | AndOr::Or(p) => self.pipeline(p, depth),
                }
            }
        }
    }

    fn pipeline(&mut self, pipeline: &Pipeline, depth: usize) {
        for command in &pipeline.seq {
            self.command(command, depth);
        }
    }

    fn command(&mut self, command: &Command, depth: usize) {
        match command {
            Command::Simple(simple) => self.simple(simple, depth),
            Command::Compound(compound, _) => self.compound(compound, depth),
            Command::Function(function) => {
                self.functions.push(function.fname.value.clone());
                self.compound(&function.body.0, depth);
            }
            Command::ExtendedTest(..) => {}
        }
    }

    fn compound(&mut self, compound: &CompoundCommand, depth: usize) {
        match compound {
            CompoundCommand::BraceGroup(group) => self.list(&group.list, depth),
            CompoundCommand::Subshell(subshell) => self.list(&subshell.list, depth),
            CompoundCommand::ForClause(clause) => {
                for value in clause.values.iter().flatten() {
                    self.substitutions(value, depth);
                }
                self.list(&clause.body.list, depth);
            }
            CompoundCommand::ArithmeticForClause(clause) => self.list(&clause.body.list, depth),
            CompoundCommand::CaseClause(clause) => {
                self.substitutions(&clause.value, depth);
                for case in &clause.cases {
                    if let Some(list) = &case.cmd {
                        self.list(list, depth);
                    }
                }
            }
            CompoundCommand::IfClause(clause) => {
                self.list(&clause.condition, depth);
                self.list(&clause.then, depth);
                for branch in clause.elses.iter().flatten() {
                    if let Some(condition) = &branch.condition {
                        self.list(condition, depth);
                    }
                    self.list(&branch.body, depth);
                }
            }
            CompoundCommand::WhileClause(clause) | CompoundCommand::UntilClause(clause) => {
                self.list(&clause.0, depth);
                self.list(&clause.1.list, depth);
            }
            CompoundCommand::Coprocess(coprocess) => self.command(&coprocess.body, depth),
            CompoundCommand::Arithmetic(_) => {}
        }
    }

    fn simple(&mut self, simple: &SimpleCommand, depth: usize) {
        let items = simple
            .prefix
            .iter()
            .flat_map(|p| &p.0)
            .chain(simple.suffix.iter().flat_map(|s| &s.0));
        for item in items {
            match item {
                Item::Word(word) => self.substitutions(word, depth),
                Item::AssignmentWord(assignment, word) => {
                    self.substitutions(word, depth);
                    if let AssignmentValue::Scalar(value) = &assignment.value {
                        self.substitutions(value, depth);
                    }
                }
                Item::ProcessSubstitution(_, subshell) => self.list(&subshell.list, depth),
                Item::IoRedirect(_) => {}
            }
        }
        let Some(name) = &simple.word_or_name else {
            return;
        };
        self.substitutions(name, depth);
        let Some(mut program) = literal(name) else {
            return;
        };
        // `exec bundle …`, `command -v …`: the operand is the program.
        let mut operands = simple
            .suffix
            .iter()
            .flat_map(|s| &s.0)
            .filter_map(|item| match item {
                Item::Word(word) => Some(word),
                _ => None,
            });
        while RUNS_ITS_OPERAND.contains(&program.as_str()) {
            let next = operands.find(|w| !w.value.starts_with('-'));
            let is_query =
                simple.suffix.iter().flat_map(|s| &s.0).any(
                    |item| matches!(item, Item::Word(w) if w.value == "-v" || w.value == "-V"),
                );
            match next.and_then(literal) {
                Some(operand) if !is_query => program = operand,
                _ => return,
            }
        }
        if !BUILTINS.contains(&program.as_str()) && !self.found.contains(&program) {
            self.found.push(program);
        }
    }

    /// Reads the commands of the command substitutions in `word`.
    fn substitutions(&mut self, word: &Word, depth: usize) {
        if !word.value.contains("$(") && !word.value.contains('`') {
            return;
        }
        if let Ok(pieces) = word::parse(&word.value, &options()) {
            self.pieces(&pieces, depth);
        }
    }

    fn pieces(&mut self, pieces: &[WordPieceWithSource], depth: usize) {
        for piece in pieces {
            match &piece.piece {
                WordPiece::CommandSubstitution(script)
                | WordPiece::BackquotedCommandSubstitution(script) => {
                    let _ = self.script(script, depth + 1);
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => self.pieces(inner, depth),
                _ => {}
            }
        }
    }
}

/// The word's text when it holds no expansion: quotes and escapes removed.
fn literal(word: &Word) -> Option<String> {
    let pieces = word::parse(&word.value, &options()).ok()?;
    let mut out = String::new();
    literal_pieces(&pieces, &mut out)?;
    (!out.is_empty()).then_some(out)
}

fn literal_pieces(pieces: &[WordPieceWithSource], out: &mut String) -> Option<()> {
    for piece in pieces {
        match &piece.piece {
            WordPiece::Text(text) | WordPiece::SingleQuotedText(text) => {
                if text.contains(['*', '?', '[']) {
                    return None;
                }
                out.push_str(text);
            }
            WordPiece::EscapeSequence(escaped) => {
                out.push_str(escaped.strip_prefix('\\').unwrap_or(escaped));
            }
            WordPiece::DoubleQuotedSequence(inner) => literal_pieces(inner, out)?,
            _ => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_script_too_deep_to_parse_is_said_so_not_parsed() {
        let deep = |n: usize| format!("{}true{}", "{ ".repeat(n), " ; }".repeat(n));
        assert_eq!(programs(&deep(1500)), Err(Unread::TooDeep(1500)));
        let depth = format!(
            "{}true{}",
            "if true; then ".repeat(2000),
            "; fi".repeat(2000)
        );
        assert!(matches!(programs(&depth), Err(Unread::TooDeep(2000))));
        // At the limit, the parser reads it on its own stack; below, on the
        // caller's (a test thread's 2 MiB, unoptimised).
        assert_eq!(programs(&deep(MAX_NESTING)), Ok(Vec::new()));
        assert_eq!(programs(&deep(SHALLOW)), Ok(Vec::new()));
        let nested = format!(
            "{}git pull{}",
            "$(".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1)
        );
        assert!(programs(&nested).is_ok());
    }

    use super::{MAX_NESTING, SHALLOW, Unread, programs};

    fn found(script: &str) -> Vec<String> {
        programs(script).expect("readable")
    }

    #[test]
    fn command_words_in_every_position() {
        assert_eq!(
            found(
                "set -eu\ncd /srv && FOO=1 bundle exec whenever --update-crontab 2>&1 | tee log\n\
                 if git diff --quiet; then echo same; else make build; fi\n\
                 for f in a b; do gzip \"$f\"; done\n\
                 rev=$(git rev-parse HEAD); n=`wc -l < x`\n\
                 ( cd sub; ./bin/setup )"
            ),
            ["bundle", "tee", "git", "make", "gzip", "wc", "./bin/setup"]
        );
    }

    #[test]
    fn expansions_builtins_and_functions_are_not_programs() {
        assert_eq!(
            found(
                "\"${RUNNER_VAR_tool}\" run; $DOCKER_CMD ps; deploy() { rsync -a . dest; }\n\
                 deploy; exec nginx -g 'daemon off;'; command -v jq; test -f x && printf ok"
            ),
            ["rsync", "nginx"]
        );
    }

    #[test]
    fn quoted_names_and_case_arms() {
        assert_eq!(
            found("'bin/rails' db:migrate; case $x in a) psql -c 1 ;; b) redis-cli ping ;; esac"),
            ["bin/rails", "psql", "redis-cli"]
        );
    }

    #[test]
    fn an_unreadable_script_is_none() {
        assert_eq!(programs("if then fi ("), Err(Unread::Syntax));
    }
}
