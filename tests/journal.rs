//! The run's journal (issue 19): what a run did is on disk before it acts on
//! what follows, so a run killed with SIGKILL leaves its account, which
//! `runner runs` and `runner show` read; a run that ends removes it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::common::Test;

const PLAN: &str = r#"
[plan]
name = "dies"

[steps.first]
kind = "shell"
run = "echo one"

[steps.second]
kind = "shell"
needs = ["first"]
run = "echo $$ > pid && touch started && exec sleep 37"
"#;

fn journals(test: &Test) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(test.path_of(".runner/journal"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_run_killed_with_sigkill_leaves_its_journal_and_runs_and_show_name_it() {
    let test = Test::new().plan(PLAN);
    let mut child = test
        .command()
        .args(["apply", "plan.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runner");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !test.path_of("started").exists() {
        assert!(Instant::now() < deadline, "the second step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // The step's own process outlives runner: end it.
    if let Ok(pid) = std::fs::read_to_string(test.path_of("pid")) {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status();
    }
    let found = journals(&test);
    assert_eq!(found.len(), 1, "{found:?}");
    let text = std::fs::read_to_string(&found[0]).expect("journal");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["journal"], 2, "{text}");
    // Events, and what the engine's core was given (`input`), in order.
    let events: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|e| {
            let what = e["event"].as_str().or_else(|| e["input"].as_str());
            (
                what.unwrap_or("").to_owned(),
                e["step"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let pos = |event: &str, step: &str| {
        events
            .iter()
            .position(|(e, s)| e == event && s == step)
            .unwrap_or_else(|| panic!("{event} {step} is not in {events:?}"))
    };
    assert!(pos("start", "") < pos("step_started", "first"));
    assert!(pos("step_started", "first") < pos("finished", "first"));
    // The core's input is kept before the event that tells it.
    assert!(pos("finished", "first") < pos("step_finished", "first"));
    assert!(pos("step_finished", "first") < pos("step_started", "second"));
    assert!(
        !events
            .iter()
            .any(|(e, s)| e == "step_finished" && s == "second"),
        "{events:?}"
    );
    // No record: the journal is the run's account, and runs and show say so.
    let runs = test.run_with(&["runs", "plan.toml"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    assert!(runs.stdout.contains("DID NOT FINISH"), "{}", runs.stdout);
    assert!(
        runs.stdout.contains("last, `second` started"),
        "{}",
        runs.stdout
    );
    let show = test.run_with(&["show", "plan.toml"]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains("DID NOT FINISH") && show.stdout.contains("`second` started"),
        "{}",
        show.stdout
    );
}

#[test]
fn a_run_that_ends_removes_its_journal() {
    let test =
        Test::new().plan(&PLAN.replace("echo $$ > pid && touch started && exec sleep 37", "true"));
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(journals(&test).is_empty(), "{:?}", journals(&test));
    let runs = test.run_with(&["runs", "plan.toml"]);
    assert!(!runs.stdout.contains("DID NOT FINISH"), "{}", runs.stdout);
}

#[test]
fn a_journal_that_cannot_be_written_starts_no_step_and_stops_the_run() {
    // The file size limit lets the journal's header and first events in,
    // then writes fail (EFBIG; SIGXFSZ ignored): no step acts ahead of it.
    let mut steps = String::new();
    for i in 1..=30 {
        let needs = if i == 1 {
            String::new()
        } else {
            format!("needs = [\"step-{}\"]\n", i - 1)
        };
        let _ = writeln!(
            steps,
            "[steps.step-{i}]\nkind = \"shell\"\n{needs}run = \"echo {i} >> done\"\n"
        );
    }
    let test = Test::new().plan(&format!("[plan]\nname = \"full-disk\"\n\n{steps}"));
    let mut command = std::process::Command::new("sh");
    command
        .current_dir(test.dir.path())
        .env("NO_COLOR", "1")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 4; exec \"$0\" apply plan.toml",
            crate::common::RUNNER,
        ]);
    let run = crate::common::output(command);
    assert_eq!(run.status, 130, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("cannot write the run's journal"),
        "{}",
        run.stdout
    );
    let done = std::fs::read_to_string(test.path_of("done")).unwrap_or_default();
    let ran = done.lines().count();
    assert!(ran > 0 && ran < 30, "{ran} steps ran:\n{}", run.stdout);
    // The record cannot be written either (the same limit): the journal
    // stays, and holds every step that ran: none acted ahead of it.
    let journal = journals(&test);
    assert_eq!(journal.len(), 1, "{}", run.stderr);
    let text = std::fs::read_to_string(&journal[0]).expect("journal");
    for line in done.lines() {
        assert!(
            text.contains(&format!("\"step\":\"step-{line}\"")),
            "step-{line} ran without its journal line:\n{text}"
        );
    }
}
