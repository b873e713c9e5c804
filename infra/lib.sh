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

# The IDEs of the local run's `vscode` and `xpra` studios (agent/src/ide.rs runs them as
# on AWS; without them those studios run the stand-in of local/src/simulate.rs):
# Xpra 3.1 from Debian's packages (with Xvfb and an xterm) and code-server from npm,
# installed on first use when missing — as root, with apt-get and npm — and code-server
# kept under the repository ($IDES, git-ignored). Its PATH entry is exported.
# code-server 4.100.3: the newest release for Node.js 20 (the engines field of each
# release on npm; later ones need 22 or 24), and one whose bundled VS Code pins no git
# dependency (4.96.4 fetches one from GitHub, which this machine cannot reach).
CODE_SERVER_VERSION=4.100.3
IDES="${STUDIOS_IDES:-$STUDIOS_ROOT/.ides}"

ensure_ides() {
  local root=no
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && root=yes
  local packages=()
  command -v xpra >/dev/null 2>&1 || packages+=(xpra xvfb xterm xauth python3-pil)
  local cs="$IDES/code-server-$CODE_SERVER_VERSION"
  local node_major
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)
  local build_code_server=no
  if [ ! -x "$cs/node_modules/.bin/code-server" ]; then
    if [ "$node_major" = 20 ] && command -v npm >/dev/null 2>&1; then
      build_code_server=yes
      # code-server's native modules (docs/npm.md of its repository: build-essential,
      # pkg-config, python3) and kerberos' headers; ripgrep stands in for the binary its
      # VS Code downloads from GitHub.
      local tool
      for tool in g++ make pkg-config rg; do
        command -v "$tool" >/dev/null 2>&1 || packages+=("$tool")
      done
      [ -f /usr/include/gssapi/gssapi.h ] || packages+=(libkrb5-dev)
    else
      echo "code-server $CODE_SERVER_VERSION needs Node.js 20 and npm (found: $node_major): vscode studios run the stand-in" >&2
    fi
  fi
  if [ ${#packages[@]} -gt 0 ]; then
    # Tool names to Debian's package names.
    packages=("${packages[@]/#g++/build-essential}")
    packages=("${packages[@]/#rg/ripgrep}")
    if [ "$root" = yes ]; then
      echo "installing ${packages[*]} (Debian packages, one time)" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    else
      echo "not installed (needs root and apt-get): ${packages[*]}; xpra and vscode studios may run the stand-in" >&2
      build_code_server=no
    fi
  fi
  if [ "$build_code_server" = yes ]; then
    echo "installing code-server $CODE_SERVER_VERSION from npm into $cs (one time, ~2 min)" >&2
    local tmp="$cs.partial"
    rm -rf "$tmp" && mkdir -p "$tmp/tmp"
    # @vscode/ripgrep takes a cached download from TMPDIR before it asks GitHub.
    local rg_cache="$tmp/tmp/vscode-ripgrep-cache-1.15.11"
    mkdir -p "$rg_cache"
    cp "$(command -v rg)" "$tmp/tmp/rg"
    tar -C "$tmp/tmp" -czf "$rg_cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" rg
    # unsafe_perm: code-server's postinstall refuses root without it; yes: node-pty's
    # postinstall runs `npx node-gyp`.
    if TMPDIR="$tmp/tmp" npm_config_unsafe_perm=true npm_config_yes=true \
      npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error \
      "code-server@$CODE_SERVER_VERSION" >"$tmp/npm.log" 2>&1; then
      rm -rf "$tmp/tmp" && mv "$tmp" "$cs"
    else
      echo "code-server did not install (vscode studios run the stand-in); the end of npm's log:" >&2
      tail -n 20 "$tmp/npm.log" >&2
    fi
  fi
  [ -x "$cs/node_modules/.bin/code-server" ] && export PATH="$cs/node_modules/.bin:$PATH"
  return 0
}
