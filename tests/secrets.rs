//! Secrets never leave runner in clear: not on any process's command line, which
//! every user of the machine reads, and not on disk, whatever way a run ends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::Test;
use crate::common::docker::{Cleanup, Users, command_as, sleeper};
use crate::common::process::{Background, PATIENCE};

const SECRET: &str = "s3cr3t-hunter2-token";

/// Every command line on the machine, read as any user could.
fn command_lines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            let bytes = std::fs::read(e.path().join("cmdline")).ok()?;
            Some(String::from_utf8_lossy(&bytes).replace('\0', " "))
        })
        .collect()
}

#[test]
fn no_command_line_shows_a_secret_while_steps_run() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "cmdline");
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "secret on command lines"
jobs = 4

[vars]
token = {{ env = "TOKEN", secret = true }}

[steps.host]
kind = "shell"
run = "test -n {{{{ token }}}} && sleep 2"

[steps.in-container]
kind = "docker-exec"
container = "{c}"
command = "test -n {{{{ token }}}} && sleep 2"

[steps.env]
kind = "docker-exec"
container = "{c}"
command = ["sh", "-c", "test -n \"$T\" && sleep 2"]
env = {{ T = "{{{{ token }}}}" }}
"#
        ))
        .env("TOKEN", SECRET)
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    let mut sleeping = 0;
    let mut shown = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while runner.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the run did not end");
        for line in command_lines() {
            if line.contains(SECRET) {
                shown.push(line);
            } else if line.contains("sleep 2") {
                sleeping += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(sleeping > 0, "the steps were seen running");
    assert!(shown.is_empty(), "a secret on a command line: {shown:?}");
}

/// Files under `dir` written since `since` (at most 1 MB each) that hold `text`.
fn files_holding(dir: &Path, text: &str, since: std::time::SystemTime, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&path, text, since, found);
        } else if meta.is_file()
            && meta.len() < 1 << 20
            && meta.modified().is_ok_and(|m| m >= since)
            && std::fs::read(&path)
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(text))
        {
            found.push(path.display().to_string());
        }
    }
}

#[test]
fn kill_9_through_sudo_leaves_no_secret_on_disk() {
    let since = std::time::SystemTime::now();
    let users = Users::create();
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "kill9");
    let test = Test::new().plan(&format!(
        r#"
[plan]
name = "kill -9 mid-exec"

[vars]
token = {{ env = "TOKEN", secret = true }}

[steps.long]
kind = "docker-exec"
container = "{c}"
command = "test -n {{{{ token }}}} && test -n \"$T\" && sleep 60"
env = {{ T = "{{{{ token }}}}" }}
"#
    ));
    let mut command = command_as(&test, &users.sudoer, &[("TOKEN", SECRET)]);
    command
        .args(["apply", "plan.toml", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut runner = command.spawn().expect("spawn runner as the sudoer");
    let stdout = runner.stdout.take().expect("stdout");
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("\"step_started\"") && line.contains("\"long\""));
    assert!(started, "the step started");
    // The exec runs in the container, through sudo, with the secret in it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ps = crate::common::docker::docker_ok(&["exec", &c, "ps", "-o", "args"]);
        if ps.contains("sleep 60") {
            break;
        }
        assert!(Instant::now() < deadline, "the exec never ran: {ps}");
        std::thread::sleep(Duration::from_millis(50));
    }
    runner.kill().expect("kill -9");
    let _ = runner.wait();
    let mut found = Vec::new();
    for dir in ["/tmp", "/var/tmp", "/dev/shm", "/run"] {
        files_holding(Path::new(dir), SECRET, since, &mut found);
    }
    files_holding(test.dir.path(), SECRET, since, &mut found);
    assert!(found.is_empty(), "the secret was left on disk: {found:?}");
    // `cleanup` goes first (declared last): the exec ends with its container,
    // then the users.
    let _ = &users;
}

#[test]
fn runner_maintenance_shows_no_secret() {
    let test = Test::new().plan(
        r#"
[plan]
name = "maintenance secret"

[vars]
token = { env = "TOKEN", secret = true }

[maintenance]
container = "app"
on = "curl -s -H \"Authorization: {{ token }}\" localhost/maintenance/on"
off = ["true"]
status = "echo true"

[steps.noop]
kind = "shell"
run = "true"
"#,
    );
    // A docker that shows what it got: its arguments and the value it carries.
    let docker = test.path_of("fake-docker");
    crate::common::script(
        &docker,
        "case \"$*\" in *version*) echo 24.0.7 ;; *'echo true'*) echo true ;; *) echo \"args: $*\"; echo \"value: $RUNNER_VAR_token\" ;; esac",
    );
    let test = test
        .env("TOKEN", SECRET)
        .env("DOCKER_CMD", docker.to_str().expect("utf-8"));
    let run = test.run_with(&["maintenance", "on", "plan.toml"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("value: ***"), "{}", run.stdout);
    assert!(!run.stdout.contains(SECRET), "{}", run.stdout);
    assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
}

#[test]
fn a_secret_is_masked_in_the_forms_output_gives_it() {
    // Output lines lose a trailing `\r`; a secret of several lines shows a line
    // at a time.
    for secret in [
        format!("{SECRET}\r"),
        format!("{SECRET}\nsecond-line-of-it\n"),
    ] {
        let test = Test::new()
            .plan(
                r#"
[plan]
name = "forms"

[vars]
token = { env = "TOKEN", secret = true }

[steps.echo]
kind = "shell"
run = "printf '%s\n' {{ token }}; printf '%s\n' \"$T\""
env = { T = "{{ token }}" }
"#,
            )
            .env("TOKEN", &secret)
            .args(&["apply", "plan.toml", "--output", "json"]);
        let run = test.run();
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert!(!run.stdout.contains(SECRET), "{}", run.stdout);
        assert!(!run.stdout.contains("second-line-of-it"), "{}", run.stdout);
        let record = crate::common::records(&test)
            .pop()
            .expect("a record")
            .to_string();
        assert!(!record.contains(SECRET), "{record}");
    }
}
