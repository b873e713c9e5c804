#!/usr/bin/env bash
# Writes the API document derived from the code (shared/src/openapi.rs) to
# docs/openapi.json and validates it (openapi-spec-validator); with --check, fails if
# the committed file differs from what the code says (CI runs this).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"
ensure_venv
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
cargo run --locked --quiet -p studios-functions --bin studios-openapi >"$generated"
"$VENV/bin/openapi-spec-validator" "$generated" >/dev/null
if [ "${1:-}" = "--check" ]; then
  if ! diff -u docs/openapi.json "$generated"; then
    echo "docs/openapi.json is stale: run infra/openapi.sh and commit it" >&2
    exit 1
  fi
  echo "docs/openapi.json: valid OpenAPI 3.1, matches the code"
else
  cp "$generated" docs/openapi.json
  echo "wrote docs/openapi.json (valid OpenAPI 3.1)"
fi
