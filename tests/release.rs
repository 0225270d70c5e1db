//! Gapless releases (issue 18) on the demo stack, against this machine's
//! Docker engine: the new release starts beside the old one, is probed from
//! inside, takes traffic, and only then is the old one drained and kept; a
//! rollback is the reverse switch. A client polls the proxy every 20 ms.

use crate::common::docker::{Demo, Poller, docker, docker_ok, not_ok, record};
use crate::common::step;

fn exists(name: &str) -> bool {
    docker(&["inspect", name]).status.success()
}

#[test]
fn a_release_that_never_serves_fails_before_any_change_and_the_old_one_serves_throughout() {
    let demo = Demo::new("neverup");
    assert_eq!(demo.apply(&[]).status, 0);
    let poller = Poller::start(demo.port);
    let run = demo.apply(&["--var", "version=v4", "--var", "command=exit 3"]);
    let seen = poller.finish();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(not_ok(&seen).is_empty(), "{:?}", not_ok(&seen));
    assert!(
        seen.iter()
            .all(|a| matches!(a, Ok((_, body)) if body == "up v2 schema=2")),
        "the old release served throughout"
    );
    let record = record(&demo.test);
    let start = step(&record, "start");
    assert_eq!(start["status"], "failed");
    assert!(
        start["attempts"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stopped before it answered")),
        "{start}"
    );
    // Nothing else ran, no window opened, and the new container is gone.
    for id in ["pending", "maintenance-on", "migrate", "switch"] {
        assert_eq!(step(&record, id)["status"], "skipped", "{id}");
    }
    assert!(!exists(&format!("{}-next", demo.name)));
}

#[test]
fn a_rollback_after_the_switch_is_the_reverse_switch_with_no_page_and_no_error() {
    let demo = Demo::new("backswitch");
    assert_eq!(demo.apply(&[]).status, 0);
    // A check after the switch fails: the deploy rolls back.
    let plan = std::fs::read_to_string(demo.test.path_of("demo.toml")).expect("plan");
    std::fs::write(
        demo.test.path_of("demo.toml"),
        format!("{plan}\n[steps.smoke]\nkind = \"shell\"\nneeds = [\"switch\"]\nrun = \"sleep 1 && exit 1\"\n"),
    )
    .expect("plan");
    let poller = Poller::start(demo.port);
    let run = demo.apply(&["--var", "version=v3"]);
    let seen = poller.finish();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(not_ok(&seen).is_empty(), "{:?}", not_ok(&seen));
    let bodies: Vec<&str> = seen
        .iter()
        .filter_map(|a| a.as_ref().ok().map(|(_, b)| b.as_str()))
        .collect();
    assert!(
        bodies.contains(&"up v3 schema=2"),
        "v3 took traffic: {bodies:?}"
    );
    assert_eq!(bodies.last(), Some(&"up v2 schema=2"), "{bodies:?}");
    let record = record(&demo.test);
    let back = &step(&record, "switch")["rollback"];
    assert_eq!(back["succeeded"], true);
    let took = back["ended_ms"].as_u64().unwrap() - back["started_ms"].as_u64().unwrap();
    assert!(took < 2000, "traffic back on the old release in {took} ms");
    // The old release is the app again, running; the new one is gone.
    let app = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.Config.Image}}",
        &demo.name,
    ]);
    assert_eq!(app.trim(), format!("running {}:v2", demo.name));
    for gone in ["next", "failed", "previous"] {
        assert!(!exists(&format!("{}-{gone}", demo.name)), "{gone}");
    }
}

#[test]
fn backward_compatible_migrations_run_while_the_old_release_serves() {
    let demo = Demo::new("expand");
    assert_eq!(demo.apply(&[]).status, 0);
    let poller = Poller::start(demo.port);
    let run = demo
        .test
        .command()
        .args(["apply", "demo.toml", "--var", "version=v5"])
        .env("DEMO_EXPAND_ONLY", "yes")
        .output()
        .expect("runner");
    let seen = poller.finish();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(not_ok(&seen).is_empty(), "{:?}", not_ok(&seen));
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v5 schema=4"));
    let record = record(&demo.test);
    assert_eq!(step(&record, "migrate")["status"], "succeeded");
    assert_eq!(step(&record, "maintenance-on")["status"], "skipped");
    assert!(
        step(&record, "maintenance-on")["skipped"]
            .as_str()
            .is_some_and(|r| r.contains("expand_only = 'yes'")),
        "{record}"
    );
}

#[test]
fn the_preview_shows_each_command_of_a_release() {
    let demo = Demo::new("relpreview");
    let run = demo.apply(&["--plan-only"]);
    let out = &run.stdout;
    for want in [
        "start [release] needs build",
        &format!(
            "start beside: docker run -d --init '--name={}-next'",
            demo.name
        ),
        "probe inside: docker exec --",
        &format!(
            "take traffic: docker network connect '--alias={}'",
            demo.name
        ),
        &format!(
            "drain the previous one: docker stop '--time=5' {}-previous",
            demo.name
        ),
        &format!(
            "start the previous one: docker start {}-previous",
            demo.name
        ),
        "if steps.pending.output != '0' && expand_only != 'yes': decided when it is ready",
    ] {
        assert!(out.contains(want), "{want:?} is not in:\n{out}");
    }
}

/// A step whose command never started (docker refused the exec: the
/// container is not running) changed nothing: its `also_if_failed` hook does
/// not run, and the summary says why.
#[test]
fn a_step_docker_refused_changed_nothing_and_its_hook_does_not_run() {
    let mut cleanup = crate::common::docker::Cleanup::default();
    let image = crate::common::docker::unique("refused") + ":t";
    crate::common::docker::busybox_image(&image, "CMD [\"sleep\", \"3600\"]", &[]);
    cleanup.images.push(image.clone());
    let name = crate::common::docker::unique("refused");
    cleanup.containers.push(name.clone());
    let test = crate::common::Test::new().plan(&format!(
        r#"
[plan]
name = "refused"

[steps.create]
kind = "shell"
run = "docker create --name {name} {image} >/dev/null"
creates = {{ containers = ["{name}"] }}

[steps.migrate]
kind = "docker-exec"
needs = ["create"]
container = "{name}"
command = ["true"]
rollback = {{ kind = "shell", run = "touch undone", also_if_failed = true }}
"#
    ));
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(!test.path_of("undone").exists(), "the hook ran");
    assert!(
        run.stdout.contains(&format!(
            "docker refused the exec: container `{name}` is not running (its state: created)"
        )) && run.stdout.contains("the command never started"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "`migrate` failed before it changed anything; its rollback hook was not run: its command never started"
        ),
        "{}",
        run.stdout
    );
    let record = record(&test);
    assert!(step(&record, "migrate")["rollback"].is_null());
    assert!(step(&record, "migrate")["rollback_not_run"].is_string());
}
