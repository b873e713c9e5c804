#!/usr/bin/env bash
# Xpra from Debian (3.1) and what the template starts in it: an xterm (`--start=xterm`,
# agent/src/ide.rs) with xfonts-base (its default font); python3-pil for the picture
# encodings the HTML5 client decodes (png, jpeg: Pillow is only a recommendation of the
# package, and recommendations are not installed).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends xpra xterm xfonts-base python3-pil dbus-x11 xauth
rm -rf /var/lib/apt/lists/*
