//! `runner apply`: the executor, driven through the real binary with `shell` steps.

use serde_json::Value;

use crate::common::process::{
    Background, INTERRUPTIBLE, alive, events, marker_sleep, of, read, record, stamp, started,
};
use crate::common::{Test, step};

#[test]
fn diamond_runs_in_order_with_its_branches_in_parallel() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "diamond"

[steps.top]
kind = "shell"
run = "date +%s%N > top.end"

[steps.left]
kind = "shell"
needs = ["top"]
run = "date +%s%N > left.start; sleep 0.4; date +%s%N > left.end"

[steps.right]
kind = "shell"
needs = ["top"]
run = "date +%s%N > right.start; sleep 0.4; date +%s%N > right.end"

[steps.bottom]
kind = "shell"
needs = ["left", "right"]
run = "date +%s%N > bottom.start"
"#,
        )
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let top = stamp(&test, "top.end");
    let (left, right) = (stamp(&test, "left.start"), stamp(&test, "right.start"));
    let (left_end, right_end) = (stamp(&test, "left.end"), stamp(&test, "right.end"));
    let bottom = stamp(&test, "bottom.start");
    assert!(top < left && top < right, "the branches wait for top");
    assert!(
        left < right_end && right < left_end,
        "the branches overlap: left {left}..{left_end}, right {right}..{right_end}"
    );
    assert!(
        bottom > left_end && bottom > right_end,
        "bottom waits for both"
    );
    for id in ["top", "left", "right", "bottom"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains("succeeded")),
            "{id} in the summary:\n{}",
            run.stdout
        );
    }
}

#[test]
fn with_one_job_the_branches_take_turns() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "diamond"

[steps.left]
kind = "shell"
run = "date +%s%N > left.start; sleep 0.2; date +%s%N > left.end"

[steps.right]
kind = "shell"
run = "date +%s%N > right.start; sleep 0.2; date +%s%N > right.end"
"#,
        )
        .args(&["apply", "plan.toml", "--jobs", "1"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let (left, left_end) = (stamp(&test, "left.start"), stamp(&test, "left.end"));
    let (right, right_end) = (stamp(&test, "right.start"), stamp(&test, "right.end"));
    assert!(
        left_end < right || right_end < left,
        "no overlap with --jobs 1"
    );
}

#[test]
fn a_step_failing_twice_then_passing_takes_three_attempts_with_backoff() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "retries"

[steps.flaky]
kind = "shell"
run = "echo attempt $RUNNER_ATTEMPT >> attempts.log; [ $RUNNER_ATTEMPT -ge 3 ]"
retries = 4
retry_delay = "100ms"
backoff = 3.0
"#,
        )
        .args(&["apply", "plan.toml", "--output", "json"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        read(&test, "attempts.log"),
        "attempt 1\nattempt 2\nattempt 3\n"
    );
    let events = events(&run);
    let failed = of(&events, "attempt_failed");
    let waits: Vec<u64> = failed
        .iter()
        .map(|e| e["retry_in_ms"].as_u64().expect("a wait"))
        .collect();
    assert_eq!(waits, [100, 300], "retry_delay × backoff^(n-1)");
    assert!(
        failed
            .iter()
            .all(|e| e["reason"] == "exited with code 1" && e["exit_code"] == 1)
    );
    let finished = of(&events, "step_finished");
    assert_eq!(finished[0]["status"], "succeeded");
    assert_eq!(finished[0]["attempts"], 3);
    let record = record(&test);
    let attempts = step(&record, "flaky")["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["succeeded"].as_bool().unwrap_or(false))
        .collect::<Vec<_>>();
    assert_eq!(attempts, [false, false, true]);
}

#[test]
fn a_timeout_ends_the_whole_process_tree() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "timeout");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "timeout"

[steps.hang]
kind = "shell"
run = "{sleep} 1000 & echo started; {sleep} 999"
timeout = "500ms"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("started"), "{}", run.stdout);
    assert!(
        run.stdout.contains("timed out after 500ms"),
        "{}",
        run.stdout
    );
    assert!(
        !alive(&reap.0),
        "no process of the step survives its timeout"
    );
}

#[test]
fn background_leftovers_of_a_finished_step_are_ended() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "leftover");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "leftover"

[steps.daemon]
kind = "shell"
run = "{sleep} 1000 > /dev/null 2>&1 &"
"#
        ))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(!alive(&reap.0), "a step's processes end with it");
}

/// Six plan steps; `bad` fails while `slow` still runs. Hooks append to hooks.log.
fn six_steps(hook_b: &str) -> String {
    format!(
        r#"
[plan]
name = "six"

[steps.a]
kind = "shell"
run = "true"
rollback = {{ kind = "shell", run = "echo a >> hooks.log" }}

[steps.b]
kind = "shell"
needs = ["a"]
run = "true"
rollback = {{ kind = "shell", run = "{hook_b}" }}

[steps.slow]
kind = "shell"
needs = ["a"]
run = "sleep 0.6; touch slow.done"
rollback = {{ kind = "shell", run = "echo slow >> hooks.log" }}

[steps.bad]
kind = "shell"
needs = ["b"]
run = "echo broken >&2; exit 7"

[steps.late]
kind = "shell"
needs = ["bad"]
run = "touch late.ran"

[steps.later]
kind = "shell"
needs = ["slow"]
run = "touch later.ran"

[steps.cleanup]
kind = "shell"
when = "always"
run = "echo always >> hooks.log"

[steps.alert]
kind = "shell"
when = "failure"
run = "echo failure >> hooks.log"
"#
    )
}

#[test]
fn a_failure_stops_the_plan_and_rolls_back_in_reverse_completion_order() {
    let test = Test::new().plan(&six_steps("echo b >> hooks.log")).args(&[
        "apply",
        "plan.toml",
        "--output",
        "json",
    ]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        test.path_of("slow.done").exists(),
        "running siblings finish"
    );
    assert!(
        !test.path_of("late.ran").exists(),
        "later steps never start"
    );
    assert!(
        !test.path_of("later.ran").exists(),
        "later steps never start"
    );
    let log = read(&test, "hooks.log");
    let lines: Vec<&str> = log.lines().collect();
    // Completed: a, b, slow (bad failed before slow ended) → hooks slow, b, a.
    assert_eq!(&lines[..3], ["slow", "b", "a"], "{log}");
    let mut after = lines[3..].to_vec();
    after.sort_unstable();
    assert_eq!(after, ["always", "failure"], "{log}");

    let events = events(&run);
    let finished = of(&events, "run_finished");
    assert_eq!(finished[0]["status"], "failed");
    assert_eq!(finished[0]["exit_code"], 1);
    let record = record(&test);
    assert_eq!(record["exit_code"], 1);
    assert_eq!(step(&record, "bad")["status"], "failed");
    assert_eq!(step(&record, "bad")["attempts"][0]["exit_code"], 7);
    assert_eq!(step(&record, "bad")["output_tail"][0], "[stderr] broken");
    assert_eq!(step(&record, "a")["status"], "rolled_back");
    assert_eq!(step(&record, "slow")["status"], "rolled_back");
    assert_eq!(step(&record, "late")["status"], "skipped");
    assert_eq!(step(&record, "cleanup")["status"], "succeeded");
    assert_eq!(record["rollback"], serde_json::json!(["slow", "b", "a"]));
}

#[test]
fn a_failing_hook_gives_exit_3_and_the_other_hooks_still_run() {
    let test = Test::new()
        .plan(&six_steps("echo b-failed >> hooks.log; exit 1"))
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    let log = read(&test, "hooks.log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(&lines[..3], ["slow", "b-failed", "a"], "{log}");
    assert!(
        run.stdout
            .contains("ROLLBACK IS INCOMPLETE: the hook of b failed"),
        "{}",
        run.stdout
    );
    let summary_b = run
        .stdout
        .lines()
        .find(|l| l.starts_with("b "))
        .expect("b in the summary");
    assert!(summary_b.contains("rollback failed"), "{summary_b}");
    assert_eq!(step(&record(&test), "b")["status"], "rollback_failed");
}

#[test]
fn success_runs_always_steps_but_not_failure_steps() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "ok"

[steps.a]
kind = "shell"
run = "true"
rollback = { kind = "shell", run = "touch rolled.back" }

[steps.cleanup]
kind = "shell"
when = "always"
run = "touch always.ran"

[steps.alert]
kind = "shell"
when = "failure"
run = "touch failure.ran"
"#,
        )
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(test.path_of("always.ran").exists());
    assert!(!test.path_of("failure.ran").exists());
    assert!(!test.path_of("rolled.back").exists());
    assert!(run.stdout.contains("succeeded (exit 0)"), "{}", run.stdout);
}

#[test]
fn sigint_lets_the_running_step_finish_rolls_back_and_exits_130() {
    let test = Test::new()
        .plan(INTERRUPTIBLE)
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    runner.wait_for(started("long"));
    runner.signal("INT");
    let (code, events, stderr) = runner.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(
        test.path_of("long.done").exists(),
        "the running step finished"
    );
    assert!(!test.path_of("next.ran").exists(), "nothing new started");
    assert!(test.path_of("long.undone").exists());
    assert!(test.path_of("first.undone").exists());
    assert_eq!(of(&events, "run_finished")[0]["status"], "interrupted");
}

#[test]
fn a_second_sigint_kills_the_running_step() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "sigint");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "interrupt twice"

[steps.first]
kind = "shell"
run = "true"
rollback = {{ kind = "shell", run = "touch first.undone" }}

[steps.long]
kind = "shell"
needs = ["first"]
run = "{sleep} 1000"
"#
        ))
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    runner.wait_for(started("long"));
    runner.signal("INT");
    runner.wait_for(|e| e["event"] == "stopping");
    runner.signal("INT");
    let (code, events, stderr) = runner.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(!alive(&reap.0), "the long step is gone");
    let long = of(&events, "step_finished")
        .into_iter()
        .find(|e| e["step"] == "long")
        .expect("long finished");
    assert_eq!(long["status"], "failed");
    assert_eq!(long["reason"], "killed by a second interrupt");
    assert!(
        test.path_of("first.undone").exists(),
        "then the rollback ran"
    );
}

#[test]
fn sigterm_is_an_interrupt_too() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "terminate"

[steps.long]
kind = "shell"
run = "sleep 0.3"
rollback = { kind = "shell", run = "touch long.undone" }
"#,
        )
        .args(&["apply", "plan.toml", "--output", "json"]);
    let mut runner = Background::spawn(&test);
    runner.wait_for(started("long"));
    runner.signal("TERM");
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(test.path_of("long.undone").exists());
}

#[test]
fn a_second_apply_of_a_running_plan_exits_4_naming_the_holder() {
    let test = Test::new();
    let (sleep, reap) = marker_sleep(&test, "lock");
    let test = test
        .plan(&format!(
            r#"
[plan]
name = "locked"

[vars]
nap = "0"

[steps.hold]
kind = "shell"
run = "{sleep} {{{{ nap }}}}"
"#
        ))
        .args(&[
            "apply",
            "plan.toml",
            "--output",
            "json",
            "--var",
            "nap=1000",
        ]);
    let mut first = Background::spawn(&test);
    let started_event = first.wait_for(|e| e["event"] == "run_started");
    first.wait_for(started("hold"));

    let second = ["apply", "plan.toml"];
    let run = test.run_with(&second);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    let pid = first.child.id().to_string();
    assert!(run.stderr.contains(&format!("pid {pid}")), "{}", run.stderr);
    assert!(run.stderr.contains("user "), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(started_event["run_id"].as_str().expect("run id")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("help: wait for that run to end"),
        "{}",
        run.stderr
    );
    // The preview says so too, and exits as apply would, without taking the
    // lock (the first run goes on untouched).
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}{}", preview.stdout, preview.stderr);
    assert!(
        preview.stdout.contains("Lock: held by run ")
            && preview.stdout.contains(&format!("pid {pid}")),
        "{}",
        preview.stdout
    );

    // kill -9: the kernel drops the lock with the process; the run it left
    // half done stops the next until `runner recover` undid it.
    first.signal("KILL");
    let _ = first.finish();
    drop(reap);
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}{}", preview.stdout, preview.stderr);
    assert!(!preview.stdout.contains("Lock:"), "{}", preview.stdout);
    assert!(
        preview.stdout.contains("Unfinished: run "),
        "{}",
        preview.stdout
    );
    let recover = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
    let run = test.run_with(&second);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_state_folder_that_cannot_be_written_exits_4_and_says_where() {
    // `.runner` is a file, so the lock cannot be created (as root, permissions
    // would not stop it). Nothing runs.
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "stateless"

[steps.touch]
kind = "shell"
run = "touch ran"
"#,
        )
        .file(".runner", "not a folder")
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot create the lock file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("runner keeps its lock and its run records in"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wait for that run"), "{}", run.stderr);
    assert!(!test.path_of("ran").exists());
}

#[test]
fn a_secret_echoed_by_a_step_is_masked_everywhere() {
    const SECRET: &str = "hunter2-very-secret";
    let plan = r#"
[plan]
name = "secret"

[vars]
password = { env = "APP_PASSWORD", secret = true }

[steps.leak]
kind = "shell"
run = "echo password={{ password }}; echo $APP_PASSWORD >&2; exit 1"
"#;
    for output in ["text", "json"] {
        let test = Test::new().plan(plan).env("APP_PASSWORD", SECRET).args(&[
            "apply",
            "plan.toml",
            "--output",
            output,
        ]);
        let run = test.run();
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains(SECRET), "{}", run.stdout);
        assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
        assert!(run.stdout.contains("password=***"), "{}", run.stdout);
        let record = record(&test).to_string();
        assert!(!record.contains(SECRET), "{record}");
        assert!(record.contains("password=***"), "{record}");
    }
}

#[test]
fn a_captured_output_reaches_later_steps_and_rollback_hooks() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "capture"

[steps.rev]
kind = "shell"
run = "echo '  abc123  '"
capture = true
rollback = { kind = "shell", run = "echo 'reset to {{ steps.rev.output }}' > rollback.txt" }

[steps.use]
kind = "shell"
needs = ["rev"]
run = "echo 'deploying {{ steps.rev.output }}' > use.txt"

[steps.fail]
kind = "shell"
needs = ["use"]
run = "exit 1"
"#,
        )
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(read(&test, "use.txt"), "deploying abc123\n");
    assert_eq!(read(&test, "rollback.txt"), "reset to abc123\n");
}

#[test]
fn the_record_goes_where_report_says() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "report"

[steps.hello]
kind = "shell"
run = "echo hello $RUNNER_STEP $RUNNER_RUN_ID"
"#,
        )
        .args(&["apply", "plan.toml", "--report", "out/record.json"]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let record: Value =
        serde_json::from_str(&read(&test, "out/record.json")).expect("record at --report");
    let run_id = record["run_id"].as_str().expect("run id");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(
        step(&record, "hello")["output_tail"][0],
        format!("[stdout] hello hello {run_id}")
    );
    assert!(!test.path_of(".runner/runs").exists());
}

/// A fake `docker` (and `sudo`) first on PATH: `docker_body` answers `docker version`.
fn fake_docker(test: &Test, docker_body: &str, with_sudo: bool) -> String {
    let bin = test.path_of("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    crate::common::script(&bin.join("docker"), docker_body);
    if with_sudo {
        // sudo -n [--preserve-env=...] docker version: answers as root would.
        crate::common::script(
            &bin.join("sudo"),
            "while [ \"${1#-}\" != \"$1\" ]; do shift; done\n[ \"$1\" = docker ] && echo 24.0.7 && exit 0\nexit 1",
        );
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

const USES_DOCKER: &str = r#"
[plan]
name = "docker"

[steps.ps]
kind = "shell"
run = "echo \"$DOCKER_CMD\" > docker-cmd.txt"
"#;

#[test]
fn a_plan_using_docker_cannot_start_without_it() {
    let test = Test::new().plan(USES_DOCKER);
    let path = fake_docker(
        &test,
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1",
        false,
    );
    let test = test.args(&["apply", "plan.toml"]).path(&path);
    let run = test.run();
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("tried `docker version`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("help:"), "{}", run.stderr);
    assert!(!test.path_of("docker-cmd.txt").exists(), "no step ran");
}

#[test]
fn steps_get_the_docker_command_the_run_decided() {
    let test = Test::new().plan(USES_DOCKER);
    let path = fake_docker(
        &test,
        "echo 'permission denied while trying to connect to the Docker daemon socket' >&2; exit 1",
        true,
    );
    let test = test.args(&["apply", "plan.toml"]).path(&path);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let cmd = read(&test, "docker-cmd.txt");
    assert!(cmd.starts_with("sudo -n "), "{cmd}");
    assert!(cmd.trim_end().ends_with(" docker"), "{cmd}");
}

#[test]
fn a_missing_step_directory_is_a_clear_failure() {
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "dir"

[steps.build]
kind = "shell"
dir = "no/such/dir"
run = "true"
"#,
        )
        .args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("could not start: its directory") && run.stdout.contains("no/such/dir"),
        "{}",
        run.stdout
    );
}

#[test]
fn lock_wait_waits_for_the_run_that_holds_the_plan_and_names_it_or_gives_up() {
    use std::io::{BufRead as _, Read as _};
    let test = Test::new()
        .plan(
            r#"
[plan]
name = "waited"

[vars]
gate = "none"

[steps.hold]
kind = "shell"
run = "while [ -e {{ gate }} ]; do sleep 0.05; done"
"#,
        )
        .file("gate", "");
    let gate = test.path_of("gate");
    let gate_var = format!("gate={}", gate.display());
    let test = test.args(&["apply", "plan.toml", "--output", "json", "--var", &gate_var]);
    let mut first = Background::spawn(&test);
    let started_event = first.wait_for(|e| e["event"] == "run_started");
    first.wait_for(started("hold"));
    let run_id = started_event["run_id"].as_str().expect("run id").to_owned();
    // Past the wait: exit 4 naming the holder, as without the flag.
    let gave_up = test.run_with(&["apply", "plan.toml", "--lock-wait", "300ms"]);
    assert_eq!(gave_up.status, 4, "{}{}", gave_up.stdout, gave_up.stderr);
    assert!(
        gave_up
            .stderr
            .contains("waiting up to 300ms for the plan's lock, held by run ")
            && gave_up.stderr.contains(&run_id)
            && gave_up.stderr.contains("its holder still holds it"),
        "{}",
        gave_up.stderr
    );
    // Within the wait: it says whose lock it waits for, and starts once the
    // holder is done.
    let mut second = std::process::Command::new(crate::common::RUNNER);
    let mut second = second
        .current_dir(test.dir.path())
        .env("NO_COLOR", "1")
        .args(["apply", "plan.toml", "--lock-wait", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner");
    let mut stderr = std::io::BufReader::new(second.stderr.take().expect("stderr"));
    let mut waiting = String::new();
    stderr.read_line(&mut waiting).expect("a line");
    assert!(
        waiting.contains("waiting up to 1m for the plan's lock") && waiting.contains(&run_id),
        "{waiting}"
    );
    std::fs::remove_file(&gate).expect("open the gate");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    let status = second.wait().expect("runner");
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("took the plan's lock after"), "{rest}");
    let _ = first.finish();
}
