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
const STATE_SCRIPT: &str = r#"name=$1 id=$2
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
[ -d "$s/runs" ] && [ ! -L "$s/runs" ] || mkdir "$s/runs" || { echo "bad cannot make $s/runs"; exit 76; }
IFS= read -r audit || { echo "bad no audit line"; exit 76; }
cat > "$s/runs/.$id.$$" && mv -f "$s/runs/.$id.$$" "$s/runs/$id.json" || { echo "bad cannot write $s/runs/$id.json"; exit 76; }
[ ! -L "$s/audit.log" ] || { echo "bad $s/audit.log is a link"; exit 76; }
printf '%s\n' "$audit" >> "$s/audit.log" || { echo "bad cannot write $s/audit.log"; exit 76; }
echo kept"#;

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
                Some((h.name.clone(), ssh.target.argv(&ssh.control, &[])))
            })
            .collect();
        crate::parallel::each(hosts, 8, |(host, mut argv)| {
            argv.push(remote(&[
                "sh",
                "-c",
                STATE_SCRIPT,
                "runner-state",
                &name,
                run_id,
            ]));
            (host, write(&argv, &input))
        })
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

/// Runs on a host (`sh -c SCRIPT runner-state NAME`): prints each record the
/// host keeps for the plan, one a line.
const READ_SCRIPT: &str = r#"name=$1
for c in /run/lock /var/lock /tmp; do
  if [ -d "$c" ] && [ ! -L "$c" ] && [ "$(stat -c '%u %a' "$c")" = "0 1777" ]; then
    s="$c/runner-$name.state/runs"
    [ -d "$s" ] && [ ! -L "$s" ] || exit 0
    for f in "$s"/*.json; do
      [ -f "$f" ] && [ ! -L "$f" ] && { head -c 16777216 "$f"; echo; }
    done
    exit 0
  fi
done"#;

/// A host, and the records (JSON lines) it keeps for the plan.
pub(crate) type Kept = (String, Vec<String>);

/// The records every host of the plan keeps (over a connection of their
/// own, read-only: no lock is taken), by host; and the hosts that could not
/// be read, with why.
pub(crate) fn kept_records(plan: &crate::plan::Plan) -> (Vec<Kept>, Vec<(String, String)>) {
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
            argv.push(remote(&["sh", "-c", READ_SCRIPT, "runner-state", &name]));
            reads.push((starting.name, argv));
            masters.push(master);
        }
    }
    let read = crate::parallel::each(reads, 8, |(host, argv)| {
        let out = crate::docker::briefly(&argv, STATE_TIMEOUT);
        match out {
            Ok(out) if out.status.success() => Ok((
                host,
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
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
