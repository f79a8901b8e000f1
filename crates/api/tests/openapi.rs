//! The committed OpenAPI document is the one the route table and the types generate. Outside
//! CI a stale copy is rewritten (and the test still fails, so the change gets committed).

use std::path::Path;

#[test]
fn committed_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/site-api.openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = resurgo_api::routes::openapi_text();
    if committed != generated {
        if std::env::var_os("CI").is_none() {
            std::fs::write(&path, &generated).unwrap();
        }
        panic!("schema/site-api.openapi.json was stale (regenerated outside CI; commit it, or run `resurgo schema --output openapi > schema/site-api.openapi.json`)");
    }
}
