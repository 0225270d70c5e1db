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

/// The loader's field lists and the schema's come from different code; they must agree.
#[test]
fn schema_fields_per_kind_match_the_loader() {
    let schema = schema();
    let defs = &schema["$defs"];
    let keys = |def: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = def["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    for (kind, fields) in runner::plan::reader::KINDS {
        let variant = defs["StepDef"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["kind"]["const"] == *kind)
            .unwrap_or_else(|| panic!("no schema variant for {kind}"));
        let name = variant["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/$defs/");
        let mut expected: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        expected.sort();
        assert_eq!(keys(&defs[name]), expected, "fields of {kind}");
    }
    // `kind` is the tag of the per-kind variants, not a property of the common part.
    let sorted = |fields: &[&str]| {
        let mut fields: Vec<String> = fields
            .iter()
            .filter(|f| **f != "kind")
            .map(|f| (*f).to_owned())
            .collect();
        fields.sort();
        fields
    };
    assert_eq!(
        keys(&defs["StepDef"]),
        sorted(runner::plan::reader::STEP_FIELDS)
    );
    assert_eq!(
        keys(&defs["HookDef"]),
        sorted(runner::plan::reader::HOOK_FIELDS)
    );
}
