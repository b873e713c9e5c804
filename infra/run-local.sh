#!/usr/bin/env bash
# Runs the Studios API locally: the AWS emulator (moto, behind a request lock) and a
# stand-in for API Gateway + the JWT authorizer, in front of the production handlers.
#
#   infra/run-local.sh                 serve on http://127.0.0.1:${STUDIOS_PORT:-8787}; Ctrl-C stops
#   infra/run-local.sh token SUB [NAME]  print a bearer token for user SUB (12 h)
#
# The platform admin (who may create workspaces) is ${STUDIOS_ADMIN:-admin}. AWS Batch is
# simulated: started jobs reach RUNNING after ~3 s; a stopped session saves a checkpoint.
# Status events are logged as they are published. Data lives in the emulator's memory and
# is gone when it stops.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"

export STUDIOS_LOCAL_JWT_SECRET="${STUDIOS_LOCAL_JWT_SECRET:-studios-local-development-secret}"
bin="$STUDIOS_ROOT/target/debug/studios-local"

if [ "${1:-}" = "token" ]; then
  shift
  [ -x "$bin" ] || cargo build --quiet --locked -p studios-functions --bin studios-local
  exec "$bin" token "$@"
fi

ensure_venv
cargo build --quiet --locked -p studios-functions --bin studios-local
trap stop_emulator EXIT
start_emulator
queue=$("$VENV/bin/python" "$STUDIOS_ROOT/infra/local-setup.py")

export TABLE_NAME="${TABLE_NAME:-studios-local}"
export PLATFORM_ADMINS="${STUDIOS_ADMIN:-admin}"
export TEMPLATE_IMAGE_JUPYTER="${TEMPLATE_IMAGE_JUPYTER:-public.ecr.aws/studios/jupyter:latest}"
export TEMPLATE_IMAGE_RSTUDIO="${TEMPLATE_IMAGE_RSTUDIO:-public.ecr.aws/studios/rstudio:latest}"
export TEMPLATE_IMAGE_VSCODE="${TEMPLATE_IMAGE_VSCODE:-public.ecr.aws/studios/vscode:latest}"
export TEMPLATE_IMAGE_XPRA="${TEMPLATE_IMAGE_XPRA:-public.ecr.aws/studios/xpra:latest}"
export EVENT_BUS_NAME="${EVENT_BUS_NAME:-studios-local}"
export CONNECT_URL_PATTERN="${CONNECT_URL_PATTERN:-http://127.0.0.1:${STUDIOS_PORT:-8787}/connect/{studioId}/}"
export SUBMIT_GRACE_SECONDS="${SUBMIT_GRACE_SECONDS:-120}"
export RUST_LOG="${RUST_LOG:-info}"

echo "platform admin: $PLATFORM_ADMINS  (token: infra/run-local.sh token $PLATFORM_ADMINS)" >&2
echo "AWS Batch job queue for compute environments: $queue" >&2
echo "work bucket for workDir: s3://studios-local-work/" >&2
"$bin" serve "${STUDIOS_PORT:-8787}"
