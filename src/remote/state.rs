//! A run's state on each host it touched: once it ends, its record and an
//! audit line go into runner's folder there, beside the lock
//! (`runner-PLAN.state` in the folder the lock is in): `runs/RUN.json` and
//! `audit.log`. The folder is made like the lock's, for root and the deploy
//! group (mode 2770: what one deploy user writes, the others read); one that
//! anyone else may enter, or that is not a folder, is not written to.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use super::lock::lock_name;
use super::target::{reap, remote, spawn};
use super::{Hosts, masters};

/// Runs on a host (`sh -c SCRIPT runner-state NAME RUN`): the audit line on
/// stdin's first line, the record on the rest. Says `kept` or `bad WHY`.
const STATE_SCRIPT: &str = r#"[ -d "$s/runs" ] && [ ! -L "$s/runs" ] || mkdir "$s/runs" || { echo "bad cannot make $s/runs"; exit 76; }
IFS= read -r audit || { echo "bad no audit line"; exit 76; }
cat > "$s/runs/.$id.$$" && mv -f "$s/runs/.$id.$$" "$s/runs/$id.json" || { echo "bad cannot write $s/runs/$id.json"; exit 76; }
[ ! -L "$s/audit.log" ] || { echo "bad $s/audit.log is a link"; exit 76; }
printf '%s\n' "$audit" >> "$s/audit.log" || { echo "bad cannot write $s/audit.log"; exit 76; }
rm -f "$s/journal/$id.jsonl"
echo kept"#;

/// The start of every script that writes the state (`sh -c SCRIPT
/// runner-state NAME RUN`): finds runner's folder beside the lock (`$s`),
/// made for root and the deploy group, and checks it and the run id.
const PREPARE: &str = r#"name=$1 id=$2
d=
for c in /run/lock /var/lock /tmp; do
  if [ -d "$c" ] && [ ! -L "$c" ] && [ "$(stat -c '%u %a' "$c")" = "0 1777" ]; then d=$c; break; fi
done
[ -n "$d" ] || { echo "bad no shared folder"; exit 76; }
case "$id" in *[!0-9A-Za-z-]*|'') echo "bad run id"; exit 76;; esac
s="$d/runner-$name.state"
dg=$(getent group runner 2>/dev/null | cut -d: -f3)
[ -n "$dg" ] || dg=$(stat -L -c %g /var/run/docker.sock 2>/dev/null)
umask 007
if mkdir -m 700 "$s" 2>/dev/null && [ -n "$dg" ]; then
  chgrp "$dg" "$s" 2>/dev/null && chmod 2770 "$s"
fi
info=$(stat -c '%a:%F' "$s" 2>/dev/null) || info='-:nothing'
mode=${info%%:*} kind=${info#*:}
[ "$kind" = directory ] && [ ! -L "$s" ] || { echo "bad $s is a $kind"; exit 76; }
case "$mode" in *[1-7]) echo "bad $s is open to other users (mode $mode)"; exit 76;; esac
"#;

/// Mirrors the run's journal (`sh -c SCRIPT runner-state NAME RUN`): what
/// comes on stdin is the journal, whole, from its header on.
const MIRROR_SCRIPT: &str = r#"[ -d "$s/journal" ] && [ ! -L "$s/journal" ] || mkdir "$s/journal" || { echo "bad cannot make $s/journal"; exit 76; }
[ ! -L "$s/journal/$id.jsonl" ] || { echo "bad a link stands at $s/journal/$id.jsonl"; exit 76; }
exec cat > "$s/journal/$id.jsonl""#;

/// How long writing a host's state may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(15);

impl Hosts {
    /// Keeps the run's record and audit line on every host reached over ssh,
    /// all at once: each host's `Err` says why it could not.
    pub(crate) fn keep_state(
        &self,
        plan: &str,
        run_id: &str,
        audit: &str,
        record: &str,
    ) -> Vec<(String, Result<(), String>)> {
        let name = lock_name(plan);
        let input = format!("{}\n{record}\n", audit.replace('\n', " "));
        let hosts: Vec<_> = self
            .list
            .iter()
            .filter_map(|h| {
                let ssh = h.ssh.as_ref()?;
                Some((h.name.clone(), state_argv(ssh, STATE_SCRIPT, &name, run_id)))
            })
            .collect();
        crate::parallel::each(hosts, 8, |(host, argv)| (host, write(&argv, &input)))
    }

    /// A session per host reached over ssh that keeps a copy of the run's
    /// journal there (what is written to it, from the header on), so that a
    /// run whose machine died is recovered from another (see
    /// [`kept_journals`]). A host where it cannot start is told on stderr.
    pub(crate) fn mirror_journal(&self, plan: &str, run_id: &str) -> Vec<Mirror> {
        let name = lock_name(plan);
        let mut mirrors = Vec::new();
        for host in &self.list {
            let Some(ssh) = &host.ssh else { continue };
            let argv = state_argv(ssh, MIRROR_SCRIPT, &name, run_id);
            match spawn(&argv, Stdio::piped(), Stdio::null(), Stdio::null()) {
                Ok(mut child) => {
                    if let Some(stdin) = child.stdin.take() {
                        mirrors.push(Mirror {
                            child,
                            stdin: Some(stdin),
                        });
                    }
                }
                Err(e) => eprintln!(
                    "runner: host {}: its copy of the journal cannot be kept: {e}",
                    host.name
                ),
            }
        }
        mirrors
    }
}

/// The command line of a state script on the host of `ssh`, after
/// [`PREPARE`]: `sh -c SCRIPT runner-state NAME RUN`.
fn state_argv(ssh: &super::master::Ssh, script: &str, name: &str, run_id: &str) -> Vec<String> {
    let script = format!("{PREPARE}{script}");
    let mut argv = ssh.target.argv(&ssh.control, &[]);
    argv.push(remote(&["sh", "-c", &script, "runner-state", name, run_id]));
    argv
}

/// A host's copy of the journal: what is written goes to it.
pub(crate) struct Mirror {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

impl std::io::Write for Mirror {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.stdin {
            Some(stdin) => stdin.write(bytes),
            None => Err(std::io::Error::other("closed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

impl Drop for Mirror {
    /// Closed: the copy is whole; the session ends on its own.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + STATE_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        reap(&mut self.child);
    }
}

/// Runs the state script with `input` on its stdin.
fn write(argv: &[String], input: &str) -> Result<(), String> {
    let mut child = spawn(argv, Stdio::piped(), Stdio::piped(), Stdio::null())
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no pipe to ssh")?;
    let written = stdin.write_all(input.as_bytes());
    drop(stdin);
    let deadline = std::time::Instant::now() + STATE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                reap(&mut child);
                return Err(format!("no answer within {}s", STATE_TIMEOUT.as_secs()));
            }
        }
    }
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut out, &mut said);
    }
    written.map_err(|e| format!("cannot send the record: {e}"))?;
    match said.trim() {
        "kept" => Ok(()),
        other => Err(super::target::printable(
            other.strip_prefix("bad ").unwrap_or(other),
        )),
    }
}

/// Runs on a host (`sh -c SCRIPT runner-state NAME WHAT`): prints each file
/// the host keeps for the plan in `runs` (records) or `journal`, each after a
/// line `@@ FILE`.
const READ_SCRIPT: &str = r#"name=$1 what=$2
for c in /run/lock /var/lock /tmp; do
  if [ -d "$c" ] && [ ! -L "$c" ] && [ "$(stat -c '%u %a' "$c")" = "0 1777" ]; then
    s="$c/runner-$name.state/$what"
    [ -d "$s" ] && [ ! -L "$s" ] || exit 0
    for f in "$s"/*.json "$s"/*.jsonl; do
      [ -f "$f" ] && [ ! -L "$f" ] && { echo "@@ ${f##*/}"; head -c 67108864 "$f"; echo; }
    done
    exit 0
  fi
done"#;

/// A host, and the files it keeps for the plan: name and text.
pub(crate) type Kept = (String, Vec<(String, String)>);

/// The records every host of the plan keeps (see [`read`]).
pub(crate) fn kept_records(plan: &crate::plan::Plan) -> (Vec<Kept>, Vec<(String, String)>) {
    read(plan, "runs")
}

/// The journals every host of the plan keeps: of runs still going, or whose
/// machine died (see [`Hosts::mirror_journal`]).
pub(crate) fn kept_journals(plan: &crate::plan::Plan) -> (Vec<Kept>, Vec<(String, String)>) {
    read(plan, "journal")
}

/// What every host of the plan keeps in `what` (over a connection of their
/// own, read-only: no lock is taken), by host; and the hosts that could not
/// be read, with why.
fn read(plan: &crate::plan::Plan, what: &str) -> (Vec<Kept>, Vec<(String, String)>) {
    use super::master::How;
    let (dir, connected, problems) = match masters(plan) {
        Ok(found) => found,
        Err(problems) => {
            return (
                Vec::new(),
                problems.into_iter().map(|p| (p.host, p.what)).collect(),
            );
        }
    };
    let mut unread: Vec<(String, String)> =
        problems.into_iter().map(|p| (p.host, p.what)).collect();
    let name = lock_name(&plan.name);
    let mut reads = Vec::new();
    let mut masters = Vec::new();
    for starting in connected {
        if let How::Ssh {
            target,
            master,
            control,
            ..
        } = starting.how
        {
            let mut argv = target.argv(&control, &[]);
            argv.push(remote(&[
                "sh",
                "-c",
                READ_SCRIPT,
                "runner-state",
                &name,
                what,
            ]));
            reads.push((starting.name, argv));
            masters.push(master);
        }
    }
    let read = crate::parallel::each(reads, 8, |(host, argv)| {
        match crate::docker::briefly(&argv, STATE_TIMEOUT) {
            Ok(out) if out.status.success() => {
                Ok((host, files(&String::from_utf8_lossy(&out.stdout))))
            }
            Ok(out) => Err((host, String::from_utf8_lossy(&out.stderr).trim().to_owned())),
            Err(e) => Err((host, format!("{e:?}"))),
        }
    });
    for mut master in masters {
        let _ = master.kill();
        reap(&mut master);
    }
    drop(dir);
    let mut kept = Vec::new();
    for result in read {
        match result {
            Ok(host) => kept.push(host),
            Err(failed) => unread.push(failed),
        }
    }
    (kept, unread)
}

/// The files of [`READ_SCRIPT`]'s output: name and text.
fn files(output: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("@@ ") {
            out.push((name.to_owned(), String::new()));
        } else if let Some((_, text)) = out.last_mut()
            && !line.is_empty()
        {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}
