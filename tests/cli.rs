//! What a command-line user expects beyond the plan: a one-line verdict from
//! `validate`, shell completions and manual pages generated from the same
//! definitions as the parser.

use crate::common::{Test, repo};

#[test]
fn validate_says_in_one_line_what_it_checked() {
    let plan = repo().join("plans/demo.toml");
    let run = Test::new()
        .args(&["validate", plan.to_str().unwrap()])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.starts_with(&format!(
            "{}: valid (16 steps, 6 rollback hooks, 8 variables;",
            plan.display()
        )),
        "{}",
        run.stdout
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn completions_are_generated_for_every_command() {
    let test = Test::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = test.run_with(&["completions", shell]);
        assert_eq!(run.status, 0, "{shell}: {}", run.stderr);
        for word in [
            "apply",
            "validate",
            "plan-only",
            "maintenance",
            "completions",
        ] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    // The bash script is valid bash.
    let script = test.path_of("runner.bash");
    std::fs::write(&script, test.run_with(&["completions", "bash"]).stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash");
    assert!(check.success());
    let bad = test.run_with(&["completions", "tcsh"]);
    assert_eq!(bad.status, 2);
}

#[test]
fn manual_pages_for_runner_and_each_command() {
    let test = Test::new();
    let page = test.run_with(&["man"]);
    assert_eq!(page.status, 0, "{}", page.stderr);
    assert!(page.stdout.contains(".TH runner 1"), "{}", page.stdout);
    for sub in [
        "runner\\-apply(1)",
        "runner\\-validate(1)",
        "runner\\-show(1)",
    ] {
        assert!(page.stdout.contains(sub), "{sub}: {}", page.stdout);
    }
    assert!(page.stdout.contains("Exit codes:"), "{}", page.stdout);
    let apply = test.run_with(&["man", "apply"]);
    assert_eq!(apply.status, 0, "{}", apply.stderr);
    assert!(
        apply.stdout.contains(".TH runner-apply 1"),
        "{}",
        apply.stdout
    );
    assert!(apply.stdout.contains("plan\\-only"), "{}", apply.stdout);
    let unknown = test.run_with(&["man", "deploy"]);
    assert_eq!(unknown.status, 2);
    assert!(
        unknown.stderr.contains("runner has no command `deploy`"),
        "{}",
        unknown.stderr
    );
}
