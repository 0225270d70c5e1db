//! What the engine asks of a step kind: one attempt at a time.
//!
//! The engine owns the attempt's deadline and its cancellation. A kind's attempt
//! gets both, sends its output lines through [`Output`] (which never blocks on a
//! terminal: the engine reads them at once), and returns an [`Outcome`]. When the
//! engine cancels an attempt (timeout, second interrupt), the kind ends what it
//! started within a bounded grace; its outcome then only adds a detail, because the
//! engine already knows why the attempt ended.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Task;
use super::dispatcher::Msg;

/// One attempt of a step's work, in progress.
pub(crate) type Attempted<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// The work of one step or hook, its templates resolved: every attempt runs it.
pub(crate) trait Work: Send + Sync {
    fn attempt(&self, attempt: Attempt) -> Attempted<'_>;
}

/// What an attempt is given.
pub(crate) struct Attempt {
    /// 1 for the first attempt.
    pub(crate) number: u32,
    /// When the engine ends the attempt, whatever it is doing. Kinds with a
    /// limit of their own (an HTTP client's) keep it under this one.
    pub(crate) deadline: Instant,
    /// Cancelled on the deadline or a second interrupt: end every process now.
    pub(crate) cancel: CancellationToken,
    pub(crate) output: Output,
}

impl Attempt {
    /// The time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Where an attempt's output lines go.
#[derive(Clone)]
pub(crate) struct Output {
    pub(super) task: Task,
    pub(super) tx: mpsc::Sender<Msg>,
}

impl Output {
    pub(crate) async fn line(&self, stream: Stream, text: String) {
        // The dispatcher outlives every attempt; a send fails only if it is gone.
        let _ = self
            .tx
            .send(Msg::Line(self.task, Line { stream, text }))
            .await;
    }

    /// runner's own words about the attempt (which way it went, what it found).
    pub(crate) async fn info(&self, text: String) {
        self.line(Stream::Info, text).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stream {
    Stdout,
    Stderr,
    /// runner's own words about the step.
    Info,
}

impl Stream {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Info => "runner",
        }
    }
}

/// A line of output, as it comes.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) stream: Stream,
    pub(crate) text: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Exited(i32),
    Signaled(i32),
    /// The engine's deadline passed.
    TimedOut(Duration),
    /// Ended by a second interrupt.
    Killed,
    /// The process could not start.
    SpawnFailed(String),
    /// What was to run it refused it (docker: no such container, not
    /// running): the command never started, so it changed nothing.
    Refused(String),
    /// The step's own check failed (expected output, status, confirmation).
    Failed(String),
    /// runner itself failed (a panic in the step's task).
    Internal(String),
}

impl End {
    pub(crate) fn success(&self) -> bool {
        *self == End::Exited(0)
    }

    /// Whether the command never started: nothing it would do was done.
    pub(crate) fn never_started(&self) -> bool {
        matches!(self, End::SpawnFailed(_) | End::Refused(_))
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self {
            End::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// Why the attempt failed, in words.
    pub(crate) fn reason(&self) -> String {
        match self {
            End::Exited(code) => format!("exited with code {code}"),
            End::Signaled(sig) => match Signal::try_from(*sig) {
                Ok(signal) => format!("killed by signal {sig} ({})", signal.as_str()),
                Err(_) => format!("killed by signal {sig}"),
            },
            End::TimedOut(after) => format!(
                "timed out after {}; its process tree was ended",
                humantime::format_duration(*after)
            ),
            End::Killed => "killed by a second interrupt".to_owned(),
            End::SpawnFailed(why) => format!("could not start: {why}"),
            End::Refused(why) => format!("{why}: the command never started"),
            End::Failed(why) => why.clone(),
            End::Internal(why) => format!("internal error in runner: {why}"),
        }
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) end: End,
    /// The trimmed stdout, for a step that captures it.
    pub(crate) captured: Option<String>,
    /// More about how it ended (e.g. what became of a process in a container).
    pub(crate) detail: Option<String>,
    /// The way the attempt went, when its kind has several (which transport).
    pub(crate) transport: Option<String>,
}

impl Outcome {
    pub(crate) fn new(end: End) -> Self {
        Self {
            end,
            captured: None,
            detail: None,
            transport: None,
        }
    }
}

impl From<End> for Outcome {
    fn from(end: End) -> Self {
        Self::new(end)
    }
}
