#!/usr/bin/env bash
# Builds the binaries the images copy in, once per architecture, with the workspace's
# release profile (Cargo.toml): the studio agent (every template image) and the connect
# relay (images/relay). Each image's Dockerfile COPYs images/bin/<arch>/<binary>; nothing
# is compiled inside an image build.
#
#   images/build-binaries.sh [amd64] [arm64]        (default: amd64)
#
# cargo-lambda links with zig against glibc 2.31 (Debian 11, Ubuntu 20.04), so the
# binaries run on every template base (Debian 12 / Ubuntu 24.04, glibc 2.36 and newer)
# and on older custom images, whatever glibc the building machine has; zig is also what
# cross-builds arm64 (`rustup target add aarch64-unknown-linux-gnu` first). Needs
# `pip install cargo-lambda==1.9.2 ziglang==0.15.2` (zig 0.16 cannot build these crates)
# on PATH or in the repository's .venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
glibc=2.31
# The repository's venv first: its python has the ziglang module cargo-lambda runs zig from.
[ -x "$root/.venv/bin/cargo-lambda" ] && export PATH="$root/.venv/bin:$PATH"
if ! command -v cargo-lambda >/dev/null; then
  echo "cargo-lambda not found: pip install cargo-lambda==1.9.2 ziglang==0.15.2" >&2
  exit 1
fi
cd "$root"
for arch in "${@:-amd64}"; do
  case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu ;;
    arm64) triple=aarch64-unknown-linux-gnu ;;
    *) echo "unknown architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
  esac
  out="target/images/$arch"
  started=$SECONDS
  cargo lambda build --release --locked --target "$triple.$glibc" \
    -p studios-agent -p studios-relay --bin studio-agent --bin studio-relay \
    --lambda-dir "$out" >&2
  for bin in studio-agent studio-relay; do
    install -D -m 755 "$out/$bin/bootstrap" "images/bin/$arch/$bin"
  done
  echo "built images/bin/$arch/{studio-agent,studio-relay} ($triple, glibc $glibc) in $((SECONDS - started)) s" >&2
done
