//! Diagnostics that point into the plan file.
//!
//! Every problem found while loading or checking a plan becomes a [`PlanDiagnostic`]
//! with a code, a message, labels on the offending spans and a help text. They are
//! collected (never returned at the first one) so that a single `runner validate`
//! shows every problem of the plan.

use std::fmt;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, Severity, SourceCode, SourceSpan,
    SpanContents,
};

/// A byte range in the plan source.
pub type Span = Range<usize>;

/// The plan text, shared by every diagnostic that points into it.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: Arc<str>,
    /// Byte offset of the start of every line, to find a snippet without scanning
    /// the whole file for each diagnostic (a 10,000-step plan can have thousands).
    line_starts: Arc<[usize]>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 0-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1)
    }
}

impl SourceCode for Source {
    /// miette's own snippet logic, run on the few lines around the span only.
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let end = span.offset() + span.len();
        if end > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first_line = self
            .line_of(span.offset())
            .saturating_sub(context_lines_before);
        let last_line =
            self.line_of(end.saturating_sub(1).max(span.offset())) + context_lines_after + 1;
        let start = self.line_starts[first_line];
        let stop = self
            .line_starts
            .get(last_line + 1)
            .copied()
            .unwrap_or(self.text.len());
        let window = &self.text.as_bytes()[start..stop];
        let local = SourceSpan::new((span.offset() - start).into(), span.len());
        let contents = window.read_span(&local, context_lines_before, context_lines_after)?;
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.name.clone(),
                contents.data(),
                SourceSpan::new(
                    (contents.span().offset() + start).into(),
                    contents.span().len(),
                ),
                contents.line() + first_line,
                contents.column(),
                contents.line_count() + first_line,
            )
            .with_language("toml"),
        ))
    }
}

/// One problem in a plan.
#[derive(Debug, Clone)]
pub struct PlanDiagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl PlanDiagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    #[must_use]
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn first_offset(&self) -> usize {
        self.labels.first().map_or(0, |(span, _)| span.start)
    }
}

/// A diagnostic bound to its source, so miette can render the snippet.
#[derive(Debug)]
pub struct Located<'a> {
    source: &'a Source,
    diagnostic: &'a PlanDiagnostic,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Located<'_> {}

impl Diagnostic for Located<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.diagnostic.severity)
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.diagnostic.labels.is_empty() {
            None
        } else {
            Some(self.source)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.source.text.len();
        Some(Box::new(self.diagnostic.labels.iter().map(
            move |(span, text)| {
                let start = span.start.min(len);
                let end = span.end.clamp(start, len);
                LabeledSpan::new(Some(text.clone()), start, end - start)
            },
        )))
    }
}

/// Every diagnostic found in one plan.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub source: Source,
    pub items: Vec<PlanDiagnostic>,
}

impl Diagnostics {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: PlanDiagnostic) {
        self.items.push(diagnostic);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(PlanDiagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// Sorts by position in the file, so the report reads top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by_key(PlanDiagnostic::first_offset);
    }

    pub fn located(&self) -> impl Iterator<Item = Located<'_>> {
        self.items.iter().map(|diagnostic| Located {
            source: &self.source,
            diagnostic,
        })
    }

    /// Renders every diagnostic with its snippet, then a one-line summary.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_links(false)
            .with_width(100);
        let mut out = String::new();
        for located in self.located() {
            // Writing to a String cannot fail.
            let _ = handler.render_report(&mut out, &located);
            out.push('\n');
        }
        let (errors, warnings) = (self.error_count(), self.warning_count());
        if errors > 0 {
            let _ = writeln!(
                out,
                "{} in {}{}",
                plural(errors, "error"),
                self.source.name,
                if warnings > 0 {
                    format!(" (and {})", plural(warnings, "warning"))
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
