//! The engine's promises under faults, each tried as an adversarial operator
//! would: timeouts whatever the kind does inside an attempt, output nobody reads,
//! output of any size, every signal a terminal or an ssh session sends, closed
//! pipes, processes that leave their group or clear their environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::docker::{Cleanup, docker_ok, sleeper};
use crate::common::process::{
    Background, INTERRUPTIBLE, PATIENCE, alive, exit_within, marker_sleep, read, record, started,
};
use crate::common::{Test, output, script, step};

/// Waits for `child` to exit, killing it (and failing) after `PATIENCE`.
fn exit_code(child: &mut Child) -> i32 {
    exit_within(child, PATIENCE)
}

/// The one attempt of a step in the record: its reason and duration.
fn first_attempt(test: &Test, id: &str) -> (String, u64) {
    let record = record(test);
    let attempt = &step(&record, id)["attempts"][0];
    (
        attempt["reason"].as_str().unwrap_or_default().to_owned(),
        attempt["duration_ms"].as_u64().expect("a duration"),
    )
}

/// A TCP server on loopback that accepts connections and never answers.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { port, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP server on loopback that answers every request with status 200 and `body`.
fn serve(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

// ---- Timeouts belong to the attempt, whatever the kind does inside it ----

#[test]
fn a_toggle_and_its_confirmation_share_one_timeout() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "toggle");
    // Each command alone takes 1.5 s, within the step's 2 s; the two together do not.
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "slow toggle"

[maintenance]
container = "{c}"
on = "sleep 1.5; echo true > /state"
off = "echo false > /state"
status = "sleep 1.5; cat /state"

[steps.on]
kind = "maintenance-toggle"
state = "on"
timeout = "2s"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let (reason, _) = first_attempt(&test, "on");
    assert!(reason.contains("timed out after 2s"), "{reason}");
}

#[test]
fn a_host_probe_ends_at_the_step_timeout() {
    let server = Silent::start();
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "silent"

[steps.probe]
kind = "http-probe"
url = "http://127.0.0.1:{}/up"
timeout = "1s"
"#,
            server.port
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let (reason, duration) = first_attempt(&test, "probe");
    assert!(reason.contains("timed out after 1s"), "{reason}");
    // The HTTP client's own limit is 10 s; the step's is what counts.
    assert!(duration < 5000, "the attempt took {duration} ms");
}

#[test]
fn a_second_interrupt_ends_a_host_probe() {
    let server = Silent::start();
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "silent"

[steps.probe]
kind = "http-probe"
url = "http://127.0.0.1:{}/up"
timeout = "5m"
"#,
            server.port
        ))
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    runner.wait_for(started("probe"));
    runner.signal("INT");
    runner.wait_for(|e| e["event"] == "stopping");
    runner.signal("INT");
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 130, "{stderr}");
    let (reason, duration) = first_attempt(&test, "probe");
    assert_eq!(reason, "killed by a second interrupt");
    assert!(duration < 5000, "the attempt took {duration} ms");
}

// ---- Output nobody reads never holds back timers or signals ----

/// A plan whose step prints far more than a pipe holds, then waits in `sleep`.
fn loud(sleep: &str, timeout: &str) -> String {
    format!(
        r#"
[plan]
name = "loud"

[steps.loud]
kind = "shell"
run = "seq 1 200000; touch printed; {sleep} 60"
timeout = "{timeout}"
"#
    )
}

#[test]
fn a_timeout_fires_while_nobody_reads_stdout() {
    let test = Test::new()
        .plan(&loud("sleep", "2s"))
        .args(&["apply", "plan.toml"]);
    let mut child = test
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // stdout is never read: runner must end on its own all the same.
    let code = exit_code(&mut child);
    assert_eq!(code, 1);
    let (reason, duration) = first_attempt(&test, "loud");
    assert!(reason.contains("timed out after 2s"), "{reason}");
    assert!(duration < 6000, "the attempt took {duration} ms");
    drop(child);
}

#[test]
fn signals_work_while_nobody_reads_stdout_and_unshown_lines_are_counted() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "unread");
    let test = test.plan(&loud(&sleep, "5m")).args(&["apply", "plan.toml"]);
    let mut child = test
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let printed = test.path_of("printed");
    let deadline = Instant::now() + PATIENCE;
    while !printed.exists() {
        assert!(Instant::now() < deadline, "the step never printed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    for signal in 0..2 {
        let kill = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(kill.expect("kill").success());
        // The first signal is taken before the second is sent (two
        // pending signals would be one); after the second the run ends,
        // and its journal goes.
        if signal == 0 {
            test.wait_for_journal("\"event\":\"stopping\"", 1);
        }
    }
    // The second signal ends the step although nobody has read a line yet.
    let deadline = Instant::now() + PATIENCE;
    while alive(&reap.0) {
        assert!(Instant::now() < deadline, "the step outlived two SIGTERMs");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reading now gets what was kept, a count of what was not, and the summary.
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    let code = exit_code(&mut child);
    assert_eq!(
        code,
        130,
        "{}",
        &stdout[stdout.len().saturating_sub(2000)..]
    );
    assert!(
        stdout.contains("lines not shown"),
        "no count of the lines dropped"
    );
    assert!(stdout.contains("INTERRUPTED"), "the summary is shown");
    let record = record(&test);
    assert_eq!(record["status"], "interrupted");
    assert_eq!(
        step(&record, "loud")["attempts"][0]["reason"],
        "killed by a second interrupt"
    );
}

// ---- Memory stays bounded whatever a step prints ----

/// Runs runner to its end, its stdout drained; returns the exit code, the last
/// 64 KiB of stdout and runner's peak RSS in KiB.
fn measured(test: &Test) -> (i32, String, i64) {
    let mut child = test
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 1 << 16 {
                tail.drain(..tail.len() - (1 << 16));
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    // runner's own peak, polled from /proc: wait4's ru_maxrss would also count
    // the test process's memory, inherited through fork and exec.
    let hwm = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(peak_now) = std::fs::read_to_string(&hwm).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        }) {
            peak = peak.max(peak_now);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let tail = reader.join().expect("reader");
    (status.code().unwrap_or(-1), tail, peak)
}

const MAX_RSS_KIB: i64 = 64 * 1024;

#[test]
fn a_million_lines_keep_memory_bounded() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "lines"

[steps.lines]
kind = "shell"
run = "seq 1 1000000"
"#,
        )
        .args(&["apply", "plan.toml"]);
    let (code, tail, rss) = measured(&test);
    assert_eq!(code, 0, "{tail}");
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    let record = record(&test);
    let kept = step(&record, "lines")["output_tail"]
        .as_array()
        .expect("tail")
        .len();
    assert_eq!(kept, 40, "the record keeps a tail");
    assert_eq!(
        step(&record, "lines")["output_tail"][39],
        "[stdout] 1000000"
    );
}

#[test]
fn a_200_mb_line_keeps_memory_and_the_record_small() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "one line"

[steps.line]
kind = "shell"
run = "head -c 200000000 /dev/zero | tr '\\0' x; echo; echo after"
"#,
        )
        .args(&["apply", "plan.toml", "--report", "record.json"]);
    let (code, tail, rss) = measured(&test);
    assert_eq!(code, 0, "{tail}");
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB");
    let size = std::fs::metadata(test.path_of("record.json"))
        .expect("record")
        .len();
    assert!(size < 1 << 20, "the record is {size} bytes");
    let record: Value = serde_json::from_str(&read(&test, "record.json")).expect("record");
    let lines = step(&record, "line")["output_tail"].clone();
    assert!(
        lines[0].as_str().expect("line").contains("bytes not shown"),
        "{}",
        &lines.to_string()[..200]
    );
    assert_eq!(lines[1], "[stdout] after");
}

// ---- Every signal that ends a session is an interrupt ----

#[test]
fn sighup_and_sigquit_roll_back_and_exit_130() {
    for signal in ["HUP", "QUIT"] {
        let test =
            Test::new()
                .plan(INTERRUPTIBLE)
                .args(&["apply", "plan.toml", "--output", "json"]);
        let mut runner = Background::spawn(&test);
        runner.wait_for(started("long"));
        runner.signal(signal);
        let (code, _, stderr) = runner.finish();
        assert_eq!(code, 130, "SIG{signal}: {stderr}");
        assert!(test.path_of("long.done").exists(), "SIG{signal}");
        assert!(!test.path_of("next.ran").exists(), "SIG{signal}");
        assert!(test.path_of("long.undone").exists(), "SIG{signal}");
        assert!(test.path_of("first.undone").exists(), "SIG{signal}");
        assert_eq!(record(&test)["status"], "interrupted", "SIG{signal}");
    }
}

#[test]
fn a_second_sighup_ends_the_step_and_its_process_group() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "hup");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "hangup twice"

[steps.long]
kind = "shell"
run = "{sleep} 1000 & {sleep} 999"
"#
        ))
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    runner.wait_for(started("long"));
    runner.signal("HUP");
    runner.wait_for(|e| e["event"] == "stopping");
    runner.signal("HUP");
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(!alive(&reap.0), "the step's processes are gone");
}

/// A fake docker (`DOCKER_CMD`) whose containers keep a maintenance state in a
/// file: `on` takes `on_secs`.
fn fake_maintenance_docker(test: &Test, on_secs: &str) -> String {
    let path = test.path_of("fake-docker");
    script(
        &path,
        &format!(
            r#"state="{dir}/state"
case "$*" in
  *version*) echo 24.0.7 ;;
  *" on") sleep {on_secs}; echo true > "$state" ;;
  *" off") echo false > "$state" ;;
  *" status") cat "$state" 2>/dev/null || echo false ;;
  *) exit 1 ;;
esac"#,
            dir = test.dir.path().display()
        ),
    );
    path.display().to_string()
}

const MAINTENANCE_PLAN: &str = r#"
[plan]
name = "maintenance"

[maintenance]
container = "app"
on = ["bin/maintenance", "on"]
off = ["bin/maintenance", "off"]
status = ["bin/maintenance", "status"]

[steps.noop]
kind = "shell"
run = "true"
"#;

#[test]
fn an_interrupted_maintenance_toggle_keeps_its_lock_until_it_ends() {
    let test = Test::new().plan(MAINTENANCE_PLAN);
    let docker = fake_maintenance_docker(&test, "2");
    let test = test.env("DOCKER_CMD", &docker);
    let mut on = test
        .command()
        .args(["maintenance", "on", "plan.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(on.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert!(first.starts_with("maintenance on"), "{first}");
    let kill = Command::new("kill")
        .args(["-INT", &on.id().to_string()])
        .status();
    assert!(kill.expect("kill").success());
    // While `on` still runs in the container, nobody else may toggle.
    let off = test.run_with(&["maintenance", "off", "plan.toml"]);
    assert_eq!(off.status, 4, "{}{}", off.stdout, off.stderr);
    assert!(off.stderr.contains("holds its lock"), "{}", off.stderr);
    assert_eq!(exit_code(&mut on), 130);
    // Now `off` sticks: nothing of `on` is left to undo it.
    let off = test.run_with(&["maintenance", "off", "plan.toml"]);
    assert_eq!(off.status, 0, "{}{}", off.stdout, off.stderr);
    // Whatever is left of `on` (the fake docker's process) has ended, and
    // could have written its state late, before the state is read.
    let on_process = format!("{docker} .*bin/maintenance on");
    let deadline = std::time::Instant::now() + PATIENCE;
    while alive(&on_process) {
        assert!(std::time::Instant::now() < deadline, "`on` never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        crate::common::maintenance_status(&test, "plan.toml"),
        "maintenance is off"
    );
}

// ---- Closed pipes and panics never hang runner or change its exit code ----

#[test]
fn debug_logs_into_a_pipe_closed_early_neither_hang_nor_lose_the_record() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "head"

[steps.a]
kind = "shell"
run = "echo a"

[steps.b]
kind = "shell"
needs = ["a"]
run = "echo b"

[steps.c]
kind = "shell"
needs = ["b"]
run = "echo c"
"#,
        )
        .env("RUNNER_LOG", "debug")
        .args(&["apply", "plan.toml"]);
    // `runner apply … 2>&1 | head -3`
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut command = test.command();
    command
        .stdout(writer.try_clone().expect("clone"))
        .stderr(writer);
    let mut child = command.spawn().expect("spawn");
    drop(command);
    let mut lines = BufReader::new(reader);
    for _ in 0..3 {
        let mut line = String::new();
        lines.read_line(&mut line).expect("read");
    }
    drop(lines);
    assert_eq!(exit_code(&mut child), 0);
    assert_eq!(record(&test)["status"], "succeeded");
}

/// Runs runner with stdout or stderr already closed by its reader.
fn closed(test: &Test, args: &[&str], stream: &str) -> i32 {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut command = test.command();
    command.args(args).stdin(Stdio::null());
    if stream == "stdout" {
        command.stdout(writer).stderr(Stdio::null());
    } else {
        command.stderr(writer).stdout(Stdio::null());
    }
    output(command).status
}

#[test]
fn closed_stdout_or_stderr_never_changes_an_exit_code() {
    let test = Test::new()
        .plan(MAINTENANCE_PLAN)
        .file("bad.toml", "[plan]\nname = 1\n");
    let docker = fake_maintenance_docker(&test, "0");
    let test = test.env("DOCKER_CMD", &docker);
    assert_eq!(closed(&test, &["validate", "bad.toml"], "stderr"), 2);
    assert_eq!(closed(&test, &["validate", "plan.toml"], "stdout"), 0);
    assert_eq!(closed(&test, &["graph", "plan.toml"], "stdout"), 0);
    assert_eq!(closed(&test, &["apply", "plan.toml"], "stdout"), 0);
    assert_eq!(closed(&test, &["apply", "plan.toml"], "stderr"), 0);
    assert_eq!(
        closed(&test, &["apply", "plan.toml", "--plan-only"], "stdout"),
        0
    );
    for request in ["on", "status", "off"] {
        assert_eq!(
            closed(&test, &["maintenance", request, "plan.toml"], "stdout"),
            0,
            "maintenance {request}"
        );
    }
    assert_eq!(read(&test, "state").trim(), "false");
}

// ---- No process escapes its step ----

#[test]
fn daemons_that_leave_the_group_end_with_their_step() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "setsid");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "escapes"

[steps.setsid]
kind = "shell"
run = "setsid {sleep} 1001 > /dev/null 2>&1 < /dev/null &"

[steps.fork]
kind = "shell"
run = "setsid -f {sleep} 1002 > /dev/null 2>&1 < /dev/null"

[steps.double-fork]
kind = "shell"
run = "( setsid {sleep} 1003 > /dev/null 2>&1 < /dev/null & )"

[steps.no-env]
kind = "shell"
run = "setsid -f env -i {sleep} 1004 > /dev/null 2>&1 < /dev/null"

[steps.timeout]
kind = "shell"
run = "setsid {sleep} 1005 & {sleep} 999"
timeout = "1s"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let (reason, _) = first_attempt(&test, "timeout");
    assert!(reason.contains("timed out after 1s"), "{reason}");
    assert!(!alive(&reap.0), "a daemon outlived its step");
}

#[test]
fn a_timed_out_exec_ends_children_that_cleared_their_environment() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "envi");
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "env -i"

[steps.hang]
kind = "docker-exec"
container = "{c}"
command = "env -i sleep 1001 & (env -i sleep 1003 &); sleep 1002"
timeout = "1s"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let (reason, _) = first_attempt(&test, "hang");
    assert!(reason.contains("timed out after 1s"), "{reason}");
    let ps = docker_ok(&["exec", &c, "ps", "-o", "pid,stat,args"]);
    let left: Vec<&str> = ps
        .lines()
        .filter(|l| l.contains("sleep 100") && !l.contains(" Z "))
        .collect();
    assert!(left.is_empty(), "left in the container:\n{ps}");
}

// ---- Kinds keep their own promises ----

#[test]
fn a_dump_with_an_expected_output_is_checked_and_kept() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "dump");
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "dump"

[steps.good]
kind = "docker-exec"
container = "{c}"
command = ["sh", "-c", "echo '-- dump'; echo 'COMPLETE'"]
stdout = "out/good.sql"
expect_output = "COMPLETE"

[steps.bad]
kind = "docker-exec"
container = "{c}"
command = ["sh", "-c", "echo '-- dump'; echo 'TRUNCATED'"]
stdout = "out/bad.sql"
expect_output = "COMPLETE"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let record = record(&test);
    assert_eq!(step(&record, "good")["status"], "succeeded");
    assert_eq!(read(&test, "out/good.sql"), "-- dump\nCOMPLETE\n");
    let bad = step(&record, "bad")["attempts"][0]["reason"].to_string();
    assert!(bad.contains("does not match /COMPLETE/"), "{bad}");
    assert!(!test.path_of("out/bad.sql").exists());
}

#[test]
fn a_host_probe_reads_the_start_of_a_large_body() {
    let mut body = b"HEAD-MARK\n".to_vec();
    body.resize(200 * 1024, b'x');
    let port = serve(body);
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "large body"

[steps.probe]
kind = "http-probe"
url = "http://127.0.0.1:{port}/big"
expect_body = "HEAD-MARK"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
}
