//! The host's lock: one per host and plan, for every deploy user of the host,
//! held as a lease.
//!
//! A session on runner's connection runs [`LOCK_SCRIPT`]: it takes `flock` on
//! a folder of its own in a folder every user of the host shares (the first
//! of /run/lock, /var/lock, /tmp that is root's, sticky and world-writable:
//! the choice depends on the host alone, so every deploy user meets the same
//! lock). Only root and the host's deploy group (`runner` where the host has
//! that group, else docker's socket's) may take it: any other user is refused,
//! and the folder, mode 750 (its owner's and that group's), cannot be opened,
//! so nobody else can `flock` it and block a deploy. The lock is a folder made
//! with `mkdir`, which never follows a link; one that exists is used only when
//! it is a real folder that nobody else can write and that belongs to root, to
//! the user, or to a member of the deploy group (one an earlier runner left
//! open to reading is closed). Nothing is written outside that folder, so no
//! host user can make runner create or overwrite a file. Who holds a lock is
//! read from the kernel's own table (`/proc/locks`, then the command line of
//! the `flock` that holds it, read whole), never from a file anyone could
//! write.
//!
//! The lock is a lease: runner writes a line to the session every
//! [`HEARTBEAT`] and the session answers it. A session that hears nothing for
//! [`LEASE`] (runner killed, the host cut off while sshd keeps the session)
//! lets the lock go, leaving a note that the next run reads out. A runner that
//! hears no answer for [`LOST_AFTER`], or whose session ends, has lost the
//! host: it stops as on an interrupt.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::diagnosis::{HELP_SESSIONS, session_refused};
use super::target::{PROBE_TIMEOUT, Target, printable, reap, remote, spawn};
use crate::engine::Interrupt;

/// How often runner tells a host it is still there.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a host keeps a run's lock without hearing from it.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How long runner waits for the host's answers before it stops as having
/// lost the host's lock: shorter than the lease, so that it stops before the
/// host could give the lock to another run.
pub(crate) const LOST_AFTER: Duration = Duration::from_secs(15);

/// Where interrupts go: the run's stream, which a lost lock joins.
pub(crate) type Interrupts = crate::engine::signals::Sender;

/// The lock's name on a host: the plan's name, in characters any file system
/// takes.
pub(super) fn lock_name(plan: &str) -> String {
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

/// Runs on a host (`sh -c SCRIPT runner-lock NAME LEASE HOLD HOLDER`): checks
/// the lock's folder, then holds the lock with `flock` while [`HOLD_SCRIPT`]
/// runs under it. Else one line: `held PID USER HOLDER`, `bad WHY` or `missing
/// TOOL`. The holder is the last argument: the one a second run reads off the
/// command line of the `flock` process that holds the lock.
const LOCK_SCRIPT: &str = r#"name=$1 lease=$2 hold=$3 holder=$4 wait=${5:-0}
for t in flock timeout stat awk; do
  command -v "$t" >/dev/null 2>&1 || { echo "missing $t"; exit 69; }
done
d=
for c in /run/lock /var/lock /tmp; do
  if [ -d "$c" ] && [ ! -L "$c" ] && [ "$(stat -c '%u %a' "$c")" = "0 1777" ]; then d=$c; break; fi
done
[ -n "$d" ] || { echo "bad no folder of this host is root's, sticky and world-writable (/run/lock, /var/lock, /tmp)"; exit 76; }
f="$d/runner-$name.lock"
me=$(id -u) user=$(id -un)
dg=$(getent group runner 2>/dev/null | cut -d: -f3)
[ -n "$dg" ] || dg=$(stat -L -c %g /var/run/docker.sock 2>/dev/null)
gname=${dg:+$(getent group "$dg" 2>/dev/null | cut -d: -f1)}
gname=${gname:-$dg}
member() { [ -n "$dg" ] && case " $(id -G "$1" 2>/dev/null) " in *" $dg "*) true;; *) false;; esac; }
if [ "$me" != 0 ] && ! member "$user"; then
  echo "denied only root${gname:+ and the members of group $gname} may take runner's lock on this host, and $user is not${gname:+ in $gname}: the lock ($f) is mode 750, its owner's and that group's, so that no other user can hold it and block a deploy"; exit 77
fi
if mkdir -m 700 "$f" 2>/dev/null && [ -n "$dg" ]; then
  chgrp "$dg" "$f" 2>/dev/null && chmod 750 "$f"
fi
info=$(stat -c '%u:%a:%F' "$f" 2>/dev/null) || info='-:-:nothing'
owner=${info%%:*} rest=${info#*:}
mode=${rest%%:*} kind=${rest#*:}
[ "$kind" = directory ] || { echo "bad $f is not the folder runner makes: it is a $kind; remove it as root"; exit 76; }
g=${mode%?} o=${mode#"${mode%?}"}
g=${g#"${g%?}"}
case "$g$o" in *[2367]*) echo "bad $f can be written by others (mode $mode): remove it as root"; exit 76;; esac
if [ "$owner" != 0 ] && [ "$owner" != "$me" ]; then
  who=$(stat -c %U "$f")
  member "$who" || { echo "bad $f belongs to $who, who is not root, you, nor in group ${gname:-docker}: remove it as root"; exit 76; }
fi
if [ "$o" != 0 ]; then
  # An earlier runner made it open to everyone (mode 755).
  if [ "$owner" = "$me" ] || [ "$me" = 0 ]; then chmod o= "$f"
  else echo "bad $f can be opened by other users (mode $mode), who could hold it and block every deploy: remove it as root"; exit 76
  fi
fi
[ -r "$f" ] && [ -x "$f" ] || {
  echo "denied $user cannot open the lock $f (mode $mode, $(stat -c %U:%G "$f")): remove it as root, and runner makes it again for root${gname:+ and group $gname}"; exit 77
}
holding() {
  dev=$(stat -c %d "$f") ino=$(stat -c %i "$f")
  pid=$(awk -v dev="$dev" -v ino="$ino" 'BEGIN { id = sprintf("%02x:%02x:%s", int(dev / 256) % 4096, dev % 256 + int(dev / 1048576) * 256, ino) } $2 == "FLOCK" && $6 == id { print $5; exit }' /proc/locks 2>/dev/null)
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
    who=$(stat -c %U "/proc/$pid" 2>/dev/null)
    args=$(tr '\n\0' ' \n' < "/proc/$pid/cmdline")
    if [ "$(printf '%s\n' "$args" | tail -n 4 | head -n 1)" = runner-lock ]; then
      text=$(printf '%s\n' "$args" | tail -n 1)
    else
      text="a process that is not runner's: $(printf '%s' "$args" | tr '\n' ' ' | head -c 300)"
    fi
    printf '%s %s %s %s\n' "$1" "$pid" "${who:--}" "$text"
  else
    echo "$1 - - (its holder could not be read)"
  fi
}
flock -n -o -E 75 "$f" sh -c "$hold" runner-lock "$f" "$lease" "$holder"
s=$?
if [ "$s" -eq 75 ] && [ "$wait" -gt 0 ]; then
  holding waiting
  flock -w "$wait" -o -E 75 "$f" sh -c "$hold" runner-lock "$f" "$lease" "$holder"
  s=$?
fi
[ "$s" -eq 75 ] || exit "$s"
holding held
exit 75"#;

/// Runs under the host's lock (`sh -c HOLD runner-lock FOLDER LEASE HOLDER`):
/// says `locked` (with the note a lease that ran out left), then answers each
/// line runner writes with `alive`, until runner closes the session, stops
/// writing for the lease, or the `flock` that holds the lock is gone.
const HOLD_SCRIPT: &str = r#"f=$1 lease=$2 holder=$3
note=
if [ -f "$f/expired" ] && [ ! -L "$f/expired" ]; then
  note=$(head -c 600 "$f/expired" | tr -d '\n')
  rm -f "$f/expired" 2>/dev/null
fi
echo "locked $note"
while :; do
  beat=$(timeout "$lease" head -n 1)
  if [ $? -eq 124 ]; then
    printf '%s\t%s\n' "$holder" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$f/expired.$$" 2>/dev/null \
      && mv -f "$f/expired.$$" "$f/expired" 2>/dev/null
    exit 0
  fi
  [ -n "$beat" ] || exit 0
  kill -0 "$PPID" 2>/dev/null || exit 0
  echo alive
done"#;

/// A lock session: started, then answered; held, it is watched for its lease.
pub(crate) struct Held {
    child: Child,
    /// The session's stdin, written by the watcher; closed (taken) to let go.
    stdin: Arc<std::sync::Mutex<Option<ChildStdin>>>,
    closing: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    /// The session's first line, once (after a `waiting` line, when the
    /// lock was held and is waited for).
    answer: Receiver<String>,
    /// How long a held lock is waited for.
    wait: Duration,
    host: String,
}

impl Held {
    /// Starts the lock session for `target` over its connection (from the
    /// main thread: the session ends with runner), and its watcher.
    pub(super) fn begin(
        target: &Target,
        control: &std::path::Path,
        name: &str,
        holder: &str,
        who: Watch,
        wait: Duration,
    ) -> std::io::Result<Self> {
        let lease = LEASE.as_secs().to_string();
        let wait_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let host = who.host.clone();
        let script = remote(&[
            "sh",
            "-c",
            LOCK_SCRIPT,
            "runner-lock",
            name,
            &lease,
            HOLD_SCRIPT,
            holder,
            &wait_secs.to_string(),
        ]);
        let mut argv = target.argv(control, &[]);
        argv.push(script);
        let mut child = spawn(&argv, Stdio::piped(), Stdio::piped(), Stdio::piped())?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            reap(&mut child);
            return Err(std::io::Error::other("no pipe to the lock session"));
        };
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (answer_tx, answer) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let stdin = Arc::new(std::sync::Mutex::new(Some(stdin)));
        let watcher = {
            let closing = Arc::clone(&closing);
            let stdin = Arc::clone(&stdin);
            std::thread::spawn(move || watch(&stdin, &lines, &answer_tx, &closing, &who))
        };
        Ok(Self {
            child,
            stdin,
            closing,
            watcher: Some(watcher),
            answer,
            wait,
            host,
        })
    }

    /// The session's next line, or why none came within `timeout`.
    fn next_answer(&self, timeout: Duration) -> Result<String, String> {
        match self.answer.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("no answer within {}s", timeout.as_secs()))
            }
            Err(RecvTimeoutError::Disconnected) => Err("the session ended at once".to_owned()),
        }
    }

    /// The session's answer: held, or what went wrong and what to do. A
    /// lease that ran out before this run is told in the `Ok` note: whose, and
    /// when.
    pub(super) fn answer(mut self, plan: &str) -> Result<(Self, Option<String>), (String, String)> {
        let mut first = self.next_answer(PROBE_TIMEOUT);
        if let Ok(line) = &first
            && let Some(rest) = line.strip_prefix("waiting ")
        {
            let began = Instant::now();
            eprintln!(
                "runner: host {}: waiting up to {} for its lock for plan `{plan}`, held by {}",
                self.host,
                humantime::format_duration(self.wait),
                holder_text(rest)
            );
            first = self.next_answer(self.wait + PROBE_TIMEOUT);
            let took = began.elapsed().as_secs_f64();
            match &first {
                Ok(line) if line.starts_with("locked") => {
                    eprintln!("runner: host {}: took its lock after {took:.1}s", self.host);
                }
                _ => eprintln!(
                    "runner: host {}: waited {took:.1}s for its lock: its holder still holds it",
                    self.host
                ),
            }
        }
        let line = match first {
            Ok(line) if line == "locked" || line.starts_with("locked ") => {
                let note = line["locked".len()..].trim();
                let note = (!note.is_empty()).then(|| {
                    let (holder, at) = note.split_once('\t').unwrap_or((note, "?"));
                    format!(
                        "{}: its lease on the host ran out at {}",
                        printable(holder),
                        printable(at)
                    )
                });
                return Ok((self, note));
            }
            Ok(line) => line,
            Err(why) => why,
        };
        let stderr = self.stop();
        if let Some(rest) = line.strip_prefix("held ") {
            let by = holder_text(rest);
            return Err((
                format!("another run holds this host's lock for plan `{plan}`: {by}"),
                format!(
                    "a run that is still going holds it until it ends; one that ended without letting go (killed, or cut off from the host) loses it at most {}s after the host last heard from it: try again then",
                    LEASE.as_secs()
                ),
            ));
        }
        if let Some(why) = line.strip_prefix("denied ") {
            return Err((
                format!("this user may not take the host's lock: {}", printable(why)),
                "runner's lock on a host is for root and the host's deploy group: `runner` where the host has that group, else docker's; ask root to add the user to it (`usermod -aG GROUP USER`), as docs/hosts.md says".to_owned(),
            ));
        }
        if let Some(why) = line.strip_prefix("bad ") {
            return Err((
                format!("the host's lock cannot be trusted: {}", printable(why)),
                "runner's lock on a host is a folder runner makes in /run/lock (else /tmp); something else stands in its place, perhaps planted by another user of the host".to_owned(),
            ));
        }
        if let Some(tool) = line.strip_prefix("missing ") {
            return Err((
                format!(
                    "the host has no `{}`, which runner's lock needs",
                    printable(tool)
                ),
                "install util-linux (flock), coreutils (timeout, stat) and awk on the host"
                    .to_owned(),
            ));
        }
        if session_refused(&stderr) {
            return Err((
                format!(
                    "the host refuses a session on runner's connection ({})",
                    printable(&stderr)
                ),
                HELP_SESSIONS.into(),
            ));
        }
        Err((
            format!(
                "cannot take the lock on the host: {}",
                printable(if stderr.is_empty() { &line } else { &stderr })
            ),
            "the host needs a POSIX `sh`; sshd may refuse sessions (MaxSessions)".into(),
        ))
    }

    /// Ends the watcher and the session; what the session said on stderr.
    fn stop(&mut self) -> String {
        self.closing.store(true, Ordering::SeqCst);
        // The session's stdin closes now: the host lets the lock go at once.
        drop(
            self.stdin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        reap(&mut self.child);
        // Its session is over: the watcher sees its output end.
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        stderr.trim().to_owned()
    }

    /// Lets the lock go: the session's stdin closes, and the host's kernel
    /// frees the lock.
    pub(super) fn release(mut self) {
        let _ = self.stop();
    }
}

/// Who holds a host's lock, from the session's `PID USER TEXT`.
fn holder_text(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let (pid, user, text) = (
        words.next().unwrap_or("-"),
        words.next().unwrap_or("-"),
        words.next().unwrap_or(""),
    );
    if pid == "-" {
        printable(text)
    } else {
        format!(
            "{} (pid {} of user {} on the host)",
            printable(text),
            printable(pid),
            printable(user)
        )
    }
}

/// Who to tell when the host's lock is lost.
pub(super) struct Watch {
    pub(super) host: String,
    pub(super) interrupts: Option<Interrupts>,
}

/// The lease, from runner's side: a heartbeat every [`HEARTBEAT`], the first
/// line handed over, then every answer awaited. A lost lock is an interrupt.
fn watch(
    stdin: &std::sync::Mutex<Option<ChildStdin>>,
    lines: &Receiver<String>,
    answer: &mpsc::Sender<String>,
    closing: &AtomicBool,
    who: &Watch,
) {
    let mut held = false;
    let mut heard = Instant::now();
    let mut next_beat = Instant::now() + HEARTBEAT;
    let lost = |why: String| {
        if closing.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(host = %who.host, %why, "lost the host's lock");
        if let Some(interrupts) = &who.interrupts {
            let _ = interrupts.send(Interrupt::at_once(format!(
                "the loss of host {}'s lock ({why})",
                who.host
            )));
        }
    };
    loop {
        if closing.load(Ordering::SeqCst) {
            return;
        }
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if !held => {
                held = line == "locked" || line.starts_with("locked ");
                let waiting = line.starts_with("waiting ");
                let _ = answer.send(line);
                if !held && !waiting {
                    return;
                }
                heard = Instant::now();
            }
            Ok(_) => heard = Instant::now(),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if held {
                    lost("the lock session on the host ended".to_owned());
                }
                return;
            }
        }
        if Instant::now() >= next_beat {
            next_beat += HEARTBEAT;
            let written = stdin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
                .is_some_and(|pipe| {
                    pipe.write_all(b"beat\n")
                        .and_then(|()| pipe.flush())
                        .is_ok()
                });
            if !written {
                if held {
                    lost("the lock session on the host ended".to_owned());
                }
                return;
            }
        }
        if held && heard.elapsed() > LOST_AFTER {
            lost(format!(
                "no answer from the host for {}s",
                LOST_AFTER.as_secs()
            ));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_keep_to_plain_characters() {
        assert_eq!(lock_name("my app/prod ../x"), "my_app_prod_.._x");
    }
}
