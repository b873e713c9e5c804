# Shared by infra/test.sh and infra/run-local.sh: the Python venv with the emulator, and
# the emulator's lifecycle. Source it; it defines functions only.

STUDIOS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STUDIOS_VENV:-$STUDIOS_ROOT/.venv}"

ensure_venv() {
  local stamp="$VENV/.requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$STUDIOS_ROOT/infra/requirements.txt"; then
    return
  fi
  echo "setting up the emulator venv in $VENV (one time)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$STUDIOS_ROOT/infra/requirements.txt"
  cp "$STUDIOS_ROOT/infra/requirements.txt" "$stamp"
}

# Starts the emulator on a free 127.0.0.1 port; exports AWS_ENDPOINT_URL and dummy
# credentials; sets EMULATOR_PID. Stop it with stop_emulator.
start_emulator() {
  local dir
  dir="$(mktemp -d)"
  EMULATOR_LOG="$dir/emulator.log"
  "$VENV/bin/python" "$STUDIOS_ROOT/infra/emulator.py" "$dir/port" >"$EMULATOR_LOG" 2>&1 &
  EMULATOR_PID=$!
  for _ in $(seq 1 200); do
    [ -s "$dir/port" ] && break
    if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
      echo "the emulator failed to start:" >&2
      cat "$EMULATOR_LOG" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ ! -s "$dir/port" ]; then
    echo "the emulator did not start within 20 s" >&2
    return 1
  fi
  export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$dir/port")"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
  export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"
  # Never pick up a developer's real profile or IMDS while testing.
  export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  echo "emulator listening on $AWS_ENDPOINT_URL (pid $EMULATOR_PID)" >&2
}

stop_emulator() {
  if [ -n "${EMULATOR_PID:-}" ]; then
    kill "$EMULATOR_PID" 2>/dev/null || true
    wait "$EMULATOR_PID" 2>/dev/null || true
    EMULATOR_PID=
  fi
}

# The README walkthrough (and its test) uses curl and jq. Installed from Debian's
# packages when missing and we may (root with apt-get); otherwise says what to install.
ensure_tools() {
  local missing=() tool
  # curl and jq for the walkthrough; chromium (Debian's, headless) for the browser test.
  for tool in curl jq chromium; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the walkthrough and browser tests need ${missing[*]}: install them (e.g. apt-get install ${missing[*]})" >&2
    return 1
  fi
}
