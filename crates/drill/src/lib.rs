//! The drill report: what a drill run writes to prove recovery — which spec commit was tested,
//! what failed, how long each phase took, how much data was lost, what was left behind — its
//! verdict, and its renderings (Markdown, an SVG timeline, an HTML page, JUnit XML).
//!
//! Pure: plain data in, strings out. The crate runs no drill; the runner fills a [`Report`],
//! calls [`Report::judge`], writes the JSON, and renders it.
//!
//! - `report.rs`: the types, which *are* the format; their JSON Schema is committed as
//!   `schema/drill-report.schema.json` (`resurgo schema --output drill-report`).
//! - `verdict.rs`: the checks the verdict is made of, and `Report::judge`.
//! - `render/`: one file per rendering, and the escaping they share.

mod render;
pub mod report;
#[cfg(test)]
mod sample;
mod verdict;

/// Escaping shared with other renderings of resurgo's evidence (the tabletop checklist).
pub use render::{escape as escape_html, md as escape_markdown};
pub use render::{html, junit, markdown, timeline_svg};
pub use report::*;
pub use verdict::{checks, Check};

use schemars::generate::SchemaSettings;

/// The JSON Schema of a report, as it is written: the serialize contract, as for the CLI's
/// other machine outputs, so a field always written — even as null, like `ended` — is
/// required, and a reader can rely on it being there.
pub fn report_schema() -> serde_json::Value {
    let schema = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Report>();
    serde_json::to_value(schema).expect("a schema serializes")
}

/// [`report_schema`] pretty-printed, with a final line break: the committed file's text.
pub fn report_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&report_schema()).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Like the spec's and the site API's: the committed copy is what the types generate.
    /// Outside CI a stale copy is rewritten (and the test still fails, so the change gets
    /// committed).
    #[test]
    fn committed_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/drill-report.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = report_schema_text();
        if committed != generated {
            if std::env::var_os("CI").is_none() {
                std::fs::write(&path, &generated).unwrap();
            }
            panic!("schema/drill-report.schema.json was stale (regenerated outside CI; commit it, or run `resurgo schema --output drill-report > schema/drill-report.schema.json`)");
        }
    }

    /// Every property in the schema says what it is (the doc comments become descriptions).
    #[test]
    fn every_field_is_documented() {
        let schema = report_schema();
        let mut missing = Vec::new();
        let mut objects = vec![("Report".to_string(), &schema)];
        for (name, def) in schema["$defs"].as_object().unwrap() {
            objects.push((name.clone(), def));
        }
        for (name, object) in objects {
            for (key, prop) in object["properties"].as_object().into_iter().flatten() {
                if prop.get("description").is_none() {
                    missing.push(format!("{name}.{key}"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }

    #[test]
    fn a_report_round_trips_through_json_and_always_writes_its_leftovers() {
        let mut r = sample::passing();
        r.judge();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema"], REPORT_SCHEMA);
        assert_eq!(json["leftovers"], serde_json::json!([]));
        assert_eq!(json["mode"], "isolated");
        assert_eq!(json["outcome"], "completed");
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["phases"][0]["name"], "detect");
        assert_eq!(json["rto"]["preempt_s"], serde_json::Value::Null);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let required = &report_schema()["required"];
        assert!(required.as_array().unwrap().iter().any(|f| f == "leftovers"));
        assert!(required.as_array().unwrap().iter().any(|f| f == "ended"));
    }
}
