//! `if`: a step runs only when its condition holds, decided when it is ready
//! from values and earlier steps' outputs (issue 18). Skipped, it changes
//! nothing (no hook) and the steps that need it go on.

use crate::common::{Test, records, step};

const PLAN: &str = r#"
[plan]
name = "window"

[vars]
pending = "0"
expand_only = ""
fail = ""

[steps.count]
kind = "shell"
run = "echo {{ pending }}"
capture = true

[steps.window-on]
kind = "shell"
needs = ["count"]
if = "steps.count.output != '0' && expand_only != 'yes'"
run = "touch window-on"
rollback = { kind = "shell", run = "touch window-off" }

[steps.migrate]
kind = "shell"
needs = ["window-on"]
if = "steps.count.output != '0'"
run = "touch migrated"

[steps.switch]
kind = "shell"
needs = ["migrate"]
run = "touch switched && test -z '{{ fail }}'"
"#;

fn files(test: &Test) -> Vec<&'static str> {
    ["window-on", "window-off", "migrated", "switched"]
        .into_iter()
        .filter(|f| test.path_of(f).exists())
        .collect()
}

#[test]
fn a_window_opens_only_when_the_release_has_migrations_to_run() {
    // No migration: no window, no migration, the switch goes on.
    let test = Test::new().plan(PLAN);
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(files(&test), ["switched"]);
    assert!(
        run.stdout.contains(
            "window-on skipped: its condition `steps.count.output != '0' && expand_only != 'yes'` does not hold (steps.count.output = '0', expand_only = '')"
        ),
        "{}",
        run.stdout
    );
    let record = records(&test).pop().expect("a record");
    assert_eq!(step(&record, "window-on")["status"], "skipped");
    assert!(
        step(&record, "migrate")["skipped"]
            .as_str()
            .is_some_and(|r| r.contains("steps.count.output = '0'")),
        "{record}"
    );
    assert!(record["maintenance"].as_array().is_some_and(Vec::is_empty));

    // Migrations: the window opens.
    let test = Test::new().plan(PLAN);
    let run = test.run_with(&["apply", "plan.toml", "--var", "pending=2"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(files(&test), ["window-on", "migrated", "switched"]);

    // Backward compatible migrations: they run, and no window opens.
    let test = Test::new().plan(PLAN);
    let run = test.run_with(&[
        "apply",
        "plan.toml",
        "--var",
        "pending=2",
        "--var",
        "expand_only=yes",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(files(&test), ["migrated", "switched"]);

    // A skipped step has no hook to run in a rollback.
    let test = Test::new().plan(PLAN);
    let run = test.run_with(&["apply", "plan.toml", "--var", "fail=yes"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(files(&test), ["switched"]);
}

#[test]
fn the_preview_shows_each_condition_and_what_decides_it() {
    let test = Test::new().plan(PLAN);
    let run = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "if steps.count.output != '0' && expand_only != 'yes': decided when it is ready"
        ),
        "{}",
        run.stdout
    );
    let json = test.run_with(&["apply", "plan.toml", "--plan-only", "--output", "json"]);
    let preview: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(
        preview["waves"][1][0]["if"],
        "steps.count.output != '0' && expand_only != 'yes'"
    );
}

#[test]
fn a_condition_that_cannot_be_decided_is_refused_where_it_stands() {
    let check = |condition: &str, want: &str| {
        let plan = PLAN.replace(
            "if = \"steps.count.output != '0'\"",
            &format!("if = \"{condition}\""),
        );
        let run = Test::new()
            .plan(&plan)
            .args(&["validate", "plan.toml"])
            .run();
        assert_eq!(run.status, 2, "{condition}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{condition}: {}", run.stderr);
        assert!(
            run.stderr.contains("plan.toml:25:"),
            "{condition}: {}",
            run.stderr
        );
    };
    check(
        "steps.count.output = '0'",
        "`=` has no meaning in a condition",
    );
    check("expand_olny == 'yes'", "did you mean");
    check("steps.switch.output == 'x'", "switch");
    check("(pending == '1'", "a `)` is missing here");
}
