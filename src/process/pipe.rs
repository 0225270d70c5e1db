//! Reading a process's stdout or stderr in bounded memory, whatever it prints:
//! lines are cut at [`MAX_LINE`] bytes (the rest counted, not kept), what is kept
//! for a step's `capture` stops at [`KEEP_BYTES`], and a file copy streams.

use std::fmt::Write as _;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::engine::{Output, Stream};

/// The longest line shown or recorded, in bytes; a longer line is cut there and
/// says how many bytes were not shown.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// The most of a stream kept for `capture` and checks (`expect_output`).
pub(crate) const KEEP_BYTES: usize = 1 << 20;
/// The most lines of stderr kept for a diagnosis.
pub(crate) const KEEP_LINES: usize = 50;
/// Read at a time: small enough not to make the allocator trim and regrow its
/// heap around every step.
const CHUNK: usize = 8 * 1024;

/// What becomes of one output stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pipe {
    /// Each line goes to the run's output.
    pub(crate) show: bool,
    /// Kept: the first [`KEEP_BYTES`] bytes (stdout) or [`KEEP_LINES`] lines (stderr).
    pub(crate) keep: bool,
    /// Copied to this file instead of being shown.
    pub(crate) file: Option<PathBuf>,
}

impl Pipe {
    pub(crate) fn shown() -> Self {
        Self {
            show: true,
            ..Self::default()
        }
    }

    pub(crate) fn kept() -> Self {
        Self {
            keep: true,
            ..Self::default()
        }
    }
}

/// What reading a stream gave.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) bytes: Vec<u8>,
    pub(crate) lines: Vec<String>,
    /// Writing the file failed: why.
    pub(crate) file_error: Option<String>,
}

/// Reads `pipe` to its end as `pipe_to` says.
pub(crate) async fn read(
    mut pipe: impl AsyncRead + Unpin,
    stream: Stream,
    to: Pipe,
    output: Option<Output>,
) -> Read {
    let mut read = Read::default();
    let mut file = match &to.file {
        Some(path) => match create(path).await {
            Ok(file) => Some(file),
            Err(e) => {
                read.file_error = Some(format!("cannot write {}: {e}", path.display()));
                None
            }
        },
        None => None,
    };
    let mut lines = Lines::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if to.keep && stream != Stream::Stderr && read.bytes.len() < KEEP_BYTES {
            let room = KEEP_BYTES - read.bytes.len();
            read.bytes.extend_from_slice(&chunk[..room.min(n)]);
        }
        if to.file.is_some() {
            if let Some(f) = file.as_mut()
                && let Err(e) = f.write_all(chunk).await
            {
                read.file_error = Some(format!("cannot write its stdout: {e}"));
                file = None;
            }
            continue;
        }
        for line in lines.push(chunk) {
            emit(&mut read, &to, stream, output.as_ref(), line).await;
        }
    }
    if let Some(line) = lines.finish() {
        emit(&mut read, &to, stream, output.as_ref(), line).await;
    }
    if let Some(f) = file
        && let Err(e) = f.sync_all().await
    {
        read.file_error = Some(format!("cannot write its stdout: {e}"));
    }
    read
}

async fn create(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::File::create(path).await
}

async fn emit(read: &mut Read, to: &Pipe, stream: Stream, output: Option<&Output>, line: String) {
    if to.keep && stream == Stream::Stderr && read.lines.len() < KEEP_LINES {
        read.lines.push(line.clone());
    }
    if to.show
        && let Some(output) = output
    {
        output.line(stream, line).await;
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
struct Lines {
    current: Vec<u8>,
    /// Bytes of the current line beyond [`MAX_LINE`].
    cut: u64,
}

impl Lines {
    fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (part, rest) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], Some(&chunk[i + 1..])),
                None => (chunk, None),
            };
            let room = MAX_LINE.saturating_sub(self.current.len());
            let take = room.min(part.len());
            self.current.extend_from_slice(&part[..take]);
            self.cut += (part.len() - take) as u64;
            match rest {
                Some(rest) => {
                    out.push(self.take());
                    chunk = rest;
                }
                None => return out,
            }
        }
    }

    fn finish(&mut self) -> Option<String> {
        (!self.current.is_empty() || self.cut > 0).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut text = String::from_utf8_lossy(&self.current)
            .trim_end_matches('\r')
            .to_owned();
        if self.cut > 0 {
            let _ = write!(text, " … [{} bytes not shown]", self.cut);
        }
        self.current.clear();
        self.cut = 0;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_cuts_long_ones() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"one\ntw"), ["one"]);
        assert_eq!(lines.push(b"o\r\n"), ["two"]);
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(lines.push(&long).is_empty());
        let cut = lines.push(b"yy\nlast");
        assert_eq!(cut.len(), 1);
        assert!(
            cut[0].ends_with(" … [12 bytes not shown]"),
            "{}",
            &cut[0][MAX_LINE..]
        );
        assert_eq!(cut[0].len(), MAX_LINE + " … [12 bytes not shown]".len());
        assert_eq!(lines.finish().as_deref(), Some("last"));
        assert_eq!(lines.finish(), None);
    }
}
