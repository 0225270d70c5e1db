//! `runner validate`: every check, as the operator sees it.

use crate::common::{Test, repo};

/// Validates `plan` and returns its diagnostics, asserting exit 2.
fn invalid(plan: &str) -> String {
    let run = Test::new()
        .plan(plan)
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 2, "stderr:\n{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "validate prints nothing but diagnostics"
    );
    run.stderr
}

const HEAD: &str = "[plan]\nname = \"t\"\n\n";

#[test]
fn every_plan_in_the_repository_is_valid() {
    let mut plans = vec![repo().join("plans/production.toml")];
    for entry in std::fs::read_dir(repo().join("plans/examples")).unwrap() {
        plans.push(entry.unwrap().path());
    }
    assert!(plans.len() >= 5, "production plus one example per kind");
    for plan in plans {
        let run = Test::new()
            .args(&["validate", plan.to_str().unwrap()])
            .run();
        assert_eq!(run.status, 0, "{}:\n{}", plan.display(), run.stderr);
        assert_eq!(run.stderr, "", "{} has warnings", plan.display());
    }
}

#[test]
fn toml_syntax() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"echo\n"
    )));
}

#[test]
fn unknown_field_suggests_the_close_one() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"echo\"\ntimout = \"5m\"\n"
    )));
}

#[test]
fn field_of_another_kind() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"echo\"\nurl = \"http://localhost/\"\n"
    )));
}

#[test]
fn unknown_kind() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"docker_exec\"\n"
    )));
}

#[test]
fn missing_kind_and_missing_field() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nrun = \"echo\"\n\n[steps.b]\nkind = \"http-probe\"\ncontainer = \"app\"\n"
    )));
}

#[test]
fn wrong_types() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nrun = [\"echo\"]\nretries = \"3\"\nneeds = \"b\"\n\n[steps.b]\nkind = \"shell\"\nrun = \"true\"\ncapture = \"yes\"\n"
    )));
}

#[test]
fn needs_a_missing_step() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.build]\nkind = \"shell\"\nrun = \"make\"\n\n[steps.deploy]\nkind = \"shell\"\nneeds = [\"biuld\"]\nrun = \"true\"\n"
    )));
}

#[test]
fn step_needing_itself() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nneeds = [\"a\"]\nrun = \"true\"\n"
    )));
}

#[test]
fn cycle_is_printed_as_a_path_with_every_step_labelled() {
    let stderr = invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nneeds = [\"c\"]\nrun = \"true\"\n\n\
         [steps.b]\nkind = \"shell\"\nneeds = [\"a\"]\nrun = \"true\"\n\n\
         [steps.c]\nkind = \"shell\"\nneeds = [\"b\"]\nrun = \"true\"\n\n\
         [steps.d]\nkind = \"shell\"\nneeds = [\"a\"]\nrun = \"true\"\n"
    ));
    assert!(stderr.contains("a -> c -> b -> a"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn bad_duration_when_and_state() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[maintenance]\ncontainer = \"app\"\non = [\"m\", \"on\"]\noff = [\"m\", \"off\"]\nstatus = [\"m\"]\n\n\
         [steps.a]\nkind = \"maintenance-toggle\"\nstate = \"enabled\"\ntimeout = \"10 minutes and a bit\"\nretry_delay = \"5\"\n\n\
         [steps.b]\nkind = \"shell\"\nrun = \"true\"\nwhen = \"allways\"\n"
    )));
}

#[test]
fn rollback_hook_with_needs_or_its_own_rollback() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"true\"\n\n[steps.b]\nkind = \"shell\"\nrun = \"true\"\n\
         rollback = {{ kind = \"shell\", run = \"undo\", needs = [\"a\"], rollback = {{ kind = \"shell\", run = \"x\" }} }}\n"
    )));
}

#[test]
fn maintenance_toggle_without_maintenance_section() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.on]\nkind = \"maintenance-toggle\"\nstate = \"on\"\n\
         rollback = {{ kind = \"maintenance-toggle\", state = \"off\" }}\n"
    )));
}

#[test]
fn unknown_template_name() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[vars]\napp = \"web\"\n\n[steps.a]\nkind = \"docker-exec\"\ncontainer = \"{{{{ ap }}}}\"\ncommand = [\"ls\", \"{{{{ nothing_like_it }}}}\"]\n"
    )));
}

#[test]
fn step_output_of_a_step_that_is_not_an_ancestor_or_does_not_capture() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.rev]\nkind = \"shell\"\nrun = \"git rev-parse HEAD\"\ncapture = true\n\n\
         [steps.date]\nkind = \"shell\"\nrun = \"date\"\n\n\
         [steps.use]\nkind = \"shell\"\nneeds = [\"date\"]\nrun = \"echo {{{{ steps.rev.output }}}} {{{{ steps.date.output }}}}\"\n"
    )));
}

#[test]
fn the_output_of_a_kind_that_keeps_none_is_refused_with_what_to_do() {
    let out = invalid(&format!(
        "{HEAD}[steps.probe]\nkind = \"http-probe\"\nurl = \"http://127.0.0.1:1/\"\n\n\
         [steps.use]\nkind = \"shell\"\nneeds = [\"probe\"]\nrun = \"echo {{{{ steps.probe.output }}}}\"\n"
    ));
    assert!(
        out.contains("step `probe` does not capture its output"),
        "{out}"
    );
    assert!(out.contains("a `http-probe` step keeps no output"), "{out}");
    assert!(!out.contains("capture = true"), "{out}");
}

#[test]
fn step_output_reaches_an_ancestor_and_the_hook_of_the_capturing_step() {
    let run = Test::new()
        .plan(&format!(
            "{HEAD}[steps.rev]\nkind = \"shell\"\nrun = \"git rev-parse HEAD\"\ncapture = true\n\
             rollback = {{ kind = \"shell\", run = \"git reset --hard {{{{ steps.rev.output }}}}\" }}\n\n\
             [steps.pull]\nkind = \"shell\"\nneeds = [\"rev\"]\nrun = \"git pull\"\n\n\
             [steps.use]\nkind = \"shell\"\nneeds = [\"pull\"]\nrun = \"echo {{{{ steps.rev.output }}}}\"\n"
        ))
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 0, "{}", run.stderr);
}

#[test]
fn unset_environment_variable_without_default() {
    let plan = format!(
        "{HEAD}[vars]\ndb_password = {{ env = \"RUNNER_TEST_DB_PASSWORD\", secret = true }}\n\n\
         [steps.a]\nkind = \"shell\"\nrun = \"true\"\n"
    );
    insta::assert_snapshot!(invalid(&plan));
    // Set, or given on the command line, it is fine.
    let set = Test::new()
        .plan(&plan)
        .env("RUNNER_TEST_DB_PASSWORD", "x")
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(set.status, 0, "{}", set.stderr);
    let var = Test::new()
        .plan(&plan)
        .args(&["validate", "plan.toml", "--var", "db_password=x"])
        .run();
    assert_eq!(var.status, 0, "{}", var.stderr);
}

#[test]
fn phases_cannot_mix() {
    insta::assert_snapshot!(invalid(&format!(
        "{HEAD}[steps.notify]\nkind = \"shell\"\nwhen = \"failure\"\nrun = \"true\"\n\n\
         [steps.a]\nkind = \"shell\"\nneeds = [\"notify\"]\nrun = \"true\"\n\n\
         [steps.cleanup]\nkind = \"shell\"\nwhen = \"always\"\nneeds = [\"a\"]\nrun = \"true\"\n"
    )));
}

#[test]
fn redundant_need_is_a_warning_not_an_error() {
    let run = Test::new()
        .plan(&format!(
            "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"true\"\n\n\
             [steps.b]\nkind = \"shell\"\nneeds = [\"a\"]\nrun = \"true\"\n\n\
             [steps.c]\nkind = \"shell\"\nneeds = [\"a\", \"b\"]\nrun = \"true\"\n"
        ))
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(run.status, 0);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let stderr = invalid(&format!(
        "{HEAD}[vars]\napp = \"web\"\n\n\
         [steps.a]\nkind = \"shell\"\nrun = \"make {{{{ ap }}}}\"\ntimout = \"5m\"\n\n\
         [steps.b]\nkind = \"shel\"\nrun = \"x\"\n\n\
         [steps.c]\nkind = \"shell\"\nneeds = [\"b\", \"missing\"]\nrun = \"x\"\nretries = -1\n"
    ));
    assert!(stderr.ends_with("5 errors in plan.toml\n"), "{stderr}");
    for needle in ["`ap`", "`timout`", "`shel`", "`missing`", "`retries`"] {
        assert!(stderr.contains(needle), "{needle} not reported:\n{stderr}");
    }
    // A step that could not be read is still a step: `needs = ["b"]` is no error.
    assert!(!stderr.contains("needs `b`"), "{stderr}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let run = Test::new().args(&["validate", "nowhere.toml"]).run();
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("cannot read the plan nowhere.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_var_on_the_command_line_is_a_usage_error() {
    let run = Test::new()
        .plan(&format!(
            "{HEAD}[steps.a]\nkind = \"shell\"\nrun = \"true\"\n"
        ))
        .args(&["validate", "plan.toml", "--var", "novalue"])
        .run();
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("`novalue` is not KEY=VALUE"),
        "{}",
        run.stderr
    );
}

/// A mistyped `--var` once deployed the plan's default (v1 onto a v2
/// database) with exit 0. Every command that takes values refuses a name the
/// plan does not declare, suggests the closest, and changes nothing.
#[test]
fn a_value_for_an_undeclared_variable_is_refused_with_the_closest_name() {
    let test = Test::new().plan(&format!(
        "{HEAD}[vars]\nversion = \"v1\"\napp = \"web\"\n\n[maintenance]\ncontainer = \"{{{{ app }}}}\"\n\
         on = [\"on\"]\noff = [\"off\"]\nstatus = [\"status\"]\n\n\
         [steps.deploy]\nkind = \"shell\"\nrun = \"echo {{{{ version }}}} > deployed\"\n"
    ));
    let commands: [&[&str]; 5] = [
        &["validate", "plan.toml"],
        &["apply", "plan.toml"],
        &["apply", "plan.toml", "--plan-only"],
        &["maintenance", "off", "plan.toml"],
        &["maintenance", "status", "plan.toml"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--var", "verison=v2-hunter2"]);
        let run = test.run_with(&args);
        assert_eq!(run.status, 2, "{command:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("`--var verison=…` names no variable of this plan"),
            "{command:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("did you mean `version`?"),
            "{command:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("plan.toml:5:1"),
            "points at the declared name: {}",
            run.stderr
        );
        // The value may be a secret given under a wrong name: never shown.
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
        assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
        assert!(!test.path_of("deployed").exists(), "{command:?} ran a step");
        assert!(!test.path_of(".runner").exists(), "{command:?} left state");
    }
    // Far from every declared name: no guess, the declared names instead.
    let run = test.run_with(&["apply", "plan.toml", "--var", "zzz=1"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("declared: `version`, `app`"),
        "{}",
        run.stderr
    );
    // The declared name works.
    let run = test.run_with(&["apply", "plan.toml", "--var", "version=v2"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(test.path_of("deployed")).unwrap(),
        "v2\n"
    );
}

/// `expect_body` and `expect_output` render templates; a secret there would
/// be printed when the check fails, so it is refused as on a command line.
#[test]
fn expectations_render_templates_and_refuse_secrets() {
    let plan = |field: &str| {
        format!(
            "{HEAD}[vars]\nversion = \"v2\"\ntoken = {{ env = \"RUNNER_TEST_TOKEN\", secret = true, default = \"s\" }}\n\n\
             [steps.probe]\nkind = \"http-probe\"\nurl = \"http://localhost/\"\n{field}\n\n\
             [steps.exec]\nkind = \"docker-exec\"\ncontainer = \"app\"\ncommand = [\"cat\", \"/version\"]\nexpect_output = \"^{{{{ version }}}}$\"\n"
        )
    };
    let ok = Test::new()
        .plan(&plan("expect_body = \"up {{ version }}\""))
        .args(&["validate", "plan.toml"])
        .run();
    assert_eq!(ok.status, 0, "{}", ok.stderr);
    let secret = invalid(&plan("expect_body = \"{{ token }}\""));
    assert!(
        secret.contains("the secret `token` would stand in text runner prints when the check fails (`expect_body`)"),
        "{secret}"
    );
    let unknown = invalid(&plan("expect_body = \"{{ versoin }}\""));
    assert!(unknown.contains("versoin"), "{unknown}");
    // A plain string holding a template is refused where it stands.
    let described = invalid(&plan("description = \"deploy {{ version }}\""));
    assert!(
        described.contains("`description` does not take templates")
            && described.contains("plan.toml:11:23"),
        "{described}"
    );
}
