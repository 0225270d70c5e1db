//! How a run shows itself: a live view on a terminal, plain lines otherwise, or one
//! JSON event per line (`--output json`). Rendering and writing happen on a thread
//! of their own behind a [`Lossy`] queue: the engine hands an event over and goes
//! on, whatever the terminal does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::lossy::{Consumer, Item, Lossy, Tx};
use crate::engine::{Event, Phase, Sink, Status, Stream};

/// Colour only where allowed: `NO_COLOR` unset or empty.
pub(crate) fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Colour on stderr: a terminal, and colour allowed.
pub(crate) fn stderr_color() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && color_allowed()
}

/// Output lines waiting to be written, in bytes, before lines are dropped (and
/// counted).
const QUEUE_BYTES: usize = 2 << 20;
/// How long the writer may make no progress at the end before runner exits
/// without the rest of its output.
pub(crate) const STALL: Duration = Duration::from_secs(2);

/// How a run looks.
pub(crate) enum Style {
    /// `width`: of the step-id column; `live`: stdout is a terminal.
    Text {
        width: usize,
        live: bool,
        color: bool,
    },
    Json,
    /// Only the steps' output lines and the texts (`runner maintenance`).
    Lines,
}

enum Out {
    Event(Event),
    Text(String),
}

/// Where a run's events go: to stdout, through the writer thread.
pub(crate) struct Console {
    queue: Lossy<Out>,
    tx: Tx<Out>,
}

impl Console {
    pub(crate) fn new(style: &Style) -> std::io::Result<Self> {
        let queue = Lossy::spawn("runner-output", QUEUE_BYTES, View::new(style))?;
        Ok(Self {
            tx: queue.tx(),
            queue,
        })
    }

    /// Text always shown (a header, the summary), in order with the events.
    pub(crate) fn text(&mut self, text: String) {
        self.tx.push(Out::Text(text), 0, false);
    }

    /// Waits until what is queued is written (before the record goes to stdout).
    pub(crate) fn drain(&self) {
        self.queue.drain(STALL);
    }

    /// Writes what is queued, as long as stdout takes it.
    pub(crate) fn finish(self) {
        self.queue.finish(STALL);
    }
}

impl Sink for Console {
    fn event(&mut self, event: Event) {
        let bytes = match &event {
            Event::Output { line, .. } => Some(line.len()),
            _ => None,
        };
        self.tx
            .push(Out::Event(event), bytes.unwrap_or(0), bytes.is_some());
    }
}

/// Writes to stdout; a closed or broken pipe (`runner … | head`) is not an error
/// of the run.
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes to stderr, never failing (a closed stderr must not change anything).
pub(crate) fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let secs = d.as_secs();
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

fn ms(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// The writer thread's side: renders a batch of events into one buffer, written
/// at once.
struct View {
    style: ViewStyle,
    buf: String,
}

enum ViewStyle {
    Text(TextView),
    Json,
    Lines,
}

impl View {
    fn new(style: &Style) -> Self {
        let style = match *style {
            Style::Text { width, live, color } => {
                console::set_colors_enabled(color);
                ViewStyle::Text(TextView {
                    width,
                    live: live.then(|| Live {
                        multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                        bars: HashMap::new(),
                    }),
                })
            }
            Style::Json => ViewStyle::Json,
            Style::Lines => ViewStyle::Lines,
        };
        Self {
            style,
            buf: String::new(),
        }
    }
}

impl Consumer<Out> for View {
    fn item(&mut self, item: Item<Out>) {
        let buf = &mut self.buf;
        match (&mut self.style, item) {
            (ViewStyle::Json, Item::Value(Out::Event(event))) => {
                buf.push_str(&serde_json::to_string(&event).unwrap_or_default());
                buf.push('\n');
            }
            (ViewStyle::Json, Item::Dropped(lines)) => {
                let _ = writeln!(buf, "{{\"event\":\"output_dropped\",\"lines\":{lines}}}");
            }
            (ViewStyle::Text(view), Item::Value(Out::Event(event))) => view.event(&event, buf),
            (ViewStyle::Text(view), Item::Value(Out::Text(text))) => {
                // The live view goes before the summary: what is drawn stays put.
                if let Some(live) = view.live.take() {
                    live.multi.suspend(|| print_out(buf));
                    buf.clear();
                    let _ = live.multi.clear();
                }
                buf.push_str(&text);
            }
            (ViewStyle::Lines, Item::Value(Out::Event(Event::Output { line, .. }))) => {
                let _ = writeln!(buf, "  │ {line}");
            }
            (
                ViewStyle::Lines,
                Item::Value(Out::Event(Event::Stopping { reason } | Event::Recovering { reason })),
            ) => {
                let _ = writeln!(buf, "! {reason}");
            }
            // JSON carries events only; the lines view shows output and notices.
            (ViewStyle::Json, Item::Value(Out::Text(_)))
            | (ViewStyle::Lines, Item::Value(Out::Event(_))) => {}
            (ViewStyle::Lines, Item::Value(Out::Text(text))) => buf.push_str(&text),
            (ViewStyle::Text(_) | ViewStyle::Lines, Item::Dropped(lines)) => {
                buf.push_str(&dropped(lines));
                buf.push('\n');
            }
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match &self.style {
            ViewStyle::Text(TextView {
                live: Some(live), ..
            }) => live.multi.suspend(|| print_out(&self.buf)),
            _ => print_out(&self.buf),
        }
        self.buf.clear();
    }
}

fn dropped(lines: u64) -> String {
    format!(
        "  … {lines} lines not shown: stdout was not read in time (the record keeps each step's last lines)"
    )
}

struct TextView {
    /// Width of the step-id column.
    width: usize,
    live: Option<Live>,
}

/// The running steps as spinners (elapsed time, attempt), output scrolling above.
struct Live {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl TextView {
    fn println(buf: &mut String, line: &str) {
        buf.push_str(line);
        buf.push('\n');
    }

    fn name(&self, step: &str, phase: Phase) -> String {
        let name = match phase {
            Phase::Rollback => format!("{step} (rollback)"),
            _ => step.to_owned(),
        };
        format!("{name:<width$}", width = self.width)
    }

    fn event(&mut self, event: &Event, buf: &mut String) {
        match event {
            Event::Output {
                step,
                phase,
                line,
                stream,
            } => {
                // The hot path of a loud step: written in place, no allocation.
                let bar = if *stream == Stream::Info { "·" } else { "│" };
                let width = self.width;
                let _ = match phase {
                    Phase::Rollback => {
                        let pad = width.saturating_sub(step.len() + " (rollback)".len());
                        writeln!(buf, "  {step} (rollback){:pad$} {bar} {line}", "")
                    }
                    _ => writeln!(buf, "  {step:<width$} {bar} {line}"),
                };
                return;
            }
            Event::StepStarted {
                step,
                phase,
                attempt,
                ..
            } => self.spin(step, *phase, *attempt),
            Event::StepFinished { step, phase, .. } => self.unspin(step, *phase),
            Event::RollbackStarted { step, .. } => self.spin(step, Phase::Rollback, 1),
            Event::RollbackFinished { step, .. } => self.unspin(step, Phase::Rollback),
            _ => {}
        }
        if let Some(line) = self.step_line(event).or_else(|| self.run_line(event)) {
            Self::println(buf, &line);
        }
    }

    /// The line of a step's start, skip, failed attempt or end.
    fn step_line(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::StepStarted {
                step,
                phase,
                attempt,
                command,
            } => {
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                format!(
                    "{} {}{retry} {}",
                    style("▶").cyan(),
                    self.name(step, *phase),
                    style(format!("$ {command}")).dim()
                )
            }
            Event::StepSkipped {
                step,
                phase,
                reason,
            } => format!(
                "{} {} skipped: {reason}",
                style("⤼").dim(),
                self.name(step, *phase)
            ),
            Event::AttemptFailed {
                step,
                phase,
                attempt,
                attempts,
                reason,
                retry_in_ms,
                ..
            } => {
                // The last attempt's reason is on the step's own line.
                let wait = retry_in_ms.as_ref()?;
                let next = format!("; next attempt in {}", ms(*wait));
                format!(
                    "{} {} attempt {attempt}/{attempts} failed: {reason}{next}",
                    style("✗").yellow(),
                    self.name(step, *phase)
                )
            }
            Event::StepFinished {
                step,
                phase,
                status,
                attempts,
                duration_ms,
                reason,
                ..
            } => {
                let tries = if *attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                match status {
                    Status::Succeeded => format!(
                        "{} {} succeeded in {}{tries}",
                        style("✓").green(),
                        self.name(step, *phase),
                        ms(*duration_ms)
                    ),
                    _ => format!(
                        "{} {} {}{tries}: {}",
                        style("✗").red(),
                        self.name(step, *phase),
                        status.as_str(),
                        reason.as_deref().unwrap_or("")
                    ),
                }
            }
            _ => return None,
        })
    }

    /// The line of the run's start, its stops, its hosts and its rollback.
    fn run_line(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::RunStarted {
                run_id,
                plan,
                plan_file,
                steps,
                jobs,
                docker,
                docker_reason,
                ..
            } => format!(
                "{} {plan} ({plan_file}): {steps} steps, {jobs} at a time\n  run {run_id} · docker: {docker} ({docker_reason})",
                style("runner").bold()
            ),
            Event::Stopping { reason } | Event::Recovering { reason } => {
                format!("{} {reason}", style("!").red().bold())
            }
            Event::HostReady {
                host,
                engine,
                docker,
                lease,
            } => {
                let mut line = format!("  host {host} ({engine}): {docker}");
                if let Some(lease) = lease {
                    let _ = write!(line, "\n  host {host}: {lease}");
                }
                line
            }
            Event::DomainFailed {
                domain,
                step,
                failed,
                allowed,
            } => format!(
                "{} host {domain} failed at {step} ({failed} of {allowed} allowed to fail): its changes roll back, the other hosts go on",
                style("!").red().bold()
            ),
            Event::RollbackStarted { step, command } => format!(
                "{} {} {}",
                style("↩").magenta(),
                self.name(step, Phase::Rollback),
                style(format!("$ {command}")).dim()
            ),
            Event::RollbackFinished {
                step,
                succeeded,
                duration_ms,
                ..
            } if *succeeded => format!(
                "{} {} rolled back in {}",
                style("↩").magenta(),
                self.name(step, Phase::Rollback),
                ms(*duration_ms)
            ),
            Event::RollbackFinished { step, reason, .. } => format!(
                "{} {} ROLLBACK FAILED: {}",
                style("✗").red().bold(),
                self.name(step, Phase::Rollback),
                reason.as_deref().unwrap_or("")
            ),
            Event::RollbackHeld { step, reason } => format!(
                "{} {} NOT RUN: {reason}",
                style("!").red().bold(),
                self.name(step, Phase::Rollback)
            ),
            _ => return None,
        })
    }

    fn spin(&mut self, step: &str, phase: Phase, attempt: u32) {
        let name = self.name(step, phase);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let key = format!("{step}/{phase:?}");
        let bar = live.bars.entry(key).or_insert_with(|| {
            let bar = live.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_message(if attempt > 1 {
            format!("attempt {attempt}")
        } else {
            String::new()
        });
    }

    fn unspin(&mut self, step: &str, phase: Phase) {
        if let Some(live) = self.live.as_mut()
            && let Some(bar) = live.bars.remove(&format!("{step}/{phase:?}"))
        {
            bar.finish_and_clear();
            live.multi.remove(&bar);
        }
    }
}
