#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against the local AWS emulator
# (moto behind a request lock, started here on a free port and stopped afterwards).
# Extra arguments go to `cargo test` (e.g. infra/test.sh -- studios::).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"

ensure_venv
# The SAM template: CloudFormation schema and best-practice rules (what `sam validate
# --lint` runs), offline.
"$VENV/bin/cfn-lint" template.yaml
trap stop_emulator EXIT
start_emulator
cargo test --workspace --locked "$@"
