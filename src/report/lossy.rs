//! A writer thread that never blocks its caller.
//!
//! What runner prints goes through a queue to a thread of its own, so a terminal
//! that stops reading (a full pipe, `| (sleep 30)`, Ctrl-S) never holds back the
//! engine's timers and signals. Items that may be dropped (a step's output lines)
//! count against a byte limit; past it they are dropped and counted, and the
//! consumer is told how many before the next item it gets. Other items (what a
//! run did, the summary) are few and always kept. At the end, [`Lossy::finish`]
//! waits for the thread as long as it makes progress, and no longer.
//!
//! tracing-appender's non-blocking writer was not used for the debug log: when
//! its worker is stuck, its guard reports that with `println!`, which panics on a
//! closed stdout, the very fault this module exists to survive.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a queued item costs besides its text and itself (allocations, their
/// bookkeeping), in bytes.
const ITEM_OVERHEAD: usize = 64;
/// Once woken, the writer waits this long for more before it writes: one wake-up
/// per batch instead of one per line, unseen by a person.
const COALESCE: Duration = Duration::from_millis(10);

/// The writer thread's side: it gets every item in order, then writes each batch
/// at once (one system call, not one per line).
pub(crate) trait Consumer<T>: Send + 'static {
    fn item(&mut self, item: Item<T>);
    /// The end of a batch: write what the items made.
    fn flush(&mut self);
}

/// What the consumer gets.
pub(crate) enum Item<T> {
    Value(T),
    /// This many droppable items were dropped here.
    Dropped(u64),
}

struct State<T> {
    items: VecDeque<Item<T>>,
    /// Bytes of droppable items waiting.
    bytes: usize,
    dropped: u64,
    closed: bool,
    /// The consumer waits for items: a push must wake it.
    idle: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    limit: usize,
    /// When the consumer last finished an item, in microseconds from `start`.
    progress: AtomicU64,
    start: Instant,
}

impl<T> Shared<T> {
    fn mark_progress(&self) {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.progress.store(now, Ordering::Relaxed);
    }

    fn since_progress(&self) -> Duration {
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_micros(self.progress.load(Ordering::Relaxed)))
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The producer's side: cheap to clone, never blocks.
pub(crate) struct Tx<T>(Arc<Shared<T>>);

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Tx<T> {
    /// Queues `value`. A `droppable` one of `bytes` bytes is dropped (and
    /// counted) when the queue already holds the limit.
    pub(crate) fn push(&self, value: T, bytes: usize, droppable: bool) {
        // An item costs more than its text: itself, its allocations.
        let bytes = bytes + std::mem::size_of::<T>() + ITEM_OVERHEAD;
        let half = self.0.limit / 2;
        let mut state = self.0.lock();
        let before = state.bytes;
        if droppable {
            if state.bytes + bytes > self.0.limit {
                state.dropped += 1;
                return;
            }
            state.bytes += bytes;
        }
        if state.dropped > 0 {
            let dropped = std::mem::take(&mut state.dropped);
            state.items.push_back(Item::Dropped(dropped));
        }
        state.items.push_back(Item::Value(value));
        // Wake the writer when it waits for items, or when the queue fills up
        // while it gathers a batch.
        let wake = std::mem::take(&mut state.idle) || (before < half && state.bytes >= half);
        drop(state);
        if wake {
            self.0.wake.notify_one();
        }
    }
}

/// The queue and its thread.
pub(crate) struct Lossy<T> {
    tx: Tx<T>,
    thread: JoinHandle<()>,
}

impl<T: Send + 'static> Lossy<T> {
    /// Starts the thread; `consumer` gets every item in order.
    pub(crate) fn spawn(
        name: &str,
        limit: usize,
        mut consumer: impl Consumer<T>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                dropped: 0,
                closed: false,
                idle: false,
            }),
            wake: Condvar::new(),
            limit,
            progress: AtomicU64::new(0),
            start: Instant::now(),
        });
        let ours = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                loop {
                    let mut state = ours.lock();
                    while state.items.is_empty() && !state.closed {
                        state.idle = true;
                        state = ours
                            .wake
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.items.is_empty() {
                        return;
                    }
                    if !state.closed {
                        // Gather a batch, cut short when the queue closes or
                        // fills up: the end is not delayed, nothing is dropped
                        // while the writer waits.
                        let half = ours.limit / 2;
                        state = ours
                            .wake
                            .wait_timeout_while(state, COALESCE, |s| !s.closed && s.bytes < half)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    let batch = std::mem::take(&mut state.items);
                    state.bytes = 0;
                    drop(state);
                    for item in batch {
                        consumer.item(item);
                    }
                    consumer.flush();
                    ours.mark_progress();
                }
            })?;
        Ok(Self {
            tx: Tx(shared),
            thread,
        })
    }

    pub(crate) fn tx(&self) -> Tx<T> {
        self.tx.clone()
    }

    /// Waits until everything queued is written, as long as the thread makes
    /// progress (before something else writes to the same stream).
    pub(crate) fn drain(&self, stall: Duration) {
        self.tx.0.mark_progress();
        loop {
            {
                let state = self.tx.0.lock();
                if state.items.is_empty() && state.idle {
                    return;
                }
            }
            if self.tx.0.since_progress() > stall {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes the queue and waits for the thread while it makes progress; after
    /// `stall` without any, gives up (a reader that never reads cannot hold runner).
    pub(crate) fn finish(self, stall: Duration) {
        {
            let mut state = self.tx.0.lock();
            if state.dropped > 0 {
                let dropped = std::mem::take(&mut state.dropped);
                state.items.push_back(Item::Dropped(dropped));
            }
            state.closed = true;
        }
        // The wait for progress starts now, not at the last item written.
        self.tx.0.mark_progress();
        self.tx.0.wake.notify_one();
        let mut wait = Duration::from_micros(100);
        loop {
            if self.thread.is_finished() {
                let _ = self.thread.join();
                return;
            }
            if self.tx.0.since_progress() > stall {
                return;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A consumer made of a closure, flushing nothing.
    struct Each<F>(F);

    impl<T, F: FnMut(Item<T>) + Send + 'static> Consumer<T> for Each<F> {
        fn item(&mut self, item: Item<T>) {
            (self.0)(item);
        }

        fn flush(&mut self) {}
    }

    #[test]
    fn drops_past_the_limit_counts_them_and_keeps_the_rest() {
        let (seen_tx, seen) = mpsc::channel();
        let (held_tx, held) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        // Room for two items of 5 bytes.
        let limit = 2 * (5 + std::mem::size_of::<String>() + ITEM_OVERHEAD);
        let lossy = Lossy::spawn(
            "test",
            limit,
            Each(move |item| {
                let _ = held_tx.send(());
                // Blocked until told, like a terminal nobody reads.
                let _ = go.recv();
                let _ = seen_tx.send(match item {
                    Item::Value(v) => v,
                    Item::Dropped(n) => format!("dropped {n}"),
                });
            }),
        )
        .unwrap();
        let tx = lossy.tx();
        tx.push("first".to_owned(), 5, true);
        held.recv().unwrap();
        // The consumer holds `first`: the queue takes two more, then drops.
        for i in 0..5 {
            tx.push(format!("line {i}"), 5, true);
        }
        tx.push("kept".to_owned(), 0, false);
        tx.push("late".to_owned(), 5, true);
        for _ in 0..10 {
            let _ = go_tx.send(());
        }
        lossy.finish(Duration::from_secs(5));
        let seen: Vec<String> = seen.try_iter().collect();
        assert_eq!(
            seen,
            [
                "first",
                "line 0",
                "line 1",
                "dropped 3",
                "kept",
                "dropped 1"
            ]
        );
    }

    #[test]
    fn a_consumer_that_never_returns_does_not_hold_finish() {
        let lossy = Lossy::spawn(
            "stuck",
            10,
            Each(|_item: Item<()>| std::thread::sleep(Duration::from_secs(3600))),
        )
        .unwrap();
        lossy.tx().push((), 0, false);
        let started = Instant::now();
        lossy.finish(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
