//! Rollbacks on the demo stack (issue 12): a step that fails partway undone by
//! its own hook, maintenance turned off last whatever order steps completed in,
//! a step after the rollback that needs a plan step.

use std::process::Command;

use crate::common::docker::Demo;
use crate::common::step;

#[test]
fn a_migration_that_fails_partway_is_undone_by_its_own_hook() {
    let demo = Demo::new("partway");
    // v4 brings migrations 3 and 4; 4 fails after 2 and 3 were applied.
    let run = demo.apply(&["--var", "version=v4", "--var", "fail_migration=4"]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let record = crate::common::docker::record(&demo.test);
    let migrate = step(&record, "migrate");
    assert_eq!(migrate["status"], "failed");
    let tail = migrate["output_tail"].to_string();
    assert!(tail.contains("migrated to 3"), "it failed partway: {tail}");
    assert_eq!(migrate["rollback"]["succeeded"], true);
    // Reverse order of completion (the release joined the name while the
    // migrations ran, and left it), maintenance off last.
    assert_eq!(
        record["rollback"],
        serde_json::json!(["migrate", "join", "start", "maintenance-on"])
    );
    // The step after the rollback needs `migrate`, which failed: it ran and
    // saw the schema back where the deploy found it.
    let after = step(&record, "schema-after-rollback");
    assert_eq!(after["output_tail"][0], "[stdout] db ok schema=1");
    assert_eq!(demo.maintenance_status(), "maintenance is off");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v1 schema=1"));

    // The record keeps the maintenance window: from maintenance-on's start to
    // the end of its hook, which ran last.
    let window = &record["maintenance"][0];
    let on = step(&record, "maintenance-on");
    assert_eq!(window["from_ms"], on["started_ms"]);
    assert_eq!(window["to_ms"], on["rollback"]["ended_ms"]);
    let show = demo.test.run_with(&["show", "demo.toml"]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains("rollback of maintenance-on")
            && show.stdout.contains("maintenance page from"),
        "{}",
        show.stdout
    );
    let svg = demo
        .test
        .run_with(&["show", "demo.toml", "last", "--format", "svg"]);
    let texts = crate::common::svg_texts(&svg.stdout);
    for s in record["steps"].as_array().expect("steps") {
        let id = s["id"].as_str().expect("id");
        assert!(
            texts.iter().any(|t| t == id),
            "{id} is not in the picture: {texts:?}"
        );
    }
    assert!(texts.iter().any(|t| t == "maintenance page"), "{texts:?}");
}

#[test]
fn maintenance_goes_off_last_whatever_order_the_steps_completed_in() {
    let demo = Demo::new("order");
    let provision = Command::new(demo.test.path_of("demo/provision.sh"))
        .args([&demo.name, &demo.name, &demo.port.to_string()])
        .current_dir(demo.test.dir.path())
        .env("DOCKER_CMD", "docker")
        .output()
        .expect("provision the demo app");
    assert!(
        provision.status.success(),
        "{}",
        String::from_utf8_lossy(&provision.stderr)
    );
    // `tag` completes before maintenance goes on: by completion alone, its hook
    // would run after maintenance is off again, with users on a half-undone app.
    // Written in place: the demo's folder holds its teardown, which must
    // outlive the test's own use of it.
    let test = &demo.test;
    std::fs::write(
        test.path_of("order.toml"),
        r#"
[plan]
name = "order"

[vars]
app = { env = "DEMO_APP" }

[maintenance]
container = "{{ app }}"
on = ["/app/bin/maintenance", "on"]
off = ["/app/bin/maintenance", "off"]
status = ["/app/bin/maintenance", "status"]

[steps.tag]
kind = "shell"
run = "true"
rollback = { kind = "shell", run = "{{ docker }} exec {{ app }} /app/bin/maintenance status > maintenance-during-undo.txt" }

[steps.maintenance-on]
kind = "maintenance-toggle"
needs = ["tag"]
state = "on"
rollback = { kind = "maintenance-toggle", state = "off" }

[steps.release]
kind = "shell"
needs = ["maintenance-on"]
run = "exit 1"
"#,
    )
    .expect("write the plan");
    let run = test.run_with(&["apply", "order.toml"]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let during =
        std::fs::read_to_string(test.path_of("maintenance-during-undo.txt")).expect("the hook ran");
    assert_eq!(
        during.trim(),
        "true",
        "users saw the app while it was undone"
    );
    let records = crate::common::records(test);
    let record = records
        .iter()
        .find(|r| r["plan"] == "order")
        .expect("the run's record");
    assert_eq!(
        record["rollback"],
        serde_json::json!(["tag", "maintenance-on"])
    );
    assert_eq!(
        crate::common::maintenance_status(test, "order.toml"),
        "maintenance is off"
    );
}

#[test]
fn a_release_that_changes_how_the_app_runs_rolls_back_to_the_served_previous_one() {
    let demo = Demo::new("runcmd");
    let first = demo.apply(&[]);
    assert_eq!(first.status, 0, "{}\n{}", first.stdout, first.stderr);
    let before = demo.up().expect("the proxy answers");
    assert_eq!((before.0, before.1.trim()), (200, "up v2 schema=2"));
    // v5 runs with a command its image brings (`/app/bin/web`, which no image
    // before v5 has), as a compose file's `command:` would, and its migration
    // fails after two of three were applied. Started with the new command,
    // the old image would not run at all.
    let run = demo.apply(&[
        "--var",
        "version=v5",
        "--var",
        "command=/app/bin/web",
        "--var",
        "fail_migration=4",
    ]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let record = crate::common::docker::record(&demo.test);
    assert_eq!(step(&record, "start")["rollback"]["succeeded"], true);
    assert_eq!(step(&record, "migrate")["rollback"]["succeeded"], true);
    assert!(
        run.stdout
            .contains("every rollback hook succeeded (exit 1)"),
        "{}",
        run.stdout
    );
    assert_eq!(demo.maintenance_status(), "maintenance is off");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v2 schema=2"));
    let image = crate::common::docker::docker_ok(&[
        "inspect",
        "--format",
        "{{.Config.Image}} {{json .Config.Cmd}}",
        &demo.name,
    ]);
    assert_eq!(
        image.trim(),
        format!("{}:v2 [\"/app/bin/run\",\"\"]", demo.name)
    );
}
