#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against the local AWS emulator
# (moto behind a request lock, started here on a free port and stopped afterwards).
# Extra arguments go to `cargo test` (e.g. infra/test.sh -- studios::).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"

ensure_venv
ensure_tools
# The SAM templates (the stack, and the alerting example): CloudFormation schema and
# best-practice rules, and SAM's own validation. Both offline.
"$VENV/bin/cfn-lint" template.yaml infra/alerts.yaml
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$VENV/bin/sam" validate --lint --template template.yaml
# The walkthrough test starts infra/run-local.sh, which builds this binary: build it now,
# so that test does not compile while the others run.
cargo build --locked --quiet -p studios-functions --bin studios-local
trap stop_emulator EXIT
start_emulator
cargo test --workspace --locked "$@"
