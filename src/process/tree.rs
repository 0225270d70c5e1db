//! No process outlives its step.
//!
//! Each command runs in a process group of its own, and the group is signalled as
//! one. A daemon can leave the group (`setsid`) or clear its environment (`env
//! -i`); to still find it, runner makes itself a child subreaper: whatever a step
//! orphans becomes runner's child instead of init's. When a step ends, its tree is
//! what is left in its group, its leader's descendants, and the orphans runner
//! adopted that carry its marker (`RUNNER_EXEC_ID`) in their environment. An
//! orphan without a marker belongs to the step that just ended when no other
//! command runs; else it waits for the next sweep, and [`end_adopted`] ends every
//! orphan left when the run ends.
//!
//! Finding them costs little: a step's processes were created after its leader,
//! so only the process ids from the leader's to the last one allocated are read
//! (all of `/proc` when that range is large or wrapped).

use std::collections::{HashMap, HashSet};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep, timeout};

/// After SIGTERM, how long a process tree gets before SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(3);
/// Above this many process ids to look at, all of `/proc` is read instead.
const RANGE_LIMIT: i32 = 4096;
const POLL: Duration = Duration::from_millis(20);
/// The variable that marks every process runner starts for a step.
pub(crate) const MARKER: &str = "RUNNER_EXEC_ID";

struct Tracker {
    me: i32,
    /// Orphans of runner's commands become runner's children.
    subreaper: AtomicBool,
    /// The commands runner started and has not reaped yet, with their marker.
    live: Mutex<HashMap<i32, Option<String>>>,
    /// Adopted orphans without a marker, seen while other commands ran.
    pending: Mutex<HashSet<i32>>,
    /// runner's own helpers (ssh connections, relay sessions, image transfers):
    /// its children, never taken for what a step left behind.
    helpers: Mutex<HashSet<i32>>,
}

fn tracker() -> &'static Tracker {
    static TRACKER: OnceLock<Tracker> = OnceLock::new();
    TRACKER.get_or_init(|| Tracker {
        me: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        subreaper: AtomicBool::new(false),
        live: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashSet::new()),
        helpers: Mutex::new(HashSet::new()),
    })
}

/// Starts one of runner's own helpers with `spawn`: a sweep never takes it for
/// a step's orphan. `pid` reads its process id; [`forget_helper`] once reaped.
pub(crate) fn spawn_helper<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl Fn(&C) -> Option<u32>,
) -> std::io::Result<C> {
    let tracker = tracker();
    // Held across the spawn, as for a step's command.
    let _live = lock(&tracker.live);
    let child = spawn()?;
    if let Some(pid) = pid(&child).and_then(|p| i32::try_from(p).ok()) {
        lock(&tracker.helpers).insert(pid);
    }
    Ok(child)
}

/// The helper `pid` was reaped: its id may be reused.
pub(crate) fn forget_helper(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        lock(&tracker().helpers).remove(&pid);
    }
}

/// Makes runner the reaper of whatever its commands orphan, so a daemon that left
/// its step's group is still found. Without it (an old kernel), such a daemon is
/// only found while its step's leader runs.
pub(crate) fn adopt_orphans() {
    let adopted = nix::sys::prctl::set_child_subreaper(true).is_ok();
    tracker().subreaper.store(adopted, Ordering::Relaxed);
}

/// Starts `command` and tracks it; `marker` is its `RUNNER_EXEC_ID`.
pub(crate) fn spawn(
    command: &mut tokio::process::Command,
    marker: Option<&str>,
) -> std::io::Result<(tokio::process::Child, Group)> {
    let tracker = tracker();
    // Held across the spawn: a sweep never mistakes the new child for an orphan.
    let mut live = lock(&tracker.live);
    let child = command.spawn()?;
    let leader = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or_default();
    live.insert(leader, marker.map(str::to_owned));
    Ok((
        child,
        Group {
            leader,
            marker: marker.map(str::to_owned),
            ended: false,
        },
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A command's process tree: its group, and what escaped it.
pub(crate) struct Group {
    leader: i32,
    marker: Option<String>,
    ended: bool,
}

impl Group {
    pub(crate) fn leader(&self) -> i32 {
        self.leader
    }

    /// Ends the tree while its leader still runs: SIGTERM to all of it, then
    /// SIGKILL to what is left after [`GRACE`].
    pub(crate) async fn end(
        &self,
        child: &mut tokio::process::Child,
    ) -> std::io::Result<ExitStatus> {
        let members = self.members();
        tracing::debug!(group = self.leader, ?members, "ending a process tree");
        self.signal(&members, Signal::SIGTERM);
        if let Ok(status) = timeout(GRACE, child.wait()).await {
            status
        } else {
            self.signal(&self.members(), Signal::SIGKILL);
            child.wait().await
        }
    }

    /// Ends what the command left running once its leader exited: the rest of
    /// its group and the daemons that escaped it.
    pub(crate) async fn sweep(&mut self) {
        self.forget_leader();
        self.ended = true;
        let group_empty = killpg(Pid::from_raw(self.leader), None).is_err();
        // As the subreaper, runner is the parent of whatever the command left
        // behind: with no child at all, nothing escaped (one system call).
        if group_empty && tracker().subreaper.load(Ordering::Relaxed) && !has_children() {
            return;
        }
        let members = self.members();
        if members.is_empty() && group_empty {
            return;
        }
        tracing::debug!(
            group = self.leader,
            ?members,
            "ending what the step left running"
        );
        self.signal(&members, Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        loop {
            let left = reap(&self.members());
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                self.signal(&left, Signal::SIGKILL);
                let until = Instant::now() + Duration::from_millis(500);
                while !reap(&self.members()).is_empty() && Instant::now() < until {
                    sleep(POLL).await;
                }
                break;
            }
            sleep(POLL).await;
        }
    }

    fn forget_leader(&self) {
        lock(&tracker().live).remove(&self.leader);
    }

    fn signal(&self, members: &[Proc], signal: Signal) {
        let _ = killpg(Pid::from_raw(self.leader), signal);
        for member in members {
            let _ = kill(Pid::from_raw(member.pid), signal);
        }
    }

    /// Every process of the tree but the leader.
    fn members(&self) -> Vec<Proc> {
        let tracker = tracker();
        let live = lock(&tracker.live).clone();
        let helpers = lock(&tracker.helpers).clone();
        let mut procs = scan(self.leader);
        let mut pending = lock(&tracker.pending);
        for &pid in pending.iter() {
            if !procs.iter().any(|p| p.pid == pid)
                && let Some(p) = stat(pid)
            {
                procs.push(p);
            }
        }
        let others = live.keys().any(|&pid| pid != self.leader);
        let mut tree: HashSet<i32> = HashSet::from([self.leader]);
        for p in &procs {
            let adopted = p.ppid == tracker.me
                && !live.contains_key(&p.pid)
                && !helpers.contains(&p.pid)
                && is_process(p.pid);
            let ours = if p.pgrp == self.leader {
                true
            } else if adopted {
                match marker(p.pid) {
                    // Another command's, still running: its own sweep ends it.
                    Some(m)
                        if Some(&m) != self.marker.as_ref()
                            && live.values().any(|v| v.as_ref() == Some(&m)) =>
                    {
                        false
                    }
                    // Nobody's, while other commands run: it waits for a sweep
                    // that can tell, or the end of the run.
                    None if others => {
                        pending.insert(p.pid);
                        false
                    }
                    // Ours, or left by a command that has ended.
                    _ => true,
                }
            } else {
                false
            };
            if ours {
                pending.remove(&p.pid);
                tree.insert(p.pid);
            }
        }
        // Descendants, whatever their group or environment.
        loop {
            let before = tree.len();
            for p in &procs {
                if tree.contains(&p.ppid) {
                    tree.insert(p.pid);
                }
            }
            if tree.len() == before {
                break;
            }
        }
        procs
            .into_iter()
            .filter(|p| p.pid != self.leader && tree.contains(&p.pid))
            .collect()
    }
}

impl Drop for Group {
    /// An attempt dropped before its end (the engine stopped waiting for it)
    /// takes its whole tree with it.
    fn drop(&mut self) {
        if !self.ended {
            let members = self.members();
            self.signal(&members, Signal::SIGKILL);
            self.forget_leader();
        }
    }
}

/// Ends every orphan runner adopted and still holds, whoever started it: at the
/// end of a run, nothing a step started may be left.
pub(crate) async fn end_adopted() {
    if !has_children() {
        return;
    }
    let me = tracker().me;
    let adopted = || -> Vec<Proc> {
        let live = lock(&tracker().live).clone();
        let helpers = lock(&tracker().helpers).clone();
        all()
            .into_iter()
            .filter(|p| p.ppid == me && !live.contains_key(&p.pid) && !helpers.contains(&p.pid))
            .collect()
    };
    let found = adopted();
    if found.is_empty() {
        return;
    }
    tracing::debug!(?found, "ending orphans left by the run");
    for p in &found {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    loop {
        let left = reap(&adopted());
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for p in &left {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
            sleep(Duration::from_millis(100)).await;
            reap(&adopted());
            return;
        }
        sleep(POLL).await;
    }
}

/// Whether runner has a child at all, running or exited: one system call, where
/// finding which would read all of `/proc`.
fn has_children() -> bool {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED;
    !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}

/// Reaps the zombies among `procs` that are runner's children; returns the ones
/// still alive.
fn reap(procs: &[Proc]) -> Vec<Proc> {
    let me = tracker().me;
    procs
        .iter()
        .filter_map(|p| {
            let now = stat(p.pid)?;
            if now.zombie {
                if now.ppid == me {
                    let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
                }
                return None;
            }
            Some(now)
        })
        .collect()
}

/// A process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Proc> {
    use std::io::Read as _;
    // A plain read: `read_to_string` would also ask the file's size first.
    let mut buf = [0u8; 512];
    let n = std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read(&mut buf))
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    // `PID (COMM) STATE PPID PGRP …`: COMM may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z" || state == "X",
    })
}

/// Whether `id` is a process, not a thread of one: a thread's id reads like a
/// process's in `/proc`, with its process's parent, and a signal sent to it
/// reaches its whole process.
fn is_process(id: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{id}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|t| t.trim().parse::<i32>().ok())
            == Some(id)
    })
}

/// The processes created since `first` (a step's leader), or all of them
/// (threads among them when read by number: see [`is_process`]).
fn scan(first: i32) -> Vec<Proc> {
    let last = last_pid();
    match last {
        Some(last) if last >= first && last - first <= RANGE_LIMIT => {
            (first..=last).filter_map(stat).collect()
        }
        _ => all(),
    }
}

fn all() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

/// The last process id the kernel handed out.
fn last_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// A process's `RUNNER_EXEC_ID`, if it has one and runner may read it.
fn marker(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Ends what a run that died left running on this machine (its commands carry
/// `RUNNER_EXEC_ID=RUN/…`): SIGTERM, then SIGKILL for what is still there
/// after `grace`. Returns how many processes it found. A recovery must not
/// undo a step while the step still runs.
pub(crate) fn end_leftovers(run_id: &str, grace: std::time::Duration) -> usize {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let prefix = format!("{run_id}/");
    let me = i32::try_from(std::process::id()).unwrap_or_default();
    let find = || -> Vec<i32> {
        all()
            .into_iter()
            .filter(|p| !p.zombie && p.pid != me)
            .filter(|p| marker(p.pid).is_some_and(|m| m.starts_with(&prefix)))
            .map(|p| p.pid)
            .collect()
    };
    let found = find();
    for &pid in &found {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    let mut left = found.clone();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = find();
    }
    for pid in left {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    found.len()
}
