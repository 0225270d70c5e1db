//! Files runner writes: a record into what is not a regular file is written
//! through it, never replacing it; a plan reached through a link is still one
//! plan, with one lock.

use std::os::unix::fs::FileTypeExt;

use crate::common::Test;
use crate::common::process::{Background, marker_sleep, started};

const HELLO: &str = r#"
[plan]
name = "report"

[steps.hello]
kind = "shell"
run = "echo hello"
"#;

#[test]
fn a_record_goes_through_dev_stdout_after_the_run_s_output() {
    let test = Test::new().plan(HELLO).args(&[
        "apply",
        "plan.toml",
        "--output",
        "json",
        "--report",
        "/dev/stdout",
    ]);
    let run = test.run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    // Events, and the record among them, whole: a stream of JSON documents.
    let values: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&run.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON documents, none cut");
    let records: Vec<_> = values.iter().filter(|v| v["steps"].is_array()).collect();
    assert_eq!(records.len(), 1, "{}", run.stdout);
    assert_eq!(records[0]["status"], "succeeded");
    assert!(
        values
            .iter()
            .filter(|v| !v["steps"].is_array())
            .all(|v| v.get("event").is_some())
    );
    assert!(std::fs::metadata("/dev/stdout").is_ok());
}

#[test]
fn a_record_through_a_link_to_a_device_leaves_both_as_they_are() {
    let test = Test::new().plan(HELLO);
    std::os::unix::fs::symlink("/dev/null", test.path_of("record.json")).expect("link");
    let run = test.run_with(&["apply", "plan.toml", "--report", "record.json"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let link = std::fs::symlink_metadata(test.path_of("record.json")).expect("link");
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let null = std::fs::metadata("/dev/null").expect("/dev/null");
    assert!(
        null.file_type().is_char_device(),
        "/dev/null is not a device any more"
    );
    assert_eq!(null.len(), 0);
}

#[test]
fn a_record_through_a_link_to_a_file_replaces_the_file_and_keeps_the_link() {
    let test = Test::new().plan(HELLO).file("records/last.json", "old");
    std::os::unix::fs::symlink(test.path_of("records/last.json"), test.path_of("last.json"))
        .expect("link");
    let run = test.run_with(&["apply", "plan.toml", "--report", "last.json"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let link = std::fs::symlink_metadata(test.path_of("last.json")).expect("link");
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let text = std::fs::read_to_string(test.path_of("records/last.json")).expect("record");
    assert!(text.contains("\"status\": \"succeeded\""), "{text}");
}

#[test]
fn a_plan_reached_through_a_link_meets_its_own_lock() {
    let test = Test::new();
    let (sleep, _reap) = marker_sleep(&test, "link");
    let test = test
        .plan(&format!(
            "[plan]\nname = \"locked\"\n\n[steps.hold]\nkind = \"shell\"\nrun = \"{sleep} 1000\"\n"
        ))
        .args(&["apply", "plan.toml", "--output", "json"]);
    let elsewhere = tempfile::tempdir().expect("another folder");
    std::os::unix::fs::symlink(
        test.path_of("plan.toml"),
        elsewhere.path().join("deploy.toml"),
    )
    .expect("link");
    let mut first = Background::spawn(&test);
    first.wait_for(started("hold"));
    let link = elsewhere.path().join("deploy.toml");
    let run = test.run_with(&["apply", link.to_str().expect("utf-8")]);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("holds its lock"), "{}", run.stderr);
    first.signal("KILL");
    let _ = first.finish();
}

/// No record, no deploy: a runs folder the user cannot write (here read-only
/// for a user who is not root) stops the run before its first step, naming
/// the folder and the fix; so does a `--report` into a folder it cannot write.
#[test]
fn a_record_that_cannot_be_written_stops_the_run_before_any_change() {
    use std::os::unix::fs::PermissionsExt as _;
    let users = crate::common::docker::Users::create();
    let test = Test::new().plan(
        "[plan]\nname = \"recorded\"\n\n[steps.change]\nkind = \"shell\"\nrun = \"touch changed\"\n",
    );
    let runs = test.path_of(".runner/runs");
    std::fs::create_dir_all(&runs).expect("runs");
    let test = test.args(&["apply", "plan.toml"]);
    let chmod = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    chmod(&runs, 0o555);
    let run = crate::common::docker::run_as(&test, &users.nobody, &[]);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot write the run's record to")
            && run.stderr.contains(".runner/runs")
            && run.stderr.contains("nothing was run")
            && run.stderr.contains("make it writable for this user"),
        "{}",
        run.stderr
    );
    assert!(!test.path_of("changed").exists(), "a step ran");
    // The same into a `--report` folder it cannot write.
    chmod(&runs, 0o755);
    let closed = test.path_of("closed");
    std::fs::create_dir_all(&closed).expect("folder");
    let mut command = crate::common::docker::command_as(&test, &users.nobody, &[]);
    chmod(&closed, 0o555);
    command.args(["--report", closed.join("r.json").to_str().expect("utf-8")]);
    let run = crate::common::output(command);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(!test.path_of("changed").exists(), "a step ran");
    // Writable: it runs.
    let run = crate::common::docker::run_as(&test, &users.nobody, &[]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(test.path_of("changed").exists());
}

/// The plan's lock is never written through a link planted in its place.
#[test]
fn a_link_planted_as_the_plan_s_lock_is_refused_not_followed() {
    let test = Test::new().plan(HELLO);
    let victim = test.path_of("victim");
    std::fs::create_dir_all(test.path_of(".runner")).expect("state");
    std::os::unix::fs::symlink(&victim, test.path_of(".runner/plan.toml.lock")).expect("link");
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("cannot be trusted: it is a symbolic link"),
        "{}",
        run.stderr
    );
    assert!(!victim.exists(), "runner wrote through the link");
}
