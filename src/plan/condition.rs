//! `if = "…"`: the condition on which a step runs, as GitHub Actions' `if:`.
//!
//! It is read when the plan is loaded and decided when the step is ready to
//! start (its needs done), from values and earlier steps' outputs:
//!
//! ```toml
//! if = "steps.pending.output != '0' && expand_only != 'yes'"
//! ```
//!
//! Operands are names (`NAME` or `vars.NAME`, `steps.ID.output`, `host.name`,
//! `run.id`, `run.kind`), quoted text (`'v2'`, a quote doubled inside: `'it''s'`) and
//! bare numbers or words (`0`, `true`). Operators: `==`, `!=`, `!`, `&&`, `||`
//! and parentheses. Values are compared as text (trimmed); a name alone holds
//! when its value is not empty, `0` or `false`. Values are data: they are
//! compared, never read as part of the condition.

use std::borrow::Cow;
use std::fmt::Write as _;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::diagnostic::Span;
use super::model::Sp;
use super::template::{Name, Template};

/// How deep parentheses and `!` may nest.
const MAX_DEPTH: usize = 32;

/// A step's condition, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// As written.
    pub text: String,
    expr: Expr,
    /// The names it reads, each as a template of one reference (checked as
    /// templates are: known names, steps the step waits for).
    pub refs: Vec<Sp<Template>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// Equal (`true`) or not equal (`false`).
    Compare(Operand, Operand, bool),
    Holds(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Text(String),
    /// An index into `refs`.
    Ref(usize),
}

impl JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "Condition".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Run the step only when this holds, e.g. \"steps.pending.output != '0' && expand_only != 'yes'\": names (NAME, vars.NAME, steps.ID.output, host.name, run.id, run.kind), 'text', numbers, ==, !=, !, &&, ||, parentheses."
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Not,
    Eq,
    Ne,
    And,
    Or,
    Text(String),
    Word(String),
}

/// Why a condition does not read, and where (a span in the plan).
pub type Error = (String, Span);

impl Condition {
    /// Parses `text`; `origin` is where its first character stands in the
    /// plan when the TOML string maps onto its source, else errors point at
    /// `whole`.
    pub fn parse(text: &str, origin: Option<usize>, whole: &Span) -> Result<Self, Error> {
        let at =
            |from: usize, to: usize| origin.map_or_else(|| whole.clone(), |o| o + from..o + to);
        let tokens = tokenize(text).map_err(|(why, from, to)| (why, at(from, to)))?;
        let mut parser = Parser {
            tokens: &tokens,
            next: 0,
            refs: Vec::new(),
            at: &at,
            end: text.len(),
        };
        let expr = parser.or(0)?;
        if let Some((_, from, to)) = tokens.get(parser.next) {
            return Err((
                "more follows where the condition should end".to_owned(),
                at(*from, *to),
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            expr,
            refs: parser.refs,
        })
    }

    /// Whether it holds, with each name's value from `value`.
    pub fn holds(&self, value: &dyn Fn(&Template) -> String) -> bool {
        self.eval(&self.expr, value)
    }

    /// The values it read, for a record: `steps.pending.output = '0'`.
    pub fn values(&self, value: &dyn Fn(&Template) -> String) -> String {
        let mut out = String::new();
        for (i, r) in self.refs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let name = r.value.refs().next().map_or("", |(_, text, _)| text);
            let _ = write!(out, "{name} = '{}'", value(&r.value).trim());
        }
        out
    }

    fn eval(&self, expr: &Expr, value: &dyn Fn(&Template) -> String) -> bool {
        let operand = |o: &Operand| match o {
            Operand::Text(text) => text.clone(),
            Operand::Ref(i) => value(&self.refs[*i].value).trim().to_owned(),
        };
        match expr {
            Expr::Or(a, b) => self.eval(a, value) || self.eval(b, value),
            Expr::And(a, b) => self.eval(a, value) && self.eval(b, value),
            Expr::Not(a) => !self.eval(a, value),
            Expr::Compare(a, b, equal) => (operand(a) == operand(b)) == *equal,
            Expr::Holds(a) => !matches!(operand(a).as_str(), "" | "0" | "false"),
        }
    }
}

/// A token and where it stands: its first byte, and the byte after it.
type Placed = (Token, usize, usize);

/// Tokens with their byte offsets in the text; why not, and where.
fn tokenize(text: &str) -> Result<Vec<Placed>, (String, usize, usize)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let two = |second: char| chars.get(i + 1).is_some_and(|&(_, d)| d == second);
        let (token, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '=' if two('=') => (Token::Eq, 2),
            '!' if two('=') => (Token::Ne, 2),
            '!' => (Token::Not, 1),
            '&' if two('&') => (Token::And, 2),
            '|' if two('|') => (Token::Or, 2),
            '\'' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(("this quote is never closed".to_owned(), at, text.len()));
                        }
                        Some((_, '\'')) if chars.get(j + 1).is_some_and(|&(_, d)| d == '\'') => {
                            value.push('\'');
                            j += 2;
                        }
                        Some((_, '\'')) => break,
                        Some(&(_, d)) => {
                            value.push(d);
                            j += 1;
                        }
                    }
                }
                out.push((Token::Text(value), at, end_of(&chars, j, text)));
                i = j + 1;
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut j = i;
                while chars.get(j).is_some_and(|&(_, d)| {
                    d.is_ascii_alphanumeric() || matches!(d, '_' | '-' | '.')
                }) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().map(|&(_, d)| d).collect();
                out.push((Token::Word(word), at, end_of(&chars, j - 1, text)));
                i = j;
                continue;
            }
            other => {
                return Err((
                    format!("`{other}` has no meaning in a condition"),
                    at,
                    at + other.len_utf8(),
                ));
            }
        };
        out.push((token, at, at + len));
        i += len;
    }
    Ok(out)
}

/// The byte offset after the character at index `j`.
fn end_of(chars: &[(usize, char)], j: usize, text: &str) -> usize {
    chars
        .get(j)
        .map_or(text.len(), |&(at, c)| at + c.len_utf8())
}

struct Parser<'a> {
    tokens: &'a [Placed],
    next: usize,
    refs: Vec<Sp<Template>>,
    at: &'a dyn Fn(usize, usize) -> Span,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(t, ..)| t)
    }

    fn here(&self) -> Span {
        self.tokens.get(self.next).map_or_else(
            || (self.at)(self.end, self.end),
            |(_, from, to)| (self.at)(*from, *to),
        )
    }

    fn or(&mut self, depth: usize) -> Result<Expr, Error> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, Error> {
        let mut left = self.not(depth)?;
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            left = Expr::And(Box::new(left), Box::new(self.not(depth)?));
        }
        Ok(left)
    }

    fn not(&mut self, depth: usize) -> Result<Expr, Error> {
        if depth > MAX_DEPTH {
            return Err((
                format!("the condition nests more than {MAX_DEPTH} deep"),
                self.here(),
            ));
        }
        match self.peek() {
            Some(Token::Not) => {
                self.next += 1;
                Ok(Expr::Not(Box::new(self.not(depth + 1)?)))
            }
            Some(Token::Open) => {
                self.next += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err(("a `)` is missing here".to_owned(), self.here()));
                }
                self.next += 1;
                Ok(inner)
            }
            _ => {
                let left = self.operand()?;
                match self.peek() {
                    Some(Token::Eq | Token::Ne) => {
                        let equal = self.peek() == Some(&Token::Eq);
                        self.next += 1;
                        let right = self.operand()?;
                        Ok(Expr::Compare(left, right, equal))
                    }
                    _ => Ok(Expr::Holds(left)),
                }
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, Error> {
        let Some((token, from, to)) = self.tokens.get(self.next).cloned() else {
            return Err((
                "a value or a name is missing at the end".to_owned(),
                self.here(),
            ));
        };
        self.next += 1;
        match token {
            Token::Text(text) => Ok(Operand::Text(text)),
            Token::Word(word) if word.chars().all(|c| c.is_ascii_digit()) => {
                Ok(Operand::Text(word))
            }
            Token::Word(word) if word == "true" || word == "false" => Ok(Operand::Text(word)),
            Token::Word(word) => {
                let name = word.strip_prefix("vars.").unwrap_or(&word);
                let span = (self.at)(from, to);
                let template = Template::parse(&format!("{{{{ {name} }}}}"), None, &span);
                if template.refs().next().is_none()
                    || matches!(
                        template.refs().next(),
                        Some((Name::Docker | Name::Compose, ..))
                    )
                {
                    return Err((format!("`{word}` is not a name a condition reads"), span));
                }
                self.refs.push(Sp::new(template, span));
                Ok(Operand::Ref(self.refs.len() - 1))
            }
            _ => Err((
                "a value or a name is expected here".to_owned(),
                (self.at)(from, to),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Condition, Error> {
        Condition::parse(text, Some(0), &(0..text.len()))
    }

    fn holds(text: &str, values: &[(&str, &str)]) -> bool {
        let condition = parse(text).expect("a condition");
        condition.holds(&|t| {
            let name = t.refs().next().map(|(_, text, _)| text).unwrap_or_default();
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(String::new, |(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn compares_values_as_text() {
        let pending = [("steps.pending.output", "2\n"), ("expand_only", "")];
        assert!(holds("steps.pending.output != '0'", &pending));
        assert!(holds("steps.pending.output != 0 && !expand_only", &pending));
        assert!(!holds(
            "steps.pending.output == '0' || vars.expand_only == 'yes'",
            &pending
        ));
        assert!(holds("(steps.pending.output == 2)", &pending));
        assert!(!holds(
            "steps.pending.output",
            &[("steps.pending.output", "0")]
        ));
        assert!(holds("v == 'it''s'", &[("v", "it's")]));
        // A value is data: whatever it holds, it is only compared.
        assert!(!holds("v == 'x'", &[("v", "x' || 'a' == 'a")]));
    }

    #[test]
    fn mistakes_are_pointed_at() {
        let (why, span) = parse("a == 'x").unwrap_err();
        assert!(why.contains("never closed"), "{why}");
        assert_eq!(span, 5..7);
        let (why, span) = parse("a = b").unwrap_err();
        assert!(why.contains("`=`"), "{why}");
        assert_eq!(span, 2..3);
        assert!(parse("(a == b").is_err());
        assert!(parse("a == ").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("docker").is_err());
        assert!(parse(&"!".repeat(100)).is_err());
        assert!(parse(&format!("{}a{}", "(".repeat(100), ")".repeat(100))).is_err());
    }

    #[test]
    fn names_become_references() {
        let condition = parse("steps.pending.output != '0' && vars.app == host.name").unwrap();
        let names: Vec<&Name> = condition
            .refs
            .iter()
            .filter_map(|r| r.value.refs().next().map(|(n, ..)| n))
            .collect();
        assert_eq!(
            names,
            [
                &Name::StepOutput("pending".into()),
                &Name::Var("app".into()),
                &Name::HostName
            ]
        );
        assert_eq!(condition.refs[0].span, 0..20);
    }
}
