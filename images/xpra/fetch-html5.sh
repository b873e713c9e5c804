#!/usr/bin/env bash
# Unpacks the HTML5 client of an Xpra release into a directory (a build stage of
# images/xpra/Dockerfile; nothing of this stage reaches the image but that directory).
#
#   fetch-html5.sh VERSION SHA256 DEST
#
# Debian's `xpra` package leaves the HTML5 client out; the release's source on PyPI has
# it (html5/). pip fetches the source by name and checks its hash, then fails to build
# it (the build needs X11 and GTK development files this stage does not have): pip's
# --no-clean keeps the unpacked source, which is all this needs. Success is judged by
# what was unpacked, not by pip's exit status: the right version, with an index.html.
set -euo pipefail
version="$1" sha256="$2" dest="$3"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates python3-pip
work="$(mktemp -d)"
printf 'xpra==%s --hash=sha256:%s\n' "$version" "$sha256" >"$work/requirements.txt"
TMPDIR="$work" python3 -m pip download --no-deps --no-clean --no-build-isolation \
  --require-hashes -r "$work/requirements.txt" -d "$work/dist" >"$work/pip.log" 2>&1 || true
src=""
while IFS= read -r info; do
  dir="$(dirname "$info")"
  if grep -qx "Version: $version" "$info" && [ -f "$dir/html5/index.html" ]; then
    src="$dir"
  fi
done < <(find "$work" -maxdepth 3 -name PKG-INFO)
if [ -z "$src" ]; then
  echo "xpra $version's source (with html5/) was not fetched; pip said:" >&2
  tail -n 30 "$work/pip.log" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
cp -a "$src/html5" "$dest"
rm -rf "$work" /var/lib/apt/lists/*
