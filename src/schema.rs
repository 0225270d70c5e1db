//! `runner schema`: the JSON Schema of the plan format, from the loader's own types.

use crate::plan::model::PlanFile;

pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PlanFile)).unwrap_or_default()
}
