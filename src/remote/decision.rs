//! How docker runs on a host: the decision, made while the host's lock is
//! being taken (it only reads), and the local socket docker then uses.
//!
//! A user who may read the host's socket gets it forwarded over runner's
//! connection (no process per docker call). Else, when the user reaches docker
//! only through sudo (or the host refuses forwarding), a relay serves the
//! socket: each connection one `[sudo -n] docker system dial-stdio` session.
//! A host docker reaches itself (`unix://`, `tcp://`, a context) is asked
//! `docker version` with its variables.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use super::diagnosis::Problem;
use super::diagnosis::{HELP_SESSIONS, help_for, session_refused};
use super::master::Ssh;
use super::relay::{MAX_SESSIONS, relay};
use super::target::{PROBE_TIMEOUT, Target};
use crate::docker::{self, Docker, Failure, Outcome, Probe};

/// The docker socket on a host, forwarded when its user may read it.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// A host, ready: its docker, and what keeps it reached.
pub(crate) struct Connected {
    pub(crate) name: String,
    /// How it is reached, as the plan gives it.
    pub(crate) engine: String,
    pub(crate) docker: Arc<Docker>,
    /// What the host said of the run before: a lease that ran out.
    pub(crate) note: Option<String>,
    pub(super) ssh: Option<Ssh>,
    /// The lock of a host not reached over ssh: this machine's.
    pub(super) _lock: Option<crate::lock::Lock>,
}

/// A host reached by docker itself, its lock (this machine's) held; its
/// docker is decided next.
pub(super) struct Locked {
    pub(super) name: String,
    pub(super) engine: String,
    pub(super) env: Vec<(String, String)>,
    pub(super) lock: crate::lock::Lock,
}

impl Locked {
    pub(super) fn decide(self) -> Result<Connected, Problem> {
        let Locked {
            name,
            engine,
            env,
            lock,
        } = self;
        let words = vec!["docker".to_owned()];
        let mut tried = Vec::new();
        let outcome = docker::probe_into(&words, &env, &mut tried, "docker version");
        if let Outcome::Failed(failure, _) = outcome {
            return Err(Problem {
                host: name,
                what: format!("its Docker engine ({engine}) does not answer"),
                engine,
                help: help_for(failure),
                tried,
            });
        }
        let reason = format!("the engine at {engine} answers `docker version`");
        Ok(connected(
            name,
            engine,
            (env, tried, reason),
            None,
            Some(lock),
        ))
    }
}

pub(super) fn decide_ssh(
    name: String,
    engine: String,
    target: &Target,
    mut ssh: Ssh,
) -> Result<Connected, Problem> {
    let mut tried = Vec::new();
    let local = ssh.socket.clone();
    let host_env = vec![(
        "DOCKER_HOST".to_owned(),
        format!("unix://{}", local.display()),
    )];
    let fail = |ssh: &mut Ssh, what: String, help: String, tried: Vec<Probe>| {
        ssh.close();
        Err(Problem {
            host: name.clone(),
            engine: engine.clone(),
            what,
            help,
            tried,
        })
    };
    // The usual case first: a user who may read the host's socket gets it
    // forwarded over the connection, and docker answers through it.
    let forward = format!("{}:{REMOTE_SOCKET}", local.display());
    let forwarded = forward_socket(target, &ssh.control, "forward", &forward)
        && ping(
            &local,
            &mut tried,
            "GET /_ping (the host's socket, forwarded)",
        );
    if forwarded {
        let reason = format!(
            "docker answers through its socket {REMOTE_SOCKET}, forwarded over runner's ssh connection"
        );
        return Ok(connected(
            name,
            engine,
            (host_env, tried, reason),
            Some(ssh),
            None,
        ));
    }
    forward_socket(target, &ssh.control, "cancel", &forward);
    let _ = std::fs::remove_file(&local);
    let relayed = host_needs_sudo(target, &ssh, &mut tried)
        .and_then(|sudo| relay_through(target, &ssh, &local, sudo, &mut tried));
    match relayed {
        Ok(reason) => Ok(connected(
            name,
            engine,
            (host_env, tried, reason),
            Some(ssh),
            None,
        )),
        Err((what, help)) => fail(&mut ssh, what, help, tried),
    }
}

/// Why the host's socket did not answer forwarded: whether docker answers
/// on the host as its user (`false`) or through `sudo -n` (`true`); or what
/// to say (what failed, and a help) when neither does.
fn host_needs_sudo(
    target: &Target,
    ssh: &Ssh,
    tried: &mut Vec<Probe>,
) -> Result<bool, (String, String)> {
    let over = |words: &[&str]| {
        let mut argv = target.argv(&ssh.control, &[]);
        argv.extend(words.iter().map(|&w| w.to_owned()));
        argv
    };
    match docker::probe_into(
        &over(&["docker"]),
        &[],
        tried,
        "docker version (on the host)",
    ) {
        Outcome::Answered(_) => Ok(false),
        Outcome::Failed(_, why) if session_refused(&why) => Err((
            format!("the host refuses a session on runner's connection ({why})"),
            HELP_SESSIONS.into(),
        )),
        Outcome::Failed(Failure::PermissionDenied, _) => match docker::probe_into(
            &over(&["sudo", "-n", "docker"]),
            &[],
            tried,
            "sudo -n docker version (on the host)",
        ) {
            Outcome::Answered(_) => Ok(true),
            Outcome::Failed(failure, _) => Err((
                "its user may not use docker, and `sudo -n docker` does not work there either"
                    .into(),
                help_for(failure),
            )),
        },
        Outcome::Failed(failure, _) => {
            Err(("docker does not work on the host".into(), help_for(failure)))
        }
    }
}

/// Through sudo (or where the socket cannot be forwarded): a relay on
/// `local`, each connection a `docker system dial-stdio` session. The
/// decision's reason, or what failed and a help.
fn relay_through(
    target: &Target,
    ssh: &Ssh,
    local: &Path,
    sudo: bool,
    tried: &mut Vec<Probe>,
) -> Result<String, (String, String)> {
    let mut words: Vec<String> = target.argv(&ssh.control, &[]);
    if sudo {
        words.extend(["sudo", "-n"].map(str::to_owned));
    }
    words.extend(["docker", "system", "dial-stdio"].map(str::to_owned));
    if let Err(e) = relay(local, words) {
        return Err((
            format!("cannot listen on {}: {e}", local.display()),
            "check that the plan's folder is writable".into(),
        ));
    }
    if !ping(local, tried, "GET /_ping (through the relay)") {
        return Err((
            "docker answers on the host, but not through `docker system dial-stdio`".into(),
            "check that `docker system dial-stdio` works on the host (Docker 18.09 or later)"
                .into(),
        ));
    }
    let how = format!(
        "each connection a `{}docker system dial-stdio` session over runner's ssh connection (at most {MAX_SESSIONS} at once)",
        if sudo { "sudo -n " } else { "" }
    );
    Ok(if sudo {
        format!("the host's user is refused for permission and `sudo -n docker` answers; {how}")
    } else {
        format!("docker answers on the host, but not through its forwarded socket; {how}")
    })
}

/// Whether a Docker engine answers `GET /_ping` on `socket`: the API's own
/// health check, asked without starting a docker CLI (which costs tens of
/// milliseconds of CPU per host).
fn ping(socket: &Path, tried: &mut Vec<Probe>, shown: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let answer = (|| -> std::io::Result<String> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.take(16 * 1024).read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })();
    let (ok, result) = match answer {
        Ok(text) => {
            let status = text.lines().next().unwrap_or("").trim().to_owned();
            let server = text
                .lines()
                .find_map(|l| l.strip_prefix("Server: "))
                .map(str::trim);
            let ok = status.split_whitespace().nth(1) == Some("200");
            let result = match (ok, server) {
                (true, Some(server)) => format!("answered: {server}"),
                (true, None) => "answered".to_owned(),
                (false, _) if status.is_empty() => {
                    "the connection closed without an answer".to_owned()
                }
                (false, _) => format!("answered {status}"),
            };
            (ok, result)
        }
        Err(e) => (false, e.to_string()),
    };
    tried.push(Probe {
        command: shown.to_owned(),
        result,
    });
    ok
}

/// `ssh -O forward|cancel -L LOCAL:REMOTE`: whether the master agreed.
fn forward_socket(target: &Target, control: &Path, op: &str, spec: &str) -> bool {
    let argv = target.argv(control, &["-O", op, "-L", spec]);
    docker::briefly(&argv, PROBE_TIMEOUT).is_ok_and(|o| o.status.success())
}

/// A host ready: `docker` with `env` (how it reaches the host), what was
/// tried and why; what keeps it reached and locked.
fn connected(
    name: String,
    engine: String,
    (env, tried, reason): (Vec<(String, String)>, Vec<Probe>, String),
    ssh: Option<Ssh>,
    lock: Option<crate::lock::Lock>,
) -> Connected {
    Connected {
        docker: Arc::new(Docker {
            command: vec!["docker".to_owned()],
            available: true,
            reason,
            tried,
            help: None,
            compose: None,
            env,
        }),
        name,
        engine,
        note: None,
        ssh,
        _lock: lock,
    }
}
