//! `runner schema`: the JSON Schema of the plan format, from the loader's own types.

use serde_json::Value;

use crate::plan::action::Kind;
use crate::plan::model::PlanFile;

/// The plan format's schema: the plan's own types, and for a step or a hook
/// one variant per kind of `kinds`, tagged by its `kind`.
pub(crate) fn json_schema(kinds: &[Kind]) -> Value {
    let mut generator = schemars::SchemaGenerator::default();
    let variants: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            let mut variant = serde_json::to_value((kind.schema)(&mut generator))
                .unwrap_or_else(|_| serde_json::json!({}));
            if let Some(object) = variant.as_object_mut() {
                object.insert("description".into(), kind.about.into());
                object.insert(
                    "properties".into(),
                    serde_json::json!({ "kind": { "const": kind.name, "type": "string" } }),
                );
                object.insert("required".into(), serde_json::json!(["kind"]));
                object.insert("type".into(), "object".into());
            }
            variant
        })
        .collect();
    let root = generator.into_root_schema_for::<PlanFile>();
    let mut schema = serde_json::to_value(root).unwrap_or_default();
    for def in ["StepDef", "HookDef"] {
        if let Some(object) = schema["$defs"][def].as_object_mut() {
            object.insert("oneOf".into(), Value::Array(variants.clone()));
            // A kind's fields are the variant's: only what neither part names
            // is unknown.
            if let Some(closed) = object.remove("additionalProperties") {
                object.insert("unevaluatedProperties".into(), closed);
            }
        }
    }
    drop_null(&mut schema);
    schema
}

/// TOML has no null: an optional field is absent, never null. schemars writes
/// `Option<T>` as "T or null"; keep just T.
fn drop_null(value: &mut Value) {
    let null = serde_json::json!({ "type": "null" });
    if let Some(object) = value.as_object_mut() {
        if let Some(Value::Array(types)) = object.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                object.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(choices)) = object.get_mut("anyOf") {
            choices.retain(|c| *c != null);
            if choices.len() == 1
                && let Some(Value::Object(only)) = choices.pop()
            {
                object.remove("anyOf");
                object.extend(only);
            }
        }
        object.values_mut().for_each(drop_null);
    } else if let Some(items) = value.as_array_mut() {
        items.iter_mut().for_each(drop_null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader's field lists and the schema's come from different code; they must agree.
    #[test]
    fn schema_fields_per_kind_match_the_loader() {
        let schema = json_schema(crate::kinds::KINDS);
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
        for entry in crate::kinds::KINDS {
            let (kind, fields) = (entry.name, entry.fields);
            let variant = defs["StepDef"]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["properties"]["kind"]["const"] == kind)
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
            sorted(crate::plan::reader::STEP_FIELDS)
        );
        assert_eq!(
            keys(&defs["HookDef"]),
            sorted(crate::plan::reader::HOOK_FIELDS)
        );
    }
}
