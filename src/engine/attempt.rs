//! The attempts of one task: each under one deadline the engine owns, retried
//! with backoff, ended early by the run's cancellation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::Settings;
use super::dispatcher::{Done, Msg};
use super::work::{Attempt, End, Outcome, Output, Work};
use super::{Task, retry};

/// After the engine cancels an attempt, how long the kind may take to end what
/// it started (SIGTERM, a grace, SIGKILL; in a container too) before the engine
/// stops waiting for it.
pub(crate) const CLEANUP: Duration = Duration::from_secs(10);

/// The run's cancellation, as a task sees it.
#[derive(Clone)]
pub(super) struct Stops {
    /// No new attempt starts (a first interrupt).
    pub(super) no_retry: CancellationToken,
    /// Running attempts end now (a second interrupt).
    pub(super) kill: CancellationToken,
}

/// Every attempt of one task, retries and waits included.
pub(super) async fn attempts(
    task: Task,
    work: Arc<dyn Work>,
    settings: Settings,
    tx: mpsc::Sender<Msg>,
    stops: Stops,
) -> Done {
    let total = settings.retries.saturating_add(1);
    let output = Output {
        task,
        tx: tx.clone(),
    };
    let mut number = 1;
    loop {
        let _ = tx.send(Msg::AttemptStarted(task, number)).await;
        let started = Instant::now();
        let mut outcome = one(&*work, number, settings.timeout, &stops.kill, &output).await;
        let duration = started.elapsed();
        let succeeded = outcome.end.success();
        let again = !succeeded
            && number < total
            && outcome.end != End::Killed
            && !stops.no_retry.is_cancelled();
        let retry_in = again.then(|| retry::delay(&settings, number));
        let captured = outcome.captured.take();
        let _ = tx
            .send(Msg::AttemptEnded {
                task,
                attempt: number,
                outcome,
                duration,
                retry_in,
            })
            .await;
        let Some(wait) = retry_in else {
            return Done {
                task,
                succeeded,
                captured,
            };
        };
        tokio::select! {
            () = sleep(wait) => {}
            () = stops.no_retry.cancelled() => {
                output.info("interrupted while waiting to retry: no new attempt".to_owned()).await;
                return Done { task, succeeded: false, captured: None };
            }
        }
        number += 1;
    }
}

/// One attempt under its deadline. When the deadline passes or `kill` fires, the
/// attempt is cancelled and given [`CLEANUP`] to end its processes; the engine
/// decides how it ended, the kind adds what became of them.
async fn one(
    work: &dyn Work,
    number: u32,
    limit: Duration,
    kill: &CancellationToken,
    output: &Output,
) -> Outcome {
    let cancel = CancellationToken::new();
    let deadline = Instant::now() + limit;
    let attempt = work.attempt(Attempt {
        number,
        deadline,
        cancel: cancel.clone(),
        output: output.clone(),
    });
    tokio::pin!(attempt);
    let end = tokio::select! {
        outcome = &mut attempt => return outcome,
        () = sleep_until(deadline) => End::TimedOut(limit),
        () = kill.cancelled() => End::Killed,
    };
    cancel.cancel();
    let detail = match timeout(CLEANUP, &mut attempt).await {
        Ok(outcome) => outcome.detail,
        Err(_) => Some(format!(
            "it did not end within {}s of being cancelled; its processes were killed",
            CLEANUP.as_secs()
        )),
    };
    Outcome {
        detail,
        ..Outcome::new(end)
    }
}
