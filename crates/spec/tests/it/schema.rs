//! The committed JSON Schema is the one the types generate. Outside CI a stale copy is
//! rewritten (and the test still fails, so the change gets committed).

use std::path::Path;

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/resurgo.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = resurgo_spec::json_schema();
    if committed != generated {
        if std::env::var_os("CI").is_none() {
            std::fs::write(&path, &generated).unwrap();
        }
        panic!("schema/resurgo.schema.json was stale (regenerated outside CI; commit it, or run `resurgo schema > schema/resurgo.schema.json`)");
    }
}

#[test]
fn schema_describes_the_sections() {
    let schema: serde_json::Value = serde_json::from_str(&resurgo_spec::json_schema()).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for section in [
        "apiVersion",
        "inputs",
        "sites",
        "services",
        "datasets",
        "routes",
        "objectives",
        "drills",
        "workspaces",
        "notifications",
    ] {
        assert!(props.contains_key(section), "schema lacks `{section}`");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}
