#!/usr/bin/env bash
# First run on a fresh machine: Node 24, the npm packages, a local clamd, then the gateway on
# its embedded defaults (fs object store and SQLite under ./data, http://127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/bin:$PATH:/usr/sbin"
bash scripts/ensure-node.sh
hash -r
[ -d node_modules ] || npm ci --no-audit --no-fund
# A clamd of our own on 127.0.0.1:3310 unless one answers there already.
if [ "$(printf 'zPING\0' | timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3310; cat >&3; tr -d "\0" <&3' 2>/dev/null)" != PONG ]; then
  bash scripts/start-clamd.sh data/clamd 3310
fi
exec npm start
