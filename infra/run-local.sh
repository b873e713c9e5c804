#!/usr/bin/env bash
# Runs Studios locally: the AWS emulator (moto, behind a request lock) with the table,
# event bus, an AWS Batch queue and the buckets; the demo workspace `demo` (alice owner,
# bob maintain, carol connect, dave view, one compute environment, two data links); and a
# stand-in for API Gateway + its JWT authorizer in front of the production handlers.
#
#   infra/run-local.sh                   serve on http://127.0.0.1:${STUDIOS_PORT:-3000}; Ctrl-C stops
#   infra/run-local.sh token SUB [NAME]  print a bearer token for user SUB (12 h)
#
# Settings (environment): STUDIOS_PORT (3000; 0 = any free port), STUDIOS_LOCAL_JWT_SECRET,
# STUDIOS_LOCAL_JOB_DELAY_MS (1000: time per AWS Batch state), STUDIOS_LOCAL_SIMULATE_JOBS
# (true; false = deliver Batch events by hand), STUDIOS_ADMIN (platform admin, alice),
# RUST_LOG (warn; info logs every request to stderr), TEMPLATE_IMAGE_*,
# STUDIOS_CONNECT_PORT (where browsers connect: the connect relay, its own process, behind
# an idle cutoff; 0 = any free port, the default), STUDIOS_LOCAL_IDLE_CUTOFF_SECONDS (350,
# like the load balancer's), STUDIO_RELAY_PING_SECONDS (60: the agents' keepalive),
# CONNECT_URL_PATTERN (default: http://{studioId}.localhost:<that port>/), SUBMIT_GRACE_SECONDS,
# AGENT_REPORT_SECONDS (1), STOP_GRACE_SECONDS (120),
# STUDIOS_LOCAL_SESSIONS_DIR (sessions' workspaces and agent logs; a temp dir),
# STUDIOS_AGENT_BIN (the studio agent; built beside studios-local), STUDIOS_LOCAL_SESSIONS
# (process; container = each session in its template's image under Docker, built by
# infra/images.sh), STUDIOS_LOCAL_IMAGES (the templates built for it: all four). Data lives in the
# emulator's memory: gone when it stops.
set -euo pipefail
started_ms=$(date +%s%3N)
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"

export STUDIOS_LOCAL_JWT_SECRET="${STUDIOS_LOCAL_JWT_SECRET:-studios-local-development-secret}"
bin="$STUDIOS_ROOT/target/debug/studios-local"

if [ "${1:-}" = "token" ]; then
  shift
  [ -x "$bin" ] || cargo build --quiet --locked -p studios-local --bin studios-local
  exec "$bin" token "$@"
fi

ensure_venv
# Real IDEs for vscode and xpra studios (installed on first use; rstudio studios run a
# stand-in: RStudio Server is not installable here).
ensure_ides
# The API stand-in, the studio agent that every simulated session runs, and the
# `studios` command (README, docs/cli.md).
cargo build --quiet --locked -p studios-local --bin studios-local -p studios-agent --bin studio-agent -p studios-relay --bin studio-relay -p studios-cli --bin studios
trap stop_emulator EXIT
start_emulator
export STUDIOS_LOCAL_QUEUE
STUDIOS_LOCAL_QUEUE=$("$VENV/bin/python" "$STUDIOS_ROOT/infra/local-setup.py")

port="${STUDIOS_PORT:-3000}"
export TABLE_NAME="${TABLE_NAME:-studios-local}"
export PLATFORM_ADMINS="${STUDIOS_ADMIN:-alice}"
# Sessions as containers (STUDIOS_LOCAL_SESSIONS=container, as CI's container tests run
# it): the template images built here (infra/images.sh; cached after the first build),
# with this checkout's agent mounted in. As processes (the default) no image runs: the
# templates name their Dockerfiles.
if [ "${STUDIOS_LOCAL_SESSIONS:-process}" = container ]; then
  STUDIO_AGENT_BIN="$STUDIOS_ROOT/target/debug/studio-agent" \
    STUDIO_RELAY_BIN="$STUDIOS_ROOT/target/debug/studio-relay" \
    "$STUDIOS_ROOT/infra/images.sh" build ${STUDIOS_LOCAL_IMAGES:-jupyter vscode xpra rstudio} >&2
  for kind in jupyter rstudio vscode xpra; do
    var="TEMPLATE_IMAGE_${kind^^}"
    [ -n "${!var:-}" ] || export "$var=studios-$kind:local"
  done
fi
export TEMPLATE_IMAGE_JUPYTER="${TEMPLATE_IMAGE_JUPYTER:-images/jupyter/Dockerfile}"
export TEMPLATE_IMAGE_RSTUDIO="${TEMPLATE_IMAGE_RSTUDIO:-images/rstudio/Dockerfile}"
export TEMPLATE_IMAGE_VSCODE="${TEMPLATE_IMAGE_VSCODE:-images/vscode/Dockerfile}"
export TEMPLATE_IMAGE_XPRA="${TEMPLATE_IMAGE_XPRA:-images/xpra/Dockerfile}"
export EVENT_BUS_NAME="${EVENT_BUS_NAME:-studios-local}"
export SUBMIT_GRACE_SECONDS="${SUBMIT_GRACE_SECONDS:-120}"
export RUST_LOG="${RUST_LOG:-warn}"
# Agents report every second here (15 s on AWS), so stops are quick; their `jupyter`
# studios run JupyterLab from the venv, `vscode` and `xpra` ones code-server and Xpra.
export AGENT_REPORT_SECONDS="${AGENT_REPORT_SECONDS:-1}"
export PATH="$VENV/bin:$PATH"
# Sessions install conda packages from a small local channel (conda-forge is not
# reachable here: qc-tools, plot-helper) and "mount" S3 paths by copying them from the
# emulator (no FUSE here); on AWS the images' micromamba and mount-s3 do this.
channel_dir="$(mktemp -d)/conda-channel"
"$VENV/bin/python" "$STUDIOS_ROOT/infra/conda-channel.py" "$channel_dir" >/dev/null
export STUDIO_CONDA_CHANNELS="${STUDIO_CONDA_CHANNELS:-$channel_dir}"
export STUDIO_CONDA_COMMAND="${STUDIO_CONDA_COMMAND:-$STUDIOS_ROOT/infra/conda-create.py}"
export STUDIO_MOUNT_COMMAND="${STUDIO_MOUNT_COMMAND:-$STUDIOS_ROOT/infra/mount-stand-in.py}"
# What session containers see of this machine, read-only at the same paths: the conda
# channel and the stand-ins for micromamba and mount-s3 (infra/).
export STUDIOS_LOCAL_CONTAINER_VOLUMES="${STUDIOS_LOCAL_CONTAINER_VOLUMES:-$STUDIOS_ROOT/infra:$(dirname "$channel_dir")}"
export STUDIOS_LOCAL_STARTED_MS="$started_ms"

"$bin" serve "$port"
