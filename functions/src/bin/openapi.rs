//! Prints the API document (OpenAPI 3.1) as `GET /openapi.json` serves it:
//! `infra/openapi.sh` writes it to docs/openapi.json, `infra/openapi.sh --check` compares.

fn main() {
    print!("{}", studios_shared::openapi::document_text());
}
