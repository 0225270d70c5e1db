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
    // How soon traffic is back on the old release: benches/docker.py.
    // The old release is the app again, running; the new one is gone.
    let app = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.Config.Image}}",
        &demo.name,
    ]);
    assert_eq!(app.trim(), format!("running {}:v2", demo.name));
    for gone in ["next", "previous"] {
        assert!(!exists(&format!("{}-{gone}", demo.name)), "{gone}");
    }
}

/// A check fails after the window closed: the rollback changes the app only
/// behind the maintenance page. The hook of the step that reopened the site
/// (maintenance on) runs before every other, also before that of a step that
/// completed after it; the hook that reopens it runs last.
#[test]
fn a_rollback_after_the_window_closed_touches_the_app_only_behind_the_page() {
    let demo = Demo::new("closefirst");
    // v1 only, then v2 (a migration: a window) with a step after the window
    // whose hook notes what users get while it runs, and a check that fails.
    assert_eq!(demo.apply(&["--var", "version=v1"]).status, 0);
    let plan = std::fs::read_to_string(demo.test.path_of("demo.toml")).expect("plan");
    std::fs::write(
        demo.test.path_of("demo.toml"),
        format!(
            "{plan}
[steps.touch-app]
kind = \"shell\"
needs = [\"maintenance-off\"]
run = \"true\"
rollback = {{ kind = \"shell\", run = \"{{{{ docker }}}} exec {{{{ app }}}} /app/bin/maintenance status >> seen\" }}

[steps.smoke]
kind = \"shell\"
needs = [\"touch-app\"]
run = \"exit 1\"
"
        ),
    )
    .expect("plan");
    let run = demo.apply(&["--var", "version=v2"]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let seen = std::fs::read_to_string(demo.test.path_of("seen")).expect("the hook ran");
    assert_eq!(
        seen.trim(),
        "true",
        "the hook ran while users reached the app"
    );
    let record = record(&demo.test);
    let at = |id: &str| {
        step(&record, id)["rollback"]["started_ms"]
            .as_u64()
            .expect(id)
    };
    assert!(at("maintenance-off") < at("touch-app"), "{record}");
    assert!(at("touch-app") < at("maintenance-on"), "{record}");
    assert_eq!(demo.maintenance_status(), "maintenance is off");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v1 schema=1"));
}

#[test]
fn backward_compatible_migrations_run_while_the_old_release_serves() {
    let demo = Demo::new("expand");
    // v1 -> v2 brings a migration: inside the window the new release joins
    // the name early, and the switch finds it there.
    let first = demo.apply(&[]);
    assert_eq!(first.status, 0, "{}", first.stdout);
    assert_eq!(step(&record(&demo.test), "join")["status"], "succeeded");
    assert!(
        first
            .stdout
            .contains("(joined earlier): no wait for the proxy"),
        "{}",
        first.stdout
    );
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
    assert_eq!(step(&record, "join")["status"], "skipped");
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

/// A release that is a compose service (`service`, `dir`): compose makes the
/// second container of the service, as docker-rollout does, and the proxy's
/// name for it (the service's) moves from one release to the other.
mod compose {
    use std::process::Command;

    use crate::common::Test;
    use crate::common::docker::{Cleanup, busybox_image, docker, docker_ok, unique};

    /// Two releases of a service that says its version on port 8080, under
    /// this machine's compose, in the project `project`; `down` at the end.
    struct Stack {
        test: Test,
        project: String,
        image: String,
        _cleanup: Cleanup,
    }

    impl Stack {
        fn new(tag: &str, service_extra: &str) -> Self {
            let image = unique(tag);
            let mut cleanup = Cleanup::default();
            for version in ["v1", "v2"] {
                let tagged = format!("{image}:{version}");
                busybox_image(
                    &tagged,
                    r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]"#,
                    &[("rootfs/srv/index.html", version.as_bytes())],
                );
                cleanup.images.push(tagged);
            }
            let project = unique(tag).replace(['-', '.'], "");
            let stack = Self {
                test: Test::new()
                    .env("COMPOSE_PROJECT_NAME", &project)
                    .env("COMPOSE_CMD", &compose_words().join(" ")),
                project,
                image,
                _cleanup: cleanup,
            };
            stack.compose_file("v1", service_extra);
            let up = stack.compose(&["up", "-d"]);
            assert!(
                up.status.success(),
                "{}",
                String::from_utf8_lossy(&up.stderr)
            );
            stack
        }

        /// The compose file as a release brings it.
        fn compose_file(&self, version: &str, service_extra: &str) {
            let dir = self.test.path_of("srv");
            std::fs::create_dir_all(&dir).expect("srv");
            std::fs::write(
                dir.join("docker-compose.yml"),
                format!(
                    "version: \"2.4\"\nservices:\n  web:\n    image: {}:{version}\n{service_extra}",
                    self.image
                )
                .replace("PROJECT", &self.project),
            )
            .expect("compose file");
        }

        /// The compose these tests use, the one runner is told to pick too.
        fn compose(&self, args: &[&str]) -> std::process::Output {
            let words = compose_words();
            let mut command = Command::new(&words[0]);
            command
                .args(&words[1..])
                .args(args)
                .current_dir(self.test.path_of("srv"))
                .env("COMPOSE_PROJECT_NAME", &self.project)
                .output()
                .expect("docker-compose")
        }
    }

    /// The compose to test with: `RUNNER_TEST_COMPOSE=v2` the plugin, `v1` the
    /// standalone `docker-compose`, each required to answer with that major
    /// version; unset, the one this machine's docker prefers (the plugin, else
    /// docker-compose).
    fn compose_words() -> Vec<String> {
        let plugin = vec!["docker".to_owned(), "compose".to_owned()];
        let standalone = vec!["docker-compose".to_owned()];
        let version = |words: &[String]| {
            Command::new(&words[0])
                .args(&words[1..])
                .args(["version", "--short"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let wanted = std::env::var("RUNNER_TEST_COMPOSE").unwrap_or_default();
        let (words, major) = match wanted.as_str() {
            "v2" => (plugin, "2."),
            "v1" => (standalone, "1."),
            "" => {
                return if version(&plugin).is_some() {
                    plugin
                } else {
                    standalone
                };
            }
            other => panic!("RUNNER_TEST_COMPOSE is `v1` or `v2`, not `{other}`"),
        };
        let answered = version(&words);
        assert!(
            answered
                .as_deref()
                .is_some_and(|v| v.trim_start_matches('v').starts_with(major)),
            "RUNNER_TEST_COMPOSE={wanted}: `{} version --short` answered {answered:?}",
            words.join(" ")
        );
        words
    }

    /// `app`, `app-next` and `app-previous`: whether each exists, and runs.
    fn state(name: &str) -> Option<bool> {
        let out = docker(&["inspect", "--format", "{{.State.Running}}", name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim() == "true")
    }

    fn version(name: &str) -> String {
        docker_ok(&["exec", name, "cat", "/srv/index.html"])
    }

    /// The addresses the service's name stands for on its network, as a
    /// proxy on that network resolves it, and the address of `name`.
    fn web_and(name: &str) -> (Vec<String>, String) {
        let out = docker_ok(&["exec", name, "nslookup", "web"]);
        let mut named = false;
        let mut web: Vec<String> = Vec::new();
        for line in out.lines() {
            if line.starts_with("Name:") {
                named = true;
            } else if named && let Some(address) = line.strip_prefix("Address:") {
                web.push(address.trim().split(' ').next().unwrap_or("").to_owned());
            }
        }
        web.sort();
        let own = docker_ok(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ]);
        (web, own.trim().to_owned())
    }

    impl Drop for Stack {
        fn drop(&mut self) {
            let _ = self.compose(&["down", "-v", "--remove-orphans"]);
            for suffix in ["", "-next", "-previous"] {
                let _ = docker(&["rm", "-f", &format!("{}{suffix}", self.project)]);
            }
        }
    }

    fn plan(app: &str, after_switch: &str) -> String {
        format!(
            r#"
[plan]
name = "compose release"

[steps.start]
kind = "release"
stage = "start"
service = "web"
dir = "srv"
container = "{app}"
health = "http://localhost:8080/"
health_timeout = "20s"
drain = "2s"
settle = "300ms"

[steps.switch]
kind = "release"
stage = "switch"
needs = ["start"]
service = "web"
dir = "srv"
container = "{app}"
health = "http://localhost:8080/"
drain = "2s"
settle = "300ms"
{after_switch}
"#
        )
    }

    #[test]
    fn a_compose_service_is_released_beside_the_running_one_and_rolled_back_by_the_reverse_switch()
    {
        let stack = Stack::new("cmp", "");
        let app = stack.project.clone();
        // The release's compose file, as a git pull would bring it.
        stack.compose_file("v2", "");
        // A check after the switch fails: the reverse switch.
        let failing = "[steps.smoke]\nkind = \"shell\"\nneeds = [\"switch\"]\nrun = \"exit 1\"\n";
        let test = &stack.test;
        std::fs::write(test.path_of("plan.toml"), plan(&app, failing)).expect("plan");
        // The preview names the compose the run uses, with its version.
        let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
        let picked = format!("Compose: {} (version ", compose_words().join(" "));
        assert!(preview.stdout.contains(&picked), "{}", preview.stdout);
        let run = test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        // The running container was adopted under the app's name, and serves
        // again, alone under the service's name; the new one is gone.
        assert_eq!(state(&app), Some(true), "{}", run.stdout);
        assert_eq!(version(&app), "v1");
        let (web, own) = web_and(&app);
        assert_eq!(web, vec![own], "{}", run.stdout);
        assert_eq!(state(&format!("{app}-next")), None, "{}", run.stdout);
        let ps = stack.compose(&["ps", "-q", "web"]);
        assert_eq!(String::from_utf8_lossy(&ps.stdout).lines().count(), 1);

        // The same release without the failing check.
        std::fs::write(test.path_of("plan.toml"), plan(&app, "")).expect("plan");
        let run = test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(version(&app), "v2");
        let (web, own) = web_and(&app);
        assert_eq!(web, vec![own], "{}", run.stdout);
        // The old release is kept, stopped, for a rollback…
        assert_eq!(state(&format!("{app}-previous")), Some(false));
        // …until a finish removes it.
        let finish = format!(
            "{}\n[steps.finish]\nkind = \"release\"\nstage = \"finish\"\ncontainer = \"{app}\"\n",
            "[plan]\nname = \"compose release\""
        );
        std::fs::write(test.path_of("plan.toml"), finish).expect("plan");
        let run = test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(state(&format!("{app}-previous")), None);
        assert_eq!(state(&app), Some(true));
    }

    #[test]
    fn a_compose_service_that_cannot_run_twice_is_a_preflight_finding_before_any_change() {
        let port = crate::common::docker::free_port();
        let extra = format!(
            "    container_name: PROJECT-fixed\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n"
        );
        let stack = Stack::new("cmpbad", &extra);
        // The running container's name is the fixed one.
        let app = stack.project.clone();
        let fixed = format!("{app}-fixed");
        let _gone = scopeguard(&fixed);
        std::fs::write(stack.test.path_of("plan.toml"), plan(&app, "")).expect("plan");
        let run = stack.test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains(&format!("service `web` has `container_name: {fixed}`")),
            "{said}"
        );
        assert!(
            // Compose v1 prints the short syntax, v2 the long one.
            said.lines()
                .any(|l| l.contains("service `web` publishes port")
                    && l.contains(&port.to_string())
                    && l.contains("on the host")),
            "{said}"
        );
        // Nothing changed: the one container, under its own name.
        assert_eq!(state(&fixed), Some(true));
        assert_eq!(state(&app), None);
        assert_eq!(state(&format!("{app}-next")), None);
    }

    /// Removes a container by name at the end.
    fn scopeguard(name: &str) -> impl Drop {
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = docker(&["rm", "-f", &self.0]);
            }
        }
        Gone(name.to_owned())
    }
}
