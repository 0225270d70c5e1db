//! Several hosts: `[hosts]`, `[rollout]`, `on` and `{{ host.name }}` checked;
//! then real deploys to test hosts (network namespaces with their own dockerd
//! and sshd, `tests/common/hosts.rs`) over runner's own ssh connections.

use crate::common::Test;

const HOSTS: &str = r#"
[plan]
name = "multi"

[hosts.web1]
docker = "ssh://deploy@10.77.0.11"
roles = ["web"]
[hosts.web2]
docker = "ssh://deploy@[fd00::12]:2222"
roles = ["web"]
[hosts.db1]
context = "db1"
roles = ["db"]

[rollout]
serial = 1
max_fail = "10%"

[steps.restart]
kind = "shell"
on = "web"
run = "touch restarted-{{ host.name }}"
rollback = { kind = "shell", run = "echo undo {{ host.name }}" }

[steps.check]
kind = "shell"
needs = ["restart"]
on = ["web1", "db1"]
run = "touch checked"

[steps.after]
kind = "shell"
needs = ["check"]
run = "touch after"
"#;

#[test]
fn a_plan_with_hosts_roles_and_a_rollout_is_valid() {
    let run = Test::new()
        .plan(HOSTS)
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "no warning either");
}

#[test]
fn runner_maintenance_refuses_a_plan_with_hosts() {
    for args in [&["maintenance", "status", "plan.toml"][..]] {
        let test = Test::new().plan(HOSTS).args(args);
        let run = test.run();
        assert_eq!(run.status, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("`runner maintenance` acts on one engine")
                && run.stderr.contains("hosts are declared here")
                && run.stderr.contains("plan.toml:5:8"),
            "{args:?}: {}",
            run.stderr
        );
        for file in ["restarted-web1", "checked", "after", ".runner"] {
            assert!(!test.path_of(file).exists(), "{args:?} made {file}");
        }
    }
}

#[test]
fn the_preview_shows_the_hosts_their_batches_and_what_a_failure_does() {
    let test = Test::new().plan(HOSTS);
    let run = test.run_with(&["apply", "plan.toml", "--plan-only"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let out = &run.stdout;
    for want in [
        "web1: ssh://deploy@10.77.0.11, roles web (batch 1)",
        "db1: context db1, roles db (batch 3)",
        "batch 2: web2",
        "restart [shell] on web1, web2",
        "one instance per host (restart@web1, restart@web2)",
        "the preview connects to none",
        // 10% of three hosts is none.
        "On a host's failure: a step that fails on any host stops the deploy",
    ] {
        assert!(out.contains(want), "{want:?} is not in:\n{out}");
    }
    assert!(!test.path_of("restarted-web1").exists());
    let json = test.run_with(&["apply", "plan.toml", "--plan-only", "--output", "json"]);
    let preview: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(preview["rollout"]["batches"][0][0], "web1");
    assert_eq!(preview["hosts"][2]["engine"], "context db1");
}

#[test]
fn an_image_whose_load_fails_ends_at_once() {
    // A docker CLI of our own on PATH: `save` prints 5 MB, more than a pipe
    // holds, and the host's `load` (DOCKER_HOST set) fails at once. The save
    // must not wait for a reader that is gone.
    let test = Test::new().plan(
        r#"
[plan]
name = "ship"

[hosts.h1]
docker = "unix:///nonexistent/docker.sock"
roles = ["web"]

[steps.ship]
kind = "image-ship"
on = "web"
image = "app:v2"
timeout = "20s"
"#,
    );
    let bin = test.path_of("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    crate::common::script(
        &bin.join("docker"),
        r#"case "$1" in
  version) echo 20.10 ;;
  image) if [ -n "$DOCKER_HOST" ]; then echo sha256:there; else echo sha256:here; fi ;;
  save) exec head -c 5000000 /dev/zero ;;
  load) echo "no space left on device" >&2; exit 1 ;;
esac"#,
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let test = test.path(&path);
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    // The load's failure ends the attempt, not the step's timeout.
    assert!(
        run.stdout.contains("`docker load` on the host failed")
            && run.stdout.contains("no space left on device")
            && !run.stdout.contains("timed out"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_mistake_in_hosts_rollout_and_on_is_pointed_at() {
    let run = Test::new()
        .plan(
            r#"
[plan]
name = "bad"

[hosts.web1]
docker = "ssh://-oProxyCommand=x"
roles = ["web"]
[hosts.web2]
docker = "tcp://host:2376"
context = "web2"
[hosts.web3]
roles = ["w eb"]
[hosts.web4]
docker = "http://web4"
[hosts.web5]
context = "-bad"

[rollout]
serial = 0
max_fail = "ten%"

[steps.a]
kind = "shell"
on = "wbe"
run = "true"

[steps.b]
kind = "shell"
on = ["web"]
run = "true"

[steps.c]
kind = "shell"
run = "echo {{ host.name }}"
"#,
        )
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 2, "{}", run.stderr);
    let err = &run.stderr;
    for (message, location) in [
        (
            "host `web1`: `ssh://-oProxyCommand=x` is not a Docker engine address",
            "plan.toml:6:10",
        ),
        (
            "host `web2` has both `docker` and `context`",
            "plan.toml:10:11",
        ),
        ("host `web3` has no `docker`", "plan.toml:11:8"),
        ("`w eb` is not a valid role", "plan.toml:12:10"),
        (
            "host `web4`: `http://web4` is not a Docker engine address",
            "plan.toml:14:10",
        ),
        (
            "host `web5`: `-bad` is not a docker context name",
            "plan.toml:16:11",
        ),
        ("`serial` must be between 1 and", "plan.toml:19:10"),
        ("`max_fail` must be a number of hosts", "plan.toml:20:12"),
        ("no host or role is named `wbe`", "plan.toml:24:6"),
        ("no host is named `web`", "plan.toml:29:7"),
        (
            "`{{ host.name }}` outside a per-host step",
            "plan.toml:34:13",
        ),
    ] {
        let at = err
            .find(message)
            .unwrap_or_else(|| panic!("{message:?} is not in:\n{err}"));
        let after = &err[at..];
        let next = after[1..].find(" × ").map_or(after.len(), |n| n + 1);
        assert!(
            after[..next].contains(location),
            "{message:?} should point at {location}:\n{}",
            &after[..next]
        );
    }
    assert!(
        err.contains("`web` is a role, and a list names hosts"),
        "{err}"
    );
}

#[test]
fn on_and_rollout_need_hosts() {
    let run = Test::new()
        .plan(
            "[plan]\nname = \"t\"\n\n[rollout]\nserial = 1\n\n[steps.a]\nkind = \"shell\"\non = \"web\"\nrun = \"true\"\n",
        )
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`[rollout]` without `[hosts]`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`on` without `[hosts]`"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_graph_draws_each_host_instance_in_its_batch() {
    let plan = HOSTS.replace("max_fail = \"10%\"", "");
    let test = Test::new().plan(&plan);
    let run = test.run_with(&["graph", "plan.toml"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dot = &run.stdout;
    for want in [
        "label=\"batch 1: web1\";",
        "label=\"batch 2: web2\";",
        "label=\"batch 3: db1\";",
        "\"restart@web1\" [label=\"restart@web1\\nshell\"];",
        // Per host, check waits for restart on the same host only…
        "\"restart@web1\" -> \"check@web1\";",
        // …a batch starts when the one before it is done…
        "\"check@web1\" -> \"restart@web2\";",
        "\"restart@web2\" -> \"check@db1\";",
        // …and a step that runs once waits for every instance.
        "\"check@web1\" -> \"after\";",
        "\"check@db1\" -> \"after\";",
    ] {
        assert!(dot.contains(want), "{want} is not in:\n{dot}");
    }
    assert!(!dot.contains("\"restart@web2\" -> \"check@web1\""), "{dot}");
    let mermaid = test.run_with(&["graph", "plan.toml", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.contains("subgraph b1[\"batch 2: web2\"]"),
        "{}",
        mermaid.stdout
    );
}

mod rolling {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use crate::common::Test;
    use crate::common::docker::{Cleanup, Users, busybox_image, unique};
    use crate::common::hosts::{Hosts, flocked, socket_folders};
    use crate::common::rollout::Rollout;

    /// A proxy in front of the hosts: each request goes to the next host whose
    /// file is in `pool` (the plan takes a host out while it deploys it).
    struct Proxy {
        port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Proxy {
        fn start(pool: &Path, count: usize) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
            listener.set_nonblocking(true).expect("nonblocking");
            let port = listener.local_addr().expect("address").port();
            let stop = Arc::new(AtomicBool::new(false));
            let pool = pool.to_owned();
            let next = Arc::new(AtomicUsize::new(0));
            let thread = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((client, _)) => {
                                let pool = pool.clone();
                                let next = Arc::clone(&next);
                                std::thread::spawn(move || serve(client, &pool, count, &next));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(2)),
                        }
                    }
                })
            };
            Self {
                port,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn serve(mut client: TcpStream, pool: &Path, count: usize, next: &AtomicUsize) {
        let _ = client.set_nonblocking(false);
        let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match client.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let members: Vec<usize> = (1..=count)
            .filter(|i| pool.join(format!("rth{i}")).exists())
            .collect();
        if members.is_empty() {
            let _ = client.write_all(b"HTTP/1.0 503 No backend\r\n\r\n");
            return;
        }
        let host = members[next.fetch_add(1, Ordering::SeqCst) % members.len()];
        let address = format!("{}:8080", Hosts::address(host));
        let answer =
            TcpStream::connect_timeout(&address.parse().expect("address"), Duration::from_secs(2))
                .and_then(|mut backend| {
                    backend.set_read_timeout(Some(Duration::from_secs(5)))?;
                    backend.write_all(&request)?;
                    let mut answer = Vec::new();
                    backend.read_to_end(&mut answer)?;
                    Ok(answer)
                });
        let _ = match answer {
            Ok(answer) if !answer.is_empty() => client.write_all(&answer),
            _ => client.write_all(b"HTTP/1.0 502 Backend failed\r\n\r\n"),
        };
    }

    /// What a client polling the proxy every 20 ms saw.
    #[derive(Debug, Default)]
    struct Seen {
        ok: usize,
        /// Statuses other than 200, and connection errors, with the time.
        bad: Vec<String>,
        bodies: std::collections::BTreeSet<String>,
    }

    struct Client {
        stop: Arc<AtomicBool>,
        /// Requests answered (or failed) so far.
        asked: Arc<AtomicUsize>,
        thread: JoinHandle<Seen>,
    }

    impl Client {
        /// Polls every 20 ms, at most 6,000 requests (two minutes).
        fn start(port: u16) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let asked = Arc::new(AtomicUsize::new(0));
            let thread = {
                let stop = Arc::clone(&stop);
                let asked = Arc::clone(&asked);
                std::thread::spawn(move || {
                    let mut seen = Seen::default();
                    let start = Instant::now();
                    for _ in 0..6000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match get(port) {
                            Ok((200, body)) => {
                                seen.ok += 1;
                                seen.bodies.insert(body.trim().to_owned());
                            }
                            Ok((status, _)) => seen
                                .bad
                                .push(format!("{:?}: status {status}", start.elapsed())),
                            Err(e) => seen.bad.push(format!("{:?}: {e}", start.elapsed())),
                        }
                        asked.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    seen
                })
            };
            Self {
                stop,
                asked,
                thread,
            }
        }

        /// Waits until `count` more requests have been made from now.
        fn wait_for(&self, count: usize) {
            let until = self.asked.load(Ordering::SeqCst) + count;
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.asked.load(Ordering::SeqCst) < until {
                assert!(Instant::now() < deadline, "the client stopped asking");
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn finish(self) -> Seen {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.join().expect("the client")
        }
    }

    fn get(port: u16) -> Result<(u16, String), String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {answer:?}"))?;
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        Ok((status, body))
    }

    fn rolls_out_with_no_error(count: usize) {
        let rollout = Rollout::new(count, "root", "0");
        // One release kept: each success prunes the older ones, here and on
        // each host.
        let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
        std::fs::write(
            rollout.test.path_of("plan.toml"),
            plan.replacen("name = \"rolling\"\n", "name = \"rolling\"\nkeep = 1\n", 1),
        )
        .expect("plan");
        let first = rollout.apply(&[]);
        assert_eq!(first.status, 0, "{}{}", first.stdout, first.stderr);
        assert_eq!(rollout.versions(), vec!["v1"; count]);
        let proxy = Proxy::start(&rollout.pool, count);
        let client = Client::start(proxy.port);
        client.wait_for(10);
        let run = rollout.apply(&["version=v2"]);
        client.wait_for(10);
        let seen = client.finish();
        drop(proxy);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(rollout.versions(), vec!["v2"; count]);
        assert_eq!(rollout.in_pool(), vec![true; count]);
        assert!(seen.bad.is_empty(), "{seen:?}\n{}", run.stdout);
        assert!(seen.ok > 20, "{seen:?}");
        assert!(
            seen.bodies.contains("v1") && seen.bodies.contains("v2"),
            "{seen:?}"
        );
        // Host by host: the second host's switch starts after the first's
        // last step.
        let out = &run.stdout;
        let position = |text: &str| {
            out.find(text)
                .unwrap_or_else(|| panic!("{text:?} is not in:\n{out}"))
        };
        assert!(position("undrain@rth1 succeeded") < position("▶ switch@rth2"));
        // Gapless on each host: no host left the pool for it.
        let record = crate::common::records(&rollout.test)
            .pop()
            .expect("a record");
        for i in 1..=count {
            let drain = crate::common::step(&record, &format!("drain@rth{i}"));
            assert_eq!(drain["status"], "skipped", "{drain}");
        }
        // The image went over the connection; the first deploy had sent v1.
        assert!(out.contains("Loaded image"), "{out}");
        for i in 1..=count {
            assert!(out.contains(&format!("host rth{i} (ssh://root@")), "{out}");
        }
        // v1 is older than the one release kept: gone here (no container of
        // this machine uses it); kept on each host, where the front uses it.
        let v1 = format!("{}:v1", rollout.image);
        assert!(
            run.stderr.contains(&format!("removed {v1}")),
            "{}",
            run.stderr
        );
        for i in 1..=count {
            assert!(
                run.stderr.contains(&format!("host rth{i}: kept {v1}"))
                    && run.stderr.contains("uses it"),
                "{}",
                run.stderr
            );
        }
        // Each host keeps the run's record and an audit line, beside its
        // lock, in a folder closed to other users.
        let run_id = record["run_id"].as_str().expect("run id");
        for i in 1..=count {
            use std::os::unix::fs::PermissionsExt as _;
            let state = rollout.hosts.run_dir(i).join("lock/runner-rolling.state");
            let mode = std::fs::metadata(&state)
                .expect("state")
                .permissions()
                .mode();
            assert_eq!(mode & 0o007, 0, "{mode:o}");
            let kept = std::fs::read_to_string(state.join(format!("runs/{run_id}.json")))
                .expect("the host's record");
            let kept: serde_json::Value = serde_json::from_str(&kept).expect("JSON");
            assert_eq!(kept["run_id"], run_id);
            let audit = std::fs::read_to_string(state.join("audit.log")).expect("audit");
            let line: serde_json::Value =
                serde_json::from_str(audit.lines().last().expect("a line")).expect("JSON");
            assert_eq!(line["run"], run_id, "{audit}");
            assert_eq!(line["status"], "succeeded", "{audit}");
            assert_eq!(line["vars"]["version"], "v2", "{audit}");
        }
        // Another machine, which has no record of the run, lists it from the
        // hosts, and shows it.
        let local = rollout.test.path_of(".runner/runs");
        let aside = rollout.test.path_of("runs-aside");
        std::fs::rename(&local, &aside).expect("records aside");
        let runs = rollout.test.run_with(&["runs", "plan.toml"]);
        let show = rollout.test.run_with(&["show", "plan.toml", run_id]);
        std::fs::rename(&aside, &local).expect("records back");
        assert_eq!(runs.status, 0, "{}{}", runs.stdout, runs.stderr);
        let listed = runs
            .stdout
            .lines()
            .find(|l| l.starts_with(run_id))
            .unwrap_or_default();
        assert!(listed.contains("(kept on host rth"), "{}", runs.stdout);
        assert_eq!(show.status, 0, "{}{}", show.stdout, show.stderr);
        assert!(show.stdout.contains(run_id), "{}", show.stdout);
        let again = rollout.apply(&["version=v2"]);
        assert_eq!(again.status, 0, "{}", again.stdout);
        assert!(
            again.stdout.contains("already has") && again.stdout.contains("nothing sent"),
            "{}",
            again.stdout
        );
    }

    #[test]
    fn two_hosts_roll_out_one_at_a_time_and_users_see_no_error() {
        rolls_out_with_no_error(2);
    }

    #[test]
    fn three_hosts_roll_out_one_at_a_time_and_users_see_no_error() {
        rolls_out_with_no_error(3);
    }

    #[test]
    fn three_hosts_at_once_ship_and_switch_together() {
        let rollout = Rollout::with_serial(3, "root", "0", 3);
        // Each host's transfer ends at its own time: none may be taken for
        // what another step left behind.
        let run = rollout.apply(&[]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            run.stdout.matches("Loaded image").count(),
            3,
            "{}",
            run.stdout
        );
        assert_eq!(rollout.versions(), ["v1", "v1", "v1"]);
        let run = rollout.apply(&["version=v2"]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(rollout.versions(), ["v2", "v2", "v2"]);
        // One batch: every host's switch started before any host came back.
        let out = &run.stdout;
        let first_back = out.find("✓ undrain@").expect("undrain");
        for i in 1..=3 {
            let switch = out
                .find(&format!("▶ switch@rth{i}"))
                .unwrap_or_else(|| panic!("switch@rth{i}:\n{out}"));
            assert!(switch < first_back, "{out}");
        }
    }

    #[test]
    fn a_release_failing_on_the_second_host_rolls_back_the_first_too_with_max_fail_0() {
        let rollout = Rollout::new(2, "root", "0");
        assert_eq!(rollout.apply(&[]).status, 0);
        let proxy = Proxy::start(&rollout.pool, 2);
        let client = Client::start(proxy.port);
        client.wait_for(10);
        let run = rollout.apply(&["version=v2", "broken=rth2"]);
        client.wait_for(10);
        let seen = client.finish();
        drop(proxy);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(rollout.versions(), ["v1", "v1"], "{}", run.stdout);
        assert_eq!(rollout.in_pool(), [true, true], "{}", run.stdout);
        assert!(seen.bad.is_empty(), "{seen:?}\n{}", run.stdout);
        assert!(run.stdout.contains("smoke@rth2"), "{}", run.stdout);
        assert!(
            run.stdout.contains("switch@rth1 (rollback) rolled back"),
            "{}",
            run.stdout
        );
        let _ = &rollout.image;
    }

    #[test]
    fn a_rolling_deploy_killed_between_its_hosts_is_refused_then_recovered_on_both() {
        let rollout = killed_between_hosts();
        // The dead run's ssh sockets' folder, named by its journal, is left.
        let sockets = dead_run_sockets(&rollout.test);
        assert!(sockets.is_dir(), "{}", sockets.display());
        let apply = rollout.apply(&["version=v2"]);
        assert_eq!(apply.status, 4, "{}{}", apply.stdout, apply.stderr);
        assert!(apply.stderr.contains("runner recover"), "{}", apply.stderr);
        // recover reaches and locks each host over its own connections, and
        // undoes the first host's release with the run's values.
        let recover = rollout.test.run_with(&["recover", "plan.toml"]);
        assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
        assert_undone(&rollout, &recover);
        // recover removed what the dead run left on this machine.
        assert!(
            !sockets.exists(),
            "{}\n{}",
            sockets.display(),
            recover.stdout
        );
        assert!(
            recover.stdout.contains("ssh sockets' folder"),
            "{}",
            recover.stdout
        );
        let runs = rollout.test.run_with(&["runs", "plan.toml"]);
        assert!(runs.stdout.contains("killed, recovered"), "{}", runs.stdout);
        let next = rollout.apply(&["version=v2"]);
        assert_eq!(next.status, 0, "{}{}", next.stdout, next.stderr);
        assert_eq!(rollout.versions(), ["v2", "v2"]);
    }

    #[test]
    fn a_deploy_whose_machine_died_is_recovered_from_another_with_the_hosts_journal() {
        let rollout = killed_between_hosts();
        // Each host keeps a copy of the journal.
        let journals = rollout.test.path_of(".runner/journal");
        let local = std::fs::read_dir(&journals)
            .expect("journals")
            .flatten()
            .next()
            .expect("a journal");
        let name = local.file_name();
        for i in 1..=2 {
            let copy = rollout
                .hosts
                .run_dir(i)
                .join("lock/runner-rolling.state/journal")
                .join(&name);
            assert!(copy.is_file(), "{}", copy.display());
        }
        // Another machine: this one's journal is gone with it.
        std::fs::remove_dir_all(&journals).expect("the machine dies");
        let recover = rollout
            .test
            .run_with(&["recover", "plan.toml", "--lock-wait", "60s"]);
        assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
        assert!(
            recover.stderr.contains("as host rth")
                && recover.stderr.contains("is recovered from here"),
            "{}",
            recover.stderr
        );
        assert_undone(&rollout, &recover);
        // The hosts keep the record now, not the journal.
        for i in 1..=2 {
            let state = rollout.hosts.run_dir(i).join("lock/runner-rolling.state");
            assert!(!state.join("journal").join(&name).exists());
        }
        let next = rollout.apply(&["version=v2"]);
        assert_eq!(next.status, 0, "{}{}", next.stdout, next.stderr);
    }

    /// Two hosts at v1, and a deploy of v2 killed (`kill -9`) once the first
    /// host is done, before the second's switch.
    fn killed_between_hosts() -> Rollout {
        use crate::common::process::{Ended, kill_when};
        let rollout = Rollout::new(2, "root", "0");
        assert_eq!(rollout.apply(&[]).status, 0);
        let mut command = rollout.test.command();
        command.args(["apply", "plan.toml", "--var", "version=v2"]);
        let ended = kill_when(command, rollout.test.dir.path(), |events| {
            events
                .iter()
                .any(|e| e["event"] == "step_finished" && e["step"] == "undrain@rth1")
        });
        assert!(matches!(ended, Ended::Killed(_)), "{ended:?}");
        assert_eq!(rollout.versions(), ["v2", "v1"]);
        rollout
    }

    /// The killed deploy is undone: the first host is back on v1, both in
    /// the pool.
    fn assert_undone(rollout: &Rollout, recover: &crate::common::Run) {
        assert!(
            recover
                .stdout
                .contains("switch@rth1 (rollback) rolled back"),
            "{}",
            recover.stdout
        );
        assert_eq!(rollout.versions(), ["v1", "v1"], "{}", recover.stdout);
        assert_eq!(rollout.in_pool(), [true, true]);
    }

    /// The ssh sockets' folder the journal of the test's dead run names.
    fn dead_run_sockets(test: &Test) -> std::path::PathBuf {
        let journals = std::fs::read_dir(test.path_of(".runner/journal")).expect("journals");
        let journal = journals.flatten().next().expect("a journal").path();
        let text = std::fs::read_to_string(journal).expect("journal");
        let header: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("header")).expect("JSON");
        header["sockets"].as_str().expect("sockets").into()
    }

    #[test]
    fn within_the_budget_the_deploy_goes_on_and_the_summary_names_the_failed_host() {
        let rollout = Rollout::new(3, "root", "1");
        assert_eq!(rollout.apply(&[]).status, 0);
        let run = rollout.apply(&["version=v2", "broken=rth2"]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        // rth2 is back on v1; the others went on to v2.
        assert_eq!(rollout.versions(), ["v2", "v1", "v2"], "{}", run.stdout);
        assert_eq!(rollout.in_pool(), [true, true, true], "{}", run.stdout);
        assert!(
            run.stdout.contains("PARTLY DEPLOYED: host rth2 failed"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("2 of 3 hosts run the new release"),
            "{}",
            run.stdout
        );
        let table = &run.stdout[run.stdout.find("host  batch").expect("the hosts' table")..];
        for row in [
            "rth1      1  deployed",
            "rth2      2  failed, rolled back",
            "rth3      3  deployed",
        ] {
            assert!(table.contains(row), "{row:?} is not in:\n{table}");
        }
        // `runner show` draws each host's span in its batch.
        let show = rollout.test.run_with(&["show", "plan.toml"]);
        assert_eq!(show.status, 0, "{}", show.stderr);
        for row in [
            "host rth1 (batch 1)",
            "host rth2 (batch 2)",
            "host rth3 (batch 3)",
        ] {
            assert!(
                show.stdout.contains(row),
                "{row:?} is not in:\n{}",
                show.stdout
            );
        }
        let record = crate::common::docker::record(&rollout.test);
        assert_eq!(record["status"], "partial");
        assert_eq!(record["hosts"][1]["name"], "rth2");
        assert_eq!(record["hosts"][1]["failed"], true);
        assert_eq!(record["hosts"][2]["deployed"], true);
        let smoke = crate::common::step(&record, "smoke@rth2");
        assert_eq!(smoke["host"], "rth2");
        assert_eq!(smoke["status"], "failed");
    }

    #[test]
    fn the_preflight_checks_each_host_with_its_own_engine() {
        let hosts = Hosts::up(2);
        // The container runs on rth1 only (and on this machine, under that
        // name, nowhere).
        let name = unique("pf");
        let mut cleanup = Cleanup::default();
        busybox_image(&name, r#"CMD ["sleep", "3600"]"#, &[]);
        cleanup.images.push(name.clone());
        let load = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {name} | DOCKER_HOST=unix://{}/docker.sock docker load",
                hosts.run_dir(1).display()
            ))
            .output()
            .expect("sh");
        assert!(
            load.status.success(),
            "{}",
            String::from_utf8_lossy(&load.stderr)
        );
        let started = hosts.docker(1, &["run", "-d", "--name", &name, &name]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let test = Test::new()
            .plan(&format!(
                "[plan]\nname = \"pf\"\n\n{}\n[steps.a]\nkind = \"docker-exec\"\non = \"web\"\ncontainer = \"{name}\"\ncommand = [\"true\"]\n",
                hosts.section("root")
            ))
            .env("RUNNER_SSH_COMMAND", &hosts.ssh_command());
        let run = test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("the preflight found 1 problem")
                && run.stderr.contains(&format!(
                    "step `a@rth2` (in container `{name}`): there is no container named `{name}`"
                )),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("a@rth1"), "{}", run.stderr);
    }

    #[test]
    fn a_host_that_refuses_sessions_is_named_with_what_to_do() {
        let hosts = Hosts::up_with(1, "MaxSessions 0");
        let test = Test::new()
            .plan(&format!(
                "[plan]\nname = \"sessions\"\n\n{}\n[steps.a]\nkind = \"shell\"\non = \"web\"\nrun = \"touch ran\"\n",
                hosts.section("root")
            ))
            .env("RUNNER_SSH_COMMAND", &hosts.ssh_command());
        let run = test.run_with(&["apply", "plan.toml"]);
        assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("host rth1 (ssh://root@10.77.0.11): the host refuses a session")
                && run.stderr.contains("MaxSessions"),
            "{}",
            run.stderr
        );
        assert!(!test.path_of("ran").exists());
    }

    #[test]
    fn a_plan_deep_in_folders_still_gets_its_ssh_sockets() {
        // Unix socket paths hold 108 bytes: past that, the sockets go to a
        // private temporary folder, removed at the end.
        let hosts = Hosts::up(1);
        let deep = format!("{}/plan.toml", ["a-rather-long-folder-name"; 4].join("/"));
        let test = Test::new()
            .file(
                &deep,
                &format!(
                    "[plan]\nname = \"deep\"\n\n{}\n[steps.a]\nkind = \"shell\"\non = \"web\"\nrun = \"{{{{ docker }}}} ps -q\"\n",
                    hosts.section("root")
                ),
            )
            .env("RUNNER_SSH_COMMAND", &hosts.ssh_command());
        let before = socket_folders();
        let run = test.run_with(&["apply", &deep]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(socket_folders(), before);
    }

    #[test]
    fn an_unknown_host_key_is_refused_with_what_to_do() {
        let rollout = Rollout::new(1, "root", "0");
        let run = rollout
            .test
            .command()
            .args(["apply", "plan.toml"])
            .env(
                "RUNNER_SSH_COMMAND",
                format!(
                    "{} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes",
                    rollout.hosts.ssh_command()
                ),
            )
            .output()
            .expect("runner");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(
                "host rth1 (ssh://root@10.77.0.11): the host key of root@10.77.0.11 is unknown here"
            ) && stderr.contains("ssh-keyscan -p 22 10.77.0.11"),
            "{stderr}"
        );
    }

    #[test]
    fn a_remote_user_with_only_sudo_docker_deploys() {
        let users = Users::create();
        users.allow_ssh_login();
        let rollout = Rollout::new(2, &users.sudoer, "0");
        // Not in the deploy group, the user may not take the hosts' lock:
        // refused before anything runs, saying why and what to do.
        let refused = rollout.apply(&[]);
        assert_eq!(refused.status, 4, "{}{}", refused.stdout, refused.stderr);
        assert!(
            refused.stderr.contains("may not take the host's lock")
                && refused.stderr.contains("mode 750")
                && refused.stderr.contains("usermod -aG"),
            "{}",
            refused.stderr
        );
        users.join_deploy_group();
        let run = rollout.apply(&[]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(rollout.versions(), ["v1", "v1"]);
        assert!(
            run.stdout.contains("`sudo -n docker` answers"),
            "{}",
            run.stdout
        );
    }

    #[test]
    fn a_host_that_does_not_answer_stops_the_run_in_seconds_naming_it() {
        let rollout = Rollout::new(2, "root", "0");
        // rth2 drops everything, as a dead host or a firewall does.
        let dropped = std::process::Command::new("ip")
            .args([
                "netns", "exec", "rth2", "iptables", "-A", "INPUT", "-j", "DROP",
            ])
            .status()
            .expect("iptables");
        assert!(dropped.success());
        let start = Instant::now();
        let run = rollout.apply(&[]);
        let took = start.elapsed();
        assert_eq!(run.status, 4, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("host rth2 (ssh://root@10.77.0.12)")
                && run.stderr.contains("does not answer"),
            "{}",
            run.stderr
        );
        assert!(took < Duration::from_secs(20), "{took:?}");
        // Nothing ran, on either host.
        assert_eq!(rollout.in_pool(), [false, false]);
    }

    #[test]
    fn ctrl_c_mid_deploy_rolls_back_over_the_connections_it_keeps() {
        use std::os::unix::process::CommandExt as _;
        let rollout = Rollout::new(2, "root", "0");
        assert_eq!(rollout.apply(&[]).status, 0);
        // The second host's drain hangs: Ctrl-C comes while it runs.
        let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
        std::fs::write(
            rollout.test.path_of("plan.toml"),
            plan.replace(
                "run = \"rm -f {{ pool }}/{{ host.name }} && sleep 0.3\"\nrollback",
                "run = \"rm -f {{ pool }}/{{ host.name }} && sleep 0.3 && if [ {{ host.name }} = {{ hang }} ]; then sleep 60; fi\"\nrollback",
            )
            .replace("broken = \"none\"", "broken = \"none\"\nhang = \"none\""),
        )
        .expect("plan");
        let child = rollout
            .test
            .command()
            .args(["apply", "plan.toml", "--var", "version=v2"])
            .args(["--var", "hang=rth2", "--var", "leave_pool=yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("runner");
        // rth1 is deployed and rth2 left the pool: rth2's drain runs.
        let deadline = Instant::now() + Duration::from_secs(60);
        while rollout.versions()[0] != "v2" || rollout.pool.join("rth2").exists() {
            assert!(Instant::now() < deadline, "the deploy never reached rth2");
            std::thread::sleep(Duration::from_millis(100));
        }
        // As a terminal does: SIGINT to runner's whole process group, twice
        // (the second ends the running step).
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        for signal in 0..2 {
            nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).expect("killpg");
            // The first signal is taken before the second is sent (two
            // pending signals would be one); after the second the run ends,
            // and its journal goes.
            if signal == 0 {
                rollout.test.wait_for_journal("\"event\":\"stopping\"", 1);
            }
        }
        let out = child.wait_with_output().expect("runner");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(130), "{stdout}");
        // The connections outlived the signal: both hosts are back on v1 and
        // in the pool.
        assert_eq!(rollout.versions(), ["v1", "v1"], "{stdout}");
        assert_eq!(rollout.in_pool(), [true, true], "{stdout}");
        assert!(
            stdout.contains("switch@rth1 (rollback) rolled back"),
            "{stdout}"
        );
    }

    #[test]
    fn kill_9_mid_deploy_frees_every_hosts_lock_at_once() {
        let rollout = Rollout::new(2, "root", "0");
        let plan = std::fs::read_to_string(rollout.test.path_of("plan.toml")).expect("plan");
        std::fs::write(
            rollout.test.path_of("plan.toml"),
            plan.replace("&& sleep 0.3\"\nrollback", "&& sleep 60\"\nrollback"),
        )
        .expect("plan");
        let mut child = rollout
            .test
            .command()
            .args(["apply", "plan.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("runner");
        // Wait until it holds both hosts' locks and runs a step.
        let deadline = Instant::now() + Duration::from_secs(30);
        let held = |i: usize| flocked(&rollout.hosts.lock_of(i, "rolling"));
        while !(held(1) && held(2)) {
            assert!(Instant::now() < deadline, "runner never locked the hosts");
            std::thread::sleep(Duration::from_millis(50));
        }
        rollout
            .test
            .wait_for_journal("\"event\":\"step_started\"", 1);
        child.kill().expect("kill -9");
        let _ = child.wait();
        // Another run takes both locks at once: the recover of the killed
        // run (the next apply refuses until then), then the next deploy.
        let ship_only = std::fs::read_to_string(rollout.test.path_of("plan.toml"))
            .expect("plan")
            .replace("sleep 60", "sleep 0.3");
        std::fs::write(rollout.test.path_of("plan.toml"), ship_only).expect("plan");
        assert_eq!(rollout.apply(&[]).status, 4);
        let recover = rollout.test.run_with(&["recover", "plan.toml"]);
        assert_eq!(recover.status, 0, "{}{}", recover.stdout, recover.stderr);
        let run = rollout.apply(&[]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    }
}
