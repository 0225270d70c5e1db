//! `runner graph`.

use crate::common::Test;

const PLAN: &str = "[plan]\nname = \"diamond\"\n\n\
    [steps.build]\nkind = \"shell\"\nrun = \"make\"\n\n\
    [steps.test-unit]\nkind = \"shell\"\nneeds = [\"build\"]\nrun = \"make test\"\n\n\
    [steps.lint]\nkind = \"shell\"\nneeds = [\"build\"]\nrun = \"make lint\"\n\n\
    [steps.ship]\nkind = \"http-probe\"\nneeds = [\"test-unit\", \"lint\"]\nurl = \"http://127.0.0.1:9/\"\n\n\
    [steps.notify]\nkind = \"shell\"\nwhen = \"failure\"\nrun = \"true\"\n";

#[test]
fn dot() {
    let run = Test::new()
        .plan(PLAN)
        .args(&["graph", "plan.toml", "--format", "dot"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn mermaid() {
    let run = Test::new()
        .plan(PLAN)
        .args(&["graph", "plan.toml", "--format", "mermaid"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn graph_of_an_invalid_plan_exits_2() {
    let run = Test::new()
        .plan("[plan]\nname = \"t\"\n[steps.a]\nkind = \"shell\"\nneeds = [\"a\"]\nrun = \"x\"\n")
        .args(&["graph", "plan.toml"])
        .run();
    assert_eq!(run.status, 2);
    assert!(run.stdout.is_empty());
}
