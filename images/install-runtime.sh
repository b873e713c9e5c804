#!/usr/bin/env bash
# What every template image adds to its base besides the agent (run as root in each
# Dockerfile): fuse3 and Mountpoint for Amazon S3 (`mount-s3`, for the studio's S3 mounts),
# and micromamba (conda environments) where the base has no conda installer.
#
#   install-runtime.sh ARCH MOUNTPOINT_VERSION [MICROMAMBA_VERSION]
#
# ARCH is Docker's (amd64, arm64). An empty version skips that tool: builds without
# access to its download site (infra/images.sh) leave it out, and the agent then fails
# only the sessions that need it, with the mount's or the installer's message
# (docs/agent.md).
set -euo pipefail
arch="$1" mountpoint="${2:-}" micromamba="${3:-}"
case "$arch" in
  amd64) mp_arch=x86_64 mm_arch=64 ;;
  arm64) mp_arch=arm64 mm_arch=aarch64 ;;
  *) echo "unsupported architecture '$arch'" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates curl fuse3
if [ -n "$mountpoint" ]; then
  curl -fsSL -o /tmp/mount-s3.deb \
    "https://s3.amazonaws.com/mountpoint-s3-release/${mountpoint}/${mp_arch}/mount-s3-${mountpoint}-${mp_arch}.deb"
  apt-get install -y --no-install-recommends /tmp/mount-s3.deb
  rm -f /tmp/mount-s3.deb
fi
if [ -n "$micromamba" ]; then
  curl -fsSL -o /usr/local/bin/micromamba \
    "https://github.com/mamba-org/micromamba-releases/releases/download/${micromamba}/micromamba-linux-${mm_arch}"
  chmod 755 /usr/local/bin/micromamba
fi
rm -rf /var/lib/apt/lists/*
