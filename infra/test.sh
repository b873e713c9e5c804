#!/usr/bin/env bash
# Runs every test: template checks (cfn-lint, sam validate, IAM lint), unit tests,
# integration tests against the local AWS emulator (moto behind a request lock, started
# here on a free port and stopped afterwards) with every AWS call checked against its
# function's role, and on a full run the images built here, sessions as containers, the
# browser test, the API fuzzing and a short soak of the local run.
# Extra arguments go to `cargo test` (e.g. infra/test.sh -- studios::).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"

ensure_venv
ensure_tools
# code-server and Xpra for the local run's vscode and xpra studios (the browser test
# opens them; every test that starts infra/run-local.sh would otherwise install them
# inside its own start-up time on first use).
ensure_ides
# The SAM templates (the stack, and the alerting example): CloudFormation schema and
# best-practice rules, and SAM's own validation. Both offline.
"$VENV/bin/cfn-lint" template.yaml infra/alerts.yaml infra/registry.yaml infra/session-role.yaml
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$VENV/bin/sam" validate --lint --template template.yaml
# The template images' Dockerfiles and the local stand-ins of their upstream bases
# (built below on a full run, and for AWS by images/build-push.sh).
"$VENV/bin/hadolint" images/*/Dockerfile images/local-bases/*.Dockerfile
# Every IAM policy of the expanded stack through an IAM linter (AWS's reference data).
"$VENV/bin/python" infra/iam-lint.py template.yaml infra/session-role.yaml | grep -v "^note "
# The walkthrough test starts infra/run-local.sh, which builds this binary: build it now,
# so that test does not compile while the others run.
cargo build --locked --quiet -p studios-local --bin studios-local -p studios-agent --bin studio-agent -p studios-relay --bin studio-relay -p studios-cli --bin studios
# The API document the code derives is the committed docs/openapi.json, and valid.
infra/openapi.sh --check
iam_calls=$(mktemp)
# A Docker engine this script started (for the images below) is stopped at the end too.
trap 'stop_emulator; rm -f "$iam_calls"; infra/images.sh stop' EXIT
start_emulator
# The integration tests record every AWS call each function makes (tests/support/iam.rs).
STUDIOS_IAM_CALLS="$iam_calls" cargo test --workspace --locked "$@"
# Each call against its function's role in the expanded template: a missing permission
# fails, naming function, action and resource (docs/iam.md, "Checked against the calls
# the code makes"). A full run must exercise every function not listed as unexercised.
iam_scope=--if-recorded
if [ $# -eq 0 ]; then iam_scope=--expect-all; fi
"$VENV/bin/python" infra/iam-calls.py "$iam_calls" "$iam_scope" | grep -v "^note "
# Only for a full run, not a filtered one: the browser test, then the local run under
# sustained use (20 rounds of 16 contested starts, every winner stopped; fails if the
# emulator grows by more than 10 MB per 1,000 transactions or a lone request slows
# down: docs/performance.md, "Soak").
if [ $# -eq 0 ]; then
  # The template images and the relay's, built here on a Debian base made with
  # debootstrap (Docker's engine installed and started if absent; cached after the
  # first build: docs/images.md), each smoke-tested; then sessions as real containers,
  # as AWS Batch runs them on EC2 (tests/containers/sessions.py).
  STUDIO_AGENT_BIN=target/debug/studio-agent STUDIO_RELAY_BIN=target/debug/studio-relay \
    infra/images.sh build
  "$VENV/bin/python" tests/containers/sessions.py
  # Connect in a real browser: JupyterLab through a connect link, a kernel over its
  # WebSocket, and the refusals (tests/browser/connect.py).
  "$VENV/bin/python" tests/browser/connect.py
  # One origin per studio: a page of studio A reads nothing of studio B, with the
  # user's cookies for both (tests/browser/origins.py, docs/security.md).
  "$VENV/bin/python" tests/browser/origins.py
  # Schemathesis against the local run, as a maintainer and as an owner: no 5xx, every
  # answer as docs/openapi.json says (tests/fuzz/api.py).
  fuzz_log=$(mktemp)
  if ! "$VENV/bin/python" tests/fuzz/api.py >"$fuzz_log" 2>&1; then
    cat "$fuzz_log"; exit 1
  fi
  grep -E "^(GET |== )|^  [0-9]+ generated" "$fuzz_log"
  infra/soak.sh --rounds 20 --warmup 5 --max-mb-per-1000 10 | tail -n 2
fi
