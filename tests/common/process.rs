//! Running runner in the background, reading its events, finding leftover processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{Run, Test};

/// How long a test waits for something that should happen in well under a second;
/// only a hang guard, never a timing assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

pub(crate) fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

pub(crate) fn record(test: &Test) -> Value {
    let mut records = crate::common::records(test);
    assert_eq!(records.len(), 1, "one record");
    records.remove(0)
}

pub(crate) fn read(test: &Test, name: &str) -> String {
    std::fs::read_to_string(test.path_of(name)).unwrap_or_default()
}

/// Nanosecond timestamps written by `date +%s%N`.
pub(crate) fn stamp(test: &Test, name: &str) -> u128 {
    read(test, name)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("timestamp in {name}"))
}

/// Kills every process whose command line holds `marker` when dropped.
pub(crate) struct Reap(pub String);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &self.0])
            .status();
    }
}

pub(crate) fn alive(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", marker])
        .stdout(Stdio::null())
        .status()
        .expect("pgrep")
        .success()
}

/// A copy of `sleep` under a name unique to the test, to find it in the process list.
pub(crate) fn marker_sleep(test: &Test, tag: &str) -> (String, Reap) {
    let name = format!("sleep-{tag}-{}", std::process::id());
    std::fs::copy("/bin/sleep", test.path_of(&name)).expect("copy sleep");
    (format!("./{name}"), Reap(name))
}

/// A runner in the background with its JSON events read as they come.
pub(crate) struct Background {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Background {
    pub(crate) fn spawn(test: &Test) -> Self {
        let mut child = test
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn runner");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `what`.
    pub(crate) fn wait_for(&mut self, what: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .expect("the awaited event never came");
            let event: Value = serde_json::from_str(&line).expect("a JSON event");
            self.seen.push(event.clone());
            if what(&event) {
                return event;
            }
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit; returns the code and every event.
    pub(crate) fn finish(mut self) -> (i32, Vec<Value>, String) {
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut stderr);
        }
        let status = self.child.wait().expect("wait");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen
                .push(serde_json::from_str(&line).expect("a JSON event"));
        }
        (
            status.code().unwrap_or(-1),
            std::mem::take(&mut self.seen),
            stderr,
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `first`, then `long` (0.5 s) that an interrupt lets finish, then `next` that
/// it never starts; each hook leaves a file.
pub(crate) const INTERRUPTIBLE: &str = r#"
[plan]
name = "interrupt"

[steps.first]
kind = "shell"
run = "true"
rollback = { kind = "shell", run = "touch first.undone" }

[steps.long]
kind = "shell"
needs = ["first"]
run = "sleep 0.5; touch long.done"
rollback = { kind = "shell", run = "touch long.undone" }

[steps.next]
kind = "shell"
needs = ["long"]
run = "touch next.ran"
"#;

pub(crate) fn started(step: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == "step_started" && e["step"] == step
}

/// Waits for `child` to exit, killing it (and failing) after `limit`: its
/// exit code. runner must never hang.
pub(crate) fn exit_within(child: &mut std::process::Child, limit: Duration) -> i32 {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runner did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a run that a test meant to kill ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Killed with SIGKILL once its journal held this many events.
    Killed(usize),
    /// It ended first, with this exit code.
    Exited(i32),
}

/// Spawns `command` (a runner run of the plan in `dir`) and kills it with
/// SIGKILL as soon as its journal (`dir/.runner/journal/*.jsonl`, the one
/// it makes or, for `recover`, the one it takes over) holds `events` events
/// after its header: the run dies right after that event.
pub(crate) fn kill_after(
    command: std::process::Command,
    dir: &std::path::Path,
    events: usize,
) -> Ended {
    kill_when(command, dir, |journal| journal.len() >= events)
}

/// Spawns `command` and kills it with SIGKILL as soon as `now` holds for
/// the events of its journal (see [`kill_after`]); `Killed` says how many
/// events the journal held then.
pub(crate) fn kill_when(
    mut command: std::process::Command,
    dir: &std::path::Path,
    now: impl Fn(&[Value]) -> bool,
) -> Ended {
    let journals = dir.join(".runner").join("journal");
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runner");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Ended::Exited(status.code().unwrap_or(-1));
        }
        for path in files(&journals) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Whole lines only, the header and the core's inputs left out.
            let events: Vec<Value> = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .skip(1)
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|line| line.get("event").is_some())
                .collect();
            if now(&events) {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                return Ended::Killed(events.len());
            }
        }
        assert!(std::time::Instant::now() < deadline, "the run hung");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
