#!/usr/bin/env bash
# Soak benchmark of the local run (infra/soak.py): start/stop rounds through the API with
# the emulator's memory sampled. Arguments go to soak.py, e.g. --rounds 300.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$STUDIOS_ROOT"
ensure_venv
exec "$VENV/bin/python" infra/soak.py "$@"
