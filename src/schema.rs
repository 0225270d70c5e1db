//! `runner schema`: the JSON Schema of the plan format, from the loader's own types.

use serde_json::Value;

use crate::plan::model::PlanFile;

pub fn json_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(PlanFile)).unwrap_or_default();
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
