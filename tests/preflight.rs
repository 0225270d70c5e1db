//! The preflight (issue 12): the seed's three bugs are found before any change,
//! by `apply` (exit 4, nothing run) and by `--plan-only` (the same findings).

use crate::common::Test;
use crate::common::docker::{Cleanup, busybox_image, docker, docker_ok, free_port, unique};

/// A running container from a busybox image with `extra` Dockerfile lines.
fn container(cleanup: &mut Cleanup, tag: &str, extra: &str, args: &[&str]) -> String {
    let image = unique(tag) + ":t";
    busybox_image(&image, extra, &[]);
    cleanup.images.push(image.clone());
    let name = unique(tag);
    let mut run = vec!["run", "-d", "--name", &name];
    run.extend(args);
    run.push(&image);
    docker_ok(&run);
    cleanup.containers.push(name.clone());
    name
}

/// What the plan's first steps would have changed, had they run.
fn nothing_changed(test: &Test, container: &str) {
    assert!(!test.path_of("changed").exists(), "a host step ran");
    let inside = docker(&["exec", container, "cat", "/changed"]);
    assert!(!inside.status.success(), "a step in the container ran");
}

/// Steps that would change the host and the container, first in the plan.
fn changes(container: &str) -> String {
    format!(
        r#"
[steps.change-host]
kind = "shell"
run = "touch changed"

[steps.change-container]
kind = "docker-exec"
container = "{container}"
command = ["sh", "-c", "echo yes > /changed"]
"#
    )
}

#[test]
fn a_host_program_that_exists_only_in_the_container_is_found_before_any_change() {
    let mut cleanup = Cleanup::default();
    // A tool the container has and this host does not: `whenever` in the seed.
    let tool = format!("whenever-{}", std::process::id());
    let app = container(
        &mut cleanup,
        "tool",
        &format!(
            "RUN printf '#!/bin/sh\\necho crontab written\\n' > /bin/{tool} && chmod +x /bin/{tool}\nCMD [\"sleep\", \"3600\"]"
        ),
        &[],
    );
    let plan = format!(
        r#"
[plan]
name = "seed bug 3"
{changes}
[steps.crontab]
kind = "shell"
needs = ["change-host", "change-container"]
run = "cd . && {tool} --update-crontab"
"#,
        changes = changes(&app)
    );
    let test = Test::new().plan(&plan).args(&["apply", "plan.toml"]);
    let err = &stopped(&test);
    has(err, "the preflight found 1 problem before any change");
    has(
        err,
        &format!(
            "step `crontab` (on the host): `{tool}` is not installed on this host (not on PATH)"
        ),
    );
    assert!(
        err.contains(&format!(
            "`{tool}` is in container `{app}`: run it there with a `docker-exec` step"
        )),
        "the fix names the container that has it: {err}"
    );
    nothing_changed(&test, &app);
    assert!(
        !test.path_of(".runner/runs").exists(),
        "no run started, so no record"
    );

    // The preview shows the same, and exits 4 as apply would: a CI job can
    // gate on it.
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}", preview.stderr);
    has(
        &preview.stdout,
        "Apply would stop before any step: the preflight found 1 problem. This preview exits 4 as apply would.",
    );
    assert!(
        preview
            .stdout
            .contains("Preflight: 1 problem; apply would stop before any step (exit 4)"),
        "{}",
        preview.stdout
    );
    assert!(
        preview
            .stdout
            .contains(&format!("`{tool}` is in container `{app}`"))
    );

    // The fix: run it in the container. The plan then passes and runs.
    let fixed = plan.replace(
        &format!("kind = \"shell\"\nneeds = [\"change-host\", \"change-container\"]\nrun = \"cd . && {tool} --update-crontab\""),
        &format!("kind = \"docker-exec\"\nneeds = [\"change-host\", \"change-container\"]\ncontainer = \"{app}\"\ncommand = [\"{tool}\", \"--update-crontab\"]"),
    );
    assert_ne!(fixed, plan);
    std::fs::write(test.path_of("plan.toml"), fixed).expect("plan");
    let run = test.run();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("crontab written"), "{}", run.stdout);
}

#[test]
fn a_probe_of_a_port_the_host_does_not_publish_is_found_before_any_change() {
    let mut cleanup = Cleanup::default();
    // The app listens on `port` inside its container, exposed, never published.
    let port = free_port();
    let app = container(
        &mut cleanup,
        "unpublished",
        &format!("EXPOSE {port}\nCMD [\"httpd\", \"-f\", \"-p\", \"{port}\", \"-h\", \"/bin\"]"),
        &[],
    );
    let plan = format!(
        r#"
[plan]
name = "seed bug 1"
{changes}
[steps.health-http]
kind = "http-probe"
needs = ["change-host", "change-container"]
url = "http://localhost:{port}/up"
"#,
        changes = changes(&app)
    );
    let test = Test::new().plan(&plan).args(&["apply", "plan.toml"]);
    let err = &stopped(&test);
    has(
        err,
        &format!("step `health-http` (on the host): nothing answers on port {port} of this host"),
    );
    has(
        err,
        &format!("container `{app}` listens on {port} but does not publish it on this host"),
    );
    has(
        err,
        &format!("probe from inside the container: `container = \"{app}\"`"),
    );
    nothing_changed(&test, &app);

    // Probed from inside (busybox has wget), the plan passes the preflight.
    let fixed = plan.replace(
        &format!("url = \"http://localhost:{port}/up\""),
        &format!("container = \"{app}\"\nurl = \"http://localhost:{port}/\"\nexpect_status = 404"),
    );
    std::fs::write(test.path_of("plan.toml"), fixed).expect("plan");
    let run = test.run();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn a_missing_compose_is_found_before_any_change() {
    let mut cleanup = Cleanup::default();
    let app = container(&mut cleanup, "nocompose", "CMD [\"sleep\", \"3600\"]", &[]);
    // A docker without the compose plugin, and no docker-compose beside it.
    let test = Test::new();
    let bin = test.path_of("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let real = which_docker();
    crate::common::script(
        &bin.join("docker"),
        &format!(
            "if [ \"$1\" = compose ]; then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\nexec {real} \"$@\""
        ),
    );
    let plan = format!(
        r#"
[plan]
name = "seed: compose missing"
{changes}
[steps.restart]
kind = "shell"
needs = ["change-host", "change-container"]
run = "{{{{ compose }}}} up -d --no-deps web"
"#,
        changes = changes(&app)
    );
    let docker_cmd = bin.join("docker").display().to_string();
    let test = test
        .plan(&plan)
        .env("DOCKER_CMD", &docker_cmd)
        .args(&["apply", "plan.toml"]);
    let err = &stopped(&test);
    assert!(
        err.contains(
            "step `restart` (on the host): neither `docker compose` nor `docker-compose` answers"
        ),
        "{err}"
    );
    has(err, "install the compose plugin");
    nothing_changed(&test, &app);

    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}", preview.stderr);
    assert!(
        preview.stdout.contains(
            "Compose: unavailable: neither `docker compose` nor `docker-compose` answers"
        ),
        "{}",
        preview.stdout
    );
}

/// A fake `docker` (its `compose` plugin runs `plugin`, a shell line) and a
/// fake `docker-compose` 1.29.2 in the test's `bin`, both logging each call to
/// the returned log file.
fn fake_composes(test: &Test, plugin: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let bin = test.path_of("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let log = test.path_of("calls.log");
    crate::common::script(
        &bin.join("docker"),
        &format!(
            "echo \"docker $*\" >> {log}\ncase \"$1\" in version) echo 24.0.7 ;; compose) {plugin} ;; *) exit 0 ;; esac",
            log = log.display()
        ),
    );
    crate::common::script(
        &bin.join("docker-compose"),
        &format!(
            "echo \"docker-compose $*\" >> {log}\n[ \"$1\" = version ] && echo 1.29.2\nexit 0",
            log = log.display()
        ),
    );
    (bin, log)
}

#[test]
fn compose_is_the_plugin_else_the_standalone_program_run_like_docker() {
    let test = Test::new();
    // docker answers; its compose plugin does not; docker-compose beside it does.
    let (bin, log) = fake_composes(&test, "exit 1");
    let test = test
        .plan(
            r#"
[plan]
name = "compose"

[vars]
service = "web; touch injected"

[steps.up]
kind = "shell"
run = "{{ compose }} up -d {{ service }} && echo \"$COMPOSE_CMD\""
"#,
        )
        .env("DOCKER_CMD", &bin.join("docker").display().to_string())
        .args(&["apply", "plan.toml", "--report", "record.json"]);
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}", preview.stderr);
    let compose = bin.join("docker-compose").display().to_string();
    assert!(
        preview.stdout.contains(&format!(
            "Compose: {compose} (version 1.29.2: the plugin does not answer; `docker-compose version` does)"
        )),
        "{}",
        preview.stdout
    );
    let run = test.run();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let calls = std::fs::read_to_string(&log).expect("calls");
    assert!(
        calls.contains("docker-compose up -d web; touch injected\n"),
        "the value is one argument: {calls}"
    );
    assert!(!test.path_of("injected").exists());
    assert!(
        run.stdout.contains(&compose),
        "$COMPOSE_CMD: {}",
        run.stdout
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(test.path_of("record.json")).expect("record"),
    )
    .expect("json");
    assert_eq!(record["compose"]["command"], compose, "{record}");
}

/// Both installed: the plugin first, as docker itself prefers it; `COMPOSE_CMD`
/// picks the other, and the preview names the one picked with its version.
#[test]
fn compose_cmd_picks_compose_where_both_answer() {
    let test = Test::new();
    let (bin, log) = fake_composes(&test, "[ \"$2\" = version ] && echo 2.40.3; exit 0");
    let docker = bin.join("docker").display().to_string();
    let standalone = bin.join("docker-compose").display().to_string();
    let test = test
        .plan(
            r#"
[plan]
name = "compose"

[steps.up]
kind = "shell"
run = "{{ compose }} up -d web"
"#,
        )
        .env("DOCKER_CMD", &docker);
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}", preview.stderr);
    has(
        &preview.stdout,
        &format!(
            "Compose: {docker} compose (version 2.40.3: the compose plugin answers `docker compose version`)"
        ),
    );
    let test = test.env("COMPOSE_CMD", &standalone);
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}", preview.stderr);
    has(
        &preview.stdout,
        &format!("Compose: {standalone} (version 1.29.2: COMPOSE_CMD is set)"),
    );
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let calls = std::fs::read_to_string(&log).expect("calls");
    assert!(calls.contains("docker-compose up -d web\n"), "{calls}");
    assert!(!calls.contains("docker compose up"), "{calls}");
    // A COMPOSE_CMD that does not answer stops the run before any change.
    let test = test.env("COMPOSE_CMD", "/nonexistent/compose");
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    has(
        &run.stderr,
        "COMPOSE_CMD does not answer `version`: fix it or unset it",
    );
}

#[test]
fn what_an_earlier_step_creates_is_left_to_the_run() {
    let mut cleanup = Cleanup::default();
    let image = unique("later") + ":t";
    busybox_image(&image, "CMD [\"sleep\", \"3600\"]", &[]);
    cleanup.images.push(image.clone());
    let name = unique("later");
    cleanup.containers.push(name.clone());
    let plan = |creates: &str| {
        format!(
            r#"
[plan]
name = "creates"

[steps.start]
kind = "shell"
run = "docker run -d --name {name} {image} >/dev/null"
{creates}

[steps.use]
kind = "docker-exec"
needs = ["start"]
container = "{name}"
command = ["echo", "inside"]
"#
        )
    };
    // Unmarked: the container does not exist yet, and the preflight says so.
    let test = Test::new().plan(&plan("")).args(&["apply", "plan.toml"]);
    let err = stopped(&test);
    has(&err, &format!("there is no container named `{name}`"));
    has(&err, "creates = { containers = [");
    assert!(!docker(&["inspect", &name]).status.success(), "nothing ran");
    // Marked: left to the run, which makes it and uses it.
    std::fs::write(
        test.path_of("plan.toml"),
        plan(&format!("creates = {{ containers = [\"{name}\"] }}")),
    )
    .expect("plan");
    let run = test.run();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("inside"), "{}", run.stdout);
}

#[test]
fn a_missing_program_user_or_workdir_in_a_running_container_is_found() {
    let mut cleanup = Cleanup::default();
    let app = container(&mut cleanup, "inside", "CMD [\"sleep\", \"3600\"]", &[]);
    let test = Test::new()
        .plan(&format!(
            r#"
[plan]
name = "inside"
{changes}
[steps.migrate]
kind = "docker-exec"
needs = ["change-host", "change-container"]
container = "{app}"
command = ["bin/rails", "db:migrate"]
workdir = "/"

[steps.as-deploy]
kind = "docker-exec"
needs = ["change-host", "change-container"]
container = "{app}"
user = "deploy"
command = ["true"]

[steps.in-app]
kind = "docker-exec"
needs = ["change-host", "change-container"]
container = "{app}"
workdir = "/srv/app"
command = ["true"]
"#,
            changes = changes(&app)
        ))
        .args(&["apply", "plan.toml"]);
    let err = &stopped(&test);
    has(err, "the preflight found 3 problems");
    has(
        err,
        &format!(
            "step `migrate` (in container `{app}`): `bin/rails` is not in container `{app}` (no such executable file under /)"
        ),
    );
    has(
        err,
        &format!("step `as-deploy` (in container `{app}`): there is no user `deploy`"),
    );
    has(
        err,
        &format!("step `in-app` (in container `{app}`): there is no directory `/srv/app`"),
    );
    nothing_changed(&test, &app);
}

fn which_docker() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Fails with the whole text when `want` is not in it.
fn has(text: &str, want: &str) {
    assert!(text.contains(want), "{want:?} is not in:\n{text}");
}

/// Runs `test`, which the preflight must stop (exit 4); returns its stderr.
fn stopped(test: &Test) -> String {
    let run = test.run();
    assert_eq!(run.status, 4, "{}\n{}", run.stdout, run.stderr);
    run.stderr
}

/// A container a step makes from an image the plan names: what later steps
/// run there is looked for in that image before any change (the seed's
/// `bin/maintenance` missing from the release), in a throwaway container
/// that is gone afterwards. Without an image, everything that runs there is
/// left to the run in one line.
#[test]
fn a_container_a_step_makes_is_checked_in_the_image_it_is_made_from() {
    let mut cleanup = Cleanup::default();
    let without = unique("noimg") + ":t";
    busybox_image(&without, "CMD [\"sleep\", \"3600\"]", &[]);
    cleanup.images.push(without.clone());
    let with = unique("withimg") + ":t";
    busybox_image(
        &with,
        "CMD [\"sleep\", \"3600\"]",
        &[("rootfs/app/bin/tool", b"#!/bin/sh\necho tool ran\n")],
    );
    cleanup.images.push(with.clone());
    let name = unique("made");
    cleanup.containers.push(name.clone());
    let plan = |creates: &str, image: &str| {
        format!(
            r#"
[plan]
name = "made from an image"

[steps.start]
kind = "shell"
run = "docker run -d --name {name} {image} >/dev/null"
creates = {creates}

[steps.use]
kind = "docker-exec"
needs = ["start"]
container = "{name}"
command = ["/app/bin/tool"]
rollback = {{ kind = "docker-exec", container = "{name}", command = ["/app/bin/tool", "undo"] }}

[steps.again]
kind = "docker-exec"
needs = ["use"]
container = "{name}"
command = ["/app/bin/tool", "again"]
"#
        )
    };
    let named =
        |image: &str| format!("{{ containers = [{{ name = \"{name}\", image = \"{image}\" }}] }}");
    let test = Test::new()
        .plan(&plan(&named(&without), &without))
        .args(&["apply", "plan.toml"]);
    let err = stopped(&test);
    has(
        &err,
        &format!(
            "step `use` (in container `{name}`): `/app/bin/tool` is not in image `{without}`, which step `start` makes container `{name}` from"
        ),
    );
    has(
        &err,
        &format!("rollback hook of `use` (in container `{name}`)"),
    );
    has(&err, "the preflight found 3 problems");
    assert!(!docker(&["inspect", &name]).status.success(), "nothing ran");
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 4, "{}", preview.stdout);
    has(
        &preview.stdout,
        &format!("`/app/bin/tool` is not in image `{without}`"),
    );
    // The looks ran in throwaway containers, all gone.
    let left = docker_ok(&["ps", "-aq", "--filter", "label=runner.preflight=true"]);
    assert_eq!(left.trim(), "", "a look's container was left behind");

    // A step that builds that image anew: what the image lacks now is left
    // to the run, and said.
    std::fs::write(
        test.path_of("plan.toml"),
        plan(&named(&without), &without).replace(
            "[steps.start]",
            &format!(
                "[steps.build]\nkind = \"shell\"\nrun = \"true\"\ncreates = {{ images = [\"{without}\"] }}\n\n[steps.start]\nneeds = [\"build\"]"
            ),
        ),
    )
    .expect("plan");
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}", preview.stdout);
    has(
        &preview.stdout,
        &format!(
            "`/app/bin/tool` is not in image `{without}` as it is now, and step `build` makes that image anew"
        ),
    );

    // No image named: one line for the container, naming every step and hook
    // that runs there.
    std::fs::write(
        test.path_of("plan.toml"),
        plan(&format!("{{ containers = [\"{name}\"] }}"), &without),
    )
    .expect("plan");
    let preview = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(preview.status, 0, "{}", preview.stdout);
    let left: Vec<&str> = preview
        .stdout
        .lines()
        .filter(|l| l.contains("left to the run:"))
        .collect();
    assert_eq!(left.len(), 1, "{}", preview.stdout);
    has(
        left[0],
        &format!(
            "container `{name}` is made by step `start`, so what steps `use`, `again` and the rollback hook of `use` run there is left to the run"
        ),
    );

    // The image that has it: checked, and the run goes.
    std::fs::write(test.path_of("plan.toml"), plan(&named(&with), &with)).expect("plan");
    let run = test.run();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("tool ran"), "{}", run.stdout);
}
