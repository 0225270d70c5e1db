//! One run per plan at a time: a kernel file lock beside the plan.
//!
//! `flock` is released by the kernel when its holder exits, however it exits, so a
//! crashed or killed run never leaves a stale lock. The holder writes who it is into
//! the file, so a second run can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The holder is written padded to this many bytes.
const HOLDER_WIDTH: usize = 255;

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) started_at: String,
    pub(crate) run_id: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} (pid {}, user {}, host {}, started {})",
            self.run_id, self.pid, self.user, self.host, self.started_at
        )
    }
}

/// A held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("another run of this plan holds its lock {}: {}", path.display(), holder.as_ref().map_or_else(|| "its holder has not written its name yet".to_owned(), ToString::to_string))]
    Held {
        path: PathBuf,
        holder: Option<Box<Holder>>,
    },
    #[error("cannot create the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockError {
    /// What the operator can do about it.
    pub(crate) fn help(&self) -> String {
        match self {
            LockError::Held { .. } => "wait for that run to end; the lock is released when its process exits, even if it crashes".to_owned(),
            LockError::Io { path, .. } => format!(
                "runner keeps its lock and its run records in {} beside the plan: \
                 run as a user who can write there, or make it writable for this one",
                path.parent().unwrap_or(path).display()
            ),
        }
    }
}

/// Takes the lock at `path` without waiting, and writes `holder` into it.
pub(crate) fn acquire(path: &Path, holder: &Holder) -> Result<Lock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Not truncated on open: the holder's name must survive a failed attempt.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path: path.to_owned(),
                holder: serde_json::from_str(&text).ok(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Written over the last holder, padded to a fixed width (JSON ignores the
    // trailing spaces), so the file is never truncated to nothing: on ext4 that
    // forces a flush to disk, a millisecond or two of every run.
    let mut text = serde_json::to_string(holder).unwrap_or_default();
    let width = text.len().max(HOLDER_WIDTH);
    text.extend(std::iter::repeat_n(' ', width - text.len()));
    text.push('\n');
    let longer = file
        .metadata()
        .map_or(true, |m| m.len() > text.len() as u64);
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|()| {
            if longer {
                file.set_len(text.len() as u64)
            } else {
                Ok(())
            }
        })
        .and_then(|()| file.flush())
        .map_err(io)?;
    Ok(Lock { _file: file })
}

/// Who holds the lock at `path` now, in words, read without touching it:
/// `None` when nobody does. The kernel's own table of file locks (`/proc/locks`) is read, so
/// the preview never takes the lock, not even for an instant a real run could
/// meet.
pub(crate) fn held(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let (major, minor) = (
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
    );
    let locked = locks.lines().any(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; waiters have `->`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.get(1) != Some(&"FLOCK") {
            return false;
        }
        let mut id = fields.get(5).unwrap_or(&"").split(':');
        let number =
            |text: Option<&str>, radix| text.and_then(|t| u64::from_str_radix(t, radix).ok());
        number(id.next(), 16) == Some(major)
            && number(id.next(), 16) == Some(minor)
            && number(id.next(), 10) == Some(meta.ino())
    });
    if !locked {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Some(serde_json::from_str::<Holder>(&text).map_or_else(
        |_| "a run that has not written its name yet".to_owned(),
        |h| h.to_string(),
    ))
}

/// The current user's name, for the holder.
pub(crate) fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

pub(crate) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown host".to_owned())
}
