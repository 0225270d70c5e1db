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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a queued item costs besides its text and itself (allocations, their
/// bookkeeping), in bytes.
const ITEM_OVERHEAD: usize = 64;

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
    /// When the consumer last finished an item.
    progress: Instant,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    limit: usize,
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
        let mut state = self.0.lock();
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
        drop(state);
        self.0.wake.notify_one();
    }
}

/// The queue and its thread.
pub(crate) struct Lossy<T> {
    tx: Tx<T>,
    thread: JoinHandle<()>,
}

impl<T: Send + 'static> Lossy<T> {
    /// Starts the thread; `consume` gets every item in order.
    pub(crate) fn spawn(
        name: &str,
        limit: usize,
        mut consume: impl FnMut(Item<T>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                dropped: 0,
                closed: false,
                progress: Instant::now(),
            }),
            wake: Condvar::new(),
            limit,
        });
        let ours = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                loop {
                    let mut state = ours.lock();
                    while state.items.is_empty() && !state.closed {
                        state = ours
                            .wake
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.items.is_empty() {
                        return;
                    }
                    let batch = std::mem::take(&mut state.items);
                    state.bytes = 0;
                    drop(state);
                    for item in batch {
                        consume(item);
                        ours.lock().progress = Instant::now();
                    }
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
            // The wait for progress starts now, not at the last item.
            state.progress = state.progress.max(Instant::now() - stall / 2);
        }
        self.tx.0.wake.notify_one();
        loop {
            if self.thread.is_finished() {
                let _ = self.thread.join();
                return;
            }
            if self.tx.0.lock().progress.elapsed() > stall {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn drops_past_the_limit_counts_them_and_keeps_the_rest() {
        let (seen_tx, seen) = mpsc::channel();
        let (held_tx, held) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        // Room for two items of 5 bytes.
        let limit = 2 * (5 + std::mem::size_of::<String>() + ITEM_OVERHEAD);
        let lossy = Lossy::spawn("test", limit, move |item| {
            let _ = held_tx.send(());
            // Blocked until told, like a terminal nobody reads.
            let _ = go.recv();
            let _ = seen_tx.send(match item {
                Item::Value(v) => v,
                Item::Dropped(n) => format!("dropped {n}"),
            });
        })
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
        let lossy = Lossy::spawn("stuck", 10, |_item: Item<()>| {
            std::thread::sleep(Duration::from_secs(3600));
        })
        .unwrap();
        lossy.tx().push((), 0, false);
        let started = Instant::now();
        lossy.finish(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
