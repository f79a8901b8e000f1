//! From spec files to a [`System`]: parse each file, resolve inputs, read the typed sections,
//! merge the files, then validate. Every error carries its file, line and column.

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, SourceFile, SpecError};
use crate::model::{Document, Input, InputValue, Prices, System, API_VERSION};
use crate::validate;
use crate::yaml::{Node, NodeKind, Seg};

/// A loaded, valid spec.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub system: System,
    /// SHA-256 over the files' names and texts: identifies a spec that has no Git commit.
    pub digest: String,
}

/// The parsed files and which file defined each named item, so that any later problem can
/// be pointed at in the source.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    nodes: Vec<Node>,
    /// `(section, name)` → index of the file that defines it.
    origins: IndexMap<(String, String), usize>,
}

impl Sources {
    /// A diagnostic pointing at `section.name.rest…`; at the key when `key` is set.
    pub fn diag(&self, section: &str, name: &str, rest: &[Seg], key: bool, message: String) -> Diagnostic {
        let Some(&file) = self.origins.get(&(section.to_string(), name.to_string())) else {
            return Diagnostic::bare(message);
        };
        // A section that is one item (`failover`) has no name.
        let mut path = vec![Seg::Key(section.into())];
        if !name.is_empty() {
            path.push(Seg::Key(name.into()));
        }
        path.extend_from_slice(rest);
        Diagnostic::at(&self.files[file], self.nodes[file].locate(&path, key), message)
    }
}

/// Loads a spec from its files. `overrides` are `--set NAME=VALUE` pairs.
pub fn load(files: Vec<SourceFile>, overrides: &[(String, String)]) -> Result<Loaded, SpecError> {
    if files.is_empty() {
        return Err(Diagnostic::bare("the spec has no files (expected *.yaml or *.yml)").into());
    }
    let digest = digest(&files);
    let mut sources = Sources {
        files,
        ..Sources::default()
    };
    let mut diags = Vec::new();

    // Pass 1: parse with references masked, to read the inputs.
    for file in &sources.files {
        match Node::parse(&mask(&file.text)) {
            Ok(node) => sources.nodes.push(node),
            Err(e) => {
                diags.push(Diagnostic::at(file, e.pos, format!("invalid YAML: {}", e.message)));
                sources.nodes.push(Node::parse("{}").expect("empty map parses"));
            }
        }
    }
    if !diags.is_empty() {
        return Err(SpecError { diagnostics: diags });
    }
    let inputs = resolve_inputs(&sources, overrides)?;

    // Pass 2: substitute the inputs into the text, then parse for real.
    for i in 0..sources.files.len() {
        match substitute(&sources.files[i], &inputs) {
            Ok(text) => sources.files[i].text = text,
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(SpecError { diagnostics: diags });
    }
    // The masked trees have served; free them before building the real ones.
    sources.nodes.clear();
    for file in &sources.files {
        match Node::parse(&file.text) {
            Ok(parsed) => sources.nodes.push(parsed),
            Err(e) => diags.push(Diagnostic::at(file, e.pos, format!("invalid YAML: {}", e.message))),
        }
    }
    if !diags.is_empty() {
        return Err(SpecError { diagnostics: diags });
    }

    let mut documents = Vec::new();
    for (file, node) in sources.files.iter().zip(&sources.nodes) {
        match read_document(file, node) {
            Ok(doc) => documents.push(doc),
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(SpecError { diagnostics: diags });
    }

    let system = merge(documents, inputs, &mut sources, &mut diags);
    diags.extend(validate::validate(&system, &sources));
    if !diags.is_empty() {
        return Err(SpecError { diagnostics: diags });
    }
    // The positioned trees are only needed to explain errors; a valid spec lets them go.
    drop(sources);
    Ok(Loaded { system, digest })
}

fn digest(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gathers the `inputs` sections of all files, then applies the overrides.
fn resolve_inputs(
    sources: &Sources,
    overrides: &[(String, String)],
) -> Result<IndexMap<String, InputValue>, SpecError> {
    let mut values = IndexMap::new();
    let mut seen: IndexMap<String, usize> = IndexMap::new();
    let mut diags = Vec::new();
    for (i, (file, node)) in sources.files.iter().zip(&sources.nodes).enumerate() {
        let path = [Seg::Key("inputs".into())];
        let Some(section) = node.get(&path) else { continue };
        let parsed: Result<IndexMap<String, Input>, _> = serde_path_to_error::deserialize(section.to_json());
        match parsed {
            Ok(map) => {
                for (name, input) in map {
                    let key_path = [Seg::Key("inputs".into()), Seg::Key(name.clone())];
                    if let Some(&first) = seen.get(&name) {
                        diags.push(Diagnostic::at(
                            file,
                            node.locate(&key_path, true),
                            format!(
                                "input `{name}` is defined twice (also in {})",
                                sources.files[first].name
                            ),
                        ));
                        continue;
                    }
                    seen.insert(name.clone(), i);
                    let value = input.default_value().clone();
                    let value_pos = node.locate(&key_path, false);
                    let line = file
                        .text
                        .lines()
                        .nth(value_pos.line.saturating_sub(1) as usize)
                        .unwrap_or("");
                    let multiline = matches!(&value, InputValue::String(t) if t.contains('\n'));
                    if multiline || line.contains("${") {
                        diags.push(Diagnostic::at(
                            file,
                            value_pos,
                            format!("input `{name}` must be a one-line value that refers to no other input"),
                        ));
                        continue;
                    }
                    values.insert(name, value);
                }
            }
            Err(e) => diags.push(type_error(file, node, &path, e)),
        }
    }
    for (name, raw) in overrides {
        if !values.contains_key(name) {
            let declared: Vec<&str> = values.keys().map(String::as_str).collect();
            diags.push(
                Diagnostic::bare(format!("--set {name}=…: there is no input `{name}`"))
                    .with_help(format!("declared inputs: {}", list_or_none(&declared))),
            );
            continue;
        }
        let value = match crate::yaml::Node::parse(raw).map(|n| n.to_json()) {
            Ok(serde_json::Value::Bool(b)) => InputValue::Bool(b),
            Ok(serde_json::Value::Number(n)) if n.is_i64() => InputValue::Int(n.as_i64().unwrap_or(0)),
            Ok(serde_json::Value::Number(n)) => InputValue::Float(n.as_f64().unwrap_or(0.0)),
            _ => InputValue::String(raw.clone()),
        };
        values.insert(name.clone(), value);
    }
    if diags.is_empty() {
        Ok(values)
    } else {
        Err(SpecError { diagnostics: diags })
    }
}

pub(crate) fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Hides every `${…}` behind underscores of the same length, so the text parses as YAML
/// (a bare `${` breaks flow collections) and positions stay where they are. Used to read the
/// `inputs` sections before anything is substituted.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        match tail.find(['}', '\n']) {
            Some(end) if tail.as_bytes()[end] == b'}' => {
                out.extend(std::iter::repeat_n('_', tail[..=end].chars().count()));
                rest = &tail[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Replaces `${inputs.NAME}` with the input's value, as text, before the YAML is parsed —
/// like `envsubst`, so a reference works anywhere a value does (`ports: [${inputs.port}]`).
/// Comment lines are left alone. Lines keep their numbers; an input value may not span lines.
fn substitute(file: &SourceFile, inputs: &IndexMap<String, InputValue>) -> Result<String, Diagnostic> {
    let mut out = String::with_capacity(file.text.len());
    for (n, line) in file.text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut col = 0;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let pos = |len: usize| crate::yaml::Pos {
                line: n as u32 + 1,
                col: (col + rest[..start].chars().count()) as u32 + 1,
                len: len as u32,
            };
            let Some(end) = rest[start..].find('}') else {
                return Err(Diagnostic::at(
                    file,
                    pos(2),
                    "unterminated `${`: write `${inputs.NAME}`",
                ));
            };
            let reference = &rest[start + 2..start + end];
            let len = end + 1;
            let name = reference.strip_prefix("inputs.").ok_or_else(|| {
                Diagnostic::at(
                    file,
                    pos(len),
                    format!("unknown reference `${{{reference}}}`: only `${{inputs.NAME}}` is supported"),
                )
            })?;
            let value = inputs.get(name).ok_or_else(|| {
                let declared: Vec<&str> = inputs.keys().map(String::as_str).collect();
                Diagnostic::at(
                    file,
                    pos(len),
                    format!("unknown input `{name}`; declared inputs: {}", list_or_none(&declared)),
                )
            })?;
            out.push_str(&input_text(value));
            col += rest[..start + end + 1].chars().count();
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn input_text(value: &InputValue) -> String {
    match value {
        InputValue::Bool(b) => b.to_string(),
        InputValue::Int(i) => i.to_string(),
        InputValue::Float(f) => f.to_string(),
        InputValue::String(s) => s.clone(),
    }
}

/// Reads a price file (`resurgo cost --prices FILE`): YAML or JSON of the shape of the spec's
/// `prices` section, every error at file:line:column like the spec's — a malformed value, an
/// unknown field, a negative price, a site the spec does not declare.
pub fn read_prices(file: &SourceFile, system: &System) -> Result<Prices, Diagnostic> {
    let node =
        Node::parse(&file.text).map_err(|e| Diagnostic::at(file, e.pos, format!("invalid YAML: {}", e.message)))?;
    if !matches!(node.kind, NodeKind::Map(_)) {
        return Err(Diagnostic::at(
            file,
            node.pos,
            "a price file must be a mapping (currency, cpu_core_hour, storage_gib_month…)",
        ));
    }
    let prices: Prices =
        serde_path_to_error::deserialize(node.to_json()).map_err(|e| type_error(file, &node, &[], e))?;
    if let Some((site, message)) = validate::unknown_price_site(&prices, system) {
        let at = node.locate(&[Seg::Key("sites".into()), Seg::Key(site)], true);
        return Err(Diagnostic::at(file, at, message));
    }
    Ok(prices)
}

fn read_document(file: &SourceFile, node: &Node) -> Result<Document, Diagnostic> {
    if !matches!(node.kind, NodeKind::Map(_)) {
        return Err(Diagnostic::at(
            file,
            node.pos,
            "a spec file must be a mapping (apiVersion, sites, services…)",
        ));
    }
    let doc: Document = serde_path_to_error::deserialize(node.to_json()).map_err(|e| type_error(file, node, &[], e))?;
    if doc.api_version != API_VERSION {
        let pos = node.locate(&[Seg::Key("apiVersion".into())], false);
        return Err(Diagnostic::at(
            file,
            pos,
            format!(
                "unsupported apiVersion `{}`: this resurgo reads `{API_VERSION}`",
                doc.api_version
            ),
        ));
    }
    Ok(doc)
}

/// Turns a serde error at `path` (relative to `base` within `root`) into a diagnostic at the
/// offending key or value.
fn type_error(
    file: &SourceFile,
    root: &Node,
    base: &[Seg],
    err: serde_path_to_error::Error<serde_json::Error>,
) -> Diagnostic {
    let mut path: Vec<Seg> = base.to_vec();
    for seg in err.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
            _ => {}
        }
    }
    let raw = err.inner().to_string();
    let message = strip_serde_position(&raw);
    let (message, key) = if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        if path.last() != Some(&Seg::Key(field.to_string())) {
            path.push(Seg::Key(field.to_string()));
        }
        (message.clone(), true)
    } else if message.starts_with("missing field") {
        (message.clone(), true)
    } else if message.contains("untagged enum EnvValue") {
        (
            "invalid environment value: expected a string, or `{secret: {env: NAME}}` or `{secret: {file: PATH}}`"
                .to_string(),
            false,
        )
    } else if message.contains("untagged enum Input") {
        (
            "invalid input: expected a string, number or boolean, or `{default: VALUE, description: TEXT}`".to_string(),
            false,
        )
    } else {
        (message.clone(), false)
    };
    let where_ = path_text(&path);
    let message = if where_.is_empty() {
        message
    } else {
        format!("{where_}: {message}")
    };
    Diagnostic::at(file, root.locate(&path, key), message)
}

/// serde_json appends " at line X column Y" for text input; ours comes from a tree, so any
/// such suffix is meaningless and is dropped.
fn strip_serde_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn merge(
    documents: Vec<Document>,
    inputs: IndexMap<String, InputValue>,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> System {
    let mut system = System {
        inputs,
        ..System::default()
    };
    let mut name_file: Option<usize> = None;
    let mut objectives_file: Option<usize> = None;
    let mut failover_file: Option<usize> = None;
    let mut api_file: Option<usize> = None;
    let mut prices_file: Option<usize> = None;
    for (i, doc) in documents.into_iter().enumerate() {
        // Present even when empty (`system:` reads as null): an empty name is refused by
        // validation, not taken for an absent one.
        if sources.nodes[i].get(&[Seg::Key("system".into())]).is_some() {
            if let Some(first) = name_file {
                diags.push(Diagnostic::at(
                    &sources.files[i],
                    sources.nodes[i].locate(&[Seg::Key("system".into())], true),
                    format!("the system is named twice (also in {})", sources.files[first].name),
                ));
            } else {
                name_file = Some(i);
                sources.origins.insert(("system".into(), String::new()), i);
                system.name = doc.system.unwrap_or_default();
            }
        }
        if let Some(obj) = doc.objectives {
            if let Some(first) = objectives_file {
                diags.push(Diagnostic::at(
                    &sources.files[i],
                    sources.nodes[i].locate(&[Seg::Key("objectives".into())], true),
                    format!("objectives are declared twice (also in {})", sources.files[first].name),
                ));
            } else {
                objectives_file = Some(i);
                system.objectives = obj;
            }
        }
        if let Some(failover) = doc.failover {
            if let Some(first) = failover_file {
                diags.push(Diagnostic::at(
                    &sources.files[i],
                    sources.nodes[i].locate(&[Seg::Key("failover".into())], true),
                    format!("failover is declared twice (also in {})", sources.files[first].name),
                ));
            } else {
                failover_file = Some(i);
                sources.origins.insert(("failover".into(), String::new()), i);
                system.failover = failover;
            }
        }
        if let Some(api) = doc.api {
            if let Some(first) = api_file {
                diags.push(Diagnostic::at(
                    &sources.files[i],
                    sources.nodes[i].locate(&[Seg::Key("api".into())], true),
                    format!("api is declared twice (also in {})", sources.files[first].name),
                ));
            } else {
                api_file = Some(i);
                sources.origins.insert(("api".into(), String::new()), i);
                system.api = Some(api);
            }
        }
        if let Some(prices) = doc.prices {
            if let Some(first) = prices_file {
                diags.push(Diagnostic::at(
                    &sources.files[i],
                    sources.nodes[i].locate(&[Seg::Key("prices".into())], true),
                    format!("prices are declared twice (also in {})", sources.files[first].name),
                ));
            } else {
                prices_file = Some(i);
                sources.origins.insert(("prices".into(), String::new()), i);
                system.prices = Some(prices);
            }
        }
        merge_section("sites", "site", doc.sites, &mut system.sites, i, sources, diags);
        merge_section(
            "services",
            "service",
            doc.services,
            &mut system.services,
            i,
            sources,
            diags,
        );
        merge_section(
            "datasets",
            "dataset",
            doc.datasets,
            &mut system.datasets,
            i,
            sources,
            diags,
        );
        merge_section("routes", "route", doc.routes, &mut system.routes, i, sources, diags);
        merge_section("drills", "drill", doc.drills, &mut system.drills, i, sources, diags);
        merge_section(
            "workspaces",
            "workspace",
            doc.workspaces,
            &mut system.workspaces,
            i,
            sources,
            diags,
        );
        merge_section(
            "notifications",
            "receiver",
            doc.notifications,
            &mut system.notifications,
            i,
            sources,
            diags,
        );
    }
    if name_file.is_none() {
        system.name = "system".into();
    }
    system
}

fn merge_section<T>(
    section: &str,
    what: &str,
    items: IndexMap<String, T>,
    into: &mut IndexMap<String, T>,
    file: usize,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) {
    for (name, item) in items {
        let key = (section.to_string(), name.clone());
        if let Some(&first) = sources.origins.get(&key) {
            let path = [Seg::Key(section.into()), Seg::Key(name.clone())];
            let first_pos = sources.nodes[first].locate(&path, true);
            diags.push(Diagnostic::at(
                &sources.files[file],
                sources.nodes[file].locate(&path, true),
                format!(
                    "duplicate {what} name `{name}` (first defined at {}:{}:{})",
                    sources.files[first].name, first_pos.line, first_pos.col
                ),
            ));
            continue;
        }
        sources.origins.insert(key, file);
        into.insert(name, item);
    }
}
