//! Values reach a shell as data, never as code.
//!
//! A template in a string that `sh -c` reads is never replaced by its value: it
//! becomes the expansion of an environment variable that holds the value,
//! `"${RUNNER_VAR_app}"`, and the shell expands it as data, never re-reading it
//! as syntax. That holds wherever the reference stands. Where it stands only
//! decides which form delivers the exact value: quoted in plain text, bare inside
//! `"…"`, closing and reopening a `'…'`, bare in a here-document (a quoted one is
//! turned into an unquoted one whose own text is escaped, so that it stays
//! literal and the value can be expanded there too). The lexer below tells those
//! places apart; should it misread a script, a value may be split or shown as
//! text, but it is never parsed as code.
//!
//! One place is refused: `$(( ))`, where some shells (bash) evaluate an
//! expanded value as an arithmetic expression, and array subscripts in it run
//! commands.

use std::ops::Range;

/// Where a reference stands in a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Outside quotes (also inside `$( )`, backticks, `${ }`).
    Bare,
    /// Inside `"…"`.
    Double,
    /// Inside `'…'`.
    Single,
    /// In the body of a here-document.
    Heredoc,
    /// In a comment.
    Comment,
    /// Inside `$(( ))`.
    Arithmetic,
}

/// A piece of a template: a character of its text, or reference number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Char(char),
    Ref(usize),
}

/// What the lexer found.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    /// The place of each reference, by its number.
    pub(crate) places: Vec<Place>,
    /// Quoted here-documents with a reference in their body, to be unquoted.
    heredocs: Vec<QuotedHeredoc>,
}

#[derive(Debug, Clone)]
struct QuotedHeredoc {
    /// The delimiter word after `<<`, quotes and all.
    word: Range<usize>,
    /// Its text without quotes.
    delimiter: String,
    /// The body, delimiter line excluded.
    body: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Top,
    Double,
    Single,
    /// `$(`: the open parentheses inside it.
    Command(usize),
    Backtick,
    /// `${`.
    Param,
    /// `$((`: the open parentheses inside it.
    Arith(usize),
    Comment,
}

struct Pending {
    word: Range<usize>,
    delimiter: String,
    quoted: bool,
    strip_tabs: bool,
}

/// Finds the place of every reference in `toks`.
pub(crate) fn lex(toks: &[Tok]) -> Lexed {
    let refs = toks.iter().filter(|t| matches!(t, Tok::Ref(_))).count();
    let mut lexer = Lexer {
        toks,
        lexed: Lexed {
            places: vec![Place::Bare; refs],
            heredocs: Vec::new(),
        },
        stack: vec![Frame::Top],
        pending: Vec::new(),
        word_start: true,
        i: 0,
    };
    while lexer.i < toks.len() {
        lexer.step();
    }
    lexer.lexed
}

/// The lexer's state: where it is, in which frames, and the here-documents
/// whose bodies start at the next newline.
struct Lexer<'a> {
    toks: &'a [Tok],
    lexed: Lexed,
    stack: Vec<Frame>,
    pending: Vec<Pending>,
    word_start: bool,
    i: usize,
}

impl Lexer<'_> {
    /// The character `k` places on, if it is one.
    fn next(&self, k: usize) -> Option<char> {
        match self.toks.get(self.i + k) {
            Some(Tok::Char(c)) => Some(*c),
            _ => None,
        }
    }

    fn dollar(&mut self) -> usize {
        let (next, after) = (self.next(1), self.next(2));
        dollar(&mut self.stack, next, after)
    }

    /// Reads one reference or character (or an escape, a here-document).
    fn step(&mut self) {
        let frame = *self.stack.last().unwrap_or(&Frame::Top);
        let c = match self.toks[self.i] {
            Tok::Ref(n) => {
                self.lexed.places[n] = match frame {
                    Frame::Top | Frame::Command(_) | Frame::Backtick | Frame::Param => Place::Bare,
                    Frame::Double => Place::Double,
                    Frame::Single => Place::Single,
                    Frame::Comment => Place::Comment,
                    Frame::Arith(_) => Place::Arithmetic,
                };
                self.word_start = false;
                self.i += 1;
                return;
            }
            Tok::Char(c) => c,
        };
        match frame {
            Frame::Single => {
                if c == '\'' {
                    self.stack.pop();
                }
                self.i += 1;
            }
            Frame::Comment => {
                if c == '\n' {
                    // The newline ends the comment and is read again as a newline.
                    self.stack.pop();
                } else {
                    self.i += 1;
                }
            }
            Frame::Double => {
                self.i += match c {
                    '\\' => 2,
                    '"' => {
                        self.stack.pop();
                        1
                    }
                    '`' => {
                        self.stack.push(Frame::Backtick);
                        1
                    }
                    '$' => self.dollar(),
                    _ => 1,
                };
            }
            Frame::Top | Frame::Command(_) | Frame::Backtick | Frame::Param | Frame::Arith(_) => {
                self.code(frame, c);
            }
        }
    }

    /// A character outside quotes: in plain text, `$( )`, backticks, `${ }`
    /// or `$(( ))`.
    fn code(&mut self, frame: Frame, c: char) {
        let starts_word = self.word_start;
        self.word_start = c.is_whitespace() || ";&|()<>".contains(c);
        match c {
            '\\' => {
                self.word_start = false;
                self.i += 2;
            }
            '\'' => {
                self.stack.push(Frame::Single);
                self.i += 1;
            }
            '"' => {
                self.stack.push(Frame::Double);
                self.i += 1;
            }
            '`' if frame == Frame::Backtick => {
                self.stack.pop();
                self.i += 1;
            }
            '`' => {
                self.stack.push(Frame::Backtick);
                self.i += 1;
            }
            '$' => self.i += self.dollar(),
            '}' if frame == Frame::Param => {
                self.stack.pop();
                self.i += 1;
            }
            '(' => {
                if let Some(Frame::Command(n) | Frame::Arith(n)) = self.stack.last_mut() {
                    *n += 1;
                }
                self.i += 1;
            }
            ')' => {
                match self.stack.last_mut() {
                    Some(Frame::Command(0)) => {
                        self.stack.pop();
                    }
                    Some(Frame::Arith(0)) => {
                        self.stack.pop();
                        if self.next(1) == Some(')') {
                            self.i += 1;
                        }
                    }
                    Some(Frame::Command(n) | Frame::Arith(n)) => *n -= 1,
                    _ => {}
                }
                self.i += 1;
            }
            '#' if starts_word && !matches!(frame, Frame::Param | Frame::Arith(_)) => {
                self.stack.push(Frame::Comment);
                self.i += 1;
            }
            '<' if self.next(1) == Some('<') && self.next(2) != Some('<') => {
                let strip_tabs = self.next(2) == Some('-');
                self.i += if strip_tabs { 3 } else { 2 };
                self.i = heredoc_word(self.toks, self.i, strip_tabs, &mut self.pending);
            }
            '\n' if !self.pending.is_empty() => {
                self.i += 1;
                for heredoc in self.pending.drain(..) {
                    self.i = heredoc_body(self.toks, self.i, &heredoc, &mut self.lexed);
                }
            }
            _ => self.i += 1,
        }
    }
}

/// After `$`: opens `$((`, `$(` or `${`; returns how many characters it took.
fn dollar(stack: &mut Vec<Frame>, next: Option<char>, after: Option<char>) -> usize {
    match (next, after) {
        (Some('('), Some('(')) => {
            stack.push(Frame::Arith(0));
            3
        }
        (Some('('), _) => {
            stack.push(Frame::Command(0));
            2
        }
        (Some('{'), _) => {
            stack.push(Frame::Param);
            2
        }
        _ => 1,
    }
}

/// Reads the delimiter word of a here-document from `i`; returns where it ends.
fn heredoc_word(toks: &[Tok], mut i: usize, strip_tabs: bool, pending: &mut Vec<Pending>) -> usize {
    while matches!(toks.get(i), Some(Tok::Char(' ' | '\t'))) {
        i += 1;
    }
    let start = i;
    let mut delimiter = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    while let Some(&tok) = toks.get(i) {
        let Tok::Char(c) = tok else {
            // A value in a delimiter: it cannot be matched; leave it unread.
            break;
        };
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '\'' || c == '"' => {
                quoted = true;
                quote = Some(c);
            }
            None if c == '\\' => {
                quoted = true;
                if let Some(Tok::Char(escaped)) = toks.get(i + 1) {
                    delimiter.push(*escaped);
                    i += 1;
                }
            }
            None if c.is_whitespace() || ";&|<>()".contains(c) => break,
            // Quoted or not, a character of the word.
            _ => delimiter.push(c),
        }
        i += 1;
    }
    if !delimiter.is_empty() {
        pending.push(Pending {
            word: start..i,
            delimiter,
            quoted,
            strip_tabs,
        });
    }
    i
}

/// Reads a here-document's body from `i` (the line after its operator), up to
/// and with its delimiter line; returns where it ends.
fn heredoc_body(toks: &[Tok], mut i: usize, heredoc: &Pending, lexed: &mut Lexed) -> usize {
    let body_start = i;
    let mut has_ref = false;
    while i < toks.len() {
        let line_end = toks[i..]
            .iter()
            .position(|t| *t == Tok::Char('\n'))
            .map_or(toks.len(), |p| i + p);
        let line = &toks[i..line_end];
        let text: Option<String> = line
            .iter()
            .map(|t| match t {
                Tok::Char(c) => Some(*c),
                Tok::Ref(_) => None,
            })
            .collect();
        let is_end = text.is_some_and(|t| {
            let t = if heredoc.strip_tabs {
                t.trim_start_matches('\t')
            } else {
                t.as_str()
            };
            t == heredoc.delimiter
        });
        if is_end {
            if heredoc.quoted && has_ref {
                lexed.heredocs.push(QuotedHeredoc {
                    word: heredoc.word.clone(),
                    delimiter: heredoc.delimiter.clone(),
                    body: body_start..i,
                });
            }
            return (line_end + 1).min(toks.len());
        }
        for tok in line {
            if let Tok::Ref(n) = tok {
                lexed.places[*n] = Place::Heredoc;
                has_ref = true;
            }
        }
        i = line_end + 1;
    }
    toks.len()
}

/// How a reference is written into the script.
pub enum Insert<'a> {
    /// The expansion of this environment variable.
    Env(&'a str),
    /// These words, as the script's own text (runner's docker command).
    Words(&'a [String]),
}

/// Writes the script: text as it is (but for quoted here-documents holding a
/// value, unquoted and escaped), each reference as `insert` says, in the form
/// its place needs.
pub(crate) fn write<'a>(
    toks: &[Tok],
    lexed: &Lexed,
    insert: &dyn Fn(usize) -> Insert<'a>,
) -> String {
    let mut out = String::with_capacity(toks.len() + 16 * lexed.places.len());
    let mut i = 0;
    while i < toks.len() {
        if let Some(h) = lexed.heredocs.iter().find(|h| h.word.start == i) {
            // `<<'EOF'` → `<<EOF`: its body is escaped below.
            out.push_str(&h.delimiter);
            i = h.word.end;
            continue;
        }
        let in_quoted_body = lexed.heredocs.iter().any(|h| h.body.contains(&i));
        match toks[i] {
            Tok::Char(c) => {
                if in_quoted_body && matches!(c, '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            Tok::Ref(n) => {
                let place = lexed.places[n];
                match insert(n) {
                    Insert::Env(name) => match place {
                        Place::Bare => {
                            out.push_str("\"${");
                            out.push_str(name);
                            out.push_str("}\"");
                        }
                        Place::Single => {
                            out.push_str("'\"${");
                            out.push_str(name);
                            out.push_str("}\"'");
                        }
                        Place::Double | Place::Heredoc | Place::Comment | Place::Arithmetic => {
                            out.push_str("${");
                            out.push_str(name);
                            out.push('}');
                        }
                    },
                    Insert::Words(words) => {
                        let joined = super::template::shell_join(words);
                        match place {
                            Place::Single => {
                                out.push('\'');
                                out.push_str(&joined);
                                out.push('\'');
                            }
                            Place::Double | Place::Heredoc => {
                                for c in words.join(" ").chars() {
                                    if matches!(c, '"' | '\\' | '$' | '`') {
                                        out.push('\\');
                                    }
                                    out.push(c);
                                }
                            }
                            Place::Bare | Place::Comment | Place::Arithmetic => {
                                out.push_str(&joined);
                            }
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `@` stands for reference number 0, 1, … in order.
    fn toks(text: &str) -> Vec<Tok> {
        let mut n = 0;
        text.chars()
            .map(|c| {
                if c == '@' {
                    n += 1;
                    Tok::Ref(n - 1)
                } else {
                    Tok::Char(c)
                }
            })
            .collect()
    }

    fn places(text: &str) -> Vec<Place> {
        lex(&toks(text)).places
    }

    #[test]
    fn tells_quotes_substitutions_comments_and_heredocs_apart() {
        use Place::*;
        assert_eq!(places("echo @ '@' \"@\""), [Bare, Single, Double]);
        assert_eq!(places("echo \"$(printf %s '@')\""), [Single]);
        assert_eq!(
            places("echo \"$(printf %s @)\" `echo @` ${x:-@}"),
            [Bare, Bare, Bare]
        );
        assert_eq!(places("# don't @\necho @"), [Comment, Bare]);
        assert_eq!(places("echo a#b @"), [Bare]);
        assert_eq!(
            places("cat <<EOF\nit's @\nEOF\necho '@'"),
            [Heredoc, Single]
        );
        assert_eq!(places("cat <<'EOF' && echo @\n$@\nEOF"), [Bare, Heredoc]);
        assert_eq!(places("echo $((1 + @)) @"), [Arithmetic, Bare]);
        assert_eq!(places("echo \"a\\\"@\""), [Double]);
    }

    #[test]
    fn writes_each_place_so_the_value_arrives_whole() {
        let script = |text: &str| {
            let t = toks(text);
            write(&t, &lex(&t), &|_| Insert::Env("V"))
        };
        assert_eq!(
            script("echo @ '@' \"@\""),
            "echo \"${V}\" ''\"${V}\"'' \"${V}\""
        );
        assert_eq!(
            script("cat <<'EOF'\n$HOME `x` @\nEOF\n"),
            "cat <<EOF\n\\$HOME \\`x\\` ${V}\nEOF\n"
        );
        // Without a value, a quoted here-document stays as it is.
        assert_eq!(
            script("cat <<'EOF'\n$HOME\nEOF\n"),
            "cat <<'EOF'\n$HOME\nEOF\n"
        );
    }
}
