#!/usr/bin/env bash
# Cold start and invoke latency of the bootstrap (see bench-cold-start.py), against the
# emulator. Usage: infra/bench-cold-start.sh [release|debug] [INVOKES]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"
profile="${1:-release}"
if [ "$profile" = release ]; then
  cargo build --release --locked -p studios-functions --bin bootstrap
else
  cargo build --locked -p studios-functions --bin bootstrap
fi
ensure_venv
trap stop_emulator EXIT
start_emulator
"$VENV/bin/python" infra/bench-cold-start.py "target/$profile/bootstrap" "${2:-50}"
