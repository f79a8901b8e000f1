//! The resurgo spec: the declaration of a system — inputs, sites, services, datasets, routes,
//! objectives — read from YAML text with precise, positioned errors, validated, and described
//! by a JSON Schema generated from the same types.
//!
//! This crate does no I/O: callers hand it the files' names and texts (see `resurgo-source`
//! in the CLI for reading a folder or a Git commit).

mod diag;
mod load;
pub mod model;
pub mod timing;
pub mod units;
mod validate;
mod yaml;

pub use diag::{Diagnostic, SourceFile, SpecError};
pub use load::{load, read_prices, Loaded, Sources};
pub use model::*;
pub use units::{ByteSize, Cpu, Duration};
pub use validate::{check_workspace, warnings, Warning};

/// The JSON Schema of one spec file, pretty-printed, generated from [`Document`].
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Document);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// A stable SHA-256 of any serializable value, as hex. Used for config hashes.
pub fn hash_json<T: serde::Serialize>(value: &T) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(value).expect("spec values serialize");
    load::hex(&sha2::Sha256::digest(bytes))
}
