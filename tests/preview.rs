//! `apply --plan-only`: shows everything, runs nothing.

use crate::common::{Test, repo, script};

/// A fake `docker` (and `sudo`) that record every call and answer `version`.
/// `docker_reply` is the body run for `docker version`.
fn fake_tools(test: &Test, docker_version: &str) -> String {
    let bin = test.path_of("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = test.path_of("calls.log");
    let log = log.display();
    script(
        &bin.join("docker"),
        &format!(
            "echo \"docker $*\" >> {log}\ncase \"$1\" in\n  version) {docker_version} ;;\n  *) exit 99 ;;\nesac"
        ),
    );
    // sudo -n [--preserve-env=...] docker ...: record, then run the fake docker as root would.
    script(
        &bin.join("sudo"),
        &format!(
            "echo \"sudo $*\" >> {log}\nwhile [ \"${{1#-}}\" != \"$1\" ]; do shift; done\n[ \"$1\" = docker ] && shift && echo 24.0.7 && exit 0\nexit 1"
        ),
    );
    format!("{}:/usr/bin:/bin", bin.display())
}

fn calls(test: &Test) -> Vec<String> {
    std::fs::read_to_string(test.path_of("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether a recorded docker call only reads: a version, the state of
/// containers and images, or the preflight's look for programs (`command -v`).
fn read_only(call: &str) -> bool {
    let words = call
        .split_whitespace()
        .skip_while(|w| *w != "docker")
        .skip(1)
        .collect::<Vec<_>>();
    match words.first() {
        Some(&"version" | &"info" | &"inspect" | &"ps") => true,
        Some(&"compose") => words.get(1) == Some(&"version"),
        Some(&"exec") => call.contains("command -v \"$p\""),
        Some(&"image") => words.get(1) == Some(&"inspect"),
        // A look into an image a step will make a container from: a
        // throwaway container, no network, removed when it ends.
        Some(&"run") => {
            call.contains("run --rm --network=none --entrypoint=sh --label=runner.preflight=true")
                && call.contains("command -v \"$p\"")
        }
        _ => false,
    }
}

fn production() -> String {
    std::fs::read_to_string(repo().join("plans/production.toml")).unwrap()
}

/// Previews the production plan with the fake tools (`docker version` runs
/// `docker_version`), plus `extra` arguments and environment.
fn preview_production(
    docker_version: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Test, crate::common::Run) {
    let test = Test::new().plan(&production());
    let path = fake_tools(&test, docker_version);
    let mut test = test
        .args(&["apply", "plan.toml", "--plan-only"])
        .args(extra)
        .path(&path);
    for (k, v) in env {
        test = test.env(k, v);
    }
    let run = test.run();
    // The fake docker answers what it answers: the preview exits 4 exactly
    // when it says apply would stop.
    let stops = run.stdout.contains("Apply would stop before any step");
    assert_eq!(run.status, if stops { 4 } else { 0 }, "{}", run.stderr);
    (test, run)
}

#[test]
fn plan_only_runs_no_step_and_only_read_only_docker_commands() {
    let (test, run) = preview_production("echo 24.0.7", &[], &[]);
    let calls = calls(&test);
    assert!(!calls.is_empty(), "docker was probed");
    for call in &calls {
        assert!(
            read_only(call),
            "non read-only call during --plan-only: {call}"
        );
    }
    // It shows the exact commands it would run, and nothing happened.
    let out = &run.stdout;
    assert!(
        out.contains("Docker: docker (the daemon answers `docker version`)"),
        "{out}"
    );
    assert!(out.contains(
        "docker exec --env RAILS_ENV --env RUNNER_RUN_ID --env RUNNER_STEP --env RUNNER_ATTEMPT --env RUNNER_EXEC_ID -- grenoble-roller-production bundle exec whenever --update-crontab --set 'environment=production'"
    ));
    assert!(out.contains(
        "Critical path (12 steps): clean-orphans -> record-revision -> git-pull -> build -> start -> pending -> maintenance-on -> migrate -> switch"
    ));
    assert!(
        !test.path_of(".runner").exists(),
        "a preview writes no state"
    );
}

#[test]
fn plan_only_picks_sudo_when_docker_is_refused_for_permission() {
    let (test, run) = preview_production(
        "echo 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock' >&2; exit 1",
        &[],
        &[],
    );
    assert!(
        run.stdout.contains("Docker: sudo -n '--preserve-env=DOCKER_HOST,DOCKER_CONTEXT,DOCKER_CONFIG' docker (docker is refused for permission; `sudo -n docker version` answers without a password)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("sudo -n '--preserve-env=DOCKER_HOST,DOCKER_CONTEXT,DOCKER_CONFIG' docker exec --env-file /dev/stdin -- grenoble-roller-db pg_dump"));
    let calls = calls(&test);
    assert!(calls.iter().all(|c| read_only(c)), "{calls:?}");
    assert!(
        calls[2..].iter().all(|c| c.starts_with("sudo -n")),
        "once sudo is picked, every docker call goes through it: {calls:?}"
    );
}

#[test]
fn plan_only_works_without_docker_and_says_so() {
    let test = Test::new().plan(&production());
    let empty = test.path_of("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let test = test
        .args(&["apply", "plan.toml", "--plan-only"])
        .path(empty.to_str().unwrap());
    let run = test.run();
    // It previews, and exits 4 as apply would.
    assert_eq!(run.status, 4, "{}", run.stderr);
    assert!(
        run.stdout.contains("Docker: unavailable: docker is not installed (not on PATH); apply would stop before any step (exit 4)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("help: install Docker Engine, or set DOCKER_CMD")
    );
}

#[test]
fn docker_cmd_from_the_environment_wins() {
    let (_, run) = preview_production("echo 24.0.7", &[], &[("DOCKER_CMD", "sudo -n docker")]);
    assert!(
        run.stdout
            .contains("Docker: sudo -n docker (DOCKER_CMD is set)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("sh -c 'sudo -n docker compose build'"),
        "{}",
        run.stdout
    );
}

#[test]
fn variables_cannot_inject_commands_and_secrets_are_masked() {
    let test = Test::new().plan(
        "[plan]\nname = \"t\"\n\n[vars]\napp = \"web\"\ntoken = { env = \"RUNNER_TEST_TOKEN\", secret = true }\n\n\
         [steps.a]\nkind = \"shell\"\nrun = \"echo {{ app }} 'in {{ app }}' \\\"and {{ app }}\\\"\"\nenv = { TOKEN = \"{{ token }}\" }\n\n\
         [steps.b]\nkind = \"docker-exec\"\ncontainer = \"web\"\ncommand = [\"echo\", \"{{ app }}\"]\nenv = { TOKEN = \"{{ token }}\" }\n",
    );
    let path = fake_tools(&test, "echo 24.0.7");
    let test = test
        .args(&[
            "apply",
            "plan.toml",
            "--plan-only",
            "--var",
            "app=x; rm -rf /",
            "--output",
            "json",
        ])
        .env("RUNNER_TEST_TOKEN", "hunter2-secret")
        .path(&path);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        !run.stdout.contains("hunter2-secret"),
        "secret leaked:\n{}",
        run.stdout
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let a = &json["waves"][0][0]["operations"][0];
    // The script holds no value: it refers to the variable that carries it.
    assert_eq!(
        a["argv"][2],
        "echo \"${RUNNER_VAR_app}\" 'in '\"${RUNNER_VAR_app}\"'' \"and ${RUNNER_VAR_app}\""
    );
    assert_eq!(a["notes"][1], "values bound: RUNNER_VAR_app='x; rm -rf /'");
    assert_eq!(a["notes"][2], "env: TOKEN=***");
    // Run by a real shell with that variable, each place gets the value whole.
    let out = std::process::Command::new("sh")
        .args(["-c", a["argv"][2].as_str().unwrap()])
        .env("RUNNER_VAR_app", "x; rm -rf /")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "x; rm -rf / in x; rm -rf / and x; rm -rf /\n"
    );
    let b = &json["waves"][0][1]["operations"][0]["argv"];
    assert_eq!(
        *b,
        serde_json::json!([
            "docker",
            "exec",
            "--env",
            "TOKEN",
            "--env",
            "RUNNER_RUN_ID",
            "--env",
            "RUNNER_STEP",
            "--env",
            "RUNNER_ATTEMPT",
            "--env",
            "RUNNER_EXEC_ID",
            "--",
            "web",
            "echo",
            "x; rm -rf /"
        ])
    );
    assert_eq!(
        json["vars"][1],
        serde_json::json!({"name": "token", "value": "***", "secret": true, "source": "$RUNNER_TEST_TOKEN"})
    );
}

#[test]
fn json_preview_is_one_document_with_the_same_content() {
    let (_, run) = preview_production("echo 24.0.7", &["--output", "json", "--jobs", "2"], &[]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(json["executes"], false);
    assert_eq!(json["jobs"], 2);
    assert_eq!(json["docker"]["command"], serde_json::json!(["docker"]));
    let waves = json["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 12);
    let migrate = waves[7]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "migrate")
        .unwrap();
    assert_eq!(migrate["needs"], serde_json::json!(["maintenance-on"]));
    assert_eq!(migrate["settings"]["retries"], 0);
    assert_eq!(migrate["rollback"]["also_if_failed"], true);
    assert_eq!(
        migrate["rollback"]["operations"][0]["argv"],
        serde_json::json!([
            "docker",
            "exec",
            "--env",
            "RAILS_ENV",
            "--env",
            "RUNNER_RUN_ID",
            "--env",
            "RUNNER_STEP",
            "--env",
            "RUNNER_ATTEMPT",
            "--env",
            "RUNNER_EXEC_ID",
            "--",
            "grenoble-roller-production-next",
            "bin/rails",
            "db:migrate",
            "VERSION=<steps.schema-version.output>"
        ])
    );
    assert_eq!(json["after_run"][0]["id"], "log-failure");
}

#[test]
fn preview_text_snapshot() {
    let test = Test::new().plan(
        &std::fs::read_to_string(repo().join("plans/examples/maintenance-toggle.toml")).unwrap(),
    );
    let path = fake_tools(&test, "echo 24.0.7");
    let test = test
        .args(&["apply", "plan.toml", "--plan-only"])
        .path(&path);
    let run = test.run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dir = test.dir.path().canonicalize().unwrap();
    insta::assert_snapshot!(run.stdout.replace(dir.to_str().unwrap(), "[dir]"));
}
