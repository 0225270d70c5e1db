//! Runner's own ssh connection to a host: one OpenSSH master (`ssh -M -N`,
//! batch mode, a connect timeout, server keepalives) whose control socket
//! lives in a folder only runner's user can enter. It is runner's child in a
//! process group of its own (Ctrl-C on the terminal does not cut it
//! mid-rollback) and it ends when runner ends, `kill -9` included (the
//! parent-death signal).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::diagnosis::Problem;
use super::diagnosis::ssh_failure;
use super::lock::Held;
use super::target::{PROBE_TIMEOUT, Target, reap, spawn};
use crate::docker;
use crate::plan::{Engine, Host};

/// The sockets' folder of a run: made for it, private (0700, runner's user),
/// removed at the end. Never a folder that exists already: one that others
/// can write, or that someone else owns, could hold a planted link where
/// runner puts its control socket and the forwarded docker socket.
pub(super) struct SocketDir {
    pub(super) path: PathBuf,
}

impl SocketDir {
    /// A new folder with a name nobody can guess or take first, under the
    /// user's runtime folder (`$XDG_RUNTIME_DIR`, private to the user) when
    /// there is one, else the temporary folder.
    pub(super) fn make() -> std::io::Result<Self> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| private(p))
            .unwrap_or_else(std::env::temp_dir);
        let path = nix::unistd::mkdtemp(&base.join(format!("{PREFIX}XXXXXX")))
            .map_err(std::io::Error::from)?;
        Ok(Self { path })
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How the name of a sockets' folder begins.
const PREFIX: &str = "runner-ssh-";

/// Whether `path` is a sockets' folder as runner makes them: named so, this
/// user's, and private.
pub(super) fn is_socket_dir(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX))
        && private(path)
}

/// Whether `dir` is a folder of this user's that nobody else may enter.
fn private(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode().trailing_zeros() >= 6
    })
}

/// What runner keeps open to a host reached over ssh.
pub(super) struct Ssh {
    pub(super) master: Child,
    /// The lock session, watched for its lease.
    pub(super) lock: Option<Held>,
    /// The local socket runner listens on or forwards.
    pub(super) socket: PathBuf,
    pub(super) control: PathBuf,
    /// How the host is reached (for commands of runner's own on it).
    pub(super) target: Target,
}

impl Ssh {
    /// Ends the lock session and the connection (freeing the lock on the host).
    pub(super) fn close(&mut self) {
        if let Some(held) = self.lock.take() {
            held.release();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.master.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
        reap(&mut self.master);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.control);
    }
}

/// A host whose connection is being made.
pub(super) struct Starting {
    pub(super) name: String,
    pub(super) engine: String,
    pub(super) how: How,
}

pub(super) enum How {
    Ssh {
        target: Target,
        master: Child,
        control: PathBuf,
        log: PathBuf,
        socket: PathBuf,
    },
    /// Reached by docker itself, with these variables.
    Docker(Vec<(String, String)>),
}

/// Starts the master connection of `host` (its sockets in `dir`), or, for a
/// host docker reaches itself, says how.
pub(super) fn start(
    host: &Host,
    index: usize,
    dir: &Path,
    ssh: &[String],
) -> Result<Starting, Problem> {
    let (engine, ssh_address) = match &host.engine {
        Engine::Address(address) => (
            address.clone(),
            address.starts_with("ssh://").then(|| address.clone()),
        ),
        Engine::Context(context) => (format!("context {context}"), context_ssh(context)),
    };
    let problem = |what: String, help: &str| Problem {
        host: host.name.clone(),
        engine: engine.clone(),
        what,
        help: help.to_owned(),
        tried: Vec::new(),
    };
    let Some(address) = ssh_address else {
        let env = match &host.engine {
            Engine::Address(address) => vec![("DOCKER_HOST".to_owned(), address.clone())],
            Engine::Context(context) => vec![("DOCKER_CONTEXT".to_owned(), context.clone())],
        };
        return Ok(Starting {
            name: host.name.clone(),
            engine,
            how: How::Docker(env),
        });
    };
    let Some(target) = Target::new(&address, ssh) else {
        return Err(problem(
            format!("`{address}` is not an ssh address"),
            "write ssh://user@host or ssh://user@host:port",
        ));
    };
    let control = dir.join(format!("{index}.ctl"));
    let socket = dir.join(format!("{index}.sock"));
    let log = dir.join(format!("{index}.log"));
    let argv = target.argv(
        &control,
        &[
            "-M",
            "-N",
            "-o",
            "ControlPersist=no",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ExitOnForwardFailure=no",
        ],
    );
    let log_file = std::fs::File::create(&log)
        .map_err(|e| problem(format!("cannot write {}: {e}", log.display()), ""))?;
    let master = spawn(&argv, Stdio::null(), Stdio::null(), Stdio::from(log_file)).map_err(|e| {
        problem(
            format!("cannot run `{}`: {e}", argv[0]),
            "install OpenSSH's client (`apt-get install openssh-client`), or set RUNNER_SSH_COMMAND",
        )
    })?;
    Ok(Starting {
        name: host.name.clone(),
        engine,
        how: How::Ssh {
            target,
            master,
            control,
            log,
            socket,
        },
    })
}

/// The `ssh://` address a docker context points at, if it does.
fn context_ssh(context: &str) -> Option<String> {
    let argv: Vec<String> = [
        "docker",
        "context",
        "inspect",
        "--format",
        "{{.Endpoints.docker.Host}}",
        "--",
        context,
    ]
    .map(str::to_owned)
    .to_vec();
    let out = docker::briefly(&argv, PROBE_TIMEOUT).ok()?;
    let host = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && host.starts_with("ssh://")).then_some(host)
}

impl Starting {
    /// `Some` once the master is logged in (its control socket is there), has
    /// failed, or `late` is true.
    pub(super) fn poll(&mut self, late: bool) -> Option<Result<(), Problem>> {
        let How::Ssh {
            target,
            master,
            control,
            log,
            ..
        } = &mut self.how
        else {
            return Some(Ok(()));
        };
        if control.exists() {
            return Some(Ok(()));
        }
        let exited = master.try_wait().ok().flatten();
        if exited.is_none() && !late {
            return None;
        }
        if exited.is_none() {
            let _ = master.kill();
            reap(master);
        }
        let said = std::fs::read_to_string(&*log).unwrap_or_default();
        let (what, help) = ssh_failure(target, &said, exited.is_none());
        Some(Err(Problem {
            host: self.name.clone(),
            engine: self.engine.clone(),
            what,
            help,
            tried: Vec::new(),
        }))
    }
}
