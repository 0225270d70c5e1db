//! `RUNNER_LOG=debug` (any `tracing` filter): runner's own debug log on stderr,
//! through a [`Lossy`] queue so that a stderr nobody reads (or a closed one, as in
//! `runner apply … 2>&1 | head -3`) never holds back or breaks a run.

use std::io::Write;

use super::console::print_err;
use super::lossy::{Item, Lossy, Tx};

/// Log lines waiting to be written, in bytes, before lines are dropped.
const QUEUE_BYTES: usize = 1 << 20;

/// Starts the debug log when `RUNNER_LOG` asks for it.
pub(crate) fn init() -> Option<Lossy<Vec<u8>>> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNNER_LOG").ok()?;
    let queue = Lossy::spawn(
        "runner-log",
        QUEUE_BYTES,
        |item: Item<Vec<u8>>| match item {
            Item::Value(bytes) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&bytes);
                let _ = err.flush();
            }
            Item::Dropped(lines) => print_err(&format!("… {lines} log lines not shown\n")),
        },
    )
    .ok()?;
    let tx = queue.tx();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogWriter(tx.clone()))
        .try_init()
        .ok()?;
    Some(queue)
}

/// One formatted event per write.
struct LogWriter(Tx<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf.to_vec(), buf.len(), true);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
