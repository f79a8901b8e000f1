//! Output for people and machines (issue 8, item 9): the JSON of `status`, `runs`, `plan` and `cost`
//! has a versioned shape whose JSON Schema, generated from the types, is committed under
//! `schema/` and kept current; real output from a real run matches it; runs read as sentences.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{Env, BIN};

const OUTPUTS: [&str; 4] = ["status", "runs", "plan", "cost"];

fn committed(output: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../schema/{output}.schema.json"))
}

fn schema(output: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(committed(output)).unwrap()).unwrap()
}

/// Like the spec's schema: the committed copy is what the types generate. Outside CI a stale
/// copy is rewritten (and the test still fails, so the change gets committed).
#[test]
fn committed_output_schemas_are_current() {
    let mut stale = Vec::new();
    for output in OUTPUTS {
        let out = std::process::Command::new(BIN)
            .args(["schema", "--output", output])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let generated = String::from_utf8(out.stdout).unwrap();
        if std::fs::read_to_string(committed(output)).unwrap_or_default() != generated {
            if std::env::var_os("CI").is_none() {
                std::fs::write(committed(output), &generated).unwrap();
            }
            stale.push(output);
        }
    }
    assert!(
        stale.is_empty(),
        "schema/{{{}}}.schema.json was stale (regenerated outside CI; commit it, or run `resurgo schema --output NAME > schema/NAME.schema.json`)",
        stale.join(",")
    );
}

/// Every field of every output says what it is: a property carries a description, unless it
/// is an enum's tag (a `const`) or the one key of a described enum variant.
#[test]
fn every_output_field_is_documented() {
    fn walk(schema: &Value, at: &str, missing: &mut Vec<String>) {
        let props = schema["properties"].as_object();
        let variant = schema.get("description").is_some() && props.is_some_and(|p| p.len() == 1);
        for (key, prop) in props.into_iter().flatten() {
            if prop.get("description").is_none() && prop.get("const").is_none() && !variant {
                missing.push(format!("{at}.{key}"));
            }
        }
        for list in ["oneOf", "anyOf", "allOf"] {
            for (i, sub) in schema[list].as_array().into_iter().flatten().enumerate() {
                walk(sub, &format!("{at}/{list}[{i}]"), missing);
            }
        }
    }
    let mut missing = Vec::new();
    for output in OUTPUTS {
        let schema = schema(output);
        walk(&schema, output, &mut missing);
        for (name, def) in schema["$defs"].as_object().into_iter().flatten() {
            walk(def, &format!("{output}:{name}"), &mut missing);
        }
    }
    assert!(missing.is_empty(), "fields without a `///` doc: {missing:#?}");
}

/// Checks `value` against `schema`, for the part of JSON Schema that schemars writes (`$ref`,
/// `type`, `properties`, `required`, `additionalProperties`, `items`, `anyOf`, `oneOf`,
/// `const`, `enum`, `minimum`); and, stricter than JSON Schema, that an object has no key its
/// schema does not declare, so output and schema cannot drift apart.
fn check(root: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/$defs/").expect("local references only");
        errors.extend(check(root, &root["$defs"][name], value, at));
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            errors.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            errors.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let is = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("type {other} unknown to this check"),
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        errors.push(format!("{at}: {value} is not of type {types:?}"));
        return errors;
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            errors.push(format!("{at}: {n} is below {min}"));
        }
    }
    let passing = |list: &str| {
        schema[list]
            .as_array()
            .map(|subs| subs.iter().filter(|s| check(root, s, value, at).is_empty()).count())
    };
    if passing("anyOf") == Some(0) {
        errors.push(format!("{at}: {value} matches none of anyOf"));
    }
    if let Some(n) = passing("oneOf") {
        if n != 1 {
            errors.push(format!("{at}: {value} matches {n} of oneOf, not exactly one"));
        }
    }
    if let Some(object) = value.as_object() {
        let props = schema["properties"].as_object();
        for key in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                errors.push(format!("{at}: required `{key}` is missing"));
            }
        }
        for (key, v) in object {
            let here = format!("{at}.{key}");
            match (props.and_then(|p| p.get(key)), &schema["additionalProperties"]) {
                (Some(prop), _) => errors.extend(check(root, prop, v, &here)),
                (None, extra @ Value::Object(_)) => errors.extend(check(root, extra, v, &here)),
                // A variant of a oneOf/anyOf is judged by its own properties.
                (None, _) if props.is_none() && types.is_empty() => {}
                (None, _) => errors.push(format!("{here}: not declared by the schema")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            errors.extend(check(root, items, v, &format!("{at}[{i}]")));
        }
    }
    errors
}

/// `resurgo OUTPUT --json`'s output matches `schema/OUTPUT.schema.json`; it is returned.
pub(crate) fn matches_schema(output: &str, text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{output} --json: {e}\n{text}"));
    let schema = schema(output);
    let declared = schema["properties"].as_object().unwrap();
    for key in value.as_object().unwrap().keys() {
        assert!(
            declared.contains_key(key),
            "{output} --json prints `{key}`, which its schema lacks"
        );
    }
    assert_eq!(value["format_version"], 1, "{output} --json: {value}");
    let errors = check(&schema, &schema, &value, output);
    assert!(
        errors.is_empty(),
        "{output} --json does not match its schema:\n{errors:#?}\n{value:#}"
    );
    value
}

/// web at a (standby b) with a SQLite dataset and a repository at each site.
fn protected_env(block: u8, port: u16) -> Env {
    let env = Env::new(block);
    let web = Env::web("web", "a", port, "manual", &[])
        .replace(
            "args: [example-app, --port, ",
            "args: [example-app, --db, data/notes.db, --port, ",
        )
        .replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let spec = env.with_repositories(&env.spec(&web))
        + "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n    rpo: 5m\n";
    env.write_spec(&spec);
    env
}

#[test]
fn status_runs_and_plan_json_of_a_real_failover_match_their_schemas() {
    let env = protected_env(140, 7240);
    let plan = env.run(&["plan", "--json"]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    let plan = matches_schema("plan", &plan.stdout);
    assert_eq!(plan["summary"]["create"], 1, "{plan:#}");

    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert_eq!(env.run(&["repo", "init"]).code, 0);
    let backup = env.run(&["backup", "--replicate"]);
    assert_eq!(backup.code, 0, "{}{}", backup.stdout, backup.stderr);
    let status = env.run(&["status", "--json"]);
    let status = matches_schema("status", &status.stdout);
    assert!(status["datasets"][0]["points"][0]["newest"].is_string(), "{status:#}");
    assert!(status["maintenance"].is_null(), "{status:#}");

    // A failover, as a person reads it: a sentence per step and one for the run.
    let failover = env.run(&["failover", "--to", "b"]);
    assert_eq!(failover.code, 0, "{}{}", failover.stdout, failover.stderr);
    assert!(failover.stdout.contains("fence a: done"), "{}", failover.stdout);
    let last = failover.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("run ") && last.ends_with("): succeeded"),
        "{}",
        failover.stdout
    );
    for debug in ["Done", "AlreadyDone", "Succeeded", "Aborted {"] {
        assert!(!failover.stdout.contains(debug), "Rust Debug in:\n{}", failover.stdout);
    }
    let history = env.run(&["runs"]);
    assert!(
        history
            .stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("— failover, epoch 1: succeeded")),
        "{}",
        history.stdout
    );

    let runs = env.run(&["runs", "--json"]);
    let runs = matches_schema("runs", &runs.stdout);
    let run = &runs["runs"][0];
    assert_eq!(
        (&run["kind"], &run["outcome"]["status"]),
        (&"failover".into(), &"succeeded".into()),
        "{run:#}"
    );
    assert!(run["measures"]["rto_s"].is_f64(), "{run:#}");

    // Roles, a lease and the maintenance switch are named objects.
    let on = env.run(&["maintenance", "on", "--for", "10m", "--by", "output-test"]);
    assert_eq!(on.code, 0, "{}{}", on.stdout, on.stderr);
    let status = env.run(&["status", "--json"]);
    let status = matches_schema("status", &status.stdout);
    assert_eq!(status["maintenance"]["by"], "output-test", "{status:#}");
    assert!(
        status["maintenance"]["seconds_left"].as_u64().is_some_and(|s| s > 500),
        "{status:#}"
    );
    assert_eq!(status["roles"][0]["primary"], "b", "{status:#}");

    let plan = env.run(&["plan", "--json"]);
    matches_schema("plan", &plan.stdout);
}

/// The check above is not vacuous: an old-shaped field, an undeclared key and a missing
/// required one are caught.
#[test]
fn the_schema_check_catches_the_old_shapes() {
    let schema = schema("status");
    let role = |lease: Value| {
        serde_json::json!({"format_version": 1, "system": "s", "desired": "folder:0", "last_applied": null,
            "in_sync": true, "sites": [], "datasets": [], "maintenance": null,
            "roles": [{"group": "site-a", "primary": "b", "epoch": 1, "since": null, "lease": lease}]})
    };
    assert_eq!(
        check(&schema, &schema, &role(Value::Null), "status"),
        Vec::<String>::new()
    );
    let good = serde_json::json!({"holder": "b", "seconds_left": 2});
    assert!(check(&schema, &schema, &role(good), "status").is_empty());
    for bad in [
        serde_json::json!(["b", 2]),
        serde_json::json!({"holder": "b", "seconds_left": 2, "extra": 1}),
        serde_json::json!({"holder": "b"}),
    ] {
        assert!(
            !check(&schema, &schema, &role(bad.clone()), "status").is_empty(),
            "{bad} passed"
        );
    }
}
