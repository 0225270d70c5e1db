//! Several hosts: each host's own Docker engine, reached through an SSH
//! connection that runner owns (OpenSSH's `ControlMaster`), never an agent of ours.
//!
//! For each `ssh://` host, before anything changes, one file each:
//! 1. `target`: the address and the ssh command, whose host-key checks no
//!    configuration can lower.
//! 2. `master`: one master connection, its sockets in a private folder made
//!    for the run, ended by the kernel with runner.
//! 3. `lock`: the host's lock for the plan, a lease held by a session on that
//!    connection; losing it stops the run as an interrupt does.
//! 4. `decision`: how docker runs on the host (its socket forwarded, or a
//!    `relay` of `dial-stdio` sessions for a user who reaches docker through sudo).
//! 5. `diagnosis`: what ssh's and docker's words say went wrong, and what to do.
//!
//! Docker commands for the host then run here with `DOCKER_HOST=unix://<socket>`:
//! kinds, shell steps, `{{ docker }}` and `{{ compose }}` alike.
//!
//! `unix://` and `tcp://` hosts and contexts that do not point at `ssh://` are
//! reached by docker itself (`DOCKER_HOST`, `DOCKER_CONTEXT`); their lock is
//! this machine's, one per engine whatever folder the plan is in.

mod decision;
mod diagnosis;
mod lock;
mod master;
mod relay;
pub(crate) mod state;
mod target;

use std::time::{Duration, Instant};

use crate::plan::Plan;

pub(crate) use lock::Interrupts;
pub(crate) use target::CONNECT_TIMEOUT;
pub(crate) use target::printable;

pub(crate) use decision::Connected;
use decision::{Locked, decide_ssh};
pub(crate) use diagnosis::Problem;
use lock::{Held, Watch, lock_name};
use master::{How, SocketDir, Ssh, Starting, start};

/// How long a host may take to log runner in, past the connect timeout.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The hosts of a run, connected and locked; dropping it closes every
/// connection, which frees the locks.
pub(crate) struct Hosts {
    pub(crate) list: Vec<Connected>,
    /// Where the control sockets and local sockets live; removed at the end.
    dir: SocketDir,
}

impl Hosts {
    /// The run's sockets' folder: a journal names it, so that the recovery
    /// of a run that died removes it.
    pub(crate) fn sockets(&self) -> &std::path::Path {
        &self.dir.path
    }
}

/// Removes the sockets' folder a dead run left (see [`Hosts::sockets`]):
/// only a folder runner makes (`runner-ssh-…`, this user's, private), never
/// what stands there otherwise. Whether it removed one.
pub(crate) fn remove_sockets(path: &std::path::Path) -> bool {
    master::is_socket_dir(path) && std::fs::remove_dir_all(path).is_ok()
}

/// The sockets' folder, and each host's master connection started and
/// logged in (or why not), all at once.
fn masters(plan: &Plan) -> Result<(SocketDir, Vec<Starting>, Vec<Problem>), Vec<Problem>> {
    let ssh = target::ssh_command().map_err(|why| {
        Problem::all(
            why,
            "fix RUNNER_SSH_COMMAND (it is read as a shell would: quote each word that holds spaces), or unset it",
        )
    })?;
    let dir = SocketDir::make().map_err(|why| {
        Problem::all(
            format!("cannot make a private folder for the ssh sockets: {why}"),
            "check that $XDG_RUNTIME_DIR or the temporary folder ($TMPDIR, /tmp) is writable",
        )
    })?;
    let began = Instant::now();
    // Masters are started here, on the main thread: the parent-death signal
    // follows the thread that started them.
    let mut started: Vec<Result<Starting, Problem>> = plan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| start(host, i, &dir.path, &ssh))
        .collect();
    let mut ready: Vec<Option<Result<(), Problem>>> = started.iter().map(|_| None).collect();
    let deadline = Instant::now() + CONNECT_TIMEOUT + LOGIN_TIMEOUT;
    loop {
        let mut waiting = false;
        for (slot, starting) in ready.iter_mut().zip(started.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match starting {
                Err(_) => *slot = Some(Ok(())),
                Ok(starting) => match starting.poll(Instant::now() >= deadline) {
                    Some(result) => *slot = Some(result),
                    None => waiting = true,
                },
            }
        }
        if !waiting {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::debug!(elapsed = ?began.elapsed(), "hosts: connected");
    let mut problems = Vec::new();
    let mut connected = Vec::new();
    for (starting, slot) in started.into_iter().zip(ready) {
        match (starting, slot) {
            (Err(problem), _) | (Ok(_), Some(Err(problem))) => problems.push(problem),
            (Ok(starting), _) => connected.push(starting),
        }
    }
    Ok((dir, connected, problems))
}

/// Connects every host of the plan at once; every host that cannot be used is
/// reported, with what to do. A host's lock lost later is sent to
/// `interrupts`.
pub(crate) fn connect(
    plan: &Plan,
    holder: &str,
    interrupts: Option<&Interrupts>,
    lock_wait: Duration,
) -> Result<Hosts, Vec<Problem>> {
    let (dir, connected, mut problems) = masters(plan)?;
    let lock_name = lock_name(&plan.name);
    let began = Instant::now();
    // Lock sessions start from this thread; their answers and the docker
    // decisions are awaited in parallel.
    let mut locking = Vec::new();
    for starting in connected {
        match begin_lock(starting, &lock_name, holder, interrupts, lock_wait) {
            Ok(started) => locking.push(started),
            Err(problem) => problems.push(problem),
        }
    }
    let at_once = locking.len();
    let plan_name = plan.name.as_str();
    let decided = crate::parallel::each(locking, at_once, |l| l.finish(plan_name));
    tracing::debug!(elapsed = ?began.elapsed(), "hosts: docker decided");
    let mut list = Vec::new();
    for result in decided {
        match result {
            Ok(host) => list.push(host),
            Err(problem) => problems.push(problem),
        }
    }
    let order: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    let mut hosts = Hosts { list, dir };
    if problems.is_empty() {
        hosts
            .list
            .sort_by_key(|c| order.iter().position(|&n| n == c.name));
        Ok(hosts)
    } else {
        // Dropping `hosts` closes what did connect.
        drop(hosts);
        problems.sort_by_key(|p| order.iter().position(|&n| n == p.host));
        Err(problems)
    }
}

/// A host whose lock is being taken.
enum Locking {
    Done(Locked),
    Ssh(Box<SshLocking>),
}

/// A host reached over ssh whose lock session has started.
struct SshLocking {
    name: String,
    engine: String,
    target: target::Target,
    held: Held,
    ssh: Ssh,
}

/// Starts taking the host's lock (from the main thread: the session ends with
/// runner); [`Locking::finish`] waits for the answer.
fn begin_lock(
    starting: Starting,
    name: &str,
    holder: &str,
    interrupts: Option<&Interrupts>,
    lock_wait: Duration,
) -> Result<Locking, Problem> {
    let Starting {
        name: host,
        engine,
        how,
    } = starting;
    let problem = |what: String, help: String| Problem {
        host: host.clone(),
        engine: engine.clone(),
        what,
        help,
        tried: Vec::new(),
    };
    match how {
        How::Docker(env) => {
            // Not reached over ssh: the lock is this machine's, one per engine
            // whatever folder the plan is in.
            let lock = crate::lock::acquire_engine(&engine, holder)
                .map_err(|e| problem(e.to_string(), e.help()))?;
            Ok(Locking::Done(Locked {
                name: host,
                engine,
                env,
                lock,
            }))
        }
        How::Ssh {
            target,
            master,
            control,
            log,
            socket,
        } => {
            let _ = std::fs::remove_file(&log);
            let watch = Watch {
                host: host.clone(),
                interrupts: interrupts.cloned(),
            };
            let mut ssh = Ssh {
                master,
                lock: None,
                socket,
                control,
                target: target.clone(),
            };
            let held = match Held::begin(&target, &ssh.control, name, holder, watch, lock_wait) {
                Ok(held) => held,
                Err(e) => {
                    ssh.close();
                    return Err(problem(format!("cannot run ssh: {e}"), String::new()));
                }
            };
            Ok(Locking::Ssh(Box::new(SshLocking {
                name: host,
                engine,
                target,
                held,
                ssh,
            })))
        }
    }
}

impl Locking {
    /// Decides how docker runs on the host while the lock session answers (the
    /// decision only reads), then waits for the lock: nothing changes before.
    fn finish(self, plan: &str) -> Result<Connected, Problem> {
        let SshLocking {
            name,
            engine,
            target,
            held,
            ssh,
        } = match self {
            Locking::Done(locked) => return locked.decide(),
            Locking::Ssh(ssh) => *ssh,
        };
        let mut connected = match decide_ssh(name.clone(), engine.clone(), &target, ssh) {
            Ok(connected) => connected,
            Err(problem) => {
                // Its connection is closed: the lock session ends with it.
                held.release();
                return Err(problem);
            }
        };
        match held.answer(plan) {
            Ok((held, note)) => {
                if let Some(ssh) = connected.ssh.as_mut() {
                    ssh.lock = Some(held);
                }
                connected.note = note.map(|n| format!("{n}; this run took the host"));
                Ok(connected)
            }
            Err((what, help)) => {
                if let Some(ssh) = connected.ssh.as_mut() {
                    ssh.close();
                }
                Err(Problem {
                    host: name,
                    engine,
                    what,
                    help,
                    tried: Vec::new(),
                })
            }
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &mut self.list {
            if let Some(ssh) = host.ssh.as_mut() {
                ssh.close();
            }
        }
    }
}
