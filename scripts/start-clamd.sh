#!/usr/bin/env bash
# Starts a clamd of our own in the background for a first run, development and tests.
# Usage: scripts/start-clamd.sh DIR [PORT]      (default port 3310)
# Leaves in DIR: clamd.conf, db/ (test signatures), tmp/, clamd.sock, clamd.pid, clamd.log, clamd.out
# Listens on 127.0.0.1:PORT and unix://DIR/clamd.sock. Stop it with: kill "$(cat DIR/clamd.pid)"
#
# Database: /var/lib/clamav when it holds the official one (*.cvd/*.cld, run freshclam first),
# otherwise the project's tiny test signatures (test/fixtures/signatures), with a warning.
# Environment knobs:
#   CLAMD_STREAM_MAX   StreamMaxLength (default 100M); set GW_SCANNER_MAX_BYTES to match
#   CLAMD_MAX_FILE     MaxFileSize     (default 100M)
#   CLAMD_MAX_SCAN     MaxScanSize     (default 400M)
#   CLAMD_MAX_THREADS  MaxThreads      (default 10)
#   CLAMD_TEST_DB=1    use the test signatures even when an official database is installed
#   CLAMD_SIGNATURES   which test signature files to load (default "test.ndb test.hdb test.ldb")
#   CLAMD_EXTRA_CONF   extra lines appended to clamd.conf
#   CLAMD_START_TIMEOUT seconds to wait for PONG (default 30, 180 with the official database)
set -euo pipefail
DIR=${1:?usage: scripts/start-clamd.sh DIR [PORT]}
PORT=${2:-3310}
HERE=$(cd "$(dirname "$0")" && pwd)
SIGNATURES="$HERE/../test/fixtures/signatures"
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$DIR/db" "$DIR/tmp"
DIR=$(cd "$DIR" && pwd)

if [ -f "$DIR/clamd.pid" ] && kill -0 "$(cat "$DIR/clamd.pid")" 2>/dev/null; then
  echo "a clamd started from $DIR is still running (pid $(cat "$DIR/clamd.pid")); stop it with: kill $(cat "$DIR/clamd.pid")" >&2
  exit 1
fi

# Installs Debian's clamav-daemon if needed, without letting the package start its own service.
bash "$HERE/install-clamd.sh"

if [ "${CLAMD_TEST_DB:-0}" != 1 ] && compgen -G "/var/lib/clamav/*.c[vl]d" >/dev/null; then
  DB=/var/lib/clamav
  TIMEOUT=${CLAMD_START_TIMEOUT:-180}
else
  DB="$DIR/db"
  rm -f "$DB"/*
  for sig in ${CLAMD_SIGNATURES:-test.ndb test.hdb test.ldb}; do cp "$SIGNATURES/$sig" "$DB/"; done
  TIMEOUT=${CLAMD_START_TIMEOUT:-30}
  echo "WARNING: no official ClamAV database in /var/lib/clamav: clamd uses the project's TEST signatures" \
    "(EICAR, the ClamAV test file, a text marker) and detects NO real malware. Run freshclam, then restart clamd." >&2
fi

{
  echo "Foreground yes"
  echo "DatabaseDirectory $DB"
  echo "TemporaryDirectory $DIR/tmp"
  echo "LocalSocket $DIR/clamd.sock"
  echo "TCPSocket $PORT"
  echo "TCPAddr 127.0.0.1"
  echo "LogFile $DIR/clamd.log"
  echo "LogTime yes"
  echo "StreamMaxLength ${CLAMD_STREAM_MAX:-100M}"
  echo "MaxFileSize ${CLAMD_MAX_FILE:-100M}"
  echo "MaxScanSize ${CLAMD_MAX_SCAN:-400M}"
  echo "MaxThreads ${CLAMD_MAX_THREADS:-10}"
  # What clamd could not fully scan must say so, never pass as clean.
  echo "AlertExceedsMax yes"
  echo "AlertEncrypted yes"
  if [ "$(id -u)" = 0 ]; then echo "User root"; fi
  if [ -n "${CLAMD_EXTRA_CONF:-}" ]; then printf '%s\n' "$CLAMD_EXTRA_CONF"; fi
} > "$DIR/clamd.conf"

rm -f "$DIR/clamd.sock" "$DIR/clamd.pid"
setsid nohup clamd --config-file="$DIR/clamd.conf" >"$DIR/clamd.out" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$DIR/clamd.pid"

for _ in $(seq 1 $((TIMEOUT * 10))); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "clamd exited; see $DIR/clamd.out and $DIR/clamd.log:" >&2
    tail -n 20 "$DIR/clamd.out" >&2 || true
    exit 1
  fi
  reply=$(printf 'zPING\0' | timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; cat >&3; tr -d '\0' <&3" 2>/dev/null || true)
  if [ "$reply" = PONG ]; then
    echo "clamd ready on tcp://127.0.0.1:$PORT and unix://$DIR/clamd.sock (pid $PID, database $DB)"
    exit 0
  fi
  sleep 0.1
done
echo "clamd did not answer PING within $TIMEOUT s; see $DIR/clamd.out and $DIR/clamd.log" >&2
exit 1
