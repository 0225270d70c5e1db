//! Interrupts: every signal that asks a run to stop, as one stream.
//!
//! Ctrl-C (SIGINT), SIGTERM, a closed terminal or ssh session (SIGHUP) and SIGQUIT
//! all mean the same: stop, roll back, say so. Once installed, none of them kills
//! runner outright, so a run always gets to its rollback and its record.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// A signal that asks the run to stop, or what else does as one (a host's
/// lock lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interrupt {
    /// `SIGINT`, `SIGTERM`, …, or the loss that stops the run, in words.
    pub(crate) signal: std::borrow::Cow<'static, str>,
    /// Running steps are ended at once, as a second signal does: what they
    /// act on may no longer be this run's (a host's lock lost).
    pub(crate) at_once: bool,
}

impl Interrupt {
    pub(crate) fn new(why: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            signal: why.into(),
            at_once: false,
        }
    }

    /// An interrupt that ends the running steps at once.
    pub(crate) fn at_once(why: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            at_once: true,
            ..Self::new(why)
        }
    }
}

/// Where interrupts that are not signals are sent, into the same stream.
pub(crate) type Sender = mpsc::UnboundedSender<Interrupt>;

const SIGNALS: [(SignalKind, &str); 4] = [
    (SignalKind::interrupt(), "SIGINT"),
    (SignalKind::terminate(), "SIGTERM"),
    (SignalKind::hangup(), "SIGHUP"),
    (SignalKind::quit(), "SIGQUIT"),
];

/// Installs the handlers (inside a tokio runtime) and returns their stream,
/// with a sender for the interrupts that are not signals.
pub(crate) fn listen() -> std::io::Result<(Sender, mpsc::UnboundedReceiver<Interrupt>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (kind, name) in SIGNALS {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(Interrupt::new(name)).is_err() {
                    break;
                }
            }
        });
    }
    Ok((tx, rx))
}
