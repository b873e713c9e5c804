#!/usr/bin/env bash
# Builds the template images and the relay's image on this machine and smoke-tests each
# (docs/images.md). No registry is needed: the upstream bases (quay.io/jupyter/…,
# rocker/…, codercom/…, debian:…) are replaced by local stand-ins built on a Debian 12
# base made here with debootstrap.
#
#   infra/images.sh [build] [KIND…]   engine, base, binaries, stand-ins, images, smoke tests
#                                     (KIND: jupyter rstudio vscode xpra relay; default all)
#   infra/images.sh engine            only make sure a Docker engine answers
#   infra/images.sh base              … and that the Debian base image exists
#   infra/images.sh stop              stop the dockerd this script started, if it did
#
# The engine: Debian's docker.io is installed if dockerd is missing, and dockerd is
# started only if no engine answers; its pid goes to target/images/dockerd.pid so that
# `stop` (or a caller's trap: `trap 'infra/images.sh stop' EXIT`) ends only that one.
#
# Settings: STUDIO_AGENT_BIN, STUDIO_RELAY_BIN — use these binaries (e.g. the debug ones
# infra/test.sh builds: target/debug/studio-agent) instead of building the release ones
# with images/build-binaries.sh; STUDIOS_BASE_REFRESH=1 — make the Debian base again;
# STUDIOS_IMAGES_SMOKE=0 — build without the smoke tests.
#
# Images: studios-base:bookworm (the debootstrapped base), studios-local-base/<kind>
# (the stand-ins), studios-<kind>:local (the template images, as the job definitions
# would run them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/target/images"
base_image=studios-base:bookworm
export DOCKER_BUILDKIT=0
log() { echo "images: $*" >&2; }
die() { echo "images: $*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

ensure_engine() {
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      die "no Docker engine: install docker.io (Debian) or Docker"
    fi
    log "installing Debian's docker.io (one time)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
  fi
  engine_answers && return
  mkdir -p "$state"
  log "starting dockerd (log: $state/dockerd.log)"
  # Its own session, so a caller's ^C does not reach it; `stop` ends it.
  setsid dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 120); do
    engine_answers && return
    kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$state/dockerd.log" >&2
  die "dockerd did not come up"
}

stop_engine() {
  local pid
  [ -f "$state/dockerd.pid" ] || return 0
  pid="$(cat "$state/dockerd.pid")"
  rm -f "$state/dockerd.pid"
  # Only that process, and only while it is still a dockerd (not a reused pid).
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    log "stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

# The Debian mirror apt uses here (the first `deb` source of bookworm), and its security
# archive if configured: the base's apt uses the same ones.
apt_uri() {
  local suite="$1" deb822 oneline
  deb822="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  oneline="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  {
    # deb822 (.sources): a URIs: line and a Suites: line per stanza.
    awk -v s="$suite" '
      /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) print uri }
      /^$/ { uri = "" }' <<<"$deb822"
    # One-line format: deb [options] URI suite components.
    awk -v s="$suite" '$1 == "deb" { u = 2; if ($2 ~ /^\[/) { while ($u !~ /\]$/) u++; u++ } if ($(u+1) == s) print $u }' <<<"$oneline"
  } | sed -n 1p
}

ensure_base() {
  if [ "${STUDIOS_BASE_REFRESH:-}" != 1 ] && docker image inspect "$base_image" >/dev/null 2>&1; then
    return
  fi
  command -v debootstrap >/dev/null || {
    log "installing debootstrap (one time)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
  local mirror security dir started=$SECONDS
  mirror="$(apt_uri bookworm)"
  security="$(apt_uri bookworm-security)"
  [ -n "$mirror" ] || die "no Debian bookworm source in /etc/apt/sources.list*"
  dir="$(mktemp -d)"
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$state/debootstrap.log" 2>&1 ||
    { tail -n 20 "$state/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -f "$dir/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    [ -z "$security" ] ||
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
  } >"$dir/etc/apt/sources.list.d/debian.sources"
  # The host's local certificate authorities (Debian's place for them), so that pip and
  # npm in the stand-ins trust what this machine trusts: installing ca-certificates in
  # an image adds them to the system bundle, and pip and Node.js (which carry their own
  # bundles) are pointed at that one.
  local changes=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$dir/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    changes=(--change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
      --change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
  fi
  rm -rf "$dir/var/cache/apt/archives/"*.deb
  tar -C "$dir" -c . | docker import "${changes[@]}" - "$base_image" >/dev/null
  rm -rf "$dir"
  log "$base_image made in $((SECONDS - started)) s"
}

# place FILE NAME: a given binary where the Dockerfiles copy it from.
place() {
  local dest="$root/images/bin/amd64/$2"
  [ "$1" -ef "$dest" ] || install -m 755 "$1" "$dest"
}

# ensure_binaries KIND…: the binaries those images copy in (the relay's only for relay).
ensure_binaries() {
  local want_relay=""
  [[ " $* " == *" relay "* ]] && want_relay=yes
  mkdir -p "$root/images/bin/amd64"
  if [ -n "${STUDIO_AGENT_BIN:-}" ]; then
    [ -x "$STUDIO_AGENT_BIN" ] || die "STUDIO_AGENT_BIN ($STUDIO_AGENT_BIN) is not an executable"
    place "$STUDIO_AGENT_BIN" studio-agent
    if [ -n "$want_relay" ]; then
      [ -x "${STUDIO_RELAY_BIN:-}" ] || die "building relay with STUDIO_AGENT_BIN needs STUDIO_RELAY_BIN too"
      place "$STUDIO_RELAY_BIN" studio-relay
    fi
  else
    "$root/images/build-binaries.sh" amd64
  fi
}

# build TAG DOCKERFILE [ARGS…]: one image, context the repository root, timed.
build() {
  local tag="$1" file="$2" started=$SECONDS buildlog
  shift 2
  buildlog="$state/build-$(tr '/:' '--' <<<"$tag").log"
  log "building $tag"
  if ! docker build --force-rm -t "$tag" -f "$file" "$@" "$root" >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    die "building $tag failed"
  fi
  log "$tag built in $((SECONDS - started)) s"
}

# What stands in for each template's upstream base.
stand_in() {
  case "$1" in
    jupyter | rstudio | vscode)
      build "studios-local-base/$1" "$root/images/local-bases/$1.Dockerfile" --build-arg "BASE=$base_image"
      echo "studios-local-base/$1" ;;
    xpra | relay) echo "$base_image" ;;
  esac
}

# Build-time settings for building here: mount-s3 and micromamba come from download sites
# this machine does not reach (images/install-runtime.sh leaves them out).
local_args=(--build-arg MOUNTPOINT_VERSION= --build-arg MICROMAMBA_VERSION=)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# smoke KIND IMAGE: the binary runs in the image, the IDE is on PATH, and (where the IDE
# installs here) the agent starts it and answers ready, as a job would start it.
smoke() {
  local kind="$1" image="$2" out port started name
  case "$kind" in
    relay)
      local key
      key="$(openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl ec -pubout -outform DER 2>/dev/null | tail -c 65 | base64 -w0)"
      port="$(free_port)"
      name="studios-smoke-relay-$$"
      docker run -d --rm --name "$name" --network host --init -e "RELAY_PUBLIC_KEY=$key" \
        -e "RELAY_PUBLIC_ADDR=127.0.0.1:$port" -e "RELAY_TUNNEL_ADDR=127.0.0.1:0" \
        -e "RELAY_CONNECT_DOMAIN=localhost" "$image" >/dev/null
      for _ in $(seq 1 50); do
        docker logs "$name" 2>/dev/null | grep -q "studio-relay listening" && break
        sleep 0.2
      done
      out="$(docker logs "$name" 2>&1)"
      docker stop -t 5 "$name" >/dev/null 2>&1 || true
      grep -q "studio-relay listening" <<<"$out" || die "relay: did not start: $out"
      log "relay: studio-relay listens in the image"
      return ;;
  esac
  # No job contract: the agent says so and exits 2 — proof that it runs on this base.
  out="$(docker run --rm --network host --init "$image" 2>&1)" && die "$kind: the agent ran without settings"
  grep -q "STUDIO_ID must be set" <<<"$out" || die "$kind: the agent did not run in the image: $out"
  local check
  # shellcheck disable=SC2016 # the checks are expanded in the container
  case "$kind" in
    jupyter) check='jupyter lab --version' ;;
    vscode) check='code-server --version | head -n 1' ;;
    xpra) check='xpra --version && test -f /usr/share/xpra/www/index.html && command -v xterm' ;;
    # RStudio Server is not installable here (docs/images.md): R, the user and the
    # configuration the image adds are checked; rserver itself only where it exists.
    rstudio) check='R --version | head -n 1 && id rstudio &&
      test "$(stat -c %U /workspace)" = rstudio && test "$USER" = rstudio &&
      grep -q "^logger-type=stderr" /etc/rstudio/logging.conf &&
      grep -q "^session-default-working-dir=/workspace" /etc/rstudio/rsession.conf &&
      test -w "$R_HOME/etc/Renviron.site" &&
      { test ! -e /usr/lib/rstudio-server/bin/rserver || /usr/lib/rstudio-server/bin/rserver --version; }' ;;
  esac
  out="$(docker run --rm --network host --entrypoint /bin/sh "$image" -c "$check" 2>&1)" ||
    die "$kind: the IDE check failed: $out"
  log "$kind: $(head -n 1 <<<"$out")"
  [ "$kind" = rstudio ] && return
  # The agent starts the IDE and answers ready (no channel, nothing to restore; the
  # final save at `docker stop` has no S3 to go to, which is not what this checks).
  port="$(free_port)"
  name="studios-smoke-$kind-$$"
  started=$(date +%s%N)
  docker run -d --name "$name" --network host --init \
    -e STUDIO_ID=st-smoke -e WORKSPACE_ID=ws-smoke -e "STUDIO_TEMPLATE=$kind" \
    -e CHECKPOINT_SAVE_URI=s3://smoke/ws/.studios/st-smoke/checkpoints/cp-1/ \
    -e STUDIO_BASE_PATH=/connect/st-smoke/ -e "STUDIO_AGENT_ADDR=127.0.0.1:$port" \
    -e AWS_REGION=us-east-1 "$image" >/dev/null
  local ready=""
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/connect/st-smoke/_studio/health" 2>/dev/null | grep -q '"ready":true'; then
      ready=yes
      break
    fi
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.1
  done
  local ms=$((($(date +%s%N) - started) / 1000000))
  docker stop -t 10 "$name" >/dev/null 2>&1 || true
  out="$(docker logs "$name" 2>&1 | tail -n 20 || true)"
  docker rm -f "$name" >/dev/null 2>&1 || true
  [ -n "$ready" ] || die "$kind: the IDE did not become ready: $out"
  log "$kind: container start → agent ready (IDE answering) in $ms ms"
}

build_kinds() {
  local kinds=("$@") kind base
  [ ${#kinds[@]} -gt 0 ] || kinds=(jupyter rstudio vscode xpra relay)
  for kind in "${kinds[@]}"; do
    [ -f "$root/images/$kind/Dockerfile" ] || die "no image '$kind' (jupyter rstudio vscode xpra relay)"
  done
  mkdir -p "$state"
  ensure_engine
  ensure_base
  ensure_binaries "${kinds[@]}"
  for kind in "${kinds[@]}"; do
    base="$(stand_in "$kind")"
    build "studios-$kind:local" "$root/images/$kind/Dockerfile" --build-arg "BASE=$base" "${local_args[@]}"
    [ "${STUDIOS_IMAGES_SMOKE:-1}" = 0 ] || smoke "$kind" "studios-$kind:local"
  done
}

case "${1:-build}" in
  engine) ensure_engine ;;
  base) mkdir -p "$state"; ensure_engine; ensure_base ;;
  stop) stop_engine ;;
  build) shift || true; build_kinds "$@" ;;
  *) build_kinds "$@" ;;
esac
