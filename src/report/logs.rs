//! `RUNNER_LOG=debug` (any `tracing` filter): runner's own debug log on stderr,
//! through a [`Lossy`] queue so that a stderr nobody reads (or a closed one, as in
//! `runner apply … 2>&1 | head -3`) never holds back or breaks a run.

use std::io::Write;

use super::lossy::{Consumer, Item, Lossy, Tx};
use crate::mask::Masker;

/// Log lines waiting to be written, in bytes, before lines are dropped.
const QUEUE_BYTES: usize = 1 << 20;

/// Starts the debug log when `RUNNER_LOG` asks for it.
pub(crate) fn init() -> Option<Lossy<Vec<u8>>> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNNER_LOG").ok()?;
    let queue = Lossy::spawn("runner-log", QUEUE_BYTES, Stderr(Vec::new())).ok()?;
    let tx = queue.tx();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogWriter(tx.clone()))
        .try_init()
        .ok()?;
    Some(queue)
}

/// Writes each batch of log lines to stderr at once.
struct Stderr(Vec<u8>);

impl Consumer<Vec<u8>> for Stderr {
    fn item(&mut self, item: Item<Vec<u8>>) {
        match item {
            Item::Value(bytes) => self.0.extend_from_slice(&bytes),
            Item::Dropped(lines) => self
                .0
                .extend_from_slice(format!("… {lines} log lines not shown\n").as_bytes()),
        }
    }

    fn flush(&mut self) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&self.0);
        let _ = err.flush();
        self.0.clear();
    }
}

/// The plan's secrets, once it is loaded: the log masks them too.
static MASKER: std::sync::OnceLock<Masker> = std::sync::OnceLock::new();

/// Masks the plan's secrets in every log line from now on.
pub(crate) fn mask_with(masker: &Masker) {
    let _ = MASKER.set(masker.clone());
}

/// One formatted event per write.
struct LogWriter(Tx<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bytes = match MASKER.get() {
            Some(masker) => masker.mask(&String::from_utf8_lossy(buf)).into_bytes(),
            None => buf.to_vec(),
        };
        self.0.push(bytes, buf.len(), true);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
