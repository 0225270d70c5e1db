//! A run's timeline, from its record: each step and rollback hook as a bar on
//! one time axis, with the maintenance window marked. As text for the
//! terminal (`runner show`), and as an SVG picture (`--format svg`).

use std::fmt::Write as _;
use std::time::Duration;

use svg::Document;
use svg::node::element::{Group, Line, Rectangle, Style, Text, Title};

use super::console::duration;
use super::record::{Outcome, Record, StepRecord, Window};
use crate::engine::Phase;

/// One bar: a step, a hook or a host, when it ran, how it ended.
struct Bar {
    label: String,
    hook: bool,
    /// `None`: it never ran.
    span: Option<(u64, u64)>,
    status: String,
    /// How it is drawn: its final outcome.
    look: Look,
    attempts: usize,
}

/// The colours of the SVG, one per final outcome, each with its legend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Look {
    Succeeded,
    RolledBack,
    Failed,
    FailedUndone,
    RollbackFailed,
    Hook,
    HookFailed,
}

impl Look {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Skipped | Outcome::Succeeded => Look::Succeeded,
            Outcome::RolledBack => Look::RolledBack,
            Outcome::Failed => Look::Failed,
            Outcome::FailedUndone => Look::FailedUndone,
            Outcome::RollbackFailed | Outcome::FailedUndoFailed => Look::RollbackFailed,
        }
    }

    /// The CSS class and its colour.
    fn class(self) -> (&'static str, &'static str) {
        match self {
            Look::Succeeded => ("succeeded", "#43a047"),
            Look::RolledBack => ("rolled-back", "#90a4ae"),
            Look::Failed => ("failed", "#e53935"),
            Look::FailedUndone => ("failed-undone", "#fb8c00"),
            Look::RollbackFailed => ("rollback-failed", "#6d1b1b"),
            Look::Hook => ("hook", "#7e57c2"),
            Look::HookFailed => ("hook-failed", "#ad1457"),
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Look::Succeeded => "succeeded",
            Look::RolledBack => "succeeded, then rolled back",
            Look::Failed => "failed",
            Look::FailedUndone => "failed, undone by its hook",
            Look::RollbackFailed => "its rollback failed",
            Look::Hook => "rollback hook",
            Look::HookFailed => "rollback hook failed",
        }
    }
}

/// The bars in reading order: the plan's steps by start, then the rollback
/// hooks by start, then the after-phase steps (they run after the rollback),
/// then the hosts.
fn bars(record: &Record) -> Vec<Bar> {
    let step_bar = |s: &StepRecord| Bar {
        label: s.id.clone(),
        hook: false,
        span: s.started_ms.zip(s.ended_ms),
        status: s.outcome().as_str().to_owned(),
        look: Look::of(s.outcome()),
        attempts: s.attempts.len(),
    };
    let by_start =
        |bars: &mut Vec<Bar>| bars.sort_by_key(|b| b.span.map_or(u64::MAX, |(from, _)| from));
    let (plan, after): (Vec<&StepRecord>, Vec<&StepRecord>) =
        record.steps.iter().partition(|s| s.phase == Phase::Plan);
    let mut steps: Vec<Bar> = plan.into_iter().map(step_bar).collect();
    by_start(&mut steps);
    let mut hooks: Vec<Bar> = record
        .steps
        .iter()
        .filter_map(|s| {
            let h = s.rollback.as_ref()?;
            Some(Bar {
                label: format!("rollback of {}", s.id),
                hook: true,
                span: Some((h.started_ms, h.ended_ms)),
                status: if h.succeeded { "undone" } else { "hook failed" }.to_owned(),
                look: if h.succeeded {
                    Look::Hook
                } else {
                    Look::HookFailed
                },
                attempts: h.attempts.len(),
            })
        })
        .collect();
    by_start(&mut hooks);
    let mut after: Vec<Bar> = after.into_iter().map(step_bar).collect();
    by_start(&mut after);
    steps.extend(hooks);
    steps.extend(after);
    steps.extend(host_bars(record));
    steps
}

/// With `[hosts]`: one bar per host, from its first step's start to its last
/// step's (or hook's) end, labelled with its batch.
fn host_bars(record: &Record) -> Vec<Bar> {
    record
        .hosts
        .iter()
        .map(|host| {
            let mut from = u64::MAX;
            let mut to = 0;
            let mut undone = false;
            for step in record
                .steps
                .iter()
                .filter(|s| s.host.as_ref() == Some(&host.name))
            {
                if let (Some(start), Some(end)) = (step.started_ms, step.ended_ms) {
                    from = from.min(start);
                    to = to.max(end);
                }
                if let Some(hook) = &step.rollback {
                    from = from.min(hook.started_ms);
                    to = to.max(hook.ended_ms);
                    undone = true;
                }
            }
            let look = match (host.failed, undone) {
                _ if host.status.contains("INCOMPLETE") => Look::RollbackFailed,
                (true, true) => Look::FailedUndone,
                (true, false) => Look::Failed,
                (false, true) => Look::RolledBack,
                (false, false) => Look::Succeeded,
            };
            Bar {
                label: match host.batch {
                    Some(b) => format!("host {} (batch {})", host.name, b + 1),
                    None => format!("host {}", host.name),
                },
                hook: false,
                span: (from <= to).then_some((from, to)),
                status: host.status.clone(),
                look,
                attempts: 0,
            }
        })
        .collect()
}

fn ms(value: u64) -> String {
    duration(Duration::from_millis(value))
}

/// The end of a window, for drawing: the end of the run when it was left on.
fn window_end(window: &Window, record: &Record) -> u64 {
    window.to_ms.unwrap_or(record.duration_ms)
}

/// How the window is told in words.
fn window_text(window: &Window) -> String {
    match window.to_ms {
        Some(to) => format!(
            "maintenance page from {} to {} ({})",
            ms(window.from_ms),
            ms(to),
            ms(to.saturating_sub(window.from_ms))
        ),
        None => format!(
            "maintenance page from {} to the end of the run, and LEFT ON",
            ms(window.from_ms)
        ),
    }
}

/// Cells of the text timeline's axis.
const CELLS: usize = 50;
const CELLS_U64: u64 = 50;

/// The timeline as text: a bar per step and hook on one axis, the maintenance
/// window as a row of its own.
pub(crate) fn text(record: &Record) -> String {
    let bars = bars(record);
    let total = record.duration_ms.max(1);
    let width = bars
        .iter()
        .map(|b| b.label.chars().count())
        .chain(std::iter::once("maintenance page".len()))
        .max()
        .unwrap_or(0);
    let cell = |at: u64| usize::try_from(at.saturating_mul(CELLS_U64) / total).unwrap_or(0);
    let row = |from: u64, to: u64, fill: char| {
        let start = cell(from).min(CELLS - 1);
        let end = cell(to).max(start + 1).min(CELLS);
        let mut line = String::new();
        for i in 0..CELLS {
            line.push(if (start..end).contains(&i) { fill } else { ' ' });
        }
        line
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTimeline ({} from start to end; one cell is {})",
        ms(record.duration_ms),
        ms(total / CELLS_U64)
    );
    let _ = writeln!(out, "  {:<width$} |{}|", "", "-".repeat(CELLS));
    for bar in &bars {
        match bar.span {
            Some((from, to)) => {
                let fill = if bar.hook { '=' } else { '#' };
                let _ = writeln!(
                    out,
                    "  {:<width$} |{}| {:>7} +{:<7} {}{}",
                    bar.label,
                    row(from, to, fill),
                    ms(from),
                    ms(to.saturating_sub(from)),
                    bar.status,
                    if bar.attempts > 1 {
                        format!(" ({} attempts)", bar.attempts)
                    } else {
                        String::new()
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {:<width$} |{}| {}",
                    bar.label,
                    " ".repeat(CELLS),
                    bar.status
                );
            }
        }
    }
    for window in &record.maintenance {
        let _ = writeln!(
            out,
            "  {:<width$} |{}| {}",
            "maintenance page",
            row(window.from_ms, window_end(window, record), '~'),
            window_text(window)
        );
    }
    if record.maintenance.is_empty() {
        let _ = writeln!(out, "  (no maintenance window: no toggle turned it on)");
    }
    if let Some(killed) = &record.killed {
        let _ = writeln!(
            out,
            "  {:<width$} |{}| runner (pid {}) died after {}; `runner recover` took over at {}",
            "runner died",
            row(killed.last_event_ms, killed.last_event_ms, '!'),
            killed.pid,
            duration(std::time::Duration::from_millis(killed.last_event_ms)),
            killed.recovered_at
        );
    }
    let _ = writeln!(
        out,
        "  # a step   = a rollback hook   ~ users get the maintenance page"
    );
    out
}

/// Text fit for an SVG text node: only characters XML 1.0 allows (no control
/// characters, no U+FFFE or U+FFFF), the others shown as U+FFFD.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => c,
            _ => '\u{FFFD}',
        })
        .collect()
}

/// A round step for the axis' ticks: 1, 2 or 5 times a power of ten, at most
/// ten ticks.
fn tick(total: u64) -> u64 {
    let mut step: u64 = 1;
    loop {
        for m in [1, 2, 5] {
            let Some(candidate) = step.checked_mul(m) else {
                return step;
            };
            if total / candidate <= 10 {
                return candidate;
            }
        }
        match step.checked_mul(10) {
            Some(next) => step = next,
            None => return step,
        }
    }
}

const LABEL_W: f64 = 230.0;
const CHART_W: f64 = 600.0;
const STATUS_W: f64 = 170.0;
const WIDTH: f64 = LABEL_W + CHART_W + STATUS_W;
/// Where the first row is drawn, and each row's height.
const TOP: f64 = 74.0;
const ROW_H: f64 = 24.0;

/// Where a time falls on the chart, and how tall its rows are.
struct Chart {
    total: u64,
    rows_h: f64,
}

impl Chart {
    #[allow(clippy::cast_precision_loss)]
    fn x(&self, at: u64) -> f64 {
        LABEL_W + CHART_W * (at.min(self.total) as f64) / (self.total as f64)
    }
}

/// A legend entry placed: its class, its name, its x and its row.
type Placed<'a> = (&'a str, &'a str, f64, f64);

/// The timeline as an SVG document.
pub(crate) fn svg(record: &Record) -> String {
    let bars = bars(record);
    let looks: std::collections::BTreeSet<Look> = bars
        .iter()
        .filter(|b| b.span.is_some())
        .map(|b| b.look)
        .collect();
    // The legend: the colours this run uses, and only those, in rows that fit.
    let mut entries: Vec<(&str, &str)> = looks
        .iter()
        .map(|look| (look.class().0, look.legend()))
        .collect();
    if !record.maintenance.is_empty() {
        entries.push(("maint", "maintenance page"));
    }
    let (placed, legend_rows) = place(entries);
    #[allow(clippy::cast_precision_loss)]
    let chart = Chart {
        total: record.duration_ms.max(1),
        rows_h: ROW_H * bars.len() as f64,
    };
    let height = TOP + chart.rows_h + 60.0 + 18.0 * legend_rows;
    let mut doc = head(record, &looks, height);
    // The maintenance windows, behind the bars.
    for window in &record.maintenance {
        doc = doc.add(window_band(&chart, window, record));
    }
    doc = axis(doc, &chart);
    for (i, bar) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = TOP + ROW_H * i as f64;
        doc = doc.add(bar_row(&chart, bar, y));
    }
    doc = doc.add(legend(placed, TOP + chart.rows_h + 34.0));
    format!("{doc}\n")
}

/// The legend's entries in rows no wider than the picture; how many rows
/// past the first.
fn place<'a>(entries: Vec<(&'a str, &'a str)>) -> (Vec<Placed<'a>>, f64) {
    let mut placed = Vec::with_capacity(entries.len());
    let (mut lx, mut row) = (10.0, 0.0);
    for (class, name) in entries {
        #[allow(clippy::cast_precision_loss)]
        let entry_w = 20.0 + 7.0 * name.chars().count() as f64 + 24.0;
        if lx > 10.0 && lx + entry_w > WIDTH {
            (lx, row) = (10.0, row + 1.0);
        }
        placed.push((class, name, lx, row));
        lx += entry_w;
    }
    (placed, row)
}

/// The document with its style, title, background and the run's two head lines.
fn head(record: &Record, looks: &std::collections::BTreeSet<Look>, height: f64) -> Document {
    let classes = looks
        .iter()
        .map(|look| {
            let (class, colour) = look.class();
            format!(".{class} {{ fill: {colour} }}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", (0, 0, WIDTH, height))
        .add(Style::new(format!(
            "text {{ font-family: sans-serif; font-size: 12px; fill: #222 }} \
             .head {{ font-size: 15px; font-weight: bold }} .axis {{ fill: #666; font-size: 10px }} \
             .maint {{ fill: #ffb74d; fill-opacity: 0.35 }} {classes}"
        )))
        .add(Title::new(clean(&format!(
            "runner: {} — run {}",
            record.plan, record.run_id
        ))))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "#fff"),
        )
        .add(
            Text::new(clean(&format!(
                "{} — run {} — {} (exit {}) in {}",
                record.plan,
                record.run_id,
                record.status.as_str(),
                record.exit_code,
                ms(record.duration_ms)
            )))
            .set("class", "head")
            .set("x", 10)
            .set("y", 22),
        )
        .add(
            Text::new(clean(&format!(
                "started {} by {} on {}",
                record.started_at, record.user, record.host
            )))
            .set("x", 10)
            .set("y", 42),
        )
}

/// A maintenance window: a band behind the rows, named below them.
fn window_band(chart: &Chart, window: &Window, record: &Record) -> Group {
    let (from, to) = (chart.x(window.from_ms), chart.x(window_end(window, record)));
    Group::new()
        .add(Title::new(window_text(window)))
        .add(
            Rectangle::new()
                .set("class", "maint")
                .set("x", from)
                .set("y", TOP - 6.0)
                .set("width", (to - from).max(1.0))
                .set("height", chart.rows_h + 6.0),
        )
        .add(
            Text::new("maintenance page")
                .set("class", "axis")
                .set("x", from + 2.0)
                .set("y", TOP + chart.rows_h + 12.0),
        )
}

/// The time axis: a line and a time at each round tick.
fn axis(mut doc: Document, chart: &Chart) -> Document {
    let step = tick(chart.total);
    let mut at = 0;
    while at <= chart.total {
        let x = chart.x(at);
        doc = doc
            .add(
                Line::new()
                    .set("x1", x)
                    .set("x2", x)
                    .set("y1", TOP - 10.0)
                    .set("y2", TOP + chart.rows_h)
                    .set("stroke", "#ddd"),
            )
            .add(
                Text::new(ms(at))
                    .set("class", "axis")
                    .set("x", x)
                    .set("y", TOP - 14.0)
                    .set("text-anchor", "middle"),
            );
        match at.checked_add(step) {
            Some(next) => at = next,
            None => break,
        }
    }
    doc
}

/// A bar's row at `y`: its label, its bar (if it ran) and its status.
fn bar_row(chart: &Chart, bar: &Bar, y: f64) -> Group {
    let mut group = Group::new().add(
        Text::new(clean(&bar.label))
            .set("x", LABEL_W - 8.0)
            .set("y", y + 15.0)
            .set("text-anchor", "end"),
    );
    let detail = match bar.span {
        Some((from, to)) => {
            group = group.add(
                Rectangle::new()
                    .set("class", bar.look.class().0)
                    .set("x", chart.x(from))
                    .set("y", y + 4.0)
                    .set("width", (chart.x(to) - chart.x(from)).max(2.0))
                    .set("height", ROW_H - 8.0)
                    .add(Title::new(clean(&format!(
                        "{}: {} at {} for {}",
                        bar.label,
                        bar.status,
                        ms(from),
                        ms(to.saturating_sub(from))
                    )))),
            );
            format!("{} · {}", bar.status, ms(to.saturating_sub(from)))
        }
        None => bar.status.clone(),
    };
    group.add(
        Text::new(clean(&detail))
            .set("x", LABEL_W + CHART_W + 8.0)
            .set("y", y + 15.0),
    )
}

/// The legend below the rows: a swatch and a name per entry.
fn legend(placed: Vec<Placed<'_>>, legend_y: f64) -> Group {
    let mut legend = Group::new();
    for (class, name, lx, row) in placed {
        let y = legend_y + 18.0 * row;
        legend = legend
            .add(
                Rectangle::new()
                    .set("class", class)
                    .set("x", lx)
                    .set("y", y - 10.0)
                    .set("width", 14)
                    .set("height", 12),
            )
            .add(Text::new(name).set("x", lx + 20.0).set("y", y));
    }
    legend
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick(900), 100);
        assert_eq!(tick(12_300), 2000);
        assert_eq!(tick(45_000), 5000);
        assert_eq!(tick(3), 1);
    }
}
