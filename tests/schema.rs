//! `runner schema` matches what the loader accepts.

use crate::common::{Test, repo};

fn schema() -> serde_json::Value {
    let run = Test::new().args(&["schema"]).run();
    assert_eq!(run.status, 0);
    serde_json::from_str(&run.stdout).expect("schema is JSON")
}

fn as_json(toml_text: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(toml_text).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn every_repository_plan_satisfies_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("a valid JSON Schema");
    let mut plans = vec![repo().join("plans/production.toml")];
    for entry in std::fs::read_dir(repo().join("plans/examples")).unwrap() {
        plans.push(entry.unwrap().path());
    }
    for plan in plans {
        let json = as_json(&std::fs::read_to_string(&plan).unwrap());
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", plan.display());
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for bad in [
        "[plan]\nname = \"t\"\n[steps.a]\nkind = \"shell\"\nrun = \"x\"\ntimout = \"1m\"\n",
        "[plan]\nname = \"t\"\n[steps.a]\nkind = \"shell\"\nurl = \"http://x\"\nrun = \"x\"\n",
        "[plan]\nname = \"t\"\n[steps.a]\nkind = \"shel\"\nrun = \"x\"\n",
        "[plan]\nname = \"t\"\n[steps.a]\nkind = \"http-probe\"\n",
        "[plan]\nname = \"t\"\n[steps.a]\nkind = \"maintenance-toggle\"\nstate = \"of\"\n",
    ] {
        assert!(!validator.is_valid(&as_json(bad)), "schema accepts:\n{bad}");
    }
}
