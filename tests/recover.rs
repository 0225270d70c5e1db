//! `runner recover` (issue 19): a run killed with SIGKILL is refused by the
//! next apply (exit 4) until recover, from the run's journal, runs the
//! rollback the run owed, as the run would have run it.

use crate::common::Test;
use crate::common::process::{Ended, kill_after, read};

/// Three steps with hooks; the third runs until it is killed. `capture`d
/// output and a variable from the environment feed the hooks.
const PLAN: &str = r#"
[plan]
name = "dies"

[vars]
tag = { env = "TAG", default = "default" }
token = { env = "TOKEN", default = "", secret = true }

[steps.first]
kind = "shell"
run = "echo {{ tag }} > first"
rollback = { kind = "shell", run = "echo undo-first-{{ tag }} >> undo" }

[steps.version]
kind = "shell"
needs = ["first"]
run = "echo v42"
capture = true

[steps.second]
kind = "shell"
needs = ["version"]
run = "touch started && sleep 37"
rollback = { kind = "shell", also_if_failed = true, run = "echo undo-second-{{ steps.version.output }} >> undo" }
"#;

/// Kills `apply` right after its third step started (its journal's 6th
/// event: `first` started and finished, `version` started, captured and
/// finished, `second` started).
fn killed_run(test: &Test) {
    let mut command = test.command();
    command
        .args(["apply", "plan.toml"])
        .env("TAG", "from-the-run");
    match kill_after(command, test.dir.path(), 6) {
        Ended::Killed(6) => {}
        other => panic!("the run was to die after `second` started: {other:?}"),
    }
}

#[test]
fn the_next_apply_refuses_and_recover_undoes_the_run_with_its_own_values() {
    let test = Test::new().plan(PLAN);
    killed_run(&test);
    let apply = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(apply.status, 4, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stderr.contains("did not finish")
            && apply.stderr.contains("runner recover plan.toml"),
        "{}",
        apply.stderr
    );
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}", preview.stdout);
    // The environment now says otherwise: recover uses the run's value.
    let recover = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
    // Reverse order of completion; the step cut short is undone too (its
    // hook runs also for a failed step), with the output it captured.
    assert_eq!(
        read(&test, "undo"),
        "undo-second-v42\nundo-first-from-the-run\n"
    );
    assert!(
        recover.stdout.contains("KILLED, RECOVERED") && recover.stdout.contains("`second`"),
        "{}",
        recover.stdout
    );
    // What the run left running is ended.
    assert!(!crate::common::process::alive("sleep 37"));
    let runs = test.run_with(&["runs", "plan.toml"]);
    assert!(runs.stdout.contains("killed, recovered"), "{}", runs.stdout);
    assert!(!runs.stdout.contains("DID NOT FINISH"), "{}", runs.stdout);
    let show = test.run_with(&["show", "plan.toml"]);
    assert!(
        show.stdout.contains("runner died") && show.stdout.contains("rollback of first"),
        "{}",
        show.stdout
    );
    // Nothing is left to recover, and the next deploy goes ahead.
    let again = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(again.status, 0);
    assert!(
        again.stdout.contains("nothing to recover"),
        "{}",
        again.stdout
    );
    std::fs::write(
        test.path_of("plan.toml"),
        PLAN.replace("touch started && sleep 37", "true"),
    )
    .expect("plan");
    let next = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(next.status, 0, "{}{}", next.stdout, next.stderr);
}

#[test]
fn a_hook_that_needs_an_output_that_held_a_secret_is_refused_not_run_with_stars() {
    let test = Test::new()
        .plan(&PLAN.replace("echo v42", "echo v42-$TOKEN").replace(
            "kind = \"shell\"\nneeds = [\"first\"]",
            "kind = \"shell\"\nneeds = [\"first\"]\nenv = { TOKEN = \"{{ token }}\" }",
        ))
        .env("TOKEN", "hunter2-secret");
    killed_run(&test);
    let journal = std::fs::read_dir(test.path_of(".runner/journal"))
        .expect("journal folder")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("journal"))
        .collect::<String>();
    assert!(!journal.contains("hunter2-secret"), "{journal}");
    let recover = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(recover.status, 3, "{}{}", recover.stdout, recover.stderr);
    assert!(
        recover.stdout.contains("held a secret"),
        "{}",
        recover.stdout
    );
    // The other hook still ran; the refused one ran nothing.
    assert_eq!(read(&test, "undo"), "undo-first-from-the-run\n");
    assert!(!recover.stdout.contains("hunter2-secret"));
}

#[test]
fn a_recover_killed_halfway_is_taken_over_by_the_next() {
    let plan = PLAN.replace(
        "run = \"echo undo-first-{{ tag }} >> undo\"",
        "run = \"echo undo-first-{{ tag }} >> undo\", timeout = \"1m\"",
    )
    .replace(
        "run = \"echo undo-second-{{ steps.version.output }} >> undo\"",
        "run = \"echo undo-second >> undo; if [ ! -e slow-once ]; then touch slow-once; sleep 36; fi\"",
    );
    let test = Test::new().plan(&plan);
    killed_run(&test);
    // The recover dies in the first hook it runs, once the hook runs.
    let mut recover = test
        .command()
        .args(["recover", "plan.toml"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("recover");
    let deadline = std::time::Instant::now() + crate::common::process::PATIENCE;
    while !test.path_of("slow-once").exists() {
        assert!(std::time::Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    recover.kill().expect("SIGKILL");
    let _ = recover.wait();
    let apply = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(apply.status, 4, "{}{}", apply.stdout, apply.stderr);
    let recover = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
    // The hook that was cut short ran again; the other once.
    assert_eq!(
        read(&test, "undo"),
        "undo-second\nundo-second\nundo-first-from-the-run\n"
    );
    assert!(!crate::common::process::alive("sleep 36"));
}

#[test]
fn a_run_killed_after_its_last_plan_step_is_finished_not_undone() {
    let plan = format!(
        "{}\n[steps.notify]\nkind = \"shell\"\nwhen = \"always\"\nrun = \"touch notified && sleep 35\"\n",
        PLAN.replace("touch started && sleep 37", "touch started")
    );
    let test = Test::new().plan(&plan);
    let mut command = test.command();
    command.args(["apply", "plan.toml"]);
    // The plan's 3 steps (6 events and a capture), then `notify` starts.
    match kill_after(command, test.dir.path(), 8) {
        Ended::Killed(_) => {}
        Ended::Exited(code) => panic!("the run ended first, exit {code}"),
    }
    let recover = test.run_with(&["recover", "plan.toml"]);
    assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
    assert!(
        recover.stdout.contains("the run is finished")
            || recover.stdout.contains("nothing was undone"),
        "{}",
        recover.stdout
    );
    assert_eq!(read(&test, "undo"), "");
    let runs = test.run_with(&["runs", "plan.toml"]);
    assert!(runs.stdout.contains("succeeded"), "{}", runs.stdout);
    assert!(!crate::common::process::alive("sleep 35"));
}

/// The demo deploy killed with SIGKILL at points spread over it, the
/// maintenance window included: each time the next apply refuses, recover
/// brings back one whole release with maintenance off, and the next deploy
/// succeeds.
mod demo {
    use crate::common::docker::{Demo, docker_ok};
    use crate::common::process::{Ended, kill_after};

    /// What the proxy answers, a few times over half a second: all must be
    /// the same 200.
    fn answers(demo: &Demo) -> Vec<String> {
        (0..10)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                match demo.up() {
                    Ok((200, body)) => body.trim().to_owned(),
                    other => format!("{other:?}"),
                }
            })
            .collect()
    }

    /// From the demo at v2 (schema 2), releases that bring two migrations
    /// (3 and 4), each killed after its journal's `n`-th event. Between two
    /// points the schema is set back to 2 under the release that runs, so
    /// the next release brings the same two migrations.
    fn killed_at(tag: &str, points: &[usize]) {
        let demo = Demo::new(tag);
        let first = demo.apply(&[]);
        assert_eq!(first.status, 0, "{}{}", first.stdout, first.stderr);
        let mut old = "v2".to_owned();
        for (k, &n) in points.iter().enumerate() {
            // v4 brings migrations 3 and 4; so does every later vN.
            let new = format!("v{}", 4 + k);
            let version = format!("version={new}");
            let mut command = demo.test.command();
            command.args(["apply", "demo.toml", "--var", &version]);
            let died = match kill_after(command, demo.test.dir.path(), n) {
                Ended::Killed(events) => events,
                Ended::Exited(code) => panic!("point {n}: the deploy ended first, exit {code}"),
            };
            let at = format!("killed after event {died} (point {n}), {old} -> {new}");
            let apply = demo.apply(&["--var", &version]);
            assert_eq!(apply.status, 4, "{at}: {}{}", apply.stdout, apply.stderr);
            assert!(
                apply.stderr.contains("runner recover"),
                "{at}: {}",
                apply.stderr
            );
            let recover = demo.test.run_with(&["recover", "demo.toml"]);
            assert_eq!(
                recover.status, 0,
                "{at}: {}{}",
                recover.stdout, recover.stderr
            );
            // One whole release: the old with its schema, or the new with its own.
            let whole = [format!("up {old} schema=2"), format!("up {new} schema=4")];
            let seen = answers(&demo);
            assert!(
                seen.iter().all(|a| a == &seen[0]) && whole.contains(&seen[0]),
                "{at}: {seen:?}\n{}",
                recover.stdout
            );
            assert_eq!(demo.maintenance_status(), "maintenance is off", "{at}");
            // The next deploy goes ahead and gets there.
            let next = demo.apply(&["--var", &version]);
            assert_eq!(next.status, 0, "{at}: {}{}", next.stdout, next.stderr);
            assert_eq!(answers(&demo)[9], format!("up {new} schema=4"), "{at}");
            // Back to schema 2 under the running release, for the next point.
            docker_ok(&["exec", &demo.name, "sh", "-c", "echo 2 > /data/schema"]);
            old = new;
        }
    }

    // The events of the deploy (benches/docker.py has a run's timeline):
    // 1-8 host-tools, provision, build and backup-db; 9-13 start and
    // pending; 14-15 maintenance-on; 16-19 migrate and join; 20-21 switch;
    // 22-25 maintenance-off and crontab; 26-31 health checks.

    #[test]
    fn killed_before_the_window() {
        killed_at("kill-before", &[2, 6, 9, 10, 13]);
    }

    #[test]
    fn killed_in_the_maintenance_window() {
        killed_at("kill-window", &[14, 15, 16, 17, 19]);
    }

    #[test]
    fn killed_at_the_switch_and_after() {
        killed_at("kill-after", &[20, 21, 22, 24, 28]);
    }
}
