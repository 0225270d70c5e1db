//! Values are data, never code. Hostile values, as a CI job would pass from a
//! branch name or a PR title, go to every place a plan can put a value: a host
//! script, a script and an argv in a container, `[maintenance]` strings, env
//! values, a container name, URLs, a dump's path. In scripts, each is tried in
//! every shell context. A marker file proves nothing ran; where the plan asks for
//! the value, the step gets it exactly.

use std::fmt::Write as _;
use std::path::Path;

use crate::common::docker::{Cleanup, docker, sleeper};
use crate::common::{Test, step};

/// Hostile values; `MARK` stands for the marker's path.
const VALUES: &[&str] = &[
    "; touch MARK #",
    "$(touch MARK)",
    "`touch MARK`",
    "'; touch MARK; '",
    "\"; touch MARK; \"",
    "x\ntouch MARK",
    "EOF\ntouch MARK\nEOF",
    "*",
    "--help",
    "-rf /",
    "\\'\\\"\\\\",
    "$HOME ${HOME} $((1+1))",
    "don't",
];

/// Shell contexts: a script that writes what it gets for `{{ v }}` into `OUT`,
/// and whether it gets the value with a newline after it.
const CONTEXTS: &[(&str, &str, bool)] = &[
    ("bare", "printf '%s' {{ v }} > OUT", false),
    ("single", "printf '%s' '{{ v }}' > OUT", false),
    ("double", "printf '%s' \"{{ v }}\" > OUT", false),
    (
        "substitution",
        "printf '%s' \"$(printf '%s' {{ v }})\" > OUT",
        false,
    ),
    (
        "backticks",
        "printf '%s' \"`printf '%s' {{ v }}`\" > OUT",
        false,
    ),
    (
        "nested",
        "printf '%s' \"$(printf '%s' '{{ v }}')\" > OUT",
        false,
    ),
    ("heredoc", "cat > OUT <<EOF\n{{ v }}\nEOF", true),
    ("quoted-heredoc", "cat > OUT <<'EOF'\n{{ v }}\nEOF", true),
    (
        "after-comment",
        "# don't {{ v }}\nprintf '%s' {{ v }} > OUT",
        false,
    ),
];

/// TOML's basic string for `text`.
fn toml(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

/// The `--var` arguments that give `v0`, `v1`, … their hostile values.
fn var_args(mark: &str) -> Vec<String> {
    VALUES
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            [
                "--var".to_owned(),
                format!("v{i}={}", v.replace("MARK", mark)),
            ]
        })
        .collect()
}

fn vars_section() -> String {
    let mut out = String::from("[vars]\n");
    for i in 0..VALUES.len() {
        let _ = writeln!(out, "v{i} = \"\"");
    }
    out
}

/// `(step id, value index, context index)` for every value in every context.
fn cases() -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (c, (name, ..)) in CONTEXTS.iter().enumerate() {
        for v in 0..VALUES.len() {
            out.push((format!("{name}-v{v}"), v, c));
        }
    }
    out
}

/// The script of a case, writing into `out`.
fn script(context: usize, value: usize, out: &str) -> String {
    CONTEXTS[context]
        .1
        .replace("{{ v }}", &format!("{{{{ v{value} }}}}"))
        .replace("OUT", out)
}

fn expected(context: usize, value: usize, mark: &str) -> String {
    let v = VALUES[value].replace("MARK", mark);
    if CONTEXTS[context].2 { v + "\n" } else { v }
}

fn args<'a>(owned: &'a [String], first: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = first.to_vec();
    all.extend(owned.iter().map(String::as_str));
    all
}

#[test]
fn host_scripts_and_env_values_get_values_as_data() {
    let test = Test::new();
    let mark = test.path_of("MARK").display().to_string();
    let mut plan = format!("[plan]\nname = \"host\"\njobs = 8\n\n{}\n", vars_section());
    for (id, v, c) in cases() {
        let _ = write!(
            plan,
            "[steps.{id}]\nkind = \"shell\"\nrun = {}\n\n",
            toml(&script(c, v, &format!("got/{id}")))
        );
    }
    for v in 0..VALUES.len() {
        let _ = write!(
            plan,
            "[steps.env-v{v}]\nkind = \"shell\"\nenv = {{ GOT = \"{{{{ v{v} }}}}\" }}\nrun = \"printf '%s' \\\"$GOT\\\" > got/env-v{v}\"\n\n"
        );
    }
    let test = test.plan(&plan).file("got/.keep", "");
    let vars = var_args(&mark);
    let run = test.run_with(&args(&vars, &["apply", "plan.toml"]));
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(!Path::new(&mark).exists(), "a value ran as code");
    for (id, v, c) in cases() {
        let got = std::fs::read_to_string(test.path_of(&format!("got/{id}"))).expect(&id);
        assert_eq!(got, expected(c, v, &mark), "{id}");
    }
    for (v, value) in VALUES.iter().enumerate() {
        let got = std::fs::read_to_string(test.path_of(&format!("got/env-v{v}"))).expect("env");
        assert_eq!(got, value.replace("MARK", &mark), "env-v{v}");
    }
    // What ran refers to the values; it holds none of them.
    let record = crate::common::records(&test).pop().expect("a record");
    for (id, ..) in cases() {
        let command = step(&record, &id)["command"].to_string();
        assert!(!command.contains("touch"), "{id}: {command}");
    }
}

/// Whether the marker exists in the container.
fn marked(container: &str) -> bool {
    docker(&["exec", container, "test", "-e", "/mark"])
        .status
        .success()
}

#[test]
fn container_scripts_argv_and_maintenance_strings_get_values_as_data() {
    let mut cleanup = Cleanup::default();
    let c = sleeper(&mut cleanup, "inject");
    let mark = "/mark";
    let test = Test::new().file("got/.keep", "");
    let mut plan = format!(
        "[plan]\nname = \"container\"\njobs = 8\n\n{}\n",
        vars_section()
    );
    for (id, v, ctx) in cases() {
        // The script writes to its stdout, which runner copies to a host file.
        let _ = write!(
            plan,
            "[steps.{id}]\nkind = \"docker-exec\"\ncontainer = \"{c}\"\ncommand = {}\nstdout = \"got/{id}\"\n\n",
            toml(&script(ctx, v, "/dev/stdout"))
        );
    }
    for v in 0..VALUES.len() {
        let _ = write!(
            plan,
            "[steps.argv-v{v}]\nkind = \"docker-exec\"\ncontainer = \"{c}\"\ncommand = [\"printf\", \"%s\", \"{{{{ v{v} }}}}\"]\nstdout = \"got/argv-v{v}\"\n\n"
        );
    }
    let test = test.plan(&plan);
    let vars = var_args(mark);
    let run = test.run_with(&args(&vars, &["apply", "plan.toml"]));
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(!marked(&c), "a value ran as code in the container");
    for (id, v, ctx) in cases() {
        let got = std::fs::read_to_string(test.path_of(&format!("got/{id}"))).expect(&id);
        assert_eq!(got, expected(ctx, v, mark), "{id}");
    }
    for (v, value) in VALUES.iter().enumerate() {
        let got = std::fs::read_to_string(test.path_of(&format!("got/argv-v{v}"))).expect("argv");
        assert_eq!(got, value.replace("MARK", mark), "argv-v{v}");
    }

    // [maintenance] strings: `status` runs every context, one value at a time.
    for v in 0..VALUES.len() {
        let mut status = String::new();
        for (ctx, (name, ..)) in CONTEXTS.iter().enumerate() {
            status.push_str(&script(ctx, v, &format!("/got-{name}")));
            status.push('\n');
        }
        status.push_str("echo false");
        let plan = format!(
            "[plan]\nname = \"maintenance\"\n\n{}\n[maintenance]\ncontainer = \"{c}\"\non = [\"true\"]\noff = [\"true\"]\nstatus = {}\n\n[steps.noop]\nkind = \"shell\"\nrun = \"true\"\n",
            vars_section(),
            toml(&status)
        );
        let test = Test::new().plan(&plan);
        let run = test.run_with(&args(&vars, &["maintenance", "status", "plan.toml"]));
        assert_eq!(
            run.stdout.trim(),
            "maintenance is off",
            "v{v}: {}",
            run.stderr
        );
        assert!(!marked(&c), "a value ran as code in [maintenance] (v{v})");
        for (ctx, (name, ..)) in CONTEXTS.iter().enumerate() {
            let got = docker(&["exec", &c, "cat", &format!("/got-{name}")]);
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                expected(ctx, v, mark),
                "[maintenance] {name} v{v}"
            );
        }
    }
}

#[test]
fn container_names_urls_and_dump_paths_refuse_what_is_not_theirs() {
    let test = Test::new();
    let mark = test.path_of("MARK").display().to_string();
    let vars = var_args(&mark);
    for (field, make) in [
        (
            "container",
            "[steps.s]\nkind = \"docker-exec\"\ncontainer = \"{{ VAR }}\"\ncommand = [\"true\"]\n",
        ),
        (
            "container",
            "[steps.s]\nkind = \"http-probe\"\ncontainer = \"{{ VAR }}\"\nurl = \"http://localhost/\"\n",
        ),
        (
            "url",
            "[steps.s]\nkind = \"http-probe\"\nurl = \"{{ VAR }}\"\n",
        ),
        (
            "host_url",
            "[steps.s]\nkind = \"http-probe\"\ncontainer = \"app\"\nurl = \"http://localhost/\"\nhost_url = \"{{ VAR }}\"\n",
        ),
        (
            "user",
            "[steps.s]\nkind = \"docker-exec\"\ncontainer = \"app\"\nuser = \"{{ VAR }}\"\ncommand = [\"true\"]\n",
        ),
        (
            "workdir",
            "[steps.s]\nkind = \"docker-exec\"\ncontainer = \"app\"\nworkdir = \"{{ VAR }}\"\ncommand = [\"true\"]\n",
        ),
    ] {
        for (v, value) in VALUES.iter().enumerate() {
            let plan = format!(
                "[plan]\nname = \"values\"\n\n{}\n{}",
                vars_section(),
                make.replace("VAR", &format!("v{v}"))
            );
            let test = Test::new().plan(&plan);
            let run = test.run_with(&args(&vars, &["validate", "plan.toml"]));
            assert_eq!(run.status, 2, "`{field}` took {value:?}: {}", run.stderr);
            assert!(
                run.stderr
                    .contains(&format!("`{field}` cannot take its value")),
                "{}",
                run.stderr
            );
            assert!(
                run.stderr.contains(&format!("`v{v}` (from --var)")),
                "{}",
                run.stderr
            );
        }
    }
    assert!(!Path::new(&mark).exists());

    // A dump's path: no value climbs out of the folder the plan names; other
    // values are file names inside it.
    let plan = format!(
        "[plan]\nname = \"dump\"\n\n{}\n[vars.up]\nenv = \"UP\"\n\n[steps.dump]\nkind = \"docker-exec\"\ncontainer = \"app\"\ncommand = [\"true\"]\nstdout = \"backups/{{{{ up }}}}.sql\"\n",
        vars_section()
    );
    let test = Test::new().plan(&plan).env("UP", "../../../tmp/x");
    let run = test.run_with(&args(&vars, &["validate", "plan.toml"]));
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("climb out of its folder"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("`up` (from $UP)"), "{}", run.stderr);
}

#[test]
fn a_value_from_a_step_output_is_checked_when_its_step_starts() {
    let test = Test::new().plan(
        "[plan]\nname = \"output\"\n\n\
         [steps.name]\nkind = \"shell\"\nrun = \"echo '--privileged'\"\ncapture = true\n\n\
         [steps.use]\nkind = \"docker-exec\"\nneeds = [\"name\"]\ncontainer = \"{{ steps.name.output }}\"\ncommand = [\"touch\", \"/mark\"]\n",
    );
    let run = test.run_with(&["apply", "plan.toml"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let record = crate::common::records(&test).pop().expect("a record");
    let reason = step(&record, "use")["attempts"][0]["reason"].to_string();
    assert!(
        reason.contains("`container` cannot take the value a step's output gives it"),
        "{reason}"
    );
}
