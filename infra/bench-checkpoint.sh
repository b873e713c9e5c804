#!/usr/bin/env bash
# The checkpoint benchmark (docs/performance.md, "Checkpoints") against a fresh emulator:
#   infra/bench-checkpoint.sh [--size-mib 1024] [--changed-mib 10]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"
ensure_venv
cargo build --quiet --locked -p studios-agent --example checkpoint-bench
trap stop_emulator EXIT
start_emulator >&2
"$STUDIOS_ROOT/target/debug/examples/checkpoint-bench" "$@"
