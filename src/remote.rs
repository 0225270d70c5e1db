//! Several hosts: each host's own Docker engine, reached through an SSH
//! connection that runner owns (OpenSSH's `ControlMaster`), never an agent of ours.
//!
//! For each `ssh://` host, before anything changes:
//! 1. One master connection (`ssh -M -N`, batch mode, a connect timeout, server
//!    keepalives), its control socket under the plan's state folder. It is
//!    runner's child in a process group of its own (Ctrl-C on the terminal does
//!    not cut it mid-rollback) and it ends when runner ends, `kill -9` included
//!    (the parent-death signal).
//! 2. The host's lock: `flock` held by a session whose stdin is a pipe from
//!    runner. When runner dies, the pipe closes, the session ends and the host's
//!    kernel frees the lock: nothing is left to clean by hand.
//! 3. The docker decision on the host: `docker version`, else `sudo -n docker
//!    version` when the host's user is refused for permission.
//! 4. A local socket for the host's engine. Either the host's socket forwarded
//!    over the connection (no process per docker call), or, when the user reaches
//!    docker only through sudo (or the host refuses forwarding), a relay runner
//!    serves: each connection is one session running `[sudo -n] docker system
//!    dial-stdio`, with a bounded number of sessions at once (sshd's `MaxSessions`
//!    is 10 by default, and past it a multiplexed connection silently opens a
//!    new one).
//!
//! Docker commands for the host then run here with `DOCKER_HOST=unix://<socket>`:
//! kinds, shell steps, `{{ docker }}` and `{{ compose }}` alike.
//!
//! `unix://` and `tcp://` hosts and contexts that do not point at `ssh://` are
//! reached by docker itself (`DOCKER_HOST`, `DOCKER_CONTEXT`); their lock is this
//! machine's.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::docker::{self, Docker, Failure, Outcome, Probe};
use crate::plan::{Engine, Host, Plan};

/// How long the TCP connection and the SSH handshake may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a host may take to log runner in, past the connect timeout.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the lock and the docker probes may take on a host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay sessions at once on one connection: below sshd's `MaxSessions` (10 by
/// default), with room for the lock and a probe.
const MAX_SESSIONS: usize = 6;
/// The docker socket on a host, forwarded when its user may read it.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";
/// Overrides the ssh command (e.g. `ssh -F deploy/ssh_config`), as
/// `GIT_SSH_COMMAND` does for git.
pub(crate) const SSH_COMMAND_ENV: &str = "RUNNER_SSH_COMMAND";

/// The hosts of a run, connected and locked; dropping it closes every
/// connection, which frees the locks.
pub(crate) struct Hosts {
    pub(crate) list: Vec<Connected>,
    /// Where the control sockets and local sockets live.
    dir: PathBuf,
    /// A folder runner made for the sockets (the state folder's path was too
    /// long for a socket); removed at the end.
    temporary: bool,
}

/// A host, ready: its docker, and what keeps it reached.
pub(crate) struct Connected {
    pub(crate) name: String,
    /// How it is reached, as the plan gives it.
    pub(crate) engine: String,
    pub(crate) docker: Arc<Docker>,
    ssh: Option<Ssh>,
    /// The lock of a host not reached over ssh: this machine's.
    _lock: Option<crate::lock::Lock>,
}

/// What runner keeps open to a host reached over ssh.
struct Ssh {
    master: Child,
    /// The lock session: its stdin is runner's pipe.
    lock: Option<(Child, ChildStdin)>,
    /// The local socket runner listens on or forwards.
    socket: PathBuf,
    control: PathBuf,
}

/// Why a host cannot be used.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) host: String,
    pub(crate) engine: String,
    pub(crate) what: String,
    pub(crate) help: String,
    pub(crate) tried: Vec<Probe>,
}

/// An `ssh://[user@]host[:port]` address, checked when the plan was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) user: Option<String>,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl Target {
    pub(crate) fn parse(address: &str) -> Option<Self> {
        let rest = address.strip_prefix("ssh://")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, hp)) => (Some(user.to_owned()), hp),
            None => (None, authority),
        };
        let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
            let (host, after) = inner.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        (!host.is_empty() && !host.starts_with('-')).then(|| Self {
            user,
            host: host.to_owned(),
            port,
        })
    }

    fn shown(&self) -> String {
        let mut out = String::new();
        if let Some(user) = &self.user {
            let _ = write!(out, "{user}@");
        }
        out.push_str(&self.host);
        if let Some(port) = self.port {
            let _ = write!(out, ":{port}");
        }
        out
    }
}

/// The ssh command's words: `RUNNER_SSH_COMMAND`, else `ssh`.
pub(crate) fn ssh_words() -> Vec<String> {
    std::env::var(SSH_COMMAND_ENV)
        .ok()
        .and_then(|v| shlex::split(&v))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| vec!["ssh".to_owned()])
}

/// `ssh` with runner's options for `target` through the control socket, then
/// `extra` options, then the host; a remote command goes after.
fn ssh_argv(target: &Target, control: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = ssh_words();
    argv.extend(
        [
            "-S",
            &control.display().to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
        ]
        .map(str::to_owned),
    );
    if let Some(user) = &target.user {
        argv.extend(["-l".to_owned(), user.clone()]);
    }
    if let Some(port) = target.port {
        argv.extend(["-p".to_owned(), port.to_string()]);
    }
    argv.extend(extra.iter().map(|&e| e.to_owned()));
    argv.extend(["--".to_owned(), target.host.clone()]);
    argv
}

/// A command for the host's shell, its words quoted.
fn remote(words: &[&str]) -> String {
    shlex::try_join(words.iter().copied()).unwrap_or_default()
}

/// Connects every host of the plan at once; every host that cannot be used is
/// reported, with what to do.
pub(crate) fn connect(plan: &Plan, holder: &str) -> Result<Hosts, Vec<Problem>> {
    let (dir, temporary) = socket_dir(plan).map_err(|why| {
        vec![Problem {
            host: "(all)".into(),
            engine: String::new(),
            what: format!("cannot make a folder for the ssh sockets: {why}"),
            help: "check that the plan's folder is writable".into(),
            tried: Vec::new(),
        }]
    })?;
    let lock_name = lock_name(&plan.name);
    let began = Instant::now();
    // Masters are started here, on the main thread: the parent-death signal
    // follows the thread that started them.
    let mut started: Vec<Result<Starting, Problem>> = plan
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| start(host, i, &dir))
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
        let starting = match (starting, slot) {
            (Err(problem), _) | (Ok(_), Some(Err(problem))) => {
                problems.push(problem);
                continue;
            }
            (Ok(starting), _) => starting,
        };
        connected.push(starting);
    }
    // Lock sessions start from this thread; their answers and the docker
    // decisions are awaited in parallel.
    let mut locking = Vec::new();
    for starting in connected {
        match starting.begin_lock(&lock_name, holder, plan) {
            Ok(started) => locking.push(started),
            Err(problem) => problems.push(problem),
        }
    }
    let at_once = locking.len();
    let decided = crate::parallel::each(locking, at_once, Locking::finish);
    tracing::debug!(elapsed = ?began.elapsed(), "hosts: docker decided");
    let mut list = Vec::new();
    for result in decided {
        match result {
            Ok(host) => list.push(host),
            Err(problem) => problems.push(problem),
        }
    }
    let hosts = Hosts {
        list,
        dir,
        temporary,
    };
    if problems.is_empty() {
        let mut hosts = hosts;
        let order: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
        hosts
            .list
            .sort_by_key(|c| order.iter().position(|&n| n == c.name));
        Ok(hosts)
    } else {
        // Dropping `hosts` closes what did connect.
        drop(hosts);
        let order: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
        problems.sort_by_key(|p| order.iter().position(|&n| n == p.host));
        Err(problems)
    }
}

/// Where the sockets go: `.runner/ssh` beside the plan, or a private temporary
/// folder when that path is too long for a unix socket (108 bytes).
fn socket_dir(plan: &Plan) -> std::io::Result<(PathBuf, bool)> {
    use std::os::unix::fs::DirBuilderExt as _;
    let state = plan.dir.join(".runner").join("ssh");
    // `<dir>/<host>-<pid>.ctl.XXXXXXXXXXXXXXXX` (ssh's temporary name) must fit.
    if state.as_os_str().len() + 60 < 100 {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state)?;
        return Ok((state, false));
    }
    // A name nobody can guess or take first, made 0700.
    let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("runner-ssh-XXXXXX"))
        .map_err(std::io::Error::from)?;
    Ok((dir, true))
}

/// The lock's name on a host: the plan's name, in characters any file system takes.
fn lock_name(plan: &str) -> String {
    plan.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A host whose connection is being made.
struct Starting {
    name: String,
    engine: String,
    how: How,
}

enum How {
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

fn start(host: &Host, index: usize, dir: &Path) -> Result<Starting, Problem> {
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
    let Some(target) = Target::parse(&address) else {
        return Err(problem(
            format!("`{address}` is not an ssh address"),
            "write ssh://user@host or ssh://user@host:port",
        ));
    };
    let pid = std::process::id();
    let control = dir.join(format!("{index}-{pid}.ctl"));
    let socket = dir.join(format!("{index}-{pid}.sock"));
    let log = dir.join(format!("{index}-{pid}.log"));
    let _ = std::fs::remove_file(&control);
    let argv = ssh_argv(
        &target,
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

/// Starts a helper process in a process group of its own (a Ctrl-C on the
/// terminal is runner's to handle), ended by the kernel when runner ends.
fn spawn(argv: &[String], stdin: Stdio, stdout: Stdio, stderr: Stdio) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    // SAFETY: `set_pdeathsig` is a single prctl(2) call, async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    crate::process::spawn_helper(|| command.spawn(), |c| Some(c.id()))
}

/// Waits for a helper and lets its process id go.
fn reap(child: &mut Child) {
    let _ = child.wait();
    crate::process::forget_helper(child.id());
}

impl Starting {
    /// `Some` once the master is logged in (its control socket is there), has
    /// failed, or `late` is true.
    fn poll(&mut self, late: bool) -> Option<Result<(), Problem>> {
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

    /// Takes the host's lock for the run.
    /// Starts taking the host's lock (from the main thread: the session ends
    /// with runner); [`Locking::finish`] waits for the answer.
    fn begin_lock(self, name: &str, holder: &str, plan: &Plan) -> Result<Locking, Problem> {
        let problem = |what: String, help: String| Problem {
            host: self.name.clone(),
            engine: self.engine.clone(),
            what,
            help,
            tried: Vec::new(),
        };
        let How::Ssh {
            target,
            master,
            control,
            log,
            socket,
        } = self.how
        else {
            let How::Docker(env) = self.how else {
                unreachable!()
            };
            // Not reached over ssh: the lock is this machine's, per engine.
            let path = plan
                .dir
                .join(".runner")
                .join(format!("host-{}.lock", lock_name(&self.engine)));
            let lock = crate::lock::acquire(&path, &holder_of(holder))
                .map_err(|e| problem(e.to_string(), e.help()))?;
            return Ok(Locking::Done(Locked {
                name: self.name,
                engine: self.engine,
                env,
                lock,
            }));
        };
        let _ = std::fs::remove_file(&log);
        let script = remote(&["sh", "-c", LOCK_SCRIPT, "runner-lock", name, holder]);
        let mut argv = ssh_argv(&target, &control, &[]);
        argv.push(script);
        let child = match spawn(&argv, Stdio::piped(), Stdio::piped(), Stdio::piped()) {
            Ok(child) => child,
            Err(e) => return Err(problem(format!("cannot run ssh: {e}"), String::new())),
        };
        Ok(Locking::Ssh {
            name: self.name,
            engine: self.engine,
            plan: plan.name.clone(),
            target,
            child,
            ssh: Ssh {
                master,
                lock: None,
                socket,
                control,
            },
        })
    }
}

/// A host whose lock is being taken.
enum Locking {
    Done(Locked),
    Ssh {
        name: String,
        engine: String,
        plan: String,
        target: Target,
        child: Child,
        ssh: Ssh,
    },
}

impl Locking {
    /// Decides how docker runs on the host while the lock session answers (the
    /// decision only reads), then waits for the lock: nothing changes before.
    fn finish(self) -> Result<Connected, Problem> {
        let Locking::Ssh {
            name,
            engine,
            plan,
            target,
            mut child,
            ssh,
        } = self
        else {
            let Locking::Done(locked) = self else {
                unreachable!()
            };
            return locked.decide();
        };
        let mut connected = match decide_ssh(name.clone(), engine.clone(), &target, ssh) {
            Ok(connected) => connected,
            Err(problem) => {
                // Its connection is closed: the lock session ends with it.
                let _ = child.kill();
                reap(&mut child);
                return Err(problem);
            }
        };
        match lock_answer(child, &plan) {
            Ok(held) => {
                if let Some(ssh) = connected.ssh.as_mut() {
                    ssh.lock = Some(held);
                }
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

/// The lock session's answer: the session, held, or what went wrong and what
/// to do.
fn lock_answer(mut child: Child, plan: &str) -> Result<(Child, ChildStdin), (String, String)> {
    let stdin = child.stdin.take();
    let first = first_line(&mut child, PROBE_TIMEOUT);
    match (first, stdin) {
        (Ok(line), Some(stdin)) if line == "locked" => Ok((child, stdin)),
        (Ok(line), _) if line.starts_with("held") => {
            let _ = child.kill();
            reap(&mut child);
            let by = line.trim_start_matches("held").trim();
            Err((
                format!(
                    "another run holds this host's lock for plan `{plan}`: {}",
                    if by.is_empty() { "(no holder recorded)" } else { by }
                ),
                "wait for that run to end; its lock is freed the moment it ends, even if it is killed".into(),
            ))
        }
        (result, _) => {
            let _ = child.kill();
            let pid = child.id();
            let stderr = child
                .wait_with_output()
                .map(|o| o.stderr)
                .unwrap_or_default();
            crate::process::forget_helper(pid);
            let said = match result {
                Ok(line) => line,
                Err(why) => why,
            };
            let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
            if session_refused(&stderr) {
                return Err((
                    format!("the host refuses a session on runner's connection ({stderr})"),
                    HELP_SESSIONS.into(),
                ));
            }
            Err((
                format!(
                    "cannot take the lock on the host: {}",
                    if stderr.is_empty() { said } else { stderr }
                ),
                "the host needs a POSIX `sh` and `flock` (util-linux); sshd may refuse sessions (MaxSessions)".into(),
            ))
        }
    }
}

/// Runs on a host: takes the lock in the host's /run/lock (else /tmp) and holds
/// it until its stdin closes (runner ended, or died).
const LOCK_SCRIPT: &str = r#"d=/run/lock
[ -d "$d" ] && [ -w "$d" ] || d=/tmp
f="$d/runner-$1.lock"
command -v flock >/dev/null 2>&1 || { echo "no flock on this host"; exit 69; }
# Any deploy user of the host may open it: the lock is the host's, not a user's.
(umask 000; : >>"$f"; : >>"$f.holder") 2>/dev/null
exec 9<"$f" || exit 70
if flock -n 9; then
  printf '%s\n' "$2" > "$f.holder"
  echo locked
  cat >/dev/null
  exit 0
fi
printf 'held %s\n' "$(cat "$f.holder" 2>/dev/null)"
exit 75"#;

fn holder_of(text: &str) -> crate::lock::Holder {
    crate::lock::Holder {
        pid: std::process::id(),
        user: crate::lock::user_name(),
        host: crate::lock::host_name(),
        started_at: String::new(),
        run_id: text.to_owned(),
    }
}

/// The first line a child prints on stdout, within `limit`.
fn first_line(child: &mut Child, limit: Duration) -> Result<String, String> {
    let Some(stdout) = child.stdout.take() else {
        return Err("no output".into());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(limit) {
        Ok(line) if line.is_empty() => Err("the session ended at once".into()),
        Ok(line) => Ok(line.trim().to_owned()),
        Err(_) => Err(format!("no answer within {}s", limit.as_secs())),
    }
}

/// What ssh's own words say went wrong, and what to do.
fn ssh_failure(target: &Target, said: &str, timed_out: bool) -> (String, String) {
    let at = target.shown();
    let port = target.port.unwrap_or(22);
    let lower = said.to_ascii_lowercase();
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let secs = CONNECT_TIMEOUT.as_secs();
    if lower.contains("remote host identification has changed") {
        return (
            format!("the host key of {at} has CHANGED since it was recorded in known_hosts"),
            "someone may be intercepting the connection, or the host was reinstalled: check with its administrator before removing the old key (`ssh-keygen -R HOST`)".into(),
        );
    }
    if lower.contains("host key verification failed")
        || lower.contains("no ed25519 host key is known")
    {
        return (
            format!(
                "the host key of {at} is unknown here (not in known_hosts), and runner never accepts a key on its own"
            ),
            format!(
                "check the key's fingerprint with the host's administrator, then record it: `ssh-keyscan -p {port} {} >> ~/.ssh/known_hosts`, or connect once with `ssh` and answer yes",
                target.host
            ),
        );
    }
    let (what, help) = if timed_out
        || lower.contains("timed out")
        || lower.contains("connection timeout")
    {
        (
            format!("{at} does not answer (no connection within {secs}s)"),
            "check that the host is up and that port {port} is open to this machine"
                .replace("{port}", &port.to_string()),
        )
    } else if lower.contains("connection refused") {
        (
            format!("{at} refuses connections on port {port}"),
            "check that sshd runs on the host and listens on that port".to_owned(),
        )
    } else if lower.contains("no route to host") || lower.contains("network is unreachable") {
        (
            format!("{at} is unreachable from this machine ({last})"),
            "check the address and this machine's network".to_owned(),
        )
    } else if lower.contains("could not resolve hostname") {
        (
            format!("the name of {at} does not resolve ({last})"),
            "check the host name in the plan, or use its address".to_owned(),
        )
    } else if lower.contains("permission denied") {
        (
            format!("{at} refuses to log runner in ({last})"),
            "runner logs in without prompts (BatchMode): load the key in ssh-agent or name it in ~/.ssh/config (IdentityFile), and check the user".to_owned(),
        )
    } else if lower.contains("connection closed")
        || lower.contains("kex_exchange_identification")
        || lower.contains("connection reset")
    {
        (
            format!("{at} closed the connection before login ({last})"),
            "sshd may be refusing bursts of connections (MaxStartups) or this address; try again, or check the host's sshd log".to_owned(),
        )
    } else {
        (
            format!(
                "cannot connect to {at}: {}",
                if last.is_empty() { "ssh ended without a word" } else { last }
            ),
            "try `ssh` to that host by hand; set RUNNER_SSH_COMMAND if runner must use other ssh options".to_owned(),
        )
    };
    (what, help)
}

/// Whether ssh says the host refused a new session on the connection.
fn session_refused(said: &str) -> bool {
    let said = said.to_ascii_lowercase();
    said.contains("open refused") || said.contains("administratively prohibited")
}

const HELP_SESSIONS: &str = "runner needs a few sessions on its connection at once (the lock, \
     probes, and up to 6 docker connections through sudo): raise `MaxSessions` in the host's \
     sshd_config (the default is 10)";

/// A host reached by docker itself, its lock (this machine's) held; its
/// docker is decided next.
struct Locked {
    name: String,
    engine: String,
    env: Vec<(String, String)>,
    lock: crate::lock::Lock,
}

impl Locked {
    fn decide(self) -> Result<Connected, Problem> {
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

fn help_for(failure: Failure) -> String {
    match failure {
        Failure::PermissionDenied | Failure::SudoNotAllowed | Failure::SudoPassword => {
            "on the host, add the user to the docker group, or allow it `sudo -n docker` without a password (a sudoers rule for /usr/bin/docker)".into()
        }
        Failure::NotFound => "install Docker Engine on the host".into(),
        Failure::TimedOut => "the host answers ssh but docker does not answer in time: check its daemon; sudo on a host whose own name does not resolve waits for DNS (add it to /etc/hosts)".into(),
        _ => "start the Docker daemon on the host (`sudo systemctl start docker`)".into(),
    }
}

fn decide_ssh(
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
    // Why not: ask docker on the host, then `sudo -n docker`.
    let over = |words: &[&str]| {
        let mut argv = ssh_argv(target, &ssh.control, &[]);
        argv.extend(words.iter().map(|&w| w.to_owned()));
        argv
    };
    let sudo = match docker::probe_into(
        &over(&["docker"]),
        &[],
        &mut tried,
        "docker version (on the host)",
    ) {
        Outcome::Answered(_) => false,
        Outcome::Failed(_, why) if session_refused(&why) => {
            return fail(
                &mut ssh,
                format!("the host refuses a session on runner's connection ({why})"),
                HELP_SESSIONS.into(),
                tried,
            );
        }
        Outcome::Failed(Failure::PermissionDenied, _) => match docker::probe_into(
            &over(&["sudo", "-n", "docker"]),
            &[],
            &mut tried,
            "sudo -n docker version (on the host)",
        ) {
            Outcome::Answered(_) => true,
            Outcome::Failed(failure, _) => {
                return fail(
                    &mut ssh,
                    "its user may not use docker, and `sudo -n docker` does not work there either"
                        .into(),
                    help_for(failure),
                    tried,
                );
            }
        },
        Outcome::Failed(failure, _) => {
            return fail(
                &mut ssh,
                "docker does not work on the host".into(),
                help_for(failure),
                tried,
            );
        }
    };
    // Through sudo (or where the socket cannot be forwarded): a relay.
    let mut words: Vec<String> = ssh_argv(target, &ssh.control, &[]);
    if sudo {
        words.extend(["sudo", "-n"].map(str::to_owned));
    }
    words.extend(["docker", "system", "dial-stdio"].map(str::to_owned));
    if let Err(e) = relay(&local, words) {
        return fail(
            &mut ssh,
            format!("cannot listen on {}: {e}", local.display()),
            "check that the plan's folder is writable".into(),
            tried,
        );
    }
    if !ping(&local, &mut tried, "GET /_ping (through the relay)") {
        return fail(
            &mut ssh,
            "docker answers on the host, but not through `docker system dial-stdio`".into(),
            "check that `docker system dial-stdio` works on the host (Docker 18.09 or later)"
                .into(),
            tried,
        );
    }
    let how = format!(
        "each connection a `{}docker system dial-stdio` session over runner's ssh connection (at most {MAX_SESSIONS} at once)",
        if sudo { "sudo -n " } else { "" }
    );
    let reason = if sudo {
        format!("the host's user is refused for permission and `sudo -n docker` answers; {how}")
    } else {
        format!("docker answers on the host, but not through its forwarded socket; {how}")
    };
    Ok(connected(
        name,
        engine,
        (host_env, tried, reason),
        Some(ssh),
        None,
    ))
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
    let argv = ssh_argv(target, control, &["-O", op, "-L", spec]);
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
        ssh,
        _lock: lock,
    }
}

/// Serves `socket`: each connection is piped to a new `words` process (a
/// session on the host), at most [`MAX_SESSIONS`] at once.
fn relay(socket: &Path, words: Vec<String>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let slots = Arc::new((Mutex::new(0usize), Condvar::new()));
    let words = Arc::new(words);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let slots = Arc::clone(&slots);
            let words = Arc::clone(&words);
            std::thread::spawn(move || {
                {
                    let (count, freed) = &*slots;
                    let mut count = count
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while *count >= MAX_SESSIONS {
                        count = freed
                            .wait(count)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    *count += 1;
                }
                pipe(stream, &words);
                let (count, freed) = &*slots;
                *count
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
                freed.notify_one();
            });
        }
    });
    Ok(())
}

/// Copies a local connection to a session's stdin, and its stdout back, until
/// either side ends.
fn pipe(stream: UnixStream, words: &[String]) {
    let Ok(mut child) = spawn(words, Stdio::piped(), Stdio::piped(), Stdio::null()) else {
        return;
    };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        reap(&mut child);
        return;
    };
    let Ok(mut reader) = stream.try_clone() else {
        let _ = child.kill();
        reap(&mut child);
        return;
    };
    // Not `std::io::copy`: from a unix socket into a pipe it splices, and the
    // kernel then waits for a full buffer before passing anything on.
    let upstream = std::thread::spawn(move || {
        forward(&mut reader, &mut stdin);
        // The client is done writing: the session's stdin ends.
        drop(stdin);
    });
    let mut writer = stream;
    forward(&mut stdout, &mut writer);
    let _ = writer.shutdown(std::net::Shutdown::Both);
    let _ = child.kill();
    reap(&mut child);
    let _ = upstream.join();
}

/// Copies what `from` gives to `to` as it comes, until either side ends.
fn forward(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

impl Ssh {
    /// Ends the lock session and the connection (freeing the lock on the host).
    fn close(&mut self) {
        if let Some((mut child, stdin)) = self.lock.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            reap(&mut child);
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

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &mut self.list {
            if let Some(ssh) = host.ssh.as_mut() {
                ssh.close();
            }
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} ({}): {}", self.host, self.engine, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ssh_addresses() {
        assert_eq!(
            Target::parse("ssh://deploy@10.0.0.1:2222"),
            Some(Target {
                user: Some("deploy".into()),
                host: "10.0.0.1".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            Target::parse("ssh://web1"),
            Some(Target {
                user: None,
                host: "web1".into(),
                port: None
            })
        );
        assert_eq!(Target::parse("ssh://-oProxyCommand=x"), None);
        assert_eq!(Target::parse("tcp://web1:2376"), None);
    }

    #[test]
    fn the_host_goes_after_a_double_dash() {
        let argv = ssh_argv(
            &Target::parse("ssh://deploy@web1:2222").unwrap(),
            Path::new("/s/c"),
            &[],
        );
        let tail: Vec<&str> = argv.iter().rev().take(2).map(String::as_str).collect();
        assert_eq!(tail, ["web1", "--"]);
        assert!(argv.windows(2).any(|w| w == ["-l", "deploy"]));
        assert!(argv.windows(2).any(|w| w == ["-p", "2222"]));
    }

    #[test]
    fn explains_ssh_failures() {
        let target = Target::parse("ssh://deploy@web1").unwrap();
        let (what, help) = ssh_failure(&target, "Host key verification failed.\n", false);
        assert!(
            what.contains("host key of deploy@web1 is unknown"),
            "{what}"
        );
        assert!(help.contains("ssh-keyscan"), "{help}");
        let (what, _) = ssh_failure(&target, "", true);
        assert!(what.contains("does not answer"), "{what}");
        let (what, _) = ssh_failure(
            &target,
            "ssh: connect to host web1 port 22: Connection refused\n",
            false,
        );
        assert!(what.contains("refuses connections on port 22"), "{what}");
    }
}

#[cfg(test)]
mod relay_tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    #[test]
    fn relays_a_connection_to_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("r.sock");
        relay(&socket, vec!["cat".to_owned()]).unwrap();
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"hello\n").unwrap();
        let mut buffer = [0u8; 6];
        stream.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"hello\n");
    }
}
