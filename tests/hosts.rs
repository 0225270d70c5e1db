//! Several hosts (issue 13), as far as this runner goes: `[hosts]`, `[rollout]`,
//! `on` and `{{ host.name }}` are checked; running such a plan is refused, never
//! sent to the local docker instead.

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
fn running_it_is_refused_before_anything_runs() {
    for args in [
        &["apply", "plan.toml"][..],
        &["apply", "plan.toml", "--plan-only"],
        &["maintenance", "status", "plan.toml"],
    ] {
        let test = Test::new().plan(HOSTS).args(args);
        let run = test.run();
        assert_eq!(run.status, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("cannot deploy to several hosts yet")
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
