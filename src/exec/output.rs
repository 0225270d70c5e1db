//! How a run shows itself: a live view on a terminal, plain lines otherwise, or one
//! JSON event per line (`--output json`).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::event::{Event, Phase, Status};
use super::process::Stream;

pub enum Reporter {
    Text(TextView),
    Json,
}

pub struct TextView {
    /// Width of the step-id column.
    width: usize,
    live: Option<Live>,
}

/// The running steps as spinners (elapsed time, attempt), output scrolling above.
struct Live {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl Reporter {
    /// `live`: stdout is a terminal. Colour also needs `NO_COLOR` unset.
    pub fn text(width: usize, live: bool, color: bool) -> Self {
        console::set_colors_enabled(color);
        Reporter::Text(TextView {
            width,
            live: live.then(|| Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: HashMap::new(),
            }),
        })
    }

    pub fn event(&mut self, event: &Event) {
        match self {
            Reporter::Json => {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer(&mut out, event);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            Reporter::Text(view) => view.event(event),
        }
    }

    /// Text printed after the run (the summary); nothing in JSON mode.
    pub fn finish(&mut self, text: &str) {
        if let Reporter::Text(view) = self {
            if let Some(live) = view.live.take() {
                let _ = live.multi.clear();
            }
            print_out(text);
        }
    }
}

/// Writes to stdout; a closed pipe (`runner … | head`) is not an error of the run.
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn duration(d: Duration) -> String {
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

impl TextView {
    fn println(&self, line: String) {
        match &self.live {
            Some(live) => live.multi.suspend(|| print_out(&(line + "\n"))),
            None => print_out(&(line + "\n")),
        }
    }

    fn name(&self, step: &str, phase: Phase) -> String {
        let name = match phase {
            Phase::Rollback => format!("{step} (rollback)"),
            _ => step.to_owned(),
        };
        format!("{name:<width$}", width = self.width)
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                plan,
                plan_file,
                steps,
                jobs,
                docker,
                docker_reason,
                ..
            } => {
                self.println(format!(
                    "{} {plan} ({plan_file}): {steps} steps, {jobs} at a time\n  run {run_id} · docker: {docker} ({docker_reason})",
                    style("runner").bold()
                ));
            }
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
                self.println(format!(
                    "{} {}{retry} {}",
                    style("▶").cyan(),
                    self.name(step, *phase),
                    style(format!("$ {command}")).dim()
                ));
                self.spin(step, *phase, *attempt);
            }
            Event::Output {
                step,
                phase,
                line,
                stream,
            } => {
                let bar = if *stream == Stream::Info { "·" } else { "│" };
                self.println(format!("  {} {bar} {line}", self.name(step, *phase)));
            }
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
                let Some(wait) = retry_in_ms else { return };
                let next = format!("; next attempt in {}", ms(*wait));
                self.println(format!(
                    "{} {} attempt {attempt}/{attempts} failed: {reason}{next}",
                    style("✗").yellow(),
                    self.name(step, *phase)
                ));
            }
            Event::StepFinished {
                step,
                phase,
                status,
                attempts,
                duration_ms,
                reason,
            } => {
                self.unspin(step, *phase);
                let tries = if *attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                let line = match status {
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
                };
                self.println(line);
            }
            Event::Stopping { reason } => {
                self.println(format!("{} {reason}", style("!").red().bold()));
            }
            Event::RollbackStarted { step, command } => {
                self.println(format!(
                    "{} {} {}",
                    style("↩").magenta(),
                    self.name(step, Phase::Rollback),
                    style(format!("$ {command}")).dim()
                ));
                self.spin(step, Phase::Rollback, 1);
            }
            Event::RollbackFinished {
                step,
                succeeded,
                duration_ms,
                reason,
                ..
            } => {
                self.unspin(step, Phase::Rollback);
                let line = if *succeeded {
                    format!(
                        "{} {} rolled back in {}",
                        style("↩").magenta(),
                        self.name(step, Phase::Rollback),
                        ms(*duration_ms)
                    )
                } else {
                    format!(
                        "{} {} ROLLBACK FAILED: {}",
                        style("✗").red().bold(),
                        self.name(step, Phase::Rollback),
                        reason.as_deref().unwrap_or("")
                    )
                };
                self.println(line);
            }
            Event::RollbackHeld { step, reason } => {
                self.println(format!(
                    "{} {} NOT RUN: {reason}",
                    style("!").red().bold(),
                    self.name(step, Phase::Rollback)
                ));
            }
            Event::RunFinished { .. } => {}
        }
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
