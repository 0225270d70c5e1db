//! The docker step kinds against the real Docker engine of this machine: the demo
//! deploy, rollbacks behind the maintenance page, probe transports, timeouts inside
//! containers, sudo. No test skips: without a Docker engine they fail.
//!
//! Every container, network, volume and image a test makes has a name unique to
//! the test, and a guard removes it when the test ends, failed or not.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::docker::{
    Cleanup, Demo, MAINTENANCE_PAGE, Users, busybox_image, docker_ok, free_port, get, record,
    run_as, sleeper, start, unique,
};
use crate::common::{Test, step};

#[test]
fn demo_deploy_succeeds_and_the_proxy_never_fails_a_request() {
    let demo = Demo::new("demo");
    let first = demo.apply(&[]);
    assert_eq!(first.status, 0, "{}\n{}", first.stdout, first.stderr);
    let record = record(&demo.test);
    assert_eq!(record["status"], "succeeded");
    let steps = record["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 16);
    for s in steps {
        let expected = if s["phase"] == "plan" {
            "succeeded"
        } else {
            "skipped"
        };
        assert_eq!(s["status"], expected, "{s}");
    }
    // The app has no curl: the in-container probe used wget, not the host.
    let probe = &step(&record, "health-http")["attempts"][0];
    assert_eq!(
        probe["transport"],
        "wget in the container: GET http://localhost:3000/cgi-bin/up"
    );
    let backup = std::fs::read_dir(demo.test.path_of(".runner/backups"))
        .expect("backups")
        .count();
    assert_eq!(backup, 1, "one backup file");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v2 schema=2"));

    // Release v3, which brings no migration, while a client hits the proxy
    // every 20 ms: every answer is a 200, from v2 then v3; no maintenance page,
    // no connection error, no other status.
    let url = format!("http://127.0.0.1:{}/cgi-bin/up", demo.port);
    let stop = Arc::new(Mutex::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Result<(u16, bool), String>>::new()));
    let poller = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || {
            // Bounded: at most 3,000 requests (a minute at 20 ms).
            for _ in 0..3000 {
                if *stop.lock().expect("lock") {
                    break;
                }
                let answer = get(&url).map(|(s, body)| (s, body.contains(MAINTENANCE_PAGE)));
                seen.lock().expect("lock").push(answer);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let second = demo
        .test
        .run_with(&["apply", "demo.toml", "--var", "version=v3"]);
    *stop.lock().expect("lock") = true;
    poller.join().expect("poller");
    assert_eq!(second.status, 0, "{}\n{}", second.stdout, second.stderr);
    let seen = seen.lock().expect("lock");
    let ok = seen
        .iter()
        .filter(|a| matches!(a, Ok((200, false))))
        .count();
    let maintenance = seen.iter().filter(|a| matches!(a, Ok((503, true)))).count();
    let other: Vec<_> = seen
        .iter()
        .filter(|a| !matches!(a, Ok((200, false) | (503, true))))
        .collect();
    assert!(other.is_empty(), "errors or other answers: {other:?}");
    assert_eq!(
        maintenance, 0,
        "a release with no migration needs no window"
    );
    assert!(ok > 0, "the app was served before and after");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v3 schema=2"));
    let released = crate::common::docker::record(&demo.test);
    for skipped in ["maintenance-on", "migrate", "maintenance-off"] {
        assert_eq!(step(&released, skipped)["status"], "skipped", "{skipped}");
    }
    assert!(
        released["maintenance"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    // The previous release is kept, stopped, for a rollback.
    let previous = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.Config.Image}}",
        &format!("{}-previous", demo.name),
    ]);
    assert_eq!(previous.trim(), format!("exited {}:v2", demo.name));
}

#[test]
fn a_failed_migration_rolls_back_behind_the_maintenance_page() {
    let demo = Demo::new("rollback");
    let run = demo.apply(&["--var", "fail_migration=yes"]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let record = record(&demo.test);
    assert_eq!(step(&record, "migrate")["status"], "failed");
    // The release had joined the name inside the window (as the migration
    // ran): it leaves it, in reverse order of completion with the others;
    // maintenance goes off last.
    let order: Vec<&str> = record["rollback"]
        .as_array()
        .expect("rollback")
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    let at = |id: &str| order.iter().position(|h| *h == id);
    assert_eq!(order.len(), 4, "{order:?}");
    assert!(
        at("join").is_some() && at("migrate") < at("start"),
        "{order:?}"
    );
    assert_eq!(order.last(), Some(&"maintenance-on"), "{order:?}");
    // The migration failed before changing anything: its hook found nothing
    // to undo, and the step after the rollback saw the schema as it was.
    let after = step(&record, "schema-after-rollback");
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["output_tail"][0], "[stdout] db ok schema=1");
    // The release never took traffic: v1 stayed in place, and the new
    // container started beside it is gone…
    assert_eq!(step(&record, "switch")["status"], "skipped");
    assert!(
        !crate::common::docker::docker(&["inspect", &format!("{}-next", demo.name)])
            .status
            .success()
    );
    // …and maintenance is off after the rollback.
    assert_eq!(demo.maintenance_status(), "maintenance is off");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!((status, body.trim()), (200, "up v1 schema=1"));
    // The backup is complete, and nothing half-written lies beside it.
    let backups: Vec<_> = std::fs::read_dir(demo.test.path_of(".runner/backups"))
        .expect("backups")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let dump = std::fs::read_to_string(&backups[0]).expect("backup");
    assert_eq!(
        dump,
        "-- schema 1\n-- since v1\nCREATE TABLE members (id integer, name text);\n"
    );
    assert!(
        run.stdout
            .contains("every rollback hook succeeded (exit 1)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_failed_rollback_hook_exits_3_and_leaves_maintenance_on() {
    let demo = Demo::new("hookfail");
    let run = demo.apply(&["--var", "fail_migration=yes", "--var", "fail_rollback=yes"]);
    assert_eq!(run.status, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("MAINTENANCE IS LEFT ON"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("ROLLBACK IS INCOMPLETE"),
        "{}",
        run.stdout
    );
    let record = record(&demo.test);
    assert_eq!(record["status"], "rollback_incomplete");
    assert_eq!(step(&record, "migrate")["rollback"]["succeeded"], false);
    assert_eq!(record["rollback_held"][0]["step"], "maintenance-on");
    assert_eq!(demo.maintenance_status(), "maintenance is on");
    let (status, body) = demo.up().expect("the proxy answers");
    assert_eq!(status, 503);
    assert!(body.contains(MAINTENANCE_PAGE), "{body}");

    // The repair hint, run exactly as printed, from elsewhere and without the
    // demo's environment, acts on this run's app.
    let hint = run
        .stdout
        .lines()
        .skip_while(|l| !l.contains("Repair the system, then run, as it stands:"))
        .nth(1)
        .expect("a repair command")
        .trim()
        .to_owned();
    assert_eq!(record["repair"], hint.as_str());
    let elsewhere = tempfile::tempdir().expect("a folder");
    let repaired = Command::new("sh")
        .args(["-c", &hint])
        .current_dir(elsewhere.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run the hint");
    assert!(
        repaired.status.success(),
        "{hint}\n{}{}",
        String::from_utf8_lossy(&repaired.stdout),
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert_eq!(demo.maintenance_status(), "maintenance is off");
}

/// Images for the probe tests: busybox with curl (the host's, with its
/// libraries), busybox alone (wget, no curl), busybox without wget.
fn probe_images(cleanup: &mut Cleanup) -> [String; 3] {
    let base = unique("probe");
    let [curl, wget, bare] = ["curl", "wget", "bare"].map(|t| format!("{base}:{t}"));
    let site: &[(&str, &[u8])] = &[("www/up", b"probe ok\n")];
    let serve = "COPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"3000\", \"-h\", \"/www\"]";

    // curl and every library it links, at their own paths.
    let ldd = Command::new("ldd")
        .arg("/usr/bin/curl")
        .output()
        .expect("ldd");
    assert!(ldd.status.success(), "curl must be installed on the host");
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "root/usr/bin/curl".into(),
        std::fs::read("/usr/bin/curl").expect("curl"),
    )];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_owned);
        if let Some(path) = path {
            let real = std::fs::canonicalize(&path).expect("library");
            files.push((
                format!("root{path}"),
                std::fs::read(real).expect("read library"),
            ));
        }
    }
    let mut with_curl: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    with_curl.extend_from_slice(site);
    busybox_image(&curl, &format!("COPY root /\n{serve}"), &with_curl);
    cleanup.images.push(curl.clone());
    busybox_image(&wget, serve, site);
    cleanup.images.push(wget.clone());
    busybox_image(
        &bare,
        &format!("RUN [\"/bin/busybox\", \"rm\", \"/bin/wget\"]\n{serve}"),
        site,
    );
    cleanup.images.push(bare.clone());
    [curl, wget, bare]
}

#[test]
fn probes_use_curl_then_wget_then_the_host_and_name_every_failure() {
    let mut cleanup = Cleanup::default();
    let [curl, wget, bare] = probe_images(&mut cleanup);
    let published = free_port();
    let with_curl = start(&mut cleanup, &curl, None);
    let with_wget = start(&mut cleanup, &wget, None);
    let neither = start(&mut cleanup, &bare, Some(published));
    let hidden = start(&mut cleanup, &bare, None);
    let closed = free_port();
    let plan = format!(
        r#"
[plan]
name = "probes"
jobs = 8

[defaults]
timeout = "30s"

[steps.curl]
kind = "http-probe"
container = "{with_curl}"
url = "http://localhost:3000/up"
expect_body = "probe ok"

[steps.wget]
kind = "http-probe"
container = "{with_wget}"
url = "http://localhost:3000/up"
expect_body = "probe ok"

[steps.host]
kind = "http-probe"
container = "{neither}"
url = "http://localhost:3000/up"
host_url = "http://127.0.0.1:{published}/up"
expect_body = "probe ok"

[steps.nothing]
kind = "http-probe"
container = "{hidden}"
url = "http://localhost:3000/up"
host_url = "http://127.0.0.1:{closed}/up"

[steps.refused]
kind = "http-probe"
container = "{with_wget}"
url = "http://localhost:3999/up"
host_url = "http://127.0.0.1:{published}/up"
"#
    );
    let test = Test::new().plan(&plan).args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let record = record(&test);
    let transport = |id: &str| step(&record, id)["attempts"][0]["transport"].clone();
    assert_eq!(
        transport("curl"),
        "curl in the container: GET http://localhost:3000/up",
        "{}",
        run.stdout
    );
    assert_eq!(
        transport("wget"),
        "wget in the container: GET http://localhost:3000/up"
    );
    assert_eq!(
        transport("host"),
        format!("the host: GET http://127.0.0.1:{published}/up").as_str()
    );
    for id in ["curl", "wget", "host"] {
        assert_eq!(step(&record, id)["status"], "succeeded", "{id}");
    }
    // No tool in the container and nothing on the host port: every transport
    // is named with why it failed.
    let nothing = step(&record, "nothing")["attempts"][0]["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(nothing.contains(&format!("curl in the container: unavailable (no curl in container `{hidden}`: \"curl\": executable file not found in $PATH)")), "{nothing}");
    assert!(nothing.contains(&format!("wget in the container: unavailable (no wget in container `{hidden}`: \"wget\": executable file not found in $PATH)")), "{nothing}");
    assert!(
        nothing.contains(&format!(
            "GET http://127.0.0.1:{closed}/up through the host: connection refused"
        )),
        "{nothing}"
    );
    // The app refusing the connection inside the container decides: no fallback
    // to the host, although the host URL would have answered.
    let refused = &step(&record, "refused")["attempts"][0];
    assert_eq!(
        refused["transport"],
        "wget in the container: GET http://localhost:3999/up"
    );
    assert!(
        refused["reason"]
            .as_str()
            .expect("reason")
            .contains("connection refused"),
        "{refused}"
    );
    assert!(
        !run.stdout.contains("status 0"),
        "no meaningless status codes: {}",
        run.stdout
    );
}

#[test]
fn docker_exec_runs_in_the_container_with_its_options() {
    let mut cleanup = Cleanup::default();
    let image = unique("exec") + ":t";
    busybox_image(
        &image,
        "RUN [\"/bin/mkdir\", \"-p\", \"/srv/app\"]\nCMD [\"sleep\", \"3600\"]",
        &[],
    );
    cleanup.images.push(image.clone());
    let c = start(&mut cleanup, &image, None);
    let stopped = start(&mut cleanup, &image, None);
    docker_ok(&["stop", "-t", "0", &stopped]);
    let plan = format!(
        r#"
[plan]
name = "exec"
jobs = 8

[vars]
token = {{ env = "EXEC_TOKEN", secret = true }}

[steps.where]
kind = "docker-exec"
container = "{c}"
user = "65534:65534"
workdir = "/srv/app"
command = "echo \"$(id -u) $(pwd) $GREETING $RUNNER_STEP\" && echo token=$TOKEN"
env = {{ GREETING = "hello; rm -rf /", TOKEN = "{{{{ token }}}}" }}

[steps.dump]
kind = "docker-exec"
container = "{c}"
command = ["sh", "-c", "echo line1; echo line2"]
stdout = "out/dump.txt"

[steps.half-dump]
kind = "docker-exec"
container = "{c}"
command = ["sh", "-c", "echo partial; exit 3"]
stdout = "out/half.txt"

[steps.pong]
kind = "docker-exec"
container = "{c}"
command = ["echo", "PONG"]
expect_output = "^PONG$"

[steps.ping-fails]
kind = "docker-exec"
container = "{c}"
command = ["echo", "LOADING"]
expect_output = "^PONG$"

# Said to make them, so the preflight leaves them to the run: what the run
# says of a container that is not there is checked here.
[steps.says-it-makes-them]
kind = "shell"
run = "true"
creates = {{ containers = ["{stopped}", "{c}x"] }}

[steps.stopped]
kind = "docker-exec"
needs = ["says-it-makes-them"]
container = "{stopped}"
command = ["true"]

[steps.typo]
kind = "docker-exec"
needs = ["says-it-makes-them"]
container = "{c}x"
command = ["true"]
"#
    );
    let test = Test::new()
        .plan(&plan)
        .env("EXEC_TOKEN", "s3cr3t-value")
        .args(&["apply", "plan.toml", "--output", "json"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("65534 /srv/app hello; rm -rf / where"),
        "user, workdir, env and RUNNER_STEP reach the command: {}",
        run.stdout
    );
    assert!(run.stdout.contains("token=***"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("s3cr3t-value"),
        "the secret never shows"
    );
    let record = record(&test);
    assert!(!record.to_string().contains("s3cr3t-value"));
    assert_eq!(
        std::fs::read_to_string(test.path_of("out/dump.txt")).expect("dump"),
        "line1\nline2\n"
    );
    assert!(
        !test.path_of("out/half.txt").exists(),
        "a failed dump leaves no file"
    );
    assert_eq!(
        std::fs::read_dir(test.path_of("out")).expect("out").count(),
        1,
        "nothing partial left"
    );
    assert_eq!(step(&record, "pong")["status"], "succeeded");
    let ping = step(&record, "ping-fails")["attempts"][0]["reason"].to_string();
    assert!(ping.contains("does not match /^PONG$/: LOADING"), "{ping}");
    let stopped_reason = step(&record, "stopped")["attempts"][0]["reason"].to_string();
    assert!(
        stopped_reason.contains(&format!(
            "container `{stopped}` is not running (its state: exited)"
        )),
        "{stopped_reason}"
    );
    let typo = step(&record, "typo")["attempts"][0]["reason"].to_string();
    assert!(
        typo.contains(&format!(
            "there is no container named `{c}x`; running containers with similar names: {c}"
        )),
        "{typo}"
    );
}

#[test]
fn a_timed_out_docker_exec_leaves_no_process_in_the_container() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "timeout");
    let plan = format!(
        r#"
[plan]
name = "timeout"

[steps.hang]
kind = "docker-exec"
container = "{c}"
command = "sleep 1001 & sleep 1002"
timeout = "1s"
"#
    );
    let test = Test::new().plan(&plan).args(&["apply", "plan.toml"]);
    let run = test.run();
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    let reason = step(&record(&test), "hang")["attempts"][0]["reason"].to_string();
    assert!(reason.contains("timed out after 1s"), "{reason}");
    assert!(
        reason.contains(&format!("its process in container `{c}` was ended")),
        "{reason}"
    );
    let ps = docker_ok(&["exec", &c, "ps", "-o", "pid,args"]);
    assert!(!ps.contains("sleep 100"), "left in the container:\n{ps}");
}

#[test]
fn sudo_is_picked_when_docker_is_refused_and_never_prompts() {
    let users = Users::create();
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "sudo");
    let plan = format!(
        r#"
[plan]
name = "sudo"

[vars]
token = {{ env = "SUDO_TOKEN", secret = true }}

[steps.hello]
kind = "docker-exec"
container = "{c}"
command = "echo \"$GREETING from $(id -u), token $TOKEN\""
env = {{ GREETING = "hello", TOKEN = "{{{{ token }}}}" }}
"#
    );
    let test = Test::new().plan(&plan).args(&["apply", "plan.toml"]);

    // docker refuses this user; passwordless sudo for docker works: it deploys,
    // and the step's variables get through sudo into the container.
    let run = run_as(&test, &users.sudoer, &[("SUDO_TOKEN", "t0k3n")]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("docker: sudo -n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("docker is refused for permission"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("hello from 0, token ***"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("t0k3n"));

    // DOCKER_CMD wins over both probes: it is the only command tried.
    std::fs::remove_dir_all(test.path_of(".runner")).expect("clear the records");
    let run = run_as(
        &test,
        &users.sudoer,
        &[("SUDO_TOKEN", "t0k3n"), ("DOCKER_CMD", "sudo -n docker")],
    );
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let record = record(&test);
    assert_eq!(record["docker"]["command"], "sudo -n docker");
    assert_eq!(record["docker"]["reason"], "DOCKER_CMD is set");

    // DOCKER_HOST set, and sudoers does not keep it: exit 4 saying so and how to
    // fix it (not "needs a password"). The fix it names then works.
    let docker_host = [
        ("SUDO_TOKEN", "t0k3n"),
        ("DOCKER_HOST", "unix:///var/run/docker.sock"),
    ];
    let run = run_as(&test, &users.sudoer, &docker_host);
    assert_eq!(run.status, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("sudo refuses to keep DOCKER_HOST, DOCKER_CONTEXT or DOCKER_CONFIG"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("env_keep"), "{}", run.stderr);
    assert!(!run.stderr.contains("password"), "{}", run.stderr);
    users.keep_docker_env();
    let run = run_as(&test, &users.sudoer, &docker_host);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("hello from 0, token ***"),
        "{}",
        run.stdout
    );

    // Neither docker nor sudo: exit 4 with what was tried and how to fix it,
    // without waiting for a password.
    let run = run_as(&test, &users.nobody, &[("SUDO_TOKEN", "t0k3n")]);
    assert_eq!(run.status, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("tried `docker version`: permission denied"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("needs a password (runner never prompts)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("docker group"), "{}", run.stderr);
    assert!(run.stderr.contains("sudo -v"), "{}", run.stderr);
}
