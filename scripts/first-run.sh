#!/usr/bin/env bash
# First run on a fresh machine: Node 24, the npm packages, a local clamd (and Chromium for the
# browser tests), then the gateway on its embedded defaults (fs object store and SQLite under ./data, http://127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/bin:$PATH:/usr/sbin"
bash scripts/ensure-node.sh
hash -r
[ -d node_modules ] || npm ci --no-audit --no-fund
# Not needed by the gateway: the tests (npm test) drive a real Chromium for the browser tests.
bash scripts/install-chromium.sh || echo "first-run: could not install chromium: the browser tests (npm test) need it (scripts/install-chromium.sh)" >&2
# A clamd of our own on 127.0.0.1:3310 unless one answers there already.
if [ "$(printf 'zPING\0' | timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3310; cat >&3; tr -d "\0" <&3' 2>/dev/null)" != PONG ]; then
  bash scripts/start-clamd.sh data/clamd 3310
fi
# The demo page (GW_DEMO, loopback only) uploads with upload tokens, which need a signing secret.
case "${GW_HOST:-127.0.0.1}" in
  127.*|localhost|::1)
    export GW_DEMO="${GW_DEMO:-true}"
    if [ "$GW_DEMO" = true ] && [ -z "${GW_TOKEN_SECRETS:-}" ]; then
      GW_TOKEN_SECRETS="first-run:$(node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64url"))')"
      export GW_TOKEN_SECRETS
      echo "first-run: GW_TOKEN_SECRETS is not set: upload tokens are signed with a random secret made for this run (tokens stop working when it stops; set GW_TOKEN_SECRETS to keep them)" >&2
    fi
    [ "$GW_DEMO" = true ] && echo "first-run: once it listens, open http://127.0.0.1:8080/demo in a browser" >&2
    ;;
esac
exec npm start
