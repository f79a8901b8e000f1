//! The spec's contract, rule by rule: every message a person can get from a bad spec is
//! pinned here as a snapshot, with its file, line, column and caret.

mod rules;
mod schema;

use resurgo_spec::{load, Loaded, SourceFile, SpecError};

/// A valid two-site spec that the rule tests break one way at a time.
pub const BASE: &str = r#"apiVersion: resurgo.dev/v1alpha1
system: shop
inputs:
  region_a: eu-west-1
  port: 8080
sites:
  a:
    provider: local
    address: 127.0.1.1
    region: ${inputs.region_a}
    capacity: { cpu: 4, memory: 4Gi }
    capabilities: [postgres]
    repository: { url: file:///var/backups/a, password: { env: RESURGO_PASSWORD_A } }
  b:
    provider: local
    address: 127.0.2.1
    capacity: { cpu: 4, memory: 4Gi }
    capabilities: [postgres]
services:
  db:
    command: postgres
    ports: [5432]
    requires: [postgres]
    resources: { cpu: 1, memory: 1Gi }
    site: a
    standby: [b]
  web:
    command: web
    args: ["--port", "${inputs.port}"]
    ports: [${inputs.port}]
    depends_on: [db]
    health:
      http: { port: 8080, path: /healthz }
      interval: 1s
    site: a
    standby: [b]
    sync: auto
"#;

pub fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
    list.iter()
        .map(|(n, t)| SourceFile {
            name: n.to_string(),
            text: t.to_string(),
        })
        .collect()
}

pub fn ok(text: &str) -> Loaded {
    match load(files(&[("spec.yaml", text)]), &[]) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid spec, got:\n{e}"),
    }
}

pub fn err(text: &str) -> String {
    err_files(&[("spec.yaml", text)])
}

pub fn err_files(list: &[(&str, &str)]) -> String {
    match load(files(list), &[]) {
        Ok(_) => panic!("expected the spec to be refused"),
        Err(e) => render(&e),
    }
}

pub fn render(e: &SpecError) -> String {
    e.to_string()
}

/// BASE with `from` replaced by `to` (which must occur).
pub fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}
