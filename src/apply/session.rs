//! A command that runs units through the engine: its run id, the async
//! runtime, and the interrupts, listened to before anything else happens.

use std::time::SystemTime;

use crate::engine;
use crate::error::Error;
use crate::process;

/// A command that runs units through the engine: its id and start, the async
/// runtime, and the interrupts, listened to before anything else happens.
pub(crate) struct Session {
    pub(crate) started_at: SystemTime,
    pub(crate) run_id: String,
    runtime: tokio::runtime::Runtime,
    interrupts: engine::Interrupts,
    /// Sends what stops the run as a signal does (a host's lock lost).
    pub(crate) interrupter: engine::signals::Sender,
}

impl Session {
    pub(crate) fn start() -> Result<Self, Error> {
        let started_at = SystemTime::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Start(format!("cannot start the async runtime: {e}")))?;
        let (interrupter, interrupts) = {
            let _context = runtime.enter();
            engine::signals::listen()
                .map_err(|e| Error::Start(format!("cannot install the signal handlers: {e}")))?
        };
        Ok(Self {
            started_at,
            run_id: run_id(started_at),
            runtime,
            interrupts,
            interrupter,
        })
    }

    /// Runs the engine to the end of the run (`run` is given the session's
    /// interrupts); nothing the units started outlives it.
    pub(crate) fn run<'a>(
        self,
        run: impl FnOnce(engine::Interrupts) -> engine::Run<'a>,
    ) -> engine::Report {
        process::adopt_orphans();
        let report = self.runtime.block_on(async {
            let report = engine::run(run(self.interrupts)).await;
            process::end_adopted().await;
            report
        });
        // A host probe's request may still be finishing on a blocking thread; it
        // ends by its own limit, and runner does not wait for it.
        self.runtime.shutdown_background();
        report
    }
}

/// A sortable, unique run id: `20261125T101500Z-1f3a`.
fn run_id(at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{stamp}-{:04x}",
        (nanos ^ std::process::id().rotate_left(16)) & 0xffff
    )
}
