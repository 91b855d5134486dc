#!/usr/bin/env bash
# Makes Node 24 the node on PATH: installs it from the npm registry into /usr/local (whose bin
# comes before the system's) when the node found is older. A plain `npm -g` would try to
# overwrite the system's own node binary and fail.
set -euo pipefail
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -ge 24 ]; then exit 0; fi
prefix=${NODE_PREFIX:-/usr/local}
echo "node $(node --version 2>/dev/null || echo none) found; installing node@24 into $prefix..." >&2
npm install -g --prefix "$prefix" node@24 >/dev/null
"$prefix/bin/node" --version >&2
