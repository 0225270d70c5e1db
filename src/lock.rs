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
    /// An engine's lock on this machine, held by another run.
    #[error("another run holds this machine's lock for the engine {engine} ({}): {holder}", path.display())]
    EngineHeld {
        engine: String,
        path: PathBuf,
        holder: String,
    },
    /// Something stands where an engine's lock goes that runner did not make.
    #[error("the lock {} cannot be trusted: {why}", path.display())]
    Untrusted { path: PathBuf, why: String },
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
            LockError::Held { .. } | LockError::EngineHeld { .. } => "wait for that run to end; the lock is released when its process exits, even if it crashes".to_owned(),
            LockError::Untrusted { path, .. } => format!(
                "something that is not runner's lock stands at {}: remove it (as root if need be), and check who put it there",
                path.display()
            ),
            LockError::Io { path, .. } => format!(
                "runner keeps its lock and its run records in {} beside the plan: \
                 run as a user who can write there, or make it writable for this one",
                path.parent().unwrap_or(path).display()
            ),
        }
    }
}

/// Takes the lock at `path`, waiting up to `wait` while another run holds
/// it: `say` is told whose it is when the wait begins, and how long it took
/// once taken. Past `wait`, the holder is the error, as without a wait.
pub(crate) fn acquire_within(
    path: &Path,
    holder: &Holder,
    wait: std::time::Duration,
    say: impl Fn(String),
) -> Result<Lock, LockError> {
    let began = std::time::Instant::now();
    let mut waiting = false;
    loop {
        match acquire(path, holder) {
            Err(LockError::Held { holder: by, .. }) if began.elapsed() < wait => {
                if !waiting {
                    waiting = true;
                    say(format!(
                        "waiting up to {} for the plan's lock, held by {}",
                        humantime::format_duration(wait),
                        by.map_or_else(
                            || "a run that has not written its name yet".to_owned(),
                            |h| h.to_string()
                        )
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(lock) => {
                if waiting {
                    say(format!(
                        "took the plan's lock after {:.1}s",
                        began.elapsed().as_secs_f64()
                    ));
                }
                return Ok(lock);
            }
            Err(held @ LockError::Held { .. }) if waiting => {
                say(format!(
                    "waited {:.1}s for the plan's lock: its holder still holds it",
                    began.elapsed().as_secs_f64()
                ));
                return Err(held);
            }
            Err(e) => return Err(e),
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
    // Never through a link, and only into a regular file: what is planted in
    // its place is not written through.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    LockError::Untrusted {
                        path: path.to_owned(),
                        why: "it is a symbolic link".to_owned(),
                    }
                } else {
                    io(e)
                }
            })?
    };
    if !file.metadata().map_err(io)?.is_file() {
        return Err(LockError::Untrusted {
            path: path.to_owned(),
            why: "it is not a regular file".to_owned(),
        });
    }
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

/// Takes this machine's lock for a Docker engine (`unix://…`, `tcp://…`, a
/// context): one per engine for every user and every copy of a plan, in the
/// machine's shared lock folder (the first of /run/lock, /var/lock, /tmp that
/// is root's, sticky and world-writable). The lock is a folder made with
/// `mkdir`, which never follows a link; one that exists is used only when it
/// is a real folder nobody else may write, owned by root, this user, or a
/// member of the docker group. Nothing is written into it.
pub(crate) fn acquire_engine(engine: &str, holder: &str) -> Result<Lock, LockError> {
    use std::os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    };
    let Some(dir) = shared_folder() else {
        return Err(LockError::Untrusted {
            path: PathBuf::from("/run/lock"),
            why: "no folder of this machine is root's, sticky and world-writable (/run/lock, /var/lock, /tmp)".to_owned(),
        });
    };
    let path = dir.join(format!("runner-engine-{}.lock", engine_key(engine)));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let group = deploy_group();
    match std::fs::DirBuilder::new().mode(0o700).create(&path) {
        // Its owner's and the deploy group's alone: nobody else can open
        // it, so nobody else can hold it and block a deploy.
        Ok(()) => {
            if let Some(gid) = group
                && std::os::unix::fs::chown(&path, None, Some(gid.as_raw())).is_ok()
            {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let untrusted = |why: String| LockError::Untrusted {
        path: path.clone(),
        why,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| untrusted(format!("it is not a folder runner made ({e})")))?;
    let meta = file.metadata().map_err(io)?;
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "others may write into it (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    if !trusted_owner(meta.uid()) {
        return Err(untrusted(format!(
            "it belongs to {}, who is not root, you, nor in the docker group",
            user_of(meta.uid())
        )));
    }
    if meta.mode() & 0o007 != 0 {
        // An earlier runner made it open to everyone (mode 755): closed when
        // it is this user's (or root runs), else refused.
        let me = nix::unistd::geteuid().as_raw();
        let mode = meta.mode() & 0o7770;
        if !(meta.uid() == me || me == 0)
            || std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).is_err()
        {
            return Err(untrusted(format!(
                "other users can open it (mode {:o}), who could hold it and block every deploy",
                meta.mode() & 0o7777
            )));
        }
    }
    match file.try_lock() {
        Ok(()) => {
            tracing::debug!(path = %path.display(), holder, "engine lock taken");
            Ok(Lock { _file: file })
        }
        Err(TryLockError::WouldBlock) => Err(LockError::EngineHeld {
            engine: engine.to_owned(),
            holder: holder_process(&meta)
                .unwrap_or_else(|| "its holder could not be read".to_owned()),
            path,
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The machine's folder for locks every user shares, that nobody can replace.
fn shared_folder() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    ["/run/lock", "/var/lock", "/tmp"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| {
            std::fs::symlink_metadata(dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o7777 == 0o1777)
        })
}

/// An engine's address as a file name: readable, and unique (a hash of the
/// whole address).
fn engine_key(engine: &str) -> String {
    let readable: String = engine
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    // FNV-1a: stable across builds, unlike the standard hasher.
    let hash = engine.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{readable}-{hash:016x}")
}

/// Whether a lock folder of `uid` may be used: root's, this user's, or a
/// docker group member's (who may run anything as root through docker).
/// The deploy group: `runner` where the machine has that group, else the
/// group of docker's socket.
fn deploy_group() -> Option<nix::unistd::Gid> {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("runner") {
        return Some(group.gid);
    }
    std::fs::metadata("/var/run/docker.sock")
        .ok()
        .map(|m| nix::unistd::Gid::from_raw(m.gid()))
}

fn trusted_owner(uid: u32) -> bool {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    let Ok(Some(group)) = nix::unistd::Group::from_name("docker") else {
        return false;
    };
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    user.gid == group.gid || group.mem.contains(&user.name)
}

fn user_of(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// The process that holds a `flock` on the file of `meta`, from the kernel's
/// table of locks: its pid, user and command line (control characters escaped).
fn holder_process(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let pid = flock_holder(meta)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| crate::remote::printable(&String::from_utf8_lossy(w)))
        .collect();
    let uid = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .ok();
    Some(format!(
        "pid {pid} of user {}: {}",
        uid.map_or_else(|| "?".to_owned(), user_of),
        command.join(" ")
    ))
}

/// The pid of the process that holds a `flock` on the file of `meta`, read
/// from `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`).
fn flock_holder(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let (major, minor) = (
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let number =
            |text: Option<&str>, radix| text.and_then(|t| u64::from_str_radix(t, radix).ok());
        (number(id.next(), 16) == Some(major)
            && number(id.next(), 16) == Some(minor)
            && number(id.next(), 10) == Some(meta.ino()))
        .then(|| fields.get(4)?.parse().ok())
        .flatten()
    })
}

/// Who holds the lock at `path` now, in words, read without touching it:
/// `None` when nobody does. The kernel's own table of file locks (`/proc/locks`) is read, so
/// the preview never takes the lock, not even for an instant a real run could
/// meet.
pub(crate) fn held(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    flock_holder(&meta)?;
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
